"""Scoring a network on a whole split, during training and from saved runs.

A run directory (a trainer ``--workdir``) holds ``config.json``, ``topology.npz`` and
``checkpoints/``; that is all evaluation and prediction need to rebuild the network.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from simajax import config_lib, input_pipeline, metrics, model_setup
from simajax.mesh import MeshTopology
from simajax.training import checkpointing, sharding, steps

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
TOPOLOGY_FILE = "topology.npz"


def checkpoint_dir_of(path: str) -> str:
  """``path/checkpoints`` for a run directory, ``path`` itself for a checkpoints directory."""
  nested = os.path.join(path, CHECKPOINT_DIR)
  return nested if os.path.isdir(nested) else path


def load_run(run_dir: str, config_spec: Optional[str] = None
             ) -> tuple[ml_collections.ConfigDict, MeshTopology]:
  """The config and mesh topology of a training run.

  Args:
    run_dir: the run's workdir.
    config_spec: a config file overriding ``run_dir/config.json`` (``.json`` or ``.py[:arg]``).

  Raises:
    FileNotFoundError: naming the missing file.
  """
  spec = config_spec or os.path.join(run_dir, CONFIG_FILE)
  config = config_lib.load_config(spec)
  topology_path = os.path.join(run_dir, TOPOLOGY_FILE)
  topology = (MeshTopology.load(topology_path) if os.path.exists(topology_path)
              else model_setup.load_topology(config))
  return config, topology


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
    batch_size: images per batch (default ``config.batch_size``).
    data_dir: overrides ``config.data.data_dir``.
    mesh: device mesh (default: all devices on the data axis).

  Returns:
    The results dict, plus 'run' {dir, step, split, stage}.
  """
  run_dir = os.path.abspath(run_dir)
  config, topology = load_run(run_dir, config_spec)
  if data_dir:
    config.data.data_dir = data_dir
  split = split or config.data.test_split
  model = model_setup.build_model(config, topology)
  ckpt = checkpoint_dir_of(run_dir)
  # The named step, or the best (else latest) one that restores; a damaged one is skipped with
  # a warning, a named damaged one or a checkpoint of another model is a one-line error.
  variables, step = checkpointing.restore_params(
      ckpt, step, best_metric=config.checkpoint.best_metric,
      best_mode=config.checkpoint.best_mode,
      expected=model_setup.abstract_variables(model, config.stage, config.data.image_size))
  mesh = mesh or sharding.make_mesh()
  variables = jax.device_put(variables, sharding.replicated(mesh))
  mode = "multi_view" if config.stage == "mvr" else "single_view"
  data_size = mesh.shape[sharding.DATA_AXIS]
  batch = batch_size or config.get("eval_batch_size") or config.batch_size
  eval_step = jax.jit(steps.make_eval_step(stage=config.stage, model=model,
                                           multi_view=mode == "multi_view",
                                           fscore_chunk_size=data_size),
                      out_shardings=sharding.replicated(mesh))
  iterable = input_pipeline.eval_iterable(
      config_lib.input_config(config, split, mode, False, batch))
  result = evaluate_split(eval_step, variables, iterable, mesh)
  result["run"] = {"dir": run_dir, "step": step, "split": split, "stage": config.stage}
  return result
