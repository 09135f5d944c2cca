"""TFDS builders of simajax's hand datasets (array_record, read with ``tfds.data_source``).

  data_pipelines.schema           the feature schema shared by every builder
  data_pipelines.build            the build CLI, builder registry and ``ensure_built``
  data_pipelines.synthetic_hands  the built-in synthetic multi-view hand dataset
  data_pipelines.dexycb           Dex-YCB (S0) from the downloaded tree
  data_pipelines.hanco            HanCo from the downloaded tree
Shared by the builders of downloaded datasets (Dex-YCB, HanCo):
  data_pipelines.manual_builder   the TFDS builder base: manual_dir, MANO, splits, build counts
  data_pipelines.files            raw-file reading with errors that name the file and field
  data_pipelines.mano_labels      the user's MANO models: canonical mesh, camera mesh, translations
  data_pipelines.visibility       the visibility ratio (mask pixels / MANO silhouette pixels)
  data_pipelines.view_table       the per-view fields of one example, filled view by view
  data_pipelines.workers          frames read in worker processes, build counts summed
"""
