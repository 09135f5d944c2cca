"""Dex-YCB (setup S0) readers and TFDS builder: ``data_pipelines.dexycb.builder.DexYcb``.

  layout      the official tree: subjects, sequences, meta.yml, calibration, the S0 split rule
  labels      ``labels_%06d.npz`` per view
  handoccnet  optional split membership from HandOccNet's S0 JSONs
  examples    raw files -> schema examples, with build counts
  builder     the TFDS builder (configs ``s0``, ``s0_handoccnet``)
"""
