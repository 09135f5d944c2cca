"""Rotation conventions shared by the hand models, the networks, the losses and the data pipeline.

Every function accepts numpy or JAX arrays and returns the same kind, so the (numpy) input
pipeline and the (jitted) model use one definition of each convention.

Conventions (docs/conventions.md#rotations):
  * axis-angle: a 3-vector whose direction is the axis and whose norm is the angle (radians).
  * 6D rotation (pytorch3d ``rotation_6d_to_matrix``): a1 = d6[..., 0:3], a2 = d6[..., 3:6],
    Gram-Schmidt gives b1, b2, b3 = b1 x b2, and **R has rows (b1, b2, b3)**. The inverse map is
    the first two rows of R.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _xp(x):
  """The array module of ``x``: jax.numpy for JAX arrays and tracers, numpy otherwise."""
  return jnp if isinstance(x, jax.Array) else np


def axis_angle_to_matrix(axis_angle):
  """Rodrigues' formula: [..., 3] axis-angle -> [..., 3, 3] rotation matrices.

  Smooth at zero angle (a second-order Taylor expansion is used below 1e-8 rad^2), so gradients
  are finite for the zero pose.
  """
  xp = _xp(axis_angle)
  theta2 = xp.sum(axis_angle * axis_angle, axis=-1, keepdims=True)[..., None]  # [..., 1, 1]
  small = theta2 < 1e-8
  safe_theta2 = xp.where(small, xp.ones_like(theta2), theta2)
  theta = xp.sqrt(safe_theta2)
  # sin(t)/t and (1 - cos(t))/t^2 with their Taylor expansions near 0.
  a = xp.where(small, 1.0 - theta2 / 6.0, xp.sin(theta) / theta)
  b = xp.where(small, 0.5 - theta2 / 24.0, (1.0 - xp.cos(theta)) / safe_theta2)
  k = skew(axis_angle)
  eye = xp.eye(3, dtype=axis_angle.dtype)
  return eye + a * k + b * (k @ k)


def skew(v):
  """[..., 3] -> [..., 3, 3] cross-product matrices, skew(v) @ w == cross(v, w)."""
  xp = _xp(v)
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = xp.zeros_like(x)
  return xp.stack(
      [xp.stack([zero, -z, y], -1), xp.stack([z, zero, -x], -1), xp.stack([-y, x, zero], -1)],
      axis=-2)


def matrix_to_axis_angle(matrix):
  """[..., 3, 3] rotation matrices -> [..., 3] axis-angle (angle in [0, pi]).

  Goes through a unit quaternion (Shepperd's method, largest-component branch) so it stays
  accurate near 0 and near pi.
  """
  xp = _xp(matrix)
  quat = matrix_to_quaternion(matrix)  # (w, x, y, z), w >= 0
  w = quat[..., :1]
  xyz = quat[..., 1:]
  sin_half = xp.sqrt(xp.sum(xyz * xyz, axis=-1, keepdims=True))
  angle = 2.0 * xp.arctan2(sin_half, w)
  small = sin_half < 1e-6
  # angle / sin(angle/2) -> 2 as the angle -> 0.
  scale = xp.where(small, 2.0 + angle * angle / 12.0, angle / xp.where(small, 1.0, sin_half))
  return xyz * scale


def matrix_to_quaternion(matrix):
  """[..., 3, 3] -> [..., 4] unit quaternions (w, x, y, z) with w >= 0."""
  xp = _xp(matrix)
  m = matrix
  m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  # Four candidate (unnormalised) quaternions, each well conditioned when its lead term is large.
  candidates = xp.stack([
      xp.stack([1.0 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
      xp.stack([m21 - m12, 1.0 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
      xp.stack([m02 - m20, m01 + m10, 1.0 - m00 + m11 - m22, m12 + m21], -1),
      xp.stack([m10 - m01, m02 + m20, m12 + m21, 1.0 - m00 - m11 + m22], -1),
  ], axis=-2)  # [..., 4 candidates, 4]
  lead = xp.stack([1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22,
                   1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22], -1)
  best = xp.argmax(lead, axis=-1)
  quat = xp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
  quat = quat / xp.linalg.norm(quat, axis=-1, keepdims=True)
  return xp.where(quat[..., :1] < 0, -quat, quat)


def rot6d_to_matrix(d6, eps: float = 0.0):
  """6D rotation -> matrix with **rows** (b1, b2, b3), as pytorch3d and the official model.

  Args:
    d6: [..., 6] with a1 = d6[..., 0:3], a2 = d6[..., 3:6].
    eps: added to the norms before dividing. 0 reproduces the official model exactly; the
      official code relies on a1 never being exactly zero.

  Returns:
    [..., 3, 3] rotation matrices.
  """
  xp = _xp(d6)
  a1, a2 = d6[..., 0:3], d6[..., 3:6]
  b1 = a1 / (xp.linalg.norm(a1, axis=-1, keepdims=True) + eps)
  b2 = a2 - xp.sum(b1 * a2, axis=-1, keepdims=True) * b1
  b2 = b2 / (xp.linalg.norm(b2, axis=-1, keepdims=True) + eps)
  b3 = xp.cross(b1, b2)
  return xp.stack([b1, b2, b3], axis=-2)


def matrix_to_rot6d(matrix):
  """Inverse of ``rot6d_to_matrix``: the first two rows of R, flattened to [..., 6]."""
  return matrix[..., :2, :].reshape(matrix.shape[:-2] + (6,))


def rotation_about_z(angle):
  """[...] angles (radians) -> [..., 3, 3] rotations about the z (optical) axis."""
  xp = _xp(angle)
  c, s = xp.cos(angle), xp.sin(angle)
  zero, one = xp.zeros_like(c), xp.ones_like(c)
  return xp.stack([xp.stack([c, -s, zero], -1), xp.stack([s, c, zero], -1),
                   xp.stack([zero, zero, one], -1)], axis=-2)


def rotate_about_root(points, rotation, root):
  """Apply R about a root point: (p - r) @ R^T + r, i.e. R (p - r) + r in column form.

  Args:
    points: [..., N, 3].
    rotation: [..., 3, 3].
    root: [..., 3].
  """
  root = root[..., None, :]
  return (points - root) @ _xp(points).swapaxes(rotation, -1, -2) + root
