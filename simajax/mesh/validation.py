"""Checks on triangle-mesh arrays shared by the topology builders."""

from __future__ import annotations

import numpy as np


def check_mesh(vertices, faces, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
  """Validates a triangle mesh and returns it as float64 vertices and int64 faces.

  Args:
    vertices: [N, 3] finite vertex positions.
    faces: [F, 3] integer vertex ids in [0, N), three distinct ids per face.
    name: what the mesh is called in error messages (a file name, a level).

  Returns:
    ``(vertices, faces)`` as C-contiguous float64 [N, 3] and int64 [F, 3] arrays.

  Raises:
    ValueError: naming ``name`` and the field when the arrays do not describe a triangle mesh.
  """
  vertices = np.asarray(vertices)
  faces = np.asarray(faces)
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f"{name}: vertices must have shape [N, 3], got {vertices.shape}")
  if not np.issubdtype(vertices.dtype, np.number) or not np.all(np.isfinite(vertices)):
    raise ValueError(f"{name}: vertices must be finite numbers")
  if faces.ndim != 2 or faces.shape[1] != 3:
    raise ValueError(f"{name}: faces must be triangles with shape [F, 3], got {faces.shape}")
  if faces.shape[0] == 0:
    raise ValueError(f"{name}: faces is empty; at least one triangle is needed")
  if not np.issubdtype(faces.dtype, np.integer):
    raise ValueError(f"{name}: faces must hold integer vertex ids, got dtype {faces.dtype}")
  num_vertices = vertices.shape[0]
  if faces.min() < 0 or faces.max() >= num_vertices:
    bad = int(np.flatnonzero(np.any((faces < 0) | (faces >= num_vertices), axis=1))[0])
    raise ValueError(f"{name}: face {bad} = {faces[bad].tolist()} has a vertex id outside "
                     f"[0, {num_vertices})")
  repeated = ((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2])
              | (faces[:, 2] == faces[:, 0]))
  if np.any(repeated):
    bad = int(np.flatnonzero(repeated)[0])
    raise ValueError(f"{name}: face {bad} = {faces[bad].tolist()} repeats a vertex; "
                     f"each triangle needs three distinct vertex ids")
  return (np.ascontiguousarray(vertices, dtype=np.float64),
          np.ascontiguousarray(faces, dtype=np.int64))
