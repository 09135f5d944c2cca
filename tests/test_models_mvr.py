"""MVR-Hand: sizes, fusion maths against numpy, view masking, equivariance, gradient stops.

The fusion functions are checked against direct numpy transcriptions of paper eq. 1-3 (as read in
docs/architecture.md#mvr-hand); the whole model (tiny variant) against relations that must hold for any
weights: masked views cannot change valid results, one valid view makes the fusion an identity,
rolling the views rolls the per-view outputs, and the detaches of the SVR.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from parity_recipe import he_variables
from simajax.models import (OUTPUT_KEYS, build_mvr, build_svr, fusion, mvr_config,
                            svr_config)

V = 8


def linear_size(fan_in: int, fan_out: int) -> int:
  return fan_in * fan_out + fan_out


def official_mvr_sizes() -> dict[str, int]:
  """Module sizes of the official-width MVR, from docs/architecture.md#parameter-counts and docs/architecture.md#mvr-hand."""
  c, d = 128, 1024

  def bn(n):  # scale and bias
    return 2 * n

  return {
      # docs/architecture.md#parameter-counts, less the never-called dense_stack1.senet3 (526,848) that simajax does not create.
      "backbone": 8_579_032 - 526_848,
      "lifting": 65_536 + 1_029,
      "decoder3d": 978_243,
      "mano_joint_reg": 16_338,
      "dense_stack3": 3_936_064,
      "image_fusion": linear_size(V * c, c) + 2 * linear_size(c, c) + 3 * bn(c),
      "joint_fusion": linear_size(3 * d, d) + 2 * linear_size(d, d) + 3 * bn(d),
      "rot_reg": sum(linear_size(a, b) for a, b in [
          (1024, 512), (512, 256), (4096, 2048), (2048, 1024), (1024, 1024), (1024, 512),
          (512, 256), (256, 6)]),
  }


def size(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def mvr_shapes(model, batch=1):
  return jax.eval_shape(lambda: model.init(
      {"params": jax.random.key(0)}, jnp.zeros((batch, V, 128, 128, 3)),
      jnp.ones((batch, V), bool), train=False))


def test_official_parameter_count(reference_topology):
  params = mvr_shapes(build_mvr(mvr_config("official"), reference_topology))["params"]
  expected = official_mvr_sizes()
  assert {k: size(v) for k, v in params.items()} == expected
  # docs/architecture.md#parameter-counts estimates about 31.9M including the unused SE block (0.53M).
  assert abs(size(params) + 526_848 - 31.9e6) < 0.1e6


@pytest.mark.parametrize("variant", ["tiny", "small"])
def test_teacher_and_student_distilled_shapes_agree(variant, reference_topology):
  teacher = build_mvr(mvr_config(variant), reference_topology)
  (_, t_mid), _ = jax.eval_shape(lambda: teacher.init_with_output(
      {"params": jax.random.key(0)}, jnp.zeros((2, V, 128, 128, 3)), jnp.ones((2, V), bool),
      train=False))
  student = build_svr(svr_config(variant), reference_topology)
  (_, s_mid), _ = jax.eval_shape(lambda: student.init_with_output(
      {"params": jax.random.key(0)}, jnp.zeros((2, 128, 128, 3)), train=False))
  f_v, f_o_hat = s_mid["lifted_vertex_feature_f_v"], s_mid["orientation_feature_enhanced_f_o_hat"]
  assert t_mid["fused_vertex_feature"].shape == f_v.shape  # one per hand, B = 2
  assert t_mid["fused_orientation_tokens"].shape == (2, V) + f_o_hat.shape[1:]


def test_build_mvr_defaults_and_validation(reference_topology):
  reference = build_mvr(mvr_config("tiny"), reference_topology)
  defaulted = build_mvr(svr_config("tiny"), reference_topology)  # no MVR fields in the config
  fields = ("num_views", "iff_channels", "jff_channels", "rot_conv_channels", "rot_pre_channels",
            "rot_fc_channels", "base_channels")
  assert [getattr(defaulted, f) for f in fields] == [getattr(reference, f) for f in fields]
  assert reference.num_views == V and reference.jff_channels == (128,) * 3
  config = mvr_config("tiny")
  config.iff_channels = (16, 12)
  with pytest.raises(ValueError, match="iff_channels must end at base_channels = 16"):
    build_mvr(config, reference_topology)
  config = mvr_config("tiny")
  config.jff_channels = (64,)
  with pytest.raises(ValueError, match="jff_channels must end at 8 \\* base_channels = 128"):
    build_mvr(config, reference_topology)
  with pytest.raises(ValueError, match=r"images \[B, 8, 128, 128, 3\]"):
    jax.eval_shape(lambda: reference.init({"params": jax.random.key(0)},
                                          jnp.zeros((1, 4, 128, 128, 3)), jnp.ones((1, 4), bool),
                                          train=False))


# ----------------------------------------------------------------------------------------------
# Fusion maths against numpy.

def numpy_view_statistics(x, valid):
  out = []
  for b in range(x.shape[0]):
    views = x[b, valid[b]]
    out.append((views.max(0), views.mean(0), np.sqrt(views.var(0) + 1e-6)))
  return [np.stack(s) for s in zip(*out)]


def test_masked_view_statistics_ignore_invalid_views():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, V, 2, 5)).astype(np.float32)
  valid = np.ones((3, V), bool)
  valid[0, [1, 4]] = False
  valid[1, 1:] = False  # one valid view: std = sqrt(eps)
  valid[2, :] = False   # a padding frame
  x_bad = np.where(valid[:, :, None, None], x, np.nan)
  got = [np.asarray(s) for s in fusion.masked_view_statistics(jnp.asarray(x_bad), valid)]
  want = numpy_view_statistics(x[:2], valid[:2])
  for g, w in zip(got, want):
    np.testing.assert_allclose(g[:2], w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[2][1], np.sqrt(1e-6), rtol=1e-6)  # a single view has std 0
  for g, padding in zip(got, (0.0, 0.0, np.sqrt(1e-6))):
    np.testing.assert_allclose(g[2], padding, rtol=1e-6)


def test_vertex_fusion_matches_eq3():
  rng = np.random.default_rng(1)
  b, n, c = 3, 5, 6
  f_v = rng.normal(size=(b, V, n, c)).astype(np.float32)
  valid = np.ones((b, V), bool)
  valid[0, [0, 5, 6]] = False
  valid[1, 2:] = False
  valid[2, :] = False
  fused, weights = fusion.vertex_fusion(
      jnp.asarray(np.where(valid[:, :, None, None], f_v, np.nan)), valid)
  for i in range(2):
    views = f_v[i, valid[i]].astype(np.float64)  # [Vi, N, C]
    for vert in range(n):
      feats = views[:, vert]
      scores = feats @ feats.T / np.sqrt(c)
      s = np.exp(scores - scores.max(1, keepdims=True))
      s /= s.sum(1, keepdims=True)
      w = s.mean(0)  # mean over (valid) query rows of each key column
      np.testing.assert_allclose(fused[i, vert], w @ feats, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(weights[i, vert, valid[i]], w, rtol=1e-5, atol=1e-7)
      np.testing.assert_array_equal(weights[i, vert, ~valid[i]], 0.0)
  np.testing.assert_array_equal(fused[2], 0.0)


def test_cyclic_view_conv_is_a_conv_over_the_rotated_concatenation():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, V, 3, 2, 4)).astype(np.float32)
  conv = fusion.CyclicViewConv(5)
  params = conv.init(jax.random.key(0), x)
  y = np.asarray(conv.apply(params, x))
  kernel = np.asarray(params["params"]["kernel"])[0, 0]
  bias = np.asarray(params["params"]["bias"])
  for k in range(V):
    concat = np.concatenate([x[:, (k + j) % V] for j in range(V)], axis=-1)  # target first
    np.testing.assert_allclose(y[:, k], concat @ kernel + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_image_fusion_ignores_invalid_views(train):
  rng = np.random.default_rng(3)
  f_i = rng.normal(size=(2, V, 4, 4, 6)).astype(np.float32)
  valid = np.ones((2, V), bool)
  valid[0, [2, 7]] = False
  module = fusion.ImageFusion((6, 6))
  variables = module.init(jax.random.key(0), f_i, valid, False)

  def apply(f):
    return module.apply(variables, f, valid, train, mutable=["batch_stats"])

  (fused, residual), stats = apply(f_i)
  other = f_i.copy()
  other[0, [2, 7]] = rng.normal(size=(2, 4, 4, 6)) * 100
  (fused_other, residual_other), stats_other = apply(other)
  # Every target view's fusion term, the invalid targets' included, ignores invalid views.
  np.testing.assert_array_equal(residual, residual_other)
  np.testing.assert_array_equal(fused[valid], fused_other[valid])
  jax.tree.map(np.testing.assert_array_equal, stats, stats_other)
  np.testing.assert_allclose(fused, f_i + residual, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# The whole model, tiny variant.

def orientation_loss(outputs, mids):
  """L_R- and L_OE-like terms."""
  return jnp.sum(outputs["rotation"] ** 2) + jnp.sum(mids["fused_orientation_tokens"] ** 2)


@pytest.fixture(scope="module")
def tiny(reference_topology):
  """The tiny MVR, its variables, a 2-frame batch and two compiled functions:

  ``eval_apply(variables, images, valid) -> (outputs, mids)`` and
  ``train_grads(variables, images, valid) -> ((loss, (outputs, mids, new batch_stats)), grads)``,
  a train-mode forward with the gradient of ``orientation_loss``.
  """
  model = build_mvr(mvr_config("tiny"), reference_topology)
  variables = he_variables(mvr_shapes(model), reference_topology)
  images = np.random.default_rng(0).random((2, V, 128, 128, 3), dtype=np.float32)

  def train_loss(params, stats, x, valid):
    (outputs, mids), updates = model.apply({"params": params, "batch_stats": stats}, x, valid,
                                           train=True, mutable=["batch_stats"])
    return orientation_loss(outputs, mids), (outputs, mids, updates["batch_stats"])

  grad_fn = jax.value_and_grad(train_loss, has_aux=True)
  eval_apply = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False))
  train_grads = jax.jit(lambda v, x, m: grad_fn(v["params"], v["batch_stats"], x, m))
  return model, variables, images, eval_apply, train_grads


def test_outputs_per_view(tiny):
  _, variables, images, eval_apply, _ = tiny
  valid = np.ones((2, V), bool)
  outputs, mids = jax.device_get(eval_apply(variables, images, valid))
  assert set(outputs) == set(OUTPUT_KEYS)
  shapes = {"verts_canonical": (778, 3), "joints_canonical": (21, 3), "verts_rotated": (778, 3),
            "joints_rotated": (21, 3), "joints_2d": (21, 2), "rotation_6d": (6,),
            "rotation": (3, 3)}
  assert {k: v.shape for k, v in outputs.items()} == {k: (2, V) + s for k, s in shapes.items()}
  assert mids["fused_vertex_feature"].shape == (2, 49, 16)
  assert mids["fused_orientation_tokens"].shape == (2, V, 16, 128)
  # One canonical hand per frame, seen from every view.
  np.testing.assert_array_equal(outputs["verts_canonical"],
                                np.broadcast_to(outputs["verts_canonical"][:, :1], (2, V, 778, 3)))
  verts = outputs["verts_canonical"][:, 0].astype(np.float64)
  rot = outputs["rotation"].astype(np.float64)
  np.testing.assert_allclose(rot @ rot.swapaxes(-1, -2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  root = outputs["joints_canonical"][:, 0, :1].astype(np.float64)  # [B, 1, 3]
  want = np.einsum("bnc,bkdc->bknd", verts - root, rot) + root[:, None]
  np.testing.assert_allclose(outputs["verts_rotated"], want, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(outputs["joints_2d"], mids["uv_raw"])
  # x(k) = f_j^M(k) + f_o^M_raw(k), as tokens t = row * w + col.
  x = mids["fused_joint_feature_f_j"] + mids["orientation_feature_f_o"]
  np.testing.assert_allclose(mids["fused_orientation_tokens"], x.reshape(2, V, 16, 128),
                             rtol=1e-6)


def with_other_pixels(images, valid, seed):
  other = images.copy()
  other[~valid] = np.random.default_rng(seed).random(other[~valid].shape, dtype=np.float32)
  return other


def valid_part(outputs, mids, valid):
  """Every per-view output of the valid views, and the fused features."""
  part = {k: v[valid] for k, v in outputs.items()}
  part["fused_orientation_tokens"] = mids["fused_orientation_tokens"][valid]
  part["fused_vertex_feature"] = mids["fused_vertex_feature"]
  return part


@pytest.mark.parametrize("train", [False, True])
def test_masked_views_do_not_leak(tiny, train):
  _, variables, images, eval_apply, train_grads = tiny
  valid = np.ones((2, V), bool)
  valid[0, [1, 2, 6]] = False
  valid[1, 5] = False

  def run(x):
    """Valid results; in train mode also the updated statistics and the gradients."""
    if train:
      (_, (outputs, mids, stats)), grads = train_grads(variables, x, valid)
      return jax.device_get((valid_part(outputs, mids, valid), stats, grads))
    return jax.device_get((valid_part(*eval_apply(variables, x, valid), valid),))

  base = run(images)
  jax.tree.map(np.testing.assert_array_equal, base, run(with_other_pixels(images, valid, 1)))

  # Control: a *valid* view's pixels do reach the other views' results (the views are fused).
  other = images.copy()
  other[0, 0] = np.random.default_rng(2).random(other[0, 0].shape, dtype=np.float32)
  changed = run(other)[0]
  assert not np.allclose(changed["fused_vertex_feature"][0], base[0]["fused_vertex_feature"][0])
  assert not np.allclose(changed["rotation_6d"][1], base[0]["rotation_6d"][1])  # frame 0, view 3


def test_single_valid_view_and_padding_frames(tiny):
  _, variables, images, eval_apply, _ = tiny
  valid = np.zeros((2, V), bool)
  valid[0, 3] = True  # frame 1 has no valid view (evaluation padding)
  outputs, mids = jax.device_get(eval_apply(variables, images, valid))
  for key, value in {**outputs, **mids}.items():
    assert np.isfinite(value).all(), key
  # With one view the vertex fusion is the identity on that view's lifted feature.
  np.testing.assert_array_equal(mids["vff_view_weights"][0, :, 3], 1.0)
  np.testing.assert_allclose(mids["fused_vertex_feature"][0],
                             mids["lifted_vertex_feature_f_v"][0, 3], rtol=1e-6)
  np.testing.assert_array_equal(mids["fused_vertex_feature"][1], 0.0)


def test_rolling_the_views_rolls_the_results(tiny):
  _, variables, images, eval_apply, _ = tiny
  valid = np.ones((2, V), bool)
  valid[0, 4] = False
  outputs, mids = jax.device_get(eval_apply(variables, images, valid))
  rolled_out, rolled_mids = jax.device_get(
      eval_apply(variables, np.roll(images, 3, axis=1), np.roll(valid, 3, axis=1)))
  for key in ("rotation_6d", "verts_rotated", "joints_2d"):
    np.testing.assert_allclose(rolled_out[key], np.roll(outputs[key], 3, axis=1), rtol=1e-4,
                               atol=1e-5 * np.abs(outputs[key]).max(), err_msg=key)
  np.testing.assert_allclose(rolled_mids["fused_vertex_feature"], mids["fused_vertex_feature"],
                             rtol=1e-4, atol=1e-5 * np.abs(mids["fused_vertex_feature"]).max())


def test_orientation_losses_stop_at_the_backbone(tiny):
  _, variables, images, _, train_grads = tiny
  _, grads = jax.device_get(train_grads(variables, images, np.ones((2, V), bool)))

  def nonzero(tree):
    return any(np.any(leaf) for leaf in jax.tree.leaves(tree))

  # The fusion side reads stop_grad(f_i) and stop_grad(j), as the SVR's orientation branch.
  for branch in ("image_fusion", "joint_fusion", "dense_stack3", "rot_reg"):
    assert nonzero(grads[branch]), branch
  for branch in ("backbone", "lifting", "decoder3d", "mano_joint_reg"):
    assert not nonzero(grads[branch]), branch
