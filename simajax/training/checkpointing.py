"""Orbax checkpoints of the training state plus the input pipeline's position.

A checkpoint step directory holds two items: ``state`` (params, batch_stats, optimizer state,
step, rng — never the frozen teacher, which is re-loaded from its own checkpoint on every start)
and ``data`` (a small JSON with the data iterator position, so a resumed run continues where the
killed one stopped instead of replaying examples).

Orbax writes each step into a temporary directory and renames it when complete, so a crash or
``kill -9`` during a save leaves the previous checkpoint intact; unfinished temporaries are ignored
on restore. Retention: the last ``max_to_keep`` steps plus the ``keep_best`` best by a validation
metric.

A complete step can still be damaged later (a torn write, a bad disk, a truncated copy). This
module is the one place that deals with it, for every reader:
  * the trainer (``Checkpointer.restore_newest_intact``) resumes from the newest step that
    restores completely; each damaged step is named in one warning with the reason and moved
    aside (renamed ``<step>.damaged``, never deleted);
  * params-only readers (the teacher, ``evaluate --checkpoint``, ``predict``: ``restore_params``)
    fall back to the next step with one warning, or fail with one line when the caller named the
    damaged step;
  * a checkpoint of another model (other parameter names or shapes) is not damage: it is refused
    with a summary of the differences (``check_tree_fits``) and left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from simajax.cli import UserError, first_line, summarize_names

STATE_ITEM = "state"
DATA_ITEM = "data"
DAMAGED_SUFFIX = ".damaged"
# What orbax / tensorstore raise for unreadable or truncated files (tensorstore's OUT_OF_RANGE
# and DATA_LOSS errors are ValueErrors). UserErrors (ours) are never taken for damage.
_DAMAGE_ERRORS = (ValueError, OSError, EOFError)

log = logging.getLogger(__name__)


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

  def restore_newest_intact(self, abstract_state: Any) -> Optional[tuple[Any, dict, int]]:
    """Restores the newest checkpoint that restores completely (the trainer's resume).

    Each newer step that fails to restore (a damaged file) is named in one warning with the
    reason and moved aside as ``<step>.damaged`` (renamed, never deleted; on process 0 only),
    so that later saves and restarts do not trip over it again. When no step restores, nothing
    is moved: the run stays as it was, and the error says why each step failed.

    Args:
      abstract_state: the target tree, as for ``restore``.

    Returns:
      (state, data position, step), or None when the directory holds no checkpoint.

    Raises:
      UserError: when checkpoints exist but none restores (one line naming each step and why),
        or when they hold another model (``check_tree_fits``; nothing is moved then).
    """
    damaged = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        # Every file first (synchronously); orbax's metadata read already opens the arrays.
        read_all_values(pathlib.Path(self.directory) / str(step) / STATE_ITEM)
        found = _saved_state_tree(self.directory, step)
      except _DAMAGE_ERRORS as e:
        damaged.append((step, first_line(e)))
        continue
      # Parameter names and shapes tell another model apart (optimizer-state containers are
      # saved as orbax sees fit, so they are not compared).
      check_tree_fits(_model_part(found), _model_part(abstract_state), f"{self.directory}/{step}")
      try:
        state, data_position = self.restore(step, abstract_state)
      except _DAMAGE_ERRORS as e:
        if isinstance(e, UserError):
          raise
        damaged.append((step, first_line(e)))
        continue
      for bad, reason in damaged:
        moved = _move_aside(self.directory, bad) if jax.process_index() == 0 else None
        log.warning("checkpoint step %d in %s is damaged and was skipped (%s)%s", bad,
                    self.directory, reason, f"; moved it to {moved}" if moved else "")
      if damaged:
        self._manager.reload()
      return state, data_position, step
    if damaged:
      raise UserError(f"{self.directory}: no checkpoint restores: "
                      + "; ".join(f"step {step} ({reason})" for step, reason in damaged))
    return None

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


def check_tree_fits(found: Any, expected: Any, source: str) -> None:
  """Checks that a saved tree has ``expected``'s names and shapes.

  Args:
    found: the saved tree (arrays, ShapeDtypeStructs or orbax metadata: anything with .shape).
    expected: the tree the model needs.
    source: the checkpoint, for the message.

  Raises:
    UserError: in one line, with the number of missing, unexpected and mis-shaped entries and
      the first few of each (a checkpoint of another model variant, or another stage).
  """
  def shapes(tree):
    return {jax.tree_util.keystr(path, simple=True, separator="/"):
            tuple(leaf.shape if hasattr(leaf, "shape") else np.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

  got, want = shapes(found), shapes(expected)
  if got == want:
    return
  missing = sorted(set(want) - set(got))
  unknown = sorted(set(got) - set(want))
  misshaped = sorted(f"{k} {list(got[k])} (expected {list(want[k])})"
                     for k in set(want) & set(got) if want[k] != got[k])
  parts = [f"{title} {summarize_names(items)}" for title, items in
           (("missing", missing), ("unexpected", unknown), ("other shapes", misshaped)) if items]
  raise UserError(f"{source}: the checkpoint does not fit this model (another variant or "
                  f"stage? a wrong --config?): {'; '.join(parts)}")


class RestoredParams(NamedTuple):
  """What ``restore_params`` read: the variables and the step they come from."""
  variables: dict
  step: int


def restore_params(directory: str | os.PathLike, step: Optional[int] = None, *,
                   best_metric: Optional[str] = None, best_mode: str = "min",
                   expected: Any = None) -> RestoredParams:
  """Reads the ``params`` and ``batch_stats`` of a training checkpoint as host arrays.

  For the frozen MVR teacher, ``init_from`` weights, ``evaluate --checkpoint`` and ``predict``,
  which need no optimizer state. Never returns a damaged step silently: without ``step``, the
  best checkpoint by ``best_metric`` (when given and recorded), else the latest, is read; if it
  does not restore, the other steps are tried newest first, with one warning naming the damaged
  step(s) and the step read instead. Nothing is moved: these readers leave the run as it is.

  Args:
    directory: the checkpoints directory.
    step: a step to read exactly (no fallback).
    best_metric: the run's ``checkpoint.best_metric``.
    best_mode: the run's ``checkpoint.best_mode``.
    expected: optional ``{'params': ..., 'batch_stats': ...}`` tree of the model; a checkpoint
      with other names or shapes is refused (``check_tree_fits``) before anything is read.

  Returns:
    ``RestoredParams(variables={'params', 'batch_stats'}, step)``.

  Raises:
    FileNotFoundError: when ``directory`` holds no checkpoint.
    UserError: when ``step`` is not a checkpoint or is damaged, when no step restores, or when
      the checkpoint does not fit ``expected``.
  """
  manager = _read_only_manager(directory, best_metric, best_mode)
  try:
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint found in {directory}")
    if step is not None and step not in steps:
      raise UserError(f"step {step}: {directory} has checkpoints at steps {sorted(steps)}")
    if step is not None:
      candidates = [step]
    else:
      first = (manager.best_step() if best_metric else None) or steps[0]
      candidates = [first] + [s for s in steps if s != first]
    damaged = []
    for candidate in candidates:
      try:
        variables = _restore_params_at(manager, directory, candidate, expected)
      except _DAMAGE_ERRORS as e:
        if isinstance(e, UserError):
          raise
        damaged.append(f"step {candidate} ({first_line(e)})")
        continue
      if damaged:
        log.warning("checkpoints %s: %s damaged, skipped; read step %d instead", directory,
                    "; ".join(damaged), candidate)
      return RestoredParams(variables, candidate)
  finally:
    manager.close()
  if step is not None:
    others = [s for s in steps if s != step]
    raise UserError(f"{directory}: checkpoint {damaged[0]} is damaged; pass another --step "
                    f"(other steps: {sorted(others)}) or none for the newest intact one")
  raise UserError(f"{directory}: no checkpoint restores: {'; '.join(damaged)}")


def read_all_values(item_dir: str | os.PathLike, chunk: int = 256) -> None:
  """Reads every stored value of a checkpoint item (orbax's OCDBT database), synchronously.

  A torn or truncated array file fails here with tensorstore's error (a ValueError) before an
  orbax restore would meet it. Orbax reads asynchronously: when one read fails, the reads still
  in flight later report to its closed event loop, and each prints a traceback. Items in another
  layout, or not on a local disk, are left to orbax's restore.

  Args:
    item_dir: e.g. ``<checkpoints>/<step>/state`` or an export's ``variables/``.
    chunk: values read at a time (bounds the memory held).

  Raises:
    ValueError: naming the first unreadable file.
  """
  item_dir = pathlib.Path(item_dir)
  if not (item_dir / "manifest.ocdbt").is_file():
    return
  import tensorstore as ts  # pylint: disable=import-outside-toplevel
  store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{item_dir.absolute()}/"}).result()
  keys = store.list().result()
  for start in range(0, len(keys), chunk):
    for future in [store.read(key) for key in keys[start:start + chunk]]:
      future.result()


def restore_params_only(directory: str | os.PathLike, step: Optional[int] = None, *,
                        best_metric: Optional[str] = None, best_mode: str = "min") -> dict:
  """``restore_params(...).variables``: the params and batch_stats alone (see there)."""
  return restore_params(directory, step, best_metric=best_metric, best_mode=best_mode).variables


# ------------------------------------------------------------------------------------------------
# Internals.


@contextlib.contextmanager
def _quiet_read_only_notice():
  """Hides orbax's "Given directory is read only=..." warning, which every read-only manager
  logs through absl although nothing is wrong; other records pass."""
  absl_logger = logging.getLogger("absl")
  notice = lambda record: not record.getMessage().startswith(  # noqa: E731
      "Given directory is read only")
  absl_logger.addFilter(notice)
  try:
    yield
  finally:
    absl_logger.removeFilter(notice)


def _read_only_manager(directory, best_metric: Optional[str] = None, best_mode: str = "min"):
  best_options = {}
  if best_metric:
    best_options = dict(best_fn=lambda metrics: metrics[best_metric], best_mode=best_mode)
  # create=False and save_interval_steps=0 are what read_only implies; set here, orbax does not
  # warn that it changed them.
  options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0,
                                         **best_options)
  with _quiet_read_only_notice():
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)),
                                 item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                                                DATA_ITEM: ocp.JsonCheckpointHandler()},
                                 options=options)


def _model_part(state: Any) -> dict:
  """The ``params`` and ``batch_stats`` of a state tree (what tells one model from another)."""
  return {"params": state.get("params", {}), "batch_stats": state.get("batch_stats", {})}


def _state_metadata(manager, step: int) -> dict:
  """The saved ``state`` tree's metadata (names, shapes, dtypes) of one step.

  Raises:
    ValueError: when it cannot be read (a damaged step).
  """
  metadata = manager.item_metadata(step)
  tree = None if metadata is None else metadata.get(STATE_ITEM)
  if tree is None:
    raise ValueError(f"step {step}: the state's metadata is missing or unreadable")
  return dict(tree)


def _saved_state_tree(directory, step: int) -> dict:
  """``_state_metadata`` through a read-only manager of ``directory``."""
  manager = _read_only_manager(directory)
  try:
    return _state_metadata(manager, step)
  finally:
    manager.close()


def _restore_params_at(manager, directory, step: int, expected: Any) -> dict:
  """params/batch_stats of one step onto this process's first device."""
  # Every file first (synchronously); orbax's metadata read already opens the arrays.
  read_all_values(pathlib.Path(directory) / str(step) / STATE_ITEM)
  saved = _state_metadata(manager, step)
  if expected is not None:
    check_tree_fits(_model_part(saved), _model_part(expected), f"{directory}/{step}")
  # Onto this process's first device, whatever devices wrote it: without a target, orbax
  # rebuilds the saved shardings, which fails for a checkpoint of another device set (e.g. a
  # multi-host run read back by a single evaluation process).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), saved)
  restored = manager.restore(step, args=ocp.args.Composite(
      **{STATE_ITEM: ocp.args.StandardRestore(target)}))[STATE_ITEM]
  return {"params": restored["params"], "batch_stats": restored.get("batch_stats", {})}


def _move_aside(directory, step: int) -> Optional[pathlib.Path]:
  """Renames a damaged step directory to ``<step>.damaged`` (``.damaged.1``, ... if taken)."""
  source = pathlib.Path(directory) / str(step)
  if not source.is_dir():
    return None
  target = source.with_name(f"{step}{DAMAGED_SUFFIX}")
  n = 0
  while target.exists():
    n += 1
    target = source.with_name(f"{step}{DAMAGED_SUFFIX}.{n}")
  source.rename(target)
  return target
