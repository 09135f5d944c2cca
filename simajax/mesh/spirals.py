"""Spiral index tables (docs/architecture.md#mesh-hierarchy; SpiralNet++ ``extract_spirals``).

Row v of a table is v itself, then its 1-ring in OpenMesh's circulator order, then the following
rings, each continuing the spiral from where the previous ring ended, cut to a fixed length.
Vertices whose rings run out before the length is reached fall back to their nearest vertices.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from simajax.mesh.halfedge import HalfedgeMesh
from simajax.mesh.validation import check_mesh


def _next_ring(rings: list[list[int]], last_ring: list[int], used: list[int]) -> list[int]:
  """The ring after ``last_ring``: new vertices, continuing each ring member's circulator order.

  For every v1 of ``last_ring`` in order, v1's 1-ring is read cyclically starting just after its
  first member that lies in ``last_ring`` (from its start when none does).
  """
  last = set(last_ring)
  excluded = last.union(used)
  result: list[int] = []
  for v1 in last_ring:
    ring = rings[v1]
    start = next((k + 1 for k, v2 in enumerate(ring) if v2 in last), 0)
    for v2 in ring[start:] + ring[:start]:
      if v2 not in excluded:
        excluded.add(v2)
        result.append(v2)
  return result


def spiral_indices(vertices, faces, spiral_length: int = 9, dilation: int = 1) -> np.ndarray:
  """Spiral index table of a triangle mesh, identical to SpiralNet++'s on OpenMesh.

  Args:
    vertices: [N, 3] positions (only used by the nearest-vertex fallback).
    faces: [F, 3] triangles.
    spiral_length: entries per row.
    dilation: keep every ``dilation``-th of the first ``spiral_length * dilation`` spiral entries.

  Returns:
    int64 [N, spiral_length]; row v starts with v.

  Raises:
    ValueError: on an invalid mesh, or fewer than ``spiral_length * dilation`` vertices.
  """
  vertices, faces = check_mesh(vertices, faces)
  if spiral_length < 1 or dilation < 1:
    raise ValueError(f"spiral_length ({spiral_length}) and dilation ({dilation}) must be >= 1")
  size = spiral_length * dilation
  num_vertices = vertices.shape[0]
  if num_vertices < size:
    raise ValueError(f"spiral_indices: {num_vertices} vertices cannot fill spirals of "
                     f"{spiral_length} x dilation {dilation} = {size} distinct ids")
  mesh = HalfedgeMesh(num_vertices, faces)
  rings = [mesh.one_ring(v) for v in range(num_vertices)]
  tree = None
  table = np.empty((num_vertices, spiral_length), dtype=np.int64)
  for v0 in range(num_vertices):
    spiral = [v0]
    last_ring = rings[v0]
    next_ring = _next_ring(rings, last_ring, spiral)
    spiral += last_ring
    while len(spiral) + len(next_ring) < size and next_ring:
      last_ring = next_ring
      next_ring = _next_ring(rings, last_ring, spiral)
      spiral += last_ring
    if next_ring:
      spiral += next_ring
    else:
      # Rings ran out (small or open component): SpiralNet++ then uses the nearest vertices.
      tree = tree if tree is not None else cKDTree(vertices)
      spiral = tree.query(vertices[v0][None], k=size)[1].reshape(-1).tolist()
    table[v0] = spiral[:size][::dilation]
  return table
