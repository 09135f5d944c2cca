"""Optimizer schedule, shardings and checkpoints of the training machinery."""

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fixtures import damage
from simajax.cli import UserError
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


# ----------------------------------------------------------------------------------------------
# Damaged checkpoints (a torn write, a bad disk): the trainer resumes from the newest step that
# restores, params-only readers fall back or name the damaged step; nothing is deleted.


def _save_steps(directory, steps, best=None):
  ckpt = checkpointing.Checkpointer(directory, async_save=False, best_metric=best and "vpe")
  for step in steps:
    ckpt.save(step, _state(step), {"position": step},
              metrics=None if best is None else {"vpe": best[step]})
  ckpt.close()


def _warnings(caplog, logger=""):
  """The warnings logged (by ``logger`` and its children; "" for all, absl's included)."""
  return [r.getMessage() for r in caplog.records
          if r.levelno >= logging.WARNING and r.name.startswith(logger)]


def test_resume_skips_a_damaged_latest_step_and_moves_it_aside(tmp_path, caplog):
  _save_steps(tmp_path, (1, 2, 3))
  truncated = damage.truncate_array_files(tmp_path / "3")
  ckpt = checkpointing.Checkpointer(tmp_path, async_save=False)
  with caplog.at_level(logging.WARNING):
    state, data, step = ckpt.restore_newest_intact(jax.eval_shape(lambda: _state(0)))
  assert step == 2 and data == {"position": 2}
  np.testing.assert_array_equal(state["params"]["w"], [2, 2, 2])
  warnings = _warnings(caplog, "simajax")
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f"checkpoint step 3 in {tmp_path} is damaged and was skipped (")
  assert f"moved it to {tmp_path / '3.damaged'}" in warnings[0]
  # Renamed, not deleted: every damaged file is still there, and orbax no longer lists the step.
  moved = tmp_path / "3.damaged"
  assert not (tmp_path / "3").exists()
  assert all((moved / f.relative_to(tmp_path / "3")).stat().st_size == 100 for f in truncated)
  assert ckpt.all_steps() == [1, 2]
  # The run goes on: step 3 is saved again and is the one a restart resumes from.
  ckpt.save(3, _state(30), {"position": 30})
  ckpt.close()
  ckpt = checkpointing.Checkpointer(tmp_path, async_save=False)
  _, data, step = ckpt.restore_newest_intact(jax.eval_shape(lambda: _state(0)))
  assert (step, data) == (3, {"position": 30})
  ckpt.close()


def test_resume_without_an_intact_step_fails_in_one_line(tmp_path):
  _save_steps(tmp_path, (1, 2))
  for step in (1, 2):
    damage.truncate_array_files(tmp_path / str(step))
  ckpt = checkpointing.Checkpointer(tmp_path, async_save=False)
  with pytest.raises(UserError) as info:
    ckpt.restore_newest_intact(jax.eval_shape(lambda: _state(0)))
  message = str(info.value)
  assert message.startswith(f"{tmp_path}: no checkpoint restores: step 2 (")
  assert "; step 1 (" in message and "\n" not in message
  # Nothing to resume from: the run is left as it was (a restart fails the same way instead of
  # starting over).
  assert ckpt.all_steps() == [1, 2] and not [p for p in tmp_path.iterdir() if "damaged" in p.name]
  ckpt.close()


def test_resume_refuses_another_model_and_moves_nothing(tmp_path):
  _save_steps(tmp_path, (1,))
  other = {"params": {"w": jnp.zeros((4,)), "b": jnp.zeros(())}, "batch_stats": {},
           "step": jnp.asarray(0)}
  ckpt = checkpointing.Checkpointer(tmp_path, async_save=False)
  with pytest.raises(UserError, match=r"1: the checkpoint does not fit this model .*: missing 1: "
                                      r"params/b; other shapes 1: params/w \[3\] \(expected \[4\]\)"):
    ckpt.restore_newest_intact(jax.eval_shape(lambda: other))
  assert (tmp_path / "1").is_dir() and ckpt.all_steps() == [1]
  ckpt.close()


def test_params_only_readers_fall_back_or_name_the_damaged_step(tmp_path, caplog):
  _save_steps(tmp_path, (1, 2, 3), best={1: 1.0, 2: 2.0, 3: 3.0})
  with caplog.at_level(logging.WARNING):
    intact = checkpointing.restore_params(tmp_path, best_metric="vpe")
  assert intact.step == 1 and not _warnings(caplog)  # read-only managers open silently
  damage.truncate_array_files(tmp_path / "1")  # the best one
  with caplog.at_level(logging.WARNING):
    restored = checkpointing.restore_params(tmp_path, best_metric="vpe")
  assert restored.step == 3  # the newest intact one
  np.testing.assert_array_equal(restored.variables["params"]["w"], [3, 3, 3])
  warnings = _warnings(caplog, "simajax")
  assert len(warnings) == 1 and "step 1 (" in warnings[0] and "read step 3 instead" in warnings[0]
  assert (tmp_path / "1").is_dir()  # readers leave the run as it is
  with pytest.raises(UserError, match=r"checkpoint step 1 \(.*\) is damaged; pass another --step "
                                      r"\(other steps: \[2, 3\]\)"):
    checkpointing.restore_params(tmp_path, 1, best_metric="vpe")
  with pytest.raises(UserError, match=r"step 7: .* has checkpoints at steps \[1, 2, 3\]"):
    checkpointing.restore_params(tmp_path, 7)
