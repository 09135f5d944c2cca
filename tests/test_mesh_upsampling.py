"""Closest points on triangles and the up-sampling matrices built from them."""

import numpy as np
import pytest

from fixtures.mesh_fixture import sphere_mesh
from simajax.mesh import closest_points, decimate, upsampling_matrix
from simajax.mesh import upsampling


def brute_force_distance(p, a, b, c):
  """Distance from p to triangle abc: plane projection if it falls inside (same-side tests),
  else the nearest of the three clamped edge projections."""
  normal = np.cross(b - a, c - a)
  normal /= np.linalg.norm(normal)
  q = p - normal * ((p - a) @ normal)
  if all(np.cross(y - x, q - x) @ normal >= 0 for x, y in ((a, b), (b, c), (c, a))):
    return np.linalg.norm(p - q)
  best = np.inf
  for x, y in ((a, b), (b, c), (c, a)):
    t = np.clip((p - x) @ (y - x) / ((y - x) @ (y - x)), 0, 1)
    best = min(best, np.linalg.norm(p - (x + t * (y - x))))
  return best


def test_closest_points_match_brute_force():
  vertices, faces = sphere_mesh(30, seed=1)
  points = np.random.default_rng(2).normal(size=(50, 3)) * 0.8
  found = closest_points(points, vertices, faces)
  for i, p in enumerate(points):
    expected = min(brute_force_distance(p, *vertices[f]) for f in faces)
    np.testing.assert_allclose(np.linalg.norm(p - found.point[i]), expected, rtol=1e-9)
    corners = vertices[faces[found.face[i]]]
    np.testing.assert_allclose(found.barycentric[i] @ corners, found.point[i], atol=1e-12)


@pytest.mark.parametrize("point, part", [
    ([0.2, 0.2, 0.3], upsampling.INSIDE),
    ([0.5, -0.3, 0.1], upsampling.EDGE_AB),
    ([0.6, 0.6, -0.2], upsampling.EDGE_BC),
    ([-0.2, 0.5, 0.4], upsampling.EDGE_CA),
    ([-0.3, -0.2, 0.0], upsampling.CORNER_A),
    ([1.5, -0.1, 0.2], upsampling.CORNER_B),
    ([-0.1, 1.4, -0.3], upsampling.CORNER_C),
])
def test_parts_on_one_triangle(point, part):
  triangle = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
  assert closest_points(np.array([point]), triangle, np.array([[0, 1, 2]])).part[0] == part


def test_row_weights_per_case():
  a, b, c = np.array([0.1, 0.0, 1.0]), np.array([1.0, 0.2, 1.1]), np.array([0.0, 0.9, 0.8])
  triangle, faces = np.stack([a, b, c]), np.array([[0, 1, 2]])
  normal = np.cross(b - a, c - a)
  normal /= np.linalg.norm(normal)
  inside = 0.2 * a + 0.3 * b + 0.5 * c + 0.05 * normal
  off_edge = 0.5 * a + 0.5 * b - 0.2 * np.cross(normal, b - a) + 0.03 * normal  # outside edge ab
  fine = np.stack([inside, off_edge, c])
  dense = upsampling_matrix(fine, triangle, faces).to_dense(np.float64)
  np.testing.assert_allclose(dense[0], [0.2, 0.3, 0.5], atol=1e-6)
  # On an edge, the fine vertex itself (not its projection) is fitted by the two edge vertices.
  expected_edge = np.linalg.lstsq(np.stack([a, b], axis=1), off_edge, rcond=None)[0]
  np.testing.assert_allclose(dense[1], [*expected_edge, 0.0], atol=1e-6)
  np.testing.assert_array_equal(dense[2], [0.0, 0.0, 1.0])


def test_mesh_onto_itself_is_identity():
  vertices, faces = sphere_mesh(40, seed=3)
  up = upsampling_matrix(vertices, vertices, faces)
  np.testing.assert_array_equal(up.to_dense(np.float64), np.eye(40))


def test_decimated_level_rows():
  vertices, faces = sphere_mesh(100, seed=4)
  coarse = decimate(vertices, faces)
  up = upsampling_matrix(vertices, coarse.vertices, coarse.faces)
  assert up.shape == (100, 50)
  np.testing.assert_array_equal(np.bincount(up.row, minlength=100), 3)
  assert len(set(zip(up.row.tolist(), up.col.tolist()))) == 300
  dense = up.to_dense(np.float64)
  # Surviving vertices copy their coarse twin exactly.
  np.testing.assert_array_equal(dense[coarse.down.col], np.eye(50))
  # Every row's columns form a coarse triangle.
  triangles = {tuple(sorted(f)) for f in coarse.faces.tolist()}
  for r in range(100):
    assert tuple(sorted(up.col[up.row == r].tolist())) in triangles
