"""``optim.flatten`` (the raveled optimizer makes the same updates as the per-tensor one) and
``optim.lr_multipliers`` (per-parameter update scales)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from simajax.training import optim


def _config(flatten: bool, model_axis: int = 1, lr_multipliers=None) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      optim=dict(base_lr=1e-3, base_batch_size=32, decay_epochs=[30], decay_factor=0.1,
                 b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.1, warmup_steps=None,
                 warmup_epochs=None, flatten=flatten, lr_multipliers=lr_multipliers or {}),
      mesh=dict(model=model_axis)))


def _gradients(params, seed: int):
  """Gradients of norm ~10, so that the global-norm clip to 0.1 is active on every step."""
  r = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(r.normal(size=x.shape) * 3.0, jnp.float32), params)


def test_flattened_optimizer_makes_the_same_updates():
  r = np.random.default_rng(0)
  params = {"a": {"kernel": r.normal(size=(3, 4)), "bias": r.normal(size=4)},
            "b": r.normal(size=(2, 2, 5))}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  results = []
  for flatten in (False, True):
    tx, _ = optim.make_optimizer(_config(flatten), global_batch_size=32, steps_per_epoch=10)
    p, state = params, tx.init(params)
    for step in range(3):
      updates, state = tx.update(_gradients(p, step), state, p)
      p = jax.tree.map(lambda a, u: a + u, p, updates)
    results.append((p, state))
  (p_tree, state_tree), (p_flat, state_flat) = results
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), p_tree, p_flat)
  # Per-tensor moments in one, a single raveled vector in the other.
  num_params = sum(x.size for x in jax.tree.leaves(params))
  moments = [x for x in jax.tree.leaves(state_flat) if x.ndim == 1]
  assert len(moments) == 2 and all(x.size == num_params for x in moments)
  assert len(jax.tree.leaves(state_tree)) > len(jax.tree.leaves(state_flat))


def test_flatten_is_refused_with_a_model_axis():
  with pytest.raises(ValueError, match="optim.flatten=False"):
    optim.make_optimizer(_config(True, model_axis=2), global_batch_size=32, steps_per_epoch=10)
  optim.make_optimizer(_config(False, model_axis=2), global_batch_size=32, steps_per_epoch=10)


def _params():
  r = np.random.default_rng(0)
  params = {"lifting": {"upsample": r.normal(size=(5, 3))},
            "decoder": {"head": {"kernel": r.normal(size=(4, 3)), "bias": r.normal(size=3)}}}
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def _run(config, params, steps: int = 3):
  tx, _ = optim.make_optimizer(config, global_batch_size=32, steps_per_epoch=10)
  p, state = params, tx.init(params)
  for step in range(steps):
    updates, state = tx.update(_gradients(p, step), state, p)
    p = jax.tree.map(lambda a, u: a + u, p, updates)
  return p


@pytest.mark.parametrize("flatten", [False, True])
def test_lr_multipliers_scale_only_the_matched_updates(flatten):
  params = _params()
  plain = _run(_config(flatten), params)
  scaled = _run(_config(flatten, lr_multipliers={"*lifting/upsample": 0.25,
                                                 "decoder/head/bias": 0.0}), params)
  # Adam's moments see the unscaled gradients, so each update is exactly the plain one x factor.
  np.testing.assert_allclose(scaled["lifting"]["upsample"] - params["lifting"]["upsample"],
                             0.25 * (plain["lifting"]["upsample"] - params["lifting"]["upsample"]),
                             rtol=1e-5, atol=1e-6)
  head, plain_head = scaled["decoder"]["head"], plain["decoder"]["head"]
  np.testing.assert_array_equal(head["bias"], params["decoder"]["head"]["bias"])
  np.testing.assert_allclose(head["kernel"], plain_head["kernel"], rtol=1e-6)
  assert not np.allclose(plain["decoder"]["head"]["bias"], params["decoder"]["head"]["bias"])


def test_an_lr_multiplier_that_matches_nothing_is_an_error():
  tx, _ = optim.make_optimizer(_config(True, lr_multipliers={"lifting/upsampel": 0.1}),
                               global_batch_size=32, steps_per_epoch=10)
  with pytest.raises(ValueError, match="'lifting/upsampel' matches no parameter"):
    tx.init(_params())
