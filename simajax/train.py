r"""Trains either stage of SiMA-Hand.

  python -m simajax.train --config=configs/mvr_synthetic.py --workdir=runs/mvr
  python -m simajax.train --config=configs/svr_synthetic.py --workdir=runs/svr \
      --config.distill.teacher_checkpoint=runs/mvr

Stage 1 (``stage='mvr'``) trains the multi-view teacher; stage 2 (``stage='svr'``) trains the
single-view model, with SiMA distillation from the frozen teacher unless ``distill.enabled`` is
False (the plain SVR baseline). Append ``:runlocal`` to the config path for a smoke run (the
arguments of a config file: its docstring and ``config_lib.parse_arg``).

The trainer reads top to bottom: distributed setup and logging -> data -> model and topology ->
optimizer and sharded state -> teacher -> restore (resume > init_from > scratch) -> steps -> loop.
Everything a run writes lives in ``--workdir`` (``simajax.training.run_dir``): ``config.json``
(the resolved config), ``topology.npz``, ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/`` and
``eval_*.json``. SiMA's parts (the frozen teacher, the distillation loss) are in
``simajax.training.distill``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any, NamedTuple, Optional

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from simajax import cli, config_lib, input_pipeline, losses, model_setup, runtime
from simajax.training import (checkpointing, distill, evaluation, logs, optim, run_dir, sharding,
                              steps)

FLAGS = flags.FLAGS

log = logging.getLogger("simajax.train")


def loss_weights(config: ml_collections.ConfigDict, distill: bool) -> losses.LossWeights:
  """Loss weights from ``config.loss`` plus SiMA's beta/gamma when distilling."""
  weights = config.loss.to_dict()
  weights["se"] = config.distill.se_weight if distill else 0.0
  weights["oe"] = config.distill.oe_weight if distill else 0.0
  return losses.LossWeights.from_config(weights)


def check_finite(window: list[tuple[int, tuple[Any, Any]]]) -> None:
  """Raises at the first step of ``window`` [(step, (loss, gradient norm))] with a non-finite value.

  Raises:
    FloatingPointError: naming that step and the window of steps checked together.
  """
  for step, (loss, grad_norm) in window:
    if not (np.isfinite(loss) and np.isfinite(grad_norm)):
      raise FloatingPointError(
          f"non-finite training loss ({float(loss)}) or gradient norm ({float(grad_norm)}) at "
          f"step {step} (steps {window[0][0]}-{window[-1][0]} were checked together)")


class _Preemption:
  """Turns SIGTERM into a flag the loop checks, so the current step finishes and is saved."""

  def __init__(self):
    self.requested = False
    if hasattr(signal, "SIGTERM"):
      try:
        signal.signal(signal.SIGTERM, self._handle)
      except ValueError:  # not the main thread (e.g. some test runners): no handler
        pass

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested = True


class TrainResult(NamedTuple):
  """What a finished (or preempted) run leaves in memory, besides its workdir."""
  metrics: dict  # the last validation result (MetricAccumulator.result()), {} if none ran
  state: dict  # the final training state
  teacher_variables: Optional[dict]  # the frozen MVR teacher's variables (SVR with SiMA)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
  """Runs (or resumes) a training run in ``workdir``."""
  # ---------------------------------------------------------------- distributed setup, logging
  if config.distributed.initialize:
    kwargs = {k: v for k, v in config.distributed.items() if k != "initialize" and v is not None}
    if "local_device_ids" in kwargs:
      kwargs["local_device_ids"] = [int(i) for i in str(kwargs["local_device_ids"]).split(",")]
    jax.distributed.initialize(**kwargs)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  stage = config.stage
  distilling = stage == "svr" and config.distill.enabled
  multi_view = config.data.mode == "multi_view"
  writer = logs.MetricWriter(workdir)

  # ---------------------------------------------------------------- data
  if config.data.build_if_missing and jax.process_index() == 0:
    from data_pipelines import build  # pylint: disable=import-outside-toplevel
    build.ensure_built(config.data.name, os.path.expanduser(config.data.data_dir),
                       mano_path=config.get("hand_model"))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices("data ready")
  train_iter = input_pipeline.train_iterator(
      config_lib.input_config(config, config.data.train_split, config.data.mode, True,
                              config.batch_size))
  eval_mode = "multi_view" if stage == "mvr" else "single_view"
  eval_data = input_pipeline.eval_iterable(config_lib.input_config(
      config, config.data.eval_split, eval_mode, False, config_lib.eval_batch_size(config)))
  views_per_example = 8 if multi_view else 1
  steps_per_epoch = max(1, train_iter.num_examples * views_per_example // config.batch_size)
  total_steps = optim.steps_from_config(config, "total", steps_per_epoch)

  # ---------------------------------------------------------------- model and topology
  topology = model_setup.load_topology(config)
  model = model_setup.build_model(config, topology)
  faces = jnp.asarray(topology.faces[0], jnp.int32)
  run_dir.write_run_files(workdir, config, topology)

  # ---------------------------------------------------------------- optimizer, sharded state
  tx, schedule = optim.make_optimizer(config, config.batch_size, steps_per_epoch)
  devices = jax.devices()[:config.mesh.get("num_devices") or None]
  mesh = sharding.make_mesh(config.mesh.model, devices)
  input_shapes = model_setup.input_shapes(stage, config.data.image_size)

  def init_fn():
    return steps.init_state(model, tx, config.seed, *input_shapes)

  abstract_state = jax.eval_shape(init_fn)
  state_shardings = sharding.state_shardings(mesh, abstract_state)

  # ---------------------------------------------------------------- teacher (SVR with SiMA)
  teacher, teacher_variables = (distill.load_teacher(config, topology, mesh) if distilling
                                else (None, None))

  # ---------------------------------------------------------------- restore: resume > init_from > scratch
  ckpt = checkpointing.Checkpointer(
      os.path.join(workdir, run_dir.CHECKPOINT_DIR), max_to_keep=config.checkpoint.max_to_keep,
      best_metric=config.checkpoint.best_metric, best_mode=config.checkpoint.best_mode,
      keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save)
  # The newest checkpoint that restores completely: damaged newer ones are moved aside, with a
  # warning each (checkpointing.Checkpointer.restore_newest_intact).
  resumed = ckpt.restore_newest_intact(
      checkpointing.abstract_with_shardings(abstract_state, state_shardings))
  if resumed is not None:
    state, data_position, _ = resumed
    train_iter.set_state(data_position)
    log.info("resumed from %s at step %d", ckpt.directory, int(state["step"]))
  else:
    state = jax.jit(init_fn, out_shardings=state_shardings)()
    if config.init_from:
      modules = list(config.get("init_from_modules") or [])
      merged = run_dir.init_from_run(config.init_from, state, modules)
      for collection, tree in merged.items():
        state[collection] = jax.device_put(tree, state_shardings[collection])
      log.info("initialised %s from %s", ", ".join(modules) or "all weights", config.init_from)

  # ---------------------------------------------------------------- steps
  batch_sharding = sharding.batch_sharding(mesh)
  replicated = sharding.replicated(mesh)
  train_step = jax.jit(
      steps.make_train_step(stage=stage, model=model, tx=tx, faces=faces,
                            loss_weights=loss_weights(config, distilling), multi_view=multi_view,
                            schedule=schedule, teacher=teacher),
      in_shardings=(state_shardings, batch_sharding,
                    None if teacher_variables is None
                    else sharding.state_shardings(mesh, teacher_variables)),
      out_shardings=(state_shardings, replicated), donate_argnums=(0,))
  eval_step = jax.jit(steps.make_eval_step(stage=stage, model=model,
                                           multi_view=eval_mode == "multi_view",
                                           fscore_chunk_size=mesh.shape[sharding.DATA_AXIS]),
                      out_shardings=replicated)

  def run_eval(step: int) -> dict:
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    result = evaluation.evaluate_split(eval_step, variables, eval_data, mesh)
    scalars = {f"val/{k}": v for k, v in result["metrics"]["overall"].items()
               if v is not None and k != "count"}
    writer.write(step, scalars)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, f"eval_step{step}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return result

  # ---------------------------------------------------------------- loop
  # Steps are dispatched asynchronously and the host never waits for one, except on the steps
  # that log, evaluate or checkpoint: there the losses of the steps since the last such step are
  # fetched together and checked (big_vision's train.py does the same), so a non-finite value
  # is reported with its step and never checkpointed. Batches are transferred two steps ahead.
  preemption = _Preemption()
  first_step = int(state["step"])
  data_start = train_iter.get_state()  # the position of batch first_step + 1
  batches = sharding.prefetch_to_mesh(train_iter, mesh)
  progress = logs.Progress(first_step, total_steps)
  result: dict[str, Any] = {}
  unchecked: list[tuple[int, Any]] = []  # (step, device scalars) since the last sync
  log.info("training %s for %d steps (%d per epoch), global batch %d images on %d devices",
           stage, total_steps, steps_per_epoch, config.batch_size, mesh.size)
  for step in range(first_step + 1, total_steps + 1):
    state, step_metrics = train_step(state, next(batches), teacher_variables)
    unchecked.append((step, (step_metrics["loss"], step_metrics["l2_grads"])))
    if step == first_step + 1:
      progress.start(step)
    log_now = step % config.log_every_steps == 0 or step == total_steps
    eval_now = step % config.eval_every_steps == 0 or step == total_steps
    save_now = eval_now or step % config.checkpoint.every_steps == 0 or preemption.requested
    if not (log_now or save_now):
      continue
    check_finite(jax.device_get(unchecked))
    unchecked = []
    if log_now:
      host_metrics = jax.tree.map(float, step_metrics)
      writer.write(step, {f"train/{k}": v for k, v in host_metrics.items()})
      if jax.process_index() == 0:
        print(progress.line(step, {"loss": host_metrics["loss"]}), flush=True)
    metrics_for_ckpt = None
    if eval_now:
      result = run_eval(step)
      overall = result["metrics"]["overall"]
      metrics_for_ckpt = {k: v for k, v in overall.items() if v is not None and k != "count"}
      if jax.process_index() == 0:
        print(f"eval step {step}: " + ", ".join(
            f"{k} {overall[k]:.4g}" for k in ("jpe", "vpe", "pa_jpe", "pa_vpe")
            if overall.get(k) is not None), flush=True)
    if save_now:
      data_position = dict(data_start, step=data_start["step"] + step - first_step)
      ckpt.save(step, state, data_position, metrics=metrics_for_ckpt)
    if preemption.requested:
      log.warning("SIGTERM received: saved step %d, exiting", step)
      break
  ckpt.close()
  writer.close()
  return TrainResult(result, state, teacher_variables)


def main(argv):
  """absl entry point: trains ``--config`` in ``--workdir``. A user error (a bad config value, a
  missing file or teacher, no intact checkpoint) prints one line and exits with status 2."""
  del argv
  runtime.configure_process()
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
  if not FLAGS["verbosity"].present:
    # The libraries' INFO chatter (TFDS, orbax, JAX) off by default; the trainer's own kept.
    for name in ("", "absl"):
      logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("simajax").setLevel(logging.INFO)

  def train(_):
    train_and_evaluate(cli.config_flag_value(FLAGS, "config"), FLAGS.workdir)

  cli.run(train, sys.argv[1:])


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
  flags.DEFINE_bool("verbose", False, f"Show tracebacks of errors (also: {cli.DEBUG_ENV}=1).")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=lambda argv: cli.parse_absl_flags(FLAGS, argv))
