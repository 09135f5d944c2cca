"""The jitted steps of both stages: MVR training, SVR training with SiMA distillation, evaluation.

A training state is a plain dict ``{step, params, batch_stats, opt_state, rng}``. The frozen MVR
teacher is never part of it: its variables are a separate pytree argument of the SVR step (closed
over by nothing), run in eval mode on the *same* augmented multi-view batch as the student, under
``stop_gradient``, and never checkpointed with the student. SiMA's own parts (the teacher's
targets, the distillation loss) are in ``simajax.training.distill``.

Batches come from ``simajax.input_pipeline``: single-view batches have a leading batch axis;
multi-view batches have [B, V] leading axes plus ``view_valid`` [B, V]. Every view is one SVR
example; the MVR sees the whole frame and predicts every view. A batch's ground truth is named as
the model's outputs (``simajax.preprocessing.sample``: ``verts_canonical``, ``verts_rotated``,
``joints_2d``, ``rotation``, ...), so the losses read both under the same keys; the evaluation
scores ``verts_rotated`` / ``joints_rotated`` against the camera-frame ``verts_camera`` /
``joints_camera``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from simajax import losses, metrics
from simajax.training import distill

State = dict[str, Any]

# Terms that need a mesh label; datasets without one (no MANO given) train on 2D joints only.
_MESH_TERMS = ("mesh_canonical", "joints_canonical", "mesh_rotated", "joints_rotated", "normal",
               "edge", "rotation")


def flatten_views(tree: Any) -> Any:
  """[B, V, ...] -> [B * V, ...] on every leaf."""
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def example_weights(batch: dict[str, jax.Array], multi_view: bool) -> jax.Array:
  """Per-example (per-view) weights: padding mask x view validity, flattened to [N]."""
  mask = batch["mask"].astype(jnp.float32)
  if multi_view:
    mask = (mask[:, None] * batch["view_valid"].astype(jnp.float32)).reshape(-1)
  return mask


def per_view(batch: dict[str, jax.Array], multi_view: bool) -> dict[str, jax.Array]:
  """The batch's per-view fields, flattened to one row per view in multi-view mode."""
  views = {k: v for k, v in batch.items() if k not in ("mask", "view_valid")}
  return flatten_views(views) if multi_view else views


def init_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
               *input_shapes: jax.ShapeDtypeStruct) -> State:
  """Initial variables and optimizer state (traceable: jit it with ``out_shardings``).

  Uses ``lazy_init`` (the forward pass is not traced) and an 'unsafe_rbg' init key: compiling
  one threefry hash per parameter takes about a minute on XLA:CPU whatever the model width. The
  dropout key in the state is a plain uint32 threefry key (checkpoint-friendly raw data).
  """
  key = jax.random.key(seed, impl="unsafe_rbg")
  variables = model.lazy_init({"params": key}, *input_shapes, train=False)
  params = variables["params"]
  return {"step": jnp.zeros((), jnp.int32), "params": params,
          "batch_stats": variables.get("batch_stats", {}), "opt_state": tx.init(params),
          "rng": jax.random.key_data(jax.random.key(seed + 1))}


def _model_inputs(stage: str, batch: dict[str, jax.Array], multi_view: bool):
  if stage == "mvr":
    return (batch["image"], batch["view_valid"])
  return (batch["image"].reshape((-1,) + batch["image"].shape[2:]) if multi_view
          else batch["image"],)


def make_train_step(*, stage: str, model: nn.Module, tx: optax.GradientTransformation,
                    faces: jax.Array, loss_weights: losses.LossWeights, multi_view: bool,
                    schedule: Optional[optax.Schedule] = None,
                    teacher: Optional[nn.Module] = None) -> Callable:
  """Builds ``train_step(state, batch, teacher_variables) -> (state, metrics)`` (un-jitted).

  Args:
    stage: 'mvr' or 'svr'.
    model: the network being trained.
    tx: the optimizer.
    faces: [F, 3] canonical-mesh faces for the normal and edge losses.
    loss_weights: term weights; ``se``/``oe`` are used only with a teacher.
    multi_view: whether batches are multi-view (required for the MVR and for distillation).
    schedule: the learning-rate schedule, logged as 'lr'.
    teacher: the MVR module for SiMA distillation (SVR stage), or None.
  """
  if stage not in ("mvr", "svr"):
    raise ValueError(f"stage must be 'mvr' or 'svr', got {stage!r}")
  if (stage == "mvr" or teacher is not None) and not multi_view:
    raise ValueError(f"stage {stage!r}{' with distillation' if teacher else ''} needs "
                     "multi-view batches (config.data.mode = 'multi_view')")

  def loss_fn(params, batch_stats, batch, rng, targets):
    variables = {"params": params, "batch_stats": batch_stats}
    (outputs, mid), updates = model.apply(
        variables, *_model_inputs(stage, batch, multi_view), train=True,
        mutable=["batch_stats"], rngs={"dropout": rng})
    views = per_view(batch, multi_view)
    if stage == "mvr":
      outputs = flatten_views(outputs)
    weights = example_weights(batch, multi_view)
    mesh_weights = weights * views["has_mesh"].astype(jnp.float32)
    total, terms = losses.reconstruction_loss(
        outputs, views, faces, loss_weights, mask=weights,
        term_masks={t: mesh_weights for t in _MESH_TERMS})
    if targets is not None:
      distill_total, distill_terms = distill.distillation_loss(
          mid, targets, loss_weights, mask=weights, se_key=distill.STUDENT_SE_KEY,
          oe_key=distill.STUDENT_OE_KEY)
      total = total + distill_total
      terms.update(distill_terms)
    return total, (updates["batch_stats"], terms)

  def train_step(state: State, batch: dict[str, jax.Array], teacher_variables: Any = None):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    targets = None
    if teacher is not None:
      targets = distill.teacher_features(teacher, teacher_variables, batch)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, terms)), grads = grad_fn(state["params"], state["batch_stats"], batch,
                                                  rng, targets)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"step": state["step"] + 1, "params": params, "batch_stats": batch_stats,
                 "opt_state": opt_state, "rng": state["rng"]}
    step_metrics = {"loss": loss, **{f"loss_{k}": v for k, v in terms.items()},
                    "l2_grads": optax.tree.norm(grads), "l2_params": optax.tree.norm(params),
                    "l2_updates": optax.tree.norm(updates)}
    if schedule is not None:
      step_metrics["lr"] = schedule(state["step"])
    return new_state, step_metrics

  return train_step


def make_eval_step(*, stage: str, model: nn.Module, multi_view: bool,
                   fscore_chunk_size: int = 2) -> Callable:
  """Builds ``eval_step(variables, batch) -> per-example metrics`` (un-jitted).

  The prediction is the rotated mesh and joints, scored root-relative against the camera-frame
  ground truth of the (un-augmented) view. Returns the per-example metric arrays of
  ``simajax.metrics.per_example_metrics`` plus 'mask' and 'vis_ratio', one row per view.
  ``fscore_chunk_size`` = the number of data-parallel devices spreads the F-score work over them.
  """

  def eval_step(variables, batch):
    outputs, _ = model.apply(variables, *_model_inputs(stage, batch, multi_view), train=False)
    if stage == "mvr":
      outputs = flatten_views(outputs)
    views = per_view(batch, multi_view)
    result = metrics.per_example_metrics(outputs["joints_rotated"], outputs["verts_rotated"],
                                         views["joints_camera"], views["verts_camera"],
                                         fscore_chunk_size=fscore_chunk_size)
    result["mask"] = example_weights(batch, multi_view) * views["has_mesh"].astype(jnp.float32)
    result["vis_ratio"] = views["vis_ratio"]
    return result

  return eval_step
