"""Losses against values computed by hand with explicit loops (docs/architecture.md#sima-distillation and docs/architecture.md#reconstruction-loss)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from simajax import losses as L
from simajax.training import distill

RNG = np.random.default_rng(0)
FACES = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 2]])  # a tiny 5-vertex mesh
MASK = np.array([1.0, 0.0, 0.5])  # one dropped example and one half-weighted


def _rand(*shape):
  return RNG.normal(size=shape).astype(np.float32)


def _weighted_mean_by_loops(per_example_values, mask):
  """sum_b w_b sum_i v_bi / sum_b w_b n_b, accumulated one element at a time."""
  num = den = 0.0
  for b, values in enumerate(per_example_values):
    w = 1.0 if mask is None else float(mask[b])
    for v in values:
      num += w * v
      den += w
  return num / den if den else 0.0


def _unit(v):
  return v / math.sqrt(sum(c * c for c in v))


def _cross(a, b):
  return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _loop_l1(pred, gt):
  return [[abs(float(p) - float(g)) for p, g in zip(pb.ravel(), gb.ravel())]
          for pb, gb in zip(pred, gt)]


def _loop_normal(pred, gt, faces):
  out = []
  for p, g in zip(pred.astype(np.float64), gt.astype(np.float64)):
    values = []
    for f in faces:
      normal = _unit(_cross(_unit(g[f[1]] - g[f[0]]), _unit(g[f[2]] - g[f[0]])))
      for i, j in ((0, 1), (0, 2), (1, 2)):
        values.append(abs(float(np.dot(_unit(p[f[j]] - p[f[i]]), normal))))
    out.append(values)
  return out


def _loop_edge(pred, gt, faces):
  out = []
  for p, g in zip(pred.astype(np.float64), gt.astype(np.float64)):
    values = []
    for f in faces:
      for i, j in ((0, 1), (0, 2), (1, 2)):
        length = lambda x: math.sqrt(sum((x[f[i]] - x[f[j]]) ** 2))
        values.append(abs(length(p) - length(g)))
    out.append(values)
  return out


@pytest.mark.parametrize("mask", [None, MASK])
def test_l1_loss_by_hand(mask):
  pred, gt = _rand(3, 4, 3), _rand(3, 4, 3)
  expected = _weighted_mean_by_loops(_loop_l1(pred, gt), mask)
  assert float(L.l1_loss(pred, gt, mask)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mask", [None, MASK])
def test_normal_loss_by_hand(mask):
  pred, gt = _rand(3, 5, 3), _rand(3, 5, 3)
  expected = _weighted_mean_by_loops(_loop_normal(pred, gt, FACES), mask)
  assert float(L.normal_loss(pred, gt, FACES, mask)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mask", [None, MASK])
def test_edge_length_loss_by_hand(mask):
  pred, gt = _rand(3, 5, 3), _rand(3, 5, 3)
  expected = _weighted_mean_by_loops(_loop_edge(pred, gt, FACES), mask)
  assert float(L.edge_length_loss(pred, gt, FACES, mask)) == pytest.approx(expected, rel=1e-5)


def test_rotation_loss_forms_by_hand():
  pred, gt = _rand(3, 3, 3), _rand(3, 3, 3)
  mse = [[(float(pred[b, i, j]) - float(gt[b, i, j])) ** 2 for i in range(3) for j in range(3)]
         for b in range(3)]
  assert float(L.rotation_loss(pred, gt, MASK)) == pytest.approx(
      _weighted_mean_by_loops(mse, MASK), rel=1e-5)
  frob = []
  for b in range(3):
    residual = [sum(float(gt[b, i, k]) * float(pred[b, j, k]) for k in range(3)) - (i == j)
                for i in range(3) for j in range(3)]
    frob.append([math.sqrt(sum(r * r for r in residual))])
  assert float(L.rotation_loss(pred, gt, MASK, form="frobenius")) == pytest.approx(
      _weighted_mean_by_loops(frob, MASK), rel=1e-5)
  with pytest.raises(ValueError, match="rotation loss form"):
    L.rotation_loss(pred, gt, form="geodesic")


def test_frobenius_rotation_loss_is_zero_with_finite_gradient_at_the_target():
  rot = np.stack([np.eye(3), np.diag([1.0, -1.0, -1.0])]).astype(np.float32)
  value, grad = jax.value_and_grad(lambda r: L.rotation_loss(r, rot, form="frobenius"))(rot)
  assert float(value) == pytest.approx(0.0, abs=1e-6)
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("norm", ["mse", "l1", "l2"])
def test_feature_distance_by_hand(norm):
  student, teacher = _rand(3, 4, 5), _rand(3, 4, 5)
  diffs = [[float(s) - float(t) for s, t in zip(sb.ravel(), tb.ravel())]
           for sb, tb in zip(student, teacher)]
  if norm == "mse":
    per_example = [[d * d for d in row] for row in diffs]
  elif norm == "l1":
    per_example = [[abs(d) for d in row] for row in diffs]
  else:  # one Euclidean norm per example
    per_example = [[math.sqrt(sum(d * d for d in row))] for row in diffs]
  expected = _weighted_mean_by_loops(per_example, MASK)
  got = distill.feature_distance(student, teacher, MASK, norm=norm)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # The teacher is a fixed target: no gradient reaches it.
  grad_teacher = jax.grad(lambda t: distill.feature_distance(student, t, MASK, norm=norm))(teacher)
  np.testing.assert_array_equal(grad_teacher, 0.0)


def test_mask_over_views_matches_loops():
  pred, gt = _rand(2, 3, 4, 3), _rand(2, 3, 4, 3)
  mask = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  per_view = _loop_l1(pred.reshape(6, 4, 3), gt.reshape(6, 4, 3))
  expected = _weighted_mean_by_loops(per_view, mask.ravel())
  assert float(L.l1_loss(pred, gt, mask)) == pytest.approx(expected, rel=1e-5)
  with pytest.raises(ValueError, match="does not match"):
    L.l1_loss(pred, gt, np.ones(3))


def _batch(b=3, n_verts=5, n_joints=4):
  keys = {"verts_canonical": (n_verts, 3), "joints_canonical": (n_joints, 3),
          "verts_rotated": (n_verts, 3), "joints_rotated": (n_joints, 3),
          "joints_2d": (n_joints, 2), "rotation": (3, 3)}
  return ({k: _rand(b, *s) for k, s in keys.items()}, {k: _rand(b, *s) for k, s in keys.items()})


def test_invalid_examples_contribute_nothing():
  pred, gt = _batch()
  for key in gt:  # the dropped example's labels are missing (NaN placeholders)
    gt[key][1] = np.nan
  weights = L.LossWeights(rotation_form="frobenius")
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda p, g, mask: L.reconstruction_loss(p, g, FACES, weights, mask), has_aux=True))

  (total, terms), grads = loss_and_grad(pred, gt, MASK)
  for key, g in grads.items():
    assert np.all(np.isfinite(g)), key
    np.testing.assert_array_equal(g[1], 0.0)
  # The same as the loss of the batch without the dropped example.
  kept = np.array([0, 2])
  (total_kept, terms_kept), _ = loss_and_grad({k: v[kept] for k, v in pred.items()},
                                              {k: v[kept] for k, v in gt.items()}, MASK[kept])
  assert float(total) == pytest.approx(float(total_kept), rel=1e-6)
  for name in terms:
    assert float(terms[name]) == pytest.approx(float(terms_kept[name]), rel=1e-6), name

  (empty_total, empty_terms), empty_grads = loss_and_grad(pred, gt, np.zeros(3))
  assert float(empty_total) == 0.0 and all(float(v) == 0.0 for v in empty_terms.values())
  assert all(np.all(np.asarray(g) == 0.0) for g in empty_grads.values())


def test_reconstruction_loss_combines_terms_with_official_weights():
  pred, gt = _batch()
  weights = L.LossWeights()
  assert weights.normal == 0.1 and weights.edge == 1.0 and weights.se == weights.oe == 1.0
  total, terms = jax.jit(lambda p, g: L.reconstruction_loss(p, g, FACES, weights, MASK))(pred, gt)
  by_hand = {
      "mesh_canonical": _loop_l1(pred["verts_canonical"], gt["verts_canonical"]),
      "joints_canonical": _loop_l1(pred["joints_canonical"], gt["joints_canonical"]),
      "mesh_rotated": _loop_l1(pred["verts_rotated"], gt["verts_rotated"]),
      "joints_rotated": _loop_l1(pred["joints_rotated"], gt["joints_rotated"]),
      "joints_2d": _loop_l1(pred["joints_2d"], gt["joints_2d"]),
      "normal": _loop_normal(pred["verts_canonical"], gt["verts_canonical"], FACES),
      "edge": _loop_edge(pred["verts_canonical"], gt["verts_canonical"], FACES),
      "rotation": [[(p - g) ** 2 for p, g in zip(pb.ravel(), gb.ravel())]
                   for pb, gb in zip(pred["rotation"], gt["rotation"])],
  }
  expected = {k: _weighted_mean_by_loops(v, MASK) for k, v in by_hand.items()}
  assert set(terms) == set(L.RECONSTRUCTION_TERMS)
  for name, value in expected.items():
    assert float(terms[name]) == pytest.approx(value, rel=1e-5), name
  expected_total = sum(value * (0.1 if name == "normal" else 1.0)
                       for name, value in expected.items())
  assert float(total) == pytest.approx(expected_total, rel=1e-5)


def test_stage1_uses_canonical_terms_only():
  pred, gt = _batch()
  for key in ("verts_rotated", "joints_rotated", "rotation"):
    del gt[key]  # stage 1 needs no rotated ground truth
  total, terms = L.reconstruction_loss(pred, gt, FACES, L.LossWeights.stage1())
  assert set(terms) == {"mesh_canonical", "joints_canonical", "joints_2d", "normal", "edge"}
  assert float(total) == pytest.approx(
      sum(float(v) * (0.1 if k == "normal" else 1.0) for k, v in terms.items()), rel=1e-6)
  with pytest.raises(KeyError, match="verts_rotated"):
    L.reconstruction_loss(pred, gt, FACES, L.LossWeights())


def test_per_term_masks():
  pred, gt = _batch()
  no_2d = np.array([1.0, 1.0, 0.0])
  _, terms = L.reconstruction_loss(pred, gt, FACES, mask=None, term_masks={"joints_2d": no_2d})
  assert float(terms["joints_2d"]) == pytest.approx(
      _weighted_mean_by_loops(_loop_l1(pred["joints_2d"], gt["joints_2d"]), no_2d), rel=1e-5)
  assert float(terms["mesh_canonical"]) == pytest.approx(
      _weighted_mean_by_loops(_loop_l1(pred["verts_canonical"], gt["verts_canonical"]), None),
      rel=1e-5)
  with pytest.raises(ValueError, match="unknown terms"):
    L.reconstruction_loss(pred, gt, FACES, term_masks={"normals": no_2d})


def test_distillation_loss():
  # OE as flax's sow stores it: a one-element tuple.
  student = {distill.SE_KEY: _rand(3, 49, 8), distill.OE_KEY: (_rand(3, 16, 12),)}
  teacher = {distill.SE_KEY: _rand(3, 49, 8), distill.OE_KEY: _rand(3, 16, 12)}
  weights = L.LossWeights(se=0.5, oe=2.0)
  total, terms = distill.distillation_loss(student, teacher, weights, MASK)
  se = _weighted_mean_by_loops(
      [[(s - t) ** 2 for s, t in zip(sb.ravel(), tb.ravel())]
       for sb, tb in zip(student[distill.SE_KEY], teacher[distill.SE_KEY])], MASK)
  oe = _weighted_mean_by_loops(
      [[(s - t) ** 2 for s, t in zip(sb.ravel(), tb.ravel())]
       for sb, tb in zip(student[distill.OE_KEY][0], teacher[distill.OE_KEY])], MASK)
  assert float(terms["se"]) == pytest.approx(se, rel=1e-5)
  assert float(terms["oe"]) == pytest.approx(oe, rel=1e-5)
  assert float(total) == pytest.approx(0.5 * se + 2.0 * oe, rel=1e-5)

  teacher_grads = jax.grad(
      lambda t: distill.distillation_loss(student, t, weights, MASK)[0])(teacher)
  assert all(np.all(np.asarray(g) == 0.0) for g in jax.tree_util.tree_leaves(teacher_grads))

  _, only_se = distill.distillation_loss(student, {distill.SE_KEY: teacher[distill.SE_KEY]},
                                   L.LossWeights(oe=0.0))
  assert set(only_se) == {"se"}
  with pytest.raises(ValueError, match="shape"):
    distill.distillation_loss({**student, distill.SE_KEY: _rand(3, 49, 4)}, teacher)
  with pytest.raises(KeyError, match="orientation_tokens"):
    distill.distillation_loss({distill.SE_KEY: student[distill.SE_KEY]}, teacher)


def test_mano_mesh_normal_and_edge_losses(reference_topology):
  verts = np.asarray(reference_topology.vertices[0], np.float32)[None]
  faces = np.asarray(reference_topology.faces[0])
  assert faces.shape == (1538, 3)
  # Every edge of a face lies in that face's plane, so the GT mesh itself has zero normal loss,
  # and a uniform scaling keeps the planes: zero normal loss, edge loss 10% of the mean length.
  assert float(L.normal_loss(verts, verts, faces)) < 1e-6
  assert float(L.edge_length_loss(verts, verts, faces)) == 0.0
  scaled = verts * 1.1
  assert float(L.normal_loss(scaled, verts, faces)) < 1e-6
  lengths = [np.linalg.norm(verts[0, f[i]] - verts[0, f[j]])
             for f in faces for i, j in ((0, 1), (0, 2), (1, 2))]
  assert float(L.edge_length_loss(scaled, verts, faces)) == pytest.approx(
      0.1 * np.mean(lengths), rel=1e-4)


def test_loss_weights_config():
  config = ml_collections.ConfigDict({"normal": 0.2, "se": 10.0, "feature_norm": "l2"})
  weights = L.LossWeights.from_config(config)
  assert (weights.normal, weights.se, weights.oe, weights.feature_norm) == (0.2, 10.0, 1.0, "l2")
  with pytest.raises(ValueError, match="unknown loss config keys"):
    L.LossWeights.from_config({"normals": 0.1})
  with pytest.raises(ValueError, match="rotation_form"):
    L.LossWeights(rotation_form="l2")
  with pytest.raises(ValueError, match=">= 0"):
    L.LossWeights(edge=-1.0)
  stage1 = L.LossWeights.stage1(normal=0.5)
  assert [getattr(stage1, n) for n in ("mesh_rotated", "joints_rotated", "rotation", "se", "oe",
                                       "normal")] == [0, 0, 0, 0, 0, 0.5]


def test_masked_mean_handles_every_weight_pattern():
  values = _rand(3, 2)
  for pattern in itertools.product([0.0, 1.0], repeat=3):
    mask = np.array(pattern)
    expected = _weighted_mean_by_loops([list(map(float, row)) for row in values], mask)
    assert float(L.masked_mean(values, mask)) == pytest.approx(expected, rel=1e-6, abs=1e-7)
