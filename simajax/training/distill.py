"""SiMA: single-to-multi-view adaptation, the distillation of stage 2 (paper §3.3, eq. 12).

The SVR student learns, besides L_Recon (``simajax.losses``), to match two features of the
frozen MVR teacher, run in eval mode on the same augmented multi-view batch:

  * L_SE (weight beta, ``LossWeights.se``): the student's lifted vertex-level features f_v^S
    [B, 49, C] against the teacher's fused vertex feature f_v^M (one per hand, repeated for each
    of its views);
  * L_OE (weight gamma, ``LossWeights.oe``): the student's enhanced orientation tokens f̂_o^S
    [B, 16, C] (the OFE's output, ``simajax.models.ofe``) against the teacher's fused
    orientation tokens f_o^M of the same view.

Here: the feature keys of both networks' intermediates, the teacher's targets
(``teacher_features``), the distance and the loss (``feature_distance``,
``distillation_loss``), and loading the frozen teacher from its run (``load_teacher``). The
training step that combines them with L_Recon is ``steps.make_train_step``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from simajax import cli, config_lib, losses
from simajax.losses import FEATURE_NORMS, LossWeights
from simajax.mesh import MeshTopology
from simajax.training import run_dir, sharding

# The student features SiMA distils into (SVR intermediates), and the teacher's fused features
# (MVR intermediates): f_v^M is one [49, C] feature per hand, f_o^M one [16, C] token map per view.
STUDENT_SE_KEY = "lifted_vertex_feature_f_v"
STUDENT_OE_KEY = "orientation_feature_enhanced_f_o_hat"
TEACHER_SE_KEY = "fused_vertex_feature"
TEACHER_OE_KEY = "fused_orientation_tokens"

# ``distillation_loss``'s default keys, for feature dicts of a caller's own; the trainer passes
# the student keys above.
SE_KEY = "vertex_features"
OE_KEY = "orientation_tokens"


def teacher_features(teacher: nn.Module, teacher_variables: Any,
                     batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The frozen MVR's f_v^M and f_o^M for every view of a multi-view batch, keyed like the
  student's features: f_v^M [B, 49, C] is repeated for each of the hand's V views."""
  _, mid = teacher.apply(teacher_variables, batch["image"], batch["view_valid"], train=False)
  num_views = batch["view_valid"].shape[1]
  # One row per view, in the student's order (example b * V + v, as ``steps.flatten_views``).
  f_v = jnp.repeat(mid[TEACHER_SE_KEY], num_views, axis=0)
  f_o = mid[TEACHER_OE_KEY]
  f_o = f_o.reshape((-1,) + f_o.shape[2:])
  return jax.lax.stop_gradient({STUDENT_SE_KEY: f_v, STUDENT_OE_KEY: f_o})


def feature_distance(student, teacher, mask=None, norm: str = "mse"):
  """Distance between student features and frozen teacher features (L_SE, L_OE).

  The teacher is wrapped in ``stop_gradient``: it is a fixed target.

  Args:
    student: [B, ...] student features, e.g. [B, 49, 256] or [B, 16, 1024].
    teacher: teacher features of the same shape.
    mask: optional weights over the leading (example) axes, e.g. [B] (see ``simajax.losses``).
    norm: 'mse' = element mean of the squared difference (the default, §6.1); 'l2' = mean over
      examples of the Euclidean norm of the difference (taken over all axes after the mask's, or
      after axis 0 without a mask); 'l1' = element mean of the absolute difference.

  Returns:
    Scalar loss.
  """
  if student.shape != teacher.shape:
    raise ValueError(f"student features {student.shape} and teacher features {teacher.shape} "
                     "differ in shape")
  teacher = jax.lax.stop_gradient(losses.zero_invalid(jnp.asarray(teacher), mask))
  diff = student - teacher
  if norm == "mse":
    return losses.masked_mean(jnp.square(diff), mask)
  if norm == "l1":
    return losses.masked_mean(jnp.abs(diff), mask)
  if norm == "l2":
    example_axes = 1 if mask is None else max(jnp.ndim(mask), 1)
    per_example = losses.safe_norm(diff, axis=tuple(range(example_axes, diff.ndim)))
    return losses.masked_mean(per_example, mask)
  raise ValueError(f"feature norm must be one of {FEATURE_NORMS}, got {norm!r}")


def distillation_loss(student_intermediates: Mapping[str, Any],
                      teacher_features: Mapping[str, Any],  # pylint: disable=redefined-outer-name
                      weights: LossWeights = LossWeights(), mask=None,
                      se_key: str = SE_KEY, oe_key: str = OE_KEY):
  """SiMA's beta L_SE + gamma L_OE (eq. 12, §6.1).

  Args:
    student_intermediates: the SVR's intermediates; ``se_key`` holds the lifted vertex-level
      features f_v^S [B, 49, 256], ``oe_key`` the enhanced orientation tokens f_o^S [B, 16, 1024].
      A one-element tuple or list (what flax's ``sow`` stores) is unwrapped.
    teacher_features: the frozen MVR's f_v^M and f_o^M under the same keys, one row per student
      example (the per-hand f_v^M repeated for each of its views).
    weights: uses ``se`` (beta), ``oe`` (gamma) and ``feature_norm``; a 0 weight switches a
      term off.
    mask: optional per-example weights (e.g. 0 for views the teacher could not see).
    se_key: key of the vertex-level features.
    oe_key: key of the orientation tokens.

  Returns:
    (total, terms): the weighted sum, and a dict with the unweighted 'se' and 'oe' values.
  """

  def features(tree, key, what, term):
    value = losses.require_input(tree, key, what, term)
    if isinstance(value, (tuple, list)) and len(value) == 1:
      value = value[0]
    return value

  def term_fn(term, key):
    def compute(m):
      student = features(student_intermediates, key, "student_intermediates", term)
      teacher = features(teacher_features, key, "teacher_features", term)
      if student.shape != teacher.shape:
        raise ValueError(f"{term!r} loss: student {key!r} has shape {student.shape} but the "
                         f"teacher's has {teacher.shape}")
      return feature_distance(student, teacher, m, norm=weights.feature_norm)
    return compute

  definitions = {"se": term_fn("se", se_key), "oe": term_fn("oe", oe_key)}
  return losses.weighted_sum(definitions, weights, mask, {})


def load_teacher(config: ml_collections.ConfigDict, topology: MeshTopology, mesh):
  """The frozen MVR teacher: module and params-only variables from its run's best checkpoint.

  Loaded on every start (resume included) and never written into the student's checkpoints.

  Args:
    config: the student's config; ``distill.teacher_checkpoint`` names the teacher's run and
      ``distill.teacher_config`` optionally replaces its ``config.json``.
    topology: the student's mesh topology, which the teacher is built on (their vertex-level
      features must correspond).
    mesh: the device mesh the variables are placed on.

  Returns:
    (the MVR module, its variables on ``mesh``).

  Raises:
    UserError / FileNotFoundError: in one line, for a missing teacher, a run that is not an MVR
      run, or a checkpoint that does not restore.
  """
  teacher_dir = config.distill.teacher_checkpoint
  if not teacher_dir:
    raise cli.UserError("distill.enabled is True but distill.teacher_checkpoint is not set: "
                        "pass --config.distill.teacher_checkpoint=<MVR workdir> (or disable "
                        "distillation with --config.distill.enabled=False for the plain SVR "
                        "baseline)")
  teacher_config_path = (config.distill.teacher_config
                         or os.path.join(teacher_dir, run_dir.CONFIG_FILE))
  if not os.path.exists(teacher_config_path):
    raise FileNotFoundError(f"teacher config {teacher_config_path} not found (an MVR workdir "
                            f"has a {run_dir.CONFIG_FILE}; or set distill.teacher_config)")
  teacher_config = config_lib.load_config(teacher_config_path)
  if teacher_config.stage != "mvr":
    raise cli.UserError(f"{teacher_config_path}: the teacher must be an MVR run, got stage "
                        f"{teacher_config.stage!r}")
  # Its best (else latest) checkpoint that restores: a damaged one is skipped with a warning.
  teacher = run_dir.load_run(teacher_dir, config=teacher_config, topology=topology)
  variables = jax.device_put(teacher.variables,
                             sharding.state_shardings(mesh, teacher.variables))
  return teacher.model, variables
