"""Spiral tables and the OpenMesh halfedge replay behind their ring order."""

import numpy as np
import pytest

from fixtures.mesh_fixture import sphere_mesh
from simajax.mesh import spiral_indices
from simajax.mesh.halfedge import HalfedgeMesh


def grid_mesh(nx=5, ny=4):
  """An open triangulated grid (has a boundary), faces oriented counter-clockwise."""
  xy = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"), -1).astype(float)
  vertices = np.concatenate([xy.reshape(-1, 2), np.zeros((nx * ny, 1))], axis=1)
  ids = np.arange(nx * ny).reshape(nx, ny)
  quads = np.stack([ids[:-1, :-1], ids[1:, :-1], ids[1:, 1:], ids[:-1, 1:]], -1).reshape(-1, 4)
  return vertices, np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def oriented_faces(faces):
  """Every face as its three cyclic rotations, for orientation-aware membership tests."""
  return {tuple(np.roll(f, k)) for f in faces.tolist() for k in range(3)}


def test_reference_row_zero(reference_topology):
  spirals = spiral_indices(reference_topology.vertices[0], reference_topology.faces[0])
  # Documented in shared/mesh_reference/README.md.
  np.testing.assert_array_equal(spirals[0], [0, 27, 94, 61, 3, 2, 1, 26, 24])


def test_closed_mesh_rings_turn_clockwise():
  vertices, faces = sphere_mesh(60)
  mesh = HalfedgeMesh(60, faces)
  oriented = oriented_faces(faces)
  for v in range(60):
    ring = mesh.one_ring(v)
    neighbours = {int(x) for f in faces if v in f for x in f if x != v}
    assert sorted(ring) == sorted(neighbours)
    # OpenMesh's circulator steps next(opposite(h)): consecutive (u, w) close the face (v, w, u).
    for u, w in zip(ring, ring[1:] + ring[:1]):
      assert (v, w, u) in oriented


def test_boundary_rings_start_at_the_boundary():
  vertices, faces = grid_mesh()
  mesh = HalfedgeMesh(len(vertices), faces)
  oriented = oriented_faces(faces)
  for v in range(len(vertices)):
    ring = mesh.one_ring(v)
    is_boundary_vertex = len(ring) != sum(v in f for f in faces.tolist())
    if is_boundary_vertex:
      # No face lies to the left of the first outgoing halfedge v -> ring[0].
      assert not any((v, ring[0], x) in oriented for x in range(len(vertices)))


def test_spirals_start_with_vertex_then_one_ring():
  vertices, faces = sphere_mesh(80, seed=1)
  spirals = spiral_indices(vertices, faces, spiral_length=12)
  mesh = HalfedgeMesh(80, faces)
  for v, row in enumerate(spirals.tolist()):
    ring = mesh.one_ring(v)
    assert row[0] == v
    assert row[1:1 + len(ring)] == ring
    assert len(set(row)) == 12
    second = {x for u in ring for x in mesh.one_ring(u)} - set(ring) - {v}
    assert set(row[1 + len(ring):]) <= second | {x for u in second for x in mesh.one_ring(u)}


def test_dilation_takes_every_other_entry():
  vertices, faces = sphere_mesh(80, seed=2)
  long = spiral_indices(vertices, faces, spiral_length=18)
  dilated = spiral_indices(vertices, faces, spiral_length=9, dilation=2)
  np.testing.assert_array_equal(dilated, long[:, ::2])


def test_small_components_fall_back_to_nearest_vertices():
  # Two tetrahedra: rings run out after 4 vertices, so 6-long spirals use the nearest vertices.
  tetra = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]])
  rng = np.random.default_rng(3)
  vertices = np.concatenate([rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) + 5.0])
  faces = np.concatenate([tetra, tetra + 4])
  spirals = spiral_indices(vertices, faces, spiral_length=6)
  distances = np.linalg.norm(vertices[:, None] - vertices[None], axis=-1)
  np.testing.assert_array_equal(spirals, np.argsort(distances, axis=1, kind="stable")[:, :6])


def test_openmesh_skips_a_complex_edge():
  # The same oriented triangle twice: the second copy re-uses a halfedge that already has a face.
  mesh = HalfedgeMesh(4, np.array([[0, 1, 2], [0, 1, 2], [0, 2, 3]]))
  assert mesh.num_faces == 2


def test_rejects_too_few_vertices():
  vertices, faces = sphere_mesh(8)
  with pytest.raises(ValueError, match="8 vertices cannot fill spirals"):
    spiral_indices(vertices, faces, spiral_length=9)
