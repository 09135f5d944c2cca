"""One view of a multi-view record -> one network sample (crop, augmentation, targets).

The record is an example of ``data_pipelines.schema`` as ``tfds.data_source`` returns it. The
sample holds (S = the crop side, float32 unless stated):

  image             [S, S, 3] RGB in [0, 1] (no mean/std normalisation, as the official model).
  joints_2d         [21, 2] 2D joints in the crop, divided by S (so the crop is [0, 1]^2).
  joints_rotated    [21, 3] GT joints rotated by ``rotation`` about the canonical wrist, in the
                    hand-model frame: R (J_c - J0) + J0. Not camera-frame: the root-relative
                    joints with the root rotation, as the model's ``joints_rotated``.
  verts_rotated     [778, 3] the same for the mesh: R (V_c - J0) + J0.
  joints_canonical  [21, 3] / verts_canonical [778, 3]: zero-rotation GT (hand-model frame).
  rotation          [3, 3] root rotation in the (augmented) camera: A R_root.
  joints_camera     [21, 3] camera-frame joints of the augmented camera (A x), metres, for
                    evaluation.
  verts_camera      [778, 3] camera-frame mesh of the augmented camera (wrist at
                    ``joints_camera[0]``).
  K_crop            [3, 3] intrinsics that project the ``*_camera`` points to crop pixels.
  vis_ratio         [] visible fraction of the hand (-1 unknown); ``occluded`` int32 [] is 1 when
                    vis_ratio < 0.4, 0 when not, -1 when unknown.
  has_mesh          bool [] whether the mesh targets are real (else zeros; mask mesh losses).
  hand_mask         [S, S] float32 {0, 1}, only when requested (visualisation, tests).
  frame_index, view_index  int32 [] where the sample comes from.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from data_pipelines import schema
from simajax.hand import mirror
from simajax.preprocessing import augment, crop

LEFT = schema.HAND_SIDES.index("left")


def process_view(record: Mapping[str, Any], view: int, out_size: int,
                 params: augment.AugmentParams = augment.IDENTITY, mirror_left: bool = True,
                 with_hand_mask: bool = False, frame_index: int = -1) -> dict[str, np.ndarray]:
  """Crops, augments and builds the targets of one view.

  Args:
    record: one decoded example of the schema.
    view: the view index in [0, NUM_VIEWS).
    out_size: crop side S in pixels.
    params: the augmentation (``augment.IDENTITY`` for evaluation).
    mirror_left: flip left hands to right hands (image, 2D and 3D labels).
    with_hand_mask: also warp the stored hand mask into the crop.
    frame_index: stored in the sample for bookkeeping.

  Returns:
    The sample dict (see the module docstring).
  """
  views = record["views"]
  image = schema.decode_image(views["image"][view])
  height, width = image.shape[:2]
  mask = _decode_mask(views["hand_mask"][view], image.shape) if with_hand_mask else None
  K = np.asarray(views["K"][view], np.float64)
  joints_px = np.asarray(views["joints_img"][view], np.float64)  # stored pixels
  joints_camera = np.asarray(views["joints_cam"][view], np.float64)  # stored, camera frame
  root_rot = np.asarray(views["global_rot"][view], np.float64)

  if mirror_left and int(record["hand_side"]) == LEFT:
    image = mirror.mirror_image(image)
    mask = None if mask is None else mirror.mirror_image(mask)
    joints_px = mirror.mirror_points_2d(joints_px, width)
    K = mirror.mirror_intrinsics(K, width)
    joints_camera = mirror.mirror_points(joints_camera)
    root_rot = mirror.mirror_rotation_matrix(root_rot)

  box = crop.joints_box(joints_px, width, height)
  if box is None:
    box = crop.full_image_box(width, height)
  affine = crop.crop_affine(box, out_size, params.scale, params.rot_deg)
  rot_a = augment.rotation_matrix(params.rot_deg)
  rotation = rot_a @ root_rot

  verts_c = np.asarray(record["verts_canonical"], np.float64)
  joints_c = np.asarray(record["joints_canonical"], np.float64)
  root_c = joints_c[0]
  wrist_camera = rot_a @ joints_camera[0]
  vis_ratio = float(views["vis_ratio"][view])

  sample = {
      "image": augment.apply_color(crop.warp_image(image, affine, out_size), params.color_gain),
      "joints_2d": crop.apply_affine(affine, joints_px) / out_size,
      "joints_rotated": schema.derive_verts_camera(joints_c, joints_c, rotation, root_c),
      "verts_rotated": schema.derive_verts_camera(verts_c, joints_c, rotation, root_c),
      "joints_canonical": joints_c,
      "verts_canonical": verts_c,
      "rotation": rotation,
      "joints_camera": joints_camera @ rot_a.T,
      "verts_camera": schema.derive_verts_camera(verts_c, joints_c, rotation, wrist_camera),
      "K_crop": crop.crop_intrinsics(K, affine, params.rot_deg),
      "vis_ratio": np.float32(vis_ratio),
      "occluded": np.int32(-1 if vis_ratio < 0 else vis_ratio < schema.OCCLUSION_THRESHOLD),
      "has_mesh": np.bool_(record["has_mesh"]),
      "frame_index": np.int32(frame_index),
      "view_index": np.int32(view),
  }
  if with_hand_mask:
    sample["hand_mask"] = (crop.warp_image(mask, affine, out_size) >= 128).astype(np.float32)
  return {k: _to_float32(v) for k, v in sample.items()}


def empty_view(out_size: int, with_hand_mask: bool = False, frame_index: int = -1,
               view: int = -1) -> dict[str, np.ndarray]:
  """An all-zero sample with the shapes of ``process_view`` (invalid views in multi-view mode)."""
  nj, nv = schema.NUM_JOINTS, schema.NUM_VERTS
  sample = {
      "image": np.zeros((out_size, out_size, 3), np.float32),
      "joints_2d": np.zeros((nj, 2), np.float32),
      "joints_rotated": np.zeros((nj, 3), np.float32),
      "verts_rotated": np.zeros((nv, 3), np.float32),
      "joints_canonical": np.zeros((nj, 3), np.float32),
      "verts_canonical": np.zeros((nv, 3), np.float32),
      "rotation": np.eye(3, dtype=np.float32),
      "joints_camera": np.zeros((nj, 3), np.float32),
      "verts_camera": np.zeros((nv, 3), np.float32),
      "K_crop": np.eye(3, dtype=np.float32),
      "vis_ratio": np.float32(schema.UNKNOWN_VIS_RATIO),
      "occluded": np.int32(-1),
      "has_mesh": np.bool_(False),
      "frame_index": np.int32(frame_index),
      "view_index": np.int32(view),
  }
  if with_hand_mask:
    sample["hand_mask"] = np.zeros((out_size, out_size), np.float32)
  return sample


def _decode_mask(data: bytes, image_shape) -> np.ndarray:
  """The stored hand mask as uint8 [H, W]; all zeros when the record has none."""
  if not data:
    return np.zeros(image_shape[:2], np.uint8)
  return schema.decode_image(data, channels=1)


def _to_float32(value: Optional[np.ndarray]) -> np.ndarray:
  value = np.asarray(value)
  return value.astype(np.float32) if value.dtype == np.float64 else value
