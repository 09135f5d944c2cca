"""Evaluation metrics of SiMA-Hand (docs/training.md#evaluation-protocol).

Two layers:

* `per_example_metrics` (JAX, batched, fixed shapes, jit-able): for each example, the
  root-relative and Procrustes-aligned joint / vertex errors and F-scores.
* `MetricAccumulator` (host-side numpy): streams those per-example results over a whole split,
  with a padding mask and a per-example visibility ratio, and reports the split's metrics overall
  and on the occluded / non-occluded subsets, with the PCK curves.

Protocol:

* Inputs are in metres; errors are reported in mm, AUC and F-scores as fractions in [0, 1].
* Root-relative: the prediction's joint 0 (wrist) is subtracted from the predicted joints and
  vertices, the GT's joint 0 from the GT joints and vertices (SiMA/H2ONet evaluate).
* PA: `align_w_scale` (FreiHAND), a similarity Procrustes with scale and **no reflection fix**;
  joints are aligned on joints and vertices on vertices, independently.
* AUC: per-keypoint PCK (fraction of examples with error <= t) at 100 thresholds linearly spaced
  in [0, 50] mm, trapezoid area divided by the 50 mm range, averaged over keypoints (FreiHAND
  ``EvalUtil.get_measures(0, 50, 100)``).
* F-score @5 / @15 mm: from vertex-to-vertex nearest-neighbour distances between the 778
  predicted and 778 GT vertices; a point counts when its distance is < the threshold; F = 2PR/(P+R),
  0 when P + R = 0; averaged over examples.
* "Before alignment" AUC and F-score use the **root-relative** prediction and GT. FreiHAND's
  unaligned numbers use absolute camera-space points, but SiMA's network predicts its mesh in the
  MANO frame, not at the camera-space position of the hand, so an absolute comparison would measure
  the missing translation rather than the reconstruction; root-relative is also how JPE/VPE (the
  same tables' unaligned errors) are defined. The wrist therefore has 0 root-relative error, as in
  the official JPE.

Numerics (float32): errors are computed from root-relative coordinates (tenths of a metre) so
there is no cancellation against camera-space depth. Nearest-neighbour distances are screened
with a fast matrix-product formula (|a|^2 + |b|^2 - 2ab on centred points); every point whose
screened distance lies within that formula's rounding bound of a threshold is recomputed exactly
from coordinate differences, so the F-score decisions equal those of a direct float32 computation.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

MM_PER_M = 1000.0
ROOT_JOINT = 0
FSCORE_THRESHOLDS_M = (0.005, 0.015)
PCK_MAX_MM = 50.0
PCK_STEPS = 100
OCCLUSION_THRESHOLD = 0.4

METRIC_NAMES = ("jpe", "vpe", "pa_jpe", "pa_vpe", "jauc", "vauc", "pa_jauc", "pa_vauc",
                "f5", "f15", "pa_f5", "pa_f15")
# Per-example scalars averaged over examples, and per-keypoint errors that feed the PCK curves.
SCALAR_KEYS = ("jpe", "vpe", "pa_jpe", "pa_vpe", "f5", "f15", "pa_f5", "pa_f15")
CURVE_KEYS = ("joint_err", "vert_err", "pa_joint_err", "pa_vert_err")
# Which AUC metric each per-keypoint error array produces, and the curve's report name.
_AUC_OF_CURVE = {"joint_err": "jauc", "vert_err": "vauc", "pa_joint_err": "pa_jauc",
                 "pa_vert_err": "pa_vauc"}
CURVE_NAMES = {"joint_err": "joints", "vert_err": "verts", "pa_joint_err": "pa_joints",
               "pa_vert_err": "pa_verts"}
GROUPS = ("overall", "occluded", "non_occluded")

_HIGHEST = jax.lax.Precision.HIGHEST


def pck_thresholds_mm(max_mm: float = PCK_MAX_MM, steps: int = PCK_STEPS) -> np.ndarray:
  """The PCK thresholds, ``linspace(0, max_mm, steps)`` in float64 (both ends included)."""
  return np.linspace(0.0, max_mm, steps)


def root_relative(points, root):
  """Subtracts a root point.

  Args:
    points: [..., N, 3].
    root: [..., 3] root position (e.g. joints[..., 0, :]).

  Returns:
    [..., N, 3] points relative to the root.
  """
  return points - root[..., None, :]


def align_w_scale(gt, pred):
  """Similarity Procrustes of ``pred`` onto ``gt``, exactly as FreiHAND's ``align_w_scale``.

  Both point sets are centred on their means and divided by their Frobenius norms (+1e-8);
  M = gt_n^T pred_n = U S V^T; R = U V^T (reflections are **not** excluded, as scipy's
  ``orthogonal_procrustes``); s = sum(S); aligned = (pred_n R^T) s ||gt_c|| + mean(gt).

  Args:
    gt: [..., N, 3] ground truth.
    pred: [..., N, 3] prediction.

  Returns:
    [..., N, 3] the aligned prediction.
  """
  gt_mean = jnp.mean(gt, axis=-2, keepdims=True)
  pred_mean = jnp.mean(pred, axis=-2, keepdims=True)
  gt_c = gt - gt_mean
  pred_c = pred - pred_mean
  gt_scale = jnp.sqrt(jnp.sum(gt_c * gt_c, axis=(-2, -1), keepdims=True)) + 1e-8
  pred_scale = jnp.sqrt(jnp.sum(pred_c * pred_c, axis=(-2, -1), keepdims=True)) + 1e-8
  gt_n = gt_c / gt_scale
  pred_n = pred_c / pred_scale
  m = jnp.einsum("...ni,...nj->...ij", gt_n, pred_n, precision=_HIGHEST)
  u, s, vt = jnp.linalg.svd(m)
  rotation = u @ vt
  scale = jnp.sum(s, axis=-1)[..., None, None]
  aligned = jnp.einsum("...nj,...ij->...ni", pred_n, rotation, precision=_HIGHEST)
  return aligned * scale * gt_scale + gt_mean


def point_errors(pred, gt):
  """[..., N] Euclidean distances between corresponding points (same units as the input)."""
  diff = pred - gt
  return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def _sq_dists(a, b):
  """[..., N, M] squared distances from explicit coordinate differences (no cancellation)."""
  return sum((a[..., :, None, k] - b[..., None, :, k]) ** 2 for k in range(3))


def _refine(approx_min, ambiguous, points, others, slots):
  """Recomputes exactly the nearest-neighbour distance of up to ``slots`` ambiguous points."""
  if slots == 0:  # nothing to refine: any ambiguous point sends the step to the exact fallback
    return approx_min
  _, idx = jax.lax.top_k(ambiguous.astype(jnp.float32), slots)  # ambiguous points first
  picked = jnp.take_along_axis(points, idx[..., None], axis=-2)
  exact = jnp.min(_sq_dists(picked, others), axis=-1)
  needed = jnp.take_along_axis(ambiguous, idx, axis=-1)
  # Written back by comparison rather than a scatter, which sharded batches handle poorly.
  hit = (jnp.arange(approx_min.shape[-1])[:, None] == idx[..., None, :]) & needed[..., None, :]
  replacement = jnp.max(jnp.where(hit, exact[..., None, :], -jnp.inf), axis=-1)
  return jnp.where(jnp.any(hit, axis=-1), replacement, approx_min)


def _fscore_chunk(pred, gt, thresholds, slots):
  """F-scores of a chunk of examples: pred, gt [c, N, 3] -> [c, T]."""
  centre = jnp.mean(gt, axis=-2, keepdims=True)
  p = pred - centre
  g = gt - centre
  sq_p = jnp.sum(p * p, axis=-1, keepdims=True)
  sq_g = jnp.sum(g * g, axis=-1, keepdims=True)
  # One product gives |p|^2 + |g|^2 - 2 p.g for every pair (multiplying by -2 is exact).
  lhs = jnp.concatenate([p, sq_p, jnp.ones_like(sq_p)], axis=-1)
  rhs = jnp.concatenate([-2.0 * g, jnp.ones_like(sq_g), sq_g], axis=-1)
  d2 = jnp.einsum("cik,cjk->cij", lhs, rhs, precision=_HIGHEST)
  min_p = jnp.min(d2, axis=-1)  # each predicted point to its nearest GT point
  min_g = jnp.min(d2, axis=-2)  # each GT point to its nearest predicted point
  # Rounding bound of the formula: |error| <= 8 u (|p| + |g|)^2 with u = eps / 2; doubled.
  radius = (jnp.max(jnp.sqrt(sq_p[..., 0]), axis=-1) + jnp.max(jnp.sqrt(sq_g[..., 0]), axis=-1))
  bound = 8.0 * jnp.finfo(d2.dtype).eps * radius * radius
  th2 = jnp.square(jnp.asarray(thresholds, d2.dtype))

  def ambiguous(mins):
    return jnp.any(jnp.abs(mins[..., None] - th2) <= bound[:, None, None], axis=-1)

  amb_p, amb_g = ambiguous(min_p), ambiguous(min_g)
  overflow = jnp.any(jnp.sum(amb_p, -1) > slots) | jnp.any(jnp.sum(amb_g, -1) > slots)
  def exact_both():
    d2_exact = _sq_dists(pred, gt)
    return jnp.min(d2_exact, axis=-1), jnp.min(d2_exact, axis=-2)

  # Exact distances from the un-centred coordinates, so no rounding from the centring enters.
  min_p, min_g = jax.lax.cond(
      overflow,
      exact_both,
      lambda: (_refine(min_p, amb_p, pred, gt, slots), _refine(min_g, amb_g, gt, pred, slots)))
  precision = jnp.mean(min_p[..., None] < th2, axis=-2)
  recall = jnp.mean(min_g[..., None] < th2, axis=-2)
  total = precision + recall
  return jnp.where(total > 0, 2.0 * precision * recall / jnp.where(total > 0, total, 1.0), 0.0)


def fscore(pred_verts, gt_verts, thresholds=FSCORE_THRESHOLDS_M, chunk_size: int = 2,
           refine_slots: int = 32):
  """Per-example F-scores from vertex-to-vertex nearest-neighbour distances (FreiHAND).

  The batch is processed by a sequential map, ``chunk_size`` examples per step, which bounds
  memory to chunk_size * N * M floats and keeps each distance matrix in cache. A step takes
  examples ``chunk_size`` apart in the batch ([B] -> [chunk, B / chunk], mapped over the second
  axis), so when the batch axis is sharded over devices and ``chunk_size`` is a multiple of their
  number, each step works on every device and the mapped axis is never the sharded one.

  Args:
    pred_verts: [B, N, 3] predicted vertices (metres).
    gt_verts: [B, M, 3] ground-truth vertices (metres).
    thresholds: distance thresholds in metres.
    chunk_size: examples per step (2 is fastest on a CPU; use a multiple of the number of
      devices the batch is split over).
    refine_slots: per example and side, how many near-threshold points are recomputed exactly
      before the whole step falls back to the exact (slower) computation.

  Returns:
    [B, len(thresholds)] F-scores in [0, 1].
  """
  batch = pred_verts.shape[0]
  pad = (-batch) % chunk_size
  if pad:
    pred_verts = jnp.concatenate([pred_verts, jnp.repeat(pred_verts[-1:], pad, axis=0)])
    gt_verts = jnp.concatenate([gt_verts, jnp.repeat(gt_verts[-1:], pad, axis=0)])
  steps = (batch + pad) // chunk_size

  def strided(x):  # row i * steps + s -> [s, i]
    return jnp.swapaxes(x.reshape((chunk_size, steps) + x.shape[1:]), 0, 1)

  scores = jax.lax.map(lambda pg: _fscore_chunk(pg[0], pg[1], tuple(thresholds), refine_slots),
                       (strided(pred_verts), strided(gt_verts)))  # [steps, chunk, T]
  return jnp.swapaxes(scores, 0, 1).reshape((-1, len(thresholds)))[:batch]


def per_example_metrics(pred_joints, pred_verts, gt_joints, gt_verts, *,
                        fscore_chunk_size: int = 2):
  """Per-example metric values of a batch (jit-able; all shapes fixed).

  Args:
    pred_joints: [B, 21, 3] predicted joints, metres (any frame: they are made root-relative).
    pred_verts: [B, V, 3] predicted vertices, metres.
    gt_joints: [B, 21, 3] ground-truth joints, metres.
    gt_verts: [B, V, 3] ground-truth vertices, metres.
    fscore_chunk_size: examples per step of the F-score's sequential map (see `fscore`); for a
      batch sharded over devices, a multiple of their number.

  Returns:
    A dict of arrays: 'jpe', 'vpe', 'pa_jpe', 'pa_vpe' [B] in mm (mean over points of the
    Euclidean error); 'f5', 'f15', 'pa_f5', 'pa_f15' [B] in [0, 1]; and the per-point errors in mm
    'joint_err', 'pa_joint_err' [B, 21] and 'vert_err', 'pa_vert_err' [B, V] for the PCK curves.
  """
  pred_root = pred_joints[..., ROOT_JOINT, :]
  gt_root = gt_joints[..., ROOT_JOINT, :]
  pj = root_relative(pred_joints, pred_root)
  pv = root_relative(pred_verts, pred_root)
  gj = root_relative(gt_joints, gt_root)
  gv = root_relative(gt_verts, gt_root)
  pa_pj = align_w_scale(gj, pj)
  pa_pv = align_w_scale(gv, pv)
  out = {
      "joint_err": point_errors(pj, gj) * MM_PER_M,
      "vert_err": point_errors(pv, gv) * MM_PER_M,
      "pa_joint_err": point_errors(pa_pj, gj) * MM_PER_M,
      "pa_vert_err": point_errors(pa_pv, gv) * MM_PER_M,
  }
  for name, key in (("jpe", "joint_err"), ("vpe", "vert_err"), ("pa_jpe", "pa_joint_err"),
                    ("pa_vpe", "pa_vert_err")):
    out[name] = jnp.mean(out[key], axis=-1)
  f = fscore(pv, gv, chunk_size=fscore_chunk_size)
  pa_f = fscore(pa_pv, gv, chunk_size=fscore_chunk_size)
  out["f5"], out["f15"] = f[:, 0], f[:, 1]
  out["pa_f5"], out["pa_f15"] = pa_f[:, 0], pa_f[:, 1]
  return out


# The jitted form that `simajax.evaluate` uses; share it so each batch shape compiles once.
per_example_metrics_jit = jax.jit(per_example_metrics, static_argnames=("fscore_chunk_size",))


def auc_from_pck(pck, thresholds) -> np.ndarray:
  """Area under PCK curves, normalised by the threshold range (FreiHAND ``get_measures``).

  Args:
    pck: [..., T] PCK values at ``thresholds``.
    thresholds: [T] increasing thresholds.

  Returns:
    [...] AUC in [0, 1].
  """
  thresholds = np.asarray(thresholds, np.float64)
  pck = np.asarray(pck, np.float64)
  widths = np.diff(thresholds)
  area = np.sum(0.5 * (pck[..., 1:] + pck[..., :-1]) * widths, axis=-1)
  return area / (thresholds[-1] - thresholds[0])


class MetricAccumulator:
  """Streams per-example metric values over a split (host-side numpy state).

  Each ``update`` takes one batch of `per_example_metrics` outputs with a padding mask, so padded
  rows of the last batch are ignored and every real example is counted exactly once. Subsets follow
  the per-example visibility ratio (docs/conventions.md#occlusion-label): occluded when 0 <= ratio < threshold,
  non-occluded when ratio >= threshold. A negative ratio (-1 by convention) means unknown: such an
  example counts in 'overall' only. Without any visibility, every example is unknown.

  Args:
    occlusion_threshold: visibility ratio below which an example is occluded (H2ONet: 0.4).
    pck_max_mm: last PCK threshold in mm.
    pck_steps: number of PCK thresholds.
  """

  def __init__(self, occlusion_threshold: float = OCCLUSION_THRESHOLD,
               pck_max_mm: float = PCK_MAX_MM, pck_steps: int = PCK_STEPS):
    self.occlusion_threshold = float(occlusion_threshold)
    self.thresholds_mm = pck_thresholds_mm(pck_max_mm, pck_steps)
    self._counts = np.zeros(len(GROUPS), np.int64)
    self._unknown = 0
    self._sums = np.zeros((len(GROUPS), len(SCALAR_KEYS)), np.float64)
    # Per group and point: how many errors fall in each bin between consecutive thresholds; bin i
    # holds errors in (t[i-1], t[i]], bin T those above the last threshold.
    self._hist: dict[str, np.ndarray] = {}

  @property
  def count(self) -> int:
    """Number of (unmasked) examples accumulated so far."""
    return int(self._counts[0])

  def update(self, per_example: Mapping[str, np.ndarray], mask=None, visibility=None) -> None:
    """Adds one batch.

    Args:
      per_example: `per_example_metrics` output for a batch of B rows (JAX or numpy arrays).
      mask: [B] bool/0-1, False for padding rows; None means all rows are real.
      visibility: [B] visibility ratios (negative = unknown); None means all unknown.

    Raises:
      KeyError: for a missing per-example key.
      ValueError: for arrays whose batch sizes disagree, or NaN visibility.
    """
    missing = [k for k in SCALAR_KEYS + CURVE_KEYS if k not in per_example]
    if missing:
      raise KeyError(f"per-example metrics lack {missing}")
    values = {k: np.asarray(per_example[k]) for k in SCALAR_KEYS + CURVE_KEYS}
    batch = values["jpe"].shape[0]
    for key, value in values.items():
      if value.shape[0] != batch:
        raise ValueError(f"per-example {key!r} has {value.shape[0]} rows, expected {batch}")
    mask = np.ones(batch, bool) if mask is None else np.asarray(mask).astype(bool)
    if mask.shape != (batch,):
      raise ValueError(f"mask has shape {mask.shape}, expected ({batch},)")
    if visibility is None:
      visibility = np.full(batch, -1.0)
    visibility = np.asarray(visibility, np.float64)
    if visibility.shape != (batch,):
      raise ValueError(f"visibility has shape {visibility.shape}, expected ({batch},)")
    if np.isnan(visibility[mask]).any():
      raise ValueError("visibility contains NaN; use -1 for unknown visibility")

    members = np.stack([mask,
                        mask & (visibility >= 0) & (visibility < self.occlusion_threshold),
                        mask & (visibility >= self.occlusion_threshold)])  # [G, B]
    self._unknown += int(np.sum(mask & (visibility < 0)))
    self._counts += members.sum(axis=1)
    scalars = np.stack([values[k].astype(np.float64) for k in SCALAR_KEYS], axis=1)  # [B, S]
    self._sums += members.astype(np.float64) @ scalars
    bins = len(self.thresholds_mm) + 1
    for key in CURVE_KEYS:
      errors = values[key].astype(np.float64)  # [B, K]
      points = errors.shape[1]
      if key not in self._hist:
        self._hist[key] = np.zeros((len(GROUPS), points, bins), np.int64)
      elif self._hist[key].shape[1] != points:
        raise ValueError(f"per-example {key!r} has {points} points, earlier batches had "
                         f"{self._hist[key].shape[1]}")
      # searchsorted(side='left') gives the first threshold >= error, so error <= t[j] for all
      # j >= bin: the PCK's "<=" of FreiHAND.
      cell = np.arange(points) * bins + np.searchsorted(self.thresholds_mm, errors, side="left")
      for group in range(len(GROUPS)):
        rows = cell[members[group]].ravel()
        self._hist[key][group] += np.bincount(rows, minlength=points * bins).reshape(points, bins)

  def pck_curves(self) -> dict[str, dict[str, list[float] | None]]:
    """PCK curves per group: {group: {'joints'|'verts'|'pa_joints'|'pa_verts': [T] or None}}.

    Each curve is the mean over points of the per-point PCK; None for an empty group.
    """
    curves = {}
    for group_index, group in enumerate(GROUPS):
      n = self._counts[group_index]
      curves[group] = {}
      for key in CURVE_KEYS:
        hist = self._hist.get(key)
        if n == 0 or hist is None:
          curves[group][CURVE_NAMES[key]] = None
          continue
        per_point = np.cumsum(hist[group_index], axis=-1)[:, :-1] / n  # [K, T]
        curves[group][CURVE_NAMES[key]] = per_point.mean(axis=0).tolist()
    return curves

  def result(self) -> dict:
    """The split's metrics.

    Returns:
      A JSON-ready dict: 'metrics' {group: {'count': n, metric: value}} for the groups 'overall',
      'occluded', 'non_occluded' (values None for an empty group; errors in mm, AUC and F-scores
      as fractions in [0, 1]); 'units' (that note); 'unknown_visibility' (examples only in 'overall');
      'occlusion_threshold'; 'pck_curves' {'thresholds_mm': [T], group: {curve: [T] or None}}.
    """
    metrics = {}
    for group_index, group in enumerate(GROUPS):
      n = int(self._counts[group_index])
      entry: dict[str, float | int | None] = {"count": n}
      for name in METRIC_NAMES:
        entry[name] = None
      if n:
        for s, key in enumerate(SCALAR_KEYS):
          entry[key] = float(self._sums[group_index, s] / n)
        for key, auc_name in _AUC_OF_CURVE.items():
          per_point = np.cumsum(self._hist[key][group_index], axis=-1)[:, :-1] / n
          entry[auc_name] = float(np.mean(auc_from_pck(per_point, self.thresholds_mm)))
      metrics[group] = entry
    curves = {"thresholds_mm": self.thresholds_mm.tolist()}
    curves.update(self.pck_curves())
    return {
        "metrics": metrics,
        "units": {"jpe, vpe, pa_jpe, pa_vpe": "mm", "auc, f-scores": "fraction in [0, 1]"},
        "unknown_visibility": int(self._unknown),
        "occlusion_threshold": self.occlusion_threshold,
        "pck_curves": curves,
    }
