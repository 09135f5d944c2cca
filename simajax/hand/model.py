"""``HandModel``: the arrays of a MANO-compatible hand model (MANO itself or SynthHand).

A hand model is a linear-blend-skinned mesh with a 16-joint kinematic tree in MANO's joint order
(wrist; index 1-3; middle 1-3; pinky 1-3; ring 1-3; thumb 1-3; docs/conventions.md#joint-orders):

  shaped  = v_template + shapedirs · betas
  rest J  = J_regressor · shaped
  posed   = shaped + posedirs · vec(R_j - I, j = 1..15)
  output  = Σ_j weights[:, j] · G_j(pose, rest J) · posed + trans

The arrays are plain numpy (float32 for geometry, int32 for faces). The model is a JAX pytree:
the arrays are its leaves and the integer structure (``parents``, ``tip_vertex_ids``) plus
``side`` and ``name`` are static metadata, so it can be passed straight into ``jax.jit``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

NUM_JOINTS = 16
NUM_FINGER_POSE = 45
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertices (thumb, index, middle, ring, pinky) that manopth appends as joints 16-20.
# The left hand uses 445 for the middle tip (docs/conventions.md#joint-orders).
MANO_RIGHT_TIP_IDS = (745, 317, 444, 556, 673)
MANO_LEFT_TIP_IDS = (745, 317, 445, 556, 673)


@dataclasses.dataclass(frozen=True, eq=False)
class HandModel:
  """A hand model in MANO's parameterisation; see the module docstring.

  Attributes:
    v_template: [V, 3] rest mesh (metres).
    faces: [F, 3] int32 triangles, counter-clockwise seen from outside.
    J_regressor: [16, V] rest joints = J_regressor @ shaped vertices (rows sum to 1).
    weights: [V, 16] skinning weights (rows sum to 1).
    posedirs: [V, 3, 135] pose correctives on vec(R_j - I) of joints 1..15 (row-major R).
    shapedirs: [V, 3, S] shape blend shapes (S = 10 for MANO and SynthHand).
    hands_components: [45, 45] PCA basis of the finger pose, rows are components.
    hands_mean: [45] mean finger pose (axis-angle), added when ``flat_hand_mean=False``.
    parents: 16 parent indices, -1 for the root (static).
    tip_vertex_ids: vertex ids of the thumb, index, middle, ring and pinky tips (static).
    side: 'right' or 'left'.
    name: a short label, e.g. 'mano' or 'synthhand'.
  """
  v_template: np.ndarray
  faces: np.ndarray
  J_regressor: np.ndarray
  weights: np.ndarray
  posedirs: np.ndarray
  shapedirs: np.ndarray
  hands_components: np.ndarray
  hands_mean: np.ndarray
  parents: tuple[int, ...] = MANO_PARENTS
  tip_vertex_ids: tuple[int, ...] = MANO_RIGHT_TIP_IDS
  side: str = "right"
  name: str = "mano"

  @property
  def num_vertices(self) -> int:
    """V, the number of mesh vertices (778 for MANO and SynthHand)."""
    return int(self.v_template.shape[0])

  @property
  def num_betas(self) -> int:
    """S, the number of shape coefficients."""
    return int(self.shapedirs.shape[-1])

  def rest_joints(self) -> np.ndarray:
    """[16, 3] joints of the template (zero shape), ``J_regressor @ v_template``."""
    return np.asarray(self.J_regressor, np.float64) @ np.asarray(self.v_template, np.float64)


jax.tree_util.register_dataclass(
    HandModel,
    data_fields=["v_template", "faces", "J_regressor", "weights", "posedirs", "shapedirs",
                 "hands_components", "hands_mean"],
    meta_fields=["parents", "tip_vertex_ids", "side", "name"])


def make_hand_model(*, v_template, faces, J_regressor, weights, posedirs, shapedirs,
                    hands_components, hands_mean, parents=MANO_PARENTS,
                    tip_vertex_ids=MANO_RIGHT_TIP_IDS, side: str = "right", name: str = "mano",
                    source: str = "hand model") -> HandModel:
  """Builds a validated ``HandModel``, casting arrays to float32 / int32.

  Args:
    v_template, faces, J_regressor, weights, posedirs, shapedirs, hands_components, hands_mean:
      array-likes with the shapes listed on ``HandModel``.
    parents: 16 parent indices with -1 (or any negative value) for the root.
    tip_vertex_ids: 5 fingertip vertex ids (thumb, index, middle, ring, pinky).
    side: 'right' or 'left'.
    name: a short label.
    source: where the arrays came from (a file name), used in error messages.

  Returns:
    The model.

  Raises:
    ValueError: naming ``source`` and the field when a shape, value or index is wrong.
  """
  def fail(field, message):
    raise ValueError(f"{source}: field '{field}' {message}")

  f32 = lambda x: np.ascontiguousarray(np.asarray(x, dtype=np.float64), dtype=np.float32)
  v_template = f32(v_template)
  if v_template.ndim != 2 or v_template.shape[1] != 3:
    fail("v_template", f"must have shape [V, 3], got {v_template.shape}")
  nv = v_template.shape[0]
  expected = {
      "J_regressor": (NUM_JOINTS, nv), "weights": (nv, NUM_JOINTS),
      "posedirs": (nv, 3, 9 * (NUM_JOINTS - 1)),
      "hands_components": (NUM_FINGER_POSE, NUM_FINGER_POSE), "hands_mean": (NUM_FINGER_POSE,)}
  arrays = {"J_regressor": f32(J_regressor), "weights": f32(weights), "posedirs": f32(posedirs),
            "hands_components": f32(hands_components),
            "hands_mean": f32(hands_mean).reshape(-1)}
  for key, shape in expected.items():
    if arrays[key].shape != shape:
      fail(key, f"must have shape {list(shape)}, got {list(arrays[key].shape)}")
  shapedirs = f32(shapedirs)
  if shapedirs.ndim != 3 or shapedirs.shape[:2] != (nv, 3):
    fail("shapedirs", f"must have shape [{nv}, 3, S], got {list(shapedirs.shape)}")
  faces = np.asarray(faces)
  if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
    fail("faces", f"must be an integer array [F, 3], got {faces.dtype} {list(faces.shape)}")
  if faces.size and (faces.min() < 0 or faces.max() >= nv):
    fail("faces", f"has vertex ids outside [0, {nv})")
  for key, value in [("v_template", v_template), ("shapedirs", shapedirs), *arrays.items()]:
    if not np.all(np.isfinite(value)):
      fail(key, "contains non-finite values")
  for key, axis in [("J_regressor", 1), ("weights", 1)]:
    sums = np.asarray(arrays[key], np.float64).sum(axis=axis)
    if not np.allclose(sums, 1.0, atol=1e-4):
      fail(key, f"rows must sum to 1 (found sums in [{sums.min():.6g}, {sums.max():.6g}])")
  parents = tuple(-1 if int(p) < 0 else int(p) for p in np.asarray(parents).reshape(-1))
  if len(parents) != NUM_JOINTS or parents[0] != -1 or any(
      not 0 <= p < j for j, p in enumerate(parents) if j > 0):
    fail("parents", f"must list 16 parents with the root first and parent < child, got {parents}")
  tip_vertex_ids = tuple(int(t) for t in tip_vertex_ids)
  if len(tip_vertex_ids) != 5 or any(not 0 <= t < nv for t in tip_vertex_ids):
    fail("tip_vertex_ids", f"must be 5 vertex ids in [0, {nv}), got {tip_vertex_ids}")
  if side not in ("right", "left"):
    fail("side", f"must be 'right' or 'left', got {side!r}")
  return HandModel(
      v_template=v_template, faces=np.ascontiguousarray(faces, dtype=np.int32),
      shapedirs=shapedirs, parents=parents, tip_vertex_ids=tip_vertex_ids, side=side, name=name,
      **arrays)
