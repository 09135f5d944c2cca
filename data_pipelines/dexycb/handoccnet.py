"""Split membership from HandOccNet's ``DEX_YCB_s0_{train,test}_data.json`` (optional).

The file is COCO-style (docs/datasets.md#handoccnet-annotations): ``images`` with ``id`` and ``file_name``
(``<subject>/<sequence>/<serial>/color_%06d.jpg``), ``annotations`` with ``image_id`` and
``joints_coord_cam`` among others; unknown keys are ignored. Only *which views belong to the
split* and their annotated 3D joints (for a cross-check against the raw labels) are taken from it;
every label still comes from the raw files.
"""

from __future__ import annotations

import pathlib

import numpy as np

from data_pipelines import files
from data_pipelines.dexycb import layout

FrameKey = tuple[str, str, int]  # (subject, sequence, frame)
DEFAULT_TEMPLATE = "DEX_YCB_s0_{split}_data.json"


def json_path(root: pathlib.Path, split: str, template: str = DEFAULT_TEMPLATE) -> pathlib.Path:
  """``<root>/annotations/<template with split>``."""
  return pathlib.Path(root) / "annotations" / template.format(split=split)


def read_split(path: pathlib.Path) -> dict[FrameKey, dict[str, np.ndarray]]:
  """The views a HandOccNet JSON lists, grouped by frame.

  Args:
    path: the JSON file.

  Returns:
    {(subject, sequence, frame): {serial: joints_coord_cam [21, 3] (metres)}}.

  Raises:
    FileNotFoundError: when the file is missing.
    DatasetFormatError: naming the file and entry for missing keys or malformed file names.
  """
  data = files.read_json(path, "HandOccNet's Dex-YCB S0 annotation JSON")
  images = files.get_key(data, "images", path, "COCO image list")
  annotations = files.get_key(data, "annotations", path, "COCO annotation list")
  names = {}
  for image in images:
    image_id = files.get_key(image, "id", path, "image id")
    name = files.get_key(image, "file_name", path, "<subject>/<sequence>/<serial>/color_%06d.jpg")
    parsed = layout.parse_image_name(name)
    if parsed is None:
      raise files.DatasetFormatError(
          f"{path}: image file_name {name!r} is not <subject>/<sequence>/<serial>/color_%06d.jpg")
    names[image_id] = parsed
  frames: dict[FrameKey, dict[str, np.ndarray]] = {}
  for ann in annotations:
    image_id = files.get_key(ann, "image_id", path, "the annotated image id")
    if image_id not in names:
      raise files.DatasetFormatError(f"{path}: annotation refers to unknown image_id {image_id}")
    subject, sequence, serial, frame = names[image_id]
    joints = files.float_array(files.get_key(ann, "joints_coord_cam", path, "21x3 camera joints"),
                               (21, 3), path, f"annotations[image_id={image_id}].joints_coord_cam")
    frames.setdefault((subject, sequence, frame), {})[serial] = joints
  return frames
