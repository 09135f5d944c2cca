"""The MANO forward pass (shape, pose correctives, forward kinematics, linear blend skinning).

Follows manopth's ``ManoLayer`` (docs/conventions.md#mano-forward-pass), in metres:
  * pose = 3 global axis-angle values + 45 finger values (axis-angle) or PCA coefficients;
  * ``flat_hand_mean=False`` adds ``hands_mean`` to the 45 finger values in both modes;
  * the global rotation acts about the rest wrist J0(betas), and ``trans`` is added last;
  * joints are the kinematic joint positions of the posed transforms, not J_regressor applied to
    the posed mesh; the 21 joints append fingertip vertices and use the OpenPose order.

Everything is jnp and jit-able; the model may be closed over or passed as a pytree argument.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from simajax.geometry import axis_angle_to_matrix
from simajax.hand.joints import MANO_TO_OPENPOSE
from simajax.hand.model import NUM_FINGER_POSE, NUM_JOINTS, HandModel


class HandOutput(NamedTuple):
  """Outputs of ``hand_forward`` (metres, translation included).

  Attributes:
    vertices: [B, V, 3] posed mesh.
    joints16: [B, 16, 3] kinematic joints in MANO order.
    joints21: [B, 21, 3] joints plus fingertip vertices in OpenPose order.
  """
  vertices: jax.Array
  joints16: jax.Array
  joints21: jax.Array


def pose_to_axis_angle(model: HandModel, pose, *, pose_type: str = "axis_angle",
                       flat_hand_mean: bool = False,
                       num_pca_comps: Optional[int] = None) -> jax.Array:
  """Converts a MANO pose vector to the absolute per-joint axis-angle pose the kinematics use.

  Args:
    model: the hand model (for ``hands_components`` and ``hands_mean``).
    pose: 'axis_angle': [B, 16, 3] or [B, 48]; 'pca': [B, 3 + k], the global rotation then k
      PCA coefficients (k <= 45).
    pose_type: 'axis_angle' or 'pca'.
    flat_hand_mean: False adds ``hands_mean`` to the 45 finger values (manopth's default and the
      convention of Dex-YCB, HanCo and SiMA); True uses the values as given.
    num_pca_comps: optional check of k in 'pca' mode.

  Returns:
    [B, 16, 3] axis-angle per joint (MANO order), global rotation first.
  """
  pose = jnp.asarray(pose)
  dtype = jnp.promote_types(pose.dtype, jnp.float32)
  pose = pose.astype(dtype)
  if pose_type == "axis_angle":
    if pose.ndim == 3 and pose.shape[1:] == (NUM_JOINTS, 3):
      pose = pose.reshape(pose.shape[0], 3 * NUM_JOINTS)
    if pose.ndim != 2 or pose.shape[1] != 3 * NUM_JOINTS:
      raise ValueError(f"axis-angle pose must have shape [B, 16, 3] or [B, 48], got {pose.shape}")
    global_rot, fingers = pose[:, :3], pose[:, 3:]
  elif pose_type == "pca":
    if pose.ndim != 2 or not 3 < pose.shape[1] <= 3 + NUM_FINGER_POSE:
      raise ValueError(f"PCA pose must have shape [B, 3 + k] with 1 <= k <= 45, got {pose.shape}")
    k = pose.shape[1] - 3
    if num_pca_comps is not None and num_pca_comps != k:
      raise ValueError(f"num_pca_comps={num_pca_comps} but the PCA pose has {k} coefficients")
    components = jnp.asarray(model.hands_components, dtype)[:k]
    global_rot, fingers = pose[:, :3], pose[:, 3:] @ components
  else:
    raise ValueError(f"pose_type must be 'axis_angle' or 'pca', got {pose_type!r}")
  if not flat_hand_mean:
    fingers = fingers + jnp.asarray(model.hands_mean, dtype)
  return jnp.concatenate([global_rot, fingers], axis=1).reshape(-1, NUM_JOINTS, 3)


@functools.partial(jax.jit, static_argnames=("pose_type", "flat_hand_mean", "num_pca_comps"))
def hand_forward(model: HandModel, pose, betas=None, trans=None, *,
                 pose_type: str = "axis_angle", flat_hand_mean: bool = False,
                 num_pca_comps: Optional[int] = None) -> HandOutput:
  """Posed mesh and joints of a batch of hands (jitted; the model is a pytree argument).

  Args:
    model: the hand model (MANO or SynthHand).
    pose: see ``pose_to_axis_angle``.
    betas: [B, S'] or [S'] shape coefficients with S' <= model.num_betas (missing ones are zero);
      None means the mean shape.
    trans: [B, 3] or [3] translation added to every output; None means zero.
    pose_type: 'axis_angle' or 'pca'.
    flat_hand_mean: see ``pose_to_axis_angle`` (default False, manopth's convention).
    num_pca_comps: optional check of the number of PCA coefficients.

  Returns:
    ``HandOutput`` with vertices [B, V, 3], joints16 [B, 16, 3], joints21 [B, 21, 3].
  """
  axis_angle = pose_to_axis_angle(model, pose, pose_type=pose_type,
                                  flat_hand_mean=flat_hand_mean, num_pca_comps=num_pca_comps)
  dtype = axis_angle.dtype
  batch = axis_angle.shape[0]
  v_shaped = _shaped_vertices(model, betas, batch, dtype)
  rest_joints = jnp.einsum("jv,bvc->bjc", jnp.asarray(model.J_regressor, dtype), v_shaped)

  rotations = axis_angle_to_matrix(axis_angle)  # [B, 16, 3, 3]
  pose_features = (rotations[:, 1:] - jnp.eye(3, dtype=dtype)).reshape(batch, -1)
  v_posed = v_shaped + jnp.einsum("vck,bk->bvc", jnp.asarray(model.posedirs, dtype),
                                  pose_features)

  world_rot, joints16 = _forward_kinematics(rotations, rest_joints, model.parents)
  # Skinning transform of joint j maps a rest point p to R_j (p - J_j) + posed J_j.
  skin_trans = joints16 - jnp.einsum("bjik,bjk->bji", world_rot, rest_joints)
  weights = jnp.asarray(model.weights, dtype)
  blended_rot = jnp.einsum("vj,bjik->bvik", weights, world_rot)
  vertices = (jnp.einsum("bvik,bvk->bvi", blended_rot, v_posed)
              + jnp.einsum("vj,bji->bvi", weights, skin_trans))

  if trans is not None:
    trans = jnp.broadcast_to(jnp.asarray(trans, dtype), (batch, 3))[:, None, :]
    vertices = vertices + trans
    joints16 = joints16 + trans
  tips = vertices[:, np.asarray(model.tip_vertex_ids)]
  joints21 = jnp.concatenate([joints16, tips], axis=1)[:, np.asarray(MANO_TO_OPENPOSE)]
  return HandOutput(vertices=vertices, joints16=joints16, joints21=joints21)


def _shaped_vertices(model: HandModel, betas, batch: int, dtype) -> jax.Array:
  """v_template + shapedirs · betas, [B, V, 3]."""
  v_template = jnp.asarray(model.v_template, dtype)
  if betas is None:
    return jnp.broadcast_to(v_template, (batch,) + v_template.shape)
  betas = jnp.asarray(betas, dtype)
  if betas.ndim == 1:
    betas = jnp.broadcast_to(betas, (batch,) + betas.shape)
  num = betas.shape[-1]
  if betas.ndim != 2 or betas.shape[0] != batch or num > model.num_betas:
    raise ValueError(f"betas must have shape [{batch}, <= {model.num_betas}] or "
                     f"[<= {model.num_betas}], got {betas.shape}")
  shapedirs = jnp.asarray(model.shapedirs, dtype)[..., :num]
  return v_template + jnp.einsum("vck,bk->bvc", shapedirs, betas)


def _forward_kinematics(rotations, rest_joints, parents):
  """World rotations and posed joint positions, one tree level at a time.

  Args:
    rotations: [B, J, 3, 3] local rotations (root first).
    rest_joints: [B, J, 3] rest joint positions.
    parents: J static parent indices, -1 for the root.

  Returns:
    world rotations [B, J, 3, 3] and posed joints [B, J, 3]. The root rotates about its own
    rest position, so posed J0 = rest J0.
  """
  levels, parent_slots = _tree_levels(tuple(parents))
  level_rot = [rotations[:, levels[0]]]
  level_pos = [rest_joints[:, levels[0]]]
  for ids, slots in zip(levels[1:], parent_slots[1:]):
    parent_rot = level_rot[-1][:, slots]
    parent_pos = level_pos[-1][:, slots]
    bone = rest_joints[:, ids] - rest_joints[:, np.asarray(parents)[ids]]
    level_rot.append(parent_rot @ rotations[:, ids])
    level_pos.append(parent_pos + jnp.einsum("bjik,bjk->bji", parent_rot, bone))
  # Back from level order to joint order.
  order = np.argsort(np.concatenate(levels))
  return (jnp.concatenate(level_rot, axis=1)[:, order],
          jnp.concatenate(level_pos, axis=1)[:, order])


@functools.lru_cache(maxsize=8)
def _tree_levels(parents: tuple[int, ...]):
  """Joint ids per tree depth, and for each joint the slot of its parent in the previous level."""
  depth = [0] * len(parents)
  for j in range(1, len(parents)):
    depth[j] = depth[parents[j]] + 1
  levels = [np.array([j for j in range(len(parents)) if depth[j] == d])
            for d in range(max(depth) + 1)]
  slots = [None] + [np.array([int(np.flatnonzero(levels[d - 1] == parents[j])[0])
                              for j in levels[d]]) for d in range(1, len(levels))]
  return levels, slots
