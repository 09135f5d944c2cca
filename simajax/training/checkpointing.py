"""Orbax checkpoints of the training state plus the input pipeline's position.

A checkpoint step directory holds two items: ``state`` (params, batch_stats, optimizer state,
step, rng — never the frozen teacher, which is re-loaded from its own checkpoint on every start)
and ``data`` (a small JSON with the data iterator position, so a resumed run continues where the
killed one stopped instead of replaying examples).

Orbax writes each step into a temporary directory and renames it when complete, so a crash or
``kill -9`` during a save leaves the previous checkpoint intact; unfinished temporaries are ignored
on restore. Retention: the last ``max_to_keep`` steps plus the ``keep_best`` best by a validation
metric.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

STATE_ITEM = "state"
DATA_ITEM = "data"


class Checkpointer:
  """A thin wrapper over ``ocp.CheckpointManager`` for (state, data position) pairs.

  Args:
    directory: where step directories live (created if missing).
    max_to_keep: the most recent checkpoints to keep.
    best_metric: name of the validation metric that ranks checkpoints (None: no best-keeping).
    best_mode: 'min' (errors) or 'max' (AUC, F-score).
    keep_best: how many best checkpoints to keep in addition to the latest ones.
    async_save: write checkpoints in a background thread (the step loop does not wait).
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               best_metric: Optional[str] = None, best_mode: str = "min", keep_best: int = 1,
               async_save: bool = True):
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    policies = [checkpoint_managers.LatestN(n=max_to_keep)]
    best_options = {}
    if best_metric:
      # best_fn makes the manager persist each step's metrics and answer best_step().
      best_options = dict(best_fn=lambda metrics: metrics[best_metric], best_mode=best_mode)
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric],
          reverse=best_mode == "min",  # sorted descending, so the last n are the lowest
          n=keep_best, keep_checkpoints_without_metrics=False))
    self.best_metric = best_metric
    self.best_mode = best_mode
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.fspath(directory)),
        item_names=(STATE_ITEM, DATA_ITEM),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
            **best_options))

  @property
  def directory(self) -> str:
    return os.fspath(self._manager.directory)

  def latest_step(self) -> Optional[int]:
    """The newest complete checkpoint step, or None."""
    return self._manager.latest_step()

  def best_step(self) -> Optional[int]:
    """The best checkpoint by ``best_metric`` (the latest one when no metric was recorded)."""
    if self.best_metric is None:
      return self.latest_step()
    return self._manager.best_step() or self.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_position: dict, *,
           metrics: Optional[dict[str, float]] = None, force: bool = True) -> bool:
    """Saves ``state`` and the data position at ``step``.

    Args:
      step: the training step the state has completed.
      state: a pytree of (possibly sharded) arrays.
      data_position: JSON-serialisable iterator state.
      metrics: validation metrics recorded with this step (for best-keeping).
      force: save even if the step is not on a save interval (the trainer decides when to save).
    """
    if metrics is not None and self.best_metric is not None and self.best_metric not in metrics:
      raise KeyError(f"best_metric {self.best_metric!r} not in the metrics {sorted(metrics)}")
    return self._manager.save(
        step,
        args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                   DATA_ITEM: ocp.args.JsonSave(data_position)}),
        metrics=metrics, force=force)

  def restore(self, step: Optional[int], abstract_state: Any) -> tuple[Any, dict]:
    """Restores (state, data position) at ``step`` (default: latest) into ``abstract_state``'s
    shapes, dtypes and shardings (e.g. from ``jax.eval_shape`` with shardings attached)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract_state),
                                         DATA_ITEM: ocp.args.JsonRestore()}))
    return restored[STATE_ITEM], restored[DATA_ITEM]

  def wait(self) -> None:
    """Blocks until a pending asynchronous save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
  """``jax.ShapeDtypeStruct`` leaves carrying the target shardings, for ``restore``."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def _read_only_manager(directory, best_metric: Optional[str], best_mode: str):
  best_options = {}
  if best_metric:
    best_options = dict(best_fn=lambda metrics: metrics[best_metric], best_mode=best_mode)
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)),
                               item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                                              DATA_ITEM: ocp.JsonCheckpointHandler()},
                               options=ocp.CheckpointManagerOptions(read_only=True,
                                                                    **best_options))


def _pick_step(manager, step: Optional[int], best_metric: Optional[str], directory) -> int:
  if step is None:
    step = (manager.best_step() if best_metric else None) or manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint found in {directory}")
  return step


def resolve_step(directory: str | os.PathLike, step: Optional[int] = None, *,
                 best_metric: Optional[str] = None, best_mode: str = "min") -> int:
  """The step ``restore_params_only`` reads for these arguments."""
  manager = _read_only_manager(directory, best_metric, best_mode)
  try:
    return _pick_step(manager, step, best_metric, directory)
  finally:
    manager.close()


def restore_params_only(directory: str | os.PathLike, step: Optional[int] = None, *,
                        best_metric: Optional[str] = None, best_mode: str = "min") -> dict:
  """Reads the ``params`` and ``batch_stats`` of a training checkpoint as host arrays.

  Used to load the frozen MVR teacher (and ``init_from`` weights) without its optimizer state.
  ``step`` defaults to the best checkpoint by ``best_metric`` when given and recorded, else the
  latest.
  """
  manager = _read_only_manager(directory, best_metric, best_mode)
  try:
    step = _pick_step(manager, step, best_metric, directory)
    # Onto this process's first device, whatever devices wrote it: without a target, orbax
    # rebuilds the saved shardings, which fails for a checkpoint of another device set (e.g. a
    # multi-host run read back by a single evaluation process).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          dict(manager.item_metadata(step)[STATE_ITEM]))
    restored = manager.restore(step, args=ocp.args.Composite(
        **{STATE_ITEM: ocp.args.StandardRestore(target)}))[STATE_ITEM]
  finally:
    manager.close()
  return {"params": restored["params"], "batch_stats": restored.get("batch_stats", {})}
