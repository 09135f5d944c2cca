"""TFDS builders of simajax's hand datasets (array_record, read with ``tfds.data_source``).

  data_pipelines.schema           the feature schema shared by every builder
  data_pipelines.build            the build CLI, builder registry and ``ensure_built``
  data_pipelines.synthetic_hands  the built-in synthetic multi-view hand dataset
"""
