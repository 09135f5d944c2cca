"""Metrics against an independent numpy/scipy implementation of the protocol (docs/training.md#evaluation-protocol)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from simajax import evaluate
from simajax import metrics as M

BATCH = 16  # one batch size for every metrics call here, so the metrics compile once


def _per_example(*arrays):
  """`per_example_metrics_jit` in batches of BATCH rows (the last padded), concatenated."""
  n = arrays[0].shape[0]
  outs = []
  for start in range(0, n, BATCH):
    rows = np.minimum(np.arange(start, start + BATCH), n - 1)
    outs.append(M.per_example_metrics_jit(*(np.asarray(a, np.float32)[rows] for a in arrays)))
  return {k: np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in outs[0]}


# ------------------------------------------------------------------------------------------------
# Independent reference (float64 numpy/scipy, written from the protocol text).
# ------------------------------------------------------------------------------------------------


def ref_align_w_scale(gt, pred):
  """docs/training.md#evaluation-protocol: centre, divide by Frobenius norms, M = GT_n^T Pred_n = U S V^T, R = U V^T, s = sum S."""
  gt_mean, pred_mean = gt.mean(0), pred.mean(0)
  gt_c, pred_c = gt - gt_mean, pred - pred_mean
  gt_norm = np.linalg.norm(gt_c) + 1e-8
  pred_n = pred_c / (np.linalg.norm(pred_c) + 1e-8)
  u, s, vt = np.linalg.svd((gt_c / gt_norm).T @ pred_n)
  return pred_n @ (u @ vt).T * s.sum() * gt_norm + gt_mean


def ref_fscore(pred, gt, th):
  """FreiHAND: nearest-neighbour distances both ways (KD-tree), counted when < th."""
  d_pred = cKDTree(gt).query(pred)[0]
  d_gt = cKDTree(pred).query(gt)[0]
  precision, recall = np.mean(d_pred < th), np.mean(d_gt < th)
  return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_auc(errors_mm):
  """Per-keypoint PCK (error <= t) on linspace(0, 50, 100), trapezoid / 50, mean over keypoints."""
  thresholds = np.linspace(0.0, 50.0, 100)
  pck = np.mean(errors_mm[:, :, None] <= thresholds, axis=0)  # [K, 100]
  aucs = np.trapezoid(pck, thresholds, axis=-1) / np.trapezoid(np.ones(100), thresholds)
  return float(np.mean(aucs))


def ref_metrics(pred_joints, pred_verts, gt_joints, gt_verts):
  """All twelve metrics of a set of examples, in float64."""
  f64 = lambda a: np.asarray(a, np.float64)
  pj, pv, gj, gv = map(f64, (pred_joints, pred_verts, gt_joints, gt_verts))
  pv, pj = pv - pj[:, :1], pj - pj[:, :1]
  gv, gj = gv - gj[:, :1], gj - gj[:, :1]
  pa_j = np.stack([ref_align_w_scale(g, p) for g, p in zip(gj, pj)])
  pa_v = np.stack([ref_align_w_scale(g, p) for g, p in zip(gv, pv)])
  err = lambda a, b: np.linalg.norm(a - b, axis=-1) * 1000.0
  out = {}
  for prefix, joints, verts in (("", pj, pv), ("pa_", pa_j, pa_v)):
    out[prefix + "jpe"] = err(joints, gj).mean()
    out[prefix + "vpe"] = err(verts, gv).mean()
    out[prefix + "jauc"] = ref_auc(err(joints, gj))
    out[prefix + "vauc"] = ref_auc(err(verts, gv))
    out[prefix + "f5"] = np.mean([ref_fscore(p, g, 0.005) for p, g in zip(verts, gv)])
    out[prefix + "f15"] = np.mean([ref_fscore(p, g, 0.015) for p, g in zip(verts, gv)])
  return out


def random_hands(n, seed, noise=0.006, offset=0.01):
  """GT around 0.7 m depth (camera frame) and predictions a few mm off, float32."""
  rng = np.random.default_rng(seed)
  centre = np.array([0.05, -0.02, 0.7])
  gv = rng.normal(scale=0.04, size=(n, 778, 3)) + centre
  gj = rng.normal(scale=0.04, size=(n, 21, 3)) + centre
  pv = gv + rng.normal(scale=noise, size=gv.shape) + offset
  pj = gj + rng.normal(scale=noise, size=gj.shape) + offset
  return tuple(a.astype(np.float32) for a in (pj, pv, gj, gv))


# ------------------------------------------------------------------------------------------------
# Per-example maths.
# ------------------------------------------------------------------------------------------------


def test_root_relative_errors_by_hand():
  rng = np.random.default_rng(0)
  gj = rng.normal(scale=0.05, size=(2, 21, 3)) + [0.0, 0.0, 0.6]
  gv = rng.normal(scale=0.05, size=(2, 778, 3)) + [0.0, 0.0, 0.6]
  # Example 0: the whole hand translated: root-relative errors vanish. Example 1: joints 1..20
  # and all vertices moved by (3, 4, 0) mm with the wrist in place: 5 mm on every moved point.
  pj, pv = gj.copy(), gv.copy()
  pj[0] += [0.1, -0.2, 0.3]
  pv[0] += [0.1, -0.2, 0.3]
  pj[1, 1:] += [0.003, 0.004, 0.0]
  pv[1] += [0.003, 0.004, 0.0]
  out = _per_example(*(a.astype(np.float32) for a in (pj, pv, gj, gv)))
  np.testing.assert_allclose(out["jpe"], [0.0, 5.0 * 20 / 21], atol=1e-4)
  np.testing.assert_allclose(out["vpe"], [0.0, 5.0], atol=1e-4)
  np.testing.assert_allclose(out["joint_err"][1], [0.0] + [5.0] * 20, atol=1e-4)
  assert out["vert_err"].shape == (2, 778) and out["pa_vert_err"].shape == (2, 778)


def test_align_w_scale_matches_svd_reference():
  rng = np.random.default_rng(1)
  gt = rng.normal(scale=0.05, size=(8, 778, 3))
  pred = gt @ Rotation.random(8, random_state=2).as_matrix() * 1.2 + rng.normal(
      scale=0.01, size=gt.shape)
  ours = np.asarray(M.align_w_scale(gt.astype(np.float32), pred.astype(np.float32)))
  ref = np.stack([ref_align_w_scale(g, p) for g, p in zip(gt, pred)])
  np.testing.assert_allclose(ours, ref, atol=2e-7)


@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_similarity_transform(reflect):
  rng = np.random.default_rng(3)
  gj = rng.normal(scale=0.05, size=(4, 21, 3)) + [0.0, 0.0, 0.7]
  gv = rng.normal(scale=0.05, size=(4, 778, 3)) + [0.0, 0.0, 0.7]
  rot = Rotation.random(4, random_state=4).as_matrix()
  if reflect:  # align_w_scale keeps det(R) = -1 solutions: a mirrored hand aligns exactly too
    rot = rot * np.array([1.0, 1.0, -1.0])
  scale, shift = 0.7, np.array([0.2, -0.1, 0.3])
  transform = lambda x: np.einsum("bij,bnj->bni", rot, x) * scale + shift
  out = _per_example(*(a.astype(np.float32) for a in (transform(gj), transform(gv), gj, gv)))
  np.testing.assert_allclose(out["pa_jpe"], 0.0, atol=1e-3)
  np.testing.assert_allclose(out["pa_vpe"], 0.0, atol=1e-3)
  np.testing.assert_allclose(out["pa_f5"], 1.0)
  assert np.all(np.asarray(out["vpe"]) > 1.0)  # unaligned, the transform is visible


def test_fscore_on_a_grid_by_hand():
  # Points 50 mm apart, shifts below 25 mm: each shifted point's nearest neighbour is its original.
  grid = np.stack(np.meshgrid(*[np.arange(10) * 0.05] * 3, indexing="ij"), -1).reshape(-1, 3)
  gt = grid[:778][None].astype(np.float32)
  shifts = np.array([[0.004, 0.0, 0.0], [0.0, 0.006, 0.0], [0.0, 0.0, 0.020]], np.float32)
  pred = gt + shifts[:, None, :]
  scores = np.asarray(jax.jit(M.fscore)(pred, np.repeat(gt, 3, axis=0)))
  # 4 mm: inside both thresholds; 6 mm: only inside 15 mm; 20 mm: P = R = 0 -> F = 0.
  np.testing.assert_array_equal(scores, [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])


def _direct_float32_fscore(pred, gt, th):
  """Brute force in numpy float32: the decisions the screened computation promises to match."""
  d2 = np.sum((pred[:, None, :] - gt[None, :, :]) ** 2, axis=-1, dtype=np.float32)
  th2 = np.float32(th) ** 2
  precision, recall = np.mean(d2.min(1) < th2), np.mean(d2.min(0) < th2)
  return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("at_threshold,slots", [(3, 32), (3, 0), (778, 32)])
def test_fscore_points_at_the_threshold(at_threshold, slots):
  # Points moved by exactly 5 mm or 15 mm sit at a threshold up to rounding, so the screening
  # cannot decide them: a few are refined exactly (3 points, 32 slots), or the exact fallback runs
  # (no slots, or more such points than slots). Every path must reproduce the direct float32
  # decisions; the other points moved by 1 mm are clear of both thresholds.
  grid = np.stack(np.meshgrid(*[np.arange(10) * 0.03] * 3, indexing="ij"), -1).reshape(-1, 3)
  gt = (grid[:778] + [0.011, -0.023, 0.007]).astype(np.float32)
  ids = np.arange(778)[:, None]
  shift = np.where(ids % 2 == 0, [0.005, 0.0, 0.0], [0.0, 0.0, 0.015])
  shift = np.where(ids < at_threshold, shift, [0.0, 0.001, 0.0])
  pred = (gt + shift).astype(np.float32)
  ours = np.asarray(jax.jit(lambda p, g: M.fscore(p, g, refine_slots=slots))(pred[None], gt[None]))
  expected = [_direct_float32_fscore(pred, gt, th) for th in M.FSCORE_THRESHOLDS_M]
  np.testing.assert_allclose(ours[0], expected, atol=1e-7)


def test_refinement_replaces_ambiguous_distances_exactly():
  rng = np.random.default_rng(11)
  points = rng.normal(scale=0.05, size=(2, 778, 3)).astype(np.float32)
  others = rng.normal(scale=0.05, size=(2, 778, 3)).astype(np.float32)
  ambiguous = np.zeros((2, 778), bool)
  ambiguous[0, [5, 100, 777]] = True
  ambiguous[1, [0]] = True
  refined = np.asarray(M._refine(jnp.full((2, 778), -1.0, jnp.float32), ambiguous, points, others,
                                 slots=4))
  for b in range(2):
    nearest = cKDTree(others[b]).query(points[b])[0] ** 2
    np.testing.assert_allclose(refined[b][ambiguous[b]], nearest[ambiguous[b]], rtol=1e-5)
    np.testing.assert_array_equal(refined[b][~ambiguous[b]], -1.0)  # untouched


def test_sharded_batch_gives_the_same_metrics():
  # The batch split over the 8 fake CPU devices (tests/conftest.py), as in a data-parallel eval
  # step; a chunk of 8 keeps every device busy in each step of the F-score's sequential map.
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  arrays = random_hands(BATCH, seed=12)
  sharded = M.per_example_metrics_jit(*(jax.device_put(a, sharding) for a in arrays),
                                      fscore_chunk_size=8)
  single = _per_example(*arrays)
  for key, value in single.items():
    np.testing.assert_allclose(np.asarray(sharded[key]), value, rtol=1e-6, atol=1e-6,
                               err_msg=key)


def test_fscore_matches_kdtree_per_example():
  pj, pv, gj, gv = random_hands(12, seed=5, noise=0.005)
  out = _per_example(pj, pv, gj, gv)
  pv64 = pv.astype(np.float64) - pj[:, :1].astype(np.float64)
  gv64 = gv.astype(np.float64) - gj[:, :1].astype(np.float64)
  for i in range(len(pv)):
    for key, th in (("f5", 0.005), ("f15", 0.015)):
      # F is monotone in the threshold, so points within 0.1 um of it (float32 rounding of the
      # inputs) may go either way; every other decision must agree.
      low, high = ref_fscore(pv64[i], gv64[i], th - 1e-7), ref_fscore(pv64[i], gv64[i], th + 1e-7)
      assert low - 1e-6 <= float(out[key][i]) <= high + 1e-6


# ------------------------------------------------------------------------------------------------
# Whole-split scoring.
# ------------------------------------------------------------------------------------------------


def test_all_metrics_match_reference():
  pj, pv, gj, gv = random_hands(40, seed=6)
  ours = evaluate.score_predictions(pj, pv, gj, gv, batch_size=BATCH)["metrics"]["overall"]
  ref = ref_metrics(pj, pv, gj, gv)
  assert ours["count"] == 40
  for name in M.METRIC_NAMES:
    np.testing.assert_allclose(ours[name], ref[name], rtol=1e-5, err_msg=name)
  assert 0.0 < ours["pa_f5"] < 1.0 and 0.0 < ours["vauc"] < 1.0  # fractions, not %


def test_auc_from_known_errors():
  # Errors fed straight to the accumulator: joint k of example i has error 10 * i + k mm (and
  # one example beyond the last threshold), so every PCK step is exercised.
  errors = np.array([[10.0 * i + k for k in range(21)] for i in range(6)])
  errors[5] = 80.0
  per_example = {key: np.zeros(6) for key in M.SCALAR_KEYS}
  per_example.update(joint_err=errors, pa_joint_err=errors / 2, vert_err=np.zeros((6, 778)),
                     pa_vert_err=np.full((6, 778), 50.0))
  acc = M.MetricAccumulator()
  acc.update(per_example)
  result = acc.result()["metrics"]["overall"]
  assert result["jauc"] == pytest.approx(ref_auc(errors), abs=1e-12)
  assert result["pa_jauc"] == pytest.approx(ref_auc(errors / 2), abs=1e-12)
  assert result["vauc"] == pytest.approx(1.0)  # error 0 <= every threshold
  # Error exactly 50 mm counts only at the last threshold: half of the last trapezoid step.
  assert result["pa_vauc"] == pytest.approx(0.5 * (50.0 / 99) / 50.0)
  curve = acc.result()["pck_curves"]["overall"]["joints"]
  assert len(curve) == 100 and np.all(np.diff(curve) >= 0)


def test_accumulator_padding_and_batch_splits_equal_one_shot():
  pj, pv, gj, gv = random_hands(22, seed=7)
  visibility = np.random.default_rng(8).uniform(-0.5, 1.0, size=22)
  one_shot = M.MetricAccumulator()
  one_shot.update(_per_example(pj, pv, gj, gv), visibility=visibility)
  expected = one_shot.result()

  streamed = M.MetricAccumulator()
  for start, stop in ((0, 5), (5, 6), (6, 17), (17, 22)):
    rows = np.arange(start, stop)
    # Pad each batch to BATCH rows with garbage that the mask must drop.
    padded = np.concatenate([rows, np.zeros(BATCH - len(rows), int)])
    batch = [a[padded].copy() for a in (pj, pv, gj, gv)]
    for a in batch:
      a[len(rows):] *= 37.0
    mask = np.arange(len(padded)) < len(rows)
    streamed.update(_per_example(*batch), mask=mask, visibility=visibility[padded])
  got = streamed.result()
  assert streamed.count == 22
  for group in M.GROUPS:
    for key, value in expected["metrics"][group].items():
      assert got["metrics"][group][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (group, key)
  np.testing.assert_allclose(got["pck_curves"]["overall"]["pa_verts"],
                             expected["pck_curves"]["overall"]["pa_verts"])

  # score_predictions pads its last batch too: 22 examples in batches of 16.
  scored = evaluate.score_predictions(pj, pv, gj, gv, visibility, batch_size=BATCH)
  for group in M.GROUPS:
    for key, value in expected["metrics"][group].items():
      assert scored["metrics"][group][key] == pytest.approx(value, rel=1e-6), (group, key)


def test_occlusion_subsets_partition():
  pj, pv, gj, gv = random_hands(10, seed=9)
  visibility = np.array([-1.0, 0.0, 0.39, 0.4, 0.9, -1.0, 1.3, 0.1, 0.41, 0.2])
  occluded, visible = visibility >= 0, visibility >= 0.4
  occluded &= ~visible
  scored = evaluate.score_predictions(pj, pv, gj, gv, visibility, batch_size=BATCH)
  metrics = scored["metrics"]
  assert metrics["overall"]["count"] == 10
  assert metrics["occluded"]["count"] == occluded.sum() == 4
  assert metrics["non_occluded"]["count"] == visible.sum() == 4
  assert scored["unknown_visibility"] == 2
  for group, rows in (("occluded", occluded), ("non_occluded", visible),
                      ("overall", np.ones(10, bool))):
    ref = ref_metrics(pj[rows], pv[rows], gj[rows], gv[rows])
    for name in M.METRIC_NAMES:
      np.testing.assert_allclose(metrics[group][name], ref[name], rtol=1e-5,
                                 err_msg=f"{group} {name}")

  relaxed = evaluate.score_predictions(pj, pv, gj, gv, visibility, batch_size=BATCH,
                                       occlusion_threshold=0.5)
  assert relaxed["metrics"]["occluded"]["count"] == 6  # 0.4 and 0.41 are now occluded


def test_empty_subset_and_no_visibility():
  pj, pv, gj, gv = random_hands(BATCH, seed=10)
  result = evaluate.score_predictions(pj, pv, gj, gv, batch_size=BATCH)
  assert result["unknown_visibility"] == BATCH
  for group in ("occluded", "non_occluded"):
    assert result["metrics"][group]["count"] == 0
    assert all(result["metrics"][group][name] is None for name in M.METRIC_NAMES)
    assert result["pck_curves"][group]["verts"] is None


def test_accumulator_rejects_bad_input():
  per_example = {key: np.zeros(2) for key in M.SCALAR_KEYS}
  per_example.update({key: np.zeros((2, 21)) for key in M.CURVE_KEYS})
  acc = M.MetricAccumulator()
  with pytest.raises(ValueError, match="NaN"):
    acc.update(per_example, visibility=np.array([0.5, np.nan]))
  with pytest.raises(ValueError, match="mask"):
    acc.update(per_example, mask=np.ones(3, bool))
  with pytest.raises(KeyError, match="pa_f5"):
    acc.update({k: v for k, v in per_example.items() if k != "pa_f5"})
  assert acc.count == 0
