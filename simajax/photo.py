"""Hand photos in and out of the SVR: reading, boxes, the official crop, left hands, overlays.

Input side (``photo_specs``, ``read_photo``, ``crop_photo``): a photo is cropped exactly as the
official pre-processing crops a test image (docs/training.md#crops-and-augmentation, ``preprocessing.crop``):

  * with a user box (x0, y0, x1, y1), the box is treated like the official 2D joints' min/max box:
    expanded ``BBOX_EXPANSION`` (1.5x) about its centre, clipped to the image, made square. The
    joints' box of a hand is a little tighter than a detector's box around the skin, so a detector
    box gives a slightly looser framing than in training; ``expansion`` changes the factor (1.0
    uses the box as it is, made square).
  * without a box, the whole image made square about its centre (the official test-time
    fallback); the part of the square outside the image is zero padding.
  * the square is warped to the model input with the training warp (bilinear, zero border), then
    divided by 255.
  * a left hand is flipped horizontally before cropping (the network only knows right hands);
    ``mirror_outputs`` then mirrors the predictions back to the photo's left hand.

Output side: ``joints_to_photo`` maps the 2D joints from the crop to photo pixels through the
inverse crop affine; ``weak_perspective_fit`` and ``render_overlay`` draw the predicted mesh on the
photo. The network predicts no camera translation, so the overlay uses a weak-perspective camera:
the scale s and 2D offset t minimising sum_j |s (X_j, Y_j) + t - p_j|^2 over the predicted 3D
joints (X, Y) and the predicted 2D joints p in photo pixels. The 3D outputs are in the camera's
orientation (x right, y down), so no rotation is fitted.

Pixel coordinates follow OpenCV and ``simajax.render`` (pixel centres at integers).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from simajax import hand
from simajax.cli import UserError
from simajax.preprocessing import augment, crop
from simajax.render import draw, mesh_io

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BBOX_EXPANSION = crop.BBOX_EXPANSION
# Distance (metres) of the mesh from the camera that renders the weak-perspective overlay: the
# perspective error relative to the fit is about (hand depth extent) / distance, 1e-3 here.
OVERLAY_DISTANCE = 100.0


@dataclasses.dataclass(frozen=True)
class PhotoSpec:
  """One input photo.

  Attributes:
    path: the image file.
    name: stem of its output files (``<name>.obj`` ...).
    box: float64 [4] (x0, y0, x1, y1) in photo pixels, or None for the whole image.
    left: whether the photo shows a left hand.
  """
  path: pathlib.Path
  name: str
  box: Optional[np.ndarray]
  left: bool


@dataclasses.dataclass(frozen=True)
class PhotoCrop:
  """A photo cropped for the network.

  Attributes:
    image: float32 [S, S, 3] in [0, 1], the network input (for a left hand: of the flipped photo).
    box: float64 [4] (x, y, w, h) the square crop box in photo pixels (unflipped photo).
    affine: float64 [2, 3] photo pixels -> pixels of the crop as the photo shows it, i.e. where
      ``joints_2d * S`` lies after ``mirror_outputs``; for a left hand it includes the flip.
    width: photo width in pixels.
    height: photo height in pixels.
    left: whether the photo was flipped.
  """
  image: np.ndarray
  box: np.ndarray
  affine: np.ndarray
  width: int
  height: int
  left: bool


def list_photos(paths: Sequence[PathLike]) -> list[pathlib.Path]:
  """The image files named by ``paths``: files as given, directories' .jpg/.jpeg/.png (sorted).

  Raises:
    FileNotFoundError: naming a path that does not exist.
    UserError: for a directory with no images, or two photos with the same file stem (their
      output files would collide).
  """
  photos = []
  for path in map(pathlib.Path, paths):
    if path.is_dir():
      found = sorted(p for p in path.iterdir()
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
      if not found:
        raise UserError(f"{path}: directory has no {'/'.join(IMAGE_SUFFIXES)} files")
      photos.extend(found)
    elif path.is_file():
      photos.append(path)
    else:
      raise FileNotFoundError(f"image file not found: {path}")
  by_stem = {}
  for path in photos:
    if path.stem in by_stem:
      raise UserError(f"{by_stem[path.stem]} and {path} would write the same output files "
                       f"{path.stem}.*; rename one of them")
    by_stem[path.stem] = path
  return photos


def parse_box(values: Any, source: str) -> np.ndarray:
  """A user box as float64 [4] (x0, y0, x1, y1).

  Raises:
    UserError: naming ``source``, unless the values are 4 finite numbers with x0 < x1, y0 < y1.
  """
  expected = "4 numbers [x0, y0, x1, y1] (photo pixels)"
  try:
    box = np.asarray(values, dtype=np.float64)
  except (TypeError, ValueError):
    raise UserError(f"{source}: box must be {expected}, got {values!r}") from None
  if box.shape != (4,):
    raise UserError(f"{source}: box must be {expected}, got {values!r}")
  if not np.all(np.isfinite(box)):
    raise UserError(f"{source}: box values must be finite, got {values!r}")
  if box[2] <= box[0] or box[3] <= box[1]:
    raise UserError(f"{source}: box must have x0 < x1 and y0 < y1, got {values!r}")
  return box


def read_boxes_json(path: PathLike) -> dict[str, tuple[Optional[np.ndarray], Optional[bool]]]:
  """Per-photo boxes and sides from a JSON object.

  Each entry maps a photo (its file name, or its path as given) to either a box
  ``[x0, y0, x1, y1]`` or an object ``{"box": [x0, y0, x1, y1], "left": true}`` (both fields
  optional).

  Returns:
    key -> (box or None, left or None).

  Raises:
    FileNotFoundError / UserError: naming the file and the entry at fault.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"boxes file not found: {path}")
  try:
    raw = json.loads(path.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(raw, dict):
    raise UserError(f"{path}: expected a JSON object {{file name: [x0, y0, x1, y1]}}, got "
                     f"{type(raw).__name__}")
  entries = {}
  for key, value in raw.items():
    source = f"{path}: entry {key!r}"
    if isinstance(value, dict):
      unknown = sorted(set(value) - {"box", "left"})
      if unknown:
        raise UserError(f"{source}: unknown fields {unknown} (expected 'box' and/or 'left')")
      left = value.get("left")
      if left is not None and not isinstance(left, bool):
        raise UserError(f"{source}: 'left' must be true or false, got {left!r}")
      box = value.get("box")
      entries[key] = (None if box is None else parse_box(box, source), left)
    else:
      entries[key] = (parse_box(value, source), None)
  return entries


def photo_specs(paths: Sequence[PathLike], *, box: Optional[Sequence[float]] = None,
                boxes_json: Optional[PathLike] = None, left: bool = False) -> list[PhotoSpec]:
  """The photos to predict on, with their boxes and sides.

  Args:
    paths: image files and/or directories of them.
    box: one (x0, y0, x1, y1) box for every photo.
    boxes_json: per-photo boxes and sides (``read_boxes_json``); photos without an entry use the
      whole image.
    left: every photo shows a left hand, unless its JSON entry says ``"left": false``.

  Raises:
    UserError / FileNotFoundError: naming the file or entry at fault; also when both ``box`` and
      ``boxes_json`` are given, or a JSON entry matches no photo.
  """
  if box is not None and boxes_json is not None:
    raise UserError("give either one box for all photos or a boxes JSON file, not both")
  photos = list_photos(paths)
  shared_box = None if box is None else parse_box(box, "--box")
  entries = {} if boxes_json is None else read_boxes_json(boxes_json)
  used = set()
  specs = []
  for path in photos:
    keys = [k for k in (str(path), path.name) if k in entries]
    if len(keys) > 1:
      raise UserError(f"{boxes_json}: entries {keys} both name {path}")
    photo_box, photo_left = shared_box, None
    if keys:
      used.add(keys[0])
      photo_box, photo_left = entries[keys[0]]
    specs.append(PhotoSpec(path, path.stem, photo_box, left if photo_left is None else photo_left))
  unused = sorted(set(entries) - used)
  if unused:
    raise UserError(f"{boxes_json}: entries {unused} match none of the photos "
                     f"{[p.name for p in photos]}")
  return specs


def read_photo(path: PathLike) -> np.ndarray:
  """An image file as uint8 RGB [H, W, 3], turned upright by its EXIF orientation (as viewers
  show it, so boxes and overlays use the displayed pixel coordinates).

  Raises:
    UserError: naming the file when it is not a readable image.
  """
  try:
    with Image.open(path) as image:
      image.load()
      upright = ImageOps.exif_transpose(image)
      return np.asarray(upright.convert("RGB"))
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise UserError(f"{path}: not a readable image file ({e})") from e


def square_crop_box(width: int, height: int, box: Optional[np.ndarray] = None,
                    expansion: float = BBOX_EXPANSION, source: str = "photo") -> np.ndarray:
  """The official square crop box (x, y, w, h) of a user box, or of the whole image.

  Args:
    width: image width in pixels.
    height: image height in pixels.
    box: (x0, y0, x1, y1), or None for the whole image made square about its centre.
    expansion: growth of the user box about its centre (the official 1.5 by default).
    source: names the photo in errors.

  Raises:
    UserError: when the box does not overlap the image or the crop is empty.
  """
  if box is None:
    square = crop.full_image_box(width, height)
  else:
    check_box_in_image(box, width, height, source)
    # The box's corners play the role of the official joints' min/max.
    square = crop.joints_box(np.array([box[:2], box[2:]]), width, height, expansion)
  if square is None:
    raise UserError(f"{source}: the crop box is empty (image {width}x{height}, box "
                     f"{None if box is None else box.tolist()})")
  return square


def check_box_in_image(box: np.ndarray, width: int, height: int, source: str = "photo") -> None:
  """Raises ValueError, naming ``source``, when an (x0, y0, x1, y1) box misses the image."""
  x0, y0, x1, y1 = box
  if x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
    raise UserError(f"{source}: box {np.asarray(box).tolist()} lies outside the {width}x{height} "
                     f"image (pixel centres 0..{width - 1}, 0..{height - 1})")


def crop_photo(photo: np.ndarray, out_size: int, box: Optional[np.ndarray] = None,
               left: bool = False, expansion: float = BBOX_EXPANSION,
               source: str = "photo") -> PhotoCrop:
  """Crops a photo as the official test-time pre-processing (see the module docstring).

  Args:
    photo: uint8 [H, W, 3].
    out_size: the model input size S.
    box: optional (x0, y0, x1, y1) in photo pixels (the unflipped photo, also for left hands).
    left: flip the photo horizontally first (a left hand becomes a right hand).
    expansion: growth factor of a user box.
    source: names the photo in errors.

  Returns:
    The ``PhotoCrop``.
  """
  height, width = photo.shape[:2]
  if box is not None:
    check_box_in_image(box, width, height, source)  # in the user's coordinates
  if left:
    photo = np.ascontiguousarray(hand.mirror_image(photo))
    box = None if box is None else hand.mirror_box(box, width)
  square = square_crop_box(width, height, box, expansion, source)
  affine = crop.crop_affine(square, out_size)
  image = augment.apply_color(crop.warp_image(photo, affine, out_size),
                              augment.IDENTITY.color_gain)
  if left:
    # Photo -> flipped photo -> crop -> crop flipped back. The crop's mirror axis is u = S / 2,
    # because the official affine puts the box centre at S / 2 (not (S - 1) / 2).
    flip_photo = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    flip_crop = np.array([[-1.0, 0.0, out_size], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    affine = (flip_crop @ np.vstack([affine, [0.0, 0.0, 1.0]]) @ flip_photo)[:2]
    square = np.array([width - 1.0 - square[0] - square[2], square[1], square[2], square[3]])
  return PhotoCrop(image, square, affine, width, height, left)


def mirror_outputs(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Mirrors SVR outputs (``OUTPUT_KEYS``, batched) of a flipped photo back to the left hand.

  3D points x -> -x; rotations R -> M R M (M = diag(-1, 1, 1)), and the raw 6D rotation so that
  it still maps to that matrix; ``joints_2d`` x -> 1 - x, the crop's mirror image (all in
  ``simajax.hand.mirror``).
  """
  mirrored = {}
  for key, value in outputs.items():
    value = np.asarray(value)
    if key in ("verts_canonical", "joints_canonical", "verts_rotated", "joints_rotated"):
      mirrored[key] = hand.mirror_points(value)
    elif key == "joints_2d":
      mirrored[key] = hand.mirror_crop_points_2d(value)
    elif key == "rotation":
      mirrored[key] = hand.mirror_rotation_matrix(value)
    elif key == "rotation_6d":
      mirrored[key] = hand.mirror_rotation_6d(value)
    else:
      raise KeyError(f"mirror_outputs: unknown output {key!r}")
  return mirrored


def outputs_for_sides(raw: Mapping[str, np.ndarray], left: np.ndarray) -> dict[str, np.ndarray]:
  """Batched SVR outputs of crops, mirrored back (``mirror_outputs``) where ``left`` [B] is set,
  i.e. where the crop was taken from the flipped photo of a left hand."""
  left = np.asarray(left, bool)
  mirrored = mirror_outputs(raw)
  return {k: np.where(left.reshape((-1,) + (1,) * (np.ndim(raw[k]) - 1)), mirrored[k], raw[k])
          for k in raw}


def joints_to_photo(joints_2d: np.ndarray, photo_crop: PhotoCrop, out_size: int) -> np.ndarray:
  """[J, 2] crop-unit joints (after ``mirror_outputs`` for a left hand) -> photo pixels."""
  affine3 = np.vstack([photo_crop.affine, [0.0, 0.0, 1.0]])
  return crop.apply_affine(np.linalg.inv(affine3)[:2], np.asarray(joints_2d, np.float64)
                           * out_size)


def weak_perspective_fit(points3d: np.ndarray, points2d: np.ndarray) -> tuple[float, np.ndarray]:
  """Least-squares scale s and offset t with s (X, Y) + t ~ (u, v).

  Args:
    points3d: [J, 3] (only x, y are used).
    points2d: [J, 2] pixels.

  Returns:
    (s, t [2]). s <= 0 or NaN means no weak-perspective view of the 3D points fits the 2D ones.
  """
  xy = np.asarray(points3d, np.float64)[:, :2]
  uv = np.asarray(points2d, np.float64)
  xy_mean, uv_mean = xy.mean(axis=0), uv.mean(axis=0)
  xy_c, uv_c = xy - xy_mean, uv - uv_mean
  denominator = float(np.sum(xy_c * xy_c))
  scale = float(np.sum(xy_c * uv_c)) / denominator if denominator > 0 else float("nan")
  return scale, uv_mean - scale * xy_mean


def render_overlay(photo: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                   joints3d: np.ndarray, joints_photo: np.ndarray,
                   crop_box: Optional[np.ndarray] = None) -> tuple[np.ndarray, float, np.ndarray]:
  """The photo with the predicted mesh (weak-perspective fit), 2D skeleton and crop box drawn.

  Args:
    photo: uint8 [H, W, 3].
    vertices: [V, 3] predicted mesh (metres, camera orientation).
    faces: [F, 3] its triangles, wound outward.
    joints3d: [21, 3] predicted 3D joints, same frame as ``vertices``.
    joints_photo: [21, 2] predicted 2D joints in photo pixels.
    crop_box: optional (x, y, w, h) drawn as a thin white square.

  Returns:
    (image, s, t): the overlay and the fit (see ``weak_perspective_fit``); the mesh is drawn only
    when s > 0.
  """
  height, width = photo.shape[:2]
  scale, offset = weak_perspective_fit(joints3d, joints_photo)
  image = photo
  if np.isfinite(scale) and scale > 0 and np.all(np.isfinite(offset)):
    image = _overlay_weak_perspective(image, np.asarray(vertices, np.float64), faces, scale,
                                      offset, float(np.mean(np.asarray(joints3d)[:, 2])))
  size = min(height, width)
  if crop_box is not None:
    canvas = Image.fromarray(image)
    x, y, w, h = crop_box
    ImageDraw.Draw(canvas).rectangle([x, y, x + w, y + h], outline=(255, 255, 255),
                                     width=max(1, round(size / 400)))
    image = np.asarray(canvas)
  image = draw.draw_keypoints(image, joints_photo, hand.OPENPOSE_PARENTS, color=draw.HAND_COLORS,
                              radius=max(2.0, size / 150), line_width=max(1, round(size / 250)))
  return image, scale, offset


def _overlay_weak_perspective(photo, vertices, faces, scale, offset, mean_depth):
  """Renders the mesh at ``OVERLAY_DISTANCE`` with a focal length that makes its projection
  s (x, y) + t, only inside the window the mesh covers (full-size renders of large photos are
  slow)."""
  height, width = photo.shape[:2]
  projected = scale * vertices[:, :2] + offset
  lo = np.maximum(np.floor(projected.min(axis=0)) - 1, 0).astype(int)
  hi = np.minimum(np.ceil(projected.max(axis=0)) + 2, [width, height]).astype(int)
  if np.any(hi <= lo):
    return photo  # the mesh lies outside the photo
  focal = scale * OVERLAY_DISTANCE
  K = np.array([[focal, 0.0, -lo[0]], [0.0, focal, -lo[1]], [0.0, 0.0, 1.0]])
  camera = vertices + np.array([offset[0] / scale, offset[1] / scale,
                                OVERLAY_DISTANCE - mean_depth])
  image = photo.copy()
  window = photo[lo[1]:hi[1], lo[0]:hi[0]]
  image[lo[1]:hi[1], lo[0]:hi[0]] = draw.overlay_mesh(np.ascontiguousarray(window), camera,
                                                      faces, K)
  return image


def write_meshes(out_stem: PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
  """Writes ``<out_stem>.obj`` and ``<out_stem>.ply`` (ASCII, exact floats)."""
  out_stem = os.fspath(out_stem)
  mesh_io.write_obj(out_stem + ".obj", vertices, faces)
  mesh_io.write_ply(out_stem + ".ply", vertices, faces)
