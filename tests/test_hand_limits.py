"""Joint limits and the pose/shape samplers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from simajax.hand import (JOINT_AXES, JOINT_LIMITS, digits_collide, hand_forward, pose_components,
                          sample_pose, sample_shape, synthhand_model, within_limits)
from simajax.hand.anatomy import BONE_DIRECTIONS, DIGIT_JOINTS


def test_axes_are_anatomical_frames():
  for j in range(16):
    np.testing.assert_allclose(JOINT_AXES[j] @ JOINT_AXES[j].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(JOINT_AXES[j]) > 0
  # Positive flexion turns every finger bone towards the palm side (-y, MANO's frame).
  for digit in ("index", "middle", "ring", "pinky"):
    for level, joint in enumerate(DIGIT_JOINTS[digit]):
      bone = BONE_DIRECTIONS[digit][level]
      bent = Rotation.from_rotvec(0.5 * JOINT_AXES[joint, 0]).apply(bone)
      assert bent[1] < -0.4 and abs(bent @ JOINT_AXES[joint, 2] - np.cos(0.5)) < 1e-9
  assert np.all(JOINT_LIMITS[..., 0] < JOINT_LIMITS[..., 1])


def test_sampled_poses_stay_within_limits():
  rng = np.random.default_rng(0)
  pose = sample_pose(rng, 512, global_rotation=False)
  assert pose.shape == (512, 16, 3) and pose.dtype == np.float32
  np.testing.assert_array_equal(pose[:, 0], 0.0)
  comps = pose_components(pose)
  np.testing.assert_allclose(np.einsum("bjk,jki->bji", comps, JOINT_AXES), pose, atol=1e-6)
  low, high = JOINT_LIMITS[1:, :, 0], JOINT_LIMITS[1:, :, 1]
  assert np.all(comps[:, 1:] >= low - 1e-6) and np.all(comps[:, 1:] <= high + 1e-6)
  assert np.all(within_limits(pose))
  # The samples cover the range: open hands and fists both occur.
  flexion = comps[:, 1:, 0]
  assert np.any(flexion.mean(1) < 0.3) and np.any(flexion.mean(1) > 0.8)
  bad = pose.copy()
  bad[0, 2] = 2.0 * JOINT_AXES[2, 0]  # index PIP flexed beyond 1.6 rad
  assert not within_limits(bad)[0] and within_limits(bad)[1]


def test_global_rotation_uniform_and_hands_mean_offset():
  pose = sample_pose(np.random.default_rng(1), 4000)
  angle = np.linalg.norm(pose[:, 0].astype(np.float64), axis=1)
  assert angle.max() <= np.pi + 1e-5
  # Uniform rotations (Haar measure) have a mean angle of pi/2 + 2/pi and isotropic axes.
  assert abs(angle.mean() - (np.pi / 2 + 2 / np.pi)) < 0.03
  axes = pose[:, 0] / angle[:, None]
  assert np.all(np.abs(axes.mean(0)) < 0.05)
  mean = np.random.default_rng(2).normal(0.0, 0.2, 45)
  a = sample_pose(np.random.default_rng(3), 8)
  b = sample_pose(np.random.default_rng(3), 8, hands_mean=mean)
  np.testing.assert_allclose(b[:, 1:].reshape(8, 45), a[:, 1:].reshape(8, 45) - mean, atol=1e-6)
  np.testing.assert_array_equal(a[:, 0], b[:, 0])


def penetrating_fraction(vertices, faces):
  """Fraction of surface vertices inside the mesh volume (generalised winding number > 1)."""
  a, b, c = (vertices[faces[:, k]][None] - vertices[:, None] for k in range(3))
  la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
  det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
  dots = (np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la
          + np.einsum("pfi,pfi->pf", c, a) * lb)
  winding = np.arctan2(det, la * lb * lc + dots).sum(axis=1) / (2.0 * np.pi)
  return float(np.mean(winding > 1.0))


def test_sampled_hands_do_not_self_intersect_grossly():
  model = synthhand_model()
  rng = np.random.default_rng(4)
  pose = sample_pose(rng, 6, global_rotation=False)
  assert not np.any(digits_collide(pose))
  crossed = np.zeros((1, 16, 3))
  crossed[0, 1] = -0.6 * JOINT_AXES[1, 1]  # index and middle swung into each other
  crossed[0, 4] = 0.6 * JOINT_AXES[4, 1]
  assert digits_collide(crossed)[0]
  poses = np.concatenate([pose, crossed, crossed]).reshape(4, 2, 48).astype(np.float32)
  betas = sample_shape(rng, 8).reshape(4, 2, 10)
  # Pairs: the batch shape the SynthHand tests compile the forward for.
  verts = np.concatenate([hand_forward(model, p, b, flat_hand_mean=True).vertices
                          for p, b in zip(poses, betas)]).astype(np.float64)
  fractions = [penetrating_fraction(v, model.faces) for v in verts[:7]]
  assert max(fractions[:6]) < 0.02, fractions
  assert fractions[6] > 0.03, fractions  # the measure does see a real collision


def test_sample_shape_and_determinism():
  betas = sample_shape(np.random.default_rng(5), 4000)
  assert betas.shape == (4000, 10) and betas.dtype == np.float32
  assert np.abs(betas).max() <= 1.5
  assert abs(betas.std() - 0.5) < 0.03 and np.all(np.abs(betas.mean(0)) < 0.05)
  np.testing.assert_array_equal(sample_pose(np.random.default_rng(6), 3),
                                sample_pose(np.random.default_rng(6), 3))


@pytest.mark.parametrize("batch", [1, 3])
def test_small_batches(batch):
  pose = sample_pose(np.random.default_rng(7), batch)
  assert pose.shape == (batch, 16, 3) and np.all(within_limits(pose))
