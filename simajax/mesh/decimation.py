"""Quadric edge-collapse decimation that keeps vertex positions (docs/architecture.md#mesh-hierarchy).

This replays the ``qslim_decimator_transformer`` of COMA's ``mesh_sampling`` (used by MobRecon,
H2ONet and SiMA-Hand to build their hierarchies) step for step, heap ties and all, so the faces and
the selection matrix come out identical to the official ``transform.pkl``. Costs are evaluated by
one scalar formula everywhere, so a re-computed cost equals the queued one bit for bit whenever the
quadrics did not change.
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple

import numpy as np

from simajax.mesh.topology import SparseCOO
from simajax.mesh.validation import check_mesh


class Decimation(NamedTuple):
  """One level of decimation.

  Attributes:
    vertices: [M, 3] surviving vertices, positions unchanged (``down`` applied to the input).
    faces: [F', 3] faces re-indexed to the surviving vertices.
    down: D [M, N] selection matrix, one 1.0 per row; row i picks the i-th surviving original id.
  """
  vertices: np.ndarray
  faces: np.ndarray
  down: SparseCOO


def vertex_quadrics(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Per-vertex error quadrics: the sum of p p^T over the planes p of the incident faces.

  Args:
    vertices: [N, 3] float64 positions.
    faces: [F, 3] int64 triangles.

  Returns:
    [N, 4, 4] float64 quadrics. Each plane (a, b, c, d) is the last right-singular vector of the
    face's [vertices | 1] matrix, scaled so that |(a, b, c)| = 1.
  """
  corners = np.concatenate([vertices[faces], np.ones(faces.shape + (1,))], axis=2)
  planes = np.linalg.svd(corners)[2][:, -1, :]
  planes = planes / np.sqrt(np.sum(planes[:, :3] ** 2, axis=1, keepdims=True))
  outer = planes[:, :, None] * planes[:, None, :]
  quadrics = np.zeros((vertices.shape[0], 4, 4))
  # Face-major accumulation order, as the reference loop, so the sums round identically.
  np.add.at(quadrics, faces.reshape(-1), np.repeat(outer, 3, axis=0))
  return quadrics


def _point_cost(q: list[float], p: tuple[float, float, float]) -> float:
  """(p, 1)^T Q (p, 1) for a flattened 4x4 quadric, in a fixed evaluation order."""
  x, y, z = p
  t0 = q[0] * x + q[1] * y + q[2] * z + q[3]
  t1 = q[4] * x + q[5] * y + q[6] * z + q[7]
  t2 = q[8] * x + q[9] * y + q[10] * z + q[11]
  t3 = q[12] * x + q[13] * y + q[14] * z + q[15]
  return x * t0 + y * t1 + z * t2 + t3


def _collapse_costs(quadrics, points, r: int, c: int):
  """Costs of collapsing edge (r, c): (destroy c, destroy r, summed quadric)."""
  qsum = [a + b for a, b in zip(quadrics[r], quadrics[c])]
  return _point_cost(qsum, points[r]), _point_cost(qsum, points[c]), qsum


def _candidate_edges(faces: np.ndarray, num_vertices: int) -> np.ndarray:
  """Undirected edges (r < c) in column-major order of the symmetric adjacency (by c, then r)."""
  pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  edges = np.unique(np.sort(pairs, axis=1) @ np.array([1, num_vertices]))
  return np.stack([edges % num_vertices, edges // num_vertices], axis=1)


def decimate(vertices, faces, num_vertices: int | None = None) -> Decimation:
  """Halves (by default) the vertex count by quadric edge collapse, without moving vertices.

  Args:
    vertices: [N, 3] vertex positions.
    faces: [F, 3] triangles.
    num_vertices: the target count of vertices referenced by faces; default ceil(N / 2).

  Returns:
    A ``Decimation`` with the surviving vertices, re-indexed faces and the selection matrix D.

  Raises:
    ValueError: on an invalid mesh, or when no more edges can be collapsed before the target.
  """
  vertices, faces = check_mesh(vertices, faces)
  faces = faces.copy()  # collapsed in place below; never the caller's array
  n = vertices.shape[0]
  target = math.ceil(n * 0.5) if num_vertices is None else int(num_vertices)
  if target < 3:
    raise ValueError(f"decimate: target of {target} vertices is below one triangle (3)")

  quadrics = vertex_quadrics(vertices, faces).reshape(n, 16).tolist()
  points = [tuple(p) for p in vertices.tolist()]
  # Queue entries are mutable [cost, r, c] lists: they order exactly like the reference's
  # (cost, (r, c)) tuples, and renaming a destroyed vertex can edit them in place through
  # `entries_of`, which the reference does by scanning the whole queue.
  queue = []
  entries_of: dict[int, list[list]] = {}
  for r, c in _candidate_edges(faces, n).tolist():
    destroy_c, destroy_r, _ = _collapse_costs(quadrics, points, r, c)
    entry = [min(destroy_c, destroy_r), r, c]
    heapq.heappush(queue, entry)
    entries_of.setdefault(r, []).append(entry)
    entries_of.setdefault(c, []).append(entry)

  remaining = len(np.unique(faces))
  while remaining > target:
    if not queue:
      raise ValueError(f"decimate: ran out of edges at {remaining} vertices, "
                       f"before the target of {target}")
    entry = heapq.heappop(queue)
    _, r, c = entry
    if r == c:
      continue
    destroy_c, destroy_r, qsum = _collapse_costs(quadrics, points, r, c)
    cost = min(destroy_c, destroy_r)
    if cost > entry[0]:
      entry[0] = cost
      heapq.heappush(queue, entry)
      continue
    keep, gone = (r, c) if destroy_c < destroy_r else (c, r)
    faces[faces == gone] = keep
    moved = entries_of.pop(gone, [])
    for other in moved:
      if other[1] == gone:
        other[1] = keep
      if other[2] == gone:
        other[2] = keep
    entries_of.setdefault(keep, []).extend(moved)
    quadrics[r] = qsum
    quadrics[c] = qsum
    degenerate = ((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2])
                  | (faces[:, 2] == faces[:, 0]))
    faces = faces[~degenerate]
    remaining = len(np.unique(faces))

  kept = np.unique(faces)
  new_id = np.zeros(n, dtype=np.int64)
  new_id[kept] = np.arange(len(kept))
  down = SparseCOO(np.arange(len(kept), dtype=np.int64), kept.astype(np.int64),
                   np.ones(len(kept), dtype=np.float32), (len(kept), n))
  return Decimation(vertices[kept], new_id[faces], down)
