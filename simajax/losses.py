"""Training losses of SiMA-Hand: L_Recon (H2ONet's terms, paper eq. 7-11) and their weights.

SiMA's distillation terms L_SE and L_OE (eq. 12) are in ``simajax.training.distill``; their
weights and distance are fields of ``LossWeights`` here, with the reconstruction terms'. Every
loss is a pure, batched JAX function of explicit arrays (docs/architecture.md#sima-distillation and docs/architecture.md#reconstruction-loss):

  * L1 terms (canonical and rotated mesh and joints, 2D joints): the mean of |pred - gt| over every
    element, as the official code's ``F.l1_loss``.
  * Normal loss (canonical mesh): for every face, the GT face normal
    n = normalise(normalise(g1 - g0) x normalise(g2 - g0)) against the three unit-normalised
    predicted edges (p1 - p0, p2 - p0, p2 - p1); the mean of |<edge, n>| over the 3 x F pairs.
  * Edge-length loss (canonical mesh): the mean over faces and their edges (0-1, 0-2, 1-2) of
    |pred edge length - GT edge length|.
  * Rotation loss: the official element-wise MSE between the 3x3 matrices, or the paper's
    ||R_gt R_pred^T - I||_F (eq. 10) as an option.

Masking: each function takes an optional ``mask``, a per-example weight of shape ``[B]`` (or any
shape that matches the leading axes of the loss elements, e.g. ``[B, V]`` for views, with size-1
axes broadcast). The mean is then taken over valid elements only, weighted by the mask, so missing
views or labels contribute nothing; an all-invalid batch gives 0, not NaN. Ground truth of masked
examples is zeroed before use, so it may hold NaN placeholders without poisoning the loss or its
gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

# torch.nn.functional.normalize's eps: x / max(||x||, eps).
_NORMALIZE_EPS = 1e-12

ROTATION_FORMS = ("mse", "frobenius")
FEATURE_NORMS = ("mse", "l2", "l1")  # the distances of L_SE / L_OE (distill.feature_distance)

RECONSTRUCTION_TERMS = ("mesh_canonical", "joints_canonical", "mesh_rotated", "joints_rotated",
                        "joints_2d", "normal", "edge", "rotation")
DISTILLATION_TERMS = ("se", "oe")


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Loss weights and forms; the defaults are the official code's (normal 0.1, all others 1).

  A term whose weight is 0 is switched off: it is neither computed nor reported, and its ground
  truth is not needed. Weights are Python floats, static under ``jax.jit`` (close over them).

  Attributes:
    mesh_canonical: L_M^c, L1 on the canonical (zero-root-pose) vertices.
    joints_canonical: L_J^c, L1 on the canonical joints.
    mesh_rotated: L_M^r, L1 on the rotated vertices.
    joints_rotated: L_J^r, L1 on the rotated joints.
    joints_2d: L_J2D, L1 on the 2D joints in [0, 1] crop coordinates.
    normal: L_N^c, normal consistency on the canonical mesh.
    edge: L_E^c, edge-length consistency on the canonical mesh.
    rotation: L_R on the 3x3 global rotation matrices.
    se: beta, weight of L_SE (vertex-level shape features).
    oe: gamma, weight of L_OE (enhanced orientation tokens).
    rotation_form: 'mse' (official code) or 'frobenius' (paper eq. 10).
    feature_norm: distance used by L_SE and L_OE: 'mse', 'l2' or 'l1' (see
      ``distill.feature_distance``).
  """
  mesh_canonical: float = 1.0
  joints_canonical: float = 1.0
  mesh_rotated: float = 1.0
  joints_rotated: float = 1.0
  joints_2d: float = 1.0
  normal: float = 0.1
  edge: float = 1.0
  rotation: float = 1.0
  se: float = 1.0
  oe: float = 1.0
  rotation_form: str = "mse"
  feature_norm: str = "mse"

  def __post_init__(self):
    if self.rotation_form not in ROTATION_FORMS:
      raise ValueError(f"LossWeights.rotation_form must be one of {ROTATION_FORMS}, "
                       f"got {self.rotation_form!r}")
    if self.feature_norm not in FEATURE_NORMS:
      raise ValueError(f"LossWeights.feature_norm must be one of {FEATURE_NORMS}, "
                       f"got {self.feature_norm!r}")
    for name in RECONSTRUCTION_TERMS + DISTILLATION_TERMS:
      if getattr(self, name) < 0:
        raise ValueError(f"LossWeights.{name} must be >= 0, got {getattr(self, name)}")

  @classmethod
  def stage1(cls, **overrides) -> LossWeights:
    """Stage 1 of the two-stage recipe (docs/training.md#two-stage-split): canonical mesh and joints, 2D, normal, edge.

    Args:
      **overrides: field values that replace the stage-1 defaults.

    Returns:
      Weights with the rotated, rotation and distillation terms switched off.
    """
    values = dict(mesh_rotated=0.0, joints_rotated=0.0, rotation=0.0, se=0.0, oe=0.0)
    values.update(overrides)
    return cls(**values)

  @classmethod
  def from_config(cls, config: Mapping[str, Any] | Any) -> LossWeights:
    """Builds weights from a mapping or an ``ml_collections.ConfigDict``.

    Args:
      config: keys among this dataclass's fields; missing keys keep their defaults.

    Returns:
      The weights.

    Raises:
      ValueError: for a key that is not a field (a typo would otherwise be silently ignored).
    """
    values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown loss config keys {unknown}; expected some of {sorted(known)}")
    return cls(**values)


def _expand_mask(mask, shape: tuple[int, ...], dtype):
  """Reshapes ``mask`` to align with the leading axes of ``shape`` and broadcasts it."""
  mask = jnp.asarray(mask, dtype)
  if mask.ndim > len(shape):
    raise ValueError(f"mask of shape {mask.shape} has more axes than the loss elements {shape}")
  for axis, (m, s) in enumerate(zip(mask.shape, shape)):
    if m not in (1, s):
      raise ValueError(f"mask of shape {mask.shape} does not match the leading axes of the loss "
                       f"elements {shape} (axis {axis}: {m} vs {s})")
  mask = mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
  return jnp.broadcast_to(mask, shape)


def masked_mean(values, mask=None):
  """Mean of ``values``, weighted by ``mask`` over its leading axes.

  Args:
    values: [B, ...] per-element losses.
    mask: None, or weights whose shape matches the leading axes of ``values`` (size-1 axes
      broadcast), e.g. [B]. Zero means invalid.

  Returns:
    A scalar: sum(mask * values) / sum(mask) over all elements, 0 when no element is valid.
    Masked-out elements contribute exactly 0 even if they are NaN.
  """
  if mask is None:
    return jnp.mean(values)
  weights = _expand_mask(mask, values.shape, values.dtype)
  valid = weights != 0
  total = jnp.sum(jnp.where(valid, values, 0.0) * weights)
  count = jnp.sum(weights)
  return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)


def zero_invalid(gt, mask):
  """Zeroes the targets of masked-out examples, so NaN placeholders cannot leak."""
  if mask is None:
    return gt
  valid = _expand_mask(mask, gt.shape, gt.dtype) != 0
  return jnp.where(valid, gt, 0.0)


def safe_norm(x, axis=-1, keepdims=False):
  """Euclidean norm whose gradient is 0 (not NaN) at the zero vector."""
  squared = jnp.sum(x * x, axis=axis, keepdims=keepdims)
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _normalize(x):
  """torch.nn.functional.normalize(x, dim=-1): x / max(||x||, 1e-12)."""
  return x / jnp.maximum(safe_norm(x, keepdims=True), _NORMALIZE_EPS)


def l1_loss(pred, gt, mask=None):
  """Mean absolute error over every element (L_M, L_J, L_J2D).

  Args:
    pred: [B, ...] prediction.
    gt: ground truth, same shape.
    mask: optional per-example weights (see module docstring).

  Returns:
    Scalar loss.
  """
  gt = zero_invalid(jnp.asarray(gt), mask)
  return masked_mean(jnp.abs(pred - gt), mask)


def _face_corners(verts, faces):
  faces = jnp.asarray(faces)
  return verts[..., faces[:, 0], :], verts[..., faces[:, 1], :], verts[..., faces[:, 2], :]


def normal_loss(pred_verts, gt_verts, faces, mask=None):
  """Normal consistency L_N^c (H2ONet/MobRecon ``NormalVectorLoss``).

  Args:
    pred_verts: [B, V, 3] predicted vertices.
    gt_verts: [B, V, 3] ground-truth vertices.
    faces: [F, 3] integer triangle vertex ids.
    mask: optional per-example weights.

  Returns:
    Scalar: mean over batch, faces and the 3 predicted edges of |<unit edge, GT unit normal>|.
  """
  gt_verts = zero_invalid(jnp.asarray(gt_verts), mask)
  p0, p1, p2 = _face_corners(pred_verts, faces)
  g0, g1, g2 = _face_corners(gt_verts, faces)
  gt_normal = _normalize(jnp.cross(_normalize(g1 - g0), _normalize(g2 - g0)))
  edges = jnp.stack([_normalize(p1 - p0), _normalize(p2 - p0), _normalize(p2 - p1)], axis=-2)
  cosines = jnp.abs(jnp.sum(edges * gt_normal[..., None, :], axis=-1))  # [B, F, 3]
  return masked_mean(cosines, mask)


def edge_length_loss(pred_verts, gt_verts, faces, mask=None):
  """Edge-length consistency L_E^c (H2ONet/MobRecon ``EdgeLengthLoss``); arguments as
  ``normal_loss``. Returns the mean over batch, faces and edges (0-1, 0-2, 1-2) of
  |pred length - GT length|."""
  gt_verts = zero_invalid(jnp.asarray(gt_verts), mask)

  def lengths(verts):
    v0, v1, v2 = _face_corners(verts, faces)
    return jnp.stack([safe_norm(v0 - v1), safe_norm(v0 - v2), safe_norm(v1 - v2)], axis=-1)

  return masked_mean(jnp.abs(lengths(pred_verts) - lengths(gt_verts)), mask)


def rotation_loss(pred_rot, gt_rot, mask=None, form: str = "mse"):
  """Global-rotation loss L_R.

  Args:
    pred_rot: [B, 3, 3] predicted rotation matrices.
    gt_rot: [B, 3, 3] ground-truth rotation matrices.
    mask: optional per-example weights.
    form: 'mse' (official code: mean over the 9 entries of (pred - gt)^2) or 'frobenius' (paper
      eq. 10: ||gt pred^T - I||_F per example, averaged over examples).

  Returns:
    Scalar loss.
  """
  gt_rot = zero_invalid(jnp.asarray(gt_rot), mask)
  if form == "mse":
    return masked_mean(jnp.square(pred_rot - gt_rot), mask)
  if form == "frobenius":
    residual = gt_rot @ jnp.swapaxes(pred_rot, -1, -2) - jnp.eye(3, dtype=pred_rot.dtype)
    return masked_mean(safe_norm(residual, axis=(-2, -1)), mask)
  raise ValueError(f"rotation loss form must be one of {ROTATION_FORMS}, got {form!r}")


def require_input(tree: Mapping[str, Any], key: str, what: str, term: str):
  """``tree[key]``, the input of loss ``term``.

  Raises:
    KeyError: naming the missing key, ``what`` lacks it, the keys present and the way out.
  """
  if key not in tree:
    raise KeyError(f"{what} has no {key!r}, needed by the {term!r} loss (present: "
                   f"{sorted(tree)}); set its weight to 0 to switch the term off")
  return tree[key]


def reconstruction_loss(pred: Mapping[str, Any], gt: Mapping[str, Any], faces,
                        weights: LossWeights = LossWeights(), mask=None,
                        term_masks: Mapping[str, Any] | None = None):
  """L_Recon of eq. 11, weighted as the official code (docs/architecture.md#reconstruction-loss).

  Args:
    pred: model outputs with keys verts_canonical [B,778,3], joints_canonical [B,21,3],
      verts_rotated [B,778,3], joints_rotated [B,21,3], joints_2d [B,21,2], rotation [B,3,3].
    gt: ground truth under the same keys (canonical = zero-root-pose MANO mesh and joints).
    faces: [F, 3] triangles of the canonical mesh, for the normal and edge terms.
    weights: term weights; a 0 weight switches a term off (`LossWeights.stage1()` for stage 1).
    mask: optional per-example weights shared by all terms.
    term_masks: optional per-term masks (keys from RECONSTRUCTION_TERMS) that replace ``mask``
      for those terms, e.g. for examples without 2D labels.

  Returns:
    (total, terms): the weighted sum, and a dict of the unweighted value of every active term.
  """
  term_masks = dict(term_masks or {})
  unknown = sorted(set(term_masks) - set(RECONSTRUCTION_TERMS))
  if unknown:
    raise ValueError(f"term_masks has unknown terms {unknown}; expected {RECONSTRUCTION_TERMS}")

  def inputs(term, key):
    return require_input(pred, key, "pred", term), require_input(gt, key, "gt", term)

  definitions = {
      "mesh_canonical": lambda m: l1_loss(*inputs("mesh_canonical", "verts_canonical"), m),
      "joints_canonical": lambda m: l1_loss(*inputs("joints_canonical", "joints_canonical"), m),
      "mesh_rotated": lambda m: l1_loss(*inputs("mesh_rotated", "verts_rotated"), m),
      "joints_rotated": lambda m: l1_loss(*inputs("joints_rotated", "joints_rotated"), m),
      "joints_2d": lambda m: l1_loss(*inputs("joints_2d", "joints_2d"), m),
      "normal": lambda m: normal_loss(*inputs("normal", "verts_canonical"), faces, m),
      "edge": lambda m: edge_length_loss(*inputs("edge", "verts_canonical"), faces, m),
      "rotation": lambda m: rotation_loss(*inputs("rotation", "rotation"), m,
                                          form=weights.rotation_form),
  }
  return weighted_sum(definitions, weights, mask, term_masks)


def weighted_sum(definitions, weights: LossWeights, mask, term_masks):
  """(sum of weight x term, {term: unweighted value}) over the terms of non-zero weight.

  Args:
    definitions: {term name (a ``LossWeights`` field): mask -> scalar loss}.
    weights: the term weights.
    mask: the default mask of every term.
    term_masks: {term name: mask} replacing ``mask`` for those terms.
  """
  total = jnp.zeros((), jnp.float32)
  terms = {}
  for name, compute in definitions.items():
    weight = getattr(weights, name)
    if weight == 0:
      continue
    terms[name] = compute(term_masks.get(name, mask))
    total = total + weight * terms[name]
  return total, terms
