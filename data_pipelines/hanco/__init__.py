"""HanCo readers and TFDS builder: ``data_pipelines.hanco.builder.HanCo``.

  layout    the official tree, meta.json, per-frame calib/xyz/shape JSONs, the train/test rules
  examples  raw files -> schema examples, with build counts
  builder   the TFDS builder (configs ``rgb``, ``rgb-rgb_merged``, ``has_fit-rgb``)
"""
