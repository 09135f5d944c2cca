"""Hand crops: the box around the 2D joints, the crop affine and the image warp.

Reproduces H2ONet/SiMA ``common/utils/preprocessing.py`` (docs/training.md#crops-and-augmentation): the joints'
min/max box expanded 1.5x about its centre, clipped to the image, made square; then a similarity
transform (scale and in-plane rotation about the box centre) to the square network input, applied
with bilinear interpolation and a zero border. Pixel coordinates follow OpenCV: (0, 0) is the
centre of the top-left pixel.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

BBOX_EXPANSION = 1.5


def joints_box(joints_px: np.ndarray, width: int, height: int,
               expansion: float = BBOX_EXPANSION) -> Optional[np.ndarray]:
  """The square crop box of a hand, or None when it is degenerate.

  ``get_bbox`` (min/max of the joints, expanded about the centre) followed by ``process_bbox``
  (clip to the image, then grow the shorter side to a square) of the official code.

  Args:
    joints_px: [J, 2] pixel coordinates.
    width: image width in pixels.
    height: image height in pixels.
    expansion: the box's growth factor about its centre.

  Returns:
    float64 [4] box (x, y, w, h) with w == h, or None if the clipped box is empty.
  """
  lo, hi = joints_px.min(axis=0), joints_px.max(axis=0)
  centre, size = (lo + hi) / 2.0, (hi - lo) * expansion
  return _square_box(centre - size / 2.0, size, width, height)


def full_image_box(width: int, height: int) -> np.ndarray:
  """The fallback box (the whole image, made square) used when the joints' box is degenerate."""
  return _square_box(np.zeros(2), np.array([width, height], np.float64), width, height)


def _square_box(corner, size, width, height):
  x1, y1 = max(0.0, corner[0]), max(0.0, corner[1])
  x2 = min(width - 1.0, x1 + max(0.0, size[0] - 1.0))
  y2 = min(height - 1.0, y1 + max(0.0, size[1] - 1.0))
  if size[0] * size[1] <= 0 or x2 < x1 or y2 < y1:
    return None
  w, h = x2 - x1, y2 - y1
  cx, cy = x1 + w / 2.0, y1 + h / 2.0
  side = max(w, h)
  return np.array([cx - side / 2.0, cy - side / 2.0, side, side])


def crop_affine(box: np.ndarray, out_size: int, scale: float = 1.0,
                rot_deg: float = 0.0) -> np.ndarray:
  """2x3 affine taking image pixels to crop pixels (``gen_trans_from_patch_cv``).

  The three source points are the box centre c, c + R(rot) (0, h s / 2) and c + R(rot) (w s / 2, 0)
  (rotation in image coordinates, y down); they go to the crop centre and its half-axes. The
  result is q = k R(-rot) (p - c) + (out_size / 2), with k = out_size / (w s).

  Args:
    box: [4] (x, y, w, h) from ``joints_box``.
    out_size: side of the square crop in pixels.
    scale: the augmentation scale s (> 1 zooms out).
    rot_deg: the augmentation rotation in degrees.

  Returns:
    float64 [2, 3] matrix M with q = M @ [u, v, 1].
  """
  centre = box[:2] + box[2:] / 2.0
  rot = np.deg2rad(rot_deg)
  c, s = np.cos(rot), np.sin(rot)
  rot_mat = np.array([[c, -s], [s, c]])
  src_axes = rot_mat @ np.diag([box[2] * scale / 2.0, box[3] * scale / 2.0])  # columns: x, y
  dst_axes = np.diag([out_size / 2.0, out_size / 2.0])
  linear = dst_axes @ np.linalg.inv(src_axes)
  offset = np.full(2, out_size / 2.0) - linear @ centre
  return np.concatenate([linear, offset[:, None]], axis=1)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
  """[2, 3] affine applied to [..., 2] points."""
  return points @ affine[:, :2].T + affine[:, 2]


def warp_image(image: np.ndarray, affine: np.ndarray, out_size: int) -> np.ndarray:
  """Bilinear warp of an image into the crop (``cv2.warpAffine`` with a zero border).

  Args:
    image: uint8 [H, W, C] or [H, W].
    affine: [2, 3] image-to-crop affine from ``crop_affine``.
    out_size: side of the output.

  Returns:
    uint8 [out_size, out_size(, C)]. Matches OpenCV to within rounding, except within one source
    pixel of the image edge, where PIL clamps instead of blending with the zero border.
  """
  inverse = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))
  # PIL samples output pixel centres at (x + 0.5, y + 0.5) and reads input pixel i at i + 0.5;
  # conjugating by that half-pixel shift gives OpenCV's integer-centre convention.
  shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
  unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
  coeffs = (shift @ inverse @ unshift)[:2].reshape(-1)
  warped = Image.fromarray(image).transform(
      (out_size, out_size), Image.Transform.AFFINE, data=tuple(coeffs),
      resample=Image.Resampling.BILINEAR)
  return np.asarray(warped)


def crop_intrinsics(K: np.ndarray, affine: np.ndarray, rot_deg: float) -> np.ndarray:
  """Intrinsics of the crop seen as a camera rotated by A = Rz(-rot) about its optical axis.

  With the camera-frame points rotated by A (``augment.rotation_matrix``), projecting them with the
  returned matrix gives exactly the crop pixels of the original projections: K' = M K A^T in
  homogeneous form (M the affine). When fx != fy the upper-left block is not diagonal.

  Args:
    K: [3, 3] intrinsics of the image.
    affine: [2, 3] image-to-crop affine.
    rot_deg: the rotation the affine was built with, in degrees.

  Returns:
    float64 [3, 3] crop intrinsics.
  """
  a = -np.deg2rad(rot_deg)
  c, s = np.cos(a), np.sin(a)
  rot_a = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
  affine3 = np.vstack([affine, [0.0, 0.0, 1.0]])
  return affine3 @ K @ rot_a.T
