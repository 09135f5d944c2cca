"""Dex-YCB per-view label files ``labels_%06d.npz`` (docs/datasets.md#dex-ycb-layout).

Keys used (others, e.g. ``pose_y``, are ignored):
  seg       uint8 [H, W]     255 = hand, 1..21 YCB objects, 0 background
  pose_m    f32 [1, 51]      [0:3] root axis-angle (this camera), [3:48] 45 PCA, [48:51] trans (m)
  joint_3d  f32 [1, 21, 3]   camera-frame joints (m), OpenPose order; all -1 when invalid
  joint_2d  f32 [1, 21, 2]   pixels; all -1 when invalid
A view has a hand label unless ``joint_3d`` is entirely -1 (the toolkit's hpe_eval filter).
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

from data_pipelines import files

_SHAPES = {"pose_m": (1, 51), "joint_3d": (1, 21, 3), "joint_2d": (1, 21, 2)}


@dataclasses.dataclass(frozen=True)
class Labels:
  """One view's labels, singleton hand axis removed (float64)."""
  seg: np.ndarray
  pose_m: np.ndarray
  joint_3d: np.ndarray
  joint_2d: np.ndarray

  @property
  def has_hand(self) -> bool:
    """True unless joint_3d is entirely -1 (no hand, or hand without annotation)."""
    return not np.all(self.joint_3d == -1)

  @property
  def has_mano(self) -> bool:
    """True unless pose_m is entirely zero."""
    return bool(np.any(self.pose_m != 0))

  @property
  def root_axis_angle(self) -> np.ndarray:
    """[3] global rotation of the hand in this camera."""
    return self.pose_m[0:3]

  @property
  def pca(self) -> np.ndarray:
    """[45] PCA coefficients of the finger pose (the hand's own side)."""
    return self.pose_m[3:48]

  @property
  def trans(self) -> np.ndarray:
    """[3] camera-frame translation (manopth convention: wrist = J0(betas) + trans)."""
    return self.pose_m[48:51]

  @property
  def hand_pixels(self) -> np.ndarray:
    """bool [H, W], seg == 255 (H2ONet's ``seg > 200``)."""
    return self.seg > 200


def read_labels(path: pathlib.Path) -> Labels:
  """Reads and checks a ``labels_%06d.npz``.

  Args:
    path: the file.

  Returns:
    The labels.

  Raises:
    FileNotFoundError: when the file is missing.
    DatasetFormatError: naming the file and key for a missing key, a wrong shape or dtype, or
      an unreadable file.
  """
  path = files.require_file(path, "a Dex-YCB labels_%06d.npz next to the color image")
  try:
    with np.load(path, allow_pickle=False) as npz:
      missing = [k for k in ("seg", *_SHAPES) if k not in npz.files]
      if missing:
        raise files.DatasetFormatError(
            f"{path}: missing keys {missing}; expected seg, pose_m, joint_3d, joint_2d "
            f"(found {sorted(npz.files)})")
      arrays = {k: npz[k] for k in ("seg", *_SHAPES)}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    if isinstance(e, files.DatasetFormatError):
      raise
    raise files.DatasetFormatError(f"{path}: unreadable labels file ({e})") from e
  seg = arrays["seg"]
  if seg.ndim != 2 or seg.dtype != np.uint8:
    raise files.DatasetFormatError(
        f"{path}: key 'seg' must be uint8 [H, W] (the color image size), got "
        f"{seg.dtype} {list(seg.shape)}")
  values = {}
  for key, shape in _SHAPES.items():
    value = arrays[key]
    if value.shape != shape or value.dtype.kind != "f":
      raise files.DatasetFormatError(
          f"{path}: key '{key}' must be float {list(shape)}, got {value.dtype} {list(value.shape)}")
    if not np.all(np.isfinite(value)):
      raise files.DatasetFormatError(f"{path}: key '{key}' has non-finite values")
    values[key] = np.asarray(value[0], np.float64)
  return Labels(seg=seg, **values)
