"""Helpers shared by the Dex-YCB and HanCo readers and builders.

Three groups:
  * file access with errors that name the path and what was expected (``require_dir``,
    ``require_file``, ``read_yaml``, ``read_json``, ``read_image``, ``read_mask``);
  * the user's MANO models (``ManoModels``): finger poses from PCA, the rest wrist J0(betas), the
    canonical (zero global rotation) mesh in the right-hand frame, and the camera-frame mesh;
  * per-view label assembly in the shared schema (``ViewTable``) and the visibility ratio of
    docs/DATASETS.md §4 (``visibility_ratio``).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import multiprocessing
import os
import pathlib
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import yaml
from PIL import Image

from data_pipelines import schema
from simajax.cli import UserError

PathLike = Union[str, os.PathLike]
MIRROR = np.array([-1.0, 1.0, 1.0])
# Default builds read fewer frames than this in the main process (see ``num_workers``).
MIN_TASKS_FOR_WORKERS = 64


class DatasetFormatError(UserError):
  """A raw dataset file is missing something or holds something unexpected."""


# ----------------------------------------------------------------------------------------------
# Files.


def require_dir(path: PathLike, what: str) -> pathlib.Path:
  """Returns ``path`` as a Path if it is a directory.

  Args:
    path: the directory.
    what: what it should hold, for the error message.

  Raises:
    FileNotFoundError: naming the path and ``what`` when it is not a directory.
  """
  path = pathlib.Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"{path}: directory not found; expected {what}")
  return path


def require_file(path: PathLike, what: str) -> pathlib.Path:
  """Returns ``path`` as a Path if it is a file.

  Raises:
    FileNotFoundError: naming the path and ``what`` when it is not a file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: file not found; expected {what}")
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


# ----------------------------------------------------------------------------------------------
# MANO.


def left_model_path(right_path: PathLike) -> pathlib.Path:
  """Where MANO_LEFT is expected: next to the right model, with RIGHT/right -> LEFT/left."""
  right_path = pathlib.Path(right_path)
  name = right_path.name.replace("RIGHT", "LEFT").replace("right", "left")
  if name == right_path.name:
    name = "MANO_LEFT" + right_path.suffix
  return right_path.with_name(name)


class ManoModels:
  """The user's MANO_RIGHT (and, on demand, MANO_LEFT) with the few operations builders need.

  Each hand is posed with its own side's model, as the datasets' labels were made (manopth's
  ``ManoLayer(side=...)``): a left hand with MANO_LEFT's PCA basis, mean pose, ``shapedirs`` and
  middle fingertip 445. That matters because the released MANO_LEFT is not the mirror image of
  MANO_RIGHT: its ``shapedirs`` are the right model's, unmirrored (docs/DATASETS.md §3.5), so
  with non-zero betas the mirrored MANO_RIGHT hand differs from the labelled one by centimetres.
  The *result* is then mirrored (x -> -x) into the right-hand frame the network trains in: the
  schema's canonical mesh of a left hand is the mirror image of MANO_LEFT's, and
  ``mesh_in_camera`` mirrors it back, so label, canonical mesh, camera mesh and visibility
  render all describe the same hand.
  """

  def __init__(self, right_path: PathLike):
    """Loads MANO_RIGHT.

    Args:
      right_path: MANO_RIGHT.pkl (or a converted .npz); MANO_LEFT is looked for next to it.

    Raises:
      FileNotFoundError: naming the path and where MANO comes from, when it is missing.
    """
    # Imported here so that reading the raw layouts does not need JAX.
    from simajax.hand import mano
    self._mano = mano
    self.right_path = pathlib.Path(right_path).expanduser()
    if not self.right_path.is_file():
      raise FileNotFoundError(
          f"{self.right_path}: MANO model file not found; expected MANO_RIGHT.pkl from "
          "mano_v1_2.zip (register at https://mano.is.tue.mpg.de), passed with --mano")
    self.right = mano.load_mano(self.right_path, side="right")
    self._left = None

  def model(self, side: str):
    """The MANO model of ``side`` ('right' or 'left'); MANO_LEFT is loaded on first use.

    Raises:
      FileNotFoundError: naming the expected MANO_LEFT path when it is missing.
    """
    if side == "right":
      return self.right
    if side != "left":
      raise ValueError(f"hand side must be 'right' or 'left', got {side!r}")
    if self._left is None:
      path = left_model_path(self.right_path)
      if not path.is_file():
        raise FileNotFoundError(
            f"{path}: MANO_LEFT model file not found; it is needed for the left-hand sequences "
            f"(their PCA poses use the left basis). Put MANO_LEFT.pkl from mano_v1_2.zip next "
            f"to {self.right_path.name}")
      self._left = self._mano.load_mano(path, side="left")
    return self._left

  def pca_to_axis_angle(self, side: str, pca: np.ndarray) -> np.ndarray:
    """[45] PCA coefficients -> [45] finger axis-angles, offsets from ``hands_mean``.

    ``pca · hands_components`` of the hand's own side, without the mean: HandOccNet's JSON form
    and the schema's (docs/DATASETS.md §1.7).
    """
    return np.asarray(pca, np.float64) @ np.asarray(self.model(side).hands_components, np.float64)

  def rest_wrist(self, side: str, betas: np.ndarray) -> np.ndarray:
    """[3] J0(betas): the rest-pose wrist of the shaped template, about which MANO rotates."""
    model = self.model(side)
    shaped = (np.asarray(model.v_template, np.float64)
              + np.asarray(model.shapedirs, np.float64) @ np.asarray(betas, np.float64))
    return np.asarray(model.J_regressor[0], np.float64) @ shaped

  def canonical(self, fingers: np.ndarray, betas: np.ndarray,
                side: str) -> tuple[np.ndarray, np.ndarray]:
    """The schema's canonical hand: zero global rotation, in the right-hand frame.

    Args:
      fingers: [45] finger axis-angles of the ``side`` hand (offsets from its hands_mean).
      betas: [10] shape.
      side: the hand's side; it is posed with that side's model (class docstring), and a left
        hand's mesh and joints are then mirrored (x -> -x).

    Returns:
      (verts [778, 3], joints [21, 3]) float64: a right hand's mesh and joints (for a left hand,
      the mirror image of MANO_LEFT's, with its middle tip 445).
    """
    pose = np.concatenate([np.zeros(3), np.asarray(fingers, np.float64)])[None]
    out = _jitted_forward()(self.model(side), pose.astype(np.float32),
                            np.asarray(betas, np.float32)[None])
    verts = np.asarray(out.vertices, np.float64)[0]
    joints = np.asarray(out.joints21, np.float64)[0]
    if side == "left":
      verts, joints = verts * MIRROR, joints * MIRROR
    return verts, joints

  @property
  def faces(self) -> np.ndarray:
    """[F, 3] triangles of the right model (for silhouettes of either side: the rasterizer
    covers a triangle whatever its winding)."""
    return self.right.faces


@functools.lru_cache(maxsize=4)
def cached_mano(right_path: str) -> ManoModels:
  """``ManoModels(right_path)``, loaded once per process (builders read it for every frame)."""
  return ManoModels(right_path)


@functools.lru_cache(maxsize=1)
def _jitted_forward():
  """``hand_forward`` jitted once per process (the model is an argument, so builds share it)."""
  import jax
  from simajax.hand import forward
  return jax.jit(forward.hand_forward)


def mesh_in_camera(verts_canonical: np.ndarray, joints_canonical: np.ndarray,
                   global_rot: np.ndarray, wrist_cam: np.ndarray, side: str) -> np.ndarray:
  """The original-side camera-frame mesh, root-aligned to the annotated wrist.

  For a right hand ``R (V0 - J0) + wrist``. A left hand's canonical mesh is the mirror image of
  MANO_LEFT's (``ManoModels.canonical``), so it is mirrored back first: ``R M (V0 - J0) + wrist``
  with M = diag(-1, 1, 1), which is MANO_LEFT's own posed mesh (docs/DATASETS.md §4).

  Args:
    verts_canonical: [V, 3] schema canonical mesh.
    joints_canonical: [21, 3] its joints.
    global_rot: [3, 3] original-side root rotation in the camera.
    wrist_cam: [3] annotated camera-frame wrist.
    side: 'right' or 'left'.

  Returns:
    [V, 3] vertices in the camera frame.
  """
  mirror = MIRROR if side == "left" else np.ones(3)
  return schema.derive_verts_cam(verts_canonical * mirror, joints_canonical * mirror,
                                 global_rot, wrist_cam)


def visibility_ratio(hand_pixels: np.ndarray, verts_cam: np.ndarray, faces: np.ndarray,
                     K: np.ndarray, where: str = "view") -> float:
  """H2ONet's visible ratio: hand pixels / rendered-silhouette pixels, whole image (§4).

  The mesh is the unoccluded hand the label describes, so it covers every visible hand pixel and
  the ratio lies in [0, 1]. A ratio above 1 means the mesh is not the labelled hand (e.g. a
  MANO model of the other side, or a mask of something else); it is refused, never stored.

  Args:
    hand_pixels: bool [H, W] visible hand pixels (Dex-YCB seg == 255, HanCo mask_hand).
    verts_cam: [V, 3] the unoccluded hand mesh in the camera frame.
    faces: [F, 3] its triangles.
    K: [3, 3] intrinsics of the image.
    where: the view, for the error message (e.g. its frame key and camera).

  Returns:
    The ratio in [0, 1], or ``schema.UNKNOWN_VIS_RATIO`` when the mesh covers no pixel.

  Raises:
    DatasetFormatError: naming ``where`` when the ratio exceeds 1.
  """
  from simajax.render import rasterizer
  height, width = hand_pixels.shape
  rendered = rasterizer.rasterize(verts_cam, faces, K, height, width).mask
  covered = int(rendered.sum())
  if covered == 0:
    return schema.UNKNOWN_VIS_RATIO
  visible = int(np.count_nonzero(hand_pixels))
  ratio = visible / covered
  if ratio > 1.0:
    raise DatasetFormatError(
        f"{where}: vis_ratio {ratio:.4f} is outside [0, 1]: the hand mask has {visible} pixels "
        f"but the labelled hand's MANO mesh covers only {covered}, so mesh and mask disagree "
        "(the other side's MANO file? a mask that is not this hand's?)")
  return ratio


# ----------------------------------------------------------------------------------------------
# Builders.


def manual_root(manual_dir: Optional[PathLike], dl_manager, instructions: str) -> pathlib.Path:
  """The raw-data directory: the builder's ``manual_dir`` or TFDS's default manual dir.

  Raises:
    FileNotFoundError: with the download instructions when the directory does not exist.
  """
  # pylint: disable-next=protected-access
  path = manual_dir if manual_dir is not None else dl_manager._manual_dir
  if path is None or not pathlib.Path(path).is_dir():
    raise FileNotFoundError(f"manual_dir {path}: directory not found (pass --manual_dir).\n"
                            + instructions)
  return pathlib.Path(path)


def run_tasks(reader: Callable, tasks: Iterable, counts: Any,
              num_workers: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
  """Runs ``reader`` over ``tasks`` in order and yields the examples; merges the counts.

  Args:
    reader: picklable callable: task -> ([(key, example), ...], counts dataclass).
    tasks: the tasks, in output order.
    counts: a counts dataclass, updated in place with every task's counts.
    num_workers: > 1 runs the reader in that many 'spawn' processes (the parent may run JAX
      threads, which must not be forked); results keep the task order.

  Yields:
    (key, example), in task order, each checked with ``schema.validate_example``.
  """
  def checked(items, delta):
    _add_counts(counts, delta)
    for key, example in items:
      schema.validate_example(example, key)
      yield key, example

  if num_workers <= 1:
    for items, delta in map(reader, tasks):
      yield from checked(items, delta)
    return
  with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
    for items, delta in pool.imap(reader, tasks, chunksize=2):
      yield from checked(items, delta)


def _add_counts(total, delta) -> None:
  for field in dataclasses.fields(total):
    setattr(total, field.name, getattr(total, field.name) + getattr(delta, field.name))


def num_workers(requested: Optional[int], num_tasks: int) -> int:
  """Worker processes for a build: ``requested``, or by default the CPU count (1 for fewer than
  ``MIN_TASKS_FOR_WORKERS`` tasks, where starting processes costs more than it saves)."""
  if requested is not None:
    return requested
  return 1 if num_tasks < MIN_TASKS_FOR_WORKERS else (os.cpu_count() or 1)


def report_counts(builder, split: str, counts) -> None:
  """Prints a split's build counts and records them in the dataset metadata.

  Args:
    builder: the TFDS builder (its ``info.metadata`` must be a ``MetadataDict``).
    split: the split name.
    counts: a dataclass with a ``summary(name)`` method.
  """
  text = counts.summary(f"{builder.name}/{builder.builder_config.name} {split}")
  print(text, flush=True)
  logging.info(text)
  builder.info.metadata.setdefault("build_counts", {})[split] = dataclasses.asdict(counts)


# ----------------------------------------------------------------------------------------------
# Schema assembly.


@dataclasses.dataclass
class ViewTable:
  """The per-view fields of one example, filled view by view (invalid views keep defaults).

  Defaults describe an invalid view: empty image and mask, zeros for labels, identity rotation,
  ``vis_ratio`` -1. ``K`` and ``world2cam`` should be filled for every view that has a camera.
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
    self.variants = [self.bg_variant] * n

  def set_camera(self, view: int, K: np.ndarray, world2cam: np.ndarray) -> None:
    """Stores a view's calibration (also for views without a hand)."""
    self.arrays["K"][view] = K
    self.arrays["world2cam"][view] = world2cam

  def set_view(self, view: int, *, image: bytes, hand_mask: bytes, joints_img: np.ndarray,
               joints_cam: np.ndarray, global_rot: np.ndarray, mano_pose: np.ndarray,
               mano_trans: np.ndarray, vis_ratio: float,
               bg_variant: Optional[str] = None) -> None:
    """Fills a valid view's image and labels (see ``data_pipelines.schema`` for the fields)."""
    self.images[view] = image
    self.masks[view] = hand_mask
    if bg_variant is not None:
      self.variants[view] = bg_variant
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
            "camera_id": list(self.camera_ids), "bg_variant": list(self.variants)}


def zero_mesh() -> tuple[np.ndarray, np.ndarray]:
  """Zeros for the canonical fields of a frame without a mesh."""
  return (np.zeros((schema.NUM_VERTS, 3), np.float32), np.zeros((schema.NUM_JOINTS, 3), np.float32))


def rigid_inverse(transform: np.ndarray) -> np.ndarray:
  """Inverse of a [4, 4] rigid transform [R | t; 0 0 0 1]: [R^T | -R^T t]."""
  rot, trans = transform[:3, :3], transform[:3, 3]
  out = np.eye(4)
  out[:3, :3] = rot.T
  out[:3, 3] = -rot.T @ trans
  return out


def move_trans(trans: np.ndarray, rest_wrist: np.ndarray, transform: np.ndarray) -> np.ndarray:
  """Moves a MANO translation into another frame: R_M (J0 + t) + t_M - J0 (docs/DATASETS.md §2.3).

  MANO rotates about the rest wrist J0, so the wrist sits at J0 + t in the source frame; that
  point is transformed and J0 subtracted again. The root rotation moves separately (R_M R).

  Args:
    trans: [3] translation in the source frame.
    rest_wrist: [3] J0(betas) of the model the translation belongs to.
    transform: [4, 4] source -> target rigid transform.

  Returns:
    [3] translation in the target frame.
  """
  return transform[:3, :3] @ (rest_wrist + trans) + transform[:3, 3] - rest_wrist
