"""The SVR's "w/o OFE" ablation switch (``use_ofe=False``; paper Table 5 row vii).

Without the orientation-feature enhancement the rotation regressor reads the f_o tokens directly:
no attention blocks and no j_latent_mapping (only the attention reads f_j). The default build
stays the official model, whose numerics test_parity.py checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from simajax.models import build_svr, svr_config
from parity_recipe import he_variables

# docs/architecture.md#parameter-counts: one official MultiHeadAttention block and j_latent_mapping.
MHA_SIZE = 16_779_264
J_LATENT_MAPPING_SIZE = 3_154_944
OFFICIAL_ROT_REG_SIZE = 62_182_742
OFFICIAL_SIZE = 78_437_384  # simajax's official SVR (no never-called SE block)


def build(variant: str, use_ofe: bool, topology):
  config = svr_config(variant)
  config.use_ofe = use_ofe
  return build_svr(config, topology)


def param_shapes(model):
  return jax.eval_shape(lambda: model.init({"params": jax.random.key(0)},
                                           jnp.zeros((2, 128, 128, 3)), train=False))


def size(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def test_default_is_the_official_model(reference_topology):
  model = build_svr(svr_config("official"), reference_topology)  # no use_ofe field: default
  assert model.use_ofe
  params = param_shapes(model)["params"]
  assert {"self_attn_1", "self_attn_2", "crs_attn"} <= set(params["rot_reg"])
  assert size(params) == OFFICIAL_SIZE


def test_without_ofe_there_are_no_attention_parameters(reference_topology):
  params = param_shapes(build("official", False, reference_topology))["params"]
  assert "j_latent_mapping" not in params
  assert set(params["rot_reg"]) == {"conv_block_0", "conv_block_2", "pre_block_0", "pre_block_2",
                                    *(f"fc_block_1_{2 * i}" for i in range(7))}
  assert size(params["rot_reg"]) == OFFICIAL_ROT_REG_SIZE - 3 * MHA_SIZE
  assert size(params) == OFFICIAL_SIZE - 3 * MHA_SIZE - J_LATENT_MAPPING_SIZE


def test_regressor_reads_the_orientation_tokens(reference_topology):
  with_ofe = build("tiny", True, reference_topology)
  without = build("tiny", False, reference_topology)
  variables = he_variables(param_shapes(with_ofe), reference_topology)
  reduced = {"params": {k: v for k, v in variables["params"].items() if k != "j_latent_mapping"},
             "batch_stats": {k: v for k, v in variables["batch_stats"].items()
                             if k != "j_latent_mapping"}}
  reduced["params"]["rot_reg"] = {k: v for k, v in variables["params"]["rot_reg"].items()
                                  if "attn" not in k}
  images = np.random.default_rng(0).random((2, 128, 128, 3), dtype=np.float32)
  run = jax.jit(lambda a, b: (with_ofe.apply(a, images, train=False),
                              without.apply(b, images, train=False)))
  (out_ofe, mid_ofe), (out, mid) = jax.device_get(run(variables, reduced))

  assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in out_ofe.items()}
  assert mid["orientation_feature_enhanced_f_o_hat"].shape == (
      mid_ofe["orientation_feature_enhanced_f_o_hat"].shape)
  # The shape branch and the orientation encoder do not depend on the switch.
  for key in ("verts_canonical", "joints_2d"):
    np.testing.assert_array_equal(out[key], out_ofe[key])
  np.testing.assert_array_equal(mid["orientation_feature_f_o"], mid_ofe["orientation_feature_f_o"])
  # f̂_o is the f_o tokens (t = row * 4 + col), and the MLP of docs/architecture.md#orientation-branch maps
  # them to the 6D rotation.
  f_o = mid["orientation_feature_f_o"].astype(np.float64)
  tokens = f_o.reshape(2, 16, f_o.shape[-1])
  np.testing.assert_array_equal(mid["orientation_feature_enhanced_f_o_hat"], tokens)
  head = reduced["params"]["rot_reg"]

  def dense(x, name):
    return x @ head[name]["kernel"] + head[name]["bias"]

  x = np.maximum(dense(tokens, "conv_block_0"), 0.0)
  x = np.maximum(dense(x, "conv_block_2"), 0.0)
  x = x.transpose(0, 2, 1).reshape(2, -1)  # channel-major flatten
  for name in ("pre_block_0", "pre_block_2", "fc_block_1_0"):
    x = np.maximum(dense(x, name), 0.0)
  np.testing.assert_allclose(out["rotation_6d"], dense(x, "fc_block_1_2"), rtol=1e-4, atol=1e-5)
  assert not np.allclose(out["rotation_6d"], out_ofe["rotation_6d"])
