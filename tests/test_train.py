"""Training end to end on the tiny synthetic data: both stages, SiMA's teacher handling, resume
after ``kill -9``, sharded steps and multi-process training.

Every run here uses the `tiny` model (`:runlocal` configs). Runs that must agree bit for bit
share one config, so the persistent compilation cache (tests/conftest.py) compiles them once.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from fixtures import damage
from simajax import config_lib, train
from simajax.training import checkpointing, run_dir

REPO = pathlib.Path(__file__).resolve().parents[1]
SVR_STEPS = 18


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  from data_pipelines import build
  path = str(tmp_path_factory.mktemp("tfds"))
  build.ensure_built("synthetic_hands/tiny", path)
  return path


def svr_overrides(data_dir: str) -> dict:
  """The plain-SVR config every bitwise comparison shares (as --config.key=value pairs)."""
  return {"distill.enabled": False, "data.mode": "single_view", "data.data_dir": data_dir,
          "mesh.num_devices": 1, "total_steps": SVR_STEPS, "log_every_steps": 1,
          "eval_every_steps": SVR_STEPS, "checkpoint.every_steps": 6}


def load(stage: str, overrides: dict):
  config = config_lib.load_config(str(REPO / "configs" / f"{stage}_synthetic.py") + ":runlocal")
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def train_command(stage: str, overrides: dict, workdir) -> list[str]:
  return ([sys.executable, "-m", "simajax.train",
           f"--config={REPO / 'configs' / f'{stage}_synthetic.py'}:runlocal",
           f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()])


def final_params(workdir, step=None):
  return checkpointing.restore_params_only(os.path.join(workdir, "checkpoints"), step)


def read_metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def svr_run(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("svr")
  result = train.train_and_evaluate(load("svr", svr_overrides(data_dir)), str(workdir))
  return workdir, result


def test_svr_trains_and_loss_falls(svr_run):
  workdir, result = svr_run
  logged = [m for m in read_metrics(workdir) if "train/loss" in m]
  assert len(logged) == SVR_STEPS
  # The total is dominated by slow terms (2D joints, normals); the mesh term shows learning,
  # most of it in the first few steps (the mean shape), hence the comparison with step 1.
  total = [m["train/loss"] for m in logged]
  assert np.mean(total[-4:]) < np.mean(total[:4]), total
  mesh = [m["train/loss_mesh_canonical"] for m in logged]
  assert np.mean(mesh[-4:]) < 0.85 * mesh[0], mesh
  overall = result.metrics["metrics"]["overall"]
  assert overall["count"] > 0 and np.isfinite(overall["pa_vpe"])
  for name in ("config.json", "topology.npz", f"eval_step{SVR_STEPS}.json"):
    assert (workdir / name).exists(), name
  for key in ("train/l2_grads", "train/l2_params", "train/l2_updates", "train/lr"):
    assert np.isfinite(logged[0][key]), key


def test_kill_9_and_resume_gives_bitwise_identical_parameters(svr_run, data_dir, tmp_path):
  reference, _ = svr_run
  workdir = tmp_path / "killed"
  command = train_command("svr", svr_overrides(data_dir), workdir)
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoints = workdir / "checkpoints"
  deadline = time.time() + 600
  # Kill as soon as the first checkpoint is complete, mid-training.
  while time.time() < deadline and process.poll() is None:
    done = [p for p in checkpoints.glob("*") if p.name.isdigit()] if checkpoints.exists() else []
    if done:
      break
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be killed"
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = checkpointing.Checkpointer(checkpoints).latest_step()
  assert killed_at is not None and killed_at < SVR_STEPS
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  resumed, uninterrupted = final_params(workdir, SVR_STEPS), final_params(reference, SVR_STEPS)
  jax.tree.map(np.testing.assert_array_equal, resumed, uninterrupted)


def test_evaluate_cli_scores_a_saved_run(svr_run, tmp_path):
  from simajax import evaluate
  workdir, result = svr_run
  out = tmp_path / "metrics.json"
  assert evaluate.main(["--checkpoint", str(workdir), "--split", "validation", "--out", str(out),
                        "--table", str(tmp_path / "t.md"), "--plot", str(tmp_path / "p.png")]) == 0
  scored = json.loads(out.read_text())
  # The same checkpoint on the same split scores what the trainer's own evaluation scored.
  for key in ("jpe", "vpe", "pa_jpe", "pa_vpe", "f5"):
    assert scored["metrics"]["overall"][key] == pytest.approx(
        result.metrics["metrics"]["overall"][key], rel=1e-5)
  assert scored["run"]["step"] == SVR_STEPS
  assert (tmp_path / "p.png").stat().st_size > 0


@pytest.fixture(scope="module")
def mvr_run(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("mvr")
  overrides = {"data.data_dir": data_dir, "mesh.num_devices": 1, "total_steps": 3,
               "eval_every_steps": 3, "log_every_steps": 1}
  result = train.train_and_evaluate(load("mvr", overrides), str(workdir))
  return workdir, result


def test_mvr_trains_and_scores_every_view(mvr_run):
  workdir, result = mvr_run
  assert len([m for m in read_metrics(workdir) if "train/loss" in m]) == 3
  assert result.metrics["metrics"]["overall"]["count"] > 0


def test_sima_svr_uses_frozen_teacher_that_is_never_checkpointed(mvr_run, data_dir, tmp_path):
  teacher_dir, _ = mvr_run
  overrides = {"data.data_dir": data_dir, "mesh.num_devices": 1, "total_steps": 2,
               "eval_every_steps": 2, "log_every_steps": 1,
               "distill.teacher_checkpoint": str(teacher_dir),
               # The student's shared modules start from the teacher's (quickstart's setting);
               # another seed than the teacher's, so that its other modules start elsewhere.
               "init_from": str(teacher_dir), "init_from_modules": ["backbone", "decoder3d"],
               "seed": 1}
  workdir = tmp_path / "sima"
  config = load("svr", overrides)
  result = train.train_and_evaluate(config, str(workdir))
  # The teacher's variables after the SVR steps are exactly its checkpoint's.
  on_disk = final_params(teacher_dir)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(result.teacher_variables), on_disk)
  # Distillation was active.
  logged = [m for m in read_metrics(workdir) if "train/loss" in m]
  assert all(m["train/loss_se"] > 0 and m["train/loss_oe"] > 0 for m in logged)
  # The student's checkpoint holds the student only: the same tree as the student's state.
  student = final_params(workdir)
  assert (jax.tree.structure(student["params"])
          == jax.tree.structure(jax.device_get(result.state["params"])))
  teacher_only = set(on_disk["params"]) - set(student["params"])
  assert teacher_only, "the MVR should have modules the SVR lacks (fusion)"
  # Two Adam steps move a weight by at most a few learning rates: the initialised modules sit
  # that close to the teacher's; the orientation encoder, both nets have, started elsewhere.
  bound = 5 * 2 * config.optim.base_lr
  for name in ("backbone", "decoder3d"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=bound),
                 student["params"][name], on_disk["params"][name])
  gaps = jax.tree.map(lambda a, b: np.abs(a - b).max(), student["params"]["dense_stack3"],
                      on_disk["params"]["dense_stack3"])
  assert max(jax.tree.leaves(gaps)) > 10 * bound


def test_merge_modules_takes_the_named_modules_and_checks_shapes():
  fresh = {"backbone": {"w": np.zeros(3)}, "rot_reg": {"w": np.zeros(2)}}
  loaded = {"backbone": {"w": np.ones(3)}, "fusion": {"w": np.ones(4)}}
  merged = run_dir.merge_modules(fresh, loaded, ["backbone"], "run")
  np.testing.assert_array_equal(merged["backbone"]["w"], 1.0)
  np.testing.assert_array_equal(merged["rot_reg"]["w"], 0.0)
  assert "fusion" not in merged
  with pytest.raises(ValueError, match="'rot_reg' is not in the checkpoint"):
    run_dir.merge_modules(fresh, loaded, ["rot_reg"], "run")
  with pytest.raises(ValueError, match="other parameter names or shapes"):
    run_dir.merge_modules(fresh, {"backbone": {"w": np.ones(4)}}, ["backbone"], "run")


def test_sharded_step_equals_single_device_step(data_dir):
  """One train step over 8 fake devices (batch split 2 per device) equals the 1-device step.

  Compared in float64: the SE blocks' train-mode BatchNorm over a batch of 16 amplifies float32
  reduction-order rounding (a different summation order per device count) past any useful
  float32 tolerance, while a real sharding error (statistics of one shard instead of the whole
  batch, a missing gradient all-reduce) changes results at the percent level.
  """
  from simajax import input_pipeline, model_setup
  from simajax.training import sharding, steps
  import jax.numpy as jnp
  import optax
  config = load("svr", svr_overrides(data_dir))
  topology = model_setup.load_topology(config)
  model = model_setup.build_model(config, topology)
  # Plain SGD: Adam's first update is ~lr * sign(grad), which turns rounding of near-zero
  # gradients into lr-sized differences; SGD keeps differences proportional to the gradients'.
  tx = optax.sgd(0.1)
  batch = next(input_pipeline.train_iterator(config_lib.input_config(
      config, "train", "single_view", True, config.batch_size)))
  to64 = lambda tree: jax.tree.map(  # noqa: E731
      lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
  results = []
  with jax.enable_x64(True):
    step_fn = steps.make_train_step(
        stage="svr", model=model, tx=tx, faces=jnp.asarray(topology.faces[0]),
        loss_weights=train.loss_weights(config, distill=False), multi_view=False)
    shape = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float64)
    init = lambda: to64(steps.init_state(model, tx, 0, shape))  # noqa: E731
    batch = to64({k: np.asarray(v) for k, v in batch.items()})
    for devices in (jax.devices()[:1], jax.devices()[:8]):
      mesh = sharding.make_mesh(1, devices)
      shardings = sharding.state_shardings(mesh, jax.eval_shape(init))
      state = jax.jit(init, out_shardings=shardings)()
      new_state, metrics = jax.jit(step_fn, in_shardings=(shardings,
                                                          sharding.batch_sharding(mesh)))(
          state, sharding.global_batch(batch, mesh))
      results.append(jax.device_get((new_state["params"], new_state["batch_stats"], metrics)))
  assert len(jax.devices()) == 8
  leaves = jax.tree.leaves(results[0])
  assert all(x.dtype == np.float64 for x in leaves if np.issubdtype(x.dtype, np.floating))
  # float64 reduction-order differences reach ~2e-8 relative on the smallest gradients (4.6e-12
  # absolute, measured); a sharding error is ~1e-2.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10), *results)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SIMAJAX_MULTIPROCESS_TESTS"),
                    reason="two processes compiling on 2 cores take ~5-9 min, beyond the CI "
                    "budget; set SIMAJAX_MULTIPROCESS_TESTS=1 to run it")
def test_two_processes_train_in_lockstep_with_the_single_process_run(svr_run, data_dir, tmp_path):
  reference, _ = svr_run
  workdir = tmp_path / "multihost"
  port = _free_port()
  env = dict(os.environ)
  # One CPU device per process: CPU collectives across processes hang otherwise.
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "--xla_force_host_platform_device_count=1")
  overrides = dict(svr_overrides(data_dir), **{"mesh.num_devices": None})
  del overrides["mesh.num_devices"]
  processes = []
  for index in range(2):
    command = train_command("svr", overrides, workdir) + [
        "--config.distributed.initialize=True",
        f"--config.distributed.coordinator_address=localhost:{port}",
        "--config.distributed.num_processes=2", f"--config.distributed.process_id={index}"]
    processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
  for process in processes:
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
  # Each process read its half of the global batch: the first step's losses (before any update)
  # and the size of its update equal the single-process run's, which read the whole batch.
  first, reference_first = read_metrics(workdir)[0], read_metrics(reference)[0]
  assert first["step"] == reference_first["step"] == 1
  for key in [k for k in reference_first if k.startswith("train/loss")] + ["train/l2_params"]:
    np.testing.assert_allclose(first[key], reference_first[key], rtol=1e-5, err_msg=key)
  # Both processes ran every step together and wrote one run: a checkpoint of the last step.
  # (Later steps are not compared: in float32 this BatchNorm-heavy network's trajectories part
  # after a few steps under any change of reduction order; the float64 sharded-step test above
  # shows the sharded maths is the same.)
  params = final_params(workdir, SVR_STEPS)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
  assert jax.tree.structure(params) == jax.tree.structure(final_params(reference, SVR_STEPS))


def test_damaged_latest_checkpoint_resumes_from_the_one_before(svr_run, data_dir, tmp_path,
                                                               caplog):
  """Issue 15: step 18's array files truncated to 100 bytes (a torn write, a bad disk); the same
  command again resumes from step 12, moves step 18 aside with one warning, and ends with the
  parameters of the uninterrupted run."""
  reference, _ = svr_run
  workdir = tmp_path / "damaged"
  shutil.copytree(reference, workdir)
  damage.truncate_array_files(workdir / "checkpoints" / str(SVR_STEPS))
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(load("svr", svr_overrides(data_dir)), str(workdir))
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
              and r.name.startswith("simajax")]
  assert len(warnings) == 1 and warnings[0].startswith(
      f"checkpoint step {SVR_STEPS} in {workdir / 'checkpoints'} is damaged and was skipped"), warnings
  assert any(r.getMessage().endswith(f"at step {SVR_STEPS - 6}") for r in caplog.records
             if r.name == "simajax.train" and "resumed" in r.getMessage())
  assert (workdir / "checkpoints" / f"{SVR_STEPS}.damaged").is_dir()  # renamed, not deleted
  steps_on_disk = [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert sorted(int(p.name) for p in steps_on_disk) == [6, 12, 18]
  assert all((p / "commit_success.txt").is_file() for p in steps_on_disk)  # none half-written
  # Steps 13..18 ran again: their logged losses equal the uninterrupted run's.
  redone = [m for m in read_metrics(workdir) if "train/loss" in m][-6:]
  assert [m["step"] for m in redone] == list(range(SVR_STEPS - 5, SVR_STEPS + 1))
  resumed, uninterrupted = final_params(workdir, SVR_STEPS), final_params(reference, SVR_STEPS)
  jax.tree.map(np.testing.assert_array_equal, resumed, uninterrupted)


def _train_cli(args, timeout=300):
  completed = subprocess.run([sys.executable, "-m", "simajax.train", *args], capture_output=True,
                             text=True, timeout=timeout, check=False)
  return completed.returncode, completed.stderr.splitlines()


@pytest.mark.parametrize("args, message", [
    ([f"--config={REPO / 'configs' / 'nosuch.py'}"],
     f"--config {REPO / 'configs' / 'nosuch.py'}: cannot load the config file ([Errno 2] No such"),
    ([f"--config={REPO / 'configs' / 'svr_synthetic.py'}:runlocal", "--config.total_steps=six"],
     "flag --config.total_steps=six: invalid literal for int()"),
    ([f"--config={REPO / 'configs' / 'svr_synthetic.py'}:runlocal", "--config.data.nmae=x"],
     "flag --config.data.nmae: the config has no field 'nmae' (did you mean 'name'?)"),
], ids=["missing_config", "bad_value", "unknown_field"])
def test_train_cli_bad_flags_print_one_line(tmp_path, args, message):
  """Through the real entry point (more flag mistakes, in-process: tests/test_cli_errors.py)."""
  workdir = tmp_path / "run"
  status, err = _train_cli(args + [f"--workdir={workdir}"])
  assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
  assert message in err[0], err
  assert not workdir.exists()  # refused before anything is written


def test_train_cli_missing_teacher_prints_one_line(data_dir, tmp_path):
  workdir = tmp_path / "sima"
  status, err = _train_cli(train_command("svr", {"data.data_dir": data_dir,
                                                  "mesh.num_devices": 1,
                                                  "distill.teacher_checkpoint": tmp_path / "nope"},
                                         workdir)[3:])
  assert status == 2 and err == [
      f"error: teacher config {tmp_path / 'nope' / 'config.json'} not found (an MVR workdir has "
      "a config.json; or set distill.teacher_config)"], err
  assert not (workdir / "checkpoints").exists()
