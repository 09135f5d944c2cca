"""Left/right mirroring about the x = 0 plane (docs/conventions.md#left-hands).

The one home of mirroring, for hand models, labels and images alike. Left-hand samples are
mirrored to right hands for training and evaluation: with M = diag(-1, 1, 1) points map to M p,
rotations to M R M, which for an axis-angle (x, y, z) is (x, -y, -z), and triangles reverse their
winding so they still face outwards. In the image the same mirror is a horizontal flip, pixel
columns u -> W - 1 - u, with intrinsics that project the mirrored camera-frame points onto the
flipped image (``mirror_intrinsics``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from simajax.hand.model import NUM_JOINTS, HandModel

_MIRROR = np.array([-1.0, 1.0, 1.0])


def _xp(x):
  return jnp if isinstance(x, jax.Array) else np


def mirror_points(points):
  """Mirrors points (vertices, joints, translations) across the x = 0 plane.

  Args:
    points: [..., 3] numpy or JAX array.

  Returns:
    The points with x negated, same shape and array type.
  """
  return points * _xp(points).asarray(_MIRROR, dtype=points.dtype)


def mirror_axis_angle(pose):
  """Mirrors axis-angle rotations: every (x, y, z) triple becomes (x, -y, -z).

  Args:
    pose: [..., 3] or [..., 3k] (e.g. a [B, 48] MANO pose or [B, 16, 3]).

  Returns:
    The mirrored pose, same shape and array type.
  """
  xp = _xp(pose)
  if pose.shape[-1] % 3:
    raise ValueError(f"axis-angle pose must have a last dimension divisible by 3, got {pose.shape}")
  sign = xp.tile(xp.asarray(-_MIRROR, dtype=pose.dtype), pose.shape[-1] // 3)
  return pose * sign


def mirror_rotation_matrix(rotation):
  """Mirrors rotation matrices: M R M with M = diag(-1, 1, 1).

  Args:
    rotation: [..., 3, 3] numpy or JAX array.

  Returns:
    The mirrored rotations, same shape and array type.
  """
  xp = _xp(rotation)
  m = xp.asarray(_MIRROR, dtype=rotation.dtype)
  return rotation * m[:, None] * m[None, :]


def mirror_image(image: np.ndarray) -> np.ndarray:
  """Flips an image horizontally.

  Args:
    image: [H, W, ...] numpy array.

  Returns:
    The flipped view of it (columns reversed).
  """
  return image[:, ::-1]


def mirror_points_2d(points: np.ndarray, width: int) -> np.ndarray:
  """Pixel coordinates in the horizontally flipped image: u -> W - 1 - u.

  Args:
    points: [..., 2] (u, v) pixel coordinates (pixel centres at integers).
    width: the image width W.

  Returns:
    The mirrored coordinates, same shape.
  """
  return np.concatenate([width - 1.0 - points[..., :1], points[..., 1:]], axis=-1)


def mirror_box(box: np.ndarray, width: int) -> np.ndarray:
  """An (x0, y0, x1, y1) pixel box in the horizontally flipped image (u -> W - 1 - u)."""
  x0, y0, x1, y1 = box
  return np.array([width - 1.0 - x1, y0, width - 1.0 - x0, y1])


def mirror_crop_points_2d(points: np.ndarray) -> np.ndarray:
  """[..., 2] points in [0, 1] crop units in the horizontally flipped crop: x -> 1 - x.

  The crop's mirror axis is its centre, u = S / 2, because the official crop affine puts the box
  centre there (``simajax.photo.crop_photo``).
  """
  return np.concatenate([1.0 - points[..., :1], points[..., 1:]], axis=-1)


def mirror_rotation_6d(rot6d):
  """The 6D rotation (rows r0, r1 of R, rows convention) of the mirrored rotation M R M.

  Rows r0, r1 of R become -r0 M and r1 M; Gram-Schmidt commutes with this, so the mirrored 6D
  vector maps to ``mirror_rotation_matrix`` of the original's matrix.
  """
  return rot6d * _xp(rot6d).asarray([1, -1, -1, -1, 1, 1], dtype=rot6d.dtype)


def mirror_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
  """Intrinsics of the flipped image for mirrored (x -> -x) camera-frame points.

  Projecting M p with these gives the mirror (``mirror_points_2d``) of p's projection with K:
  cx -> W - 1 - cx, and the skew changes sign.

  Args:
    K: [3, 3] intrinsics of the original image.
    width: the image width W.

  Returns:
    [3, 3] float64 intrinsics.
  """
  flipped = np.array(K, np.float64)
  flipped[0, 2] = width - 1.0 - flipped[0, 2]
  flipped[0, 1] = -flipped[0, 1]
  return flipped


def mirror_faces(faces):
  """Reverses the winding of triangles (a mirrored mesh must flip them to face outwards).

  Args:
    faces: [F, 3] vertex ids.

  Returns:
    [F, 3] the same triangles in the opposite order.
  """
  return faces[:, ::-1]


def mirror_hand_model(model: HandModel) -> HandModel:
  """The mirror image of a hand model (a left hand from a right one and vice versa).

  For every pose p and shape b: forward(mirrored, mirror_axis_angle(p), b) equals
  mirror_points(forward(model, p, b)). Pose correctives follow from
  vec(M R M - I)[a, b] = m_a m_b vec(R - I)[a, b]; the PCA basis and mean mirror like poses.
  Fingertip ids are kept. This is the exact mirror, which the released MANO_LEFT is not (its
  ``shapedirs`` are MANO_RIGHT's, unmirrored, and manopth's left middle tip is 445): to reproduce
  left-hand labels, load MANO_LEFT with ``load_mano`` and pose it with its own arrays.

  Args:
    model: the hand model.

  Returns:
    The mirrored model, with ``side`` swapped.
  """
  m = _MIRROR.astype(np.float32)
  pose_sign = np.tile(np.outer(m, m).reshape(-1), NUM_JOINTS - 1)  # [135]
  finger_sign = np.tile(-m, NUM_JOINTS - 1)  # [45]
  return dataclasses.replace(
      model,
      v_template=model.v_template * m,
      faces=np.ascontiguousarray(mirror_faces(model.faces)),
      shapedirs=model.shapedirs * m[None, :, None],
      posedirs=model.posedirs * m[None, :, None] * pose_sign,
      hands_components=model.hands_components * finger_sign,
      hands_mean=model.hands_mean * finger_sign,
      side="left" if model.side == "right" else "right")

