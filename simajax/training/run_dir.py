"""A training run directory (a trainer ``--workdir``): its files, and loading its network.

  RUN/config.json       the resolved training config (``write_run_files``)
  RUN/topology.npz      the mesh topology the network was built on
  RUN/checkpoints/      orbax checkpoints of the training state (``checkpointing.Checkpointer``)
  RUN/metrics.jsonl     the logged scalars (``logs.MetricWriter``)

``load_run`` is the one loader of a run's network and weights: the frozen teacher
(``distill.load_teacher``), ``evaluate --checkpoint``, ``predict`` and the quickstart use it.
``init_from_run`` takes some of a run's modules into a fresh model (``config.init_from``).

This module stays free of the input pipeline and its dataset readers, so prediction can read a
run without them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from simajax import cli, config_lib, model_setup
from simajax.mesh import MeshTopology
from simajax.training import checkpointing

CONFIG_FILE = "config.json"
TOPOLOGY_FILE = "topology.npz"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"


def checkpoint_dir_of(path: str | os.PathLike) -> str:
  """``path/checkpoints`` for a run directory, ``path`` itself for a checkpoints directory."""
  nested = os.path.join(path, CHECKPOINT_DIR)
  return nested if os.path.isdir(nested) else str(path)


def run_dir_of(path: str | os.PathLike) -> str:
  """The run directory of ``path``: its parent for a run's ``checkpoints/``, else ``path``."""
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  if (os.path.basename(path) == CHECKPOINT_DIR
      and os.path.exists(os.path.join(parent, CONFIG_FILE))):
    return parent
  return path


def is_run_dir(path: str | os.PathLike) -> bool:
  """Whether ``path`` (or the run it is the ``checkpoints/`` of) has a run's ``config.json``."""
  return os.path.exists(os.path.join(run_dir_of(path), CONFIG_FILE))


def write_run_files(workdir: str, config: ml_collections.ConfigDict,
                    topology: MeshTopology) -> None:
  """The resolved config and the topology, so evaluation and prediction rebuild the network."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w", encoding="utf-8") as f:
    f.write(config.to_json(indent=2) + "\n")
  topology.save(os.path.join(workdir, TOPOLOGY_FILE))


def read_config(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """A run's ``config.json`` (``path`` is the run or its ``checkpoints/``).

  Raises:
    FileNotFoundError: naming the missing file.
  """
  return config_lib.load_config(os.path.join(run_dir_of(path), CONFIG_FILE))


@dataclasses.dataclass(frozen=True)
class LoadedRun:
  """A run's network with the params-only variables of one of its checkpoints.

  Attributes:
    directory: the run directory.
    config: its config (or the one the caller gave ``load_run``).
    topology: the mesh topology the network is built on.
    model: the network (``model_setup.build_model`` of ``config``).
    variables: ``{'params', 'batch_stats'}`` as host numpy arrays in the model's dtypes.
    step: the checkpoint step they come from.
  """
  directory: str
  config: ml_collections.ConfigDict
  topology: MeshTopology
  model: Any
  variables: dict
  step: int


def load_run(path: str | os.PathLike, *, step: Optional[int] = None,
             config: Optional[ml_collections.ConfigDict] = None,
             model_config: Optional[ml_collections.ConfigDict] = None,
             topology: Optional[MeshTopology] = None) -> LoadedRun:
  """Rebuilds a run's network and restores its params and batch_stats (no optimizer state).

  Args:
    path: the run directory, or its ``checkpoints/``.
    step: a checkpoint step to read exactly; default the best by the run's
      ``checkpoint.best_metric``, else the latest (a damaged one is skipped with a warning; see
      ``checkpointing.restore_params``).
    config: replaces the run's ``config.json`` (e.g. ``evaluate --config``).
    model_config: replaces ``config.model`` (e.g. ``predict --config``); the weights must still
      fit it.
    topology: the mesh topology to build on; default the run's ``topology.npz``, else the one
      its config describes (``model_setup.load_topology``).

  Returns:
    The ``LoadedRun``.

  Raises:
    FileNotFoundError: naming the missing config, or a run without a checkpoint.
    UserError: for an unknown or damaged ``step``, when no checkpoint restores, or when the
      checkpoint does not fit the network (another variant), in one line.
  """
  directory = run_dir_of(path)
  if config is None:
    config = read_config(directory)
  if model_config is not None:
    config = copy.deepcopy(config)
    config.model = model_config
  if topology is None:
    topology_path = os.path.join(directory, TOPOLOGY_FILE)
    topology = (MeshTopology.load(topology_path) if os.path.exists(topology_path)
                else model_setup.load_topology(config))
  model = model_setup.build_model(config, topology)
  ckpt_dir = checkpoint_dir_of(directory)
  if not (os.path.isdir(ckpt_dir) and ocp.utils.checkpoint_steps(ckpt_dir)):
    raise FileNotFoundError(f"training run {directory}: no checkpoint in {ckpt_dir}")
  expected = model_setup.abstract_variables(model, config.stage, model.input_size)
  # A checkpoint of another variant is refused before it is read.
  restored, chosen = checkpointing.restore_params(
      ckpt_dir, step, best_metric=config.checkpoint.get("best_metric"),
      best_mode=config.checkpoint.get("best_mode", "min"), expected=expected)
  # Fit to this model: its dtypes (the checkpoint's names and shapes were checked above).
  variables = jax.tree.map(lambda a, t: np.asarray(a, t.dtype), restored, expected)
  return LoadedRun(directory, config, topology, model, variables, chosen)


def merge_modules(fresh: dict, loaded: dict, modules: Sequence[str], source: str) -> dict:
  """``fresh`` with the top-level ``modules`` taken from ``loaded`` (all of it when empty).

  A module in neither tree is skipped (e.g. one without BatchNorm, in ``batch_stats``).

  Raises:
    UserError: naming ``source`` when a module is missing from either tree or its parameter
      names or shapes differ.
  """
  if not modules:
    modules = sorted(set(fresh) | set(loaded))
  shapes = lambda tree: jax.tree.map(np.shape, tree)  # noqa: E731
  merged = dict(fresh)
  for name in modules:
    if name not in loaded and name not in fresh:
      continue
    if name not in loaded or name not in fresh:
      where = "the checkpoint" if name not in loaded else "this model"
      raise cli.UserError(f"init_from: module {name!r} is not in {where} ({source}; checkpoint "
                          f"modules: {sorted(loaded)}, model modules: {sorted(fresh)})")
    if shapes(loaded[name]) != shapes(fresh[name]):
      raise cli.UserError(f"init_from: module {name!r} of {source} has other parameter names "
                          f"or shapes than this model's (a different model variant?)")
    merged[name] = loaded[name]
  return merged


def init_from_run(path: str, fresh: dict, modules: Sequence[str]) -> dict:
  """``fresh`` {'params', 'batch_stats'} with ``modules`` (all when empty) from the run at ``path``.

  The run's latest checkpoint is read; its weights only, the optimizer state stays ``fresh``'s.

  Raises:
    UserError: see ``merge_modules``.
  """
  weights = checkpointing.restore_params_only(checkpoint_dir_of(path))
  return {collection: merge_modules(fresh[collection], weights[collection], modules,
                                    f"{path} {collection}")
          for collection in ("params", "batch_stats")}
