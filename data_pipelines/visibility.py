"""The visibility ratio of a labelled view (docs/conventions.md#occlusion-label): how much of the hand is seen.

H2ONet's rule, shared by the Dex-YCB and HanCo readers: the visible hand pixels of the dataset's
mask over the pixels of the rendered, unoccluded MANO silhouette of the labelled hand.
"""

from __future__ import annotations

import numpy as np

from data_pipelines import schema
from data_pipelines.files import DatasetFormatError
from simajax.render import rasterizer


def visibility_ratio(hand_pixels: np.ndarray, verts_camera: np.ndarray, faces: np.ndarray,
                     K: np.ndarray, where: str = "view") -> float:
  """H2ONet's visible ratio: hand pixels / rendered-silhouette pixels, whole image (docs/conventions.md#occlusion-label).

  The mesh is the unoccluded hand the label describes, so it covers every visible hand pixel and
  the ratio lies in [0, 1]. A ratio above 1 means the mesh is not the labelled hand (e.g. a
  MANO model of the other side, or a mask of something else); it is refused, never stored.

  Args:
    hand_pixels: bool [H, W] visible hand pixels (Dex-YCB seg == 255, HanCo mask_hand).
    verts_camera: [V, 3] the unoccluded hand mesh in the camera frame.
    faces: [F, 3] its triangles.
    K: [3, 3] intrinsics of the image.
    where: the view, for the error message (e.g. its frame key and camera).

  Returns:
    The ratio in [0, 1], or ``schema.UNKNOWN_VIS_RATIO`` when the mesh covers no pixel.

  Raises:
    DatasetFormatError: naming ``where`` when the ratio exceeds 1.
  """
  height, width = hand_pixels.shape
  rendered = rasterizer.rasterize(verts_camera, faces, K, height, width).mask
  covered = int(rendered.sum())
  if covered == 0:
    return schema.UNKNOWN_VIS_RATIO
  visible = int(np.count_nonzero(hand_pixels))
  ratio = visible / covered
  if ratio > 1.0:
    raise DatasetFormatError(
        f"{where}: vis_ratio {ratio:.4f} is outside [0, 1]: the hand mask has {visible} pixels "
        f"but the labelled hand's MANO mesh covers only {covered}, so mesh and mask disagree "
        "(the other side's MANO file? a mask that is not this hand's?)")
  return ratio
