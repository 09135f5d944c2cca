"""The official HanCo tree, its per-frame JSON files and the train/test rules.

Layout (docs/datasets.md#hanco-layout; sid = 4 digits, c = camera 0..7, fid = 8 digits):

  <root>/meta.json
  <root>/rgb/<sid>/cam<c>/<fid>.jpg          every sequence
  <root>/rgb_merged/<sid>/cam<c>/<fid>.jpg   background-composited copies (a subset)
  <root>/rgb_color_auto/<sid>/...            another augmented copy (used by one split rule)
  <root>/mask_hand/<sid>/cam<c>/<fid>.jpg    hand mask (JPEG, threshold at 128)
  <root>/calib/<sid>/<fid>.json              {"K": 8 x 3x3, "M": 8 x 4x4 world -> camera}
  <root>/xyz/<sid>/<fid>.json                21 x 3 world joints (metres, OpenPose order)
  <root>/shape/<sid>/<fid>.json              world MANO fit {"poses", "shapes", "global_t"}

The number of sequences and of frames per sequence is taken from ``meta.json`` (1518 on the full
data set; fewer in a partial download or a fixture).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from data_pipelines import files

NUM_CAMERAS = 8
META_KEYS = ("is_train", "subject_id", "is_valid", "object_id", "has_fit")
SPLIT_RULES = ("is_valid", "has_fit_color_auto")
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Meta:
  """``meta.json``: per sequence, one value per frame for each key."""
  is_train: list
  subject_id: list
  is_valid: list
  object_id: list
  has_fit: list

  @property
  def num_sequences(self) -> int:
    return len(self.is_train)

  def num_frames(self, sid: int) -> int:
    return len(self.is_train[sid])


@dataclasses.dataclass(frozen=True)
class WorldFit:
  """A world-frame MANO fit: full axis-angle pose (fingers relative to hands_mean), shape,
  translation (added after rotating about J0)."""
  poses: np.ndarray
  shapes: np.ndarray
  global_t: np.ndarray


def read_meta(root: pathlib.Path) -> Meta:
  """Parses and checks ``<root>/meta.json``.

  Raises:
    FileNotFoundError: when it is missing.
    DatasetFormatError: naming the key for a missing key or mismatching per-sequence lengths.
  """
  path = pathlib.Path(root) / "meta.json"
  data = files.read_json(path, "HanCo's meta.json (is_train, subject_id, is_valid, object_id, "
                         "has_fit)")
  values = {key: files.get_key(data, key, path, "a list with one per-frame list per sequence")
            for key in META_KEYS}
  lengths = {key: len(v) if isinstance(v, list) else None for key, v in values.items()}
  if len(set(lengths.values())) != 1 or None in lengths.values():
    raise files.DatasetFormatError(f"{path}: every key must be a list of the same length (one "
                                   f"entry per sequence), got lengths {lengths}")
  for sid in range(lengths["is_train"]):
    frames = {key: len(values[key][sid]) if isinstance(values[key][sid], list) else None
              for key in META_KEYS}
    if len(set(frames.values())) != 1 or None in frames.values():
      raise files.DatasetFormatError(
          f"{path}: sequence {sid} must have one value per frame under every key, got "
          f"lengths {frames}")
  return Meta(**values)


def image_path(root: pathlib.Path, variant: str, sid: int, cam: int, fid: int) -> pathlib.Path:
  """``<root>/<variant>/<sid:04d>/cam<c>/<fid:08d>.jpg``; variant: rgb, rgb_merged, mask_hand..."""
  return pathlib.Path(root) / variant / f"{sid:04d}" / f"cam{cam}" / f"{fid:08d}.jpg"


def frame_json_path(root: pathlib.Path, kind: str, sid: int, fid: int) -> pathlib.Path:
  """``<root>/<kind>/<sid:04d>/<fid:08d>.json`` (kind: calib, xyz, shape)."""
  return pathlib.Path(root) / kind / f"{sid:04d}" / f"{fid:08d}.json"


def read_calib(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """(K [8, 3, 3], M [8, 4, 4] world -> camera) of one time step."""
  data = files.read_json(path, "a HanCo calib file {K: 8 x 3x3, M: 8 x 4x4}")
  K = files.float_array(files.get_key(data, "K", path, "8 intrinsic matrices"),
                        (NUM_CAMERAS, 3, 3), path, "K")
  M = files.float_array(files.get_key(data, "M", path, "8 world-to-camera matrices"),
                        (NUM_CAMERAS, 4, 4), path, "M")
  return K, M


def read_xyz(path: pathlib.Path) -> np.ndarray:
  """[21, 3] world joints (metres, OpenPose order)."""
  data = files.read_json(path, "HanCo world keypoints (21 x [x, y, z])")
  return files.float_array(data, (21, 3), path, "xyz")


def read_world_fit(path: pathlib.Path) -> WorldFit:
  """A world MANO fit; each value is flattened (files nest them in singleton lists, docs/datasets.md#hanco-layout)."""
  data = files.read_json(path, "a HanCo world MANO fit {poses: 48, shapes: 10, global_t: 3}")
  sizes = {"poses": 48, "shapes": 10, "global_t": 3}
  values = {}
  for key, size in sizes.items():
    raw = files.get_key(data, key, path, f"{size} values")
    try:
      value = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
      raise files.DatasetFormatError(f"{path}: key '{key}' must be numeric, got {raw!r}") from e
    if value.size != size or not np.all(np.isfinite(value)):
      raise files.DatasetFormatError(
          f"{path}: key '{key}' must hold {size} finite values, got {value.size}")
    values[key] = value
  return WorldFit(**values)


def split_frames(root: pathlib.Path, meta: Meta, rule: str = "is_valid",
                 frame_step: int = 1) -> dict[str, list[tuple[int, int]]]:
  """The (sid, fid) pairs of each split, in sequence then frame order.

  Rules (docs/datasets.md#hanco-splits; SiMA's own split code is not released):
    * "is_valid" (default): frames with ``is_valid``; train if ``is_train`` else test.
    * "has_fit_color_auto" (a third-party loader's rule): every frame of the sequences whose
      frames all have ``has_fit``; train if ``<root>/rgb_color_auto/<sid>`` exists, else test.

  Args:
    root: the HanCo root.
    meta: its ``meta.json``.
    rule: one of ``SPLIT_RULES``.
    frame_step: keep frame ids divisible by this.

  Returns:
    {"train": [...], "test": [...]}.
  """
  if rule not in SPLIT_RULES:
    raise ValueError(f"HanCo split rule {rule!r}, expected one of {SPLIT_RULES}")
  if frame_step < 1:
    raise ValueError(f"frame_step must be >= 1, got {frame_step}")
  splits = {split: [] for split in SPLITS}
  for sid in range(meta.num_sequences):
    fids = range(0, meta.num_frames(sid), frame_step)
    if rule == "is_valid":
      for fid in fids:
        if meta.is_valid[sid][fid]:
          splits["train" if meta.is_train[sid][fid] else "test"].append((sid, fid))
    elif all(meta.has_fit[sid]):
      augmented = (pathlib.Path(root) / "rgb_color_auto" / f"{sid:04d}").is_dir()
      splits["train" if augmented else "test"].extend((sid, fid) for fid in fids)
  return splits
