"""Primitive meshes are closed, consistently outward-oriented and have the requested size/pose."""

import numpy as np
import pytest

from simajax.render import primitives

# A proper rotation (orthonormal rows, det +1), written out so the test does not rely on the
# library's own rotation helpers.
ROT = np.array([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]])
CENTER = np.array([0.1, -0.2, 0.7])

MESHES = {
    "sphere": lambda: primitives.uv_sphere(CENTER, 0.3),
    "sphere_fine": lambda: primitives.uv_sphere(CENTER, 0.3, ROT, num_lat=20, num_lon=7),
    "box": lambda: primitives.box(CENTER, (0.2, 0.4, 0.6), ROT),
    "box_coarse": lambda: primitives.box(CENTER, 0.5, subdivisions=1),
    "cylinder": lambda: primitives.cylinder(CENTER, 0.1, 0.5, ROT),
    "cylinder_bands": lambda: primitives.cylinder(CENTER, 0.1, 0.5, num_segments=5, num_bands=3),
}


def signed_volume(vertices, faces):
  tri = vertices[faces]
  return np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0


@pytest.mark.parametrize("name", sorted(MESHES))
def test_closed_manifold_and_outward(name):
  vertices, faces = MESHES[name]()
  assert vertices.shape[1] == 3 and faces.shape[1] == 3 and faces.dtype == np.int64
  directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  undirected, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
  assert (counts == 2).all()  # every edge shared by exactly two faces: closed
  # Each directed edge once: neighbouring faces traverse their shared edge in opposite directions.
  assert len(np.unique(directed, axis=0)) == len(directed)
  assert len(np.unique(faces)) == len(vertices)  # no stray vertices
  assert len(vertices) - len(undirected) + len(faces) == 2  # Euler characteristic of a sphere
  assert signed_volume(vertices, faces) > 0
  # Convex shapes: every face normal points away from the centre.
  tri = vertices[faces]
  normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  assert (np.einsum("fi,fi->f", normals, tri.mean(axis=1) - CENTER) > 0).all()
  assert 12 <= len(faces) <= 300


def test_volumes_and_extents_match_the_parameters():
  vertices, faces = primitives.uv_sphere(CENTER, 0.3)
  np.testing.assert_allclose(np.linalg.norm(vertices - CENTER, axis=1), 0.3, rtol=1e-12)
  ratio = signed_volume(vertices, faces) / (4.0 / 3.0 * np.pi * 0.3 ** 3)
  assert 0.9 < ratio < 1.0  # an inscribed polyhedron

  vertices, faces = primitives.box(CENTER, (0.2, 0.4, 0.6), ROT)
  np.testing.assert_allclose(signed_volume(vertices, faces), 0.2 * 0.4 * 0.6, rtol=1e-12)
  local = (vertices - CENTER) @ ROT  # rows of R^T (x - c)
  np.testing.assert_allclose(np.abs(local).max(axis=0), [0.1, 0.2, 0.3], rtol=1e-12)

  vertices, faces = primitives.cylinder(CENTER, 0.1, 0.5, ROT)
  local = (vertices - CENTER) @ ROT
  np.testing.assert_allclose(np.abs(local[:, 2]).max(), 0.25, rtol=1e-12)
  np.testing.assert_allclose(np.linalg.norm(local[:, :2], axis=1).max(), 0.1, rtol=1e-12)
  ratio = signed_volume(vertices, faces) / (np.pi * 0.1 ** 2 * 0.5)
  assert 0.97 < ratio < 1.0


def test_bad_parameters_are_rejected():
  with pytest.raises(ValueError, match="radius"):
    primitives.uv_sphere(CENTER, -1.0)
  with pytest.raises(ValueError, match="size"):
    primitives.box(CENTER, (1.0, 0.0, 1.0))
  with pytest.raises(ValueError, match="rotation"):
    primitives.cylinder(CENTER, 1.0, 1.0, rotation=np.diag([1.0, 1.0, -1.0]))
  with pytest.raises(ValueError, match="centre"):
    primitives.box((0.0, 0.0), 1.0)
