"""Rotation conventions, checked against independent constructions."""

import jax.numpy as jnp
import numpy as np
import pytest

from simajax import geometry


def test_axis_angle_matches_known_rotations():
  # 90 degrees about z maps x -> y.
  rz = geometry.axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2]))
  np.testing.assert_allclose(rz @ np.array([1.0, 0, 0]), [0, 1, 0], atol=1e-12)
  np.testing.assert_allclose(geometry.axis_angle_to_matrix(np.zeros(3)), np.eye(3))
  np.testing.assert_allclose(rz, geometry.rotation_about_z(np.pi / 2), atol=1e-12)


@pytest.mark.parametrize("xp", [np, jnp])
def test_axis_angle_round_trip(xp):
  rng = np.random.default_rng(0)
  aa = rng.normal(size=(64, 3))
  aa *= (rng.uniform(0, np.pi - 1e-3, size=(64, 1)) / np.linalg.norm(aa, axis=-1, keepdims=True))
  rot = geometry.axis_angle_to_matrix(xp.asarray(aa))
  np.testing.assert_allclose(np.asarray(rot @ rot.swapaxes(-1, -2)), np.broadcast_to(np.eye(3), (64, 3, 3)), atol=1e-5)
  np.testing.assert_allclose(np.asarray(geometry.matrix_to_axis_angle(rot)), aa, atol=1e-4)


def test_rot6d_rows_convention():
  rot = geometry.axis_angle_to_matrix(np.array([0.3, -1.2, 0.5]))
  d6 = geometry.matrix_to_rot6d(rot)
  np.testing.assert_array_equal(d6, np.concatenate([rot[0], rot[1]]))
  np.testing.assert_allclose(geometry.rot6d_to_matrix(d6), rot, atol=1e-12)
  # Gram-Schmidt: an unnormalised, non-orthogonal a2 gives the same rows.
  skewed = np.concatenate([3.0 * rot[0], 2.0 * rot[1] + 0.7 * rot[0]])
  np.testing.assert_allclose(geometry.rot6d_to_matrix(skewed), rot, atol=1e-12)


def test_rotate_about_root_keeps_root_fixed():
  rot = geometry.axis_angle_to_matrix(np.array([0.1, 0.2, 0.3]))
  pts = np.random.default_rng(1).normal(size=(10, 3))
  out = geometry.rotate_about_root(pts, rot, pts[0])
  np.testing.assert_allclose(out[0], pts[0], atol=1e-12)
  np.testing.assert_allclose(out[1] - out[0], rot @ (pts[1] - pts[0]), atol=1e-12)
