"""SynthHand: mesh quality, rig and shape space, checked against geometry computed in the test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from simajax.hand import (JOINT_AXES, SHAPE_COEFFICIENTS, hand_forward, joint_regressor_21,
                          load_hand_model, pose_components, synthhand_model)
from simajax.hand.synthhand import build_synthhand
from simajax.hand.anatomy import BONE_DIRECTIONS, DIGIT_JOINTS, SEGMENT_LENGTHS, rest_joints

MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


@pytest.fixture(scope="module")
def model():
  return synthhand_model()


def forward(model, pose=None, betas=None):
  """Two hands (the shapes every test here uses, so the forward compiles once): flat mean."""
  pose = np.zeros((2, 48)) if pose is None else np.broadcast_to(np.reshape(pose, (-1, 48)), (2, 48))
  betas = np.zeros((2, 10)) if betas is None else np.broadcast_to(betas, (2, 10))
  out = hand_forward(model, pose, betas, flat_hand_mean=True)
  return {k: np.asarray(v[0], np.float64) for k, v in out._asdict().items()}


def edges_of(faces):
  return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def test_sizes_and_tree(model):
  assert model.v_template.shape == (778, 3) and model.faces.shape[1] == 3
  assert model.J_regressor.shape == (16, 778) and model.weights.shape == (778, 16)
  assert model.posedirs.shape == (778, 3, 135) and not np.any(model.posedirs)
  assert model.shapedirs.shape == (778, 3, 10) and len(SHAPE_COEFFICIENTS) == 10
  assert model.parents == MANO_PARENTS and model.side == "right" and model.name == "synthhand"
  np.testing.assert_array_equal(model.hands_components, np.eye(45))


def test_closed_oriented_manifold_surface(model):
  v = model.v_template.astype(np.float64)
  f = model.faces
  directed = edges_of(f)
  # Every directed edge once and its reverse once: closed, two faces per edge, one orientation.
  assert len({tuple(e) for e in directed}) == len(directed)
  assert {tuple(e) for e in directed} == {(b, a) for a, b in directed}
  assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f)
  assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0]))
  assert np.array_equal(np.unique(f), np.arange(778))
  num_edges = len(directed) // 2
  assert 778 - num_edges + len(f) == 2  # a sphere: no handles, one piece
  # Each vertex's faces form a single fan (no pinched vertices).
  for vertex in range(778):
    rows = np.flatnonzero(np.any(f == vertex, axis=1))
    nxt = {}
    for face in f[rows]:
      k = int(np.flatnonzero(face == vertex)[0])
      nxt[face[(k + 1) % 3]] = face[(k + 2) % 3]
    start = current = next(iter(nxt))
    for _ in range(len(nxt)):
      current = nxt[current]
    assert current == start and len(nxt) == len(rows)
  # Outward: positive enclosed volume (divergence theorem).
  a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
  volume = np.einsum("ij,ij->", a, np.cross(b, c)) / 6.0
  assert 2e-4 < volume < 5e-4  # m^3: a hand displaces about 0.3-0.4 litres
  # Well-shaped triangles (decimation-friendly): no slivers, no tiny faces.
  def angle(p, q, r):
    u, w = q - p, r - p
    cos = np.sum(u * w, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(w, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
  assert min(angle(a, b, c).min(), angle(b, c, a).min(), angle(c, a, b).min()) > 10.0
  assert np.linalg.norm(np.cross(b - a, c - a), axis=1).min() / 2 > 1e-6


def test_no_self_intersection_at_rest(model):
  v = model.v_template.astype(np.float64)
  winding = winding_numbers(v, v, model.faces)
  # A surface vertex sees half of its own surface; inside another part it would see more.
  assert winding.max() < 0.95


def winding_numbers(points, v, faces):
  """Generalised winding numbers of points w.r.t. a closed triangle mesh."""
  a, b, c = (v[faces[:, k]][None] - points[:, None] for k in range(3))
  la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
  det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
  dots = (np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la
          + np.einsum("pfi,pfi->pf", c, a) * lb)
  return np.arctan2(det, la * lb * lc + dots).sum(axis=1) / (2.0 * np.pi)


def test_frame_and_metric_size(model):
  v = model.v_template.astype(np.float64)
  joints = model.J_regressor.astype(np.float64) @ v
  wrist = joints[0]
  tips = v[list(model.tip_vertex_ids)]  # thumb, index, middle, ring, pinky
  assert 0.17 <= np.linalg.norm(tips[2] - wrist) <= 0.19
  assert np.all(tips[:, 0] < wrist[0] - 0.08)  # digits point along -x
  assert tips[0, 2] > tips[1, 2] > tips[2, 2] > tips[3, 2] > tips[4, 2]  # thumb on +z
  # Just before the knuckles (thumb left out) the palm is about 8 cm wide and 2-3 cm thick.
  thumb_arc, thumb_radial = _axis_coordinates(v, "thumb")
  palm = v[(v[:, 0] < wrist[0] - 0.065) & (v[:, 0] > wrist[0] - 0.08) & (thumb_radial > 0.02)]
  assert 0.07 < np.ptp(palm[:, 2]) < 0.095 and 0.018 < np.ptp(palm[:, 1]) < 0.035


def test_tips_are_the_digit_extremities(model):
  v = model.v_template.astype(np.float64)
  joints = rest_joints()
  for digit, tip in zip(("thumb", "index", "middle", "ring", "pinky"), model.tip_vertex_ids):
    base = joints[DIGIT_JOINTS[digit][2]]
    direction = BONE_DIRECTIONS[digit][2]
    reach = (v - base) @ direction
    near_axis = np.linalg.norm(v - base - reach[:, None] * direction, axis=1) < 0.012
    assert int(np.flatnonzero(near_axis)[np.argmax(reach[near_axis])]) == tip
  out = forward(model, np.random.default_rng(0).normal(0.0, 0.3, 48))
  np.testing.assert_array_equal(out["joints21"][[4, 8, 12, 16, 20]],
                                out["vertices"][list(model.tip_vertex_ids)])


def test_regressor_and_weights(model):
  reg = model.J_regressor.astype(np.float64)
  assert reg.min() >= 0.0
  np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-6)
  v = model.v_template.astype(np.float64)
  joints = reg @ v
  np.testing.assert_allclose(joints, rest_joints(), atol=1e-6)  # the designed skeleton
  for j in range(16):  # each joint averages vertices around it, not far-away ones
    support = v[reg[j] > 0]
    assert np.linalg.norm(support - joints[j], axis=1).max() < 0.045
  weights = model.weights.astype(np.float64)
  assert weights.min() >= 0.0
  np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
  jumps = np.abs(np.diff(weights[edges_of(model.faces)], axis=1))[:, 0].max(axis=1)
  assert jumps.max() < 0.6 and np.median(jumps) < 0.1
  # Every finger joint bends over a blend zone of at least two rings, not a hard seam.
  for j in range(1, 16):
    assert np.sum((weights[:, j] > 0.1) & (weights[:, j] < 0.9)) >= 16
  reg21 = joint_regressor_21(model)
  np.testing.assert_allclose(reg21 @ v, forward(model)["joints21"], atol=1e-6)


def test_zero_pose_reproduces_rest(model):
  out = forward(model)
  np.testing.assert_allclose(out["vertices"], model.v_template, atol=1e-6)
  np.testing.assert_allclose(out["joints16"], rest_joints(), atol=1e-6)


def _axis_coordinates(points, digit):
  """Arc length along a straight rest digit from its first joint, and distance from its axis."""
  joints = rest_joints()
  base = joints[DIGIT_JOINTS[digit][0]]
  direction = BONE_DIRECTIONS[digit][0]
  t = (points - base) @ direction
  return t, np.linalg.norm(points - base - t[:, None] * direction, axis=1)


@pytest.mark.parametrize("digit,level,angle", [("index", 1, 0.9), ("pinky", 0, 0.7),
                                               ("thumb", 2, 0.8)])
def test_rotating_a_joint_moves_only_its_digit(model, digit, level, angle):
  joint = DIGIT_JOINTS[digit][level]
  pose = np.zeros((16, 3))
  pose[joint] = angle * JOINT_AXES[joint, 0]
  out = forward(model, pose)
  v = model.v_template.astype(np.float64)
  moved = np.linalg.norm(out["vertices"] - v, axis=1) > 1e-6
  subtree = list(range(joint, DIGIT_JOINTS[digit][2] + 1))
  weighted = model.weights[:, subtree].sum(axis=1)
  assert np.all(weighted[moved] > 0) and np.all(moved[weighted > 1e-2])
  # Geometrically, the moved vertices lie on that digit, from a little before the joint outwards
  # (a base joint also bends the palm next to it).
  behind, off_axis = (0.03, 0.03) if level == 0 else (0.02, 0.02)
  if digit == "thumb":
    centre = rest_joints()[joint]
    assert np.all(np.linalg.norm(v[moved] - centre, axis=1) < 0.045)
    assert np.all((v[moved] - centre) @ BONE_DIRECTIONS[digit][level] > -behind)
  else:
    arc, radial = _axis_coordinates(v[moved], digit)
    joint_arc = float(np.sum(SEGMENT_LENGTHS[digit][:level]))
    assert np.all(arc > joint_arc - behind) and np.all(radial < off_axis)
  # The fingertip turns rigidly about the joint.
  tip = model.tip_vertex_ids[("thumb", "index", "middle", "ring", "pinky").index(digit)]
  centre = rest_joints()[joint]
  expected = Rotation.from_rotvec(pose[joint]).apply(v[tip] - centre) + centre
  np.testing.assert_allclose(out["vertices"][tip], expected, atol=1e-5)
  np.testing.assert_allclose(out["joints16"][0], rest_joints()[0], atol=1e-6)


def _middle_finger_ring(model):
  """Vertices around the middle finger's proximal phalanx (closer to its axis than to others)."""
  v = model.v_template.astype(np.float64)
  radial = np.stack([_axis_coordinates(v, f)[1] for f in ("index", "middle", "ring", "pinky")])
  arc = _axis_coordinates(v, "middle")[0]
  return np.flatnonzero((arc > 0.015) & (arc < 0.03) & (np.argmin(radial, axis=0) == 1)
                        & (radial[1] < 0.015))


def _measure(model, betas):
  out = forward(model, betas=betas)
  j, v = out["joints21"], out["vertices"]
  d = lambda a, b: float(np.linalg.norm(j[a] - j[b]))
  # Thickness: distance of the same vertices from the posed middle-finger bone (MCP -> PIP).
  bone = (j[10] - j[9]) / d(10, 9)
  ring = v[_middle_finger_ring(model)] - j[9]
  finger_radius = np.linalg.norm(ring - (ring @ bone)[:, None] * bone, axis=1).mean()
  middle_palm = (v[:, 0] < j[0, 0] - 0.035) & (v[:, 0] > j[0, 0] - 0.055)
  middle_palm &= np.abs(v[:, 2] - j[9, 2]) < 0.015
  index_dir = (j[8] - j[5]) / d(8, 5)
  pinky_dir = (j[20] - j[17]) / d(20, 17)
  return {
      "index": d(5, 8), "middle": d(9, 12), "ring": d(13, 16), "pinky": d(17, 20),
      "thumb": d(1, 4), "palm_length": d(0, 9), "palm_width": abs(j[5, 2] - j[17, 2]),
      "finger_radius": float(finger_radius),
      "palm_thickness": float(np.ptp(v[middle_palm, 1])), "wrist_to_tip": d(0, 12),
      "spread": float(np.arccos(np.clip(index_dir @ pinky_dir, -1.0, 1.0))),
  }


# Documented effect of +1 on each coefficient: {measure: relative change (or radians for spread)}.
SHAPE_EFFECTS = {
    "scale": {"middle": 0.06, "palm_length": 0.06, "palm_width": 0.06, "thumb": 0.06},
    "finger_length": {"index": 0.08, "middle": 0.08, "ring": 0.08, "pinky": 0.08,
                      "palm_length": 0.0, "finger_radius": 0.0},
    "finger_thickness": {"finger_radius": 0.10, "middle": 0.0, "palm_length": 0.0},
    "palm_width": {"palm_width": 0.08, "middle": 0.0, "palm_length": 0.0},
    "palm_length": {"palm_length": 0.08, "middle": 0.0, "palm_width": 0.0},
    "thumb_length": {"thumb": 0.10, "index": 0.0, "palm_length": 0.0},
    "palm_thickness": {"palm_thickness": 0.12, "middle": 0.0, "palm_length": 0.0},
    "index_ring_ratio": {"index": 0.06, "ring": -0.06, "middle": 0.0},
    "pinky_length": {"pinky": 0.10, "ring": 0.0, "middle": 0.0},
    "finger_spread": {"spread": 0.12, "middle": 0.0, "palm_width": 0.0},
}


@pytest.mark.parametrize("name", SHAPE_COEFFICIENTS)
def test_shape_coefficients_change_documented_measures(model, name):
  base = _measure(model, np.zeros(10))
  betas = np.zeros(10)
  betas[SHAPE_COEFFICIENTS.index(name)] = 1.0
  changed = _measure(model, betas)
  for key, effect in SHAPE_EFFECTS[name].items():
    change = changed[key] - base[key] if key == "spread" else changed[key] / base[key] - 1.0
    if effect == 0.0:
      assert abs(change) < 0.006, (key, change)
    else:
      assert 0.75 * abs(effect) < abs(change) < 1.25 * abs(effect) and change * effect > 0, (
          key, change)


def test_relaxed_mean_pose_curls_fingers(model):
  comps = pose_components(np.concatenate([np.zeros(3), model.hands_mean]).reshape(16, 3))
  assert np.all(comps[1:, 0] > 0.05) and np.allclose(comps[1:, 1:], 0.0, atol=1e-6)
  relaxed = hand_forward(model, np.zeros((2, 48)), np.zeros((2, 10)))  # flat_hand_mean=False
  flat = forward(model)["vertices"]
  tips = list(model.tip_vertex_ids[1:])
  # Curling moves the fingertips towards the palm side (-y) and back towards the wrist (+x).
  assert np.all(np.asarray(relaxed.vertices[0])[tips, 1] < flat[tips, 1] - 0.01)
  assert np.all(np.asarray(relaxed.vertices[0])[tips, 0] > flat[tips, 0])


def test_left_hand_cache_and_loader(model):
  left = synthhand_model("left")
  assert left.side == "left"
  np.testing.assert_allclose(left.v_template, model.v_template * [-1.0, 1.0, 1.0])
  assert synthhand_model() is model and load_hand_model(None) is model
  assert load_hand_model("synthhand") is model
  rebuilt = build_synthhand()  # deterministic: a fresh build is identical
  for field in ("v_template", "faces", "J_regressor", "weights", "shapedirs", "hands_mean"):
    np.testing.assert_array_equal(getattr(rebuilt, field), getattr(model, field))
  with pytest.raises(FileNotFoundError, match="MANO_RIGHT.pkl"):
    load_hand_model("/nonexistent/MANO_RIGHT.pkl")
  with pytest.raises(ValueError, match="expected None, 'synthhand'"):
    load_hand_model("mano")
