"""The input pipeline shared by every dataset: grain over ``tfds`` array_record data sources.

Records follow ``data_pipelines.schema`` (one example = one 8-view frame). Two modes:
  * ``single_view``: every valid view of every frame is one example
    (``simajax.preprocessing.sample``).
  * ``multi_view``: one example = all 8 views of a frame, each cropped around its own hand, with
    a per-view ``view_valid`` mask; augmentation is drawn per view from the same distributions
    (independently, or one draw shared by the views with ``shared_view_augmentation``).

Batches are dicts of numpy arrays with a leading per-process batch axis (multi-view adds a view
axis after it); the keys are those of ``simajax.preprocessing.sample`` plus ``mask`` (float32,
1 for real examples, 0 for evaluation padding) and, in multi-view mode, ``view_valid``
(bool [B, 8]).

Order and randomness are index-based, so they do not depend on worker counts or restarts:
  * Global example position g (0, 1, 2, ... over the whole run) lives in epoch g // N at rank
    g % N of that epoch's permutation, drawn from (seed, epoch). The augmentation of position g
    is drawn from (seed, g).
  * Global batch b holds positions [b G, (b + 1) G); process p of P reads the contiguous slice
    [b G + p G/P, b G + (p + 1) G/P), so the processes together read each global batch once.
  * A training iterator's state is the number of batches it has produced; ``set_state`` rebuilds
    the grain pipeline from there, so a resumed run sees exactly the batches an uninterrupted one
    would have.
Evaluation reads the split once in record order without augmentation, pads the last global batch
with zero examples (``mask`` 0) and so counts every example exactly once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Iterator, Optional

from absl import flags
import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import schema
from simajax.cli import UserError
from simajax.preprocessing import augment, sample

MODES = ("single_view", "multi_view")
_MAX_STEPS = 10**12  # an "infinite" training run, as a finite grain source


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """What to read and how to batch it.

  Attributes:
    dataset: "<tfds name>/<config>", e.g. "synthetic_hands/small".
    data_dir: the TFDS data directory holding it.
    split: split name ("train", "validation", "test").
    mode: "single_view" or "multi_view".
    batch_size: global batch size, in examples (views, or frames in multi-view mode).
    image_size: side of the square network input.
    seed: seeds the per-epoch order and the augmentation.
    augment: draw scale/rotation/colour augmentation (training iterators only).
    shared_view_augmentation: multi-view mode: one draw for all views of a frame.
    mirror_left: flip left hands to right hands.
    with_hand_mask: also output the hand mask warped into the crop (``hand_mask``).
    num_workers: grain worker processes (0: decode in threads of the main process).
    num_threads: reader threads per process (when num_workers is 0).
    prefetch: batches buffered ahead (per worker with workers).
  """
  dataset: str
  data_dir: str
  split: str = "train"
  mode: str = "single_view"
  batch_size: int = 32
  image_size: int = 128
  seed: int = 0
  augment: bool = True
  shared_view_augmentation: bool = False
  mirror_left: bool = True
  with_hand_mask: bool = False
  num_workers: int = 0
  num_threads: int = 2
  prefetch: int = 2

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"InputConfig.mode={self.mode!r}, expected one of {MODES}")
    if self.batch_size <= 0 or self.image_size <= 0:
      raise ValueError("InputConfig.batch_size and image_size must be positive, got "
                       f"{self.batch_size} and {self.image_size}")


def dataset_dir(dataset: str, data_dir: str) -> str:
  """The directory of a prepared dataset: <data_dir>/<name>/<config>/<highest version>.

  Args:
    dataset: "<name>/<config>" (or "<name>/<config>/<version>").
    data_dir: the TFDS data directory.

  Returns:
    The path.

  Raises:
    FileNotFoundError: naming the directory when the dataset is not prepared.
  """
  path = os.path.join(data_dir, *dataset.split("/"))
  if os.path.exists(os.path.join(path, "dataset_info.json")):
    return path
  versions = []
  if os.path.isdir(path):
    for name in os.listdir(path):
      parts = name.split(".")
      if (len(parts) == 3 and all(p.isdigit() for p in parts)
          and os.path.exists(os.path.join(path, name, "dataset_info.json"))):
        versions.append(tuple(int(p) for p in parts))
  if not versions:
    raise FileNotFoundError(
        f"dataset '{dataset}' is not prepared under {data_dir} (no {path}/<version>/"
        "dataset_info.json); build it with `python -m data_pipelines.build "
        f"{dataset} --data_dir {data_dir}`")
  return os.path.join(path, ".".join(str(p) for p in max(versions)))


@functools.lru_cache(maxsize=16)
def _open_source(path: str, split: str):
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise UserError(f"{path}: no split '{split}' (has {sorted(builder.info.splits.keys())})")
  return builder.as_data_source(split)


@functools.lru_cache(maxsize=16)
def _valid_views(path: str, split: str) -> np.ndarray:
  """bool [num_frames, NUM_VIEWS] view validity of a split (one pass over its records)."""
  source = _open_source(path, split)
  valid = np.zeros((len(source), schema.NUM_VIEWS), bool)
  chunk = 256
  for start in range(0, len(source), chunk):
    records = source.__getitems__(list(range(start, min(start + chunk, len(source)))))
    for offset, record in enumerate(records):
      valid[start + offset] = record["views"]["view_valid"]
  return valid


def example_addresses(config: InputConfig) -> np.ndarray:
  """The split's examples in record order: int [N, 2] (frame, view), or int [N] frames.

  Single-view mode lists every valid view; multi-view mode lists frames with a valid view.
  """
  valid = _valid_views(dataset_dir(config.dataset, config.data_dir), config.split)
  if config.mode == "single_view":
    return np.argwhere(valid)
  return np.flatnonzero(valid.any(axis=1))


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
  """The example order of one epoch (cached: every batch of the epoch needs it)."""
  return np.random.default_rng([seed, epoch]).permutation(size)


class _Loader:
  """Turns global example positions into samples; picklable, so grain workers can run it."""

  def __init__(self, config: InputConfig, process_index: int, process_count: int):
    if config.batch_size % process_count:
      raise ValueError(f"global batch size {config.batch_size} is not divisible by the "
                       f"{process_count} processes")
    self.config = config
    self.path = dataset_dir(config.dataset, config.data_dir)
    self.addresses = example_addresses(config)
    if not len(self.addresses):
      raise ValueError(f"{self.path} split '{config.split}' has no valid examples")
    self.process_index = process_index
    self.local_batch = config.batch_size // process_count

  def train_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's share of global training batch ``step`` (shuffled, augmented)."""
    first = step * self.config.batch_size + self.process_index * self.local_batch
    positions = range(first, first + self.local_batch)
    n = len(self.addresses)
    orders = {e: _epoch_order(self.config.seed, e, n) for e in {g // n for g in positions}}
    examples = [self._load(self.addresses[orders[g // n][g % n]], g, self.config.augment)
                for g in positions]
    return _stack(examples, np.ones(len(examples), np.float32))

  def eval_batch(self, index: int) -> dict[str, np.ndarray]:
    """This process's share of evaluation batch ``index`` (record order, padded, unaugmented)."""
    first = index * self.config.batch_size + self.process_index * self.local_batch
    examples, mask = [], []
    for g in range(first, first + self.local_batch):
      real = g < len(self.addresses)
      examples.append(self._load(self.addresses[g], g, False) if real else self._empty())
      mask.append(float(real))
    return _stack(examples, np.asarray(mask, np.float32))

  def _load(self, address, position: int, augmented: bool) -> dict[str, np.ndarray]:
    cfg = self.config
    source = _open_source(self.path, cfg.split)
    if cfg.mode == "single_view":
      frame, view = (int(a) for a in address)
      params = (augment.draw(np.random.default_rng([cfg.seed, position])) if augmented
                else augment.IDENTITY)
      return sample.process_view(source[frame], view, cfg.image_size, params, cfg.mirror_left,
                                 cfg.with_hand_mask, frame)
    frame = int(address)
    record = source[frame]
    valid = np.asarray(record["views"]["view_valid"], bool)
    views = []
    for view in range(schema.NUM_VIEWS):
      if not valid[view]:
        views.append(sample.empty_view(cfg.image_size, cfg.with_hand_mask, frame, view))
        continue
      params = augment.IDENTITY
      if augmented:
        key = [cfg.seed, position] if cfg.shared_view_augmentation else [cfg.seed, position, view]
        params = augment.draw(np.random.default_rng(key))
      views.append(sample.process_view(record, view, cfg.image_size, params, cfg.mirror_left,
                                       cfg.with_hand_mask, frame))
    stacked = jax.tree.map(lambda *x: np.stack(x), *views)
    stacked["view_valid"] = valid
    return stacked

  def _empty(self) -> dict[str, np.ndarray]:
    cfg = self.config
    empty = sample.empty_view(cfg.image_size, cfg.with_hand_mask)
    if cfg.mode == "single_view":
      return empty
    stacked = jax.tree.map(lambda x: np.stack([x] * schema.NUM_VIEWS), empty)
    stacked["view_valid"] = np.zeros(schema.NUM_VIEWS, bool)
    return stacked


def _stack(examples, mask) -> dict[str, np.ndarray]:
  batch = jax.tree.map(lambda *x: np.stack(x), *examples)
  batch["mask"] = mask
  return batch


def _grain_iter(dataset: grain.MapDataset, config: InputConfig):
  if config.num_workers > 0:
    # grain's worker processes read absl flags; programs that do not run absl.app (tests,
    # notebooks, scripts with argparse) have not parsed them, so their defaults are used.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    iter_ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
    iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.num_workers, per_worker_buffer_size=config.prefetch))
  else:
    iter_ds = dataset.to_iter_dataset(grain.ReadOptions(
        num_threads=config.num_threads, prefetch_buffer_size=config.prefetch))
  return iter(iter_ds)


def _process(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


class TrainIterator:
  """Infinite, resumable iterator over this process's share of the training batches.

  ``get_state()`` returns a small JSON-able dict (save it with the model checkpoint);
  ``set_state(state)`` continues from there. The config is part of the state so that resuming
  a different pipeline fails loudly instead of silently changing the data.
  """

  def __init__(self, config: InputConfig, process_index: Optional[int] = None,
               process_count: Optional[int] = None):
    self.config = config
    self._loader = _Loader(config, *_process(process_index, process_count))
    self._step = 0
    self._iterator = None

  @property
  def num_examples(self) -> int:
    """Examples in one epoch of the split."""
    return len(self._loader.addresses)

  def _start(self) -> Iterator[dict[str, np.ndarray]]:
    steps = grain.MapDataset.source(range(self._step, _MAX_STEPS))
    return _grain_iter(steps.map(self._loader.train_batch), self.config)

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      self._iterator = self._start()
    batch = next(self._iterator)
    self._step += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    """The position: batches produced so far, and the fields that define the order."""
    cfg = self.config
    return {"step": self._step, "seed": cfg.seed, "batch_size": cfg.batch_size,
            "dataset": cfg.dataset, "split": cfg.split, "mode": cfg.mode}

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues from a ``get_state()`` position.

    Raises:
      ValueError: if the state was saved by a pipeline with another order.
    """
    for key, value in self.get_state().items():
      if key != "step" and state.get(key) != value:
        raise ValueError(f"input state field '{key}' is {state.get(key)!r}, this pipeline has "
                         f"{value!r}; it cannot resume that position")
    self.close()
    self._step = int(state["step"])

  def close(self) -> None:
    """Stops the current grain iterator (and its worker processes); ``next`` restarts it."""
    if self._iterator is not None:
      self._iterator.close()
      self._iterator = None


class EvalIterable:
  """Finite, re-iterable evaluation batches covering a split exactly once (padding has mask 0)."""

  def __init__(self, config: InputConfig, process_index: Optional[int] = None,
               process_count: Optional[int] = None):
    self.config = dataclasses.replace(config, augment=False)
    self._loader = _Loader(self.config, *_process(process_index, process_count))

  @property
  def num_examples(self) -> int:
    """Real examples in the split (all processes together)."""
    return len(self._loader.addresses)

  def __len__(self) -> int:
    return -(-self.num_examples // self.config.batch_size)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    batches = grain.MapDataset.source(range(len(self))).map(self._loader.eval_batch)
    return _grain_iter(batches, self.config)


def train_iterator(config: InputConfig, process_index: Optional[int] = None,
                   process_count: Optional[int] = None) -> TrainIterator:
  """An infinite, shuffled, augmented (if ``config.augment``), resumable training iterator.

  Args:
    config: the pipeline config.
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).

  Returns:
    The iterator; each batch holds this process's batch_size / process_count examples.
  """
  return TrainIterator(config, process_index, process_count)


def eval_iterable(config: InputConfig, process_index: Optional[int] = None,
                  process_count: Optional[int] = None) -> EvalIterable:
  """Evaluation batches: record order, no augmentation, last batch padded (``mask`` 0).

  Args:
    config: the pipeline config (``augment`` is ignored).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).

  Returns:
    A re-iterable of ceil(N / batch_size) batches per process.
  """
  return EvalIterable(config, process_index, process_count)
