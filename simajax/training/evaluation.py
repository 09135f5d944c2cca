"""Scoring a network on a whole split, during training and from saved runs (``run_dir``)."""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np

from simajax import config_lib, input_pipeline, metrics
from simajax.training import run_dir as run_dir_lib
from simajax.training import sharding, steps


def to_host(x: jax.Array) -> np.ndarray:
  """A global array gathered to every process as numpy."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def evaluate_split(eval_step, variables: Any, iterable, mesh,
                   occlusion_threshold: float = metrics.OCCLUSION_THRESHOLD) -> dict:
  """Scores every example of a split (padded batches, masked) with the metrics protocol.

  Returns:
    ``simajax.metrics.MetricAccumulator.result()``: overall / occluded / non-occluded metrics
    and PCK curves.
  """
  accumulator = metrics.MetricAccumulator(occlusion_threshold)
  for batch in iterable:
    per_example = eval_step(variables, sharding.global_batch(batch, mesh))
    per_example = jax.tree.map(to_host, per_example)
    accumulator.update(per_example, mask=per_example.pop("mask") > 0,
                       visibility=per_example.pop("vis_ratio"))
  return accumulator.result()


def evaluate_run(run_dir: str, *, config_spec: Optional[str] = None, step: Optional[int] = None,
                 split: Optional[str] = None, batch_size: Optional[int] = None,
                 data_dir: Optional[str] = None, mesh=None) -> dict:
  """Scores a saved run's checkpoint on a whole split.

  Args:
    run_dir: the training workdir (or its checkpoints directory next to config.json).
    config_spec: optional config file overriding the run's ``config.json``.
    step: checkpoint step; default the best by the run's ``checkpoint.best_metric``, else latest
      (a damaged one is skipped with a warning; see ``checkpointing.restore_params``).
    split: default ``config.data.test_split``.
    batch_size: images per batch (default ``config.eval_batch_size``, else ``batch_size``).
    data_dir: overrides ``config.data.data_dir``.
    mesh: device mesh (default: all devices on the data axis).

  Returns:
    The results dict, plus 'run' {dir, step, split, stage}.
  """
  run_dir = os.path.abspath(run_dir)
  # The named step, or the best (else latest) one that restores; a damaged one is skipped with
  # a warning, a named damaged one or a checkpoint of another model is a one-line error.
  run = run_dir_lib.load_run(
      run_dir, step=step, config=config_lib.load_config(config_spec) if config_spec else None)
  config, model, step = run.config, run.model, run.step
  if data_dir:
    config.data.data_dir = data_dir
  split = split or config.data.test_split
  mesh = mesh or sharding.make_mesh()
  variables = jax.device_put(run.variables, sharding.replicated(mesh))
  mode = "multi_view" if config.stage == "mvr" else "single_view"
  data_size = mesh.shape[sharding.DATA_AXIS]
  batch = batch_size or config_lib.eval_batch_size(config)
  eval_step = jax.jit(steps.make_eval_step(stage=config.stage, model=model,
                                           multi_view=mode == "multi_view",
                                           fscore_chunk_size=data_size),
                      out_shardings=sharding.replicated(mesh))
  iterable = input_pipeline.eval_iterable(
      config_lib.input_config(config, split, mode, False, batch))
  result = evaluate_split(eval_step, variables, iterable, mesh)
  result["run"] = {"dir": run_dir, "step": step, "split": split, "stage": config.stage}
  return result
