"""Drawing helpers: keypoints/bones, mesh overlays and image grids change the right pixels."""

import numpy as np
import pytest
from PIL import Image

from simajax.render import (HAND_COLORS, HAND_PARENTS, Mesh, draw_keypoints, image_grid,
                            overlay_mesh, primitives, render_scene, save_image)


def test_hand_parents_follow_the_documented_bones():
  # Bones 0 -> 1, 5, 9, 13, 17, then k -> k + 1 along each finger.
  bones = {(p, j) for j, p in enumerate(HAND_PARENTS) if p >= 0}
  expected = {(0, b) for b in (1, 5, 9, 13, 17)}
  expected |= {(b + k, b + k + 1) for b in (1, 5, 9, 13, 17) for k in range(3)}
  assert bones == expected and len(HAND_PARENTS) == 21 and HAND_COLORS.shape == (21, 3)


def test_keypoints_and_bones_are_drawn_where_given():
  image = np.full((60, 80, 3), 30, dtype=np.uint8)
  keypoints = np.array([[10.0, 10.0], [50.0, 10.0], [50.0, 40.0], [np.nan, np.nan]])
  parents = [-1, 0, 1, 2]
  colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
  out = draw_keypoints(image, keypoints, parents, color=colors, radius=2, line_width=1)
  assert out.shape == image.shape and out.dtype == np.uint8
  assert (image == 30).all()  # the input is untouched
  np.testing.assert_array_equal(out[10, 10], [255, 0, 0])  # dots at (u, v) = (col, row)
  np.testing.assert_array_equal(out[40, 50], [0, 0, 255])
  np.testing.assert_array_equal(out[10, 30], [0, 255, 0])  # bone 0 -> 1 in the child's colour
  np.testing.assert_array_equal(out[25, 50], [0, 0, 255])  # bone 1 -> 2
  np.testing.assert_array_equal(out[25, 30], [30, 30, 30])  # away from every bone
  assert not (out == [255, 255, 0]).all(axis=-1).any()  # the NaN joint is skipped
  hidden = draw_keypoints(image, keypoints, parents, color=colors,
                          visible=[True, True, False, True])
  np.testing.assert_array_equal(hidden[40, 50], [30, 30, 30])
  np.testing.assert_array_equal(hidden[25, 50], [30, 30, 30])
  with pytest.raises(ValueError, match="keypoints must be"):
    draw_keypoints(image, keypoints[:, :1])
  with pytest.raises(ValueError, match="image must be uint8"):
    draw_keypoints(image.astype(float), keypoints)


def test_overlay_blends_only_where_the_mesh_covers():
  height, width = 48, 64
  K = np.array([[80.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
  photo = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
  vertices, faces = primitives.uv_sphere((0.0, 0.0, 1.0), 0.2)
  out = overlay_mesh(photo, vertices, faces, K, color=(0.2, 0.9, 0.2), alpha=0.5)
  render = render_scene([Mesh(vertices, faces, color=(0.2, 0.9, 0.2))], K, None, height, width)
  covered = render.fragments.mask
  assert 200 < covered.sum() < height * width - 200
  np.testing.assert_array_equal(out[~covered], photo[~covered])
  expected = np.round(0.5 * photo[covered] + 0.5 * render.rgb[covered].astype(float))
  np.testing.assert_array_equal(out[covered], expected)
  opaque = overlay_mesh(photo, vertices, faces, K, color=(0.2, 0.9, 0.2), alpha=1.0)
  np.testing.assert_array_equal(opaque[covered], render.rgb[covered])


def test_image_grid_places_tiles_row_by_row(tmp_path):
  rng = np.random.default_rng(1)
  tiles = [rng.integers(0, 256, (10, 12, 3), dtype=np.uint8) for _ in range(4)]
  tiles.append(rng.random((8, 6)) > 0.5)  # a mask, smaller than the others
  grid = image_grid(tiles, ncols=3, padding=2, fill=7)
  assert grid.shape == (2 * (10 + 2) + 2, 3 * (12 + 2) + 2, 3) and grid.dtype == np.uint8
  for i, tile in enumerate(tiles[:4]):
    top, left = 2 + (i // 3) * 12, 2 + (i % 3) * 14
    np.testing.assert_array_equal(grid[top:top + 10, left:left + 12], tile)
  mask_cell = grid[14:22, 16:22]
  np.testing.assert_array_equal(mask_cell[..., 0], np.where(tiles[4], 255, 0))
  assert (grid[14:24, 22:28] == 7).all()  # unused part of the mask's cell
  assert (grid[14:, 30:] == 7).all()  # the empty sixth cell
  path = tmp_path / "grid.png"
  save_image(path, grid)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
  with pytest.raises(ValueError, match=r"images\[0\]"):
    image_grid([np.zeros((4, 4, 3))], ncols=1)
