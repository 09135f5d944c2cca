"""2D drawing for inspection pictures: keypoints and bones, mesh overlays, image grids.

Images are uint8 numpy arrays [H, W, 3] in and out (inputs are never modified). Colours in this
module are PIL-style RGB integers in 0..255, except where a mesh is shaded (``overlay_mesh``'s
``color`` is a render colour, floats in [0, 1]). Keypoints are (u, v) pixel coordinates in the
rasterizer's convention (pixel centres at integers), which is also PIL's.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

from simajax.render.scene import Mesh, render_scene
from simajax.render.shading import Light

# Parent of each joint in the 21-joint hand order (wrist; thumb, index, middle, ring, little,
# each base to tip): bones run 0 -> 1, 5, 9, 13, 17, then along each finger.
HAND_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)

# One colour per finger (thumb, index, middle, ring, little) and the wrist, for hand skeletons.
HAND_COLORS = np.array([(255, 255, 255)] + [(230, 60, 60)] * 4 + [(240, 180, 40)] * 4
                       + [(60, 190, 60)] * 4 + [(40, 150, 230)] * 4 + [(170, 80, 220)] * 4,
                       dtype=np.uint8)

RGB = Union[Sequence[int], np.ndarray]


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray,
                   parents: Optional[Sequence[int]] = None, *, color: RGB = (255, 0, 0),
                   radius: float = 2.0, line_width: int = 2,
                   visible: Optional[np.ndarray] = None) -> np.ndarray:
  """Draws keypoints as dots and, given parents, bones as lines from each joint to its parent.

  Args:
    image: uint8 [H, W, 3].
    keypoints: [J, 2] (u, v) pixel coordinates; non-finite rows are skipped.
    parents: optional [J] parent index per joint (-1 for roots), e.g. ``HAND_PARENTS``.
    color: one RGB (0..255) for everything, or [J, 3] per joint (a bone takes its child's colour),
      e.g. ``HAND_COLORS``.
    radius: dot radius in pixels (0 draws no dots).
    line_width: bone width in pixels.
    visible: optional [J] bool; joints that are False, and their bones, are not drawn.

  Returns:
    A new uint8 [H, W, 3] image.
  """
  image = _check_image(image, "draw_keypoints: image")
  keypoints = np.asarray(keypoints, dtype=np.float64)
  if keypoints.ndim != 2 or keypoints.shape[1] != 2:
    raise ValueError(f"draw_keypoints: keypoints must be [J, 2], got {keypoints.shape}")
  num_joints = len(keypoints)
  colors = np.asarray(color)
  if colors.shape == (3,):
    colors = np.broadcast_to(colors, (num_joints, 3))
  if colors.shape != (num_joints, 3):
    raise ValueError(f"draw_keypoints: color must be [3] or [{num_joints}, 3], got {colors.shape}")
  drawable = np.isfinite(keypoints).all(axis=1)
  if visible is not None:
    drawable &= np.asarray(visible, dtype=bool)
  canvas = Image.fromarray(image)
  pen = ImageDraw.Draw(canvas)
  if parents is not None:
    if len(parents) != num_joints:
      raise ValueError(f"draw_keypoints: parents must have {num_joints} entries, got "
                       f"{len(parents)}")
    for joint, parent in enumerate(parents):
      if parent >= 0 and drawable[joint] and drawable[parent]:
        pen.line([tuple(keypoints[parent]), tuple(keypoints[joint])],
                 fill=tuple(int(c) for c in colors[joint]), width=line_width)
  if radius > 0:
    for joint in np.flatnonzero(drawable):
      u, v = keypoints[joint]
      pen.ellipse([u - radius, v - radius, u + radius, v + radius],
                  fill=tuple(int(c) for c in colors[joint]))
  return np.asarray(canvas).copy()


def overlay_mesh(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
                 extrinsic: Optional[np.ndarray] = None, *,
                 color: Sequence[float] = (0.55, 0.7, 1.0), alpha: float = 0.7,
                 light: Light = Light()) -> np.ndarray:
  """Alpha-blends a shaded render of a mesh onto a photo taken with intrinsics K.

  Args:
    image: uint8 [H, W, 3] photo.
    vertices: [N, 3] vertices (camera frame, or world frame with ``extrinsic``), metres.
    faces: [F, 3] vertex indices.
    K: [3, 3] intrinsics of the photo.
    extrinsic: optional world-to-camera [4, 4] or [3, 4].
    color: mesh colour, RGB floats in [0, 1] (one colour or [N, 3] per vertex).
    alpha: opacity of the mesh where it covers the photo (0..1).
    light: the light (camera frame).

  Returns:
    A new uint8 [H, W, 3] image; pixels the mesh does not cover are unchanged.
  """
  image = _check_image(image, "overlay_mesh: image")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"overlay_mesh: alpha must lie in [0, 1], got {alpha}")
  height, width = image.shape[:2]
  result = render_scene([Mesh(vertices, faces, color=color)], K, extrinsic, height, width,
                        light=light)
  covered = result.fragments.mask[..., None]
  blended = (1.0 - alpha) * image + alpha * result.rgb.astype(np.float64)
  return np.where(covered, np.round(blended), image).astype(np.uint8)


def image_grid(images: Sequence[np.ndarray], ncols: int, *, padding: int = 2,
               fill: int = 255) -> np.ndarray:
  """Tiles images row by row into one picture; smaller images sit top-left in their cell.

  Args:
    images: uint8 [H, W, 3] or [H, W] (grey) images, or bool [H, W] masks (shown black/white).
    ncols: number of columns (>= 1).
    padding: pixels between cells and around the border.
    fill: grey level (0..255) of the padding and of unused cell area.

  Returns:
    uint8 [rows * (Hmax + padding) + padding, ncols * (Wmax + padding) + padding, 3].
  """
  if ncols < 1:
    raise ValueError(f"image_grid: ncols must be >= 1, got {ncols}")
  if not images:
    raise ValueError("image_grid: need at least one image")
  tiles = [_as_rgb(im, f"image_grid: images[{i}]") for i, im in enumerate(images)]
  cell_h = max(t.shape[0] for t in tiles)
  cell_w = max(t.shape[1] for t in tiles)
  nrows = -(-len(tiles) // ncols)
  grid = np.full((nrows * (cell_h + padding) + padding, ncols * (cell_w + padding) + padding, 3),
                 fill, dtype=np.uint8)
  for i, tile in enumerate(tiles):
    top = padding + (i // ncols) * (cell_h + padding)
    left = padding + (i % ncols) * (cell_w + padding)
    grid[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
  return grid


def save_image(path: Union[str, os.PathLike], image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] or [H, W] image; the format follows the suffix (.png, .jpg, ...)."""
  Image.fromarray(_as_rgb(image, f"save_image: {path}")).save(path)


def _check_image(image, what) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"{what} must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
  return image


def _as_rgb(image, what) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype == bool:
    image = image.astype(np.uint8) * 255
  if image.dtype != np.uint8:
    raise ValueError(f"{what} must be uint8 (or a bool mask), got {image.dtype}")
  if image.ndim == 2:
    return np.repeat(image[..., None], 3, axis=2)
  if image.ndim == 3 and image.shape[2] == 3:
    return image
  raise ValueError(f"{what} must be [H, W] or [H, W, 3], got {image.shape}")
