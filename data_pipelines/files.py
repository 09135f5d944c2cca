"""Reading the raw files of downloaded datasets, with errors that name the file.

Every reader of a raw tree (Dex-YCB, HanCo) goes through these helpers, so that a missing or
malformed file fails with one line naming the path, the key or field, and what was expected:
``require_dir``/``require_file`` for presence, ``read_yaml``/``read_json`` for parsing,
``get_key``/``float_array`` for fields, ``read_image``/``read_mask`` for pictures, and
``encode_mask`` for the schema's stored mask.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from typing import Any, Callable, Sequence, Union

import numpy as np
import yaml
from PIL import Image

from data_pipelines import schema
from simajax.cli import UserError

PathLike = Union[str, os.PathLike]


class DatasetFormatError(UserError):
  """A raw dataset file is missing something or holds something unexpected."""


def require_dir(path: PathLike, what: str) -> pathlib.Path:
  """Returns ``path`` as a Path if it is a directory.

  Args:
    path: the directory.
    what: what it should hold, for the error message.

  Raises:
    FileNotFoundError: naming the path and ``what`` when it is not a directory.
  """
  return _require(path, pathlib.Path.is_dir, "directory", what)


def require_file(path: PathLike, what: str) -> pathlib.Path:
  """Returns ``path`` as a Path if it is a file.

  Raises:
    FileNotFoundError: naming the path and ``what`` when it is not a file.
  """
  return _require(path, pathlib.Path.is_file, "file", what)


def _require(path: PathLike, exists: Callable[[pathlib.Path], bool], kind: str,
             what: str) -> pathlib.Path:
  path = pathlib.Path(path)
  if not exists(path):
    raise FileNotFoundError(f"{path}: {kind} not found; expected {what}")
  return path


def read_yaml(path: PathLike, what: str) -> Any:
  """Parses a YAML file with every scalar kept as a string.

  Dex-YCB's files hold names such as ``20200702_151821`` that a typed YAML loader would turn into
  the integer 20200702151821 (YAML 1.1 allows ``_`` in integers), and serials that may or may not
  be quoted; reading all scalars as text and converting explicitly avoids both traps.

  Args:
    path: the file.
    what: a description for errors (e.g. "Dex-YCB sequence meta.yml").

  Returns:
    Nested dicts/lists of strings.

  Raises:
    FileNotFoundError: when the file is missing.
    DatasetFormatError: when it is not valid YAML.
  """
  path = require_file(path, what)
  try:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
  except yaml.YAMLError as e:
    raise DatasetFormatError(f"{path}: not a valid YAML file ({what}): {e}") from e


def read_json(path: PathLike, what: str) -> Any:
  """Parses a JSON file.

  Raises:
    FileNotFoundError: when the file is missing.
    DatasetFormatError: when it is not valid JSON.
  """
  path = require_file(path, what)
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DatasetFormatError(f"{path}: not a valid JSON file ({what}): {e}") from e


def get_key(mapping: Any, key: str, path: PathLike, expected: str) -> Any:
  """``mapping[key]``, or an error naming the file, the key and what was expected."""
  if not isinstance(mapping, dict) or key not in mapping:
    found = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
    raise DatasetFormatError(f"{path}: missing key '{key}' ({expected}); found {found}")
  return mapping[key]


def float_array(value: Any, shape: Sequence[int], path: PathLike, field: str) -> np.ndarray:
  """Converts nested lists (of numbers or numeric strings) to a float64 array of ``shape``.

  Args:
    value: the parsed value.
    shape: the expected shape; -1 entries accept any size.
    path: the file, for errors.
    field: the field name, for errors.

  Raises:
    DatasetFormatError: when the value is not numeric, has another shape or is not finite.
  """
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise DatasetFormatError(f"{path}: field '{field}' must be numeric, got {value!r}") from e
  if array.ndim != len(shape) or any(s not in (-1, a) for s, a in zip(shape, array.shape)):
    raise DatasetFormatError(
        f"{path}: field '{field}' must have shape {list(shape)}, got {list(array.shape)}")
  if not np.all(np.isfinite(array)):
    raise DatasetFormatError(f"{path}: field '{field}' has non-finite values")
  return array


def read_image(path: PathLike, what: str) -> tuple[bytes, tuple[int, int]]:
  """Reads an encoded image file and checks that it decodes.

  Args:
    path: a JPEG or PNG file.
    what: a description for errors.

  Returns:
    (the file's bytes, unchanged; (height, width)).

  Raises:
    FileNotFoundError: when the file is missing.
    DatasetFormatError: when it cannot be decoded (truncated, not an image).
  """
  path = require_file(path, what)
  data = path.read_bytes()
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      width, height = image.size
  except (OSError, SyntaxError, ValueError) as e:
    raise DatasetFormatError(f"{path}: unreadable image ({what}): {e}") from e
  return data, (height, width)


def read_mask(path: PathLike, what: str) -> np.ndarray:
  """Reads a mask image (JPEG/PNG, any channels) as bool [H, W]: first channel >= 128.

  JPEG masks have compression noise around 0 and 255, so they are thresholded at the middle.

  Raises:
    FileNotFoundError: when the file is missing.
    DatasetFormatError: when it cannot be decoded.
  """
  path = require_file(path, what)
  try:
    with Image.open(path) as image:
      image.load()
      channel = np.asarray(image.getchannel(0) if image.mode not in ("L", "1") else image)
  except (OSError, SyntaxError, ValueError) as e:
    raise DatasetFormatError(f"{path}: unreadable mask image ({what}): {e}") from e
  return channel >= 128


def encode_mask(mask: np.ndarray) -> bytes:
  """bool [H, W] -> 1-channel PNG bytes, 255 on the mask (the schema's ``hand_mask``)."""
  return schema.encode_image(np.where(mask, 255, 0).astype(np.uint8), "png")
