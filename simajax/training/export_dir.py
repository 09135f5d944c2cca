"""An export directory: a self-contained SVR checkpoint (variables, model config, mesh topology).

``simajax.convert`` writes one from official weights; ``simajax.predict`` and ``simajax.export``
read it. Unlike a training run directory (``run_dir``), it holds one set of weights and no
training state, and inference needs nothing else:

  CKPT_DIR/variables/           orbax StandardCheckpointer of {'params': ..., 'batch_stats': ...}
  CKPT_DIR/model_config.json    the model ConfigDict (``svr_config`` fields)
  CKPT_DIR/topology.npz         the mesh topology (``MeshTopology.save`` format)
  CKPT_DIR/torch_extras.npz     optional, written by ``simajax.convert``: the official
                                state_dict entries simajax does not keep, for
                                ``simajax.export --format torch``
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from simajax.cli import UserError, first_line
from simajax.mesh import MeshTopology
from simajax.models import SVRHand, build_svr
from simajax.training import checkpointing

VARIABLES_DIR = "variables"
CONFIG_FILE = "model_config.json"
TOPOLOGY_FILE = "topology.npz"


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A restored checkpoint: the module, its variables, its config and its topology."""
  model: SVRHand
  variables: dict[str, Any]
  model_config: ml_collections.ConfigDict
  topology: MeshTopology


def abstract_variables(model: SVRHand, batch_size: int = 1) -> dict[str, Any]:
  """Shapes and dtypes of ``model``'s variables (``jax.eval_shape`` of init; nothing computed)."""
  s = model.input_size
  return jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((batch_size, s, s, 3)),
                         train=False))


def save_checkpoint(ckpt_dir: str | os.PathLike, variables: dict[str, Any],
                    model_config: ml_collections.ConfigDict, topology: MeshTopology) -> None:
  """Writes a self-contained checkpoint directory (see the module docstring).

  Raises:
    FileExistsError: when ``ckpt_dir`` already holds a checkpoint.
  """
  ckpt_dir = pathlib.Path(ckpt_dir).absolute()
  if (ckpt_dir / VARIABLES_DIR).exists():
    raise FileExistsError(f"{ckpt_dir} already holds a checkpoint ({VARIABLES_DIR}/ exists)")
  ckpt_dir.mkdir(parents=True, exist_ok=True)
  state = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(ckpt_dir / VARIABLES_DIR, jax.tree.map(np.asarray, state))
  checkpointer.wait_until_finished()
  (ckpt_dir / CONFIG_FILE).write_text(model_config.to_json(indent=2) + "\n")
  topology.save(ckpt_dir / TOPOLOGY_FILE)


def load_model_config(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """Reads a ``model_config.json``; lists come back as tuples, as in ``svr_config``."""
  raw = json.loads(pathlib.Path(path).read_text())
  return ml_collections.ConfigDict(
      {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def load_checkpoint(ckpt_dir: str | os.PathLike,
                    model_config: ml_collections.ConfigDict | None = None) -> LoadedModel:
  """Restores a checkpoint written by ``save_checkpoint`` onto the default device.

  Args:
    ckpt_dir: the checkpoint directory.
    model_config: overrides the stored config (e.g. to change ``spiral_impl``); the variables
      must still fit it.

  Raises:
    FileNotFoundError: naming the missing part of the checkpoint.
    UserError: when the stored variables do not fit the model (another variant, e.g. a wrong
      ``model_config``) or cannot be read (a damaged checkpoint), in one line.
  """
  ckpt_dir = pathlib.Path(ckpt_dir).absolute()
  for part in (VARIABLES_DIR, CONFIG_FILE, TOPOLOGY_FILE):
    if not (ckpt_dir / part).exists():
      raise FileNotFoundError(f"{ckpt_dir} is not an SVR checkpoint: {part} is missing")
  if model_config is None:
    model_config = load_model_config(ckpt_dir / CONFIG_FILE)
  topology = MeshTopology.load(ckpt_dir / TOPOLOGY_FILE)
  model = build_svr(model_config, topology)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                        abstract_variables(model))
  target = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
  checkpointer = ocp.StandardCheckpointer()
  source = ckpt_dir / VARIABLES_DIR
  try:
    checkpointing.read_all_values(source)  # every file first: the metadata read opens arrays
    saved = checkpointer.metadata(source).item_metadata
    if saved is None:
      raise ValueError("its metadata is missing or unreadable")
    checkpointing.check_tree_fits(dict(saved), target, str(source))
    variables = checkpointer.restore(source, target)
  except (ValueError, OSError) as e:
    if isinstance(e, UserError):
      raise
    raise UserError(f"{source}: the checkpoint does not restore (damaged?): {first_line(e)}") from e
  return LoadedModel(model, variables, model_config, topology)
