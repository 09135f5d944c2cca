"""Dex-YCB raw files -> examples of the shared schema (one example per multi-view frame).

For each sequence (``meta.yml``) and frame, the 8 views are read in ``layout.SERIALS`` order:
  * a view is valid when its ``labels_%06d.npz`` has a hand label (``joint_3d`` not all -1) and a
    MANO pose (``pose_m`` not all 0); in the HandOccNet-split mode it must also be listed in the
    split's JSON;
  * ``joints_cam``/``joints_img`` are the labels' ``joint_3d``/``joint_2d`` (original side);
  * ``mano_pose`` = [root axis-angle in this camera, pca · hands_components of the hand's own
    side] (HandOccNet's axis-angle form: offsets from hands_mean), ``mano_trans`` = pose_m[48:51],
    ``global_rot`` = Rodrigues(root);
  * the canonical mesh is the hand's own side's MANO model (MANO_LEFT's arrays for a left hand,
    as the labels were made) with zero root rotation, mirrored into the right-hand frame for a
    left hand (``mano_labels.ManoModels.canonical``); with ``global_rot`` and the annotated
    wrist it gives the camera mesh (``mano_labels.mesh_in_camera``), whose silhouette against
    ``seg == 255`` is ``vis_ratio`` (a ratio above 1 is an error naming the view);
  * frame-level ``mano_pose``/``mano_trans`` are expressed in the master-camera ("world") frame,
    from the first valid view and its extrinsic.
Frames without any valid view are skipped and counted (``BuildCounts``). ``FrameReader`` does the
work of one frame and is picklable, so a builder can spread frames over worker processes
(``workers.run_tasks``).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from data_pipelines import files, mano_labels, schema, view_table, visibility, workers
from data_pipelines.dexycb import handoccnet, labels as labels_lib, layout
from simajax import geometry

# Joints of a listed view must match the raw joint_3d within this (metres) in the cross-check.
JSON_JOINT_TOLERANCE = 1e-4


@dataclasses.dataclass
class BuildCounts:
  """What a split's build read, kept and skipped (printed and stored in the dataset metadata).

  Attributes:
    frames: examples written.
    skipped_no_hand_frames: frames whose views all lack a hand label (not written).
    valid_views: views with ``view_valid`` in the written frames.
    views_without_hand: views of written frames without a hand label (joint_3d all -1).
    views_joints_without_mano: views of written frames with joint_3d but pose_m all zero (made
      invalid).
    views_missing_camera: view slots of written frames whose serial is not in the sequence's
      meta.yml.
    views_unknown_vis: valid views whose mesh covers no pixel (``vis_ratio`` -1).
    views_not_in_json: HandOccNet mode: views of written frames with a hand label that the JSON
      does not list (made invalid).
    views_json_without_hand: HandOccNet mode: listed views whose raw labels have no hand.
    views_json_joint_mismatch: HandOccNet mode: listed views whose JSON joints differ from
      joint_3d by more than ``JSON_JOINT_TOLERANCE`` (kept; raw labels are used).
  """
  frames: int = 0
  skipped_no_hand_frames: int = 0
  valid_views: int = 0
  views_without_hand: int = 0
  views_joints_without_mano: int = 0
  views_missing_camera: int = 0
  views_unknown_vis: int = 0
  views_not_in_json: int = 0
  views_json_without_hand: int = 0
  views_json_joint_mismatch: int = 0

  def summary(self, name: str) -> str:
    """The first three counts, then one line per other non-zero count."""
    return workers.counts_summary(
        self, f"{name}: {self.frames} frames, {self.valid_views} valid views, "
              f"{self.skipped_no_hand_frames} frames skipped (no hand label in any view)",
        num_headline_fields=3)


@dataclasses.dataclass(frozen=True)
class _Camera:
  K: np.ndarray
  cam_to_world: np.ndarray
  world_to_cam: np.ndarray


@dataclasses.dataclass
class _View:
  index: int
  image: bytes
  labels: labels_lib.Labels
  fingers: np.ndarray
  global_rot: np.ndarray


def frame_key(subject: str, sequence: str, frame: int) -> str:
  """The example key, e.g. "dexycb/20200709-subject-01/20200709_141754/000012"."""
  return f"dexycb/{subject}/{sequence}/{frame:06d}"


@dataclasses.dataclass(frozen=True)
class FrameTask:
  """One frame to read: the sequence, the frame index and (HandOccNet mode) its listed views."""
  sequence: layout.SequenceRef
  frame: int
  listed: Optional[dict[str, np.ndarray]] = None


def frame_tasks(sequences: Sequence[layout.SequenceRef], *, frame_step: int = 1,
                listed: Optional[dict[handoccnet.FrameKey, dict[str, np.ndarray]]] = None,
                ) -> Iterator[FrameTask]:
  """The frames of a split, in sequence then frame order.

  Args:
    sequences: the split's sequences.
    frame_step: keep frames 0, step, 2 step, ...
    listed: HandOccNet mode: the split's views per frame (``handoccnet.read_split``); frames it
      does not list are left out.

  Yields:
    The tasks.
  """
  if frame_step < 1:
    raise ValueError(f"frame_step must be >= 1, got {frame_step}")
  for seq in sequences:
    meta = layout.read_meta(seq.path / "meta.yml")
    for frame in range(0, meta.num_frames, frame_step):
      if listed is None:
        yield FrameTask(seq, frame)
      elif (seq.subject, seq.name, frame) in listed:
        yield FrameTask(seq, frame, listed[(seq.subject, seq.name, frame)])


class FrameReader:
  """Reads frames of one Dex-YCB tree into schema examples (picklable for worker processes).

  Calling it on a ``FrameTask`` returns ([(key, example)] or [] for a skipped frame, the frame's
  ``BuildCounts``). Calibration, MANO and per-sequence data are cached per process.
  """

  def __init__(self, root: files.PathLike, mano_path: files.PathLike, with_vis_ratio: bool = True):
    """Args: root: the Dex-YCB root; mano_path: MANO_RIGHT; with_vis_ratio: render silhouettes."""
    self.root = str(root)
    self.mano_path = str(mano_path)
    self.with_vis_ratio = with_vis_ratio

  def __call__(self, task: FrameTask) -> tuple[list[tuple[str, dict[str, Any]]], BuildCounts]:
    """Reads one frame.

    Raises:
      FileNotFoundError / DatasetFormatError: naming the file, for missing or malformed files.
    """
    seq = _sequence_data(self.root, str(task.sequence.path))
    mano = mano_labels.cached_mano(self.mano_path)
    counts = BuildCounts()
    example = _frame_example(task.sequence, task.frame, seq, mano, counts, self.with_vis_ratio,
                             task.listed)
    if example is None:
      counts.skipped_no_hand_frames += 1
      return [], counts
    counts.frames += 1
    return [(example["frame_key"], example)], counts


@dataclasses.dataclass(frozen=True)
class _SequenceData:
  meta: layout.Meta
  betas: np.ndarray
  cameras: dict


@functools.lru_cache(maxsize=8)
def _sequence_data(root: str, sequence_path: str) -> _SequenceData:
  """meta.yml, betas and cameras of a sequence (cached: frames of a sequence come together)."""
  calib = _calibration(root)
  meta = layout.read_meta(pathlib.Path(sequence_path) / "meta.yml")
  cameras = {}
  for serial in meta.serials:
    c2w = calib.cam_to_world(meta.extrinsics, serial)
    cameras[serial] = _Camera(calib.intrinsics(serial), c2w, _rigid_inverse(c2w))
  return _SequenceData(meta, calib.betas(meta.mano_calib), cameras)


@functools.lru_cache(maxsize=2)
def _calibration(root: str) -> layout.Calibration:
  return layout.Calibration(pathlib.Path(root))


def _rigid_inverse(transform: np.ndarray) -> np.ndarray:
  """Inverse of a [4, 4] rigid transform [R | t; 0 0 0 1]: [R^T | -R^T t]."""
  rot, trans = transform[:3, :3], transform[:3, 3]
  out = np.eye(4)
  out[:3, :3] = rot.T
  out[:3, 3] = -rot.T @ trans
  return out


def _frame_example(seq, frame, data, mano, counts, with_vis_ratio, frame_listed):
  meta, betas, cameras, side = data.meta, data.betas, data.cameras, data.meta.mano_side
  table = view_table.ViewTable(layout.SERIALS, "rgb")
  views, rejected = [], []
  for v, serial in enumerate(layout.SERIALS):
    if serial not in cameras:
      rejected.append("views_missing_camera")
      continue
    camera = cameras[serial]
    table.set_camera(v, camera.K, camera.world_to_cam)
    color = files.require_file(layout.color_path(seq.path, serial, frame),
                               f"the Dex-YCB color image of frame {frame} (meta.yml num_frames="
                               f"{meta.num_frames})")
    labels = labels_lib.read_labels(layout.labels_path(seq.path, serial, frame))
    reason = _rejection(labels, serial, frame_listed, counts)
    if reason:
      rejected.append(reason)
      continue
    image, image_hw = files.read_image(color, "a Dex-YCB color image")
    if labels.seg.shape != image_hw:
      raise files.DatasetFormatError(
          f"{layout.labels_path(seq.path, serial, frame)}: key 'seg' has shape "
          f"{list(labels.seg.shape)}, expected the color image size {list(image_hw)}")
    views.append(_View(v, image, labels, mano.pca_to_axis_angle(side, labels.pca),
                       geometry.axis_angle_to_matrix(labels.root_axis_angle)))
  if not views:
    return None
  for reason in rejected:
    setattr(counts, reason, getattr(counts, reason) + 1)

  fingers = views[0].fingers
  verts_c, joints_c = mano.canonical(fingers, betas, side)
  for view in views:
    labels = view.labels
    serial = layout.SERIALS[view.index]
    camera = cameras[serial]
    vis = schema.UNKNOWN_VIS_RATIO
    if with_vis_ratio:
      verts_camera = mano_labels.mesh_in_camera(verts_c, joints_c, view.global_rot,
                                             labels.joint_3d[0], side)
      vis = visibility.visibility_ratio(
          labels.hand_pixels, verts_camera, mano.faces, camera.K,
          where=f"{layout.labels_path(seq.path, serial, frame)} (view {view.index}, camera "
                f"{serial}, {side} hand)")
      counts.views_unknown_vis += vis == schema.UNKNOWN_VIS_RATIO
    table.set_view(
        view.index, image=view.image, hand_mask=files.encode_mask(labels.hand_pixels),
        joints_img=labels.joint_2d, joints_cam=labels.joint_3d, global_rot=view.global_rot,
        mano_pose=np.concatenate([labels.root_axis_angle, view.fingers]),
        mano_trans=labels.trans, vis_ratio=vis)
  counts.valid_views += len(views)

  first = views[0]
  c2w = cameras[layout.SERIALS[first.index]].cam_to_world
  world_rot = c2w[:3, :3] @ first.global_rot
  world_trans = mano_labels.move_trans(first.labels.trans, mano.rest_wrist(side, betas), c2w)
  return {
      "frame_key": frame_key(seq.subject, seq.name, frame),
      "dataset": "dexycb",
      "hand_side": side,
      "hand_model": "mano",
      "has_mesh": True,
      "mano_shape": betas.astype(np.float32),
      "mano_pose": np.concatenate([geometry.matrix_to_axis_angle(world_rot),
                                   fingers]).astype(np.float32),
      "mano_trans": world_trans.astype(np.float32),
      "joints_canonical": joints_c.astype(np.float32),
      "verts_canonical": verts_c.astype(np.float32),
      "views": table.to_features(),
  }


def _rejection(labels: labels_lib.Labels, serial: str,
               frame_listed: Optional[dict[str, np.ndarray]], counts: BuildCounts) -> str:
  """Why a view is invalid: the name of its ``BuildCounts`` field, or "" when it is valid.

  The JSON cross-check counters are updated here; the returned reason is counted by the caller
  only when the frame is written.
  """
  if frame_listed is not None:
    in_json = serial in frame_listed
    if in_json and not labels.has_hand:
      counts.views_json_without_hand += 1
      return "views_without_hand"
    if labels.has_hand and not in_json:
      return "views_not_in_json"
    if in_json and np.max(np.abs(frame_listed[serial] - labels.joint_3d)) > JSON_JOINT_TOLERANCE:
      counts.views_json_joint_mismatch += 1
  if not labels.has_hand:
    return "views_without_hand"
  if not labels.has_mano:
    return "views_joints_without_mano"
  return ""


def split_sequences(root: pathlib.Path) -> dict[str, list[layout.SequenceRef]]:
  """The raw tree's sequences grouped by S0 split (empty splits omitted)."""
  groups: dict[str, list[layout.SequenceRef]] = {}
  for seq in layout.list_sequences(root):
    groups.setdefault(seq.s0_split, []).append(seq)
  return {split: groups[split] for split in layout.SPLITS if split in groups}
