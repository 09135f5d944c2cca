"""Closed, outward-oriented triangle meshes of simple occluders: sphere, box, capped cylinder.

Every builder returns ``(vertices [N, 3] float64, faces [F, 3] int64)``. The meshes are
watertight (every edge is shared by exactly two faces, vertices are welded) and wound
counter-clockwise seen from outside in a right-handed frame, so their signed volume is positive
and ``rasterize(..., cull_backfaces=True)`` keeps the faces turned towards the camera. Poses are a
centre plus an optional [3, 3] rotation matrix (build it with ``simajax.geometry``), applied as
``x = R @ x_local + centre``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

ArrayLike = Union[np.ndarray, Sequence[float]]


def uv_sphere(center: ArrayLike = (0.0, 0.0, 0.0), radius: float = 1.0,
              rotation: Optional[np.ndarray] = None, *, num_lat: int = 8,
              num_lon: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """A latitude/longitude sphere (poles on the local z axis); defaults give 114 vertices, 224 faces.

  Args:
    center: [3] centre.
    radius: radius (> 0).
    rotation: optional [3, 3] rotation of the local axes (moves the poles).
    num_lat: number of latitude bands, pole to pole (>= 2).
    num_lon: number of longitude segments (>= 3).

  Returns:
    (vertices [2 + (num_lat - 1) * num_lon, 3], faces [2 * num_lon * (num_lat - 1), 3]).
  """
  _check_positive("uv_sphere", radius=radius)
  if num_lat < 2 or num_lon < 3:
    raise ValueError(f"uv_sphere: need num_lat >= 2 and num_lon >= 3, got {num_lat}, {num_lon}")
  theta = np.pi * np.arange(1, num_lat) / num_lat  # polar angle of the inner rings
  phi = 2.0 * np.pi * np.arange(num_lon) / num_lon
  ring = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.sin(theta)[:, None] * np.sin(phi),
                   np.broadcast_to(np.cos(theta)[:, None], (num_lat - 1, num_lon))], axis=-1)
  vertices = np.concatenate([[[0.0, 0.0, 1.0]], ring.reshape(-1, 3), [[0.0, 0.0, -1.0]]])
  north, south = 0, len(vertices) - 1

  def ring_id(i, j):
    return 1 + i * num_lon + j % num_lon

  j = np.arange(num_lon)
  faces = [np.stack([np.full(num_lon, north), ring_id(0, j), ring_id(0, j + 1)], axis=1)]
  for i in range(num_lat - 2):
    faces.append(_quads(ring_id(i, j), ring_id(i + 1, j), ring_id(i + 1, j + 1),
                        ring_id(i, j + 1)))
  last = num_lat - 2
  faces.append(np.stack([np.full(num_lon, south), ring_id(last, j + 1), ring_id(last, j)], axis=1))
  return _place(vertices * radius, np.concatenate(faces), center, rotation)


def box(center: ArrayLike = (0.0, 0.0, 0.0), size: Union[float, ArrayLike] = 1.0,
        rotation: Optional[np.ndarray] = None, *,
        subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """An axis-aligned (then rotated) box; each side is a subdivisions x subdivisions quad grid.

  Args:
    center: [3] centre.
    size: edge lengths, a scalar or [3] (along the local x, y, z axes).
    rotation: optional [3, 3] rotation of the local axes.
    subdivisions: quads per side edge (>= 1); the default gives 108 faces.

  Returns:
    (vertices [6 n^2 + 2, 3], faces [12 n^2, 3]) with n = subdivisions.
  """
  size = np.broadcast_to(np.asarray(size, dtype=np.float64), (3,))
  _check_positive("box", size=size)
  n = int(subdivisions)
  if n < 1:
    raise ValueError(f"box: subdivisions must be >= 1, got {subdivisions}")
  t = np.linspace(-0.5, 0.5, n + 1)
  grid_s, grid_t = np.meshgrid(t, t, indexing="ij")  # [n+1, n+1]
  ids = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
  side_faces = _quads(ids[:-1, :-1].ravel(), ids[1:, :-1].ravel(), ids[1:, 1:].ravel(),
                      ids[:-1, 1:].ravel())
  vertices, faces = [], []
  for axis in range(3):
    u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3  # (u, v, normal) is right-handed
    for side in (1.0, -1.0):
      points = np.zeros((n + 1, n + 1, 3))
      points[..., axis] = 0.5 * side
      points[..., u_axis] = grid_s
      points[..., v_axis] = grid_t
      # Increasing (s, t) winds counter-clockwise about +axis; reverse it on the -axis side.
      oriented = side_faces if side > 0 else side_faces[:, ::-1]
      faces.append(oriented + len(vertices) * (n + 1) ** 2)
      vertices.append(points.reshape(-1, 3))
  vertices, faces = _weld(np.concatenate(vertices), np.concatenate(faces))
  return _place(vertices * size, faces, center, rotation)


def cylinder(center: ArrayLike = (0.0, 0.0, 0.0), radius: float = 1.0, height: float = 1.0,
             rotation: Optional[np.ndarray] = None, *, num_segments: int = 24,
             num_bands: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """A capped cylinder along the local z axis, centred at ``center``.

  Args:
    center: [3] centre (midpoint of the axis).
    radius: radius (> 0).
    height: length along the axis (> 0).
    rotation: optional [3, 3] rotation of the local axes (the axis becomes ``rotation[:, 2]``).
    num_segments: segments around the axis (>= 3).
    num_bands: side bands along the axis (>= 1); defaults give 96 faces.

  Returns:
    (vertices [(num_bands + 1) * num_segments + 2, 3], faces [2 * num_segments * (num_bands + 1),
    3]).
  """
  _check_positive("cylinder", radius=radius, height=height)
  if num_segments < 3 or num_bands < 1:
    raise ValueError(f"cylinder: need num_segments >= 3 and num_bands >= 1, got {num_segments}, "
                     f"{num_bands}")
  phi = 2.0 * np.pi * np.arange(num_segments) / num_segments
  heights = np.linspace(-0.5 * height, 0.5 * height, num_bands + 1)
  rings = np.stack([np.broadcast_to(radius * np.cos(phi), (num_bands + 1, num_segments)),
                    np.broadcast_to(radius * np.sin(phi), (num_bands + 1, num_segments)),
                    np.broadcast_to(heights[:, None], (num_bands + 1, num_segments))], axis=-1)
  vertices = np.concatenate([rings.reshape(-1, 3), [[0.0, 0.0, -0.5 * height]],
                             [[0.0, 0.0, 0.5 * height]]])
  bottom, top = len(vertices) - 2, len(vertices) - 1

  def ring_id(i, j):
    return i * num_segments + j % num_segments

  j = np.arange(num_segments)
  faces = [_quads(ring_id(i, j), ring_id(i, j + 1), ring_id(i + 1, j + 1), ring_id(i + 1, j))
           for i in range(num_bands)]
  faces.append(np.stack([np.full(num_segments, bottom), ring_id(0, j + 1), ring_id(0, j)], 1))
  faces.append(np.stack([np.full(num_segments, top), ring_id(num_bands, j),
                         ring_id(num_bands, j + 1)], 1))
  return _place(vertices, np.concatenate(faces), center, rotation)


def _quads(a, b, c, d) -> np.ndarray:
  """Two triangles (a, b, c), (a, c, d) per quad a-b-c-d, keeping the quad's winding."""
  return np.concatenate([np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)])


def _weld(vertices, faces):
  """Merges coincident vertices (the shared edges of the box sides)."""
  _, first, inverse = np.unique(np.round(vertices, 9), axis=0, return_index=True,
                                return_inverse=True)
  return vertices[first], inverse.reshape(-1)[faces]


def _place(vertices, faces, center, rotation):
  center = np.asarray(center, dtype=np.float64)
  if center.shape != (3,):
    raise ValueError(f"primitive centre must have shape (3,), got {center.shape}")
  if rotation is not None:
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
      raise ValueError("primitive rotation must be a [3, 3] rotation matrix")
    if np.linalg.det(rotation) < 0:
      raise ValueError("primitive rotation must be proper (det +1); a reflection flips the winding")
    vertices = vertices @ rotation.T
  return vertices + center, faces.astype(np.int64)


def _check_positive(name, **values):
  for key, value in values.items():
    if not np.all(np.asarray(value) > 0):
      raise ValueError(f"{name}: {key} must be positive, got {value}")
