"""The full mesh hierarchy (decimation, up-sampling, spirals) and its on-disk cache."""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
from typing import Optional

import numpy as np

from simajax.mesh.decimation import decimate
from simajax.mesh.spirals import spiral_indices
from simajax.mesh.topology import MeshTopology
from simajax.mesh.upsampling import upsampling_matrix
from simajax.mesh.validation import check_mesh

# Part of every cache key: bump it whenever the builder's output changes.
_CACHE_FORMAT = b"simajax-topology-v1"


def _check_levels(num_vertices: int, num_levels: int, spiral_length: int, dilation: int):
  """Raises ValueError unless the requested hierarchy fits a mesh of ``num_vertices``."""
  for name, value in (("num_levels", num_levels), ("spiral_length", spiral_length),
                      ("dilation", dilation)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if num_levels < 2:
    raise ValueError(f"num_levels must be >= 2 (the full mesh and one coarser level), "
                     f"got {num_levels}")
  sizes = [num_vertices]
  for _ in range(num_levels - 1):
    sizes.append(math.ceil(sizes[-1] / 2))
  needed = spiral_length * dilation
  if sizes[-2] < needed or sizes[-1] < 3:
    raise ValueError(
        f"too few vertices: {num_vertices} halve to {sizes} over {num_levels} levels, but every "
        f"level with spirals needs >= spiral_length x dilation = {needed} vertices and the "
        f"coarsest level >= 3")


def build_topology(vertices, faces, *, num_levels: int = 5, spiral_length: int = 9,
                   dilation: int = 1, joint_regressor=None) -> MeshTopology:
  """Builds the multi-level topology of a triangle mesh (deterministic).

  Level l+1 is level l decimated to ceil(N_l / 2) vertices by quadric edge collapse; U_l
  up-samples level l+1 to level l; spirals are built for levels 0..num_levels-2. For the MANO
  hand this reproduces the official SiMA-Hand topology exactly (778 -> 389 -> 195 -> 98 -> 49).

  Args:
    vertices: [N, 3] level-0 positions.
    faces: [F, 3] level-0 triangles (closed or with boundary).
    num_levels: number of levels including the full mesh.
    spiral_length: entries per spiral row.
    dilation: spiral dilation.
    joint_regressor: optional [J, N] matrix stored with the topology (float32).

  Returns:
    The ``MeshTopology``.

  Raises:
    ValueError: on an invalid mesh or regressor, or a hierarchy too deep for the mesh.
  """
  vertices, faces = check_mesh(vertices, faces)
  _check_levels(vertices.shape[0], num_levels, spiral_length, dilation)
  if joint_regressor is not None:
    joint_regressor = np.asarray(joint_regressor, dtype=np.float32)
    if joint_regressor.ndim != 2 or joint_regressor.shape[1] != vertices.shape[0]:
      raise ValueError(f"joint_regressor must have shape [J, {vertices.shape[0]}], "
                       f"got {joint_regressor.shape}")

  level_vertices, level_faces, ups, downs = [vertices], [faces], [], []
  for _ in range(num_levels - 1):
    coarse = decimate(level_vertices[-1], level_faces[-1])
    ups.append(upsampling_matrix(level_vertices[-1], coarse.vertices, coarse.faces))
    downs.append(coarse.down)
    level_vertices.append(coarse.vertices)
    level_faces.append(coarse.faces)
  spirals = tuple(spiral_indices(v, f, spiral_length, dilation)
                  for v, f in zip(level_vertices[:-1], level_faces[:-1]))
  return MeshTopology(tuple(level_vertices), tuple(level_faces), spirals, tuple(ups), tuple(downs),
                      joint_regressor)


def default_cache_dir() -> pathlib.Path:
  """``$SIMAJAX_CACHE/topology`` if set, else ``~/.cache/simajax/topology``."""
  root = os.environ.get("SIMAJAX_CACHE")
  base = pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "simajax"
  return base / "topology"


def topology_key(vertices, faces, *, num_levels: int = 5, spiral_length: int = 9,
                 dilation: int = 1, joint_regressor=None) -> str:
  """sha256 hex digest over the mesh arrays, the regressor and the build parameters."""
  digest = hashlib.sha256(_CACHE_FORMAT)
  arrays = [np.ascontiguousarray(vertices, dtype=np.float64),
            np.ascontiguousarray(faces, dtype=np.int64)]
  if joint_regressor is not None:
    arrays.append(np.ascontiguousarray(joint_regressor, dtype=np.float32))
  for array in arrays:
    # The shape goes in too, so equal bytes in different layouts do not collide.
    digest.update(repr(array.shape).encode())
    digest.update(array.tobytes())
  digest.update(repr((int(num_levels), int(spiral_length), int(dilation))).encode())
  return digest.hexdigest()


def cached_topology(vertices, faces, *, cache_dir: Optional[str | os.PathLike] = None,
                    **kwargs) -> MeshTopology:
  """``build_topology`` with an on-disk cache keyed by ``topology_key``.

  Args:
    vertices: [N, 3] level-0 positions.
    faces: [F, 3] level-0 triangles.
    cache_dir: folder of cached ``<key>.npz`` files; default ``default_cache_dir()``.
    **kwargs: ``build_topology`` keywords (num_levels, spiral_length, dilation,
      joint_regressor); they are part of the key.

  Returns:
    The ``MeshTopology``, loaded from the cache when present, else built and saved there
    (atomically, so concurrent builders never read a partial file).
  """
  vertices, faces = check_mesh(vertices, faces)
  folder = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
  path = folder / f"{topology_key(vertices, faces, **kwargs)}.npz"
  if path.exists():
    return MeshTopology.load(path)
  topology = build_topology(vertices, faces, **kwargs)
  folder.mkdir(parents=True, exist_ok=True)
  topology.save(path)
  return topology
