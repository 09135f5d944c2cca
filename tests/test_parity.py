"""Forward parity of the Flax SVR with the official PyTorch SVRHand (shared/parity/README.md).

The recipe weights are rebuilt from the manifest (README §1, sha256 checked), imported with the
same conversion code users run (``simajax.convert.convert``), and every stored output,
intermediate and (train mode) updated BatchNorm statistic is compared with the metric of README
§6: rel = max|ours - golden| / max|golden|.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from parity_recipe import RECIPE_SHA256_SEED0, read_manifest, recipe_state_dict, state_dict_sha256
from simajax import convert
from simajax.models import build_svr, svr_config

# Official output key -> ours.
OUTPUT_NAMES = {
    "pred_verts3d_wo_gr": "verts_canonical", "pred_joints3d_wo_gr": "joints_canonical",
    "pred_verts3d_w_gr": "verts_rotated", "pred_joints3d_w_gr": "joints_rotated",
    "pred_joints_img": "joints_2d", "pred_glob_rot": "rotation_6d",
    "pred_glob_rot_mat": "rotation",
}
# BatchNorm statistics of the never-called SE block, which simajax does not create.
UNUSED_BN_PREFIX = "backbone.dense_stack1.senet3."


def rel_error(ours, golden) -> float:
  ours = np.asarray(ours, np.float64)
  golden = np.asarray(golden, np.float64)
  assert ours.shape == golden.shape
  return float(np.abs(ours - golden).max() / np.abs(golden).max())


def to_official_layout(key: str, value) -> np.ndarray:
  """Our NHWC / token-major intermediates in the golden files' layouts."""
  value = np.asarray(value)
  if value.ndim == 4:
    return value.transpose(0, 3, 1, 2)
  if key == "rot_conv_block":
    return value.transpose(0, 2, 1)
  return value


def compare_all(golden, outputs, mids, tol: float) -> dict[str, float]:
  errors = {}
  for key in golden.files:
    group, _, name = key.partition("/")
    if group == "out":
      errors[key] = rel_error(outputs[OUTPUT_NAMES[name]], golden[key])
    elif group == "mid":
      assert name in mids, f"the model does not expose intermediate {name}"
      errors[key] = rel_error(to_official_layout(name, mids[name]), golden[key])
  bad = {k: e for k, e in errors.items() if not e <= tol}
  assert not bad, f"above {tol}: {bad}"
  return errors


@pytest.fixture(scope="module")
def recipe(shared_dir):
  manifest = read_manifest(shared_dir / "parity" / "svr_state_dict_manifest.jsonl")
  return recipe_state_dict(manifest, seed=0)


@pytest.fixture(scope="module")
def recipe_variables(recipe, reference_topology):
  """The recipe imported by the users' conversion path (float32)."""
  return convert.convert(recipe, svr_config("official"), reference_topology)


def test_recipe_matches_readme(recipe):
  assert state_dict_sha256(recipe) == RECIPE_SHA256_SEED0
  np.testing.assert_allclose(recipe["upsample"].ravel()[:3],
                             [-0.32417202, 0.07289037, 0.07411005], rtol=1e-7)
  np.testing.assert_allclose(recipe["decoder3d.head.layer.bias"][:3],
                             [0.014964258, -0.042183712, 0.021763312], rtol=1e-7)


def test_eval_parity_float32(recipe_variables, shared_dir, reference_topology):
  golden = np.load(shared_dir / "parity" / "svr_golden_seed0.npz")
  assert str(golden["meta/mode"]) == "eval_float32"
  model = build_svr(svr_config("official"), reference_topology)
  images = golden["input/images"].transpose(0, 2, 3, 1)
  outputs, mids = jax.jit(lambda v, x: model.apply(v, x, train=False))(recipe_variables, images)
  assert outputs["verts_canonical"].dtype == np.float32
  errors = compare_all(golden, outputs, mids, tol=1e-4)
  assert len(errors) == 7 + 28


def test_train_bn_parity_float64(recipe, recipe_variables, shared_dir, reference_topology):
  golden = np.load(shared_dir / "parity" / "svr_golden_trainbn_seed0.npz")
  assert str(golden["meta/mode"]) == "train_bn_float64"
  config = svr_config("official")
  config.attention_dropout = 0.0  # the golden run switched the six dropouts off
  model = build_svr(config, reference_topology)
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda x: np.asarray(x, np.float64), recipe_variables)
    images = golden["input/images"].transpose(0, 2, 3, 1)
    assert images.dtype == np.float64
    (outputs, mids), updates = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, images)
    assert outputs["verts_canonical"].dtype == np.float64
    compare_all(golden, outputs, mids, tol=1e-7)
    stats = convert.variables_to_state_dict(
        {"params": variables["params"], "batch_stats": updates["batch_stats"]})
  bn_keys = [k for k in golden.files if k.startswith("bn/")]
  assert len(bn_keys) == 296
  bn_errors, unused = {}, []
  for key in bn_keys:
    name = key[3:]
    if name.startswith(UNUSED_BN_PREFIX):
      unused.append(name)
      # Never called, so never updated: the golden value is still the recipe's.
      np.testing.assert_array_equal(golden[key], recipe[name])
      continue
    bn_errors[name] = rel_error(stats[name], golden[key])
  assert len(unused) == 4
  bad = {k: e for k, e in bn_errors.items() if not e <= 1e-7}
  assert not bad, bad
  # Every BatchNorm statistic of ours was compared.
  assert {k for k in stats if k.endswith(("running_mean", "running_var"))} == set(bn_errors)
