"""The z-buffer rasterizer against brute-force geometry computed independently in the tests."""

import numpy as np
import pytest

from simajax.render import primitives, rasterize, rasterizer
from simajax.render.rasterizer import project

H, W = 40, 50
K_SKEWED = np.array([[60.0, 1.5, 24.3], [0.0, 55.0, 19.1], [0.0, 0.0, 1.0]])
# Power-of-two focal lengths and depths make lifting and re-projecting pixel positions exact.
K_EXACT = np.array([[64.0, 0.0, 20.0], [0.0, 32.0, 15.0], [0.0, 0.0, 1.0]])


def lift(uv, depth, K):
  """Camera-frame points that project to pixel coordinates uv at the given z."""
  uv1 = np.concatenate([np.asarray(uv, dtype=np.float64), np.ones((len(uv), 1))], axis=1)
  return (uv1 @ np.linalg.inv(K).T) * np.asarray(depth, dtype=np.float64)[:, None]


def brute_force_coverage(uv_triangle, height, width):
  """Pixel centres (col, row) inside a triangle, from barycentrics solved per pixel.

  The rasterizer's documented geometry is the projection snapped to 1/256 pixel, so the corners
  are snapped here too. Returns the coverage mask and the smallest |barycentric| seen, to show no
  centre sits on an edge (where the answer would depend on a tie rule).
  """
  a, b, c = np.round(np.asarray(uv_triangle, dtype=np.float64) * 256.0) / 256.0
  cols, rows = np.meshgrid(np.arange(width), np.arange(height))
  offsets = np.stack([cols.ravel() - a[0], rows.ravel() - a[1]])
  l1, l2 = np.linalg.solve(np.stack([b - a, c - a], axis=1), offsets)
  bary = np.stack([1.0 - l1 - l2, l1, l2])
  inside = (bary >= 0).all(axis=0).reshape(height, width)
  return inside, np.abs(bary).min()


def test_random_triangles_cover_exactly_the_brute_force_pixels():
  rng = np.random.default_rng(0)
  checked = 0
  for _ in range(60):
    uv = rng.uniform([-8, -8], [W + 8, H + 8], size=(3, 2))
    vertices = lift(uv, rng.uniform(0.5, 3.0, size=3), K_SKEWED)
    expected, margin = brute_force_coverage(project(vertices, K_SKEWED), H, W)
    if margin < 1e-6:
      continue  # a pixel centre on an edge: covered by the tie-rule tests below
    for faces in ([[0, 1, 2]], [[0, 2, 1]]):  # both windings
      fragments = rasterize(vertices, np.array(faces), K_SKEWED, H, W)
      np.testing.assert_array_equal(fragments.mask, expected)
      np.testing.assert_array_equal(fragments.face_id[expected], 0)
    checked += 1
  assert checked > 50


@pytest.mark.parametrize("faces", [[[0, 1, 2], [0, 2, 3]], [[0, 1, 3], [1, 2, 3]],
                                   [[0, 2, 1], [0, 3, 2]], [[3, 1, 0], [3, 2, 1]]])
def test_square_follows_top_left_rule_and_covers_each_pixel_once(faces):
  # Corners on pixel centres: the left column and top row are in, the right and bottom are out.
  uv = np.array([[2, 3], [9, 3], [9, 8], [2, 8]], dtype=np.float64)
  K = K_EXACT
  vertices = lift(uv, [1.0, 2.0, 0.5, 4.0], K)
  np.testing.assert_array_equal(project(vertices, K), uv)  # ties are real ties
  expected = np.zeros((H, W), dtype=bool)
  expected[3:8, 2:9] = True
  single = [rasterize(vertices, np.array([f]), K, H, W).mask for f in faces]
  np.testing.assert_array_equal(single[0].astype(int) + single[1], expected.astype(int))
  np.testing.assert_array_equal(rasterize(vertices, np.array(faces), K, H, W).mask, expected)


def test_grid_mesh_with_edges_through_pixel_centres_is_watertight():
  # A 6x5 vertex grid of 4-pixel squares on integer pixel positions, split along alternating
  # diagonals (which pass through pixel centres), vertex ids shuffled: every centre of the hull
  # is covered exactly once.
  rng = np.random.default_rng(1)
  K = K_EXACT
  xs, ys = np.meshgrid(np.arange(6) * 4 + 5, np.arange(5) * 4 + 2)
  uv = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
  ids = np.arange(30).reshape(5, 6)
  faces = []
  for r in range(4):
    for c in range(5):
      a, b, d, e = ids[r, c], ids[r, c + 1], ids[r + 1, c + 1], ids[r + 1, c]
      faces += [[a, b, d], [a, d, e]] if (r + c) % 2 else [[a, b, e], [b, d, e]]
  perm = rng.permutation(30)
  vertices = np.empty((30, 3))
  vertices[perm] = lift(uv, rng.choice([0.5, 1.0, 2.0, 4.0], size=30), K)
  np.testing.assert_array_equal(project(vertices[perm], K), uv)
  faces = perm[np.array(faces)]
  counts = sum(rasterize(vertices, faces[i:i + 1], K, H, W).mask.astype(int)
               for i in range(len(faces)))
  expected = np.zeros((H, W), dtype=int)
  expected[2:18, 5:25] = 1  # rows 2..17 and cols 5..24 (top-left rule on the hull)
  np.testing.assert_array_equal(counts, expected)


def test_shared_edges_are_watertight_in_floating_point():
  # Integer grid positions lifted through a skewed K at random depths re-project only to within
  # rounding, so vertices and interior edges lie within ~1e-15 px of pixel centres: adjacent faces
  # must still agree exactly on who covers them (no cracks, no double hits).
  rng = np.random.default_rng(3)
  xs, ys = np.meshgrid(np.arange(7) * 6 + 4, np.arange(6) * 6 + 3)
  uv = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
  ids = np.arange(42).reshape(6, 7)
  faces = []
  for r in range(5):
    for c in range(6):
      a, b, d, e = ids[r, c], ids[r, c + 1], ids[r + 1, c + 1], ids[r + 1, c]
      faces += [[a, b, d], [a, d, e]] if rng.random() < 0.5 else [[a, b, e], [b, d, e]]
  faces = np.array(faces)
  vertices = lift(uv, rng.uniform(0.7, 3.1, size=42), K_SKEWED)
  assert not (project(vertices, K_SKEWED) == uv).all()
  counts = sum(rasterize(vertices, faces[i:i + 1], K_SKEWED, H, W).mask.astype(int)
               for i in range(len(faces)))
  assert counts.max() == 1
  # Pixel centres strictly inside the hull (the hull's own edges are ties too: either side).
  np.testing.assert_array_equal(counts[4:33, 5:40], 1)


def test_depth_and_barycentrics_are_perspective_correct():
  # Corners on the 1/256-pixel snapping grid, so the rendered plane is exactly this one.
  vertices = lift([[3.25, 2.25], [46.125, 9.75], [12.375, 37.5]], [0.6, 2.5, 1.4], K_SKEWED)
  fragments = rasterize(vertices, np.array([[0, 1, 2]]), K_SKEWED, H, W)
  rows, cols = np.nonzero(fragments.mask)
  assert rows.size > 300
  # The pixel ray X = t K^-1 (u, v, 1) has z = t; it meets the plane n.X = d at t = d / (n.ray).
  normal = np.cross(vertices[1] - vertices[0], vertices[2] - vertices[0])
  rays = np.stack([cols, rows, np.ones_like(cols)], axis=1) @ np.linalg.inv(K_SKEWED).T
  expected_depth = normal @ vertices[0] / (rays @ normal)
  np.testing.assert_allclose(fragments.depth[rows, cols], expected_depth, rtol=1e-10)
  assert np.isinf(fragments.depth[~fragments.mask]).all()
  # The barycentric combination of the vertices is the surface point seen through the pixel.
  bary = fragments.bary[rows, cols]
  np.testing.assert_allclose(bary.sum(axis=1), 1.0, atol=1e-12)
  assert bary.min() >= 0.0
  points = bary @ vertices
  np.testing.assert_allclose(points, rays * expected_depth[:, None], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_surface_wins(near_first):
  uv = [[5.5, 5.5], [44.5, 8.5], [20.5, 35.5]]
  near = lift(uv, [1.0, 1.0, 1.0], K_SKEWED)
  far = lift(uv[::-1], [2.0, 2.0, 2.0], K_SKEWED)
  vertices = np.concatenate([near, far] if near_first else [far, near])
  near_face = 0 if near_first else 1
  fragments = rasterize(vertices, np.array([[0, 1, 2], [3, 4, 5]]), K_SKEWED, H, W)
  covered = fragments.mask
  assert covered.sum() > 300
  np.testing.assert_array_equal(fragments.face_id[covered], near_face)
  np.testing.assert_allclose(fragments.depth[covered], 1.0, rtol=1e-12)


def test_interpenetrating_planes_show_the_pointwise_nearer_one():
  # Two large triangles crossing in depth: each pixel must show the minimum of the two depths.
  big = [[-60, -60], [200, -60], [-60, 200]]
  tilted_x = lift(big, [1.0, 3.0, 1.0], K_SKEWED)
  tilted_y = lift(big, [2.0, 2.0, 0.5], K_SKEWED)
  vertices = np.concatenate([tilted_x, tilted_y])
  fragments = rasterize(vertices, np.array([[0, 1, 2], [3, 4, 5]]), K_SKEWED, H, W)
  assert fragments.mask.all()
  rows, cols = np.mgrid[:H, :W]
  rays = np.stack([cols.ravel(), rows.ravel(), np.ones(H * W)], axis=1) @ np.linalg.inv(K_SKEWED).T
  depths = []
  for tri in (tilted_x, tilted_y):
    n = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    depths.append((n @ tri[0] / (rays @ n)).reshape(H, W))
  np.testing.assert_allclose(fragments.depth, np.minimum(*depths), rtol=1e-9)
  # Where the two depths agree to float32 precision (the intersection line) either face may win.
  distinct = np.abs(depths[0] - depths[1]) > 1e-6 * depths[0]
  assert distinct.mean() > 0.95
  np.testing.assert_array_equal(fragments.face_id[distinct],
                                np.where(depths[0] < depths[1], 0, 1)[distinct])


def test_sphere_silhouette_and_depth_match_the_analytic_sphere():
  height, width = 120, 160
  K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
  for center in ([0.0, 0.0, 1.0], [0.25, -0.1, 0.9]):
    center, radius = np.array(center), 0.2
    vertices, faces = primitives.uv_sphere(center, radius, num_lat=48, num_lon=96)
    fragments = rasterize(vertices, faces, K, height, width)
    rows, cols = np.mgrid[:height, :width]
    rays = np.stack([cols, rows, np.ones_like(cols)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
    # Ray t * r meets the sphere where |t r - c|^2 = R^2 (t is the depth since r_z = 1).
    a = (rays * rays).sum(1)
    b = rays @ center
    disc = b * b - a * (center @ center - radius ** 2)
    hits = (disc >= 0).reshape(height, width)
    ideal_depth = ((b - np.sqrt(np.maximum(disc, 0))) / a).reshape(height, width)
    assert abs(fragments.mask.sum() / hits.sum() - 1.0) < 0.02
    both = fragments.mask & hits
    # The mesh is inscribed in the sphere: never nearer than it, at most about the sagitta behind.
    gap = fragments.depth[both] - ideal_depth[both]
    assert gap.min() > -1e-9 and np.median(gap) < 2e-3
    if center[0] == 0.0:
      # On the optical axis the silhouette is a disk of radius f R / sqrt(d^2 - R^2).
      disk_area = np.pi * 150.0 ** 2 * radius ** 2 / (center[2] ** 2 - radius ** 2)
      assert abs(fragments.mask.sum() / disk_area - 1.0) < 0.03


def check_vertices_inside_silhouette(vertices, faces, K, height, width, min_on_mask):
  mask = rasterize(vertices, faces, K, height, width).mask
  uv = project(vertices, K)
  cols, rows = np.round(uv).astype(int).T
  assert (cols >= 0).all() and (cols < width).all() and (rows >= 0).all() and (rows < height).all()
  on_mask = mask[rows, cols]
  padded = np.pad(mask, 1)
  near_mask = np.zeros_like(on_mask)
  for dr in (0, 1, 2):
    for dc in (0, 1, 2):
      near_mask |= padded[rows + dr, cols + dc]
  # Rounding may step just off a silhouette edge (where convex shapes have all their outline
  # vertices), but never by more than one pixel.
  assert on_mask.mean() >= min_on_mask
  assert near_mask.all()


def test_projected_hand_vertices_land_in_the_hand_silhouette(reference_topology):
  vertices = reference_topology.vertices[0]
  faces = reference_topology.faces[0]
  K = np.array([[250.0, 0, 111.5], [0, 250.0, 111.5], [0, 0, 1]])
  center = vertices.mean(axis=0)
  check_vertices_inside_silhouette(vertices - [center[0], center[1], 0.0], faces, K, 224, 224,
                                   min_on_mask=0.9)


def test_projected_primitive_vertices_land_in_their_silhouettes():
  K = np.array([[300.0, 0, 63.5], [0, 300.0, 63.5], [0, 0, 1]])
  rot = np.array([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]])
  for vertices, faces in (primitives.box((0.02, 0.0, 1.0), (0.2, 0.1, 0.15), rot),
                          primitives.cylinder((0.0, 0.01, 0.8), 0.05, 0.2, rot),
                          primitives.uv_sphere((-0.03, 0.02, 0.9), 0.1)):
    check_vertices_inside_silhouette(vertices, faces, K, 128, 128, min_on_mask=0.5)


def test_near_plane_and_backface_culling():
  K = np.array([[50.0, 0, 25], [0, 50.0, 20], [0, 0, 1]])
  crossing = np.array([[-0.3, -0.3, 1.0], [0.3, -0.2, 1.0], [0.0, 0.3, -0.5]])
  assert not rasterize(crossing, np.array([[0, 1, 2]]), K, H, W).mask.any()
  assert not rasterize(crossing + [0, 0, 0.9], np.array([[0, 1, 2]]), K, H, W, near=0.5).mask.any()
  assert rasterize(crossing + [0, 0, 0.9], np.array([[0, 1, 2]]), K, H, W, near=0.1).mask.any()
  tri = np.array([[-0.3, -0.3, 1.0], [0.3, -0.2, 1.2], [0.0, 0.3, 0.9]])
  for faces in ([[0, 1, 2]], [[0, 2, 1]]):
    v0, v1, v2 = tri[faces[0]]
    facing_camera = np.cross(v1 - v0, v2 - v0) @ v0 < 0
    culled = rasterize(tri, np.array(faces), K, H, W, cull_backfaces=True).mask.any()
    kept = rasterize(tri, np.array(faces), K, H, W).mask.any()
    assert kept and culled == facing_camera


def test_offscreen_empty_and_full_screen_inputs():
  K = np.array([[50.0, 0, 25], [0, 50.0, 20], [0, 0, 1]])
  offscreen = lift([[-30, 5], [-10, 5], [-20, 30]], [1.0, 1.0, 1.0], K)
  assert not rasterize(offscreen, np.array([[0, 1, 2]]), K, H, W).mask.any()
  empty = rasterize(np.zeros((0, 3)), np.zeros((0, 3), dtype=int), K, H, W)
  assert empty.face_id.shape == (H, W) and (empty.face_id == -1).all()
  huge = lift([[-1e4, -1e4], [1e4, -1e4], [0, 1e4]], [1.0, 1.0, 1.0], K)
  assert rasterize(huge, np.array([[0, 1, 2]]), K, H, W).mask.all()


def test_bad_inputs_are_named():
  K = np.eye(3)
  with pytest.raises(ValueError, match="vertices_cam must be"):
    rasterize(np.zeros((3, 2)), np.array([[0, 1, 2]]), K, 4, 4)
  with pytest.raises(ValueError, match="face indices"):
    rasterize(np.ones((3, 3)), np.array([[0, 1, 3]]), K, 4, 4)
  with pytest.raises(ValueError, match="K must be"):
    rasterize(np.ones((3, 3)), np.array([[0, 1, 2]]), np.eye(4), 4, 4)
  with pytest.raises(ValueError, match="NaN"):
    rasterize(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), K, 4, 4)


def test_chunked_evaluation_gives_identical_results(monkeypatch):
  K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
  sphere = primitives.uv_sphere((0.05, 0.0, 1.0), 0.3, num_lat=24, num_lon=48)
  plane = lift([[-100, -100], [400, -100], [-100, 400]], [1.1, 1.2, 1.3], K)
  vertices = np.concatenate([sphere[0], plane])
  faces = np.concatenate([sphere[1], [[len(sphere[0]), len(sphere[0]) + 1, len(sphere[0]) + 2]]])
  reference = rasterize(vertices, faces, K, 120, 160)
  monkeypatch.setattr(rasterizer, "_MAX_CANDIDATES_PER_CHUNK", 64)
  monkeypatch.setattr(rasterizer, "_MAX_PIXELS_PER_CHUNK", 100)
  chunked = rasterize(vertices, faces, K, 120, 160)
  assert reference.mask.all()
  np.testing.assert_array_equal(chunked.face_id, reference.face_id)
  np.testing.assert_array_equal(chunked.depth, reference.depth)
  np.testing.assert_array_equal(chunked.bary, reference.bary)
