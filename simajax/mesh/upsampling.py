"""Up-sampling matrices from closest points on the coarse surface (docs/architecture.md#mesh-hierarchy).

This follows COMA's ``setup_deformation_transfer``: every fine vertex is attached to the coarse
triangle holding its closest surface point, with weights that depend on where on the triangle that
point lies (inside, on an edge, at a corner).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simajax.mesh.topology import SparseCOO
from simajax.mesh.validation import check_mesh

# Where on its triangle (a, b, c) a closest point lies, numbered as psbody's AABB tree does:
# 0 inside; 1..3 on edge (a, b), (b, c), (c, a); 4..6 at corner a, b, c.
INSIDE = 0
EDGE_AB, EDGE_BC, EDGE_CA = 1, 2, 3
CORNER_A, CORNER_B, CORNER_C = 4, 5, 6

# Pairs of points x triangles handled per vectorised block (bounds the temporary memory).
_BLOCK_PAIRS = 1 << 18


class ClosestPoints(NamedTuple):
  """Closest points on a triangle mesh.

  Attributes:
    face: [P] index of the triangle holding the closest point (lowest index among exact ties).
    part: [P] where on that triangle: ``INSIDE``, ``EDGE_*`` or ``CORNER_*``.
    point: [P, 3] the closest point.
    barycentric: [P, 3] its barycentric coordinates on the triangle.
  """
  face: np.ndarray
  part: np.ndarray
  point: np.ndarray
  barycentric: np.ndarray


def _dot(x, y):
  return np.einsum("...k,...k->...", x, y)


def _closest_on_triangles(p, a, b, c):
  """Closest points of p [P, 1, 3] on triangles (a, b, c) [1, T, 3] (Ericson's region tests).

  Returns:
    (part [P, T], barycentric weights of b and c [P, T] each).
  """
  ab, ac = b - a, c - a
  ap, bp, cp = p - a, p - b, p - c
  d1, d2 = _dot(ab, ap), _dot(ac, ap)
  d3, d4 = _dot(ab, bp), _dot(ac, bp)
  d5, d6 = _dot(ab, cp), _dot(ac, cp)
  va = d3 * d6 - d5 * d4
  vb = d5 * d2 - d1 * d6
  vc = d1 * d4 - d3 * d2
  with np.errstate(divide="ignore", invalid="ignore"):
    on_ab = d1 / (d1 - d3)
    on_ca = d2 / (d2 - d6)
    on_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    total = va + vb + vc
    inside_b, inside_c = vb / total, vc / total

  # The tests run in Ericson's order; the first region that matches wins (np.select).
  conditions = [
      (d1 <= 0) & (d2 <= 0),
      (d3 >= 0) & (d4 <= d3),
      (vc <= 0) & (d1 >= 0) & (d3 <= 0),
      (d6 >= 0) & (d5 <= d6),
      (vb <= 0) & (d2 >= 0) & (d6 <= 0),
      (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
  ]
  part = np.select(conditions, [CORNER_A, CORNER_B, EDGE_AB, CORNER_C, EDGE_CA, EDGE_BC], INSIDE)
  zero, one = np.zeros_like(d1), np.ones_like(d1)
  weight_b = np.select(conditions, [zero, one, on_ab, zero, zero, 1 - on_bc], inside_b)
  weight_c = np.select(conditions, [zero, zero, zero, one, on_ca, on_bc], inside_c)
  return part, weight_b, weight_c


def closest_points(points, vertices, faces) -> ClosestPoints:
  """Closest point on a triangle mesh's surface for every query point (brute force, vectorised).

  Args:
    points: [P, 3] query points.
    vertices: [N, 3] mesh vertices.
    faces: [F, 3] mesh triangles.

  Returns:
    A ``ClosestPoints`` tuple.
  """
  vertices, faces = check_mesh(vertices, faces)
  points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
  a, b, c = (vertices[faces[:, k]][None] for k in range(3))
  block = max(1, _BLOCK_PAIRS // len(faces))
  face = np.empty(len(points), dtype=np.int64)
  part = np.empty(len(points), dtype=np.int64)
  weights = np.empty((len(points), 3))
  for start in range(0, len(points), block):
    p = points[start:start + block, None]
    parts, w_b, w_c = _closest_on_triangles(p, a, b, c)
    w_a = 1 - w_b - w_c
    nearest = a * w_a[..., None] + b * w_b[..., None] + c * w_c[..., None]
    distance = np.sum((p - nearest) ** 2, axis=-1)
    # Degenerate (zero-area) triangles give NaN weights; they never count as nearest.
    best = np.argmin(np.where(np.isnan(distance), np.inf, distance), axis=1)
    rows = np.arange(len(best))
    face[start:start + block] = best
    part[start:start + block] = parts[rows, best]
    weights[start:start + block] = np.stack([w_a[rows, best], w_b[rows, best], w_c[rows, best]], 1)
  corners = vertices[faces[face]]
  return ClosestPoints(face, part, np.einsum("pk,pkd->pd", weights, corners), weights)


def upsampling_matrix(fine_vertices, coarse_vertices, coarse_faces) -> SparseCOO:
  """U [N_fine, N_coarse] such that x_fine = U @ x_coarse (3 stored entries per row).

  Each row holds the 3 vertices of the coarse triangle nearest to the fine vertex, explicit zeros
  included. Inside the triangle the weights are the barycentric coordinates of the closest point;
  on an edge they are the unconstrained least-squares fit of the fine vertex itself by the two edge
  vertices (third weight 0); at a corner, 1 on that corner. A fine vertex that survived decimation
  thus copies its coarse twin exactly.

  Args:
    fine_vertices: [N_fine, 3] vertices of the finer level.
    coarse_vertices: [N_coarse, 3] vertices of the coarser level.
    coarse_faces: [F, 3] triangles of the coarser level.

  Returns:
    ``SparseCOO`` with float32 values, entries row by row in triangle-corner order.
  """
  coarse_vertices, coarse_faces = check_mesh(coarse_vertices, coarse_faces, "coarse mesh")
  fine = np.asarray(fine_vertices, dtype=np.float64)
  if fine.ndim != 2 or fine.shape[1] != 3:
    raise ValueError(f"fine mesh: vertices must have shape [N, 3], got {fine.shape}")
  found = closest_points(fine, coarse_vertices, coarse_faces)
  columns = coarse_faces[found.face]
  weights = np.where(found.part[:, None] == INSIDE, found.barycentric, 0.0)
  corner = found.part >= CORNER_A
  weights[corner, found.part[corner] - CORNER_A] = 1.0
  for i in np.flatnonzero((found.part >= EDGE_AB) & (found.part <= EDGE_CA)):
    first = found.part[i] - EDGE_AB
    pair = [first, (first + 1) % 3]
    basis = coarse_vertices[columns[i, pair]].T
    weights[i, pair] = np.linalg.lstsq(basis, fine[i], rcond=None)[0]
  rows = np.repeat(np.arange(len(fine), dtype=np.int64), 3)
  return SparseCOO(rows, columns.reshape(-1).astype(np.int64),
                   weights.reshape(-1).astype(np.float32), (len(fine), len(coarse_vertices)))
