"""``ViewTable``: the per-view fields of one schema example, filled view by view.

A reader creates one table per example with the example's camera ids, stores each camera's
calibration and each valid view's image and labels, and takes the schema's ``views`` dict from
it (``data_pipelines.schema`` documents the fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from data_pipelines import schema


@dataclasses.dataclass
class ViewTable:
  """The per-view fields of one example, filled view by view (invalid views keep defaults).

  Defaults describe an invalid view: empty image and mask, zeros for labels, identity rotation,
  ``vis_ratio`` -1. ``K`` and ``world2cam`` should be filled for every view that has a camera.

  Attributes:
    camera_ids: the ``schema.NUM_VIEWS`` camera ids, in view order.
    bg_variant: the image variant of every view (e.g. "rgb", "rgb_merged").
  """
  camera_ids: Sequence[str]
  bg_variant: str

  def __post_init__(self):
    n = schema.NUM_VIEWS
    if len(self.camera_ids) != n:
      raise ValueError(f"ViewTable needs {n} camera ids, got {len(self.camera_ids)}")
    self.arrays = {name: np.zeros((n,) + shape, dtype)
                   for name, (shape, dtype) in schema.VIEW_ARRAYS.items()}
    self.arrays["global_rot"][:] = np.eye(3)
    self.arrays["K"][:] = np.eye(3)
    self.arrays["world2cam"][:] = np.eye(4)
    self.arrays["vis_ratio"][:] = schema.UNKNOWN_VIS_RATIO
    self.images = [b""] * n
    self.masks = [b""] * n

  def set_camera(self, view: int, K: np.ndarray, world2cam: np.ndarray) -> None:
    """Stores a view's calibration (also for views without a hand)."""
    self.arrays["K"][view] = K
    self.arrays["world2cam"][view] = world2cam

  def set_view(self, view: int, *, image: bytes, hand_mask: bytes, joints_img: np.ndarray,
               joints_cam: np.ndarray, global_rot: np.ndarray, mano_pose: np.ndarray,
               mano_trans: np.ndarray, vis_ratio: float) -> None:
    """Fills a valid view's image and labels (see ``data_pipelines.schema`` for the fields)."""
    self.images[view] = image
    self.masks[view] = hand_mask
    a = self.arrays
    a["view_valid"][view] = True
    a["joints_img"][view] = joints_img
    a["joints_cam"][view] = joints_cam
    a["global_rot"][view] = global_rot
    a["mano_pose"][view] = mano_pose
    a["mano_trans"][view] = mano_trans
    a["vis_ratio"][view] = vis_ratio

  def to_features(self) -> dict[str, Any]:
    """The ``views`` dict of a schema example."""
    return {**self.arrays, "image": list(self.images), "hand_mask": list(self.masks),
            "camera_id": list(self.camera_ids),
            "bg_variant": [self.bg_variant] * schema.NUM_VIEWS}
