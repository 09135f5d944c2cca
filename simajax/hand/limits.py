"""Joint limits and samplers of plausible hand poses and shapes (for synthetic data).

Limits are per joint, on the components of the axis-angle vector along that joint's anatomical
axes (``anatomy.joint_axes``: flexion, abduction, twist; MANO frame, right hand). A pose is built
as ``axis_angle_j = flex * a_flex + abd * a_abd + twist * a_twist``, so its components are
recovered exactly by projecting onto the (orthonormal) axes; see ``pose_components``.

Sampled poses are absolute (the ``flat_hand_mean=True`` convention). Pass a model's
``hands_mean`` to ``sample_pose`` to get offsets for ``flat_hand_mean=False`` instead.

The axes and the collision check use the rest skeleton of ``anatomy`` (SynthHand's, built to
resemble MANO's), so on the real MANO model the limits hold about the same anatomical axes, up to
the few degrees by which its rest fingers point differently.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from simajax.geometry import axis_angle_to_matrix
from simajax.hand import anatomy
from simajax.hand.anatomy import DIGIT_JOINTS, DIGIT_RADII, DIGITS, FINGERS
from simajax.hand.model import MANO_PARENTS

JOINT_AXES = anatomy.joint_axes()  # [16, 3 (flex, abd, twist), 3]
COLLISION_MARGIN = 1.0


def _limits() -> np.ndarray:
  """[16, 3, 2] (lower, upper) radians of (flexion, abduction, twist) per joint."""
  limits = np.zeros((16, 3, 2))
  limits[0] = [[-np.pi, np.pi]] * 3  # The global rotation is free.
  # Abduction is positive towards the thumb side (+z); each finger spreads away from the middle.
  mcp_abduction = {"index": (-0.15, 0.35), "middle": (-0.20, 0.20), "ring": (-0.30, 0.15),
                   "pinky": (-0.45, 0.15)}
  for finger in FINGERS:
    mcp, pip, dip = DIGIT_JOINTS[finger]
    limits[mcp] = [(-0.30, 1.45), mcp_abduction[finger], (-0.10, 0.10)]
    limits[pip] = [(0.00, 1.60), (-0.05, 0.05), (-0.05, 0.05)]
    limits[dip] = [(-0.10, 1.20), (-0.05, 0.05), (-0.05, 0.05)]
  cmc, mcp, ip = DIGIT_JOINTS["thumb"]
  limits[cmc] = [(-0.40, 0.90), (-0.25, 0.60), (-0.40, 0.40)]
  limits[mcp] = [(-0.20, 1.00), (-0.20, 0.20), (-0.20, 0.20)]
  limits[ip] = [(-0.30, 1.30), (-0.05, 0.05), (-0.05, 0.05)]
  return limits


JOINT_LIMITS = _limits()


def pose_components(pose) -> np.ndarray:
  """Splits axis-angle poses into anatomical components.

  Args:
    pose: [..., 16, 3] axis-angle (MANO joint order).

  Returns:
    [..., 16, 3] float64 (flexion, abduction, twist) of every joint: projections on
    ``JOINT_AXES``, so ``pose = sum_k comps[..., k] * JOINT_AXES[:, k]`` exactly.
  """
  return np.einsum("...ji,jki->...jk", np.asarray(pose, np.float64), JOINT_AXES)


def within_limits(pose, atol: float = 1e-5) -> np.ndarray:
  """Whether poses respect ``JOINT_LIMITS`` (the root rotation is not limited).

  Args:
    pose: [..., 16, 3] absolute axis-angle poses.
    atol: tolerance on every component (radians).

  Returns:
    [...] bool.
  """
  comps = pose_components(pose)[..., 1:, :]
  low, high = JOINT_LIMITS[1:, :, 0], JOINT_LIMITS[1:, :, 1]
  return np.all((comps >= low - atol) & (comps <= high + atol), axis=(-1, -2))


def sample_pose(rng: np.random.Generator, batch: int, *, global_rotation: bool = True,
                hands_mean: Optional[np.ndarray] = None, max_rounds: int = 50) -> np.ndarray:
  """Random plausible hand poses within ``JOINT_LIMITS`` whose digits do not collide.

  Each finger gets a curl level (correlated across the hand) shared by its three joints, plus
  per-joint noise; abduction follows one hand-wide spread that shrinks as fingers curl; the thumb
  has its own curl and opposition. Poses whose digit bones (capsules with the digits' radii, on
  the rest skeleton of ``anatomy``) come closer than ``digits_collide`` allows are redrawn.

  Args:
    rng: numpy random generator.
    batch: number of poses B.
    global_rotation: True draws the root rotation uniformly over SO(3); False leaves it zero.
    hands_mean: optional [45] mean finger pose; when given it is subtracted from the finger values,
      for use with ``hand_forward(..., flat_hand_mean=False)``.
    max_rounds: redraw rounds for colliding poses (a failure after that raises).

  Returns:
    [B, 16, 3] float32 axis-angle poses (MANO joint order).
  """
  pose = _draw_finger_poses(rng, batch)
  for _ in range(max_rounds):
    bad = np.flatnonzero(digits_collide(pose))
    if not bad.size:
      break
    pose[bad] = _draw_finger_poses(rng, bad.size)
  else:
    raise RuntimeError(f"sample_pose: no collision-free pose after {max_rounds} rounds")
  pose[:, 0] = _random_rotations(rng, batch) if global_rotation else 0.0
  if hands_mean is not None:
    pose[:, 1:] -= np.asarray(hands_mean, np.float64).reshape(15, 3)
  return pose.astype(np.float32)


def digits_collide(pose, margin: float = COLLISION_MARGIN) -> np.ndarray:
  """Whether bones of different digits overlap, on the rest skeleton of ``anatomy``.

  Every digit segment is a capsule whose radius is the digit's mean radius along it; two capsules
  of different digits collide when their axes come closer than ``margin`` times the sum of radii.

  Args:
    pose: [B, 16, 3] absolute axis-angle poses (the root rotation is ignored).
    margin: fraction of the radii sum that counts as contact (below 1 tolerates soft contact).

  Returns:
    [B] bool.
  """
  segments = _digit_segments(np.asarray(pose, np.float64)).reshape(-1, 15, 2, 3)
  first, second = _DIGIT_PAIRS
  dist = _segment_distance(segments[:, first, 0], segments[:, first, 1],
                           segments[:, second, 0], segments[:, second, 1])  # [B, pairs]
  return np.any(dist < margin * _PAIR_RADII, axis=1)


def _segment_pairs():
  """Index pairs of bones (digit * 3 + bone) on different digits, and their radii sums."""
  radii = np.array([[0.5 * (r[k] + r[k + 1]) for k in range(3)]
                    for r in (DIGIT_RADII[d] for d in DIGITS)]).reshape(-1)
  first, second = np.array([(a, b) for a in range(15) for b in range(15) if a // 3 < b // 3]).T
  return (first, second), radii[first] + radii[second]


_DIGIT_PAIRS, _PAIR_RADII = _segment_pairs()


def _digit_segments(pose: np.ndarray) -> np.ndarray:
  """[B, 5 digits (DIGITS order), 3 bones, 2 ends, 3] bone segments of the posed rest skeleton."""
  batch = pose.shape[0]
  rest = anatomy.rest_joints()
  tips = anatomy.fingertips()
  rots = axis_angle_to_matrix(pose)
  rots[:, 0] = np.eye(3)
  world_rot = [rots[:, 0]]
  world_pos = [np.broadcast_to(rest[0], (batch, 3))]
  for j in range(1, 16):
    p = MANO_PARENTS[j]
    world_pos.append(world_pos[p] + np.einsum("bik,k->bi", world_rot[p], rest[j] - rest[p]))
    world_rot.append(world_rot[p] @ rots[:, j])
  segments = np.zeros((batch, 5, 3, 2, 3))
  for d, digit in enumerate(DIGITS):
    a, b, c = DIGIT_JOINTS[digit]
    tip = world_pos[c] + np.einsum("bik,k->bi", world_rot[c], tips[digit] - rest[c])
    for k, (start, end) in enumerate(((world_pos[a], world_pos[b]), (world_pos[b], world_pos[c]),
                                      (world_pos[c], tip))):
      segments[:, d, k, 0], segments[:, d, k, 1] = start, end
  return segments


def _segment_distance(p0, p1, q0, q1) -> np.ndarray:
  """[B] distances between segments p0-p1 and q0-q1 (closest points, both of positive length)."""
  d1, d2, r = p1 - p0, q1 - q0, p0 - q0
  a = np.sum(d1 * d1, -1)
  e = np.sum(d2 * d2, -1)
  b = np.sum(d1 * d2, -1)
  c = np.sum(d1 * r, -1)
  f = np.sum(d2 * r, -1)
  denom = a * e - b * b
  s = np.where(denom > 1e-12 * a * e, np.clip((b * f - c * e) / np.maximum(denom, 1e-30), 0, 1), 0)
  t = (b * s + f) / e
  s = np.where(t < 0, np.clip(-c / a, 0, 1), np.where(t > 1, np.clip((b - c) / a, 0, 1), s))
  t = np.clip(t, 0, 1)
  return np.linalg.norm((p0 + s[..., None] * d1) - (q0 + t[..., None] * d2), axis=-1)


def _draw_finger_poses(rng: np.random.Generator, batch: int) -> np.ndarray:
  """[B, 16, 3] float64 poses with zero root, within the limits (no collision check)."""
  comps = np.zeros((batch, 16, 3))
  low, high = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
  hand_curl = rng.uniform(0.0, 1.0, (batch, 1))
  curl = np.clip(0.6 * hand_curl + 0.4 * rng.uniform(0.0, 1.0, (batch, 4)), 0.0, 1.0)
  spread = rng.uniform(-0.08, 0.35, batch)
  spread_gain = {"index": 1.0, "middle": 0.1, "ring": -0.5, "pinky": -1.0}
  for n, finger in enumerate(FINGERS):
    c = curl[:, n]
    for joint in DIGIT_JOINTS[finger]:
      comps[:, joint, 0] = c * high[joint, 0] + rng.normal(0.0, 0.12, batch)
      comps[:, joint, 1:] = rng.normal(0.0, 0.3, (batch, 2)) * high[joint, 1:]
    mcp = DIGIT_JOINTS[finger][0]
    comps[:, mcp, 1] = spread * spread_gain[finger] * (1.0 - 0.6 * c) + rng.normal(0.0, 0.04, batch)
  thumb_curl = rng.uniform(0.0, 1.0, batch)
  for joint in DIGIT_JOINTS["thumb"]:
    comps[:, joint, 0] = (low[joint, 0] + thumb_curl * (high[joint, 0] - low[joint, 0])
                          + rng.normal(0.0, 0.1, batch))
    comps[:, joint, 1:] = rng.normal(0.0, 0.3, (batch, 2)) * high[joint, 1:]
  cmc = DIGIT_JOINTS["thumb"][0]
  comps[:, cmc, 1] = rng.uniform(low[cmc, 1], high[cmc, 1], batch)
  comps[:, 1:] = np.clip(comps[:, 1:], low[1:], high[1:])
  comps[:, 0] = 0.0
  return np.einsum("bjk,jki->bji", comps, JOINT_AXES)


def sample_shape(rng: np.random.Generator, batch: int, *, std: float = 0.5,
                 clip: float = 1.5, num_betas: int = 10) -> np.ndarray:
  """Random shape coefficients ~ N(0, std^2), clipped to [-clip, clip].

  Args:
    rng: numpy random generator.
    batch: number of shapes B.
    std: standard deviation of each coefficient.
    clip: absolute bound.
    num_betas: coefficients per shape.

  Returns:
    [B, num_betas] float32.
  """
  return np.clip(rng.normal(0.0, std, (batch, num_betas)), -clip, clip).astype(np.float32)


def _random_rotations(rng: np.random.Generator, batch: int) -> np.ndarray:
  """[B, 3] axis-angles of rotations uniform over SO(3) (normalised Gaussian quaternions)."""
  quat = rng.normal(size=(batch, 4))
  quat /= np.linalg.norm(quat, axis=1, keepdims=True)
  quat *= np.where(quat[:, :1] < 0, -1.0, 1.0)
  sin_half = np.linalg.norm(quat[:, 1:], axis=1, keepdims=True)
  angle = 2.0 * np.arctan2(sin_half, quat[:, :1])
  return quat[:, 1:] * angle / np.maximum(sin_half, 1e-12)
