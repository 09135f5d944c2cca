"""Device mesh and shardings for the train and eval steps (``jax.sharding``, no pmap).

The mesh has a ``data`` axis (batch parallelism) and a ``model`` axis (size 1 unless
``config.mesh.model`` > 1). With a model axis, large weight tensors (the orientation head's
attention and MLP kernels hold ~80 % of the official SVR's parameters) and their optimizer
moments are split along their largest divisible dimension; everything else is replicated.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"


def make_mesh(model_parallelism: int = 1, devices=None) -> Mesh:
  """A 2-D ``(data, model)`` mesh over all (global) devices.

  Args:
    model_parallelism: size of the model axis; must divide the device count.
    devices: optional explicit device list (tests); defaults to ``jax.devices()``.
  """
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) % model_parallelism:
    raise ValueError(f"mesh.model={model_parallelism} does not divide the {len(devices)} devices")
  grid = np.asarray(devices).reshape(len(devices) // model_parallelism, model_parallelism)
  return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data axis, replicated over the model axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Fully replicated sharding."""
  return NamedSharding(mesh, P())


def _leaf_spec(shape: tuple[int, ...], model_size: int, min_size: int) -> P:
  """Splits the largest dimension divisible by the model axis, for big tensors only."""
  if model_size == 1 or len(shape) < 2 or int(np.prod(shape)) < min_size:
    return P()
  candidates = [d for d in range(len(shape)) if shape[d] % model_size == 0]
  if not candidates:
    return P()
  dim = max(candidates, key=lambda d: (shape[d], d))
  spec = [None] * len(shape)
  spec[dim] = MODEL_AXIS
  return P(*spec)


def state_shardings(mesh: Mesh, abstract_state: Any, min_size: int = 1 << 20) -> Any:
  """Shardings for a (possibly abstract) state pytree: model-split large tensors, else replicate.

  Applies to params and optimizer moments alike (they share shapes), so Adam's state is split
  the same way as the weights it tracks.
  """
  model_size = mesh.shape[MODEL_AXIS]
  return jax.tree.map(
      lambda leaf: NamedSharding(mesh, _leaf_spec(tuple(np.shape(leaf)), model_size, min_size)),
      abstract_state)


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's share of the global batch into globally sharded arrays.

  Every process passes only the examples it read (its contiguous slice of the global batch); the
  result has the global batch size on its leading dimension.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def prefetch_to_mesh(batches: Iterator[dict[str, np.ndarray]], mesh: Mesh,
                     size: int = 2) -> Iterator[dict[str, jax.Array]]:
  """Yields ``global_batch(b, mesh)`` for each host batch, ``size`` batches ahead.

  The trainer dispatches steps asynchronously; with the next batches already transferred, a
  step never waits for a host-to-device copy (big_vision's and flax's ``prefetch_to_device``).
  """
  queue = collections.deque()

  def enqueue(n):
    for batch in itertools.islice(batches, n):
      queue.append(global_batch(batch, mesh))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)
