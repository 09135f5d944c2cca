"""The SVR top module: official sizes, output conventions, gradient stops, train mode.

Numerical parity with the official model is in test_parity.py; here the tiny variant checks the
wiring against relations computed independently in numpy.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from parity_recipe import he_variables
from simajax.models import OUTPUT_KEYS, build_svr, svr_config
from simajax.models import backbone as backbone_lib

# docs/architecture.md#parameter-counts (torch module sizes); the backbone's includes the never-called
# dense_stack1.senet3 (526,848), which simajax does not create.
OFFICIAL_SIZES = {
    "backbone": 8_579_032 - 526_848,
    "lifting": 65_536 + 1_029,  # de_layer_conv + the 49x21 lifting matrix "upsample"
    "decoder3d": 978_243,
    "mano_joint_reg": 16_338,
    "shared_encoding_mapping": 50_304,
    "dense_stack3": 3_936_064,
    "j_latent_mapping": 3_154_944,
    "rot_reg": 62_182_742,
}


def param_shapes(model, batch=2):
  return jax.eval_shape(lambda: model.init({"params": jax.random.key(0)},
                                           jnp.zeros((batch, 128, 128, 3)), train=False))


def size(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def test_official_parameter_count(reference_topology):
  shapes = param_shapes(build_svr(svr_config("official"), reference_topology))
  params = shapes["params"]
  assert {k: size(v) for k, v in params.items()} == OFFICIAL_SIZES
  assert size(params) == 78_964_232 - 526_848 == 78_437_384
  # 148 BatchNorm layers of the official model less the two of the unused SE block.
  assert size(shapes["batch_stats"]) // 2 == sum(
      v.shape[0] for k, v in flax.traverse_util.flatten_dict(shapes["batch_stats"]).items()
      if k[-1] == "mean")
  assert sum(1 for k in flax.traverse_util.flatten_dict(shapes["batch_stats"])
             if k[-1] == "mean") == 148 - 2


@pytest.mark.parametrize("variant", ["small", "tiny"])
def test_reduced_variants_keep_the_mesh(variant, reference_topology):
  model = build_svr(svr_config(variant), reference_topology)
  shapes = param_shapes(model)
  outputs, mids = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 128, 128, 3)),
                                                       train=False), shapes)
  assert outputs["verts_canonical"].shape == (2, 778, 3)
  assert outputs["joints_rotated"].shape == (2, 21, 3)
  assert mids["lifted_vertex_feature_f_v"].shape[:2] == (2, 49)
  assert [mids[f"decoder_stage{i}"].shape[1] for i in range(4)] == [98, 195, 389, 778]
  assert size(shapes["params"]) < 78_437_384 / 10


def test_build_svr_needs_a_joint_regressor(reference_topology):
  topology = dataclasses.replace(reference_topology, joint_regressor=None)
  with pytest.raises(ValueError, match="joint_regressor"):
    build_svr(svr_config("tiny"), topology)


def test_rejects_wrong_image_layout(reference_topology):
  model = build_svr(svr_config("tiny"), reference_topology)
  with pytest.raises(ValueError, match=r"\[B, 128, 128, 3\]"):
    jax.eval_shape(lambda: model.init({"params": jax.random.key(0)},
                                      jnp.zeros((2, 3, 128, 128)), train=False))


@pytest.fixture(scope="module")
def tiny(reference_topology):
  model = build_svr(svr_config("tiny"), reference_topology)
  variables = he_variables(param_shapes(model), reference_topology)
  images = np.random.default_rng(0).random((3, 128, 128, 3), dtype=np.float32)
  return model, variables, images


def test_eval_outputs_and_gradient_stops(tiny):
  model, variables, images = tiny
  params, stats = variables["params"], variables["batch_stats"]
  w_verts = np.random.default_rng(1).normal(size=(3, 778, 3)).astype(np.float32)

  def apply(p):
    return model.apply({"params": p, "batch_stats": stats}, images, train=False)

  def orientation_loss(p):  # L_R- and L_OE-like terms
    outputs, mids = apply(p)
    return (jnp.sum(outputs["rotation"] ** 2)
            + jnp.sum(mids["orientation_feature_enhanced_f_o_hat"] ** 2))

  def rotated_mesh_loss(shape_params, p):
    outputs, _ = apply({**p, **shape_params})
    return jnp.sum(outputs["verts_rotated"] * w_verts)

  def weighted_root(shape_params, p):
    outputs, _ = apply({**p, **shape_params})
    return jnp.sum(outputs["joints_canonical"][:, 0] * w_verts.sum(axis=1))

  @jax.jit
  def run(p):
    shape_params = {"decoder3d": p["decoder3d"], "mano_joint_reg": p["mano_joint_reg"]}
    return (apply(p), jax.grad(orientation_loss)(p),
            jax.grad(rotated_mesh_loss)(shape_params, p), jax.grad(weighted_root)(shape_params, p))

  (outputs, mids), g_orient, g_rot, g_root = run(params)
  assert set(outputs) == set(OUTPUT_KEYS)
  verts = np.asarray(outputs["verts_canonical"], np.float64)
  joints = np.einsum("jv,bvc->bjc", np.asarray(params["mano_joint_reg"], np.float64), verts)
  np.testing.assert_allclose(outputs["joints_canonical"], joints, rtol=1e-4, atol=1e-6)
  rot = np.asarray(outputs["rotation"], np.float64)
  np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
  np.testing.assert_allclose(rot[:, 0], outputs["rotation_6d"][:, :3]
                             / np.linalg.norm(outputs["rotation_6d"][:, :3], axis=-1,
                                              keepdims=True), atol=1e-5)  # rows convention
  root = joints[:, :1]
  np.testing.assert_allclose(outputs["verts_rotated"],
                             (verts - root) @ rot.transpose(0, 2, 1) + root, rtol=1e-4, atol=1e-6)
  assert np.array_equal(outputs["joints_2d"], mids["uv_raw"])
  assert mids["orientation_feature_enhanced_f_o_hat"].shape == (3, 16, 128)

  # The rotation and f̂_o losses reach the orientation branch only (docs/architecture.md#where-gradients-stop).
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(g_orient["backbone"]))
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(g_orient["decoder3d"]))
  for branch in ("rot_reg", "dense_stack3", "shared_encoding_mapping", "j_latent_mapping"):
    assert any(np.any(leaf) for leaf in jax.tree.leaves(g_orient[branch])), branch
  # The rotated mesh trains the shape branch only through the added-back root:
  # d/dθ sum(W * ((V - r) R^T + r)) with V, r detached on the left = d/dθ sum_v W_v · r.
  for a, b in zip(jax.tree.leaves(g_rot), jax.tree.leaves(g_root)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())
  assert any(np.any(leaf) for leaf in jax.tree.leaves(g_root["decoder3d"]))


def test_train_mode_updates_statistics_and_uses_dropout(tiny):
  model, variables, images = tiny

  @jax.jit
  def train_apply(v, key):
    return model.apply(v, images, train=True, mutable=["batch_stats"], rngs={"dropout": key})

  (out_a, _), updates = train_apply(variables, jax.random.key(1))
  (out_b, _), _ = train_apply(variables, jax.random.key(2))
  flat_old = flax.traverse_util.flatten_dict(variables["batch_stats"])
  flat_new = flax.traverse_util.flatten_dict(updates["batch_stats"])
  assert flat_old.keys() == flat_new.keys()
  assert all(not np.allclose(flat_old[k], flat_new[k]) for k in flat_old)
  # Dropout sits in the orientation head only: the shape branch is rng-independent.
  np.testing.assert_array_equal(out_a["verts_canonical"], out_b["verts_canonical"])
  assert not np.allclose(out_a["rotation_6d"], out_b["rotation_6d"])


def test_frozen_joint_regressor_gets_no_gradient_and_changes_no_output(tiny, reference_topology):
  model, variables, images = tiny
  config = svr_config("tiny")
  config.train_joint_regressor = False
  frozen = build_svr(config, reference_topology)
  params, stats = variables["params"], variables["batch_stats"]
  w = np.random.default_rng(2).normal(size=(3, 21, 3)).astype(np.float32)

  def joints_loss(module, regressor):
    outputs, _ = module.apply({"params": {**params, "mano_joint_reg": regressor},
                               "batch_stats": stats}, images, train=False)
    return jnp.sum(outputs["joints_canonical"] * w), outputs

  @jax.jit
  def run(regressor):
    return [jax.grad(lambda r, m=m: joints_loss(m, r), has_aux=True)(regressor)
            for m in (model, frozen)]

  (g_trained, out_trained), (g_frozen, out_frozen) = run(params["mano_joint_reg"])
  # d/dR sum(W * (R V)) = sum_b W_b V_b^T, from the (regressor-independent) vertices.
  verts = np.asarray(out_trained["verts_canonical"], np.float64)
  np.testing.assert_allclose(g_trained, np.einsum("bjc,bvc->jv", w, verts), rtol=1e-4,
                             atol=1e-7)
  assert not np.any(g_frozen)
  jax.tree.map(np.testing.assert_array_equal, out_trained, out_frozen)


def test_soft_argmax_finds_a_peak_and_centres_a_flat_map():
  h, w = 16, 16
  maps = np.zeros((2, h, w, 3), np.float32)
  maps[0, 3, 11, 0] = 100.0   # a sharp peak at row 3, column 11
  maps[0, 15, 0, 1] = 100.0   # bottom-left corner
  maps[1, 7:9, 7:9, 2] = 100.0  # a 2x2 plateau around the centre
  uv = np.asarray(backbone_lib.soft_argmax_2d(jnp.asarray(maps)))
  # Pixel centres: x = (col + 0.5) / w, y = (row + 0.5) / h.
  np.testing.assert_allclose(uv[0, 0], [11.5 / 16, 3.5 / 16], atol=1e-6)
  np.testing.assert_allclose(uv[0, 1], [0.5 / 16, 15.5 / 16], atol=1e-6)
  np.testing.assert_allclose(uv[1, 2], [0.5, 0.5], atol=1e-6)
  # A flat map (joint 2 of image 0, every joint of image 1 but the plateau) gives the centre.
  np.testing.assert_allclose(uv[0, 2], [0.5, 0.5], atol=1e-6)
  np.testing.assert_allclose(uv[1, :2], 0.5, atol=1e-6)


def test_soft_argmax_head_has_no_uv_regressor_and_trains_the_heatmaps(reference_topology):
  config = svr_config("tiny")
  config.uv_head = "soft_argmax"
  model = build_svr(config, reference_topology)
  shapes = param_shapes(model)
  assert not any(k.startswith("uv_reg") for k in shapes["params"]["backbone"])
  variables = he_variables(shapes, reference_topology)
  images = np.random.default_rng(3).random((2, 128, 128, 3), dtype=np.float32)

  def uv_loss(p):
    outputs, mids = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, images,
                                train=False)
    return jnp.sum(outputs["joints_2d"]), (outputs, mids)

  grads, (outputs, mids) = jax.grad(uv_loss, has_aux=True)(variables["params"])
  np.testing.assert_allclose(outputs["joints_2d"],
                             backbone_lib.soft_argmax_2d(mids["backbone_reduce"]), atol=1e-6)
  assert np.all((outputs["joints_2d"] > 0) & (outputs["joints_2d"] < 1))
  assert np.any(grads["backbone"]["reduce"]["conv"]["kernel"])


def test_unknown_uv_head_is_rejected(reference_topology):
  config = svr_config("tiny")
  config.uv_head = "heatmap"
  with pytest.raises(ValueError, match="model.uv_head must be one of"):
    build_svr(config, reference_topology)
