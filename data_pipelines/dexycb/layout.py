"""The official Dex-YCB directory tree: subjects, sequences, meta.yml, calibration, S0 split.

Layout (docs/datasets.md#dex-ycb-layout):

  <root>/<subject>/<YYYYMMDD_HHMMSS>/meta.yml
  <root>/<subject>/<sequence>/<serial>/color_%06d.jpg, labels_%06d.npz
  <root>/calibration/intrinsics/<serial>_640x480.yml
  <root>/calibration/extrinsics_<name>/extrinsics.yml
  <root>/calibration/mano_<name>/mano.yml

Unlike the toolkit, the reader does not insist on 100 sequences per subject (partial downloads and
test fixtures have fewer); the S0 rule is applied to each subject's sorted sequence list as found.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Optional

import numpy as np

from data_pipelines import files

# Subject directories and camera serials, in the toolkit's index order (docs/datasets.md#dex-ycb-layout).
SUBJECTS = (
    "20200709-subject-01", "20200813-subject-02", "20200820-subject-03", "20200903-subject-04",
    "20200908-subject-05", "20200918-subject-06", "20200928-subject-07", "20201002-subject-08",
    "20201015-subject-09", "20201022-subject-10",
)
SERIALS = (
    "836212060125", "839512060362", "840412060917", "841412060263",
    "932122060857", "932122060861", "932122061900", "932122062010",
)
SEQUENCES_PER_SUBJECT = 100
_SEQUENCE_NAME = re.compile(r"^\d{8}_\d{6}$")
# Setup S0 (docs/datasets.md#dex-ycb-splits): sequence i % 5 == 4 is held out; subjects 0-1 -> val.
S0_HELD_OUT_TRIAL = 4
S0_VAL_SUBJECTS = (0, 1)
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Meta:
  """A sequence's ``meta.yml`` (docs/datasets.md#dex-ycb-layout)."""
  serials: tuple[str, ...]
  num_frames: int
  ycb_ids: tuple[int, ...]
  ycb_grasp_ind: int
  mano_side: str
  mano_calib: str
  extrinsics: str


@dataclasses.dataclass(frozen=True)
class SequenceRef:
  """One sequence directory and its place in the S0 split."""
  subject: str
  subject_index: int
  name: str
  index: int
  path: pathlib.Path

  @property
  def s0_split(self) -> str:
    """'train', 'validation' or 'test' by the S0 rule."""
    return s0_split(self.subject_index, self.index)


def s0_split(subject_index: int, sequence_index: int) -> str:
  """The S0 split of a sequence (docs/datasets.md#dex-ycb-splits).

  Args:
    subject_index: index in ``SUBJECTS``.
    sequence_index: index in the subject's sorted sequence list.

  Returns:
    'train' when ``sequence_index % 5 != 4``; otherwise 'validation' for subjects 0-1 and 'test'
    for subjects 2-9.
  """
  if not 0 <= subject_index < len(SUBJECTS):
    raise ValueError(f"subject index {subject_index} outside [0, {len(SUBJECTS)})")
  if sequence_index % 5 != S0_HELD_OUT_TRIAL:
    return "train"
  return "validation" if subject_index in S0_VAL_SUBJECTS else "test"


def list_sequences(root: pathlib.Path) -> list[SequenceRef]:
  """All sequences under a Dex-YCB root, subjects in index order, sequences sorted by name.

  Args:
    root: the directory holding the ``2020xxxx-subject-xx`` folders and ``calibration``.

  Returns:
    The sequences.

  Raises:
    FileNotFoundError: when ``root`` or every subject folder is missing.
    DatasetFormatError: when a subject folder holds no sequence folders.
  """
  root = files.require_dir(root, "the Dex-YCB root with the 2020xxxx-subject-xx folders")
  found = [s for s in SUBJECTS if (root / s).is_dir()]
  if not found:
    raise FileNotFoundError(
        f"{root}: no Dex-YCB subject folder found; expected some of {', '.join(SUBJECTS)}")
  refs = []
  for subject in found:
    names = sorted(p.name for p in (root / subject).iterdir()
                   if p.is_dir() and _SEQUENCE_NAME.match(p.name))
    if not names:
      raise files.DatasetFormatError(
          f"{root / subject}: no sequence folders named YYYYMMDD_HHMMSS")
    refs.extend(SequenceRef(subject, SUBJECTS.index(subject), name, i, root / subject / name)
                for i, name in enumerate(names))
  return refs


def read_meta(path: pathlib.Path) -> Meta:
  """Parses a sequence's ``meta.yml``.

  Raises:
    FileNotFoundError: when it is missing.
    DatasetFormatError: naming the key when a key is missing or malformed.
  """
  data = files.read_yaml(path, "a Dex-YCB sequence meta.yml")
  get = lambda key, expected: files.get_key(data, key, path, expected)
  serials = get("serials", "list of camera serials")
  sides = get("mano_sides", "list with one hand side")
  calib = get("mano_calib", "list with one MANO calibration name")
  ycb_ids = get("ycb_ids", "list of YCB class ids")
  if not isinstance(serials, list) or not serials:
    raise files.DatasetFormatError(f"{path}: 'serials' must be a non-empty list, got {serials!r}")
  unknown = [s for s in serials if s not in SERIALS]
  if unknown:
    raise files.DatasetFormatError(f"{path}: unknown camera serials {unknown}; expected {SERIALS}")
  if not isinstance(sides, list) or len(sides) != 1 or sides[0] not in ("right", "left"):
    raise files.DatasetFormatError(
        f"{path}: 'mano_sides' must be a list with one of 'right'/'left', got {sides!r}")
  if not isinstance(calib, list) or len(calib) != 1 or not isinstance(calib[0], str):
    raise files.DatasetFormatError(
        f"{path}: 'mano_calib' must be a list with one name, got {calib!r}")
  extrinsics = get("extrinsics", "the extrinsics calibration name")
  if not isinstance(extrinsics, str):
    raise files.DatasetFormatError(f"{path}: 'extrinsics' must be a name, got {extrinsics!r}")
  try:
    num_frames = int(get("num_frames", "number of frames"))
    ycb = tuple(int(i) for i in ycb_ids)
    grasp = int(get("ycb_grasp_ind", "index of the grasped object"))
  except (TypeError, ValueError) as e:
    raise files.DatasetFormatError(f"{path}: num_frames, ycb_ids and ycb_grasp_ind must be "
                                   f"integers ({e})") from e
  if num_frames <= 0:
    raise files.DatasetFormatError(f"{path}: 'num_frames' must be positive, got {num_frames}")
  return Meta(serials=tuple(serials), num_frames=num_frames, ycb_ids=ycb, ycb_grasp_ind=grasp,
              mano_side=sides[0], mano_calib=calib[0], extrinsics=extrinsics)


def color_path(sequence: pathlib.Path, serial: str, frame: int) -> pathlib.Path:
  """``<sequence>/<serial>/color_%06d.jpg``."""
  return sequence / serial / f"color_{frame:06d}.jpg"


def labels_path(sequence: pathlib.Path, serial: str, frame: int) -> pathlib.Path:
  """``<sequence>/<serial>/labels_%06d.npz``."""
  return sequence / serial / f"labels_{frame:06d}.npz"


class Calibration:
  """Reads (and caches) ``<root>/calibration``: intrinsics, extrinsics and MANO betas."""

  def __init__(self, root: pathlib.Path):
    self.dir = files.require_dir(pathlib.Path(root) / "calibration",
                                 "the Dex-YCB 'calibration' folder (intrinsics/, extrinsics_*/, "
                                 "mano_*/)")
    self._intrinsics: dict[str, np.ndarray] = {}
    self._extrinsics: dict[str, dict[str, np.ndarray]] = {}
    self._betas: dict[str, np.ndarray] = {}

  def intrinsics(self, serial: str) -> np.ndarray:
    """[3, 3] K of a camera from ``intrinsics/<serial>_640x480.yml`` (the ``color`` block)."""
    if serial not in self._intrinsics:
      path = self.dir / "intrinsics" / f"{serial}_640x480.yml"
      data = files.read_yaml(path, f"the color intrinsics of camera {serial}")
      color = files.get_key(data, "color", path, "a 'color' block with fx, fy, ppx, ppy")
      values = [files.get_key(color, k, path, "color intrinsics")
                for k in ("fx", "fy", "ppx", "ppy")]
      fx, fy, ppx, ppy = files.float_array(values, (4,), path, "color.{fx,fy,ppx,ppy}")
      self._intrinsics[serial] = np.array([[fx, 0, ppx], [0, fy, ppy], [0, 0, 1]])
    return self._intrinsics[serial]

  def cam_to_world(self, name: str, serial: str) -> np.ndarray:
    """[4, 4] camera -> master-camera ("world") transform of ``serial`` in extrinsics ``name``.

    Raises:
      FileNotFoundError: when ``extrinsics_<name>/extrinsics.yml`` is missing.
      DatasetFormatError: when the serial has no 12-value entry.
    """
    if name not in self._extrinsics:
      path = self.dir / f"extrinsics_{name}" / "extrinsics.yml"
      data = files.read_yaml(path, "the camera extrinsics named in meta.yml")
      entries = files.get_key(data, "extrinsics", path, "serial -> 12 floats [R|t] (cam -> master)")
      if not isinstance(entries, dict):
        raise files.DatasetFormatError(f"{path}: 'extrinsics' must map serials to 12 floats")
      table = {}
      for key, value in entries.items():
        transform = np.eye(4)
        transform[:3] = files.float_array(value, (12,), path, f"extrinsics.{key}").reshape(3, 4)
        table[str(key)] = transform
      self._extrinsics[name] = table
    table = self._extrinsics[name]
    if serial not in table:
      raise files.DatasetFormatError(
          f"{self.dir / f'extrinsics_{name}' / 'extrinsics.yml'}: no entry for camera {serial} "
          f"under 'extrinsics' (found {sorted(table)})")
    return table[serial]

  def betas(self, name: str) -> np.ndarray:
    """[10] MANO shape of ``mano_<name>/mano.yml``."""
    if name not in self._betas:
      path = self.dir / f"mano_{name}" / "mano.yml"
      data = files.read_yaml(path, "the MANO shape calibration named in meta.yml")
      self._betas[name] = files.float_array(files.get_key(data, "betas", path, "10 MANO betas"),
                                            (10,), path, "betas")
    return self._betas[name]


def parse_image_name(file_name: str) -> Optional[tuple[str, str, str, int]]:
  """``<subject>/<sequence>/<serial>/color_%06d.jpg`` -> (subject, sequence, serial, frame).

  Returns None when the name does not have that form.
  """
  match = re.fullmatch(r"(?:.*/)?([^/]+)/(\d{8}_\d{6})/(\d+)/color_(\d+)\.jpg", file_name)
  if not match:
    return None
  subject, sequence, serial, frame = match.groups()
  return subject, sequence, serial, int(frame)
