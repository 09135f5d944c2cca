"""Test helpers: the parity weight recipe of shared/parity/README.md §1, and recipe-scaled
variables for any model variant.

``recipe_state_dict`` rebuilds the official SVRHand ``state_dict`` that produced the golden
files from the manifest ``svr_state_dict_manifest.jsonl``, with numpy only. ``he_variables``
gives a model's variables the same scales (O(1) activations) without compiling an init.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zlib

import jax
import numpy as np

RECIPE_SHA256_SEED0 = "d989bbc92c4289d451d04145bea1cba739071284ea34eb3217f91a6107ce17bc"


def read_manifest(path: pathlib.Path) -> list[dict]:
  """The manifest lines, in state_dict order."""
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line]


def recipe_value(entry: dict, seed: int) -> np.ndarray:
  """The recipe array of one manifest entry (README §1, first matching rule)."""
  key, shape, dtype = entry["key"], tuple(entry["shape"]), entry["dtype"]
  rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
  if key.endswith("num_batches_tracked"):
    return np.zeros(shape, np.int64)
  if key.endswith("running_mean"):
    return rng.normal(0.0, 0.1, shape).astype(dtype)
  if key.endswith("running_var"):
    return rng.uniform(0.5, 1.5, shape).astype(dtype)
  if entry["kind"] == "buffer":
    return np.zeros(shape, dtype)
  if len(shape) == 1 and key.endswith(".weight"):
    return rng.uniform(0.8, 1.2, shape).astype(dtype)
  if len(shape) == 1 and key.endswith(".bias"):
    return rng.normal(0.0, 0.02, shape).astype(dtype)
  if len(shape) >= 2:
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(dtype)
  raise ValueError(f"no recipe rule for {entry}")


def recipe_state_dict(manifest: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
  """key -> array for every manifest entry, in manifest order."""
  return {e["key"]: recipe_value(e, seed) for e in manifest}


def state_dict_sha256(state_dict: dict[str, np.ndarray]) -> str:
  """sha256 over the raw little-endian C-order bytes of every array, in insertion order."""
  h = hashlib.sha256()
  for value in state_dict.values():
    h.update(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
  return h.hexdigest()


def he_variables(abstract, topology, seed=0):
  """Variables with O(1) activations (the parity recipe's scales), without compiling an init."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "mano_joint_reg":
      return np.asarray(topology.joint_regressor, np.float32)
    if name == "upsample":
      return np.full(leaf.shape, 1.0 / leaf.shape[1], np.float32)
    if name in ("scale", "var"):
      return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
    if name in ("bias", "mean"):
      return rng.normal(0.0, 0.02, leaf.shape).astype(np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, abstract)
