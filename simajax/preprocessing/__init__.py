"""Per-sample data processing used by ``simajax.input_pipeline``.

  simajax.preprocessing.crop    the hand box, the crop affine and the bilinear warp
  simajax.preprocessing.augment scale / rotation / colour draws, mirroring, and the label updates
  simajax.preprocessing.sample  one view of a multi-view record -> one network sample
"""
