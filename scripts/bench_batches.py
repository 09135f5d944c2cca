"""Random training batches for the benchmark scripts (``compile_time.py``, ``scaling.py``).

A batch has every key the training step of ``simajax.training.steps`` reads, with the shapes and
dtypes of ``simajax.input_pipeline``: images and labels of every example are random, every
example is real (``mask`` 1) with a mesh label, and every view of a multi-view frame is valid.
The values only have to be finite and of the right scale, since the scripts time the step.

Imports JAX (through ``simajax.geometry``): import it after XLA_FLAGS is set.
"""

from __future__ import annotations

import numpy as np

from simajax import geometry
from simajax.mesh import MeshTopology

NUM_VIEWS = 8  # views per multi-view frame, as data_pipelines.schema.NUM_VIEWS


def random_batch(topology: MeshTopology, batch_images: int, image_size: int, *,
                 multi_view: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
  """A random batch of ``batch_images`` images as host numpy arrays.

  Args:
    topology: the mesh hierarchy of the model (vertex count of its finest level, and its joint
      regressor's joint count).
    batch_images: images in the batch; in multi-view mode a multiple of 8 (frames of 8 views).
    image_size: side of the square input images.
    multi_view: single-view batches have a leading [B] axis; multi-view ones [B / 8, 8] axes plus
      ``view_valid`` (the MVR step, and the SVR step with SiMA distillation).
    seed: seed of the numpy generator.

  Returns:
    ``image``, ``mask`` (float32), ``has_mesh`` and, in multi-view mode, ``view_valid``, and the
    labels ``verts_canonical``, ``joints_canonical``, ``verts_rotated``, ``joints_rotated``,
    ``joints_2d`` and ``rotation``, all float32 except the boolean masks.

  Raises:
    ValueError: for a multi-view batch that is not a whole number of frames, or a topology
      without a joint regressor.
  """
  if batch_images < 1:
    raise ValueError(f"batch_images must be positive, got {batch_images}")
  if multi_view and batch_images % NUM_VIEWS:
    raise ValueError(f"a multi-view batch holds frames of {NUM_VIEWS} views: batch_images="
                     f"{batch_images} is not a multiple of {NUM_VIEWS}")
  if topology.joint_regressor is None:
    raise ValueError("the mesh topology has no joint_regressor (needed for the joint count)")
  lead = (batch_images // NUM_VIEWS, NUM_VIEWS) if multi_view else (batch_images,)
  v, j = topology.level_sizes[0], topology.joint_regressor.shape[0]
  rng = np.random.default_rng(seed)
  batch = {
      "image": rng.random(lead + (image_size, image_size, 3), np.float32),
      "mask": np.ones(lead[:1], np.float32),
      "has_mesh": np.ones(lead, bool),
      "verts_canonical": rng.normal(0, 0.05, lead + (v, 3)),
      "joints_canonical": rng.normal(0, 0.05, lead + (j, 3)),
      "verts_rotated": rng.normal(0, 0.05, lead + (v, 3)),
      "joints_rotated": rng.normal(0, 0.05, lead + (j, 3)),
      "joints_2d": rng.random(lead + (j, 2)),
      "rotation": np.asarray(geometry.axis_angle_to_matrix(rng.normal(0, 1, lead + (3,)))),
  }
  if multi_view:
    batch["view_valid"] = np.ones(lead, bool)
  return {k: x.astype(np.float32) if x.dtype == np.float64 else x for k, x in batch.items()}
