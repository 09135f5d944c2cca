"""hand_forward against an independent, loop-based numpy LBS (manopth's formulas)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from simajax.hand import (HandModel, hand_forward, joint_regressor_21, make_hand_model,
                          mirror_axis_angle, mirror_hand_model, mirror_points, pose_to_axis_angle)

# The docs' MANO(+tips) -> OpenPose list (docs/conventions.md#joint-orders), written out independently.
DOC_ORDER = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
DOC_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
NV = 778


def random_model(seed: int = 0) -> HandModel:
  """A MANO-shaped model with random arrays (row-normalised regressor and weights)."""
  rng = np.random.default_rng(seed)
  v_template = rng.normal(0.0, 0.04, (NV, 3))
  j_reg = rng.random((16, NV)) * (rng.random((16, NV)) < 0.05)
  j_reg /= j_reg.sum(1, keepdims=True)
  weights = rng.random((NV, 16)) ** 4
  weights /= weights.sum(1, keepdims=True)
  components = np.linalg.qr(rng.normal(size=(45, 45)))[0] * 0.5
  return make_hand_model(
      v_template=v_template, faces=rng.integers(0, NV, (1538, 3)), J_regressor=j_reg,
      weights=weights, posedirs=rng.normal(0.0, 2e-3, (NV, 3, 135)),
      shapedirs=rng.normal(0.0, 1e-2, (NV, 3, 10)), hands_components=components,
      hands_mean=rng.normal(0.0, 0.3, 45), parents=DOC_PARENTS)


def reference_lbs(model: HandModel, pose_abs, betas, trans):
  """One hand: loops over joints with 4x4 transforms, as manopth does. pose_abs: [16, 3]."""
  m = {k: np.asarray(getattr(model, k), np.float64) for k in
       ("v_template", "J_regressor", "weights", "posedirs", "shapedirs")}
  shaped = m["v_template"] + m["shapedirs"][..., :len(betas)] @ betas
  joints = m["J_regressor"] @ shaped
  rots = Rotation.from_rotvec(pose_abs).as_matrix()
  pose_map = np.concatenate([(rots[j] - np.eye(3)).ravel() for j in range(1, 16)])
  posed = shaped + m["posedirs"] @ pose_map

  def rigid(r, t):
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = r, t
    return out

  world = [rigid(rots[0], joints[0])]
  for j in range(1, 16):
    p = DOC_PARENTS[j]
    world.append(world[p] @ rigid(rots[j], joints[j] - joints[p]))
  posed_joints = np.stack([g[:3, 3] for g in world])
  skin = np.stack([g @ rigid(np.eye(3), -joints[j]) for j, g in enumerate(world)])
  verts = np.zeros_like(posed)
  for v in range(NV):
    t = np.einsum("j,jab->ab", m["weights"][v], skin)
    verts[v] = t[:3, :3] @ posed[v] + t[:3, 3]
  verts += trans
  posed_joints += trans
  with_tips = np.concatenate([posed_joints, verts[list(model.tip_vertex_ids)]])
  return verts, posed_joints, with_tips[DOC_ORDER]


@pytest.fixture(scope="module")
def model():
  return random_model()


def test_matches_reference_lbs_for_random_pose_shape_trans(model):
  rng = np.random.default_rng(1)
  pose = rng.normal(0.0, 0.6, (2, 48))
  betas = rng.normal(0.0, 1.0, (2, 10))
  trans = rng.normal(0.0, 0.3, (2, 3))
  out = hand_forward(model, pose, betas, trans)  # flat_hand_mean=False: hands_mean is added
  assert out.vertices.shape == (2, NV, 3)
  assert out.joints16.shape == (2, 16, 3) and out.joints21.shape == (2, 21, 3)
  for b in range(2):
    pose_abs = pose[b].reshape(16, 3) + np.concatenate([np.zeros(3), model.hands_mean]).reshape(
        16, 3)
    verts, joints16, joints21 = reference_lbs(model, pose_abs, betas[b], trans[b])
    np.testing.assert_allclose(out.vertices[b], verts, atol=1e-5)
    np.testing.assert_allclose(out.joints16[b], joints16, atol=1e-5)
    np.testing.assert_allclose(out.joints21[b], joints21, atol=1e-5)


def test_flat_hand_mean_and_pose_layouts(model):
  rng = np.random.default_rng(2)
  pose = rng.normal(0.0, 0.5, (2, 16, 3)).astype(np.float32)
  betas = np.concatenate([rng.normal(0.0, 1.0, (2, 4)), np.zeros((2, 6))], axis=1)
  flat = hand_forward(model, pose, betas, flat_hand_mean=True)
  fewer_betas = hand_forward(model, pose.reshape(2, 48), betas[:, :4], flat_hand_mean=True)
  np.testing.assert_allclose(flat.vertices, fewer_betas.vertices, atol=1e-6)
  verts, joints16, _ = reference_lbs(model, pose[1].astype(np.float64), betas[1], np.zeros(3))
  np.testing.assert_allclose(flat.vertices[1], verts, atol=1e-5)
  np.testing.assert_allclose(flat.joints16[1], joints16, atol=1e-5)


def test_pca_mode_equals_axis_angle_with_expanded_pose(model):
  rng = np.random.default_rng(3)
  betas = np.zeros((2, 10))
  for k, flat in ((6, False), (45, True)):
    pca = rng.normal(0.0, 1.0, (2, 3 + k))
    expanded = np.concatenate([pca[:, :3], pca[:, 3:] @ np.asarray(model.hands_components)[:k]],
                              axis=1)
    a = hand_forward(model, pca, betas, pose_type="pca", flat_hand_mean=flat, num_pca_comps=k)
    b = hand_forward(model, expanded, betas, flat_hand_mean=flat)
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)
    np.testing.assert_allclose(a.joints21, b.joints21, atol=1e-6)
  with pytest.raises(ValueError, match="num_pca_comps"):
    hand_forward(model, pca, betas, pose_type="pca", num_pca_comps=12)


def test_zero_pose_zero_shape_gives_template(model):
  out = hand_forward(model, np.zeros((2, 48)), np.zeros((2, 10)), flat_hand_mean=True)
  np.testing.assert_allclose(out.vertices[0], model.v_template, atol=1e-6)
  np.testing.assert_allclose(out.joints16[0], model.J_regressor @ model.v_template, atol=1e-6)


def test_global_rotation_is_about_rest_wrist_and_trans_adds(model):
  rng = np.random.default_rng(4)
  betas = rng.normal(0.0, 1.0, 10)
  shaped = model.v_template + model.shapedirs @ betas
  wrist = model.J_regressor[0] @ shaped
  rotvec = np.array([0.4, -1.1, 0.7])
  pose = np.zeros((2, 48))
  pose[:, :3] = rotvec
  betas = np.stack([betas, betas])
  out = hand_forward(model, pose, betas, flat_hand_mean=True)
  rot = Rotation.from_rotvec(rotvec).as_matrix()
  np.testing.assert_allclose(out.vertices[0], (shaped - wrist) @ rot.T + wrist, atol=1e-5)
  np.testing.assert_allclose(out.joints16[0, 0], wrist, atol=1e-6)
  trans = np.array([[0.1, -0.2, 0.5], [0.0, 0.3, -0.1]])
  moved = hand_forward(model, pose, betas, trans, flat_hand_mean=True)
  shift = trans[:, None]
  np.testing.assert_allclose(moved.vertices - out.vertices, np.broadcast_to(shift, (2, NV, 3)),
                             atol=1e-6)
  np.testing.assert_allclose(moved.joints21 - out.joints21, np.broadcast_to(shift, (2, 21, 3)),
                             atol=1e-6)


def test_joints21_order_and_tips(model):
  rng = np.random.default_rng(5)
  out = hand_forward(model, rng.normal(0.0, 0.5, (2, 48)), np.zeros((2, 10)))
  tips = np.asarray(out.vertices)[:, list(model.tip_vertex_ids)]
  # OpenPose slots 4, 8, 12, 16, 20 are the thumb, index, middle, ring and pinky tips.
  np.testing.assert_allclose(out.joints21[:, [4, 8, 12, 16, 20]], tips, atol=0)
  # Thumb 1-3 are MANO 13-15, index 1-3 MANO 1-3, middle 4-6, ring 10-12, pinky 7-9.
  mano = np.asarray(out.joints16)
  np.testing.assert_array_equal(out.joints21[:, 1:4], mano[:, 13:16])
  np.testing.assert_array_equal(out.joints21[:, 5:8], mano[:, 1:4])
  np.testing.assert_array_equal(out.joints21[:, 9:12], mano[:, 4:7])
  np.testing.assert_array_equal(out.joints21[:, 13:16], mano[:, 10:13])
  np.testing.assert_array_equal(out.joints21[:, 17:20], mano[:, 7:10])


def test_joint_regressor_21_on_rest_mesh(model):
  reg = joint_regressor_21(model)
  assert reg.shape == (21, NV)
  np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-6)
  out = hand_forward(model, np.zeros((2, 48)), np.zeros((2, 10)), flat_hand_mean=True)
  # At rest the kinematic joints equal J_regressor @ vertices, so the regressor reproduces joints21.
  np.testing.assert_allclose(reg @ np.asarray(out.vertices[0]), out.joints21[0], atol=1e-6)
  sima = joint_regressor_21(model, middle_tip=445)
  assert sima[12, 445] == 1.0 and sima[12].sum() == 1.0
  assert reg[12, 444] == 1.0


def test_jit_with_model_closed_over_equals_pytree_argument(model):
  rng = np.random.default_rng(6)
  pose = rng.normal(0.0, 0.5, (2, 48)).astype(np.float32)
  betas = rng.normal(0.0, 1.0, (2, 10)).astype(np.float32)
  trans = rng.normal(0.0, 0.1, (2, 3)).astype(np.float32)
  closed = jax.jit(lambda p, b: hand_forward(model, p, b, trans))
  jitted = closed(pose, betas)
  eager = hand_forward(model, pose, betas, trans)
  np.testing.assert_allclose(jitted.vertices, eager.vertices, atol=1e-6)
  np.testing.assert_allclose(jitted.joints21, eager.joints21, atol=1e-6)


def test_mirrored_model_gives_mirrored_hand(model):
  rng = np.random.default_rng(7)
  pose = rng.normal(0.0, 0.5, (2, 48))
  betas = rng.normal(0.0, 1.0, (2, 10))
  trans = rng.normal(0.0, 0.2, (2, 3))
  left = mirror_hand_model(model)
  assert left.side == "left"
  a = hand_forward(model, pose, betas, trans)
  b = hand_forward(left, mirror_axis_angle(pose), betas, mirror_points(trans))
  np.testing.assert_allclose(b.vertices, mirror_points(np.asarray(a.vertices)), atol=1e-5)
  np.testing.assert_allclose(b.joints21, mirror_points(np.asarray(a.joints21)), atol=1e-5)
  # Mirroring a rotation by its axis-angle is M R M.
  rv = rng.normal(size=3)
  m = np.diag([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(Rotation.from_rotvec(mirror_axis_angle(rv)).as_matrix(),
                             m @ Rotation.from_rotvec(rv).as_matrix() @ m, atol=1e-12)


def test_pose_to_axis_angle_and_bad_shapes(model):
  pose = np.arange(48, dtype=np.float32).reshape(1, 48) / 100
  aa = pose_to_axis_angle(model, pose)
  np.testing.assert_allclose(aa[0, 1:].reshape(-1), pose[0, 3:] + model.hands_mean, atol=1e-6)
  with pytest.raises(ValueError, match=r"\[B, 16, 3\] or \[B, 48\]"):
    hand_forward(model, np.zeros((1, 45)))
  with pytest.raises(ValueError, match="betas"):
    hand_forward(model, np.zeros((2, 48)), np.zeros((3, 10)))
  with pytest.raises(ValueError, match="pose_type"):
    hand_forward(model, np.zeros((2, 48)), pose_type="quat")
