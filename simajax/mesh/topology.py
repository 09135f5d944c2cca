"""The multi-level mesh topology the spiral decoder runs on, and its on-disk format.

A ``MeshTopology`` holds, for a hierarchy of L+1 levels (level 0 = the full mesh):
  * ``vertices[l]`` [N_l, 3] and ``faces[l]`` [F_l, 3] of every level;
  * ``spirals[l]`` [N_l, 9] spiral index tables for levels 0..L-1;
  * ``up[l]`` / ``down[l]``: sparse COO matrices U_l [N_l, N_{l+1}] (3 entries per row,
    barycentric up-sampling) and D_l [N_{l+1}, N_l] (vertex selection), for l = 0..L-1;
  * ``joint_regressor`` [21, N_0] (optional): J = joint_regressor @ V, in the model's joint order.

The file format is the one of ``shared/mesh_reference/assets.npz`` (keys ``verts_l``,
``faces_l``, ``spiral_l``, ``up_l_{row,col,val,shape}``, ``down_l_{row,col,val,shape}``,
``joint_regressor``), so the official topology and ours are interchangeable.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Optional

import numpy as np

from simajax import cli


@dataclasses.dataclass(frozen=True)
class SparseCOO:
  """A sparse matrix as COO triplets (explicit zeros and any entry order are kept)."""
  row: np.ndarray  # int64 [nnz]
  col: np.ndarray  # int64 [nnz]
  val: np.ndarray  # float32 [nnz]
  shape: tuple[int, int]

  def to_dense(self, dtype=np.float32) -> np.ndarray:
    """Dense [shape] array; duplicate (row, col) entries are summed."""
    dense = np.zeros(self.shape, dtype=np.float64)
    np.add.at(dense, (self.row, self.col), self.val.astype(np.float64))
    return dense.astype(dtype)


@dataclasses.dataclass(frozen=True)
class MeshTopology:
  """A mesh hierarchy; see the module docstring for the meaning of each field."""
  vertices: tuple[np.ndarray, ...]
  faces: tuple[np.ndarray, ...]
  spirals: tuple[np.ndarray, ...]
  up: tuple[SparseCOO, ...]
  down: tuple[SparseCOO, ...]
  joint_regressor: Optional[np.ndarray] = None

  @property
  def num_levels(self) -> int:
    """Number of levels, including the full mesh (5 for the hand: 778 ... 49)."""
    return len(self.vertices)

  @property
  def level_sizes(self) -> tuple[int, ...]:
    """Vertex counts per level, finest first."""
    return tuple(int(v.shape[0]) for v in self.vertices)

  def up_dense(self, level: int, dtype=np.float32) -> np.ndarray:
    """Dense U_level [N_level, N_level+1]: x_fine = U @ x_coarse."""
    return self.up[level].to_dense(dtype)

  def save(self, path: str | os.PathLike) -> None:
    """Writes the topology in the ``assets.npz`` format (plain arrays, no pickles)."""
    arrays = {}
    for l, (v, f) in enumerate(zip(self.vertices, self.faces)):
      arrays[f"verts_{l}"] = np.asarray(v, np.float64)
      arrays[f"faces_{l}"] = np.asarray(f, np.int64)
    for l, s in enumerate(self.spirals):
      arrays[f"spiral_{l}"] = np.asarray(s, np.int64)
    for name, mats in (("up", self.up), ("down", self.down)):
      for l, m in enumerate(mats):
        arrays[f"{name}_{l}_row"] = np.asarray(m.row, np.int64)
        arrays[f"{name}_{l}_col"] = np.asarray(m.col, np.int64)
        arrays[f"{name}_{l}_val"] = np.asarray(m.val, np.float32)
        arrays[f"{name}_{l}_shape"] = np.asarray(m.shape, np.int64)
    if self.joint_regressor is not None:
      arrays["joint_regressor"] = np.asarray(self.joint_regressor, np.float32)
    arrays["mano_faces"] = np.asarray(self.faces[0], np.int64)
    # A unique temporary name, so two processes filling the same cache entry never collide.
    tmp = f"{os.fspath(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache file.

  @classmethod
  def load(cls, path: str | os.PathLike) -> "MeshTopology":
    """Reads a topology written by ``save`` or the official ``assets.npz``.

    Raises:
      FileNotFoundError: when the file does not exist.
      UserError: naming the file (and the missing key) when it is not a topology.
    """
    what = "a mesh topology (verts_l, faces_l, spiral_l, up_l_*, down_l_* arrays)"
    with cli.open_npz(path, what) as data:
      keys = set(data.files)

      def get(key):
        if key not in keys:
          raise cli.UserError(f"{path}: not a mesh topology file, missing key {key!r} "
                              f"(expected verts_l, faces_l, spiral_l, up_l_*, down_l_* arrays)")
        return data[key]

      num_levels = sum(1 for k in keys if k.startswith("verts_"))
      if num_levels < 2:
        get("verts_1")  # raises with a clear message
      vertices = tuple(get(f"verts_{l}") for l in range(num_levels))
      faces = tuple(get(f"faces_{l}") for l in range(num_levels))
      spirals = tuple(get(f"spiral_{l}") for l in range(num_levels - 1))

      def coo(name, l):
        return SparseCOO(get(f"{name}_{l}_row"), get(f"{name}_{l}_col"), get(f"{name}_{l}_val"),
                         tuple(int(s) for s in get(f"{name}_{l}_shape")))

      up = tuple(coo("up", l) for l in range(num_levels - 1))
      down = tuple(coo("down", l) for l in range(num_levels - 1))
      regressor = data["joint_regressor"] if "joint_regressor" in keys else None
    return cls(vertices, faces, spirals, up, down, regressor)
