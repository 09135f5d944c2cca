"""HanCo raw files -> examples of the shared schema (one example per time step and image variant).

Per time step (sid, fid) and camera c (views in camera order 0..7):
  * ``K`` = calib K[c], ``world2cam`` = calib M[c] (world -> camera);
  * ``joints_cam`` = M[c] applied to the world keypoints ``xyz``, ``joints_img`` their projection;
  * from the world MANO fit (``shape/<sid>/<fid>.json``; right hand, axis-angle, fingers relative
    to hands_mean): ``global_rot`` = R_M Rodrigues(poses[0:3]), ``mano_pose`` = [its axis-angle,
    poses[3:48]], ``mano_trans`` = R_M (J0 + global_t) + t_M - J0;
  * the canonical mesh is MANO_RIGHT with zero root rotation; with ``global_rot`` and the
    annotated wrist it gives the camera mesh, whose silhouette against ``mask_hand`` is
    ``vis_ratio`` (docs/conventions.md#occlusion-label, HanCo variant);
  * ``image`` is the variant's JPEG, unchanged; every view with an image is valid.
Frame-level ``mano_pose``/``mano_trans``/``mano_shape`` are the world fit itself. Every HanCo hand
is a right hand (``hand_side`` right; SiMA never flips HanCo).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterator, Sequence

import numpy as np

from data_pipelines import files, mano_labels, schema, view_table, visibility, workers
from data_pipelines.hanco import layout
from simajax import geometry

BASE_VARIANT = "rgb"


@dataclasses.dataclass
class BuildCounts:
  """What a split's build read and wrote (printed and stored in the dataset metadata).

  Attributes:
    frames: time steps read (each gives one example per variant that has images).
    examples: examples written (frames x variants, less variant copies without any image).
    valid_views: views with ``view_valid`` in the written examples.
    views_missing_variant: views of written variant copies (not ``rgb``) without that image
      (made invalid; the augmented folders cover only part of the data).
    copies_without_images: variant copies not written because none of their 8 images exists.
    views_without_mask: valid views without ``mask_hand`` (``hand_mask`` empty, ``vis_ratio`` -1).
    views_unknown_vis: views whose mesh covers no pixel (``vis_ratio`` -1).
  """
  frames: int = 0
  examples: int = 0
  valid_views: int = 0
  views_missing_variant: int = 0
  copies_without_images: int = 0
  views_without_mask: int = 0
  views_unknown_vis: int = 0

  def summary(self, name: str) -> str:
    """The first three counts, then one line per other non-zero count."""
    return workers.counts_summary(
        self, f"{name}: {self.frames} frames, {self.examples} examples, "
              f"{self.valid_views} valid views", num_headline_fields=3)


def frame_key(sid: int, fid: int, variant: str = BASE_VARIANT) -> str:
  """"hanco/0110/00000024" for rgb, "hanco/0110/00000024/rgb_merged" for a variant copy."""
  key = f"hanco/{sid:04d}/{fid:08d}"
  return key if variant == BASE_VARIANT else f"{key}/{variant}"


def frame_examples(root: pathlib.Path, sid: int, fid: int, mano: mano_labels.ManoModels,
                   counts: BuildCounts, *, variants=(BASE_VARIANT,), with_vis_ratio: bool = True,
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
  """The examples of one time step: one per image variant.

  Args:
    root: the HanCo root.
    sid: sequence id.
    fid: frame id.
    mano: the user's MANO models.
    counts: updated in place.
    variants: image folders to emit, ``rgb`` first (e.g. ("rgb", "rgb_merged")).
    with_vis_ratio: render silhouettes for ``vis_ratio`` (else -1).

  Yields:
    (key, schema example).

  Raises:
    FileNotFoundError / DatasetFormatError: naming the file, for missing or malformed files
      (a missing ``rgb`` image, calib, xyz or MANO fit is an error).
  """
  K, M = layout.read_calib(layout.frame_json_path(root, "calib", sid, fid))
  xyz = layout.read_xyz(layout.frame_json_path(root, "xyz", sid, fid))
  fit_path = layout.frame_json_path(root, "shape", sid, fid)
  fit = layout.read_world_fit(files.require_file(
      fit_path, "the world MANO fit of a frame selected by the split rule (is_valid / has_fit)"))
  verts_c, joints_c = mano.canonical(fit.poses[3:], fit.shapes, "right")
  rest_wrist = mano.rest_wrist("right", fit.shapes)
  world_rot = geometry.axis_angle_to_matrix(fit.poses[:3])
  counts.frames += 1

  labels = []
  for cam in range(layout.NUM_CAMERAS):
    image, image_hw = files.read_image(layout.image_path(root, BASE_VARIANT, sid, cam, fid),
                                       "a HanCo rgb image")
    joints_cam = xyz @ M[cam, :3, :3].T + M[cam, :3, 3]
    global_rot = M[cam, :3, :3] @ world_rot
    mask_path = layout.image_path(root, "mask_hand", sid, cam, fid)
    mask_bytes, vis = b"", schema.UNKNOWN_VIS_RATIO
    if mask_path.is_file():
      mask = files.read_mask(mask_path, "a HanCo hand mask")
      if mask.shape != image_hw:
        raise files.DatasetFormatError(f"{mask_path}: mask size {list(mask.shape)} differs from "
                                       f"the rgb image size {list(image_hw)}")
      mask_bytes = files.encode_mask(mask)
      if with_vis_ratio:
        verts_camera = mano_labels.mesh_in_camera(verts_c, joints_c, global_rot, joints_cam[0],
                                               "right")
        vis = visibility.visibility_ratio(mask, verts_camera, mano.faces, K[cam],
                                          where=f"{mask_path} (view {cam})")
        counts.views_unknown_vis += vis == schema.UNKNOWN_VIS_RATIO
    else:
      counts.views_without_mask += 1
    labels.append(dict(
        image=image, hand_mask=mask_bytes,
        joints_img=(joints_cam @ K[cam].T)[:, :2] / joints_cam[:, 2:], joints_cam=joints_cam,
        global_rot=global_rot,
        mano_pose=np.concatenate([geometry.matrix_to_axis_angle(global_rot), fit.poses[3:]]),
        mano_trans=mano_labels.move_trans(fit.global_t, rest_wrist, M[cam]), vis_ratio=vis))

  frame = {
      "dataset": "hanco",
      "hand_side": "right",
      "hand_model": "mano",
      "has_mesh": True,
      "mano_shape": fit.shapes.astype(np.float32),
      "mano_pose": fit.poses.astype(np.float32),
      "mano_trans": fit.global_t.astype(np.float32),
      "joints_canonical": joints_c.astype(np.float32),
      "verts_canonical": verts_c.astype(np.float32),
  }
  for variant in variants:
    table = view_table.ViewTable([f"cam{c}" for c in range(layout.NUM_CAMERAS)], variant)
    for cam, view in enumerate(labels):
      table.set_camera(cam, K[cam], M[cam])
      if variant != BASE_VARIANT:
        path = layout.image_path(root, variant, sid, cam, fid)
        if not path.is_file():
          continue
        view = dict(view, image=files.read_image(path, f"a HanCo {variant} image")[0])
      table.set_view(cam, **view)
    valid = int(table.arrays["view_valid"].sum())
    if not valid:
      counts.copies_without_images += 1
      continue
    counts.views_missing_variant += layout.NUM_CAMERAS - valid
    counts.valid_views += valid
    counts.examples += 1
    key = frame_key(sid, fid, variant)
    yield key, {"frame_key": key, **frame, "views": table.to_features()}


class FrameReader:
  """``frame_examples`` as a picklable callable on (sid, fid) tasks, for worker processes.

  Calling it returns ([(key, example), ...], the frame's ``BuildCounts``); MANO is loaded once per
  process.
  """

  def __init__(self, root: files.PathLike, mano_path: files.PathLike,
               variants: Sequence[str] = (BASE_VARIANT,), with_vis_ratio: bool = True):
    """Args: see ``frame_examples``; mano_path: MANO_RIGHT."""
    self.root = str(root)
    self.mano_path = str(mano_path)
    self.variants = tuple(variants)
    self.with_vis_ratio = with_vis_ratio

  def __call__(self, task: tuple[int, int]) -> tuple[list[tuple[str, dict[str, Any]]],
                                                     BuildCounts]:
    sid, fid = task
    counts = BuildCounts()
    items = list(frame_examples(pathlib.Path(self.root), sid, fid,
                                mano_labels.cached_mano(self.mano_path), counts,
                                variants=self.variants, with_vis_ratio=self.with_vis_ratio))
    return items, counts
