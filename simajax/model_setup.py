"""From a training config to a network: the hand model, its mesh topology, and the module.

Shared by the trainer, checkpoint-based evaluation and prediction, so they build the very same
network from the same config.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from simajax.mesh import MeshTopology


def load_topology(config: ml_collections.ConfigDict) -> MeshTopology:
  """The mesh hierarchy the decoder runs on.

  ``config.topology`` (a topology ``.npz``, e.g. the official assets for official weights) wins;
  otherwise the hierarchy is built (and cached on disk) from the template mesh of
  ``config.hand_model`` (None: the built-in SynthHand), with its 21-joint regressor.
  """
  if config.get("topology"):
    return MeshTopology.load(config.topology)
  from simajax import hand  # pylint: disable=import-outside-toplevel
  from simajax.mesh.hierarchy import cached_topology  # pylint: disable=import-outside-toplevel
  model = hand.load_hand_model(config.get("hand_model"))
  return cached_topology(np.asarray(model.v_template), np.asarray(model.faces),
                         joint_regressor=hand.joint_regressor_21(model))


def build_model(config: ml_collections.ConfigDict, topology: MeshTopology, stage: str | None = None):
  """The network of ``stage`` (default ``config.stage``): SVR-Hand or MVR-Hand."""
  stage = stage or config.stage
  if stage == "svr":
    from simajax.models.svr import build_svr  # pylint: disable=import-outside-toplevel
    return build_svr(config.model, topology)
  if stage == "mvr":
    from simajax.models.mvr import build_mvr  # pylint: disable=import-outside-toplevel
    return build_mvr(config.model, topology)
  raise ValueError(f"config.stage must be 'mvr' or 'svr', got {stage!r}")


def input_shapes(stage: str, image_size: int, num_views: int = 8) -> tuple:
  """Abstract inputs of a batch of one for ``init``: (images,) for the SVR, (images, view_valid)
  for the MVR, whose images are [1, num_views, S, S, 3]."""
  if stage == "mvr":
    return (jax.ShapeDtypeStruct((1, num_views, image_size, image_size, 3), jnp.float32),
            jax.ShapeDtypeStruct((1, num_views), jnp.bool_))
  return (jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32),)


def abstract_variables(model, stage: str, image_size: int) -> dict:
  """Shapes and dtypes of a network's ``params`` and ``batch_stats`` (nothing is computed), to
  check a checkpoint against before reading it."""
  shapes = input_shapes(stage, image_size)
  variables = jax.eval_shape(
      lambda: model.lazy_init({"params": jax.random.key(0)}, *shapes, train=False))
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

