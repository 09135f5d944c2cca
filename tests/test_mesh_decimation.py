"""Quadric edge-collapse decimation."""

import heapq
import math

import numpy as np
import pytest

from fixtures.mesh_fixture import sphere_mesh
from simajax.mesh import decimate
from simajax.mesh.decimation import vertex_quadrics


def literal_qslim(vertices, faces):
  """COMA's qslim_decimator_transformer transcribed as published: tuples in the heap, a full queue
  scan per collapse, cost by matrix products. The surviving ids and faces must match."""
  quadrics = vertex_quadrics(vertices, faces)
  edges = {tuple(sorted((f[k], f[(k + 1) % 3]))) for f in faces.tolist() for k in range(3)}
  edges = sorted(edges, key=lambda rc: (rc[1], rc[0]))

  def costs(r, c):
    q = quadrics[r] + quadrics[c]
    pr, pc = np.append(vertices[r], 1.0), np.append(vertices[c], 1.0)
    return pr @ q @ pr, pc @ q @ pc, q

  queue = []
  for r, c in edges:
    heapq.heappush(queue, (min(costs(r, c)[:2]), (r, c)))
  faces = faces.copy()
  target = math.ceil(len(vertices) / 2)
  while len(np.unique(faces)) > target:
    cost, (r, c) = heapq.heappop(queue)
    if r == c:
      continue
    destroy_c, destroy_r, q = costs(r, c)
    if min(destroy_c, destroy_r) > cost:
      heapq.heappush(queue, (min(destroy_c, destroy_r), (r, c)))
      continue
    keep, gone = (r, c) if destroy_c < destroy_r else (c, r)
    faces[faces == gone] = keep
    queue = [(k, (keep if a == gone else a, keep if b == gone else b)) for k, (a, b) in queue]
    quadrics[r] = quadrics[c] = q
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
                  & (faces[:, 2] != faces[:, 0])]
  kept = np.unique(faces)
  return kept, np.searchsorted(kept, faces)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_literal_transcription(seed):
  vertices, faces = sphere_mesh(90, seed)
  result = decimate(vertices, faces)
  kept, expected_faces = literal_qslim(vertices, faces)
  np.testing.assert_array_equal(result.down.col, kept)
  np.testing.assert_array_equal(result.faces, expected_faces)


def test_halves_closed_mesh_and_keeps_positions():
  vertices, faces = sphere_mesh(101)
  original_faces = faces.copy()
  result = decimate(vertices, faces)
  np.testing.assert_array_equal(faces, original_faces)  # the input is not modified
  assert result.vertices.shape == (51, 3)
  down = result.down.to_dense(np.float64)
  assert down.shape == (51, 101)
  np.testing.assert_array_equal(down.sum(axis=1), 1.0)
  assert np.all(np.diff(result.down.col) > 0)
  np.testing.assert_array_equal(down @ vertices, result.vertices)
  np.testing.assert_array_equal(np.unique(result.faces), np.arange(51))
  f = result.faces
  assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0]))


def test_vertex_quadrics_sum_face_planes():
  vertices, faces = sphere_mesh(30, seed=3)
  quadrics = vertex_quadrics(vertices, faces)
  # Independent route: planes from cross products, accumulated face by face.
  expected = np.zeros((30, 4, 4))
  for f in faces:
    normal = np.cross(vertices[f[1]] - vertices[f[0]], vertices[f[2]] - vertices[f[0]])
    normal /= np.linalg.norm(normal)
    plane = np.append(normal, -normal @ vertices[f[0]])
    for v in f:
      expected[v] += np.outer(plane, plane)
  np.testing.assert_allclose(quadrics, expected, atol=1e-12)
  # Each vertex lies on all its planes, so its own quadric error vanishes.
  homogeneous = np.concatenate([vertices, np.ones((30, 1))], axis=1)
  errors = np.einsum("vi,vij,vj->v", homogeneous, quadrics, homogeneous)
  np.testing.assert_allclose(errors, 0, atol=1e-12)


def test_open_mesh_decimates():
  grid = np.stack(np.meshgrid(np.arange(6.0), np.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
  vertices = np.concatenate([grid, np.sin(grid[:, :1]) * np.cos(grid[:, 1:])], axis=1)
  ids = np.arange(30).reshape(6, 5)
  quads = np.stack([ids[:-1, :-1], ids[1:, :-1], ids[1:, 1:], ids[:-1, 1:]], -1).reshape(-1, 4)
  faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
  result = decimate(vertices, faces)
  assert result.vertices.shape[0] <= 15
  np.testing.assert_array_equal(vertices[result.down.col], result.vertices)


def test_rejects_bad_input():
  vertices, faces = sphere_mesh(20)
  with pytest.raises(ValueError, match="outside"):
    decimate(vertices, faces + 1)
  with pytest.raises(ValueError, match="below one triangle"):
    decimate(vertices, faces, num_vertices=2)
