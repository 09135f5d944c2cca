"""Optimizer schedule, shardings and checkpoints of the training machinery."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from simajax.training import checkpointing, optim, sharding


def _optim_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      optim=dict(base_lr=1e-3, base_batch_size=32, decay_epochs=[30], decay_factor=0.1,
                 b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.1, warmup_steps=None,
                 warmup_epochs=None)))
  config.update(overrides)
  return config


def test_steps_from_config():
  cfg = ml_collections.ConfigDict(dict(total_steps=None, total_epochs=2.5))
  assert optim.steps_from_config(cfg, "total", steps_per_epoch=10) == 25
  cfg = ml_collections.ConfigDict(dict(total_steps=7, total_epochs=None))
  assert optim.steps_from_config(cfg, "total", steps_per_epoch=10) == 7
  cfg = ml_collections.ConfigDict(dict(total_steps=7, total_epochs=1.0))
  with pytest.raises(ValueError, match="both total_steps"):
    optim.steps_from_config(cfg, "total", steps_per_epoch=10)


def test_schedule_is_multistep_and_scales_with_batch():
  config = _optim_config()
  schedule = optim.make_schedule(config, global_batch_size=64, steps_per_epoch=100)
  # 1e-3 at batch 32 -> 2e-3 at batch 64; x0.1 from the first step of epoch 30.
  assert float(schedule(0)) == pytest.approx(2e-3)
  assert float(schedule(2999)) == pytest.approx(2e-3)
  assert float(schedule(3000)) == pytest.approx(2e-4)


def test_gradient_clipping_applies_before_adam():
  config = _optim_config()
  tx, _ = optim.make_optimizer(config, global_batch_size=32, steps_per_epoch=10)
  params = {"w": jnp.zeros(4)}
  state = tx.init(params)
  grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}  # norm 50 -> clipped to 0.1
  _, state = tx.update(grads, state, params)
  adam_mu = state[1][0].mu["w"]
  np.testing.assert_allclose(adam_mu, 0.1 * np.array([0.06, 0.08, 0, 0]), rtol=1e-6)


def test_state_shardings_split_only_large_tensors():
  mesh = sharding.make_mesh(model_parallelism=2)
  assert mesh.shape == {"data": 4, "model": 2}
  state = {"big": jax.ShapeDtypeStruct((1024, 2048), jnp.float32),
           "small": jax.ShapeDtypeStruct((3, 4), jnp.float32),
           "odd": jax.ShapeDtypeStruct((1025, 1023), jnp.float32)}
  shardings = sharding.state_shardings(mesh, state)
  assert shardings["big"].spec == jax.sharding.PartitionSpec(None, "model")
  assert shardings["small"].spec == jax.sharding.PartitionSpec()
  assert shardings["odd"].spec == jax.sharding.PartitionSpec()


def test_global_batch_is_sharded_over_data_axis():
  mesh = sharding.make_mesh()
  batch = sharding.global_batch({"x": np.arange(16.0).reshape(16, 1)}, mesh)
  assert batch["x"].shape == (16, 1)
  assert len(batch["x"].addressable_shards) == len(jax.devices())
  np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(16.0).reshape(16, 1))
  with pytest.raises(ValueError, match="does not divide"):
    sharding.make_mesh(model_parallelism=3)


def _state(value):
  return {"params": {"w": jnp.full((3,), value, jnp.float32)}, "batch_stats": {},
          "step": jnp.asarray(int(value))}


def test_checkpointer_keeps_latest_and_best(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=2, best_metric="vpe",
                                    best_mode="min", keep_best=1, async_save=False)
  for step, vpe in [(1, 5.0), (2, 3.0), (3, 4.0), (4, None), (5, 6.0)]:
    ckpt.save(step, _state(step), {"position": step},
              metrics=None if vpe is None else {"vpe": vpe})
  assert ckpt.all_steps() == [2, 4, 5]
  assert ckpt.best_step() == 2
  state, data = ckpt.restore(None, jax.eval_shape(lambda: _state(0)))
  np.testing.assert_array_equal(state["params"]["w"], [5, 5, 5])
  assert data == {"position": 5}
  ckpt.close()
  weights = checkpointing.restore_params_only(tmp_path, best_metric="vpe")
  np.testing.assert_array_equal(weights["params"]["w"], [2, 2, 2])


def test_interrupted_save_leaves_previous_checkpoint_usable(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path, async_save=False)
  ckpt.save(1, _state(1), {"position": 1})
  ckpt.close()
  # A save killed half-way leaves only orbax's temporary directory behind.
  partial = tmp_path / "2.orbax-checkpoint-tmp-1234567"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
  ckpt = checkpointing.Checkpointer(tmp_path, async_save=False)
  assert ckpt.latest_step() == 1
  state, data = ckpt.restore(None, jax.eval_shape(lambda: _state(0)))
  np.testing.assert_array_equal(state["params"]["w"], [1, 1, 1])
  assert data == {"position": 1}
  ckpt.close()
