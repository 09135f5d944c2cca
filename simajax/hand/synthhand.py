"""SynthHand: a built-in procedural right hand with MANO's interface and mesh size.

Used whenever no MANO file is given (synthetic data, demos, tests). It is not derived from MANO
in any way; only the conventions are shared:

* exactly 778 vertices (so every network shape equals the official model's) on a closed,
  consistently outward-oriented, manifold surface of 1552 triangles: a palm closed at the wrist,
  four fingers branching from the knuckle line and the thumb in its natural opposed position
  (construction in ``synthhand_mesh.py``);
* MANO's frame and 16-joint tree (``anatomy.py``): fingers along -x, back of the hand +y, thumb
  on +z, wrist at (0.096, 0.006, 0.006) m; wrist to middle fingertip 0.178 m;
* ``J_regressor`` [16, 778]: every row is a non-negative combination (rows sum to 1) of the vertex
  rings around the joint, chosen with minimal deviation from a uniform average so that it returns
  the designed rest joints exactly;
* smooth skinning weights (rows sum to 1): along each digit the weight passes from joint to
  joint over one to two rings on each side of the joint; palm vertices near the knuckles follow
  their finger's first joint and the thenar follows the thumb's; weights below 0.01 are dropped;
* ``posedirs`` are all zero: SynthHand has no pose-corrective blend shapes;
* 10 linear shape coefficients (``SHAPE_COEFFICIENTS``), each about one standard deviation of
  adult variation per unit:

  ====  =================  ========================================================
  beta  name               effect of +1
  ====  =================  ========================================================
  0     scale              whole hand +6 %, about the wrist
  1     finger_length      the four fingers +8 % longer (from their knuckle joint)
  2     finger_thickness   fingers and thumb +10 % thicker (radially)
  3     palm_width         palm +8 % wider (z); the digits move with their base joint
  4     palm_length        palm +8 % longer (x, from the wrist); the digits move along
  5     thumb_length       thumb +10 % longer (from its first joint)
  6     palm_thickness     palm +12 % thicker (y)
  7     index_ring_ratio   index +6 % longer, ring 6 % shorter
  8     pinky_length       pinky +10 % longer
  9     finger_spread      fingers fan out by 0.06 rad (index to +z, pinky to -z)
  ====  =================  ========================================================

* PCA: ``hands_components`` is the 45x45 identity (PCA coefficients are axis-angle values) and
  ``hands_mean`` is a slightly curled, relaxed finger pose (flexion only, see
  ``RELAXED_FLEXION``), so ``flat_hand_mean=False`` shows a natural hand at zero pose;
* fingertip vertices: the apex of each digit's tip cap, in ``tip_vertex_ids`` (thumb, index,
  middle, ring, pinky) like MANO's.

The construction is deterministic and takes well under a second; ``synthhand_model()`` caches it.
"""

from __future__ import annotations

import functools

import numpy as np

from simajax.hand import anatomy
from simajax.hand.anatomy import (BONE_DIRECTIONS, DIGIT_JOINTS, DIGIT_RADII, DIGITS, FINGERS,
                                  SEGMENT_LENGTHS)
from simajax.hand.mirror import mirror_hand_model
from simajax.hand.model import MANO_PARENTS, HandModel, make_hand_model
from simajax.hand.synthhand_mesh import (CAP, FINGER_PART, NUM_VERTICES, PALM, THUMB, SynthSurface,
                                         build_surface, unique_edges)

SHAPE_COEFFICIENTS = ("scale", "finger_length", "finger_thickness", "palm_width", "palm_length",
                      "thumb_length", "palm_thickness", "index_ring_ratio", "pinky_length",
                      "finger_spread")

# Relaxed flexion (radians) of the three joints of every digit: the SynthHand ``hands_mean``.
RELAXED_FLEXION = {"index": (0.20, 0.30, 0.15), "middle": (0.22, 0.35, 0.18),
                   "pinky": (0.30, 0.40, 0.20), "ring": (0.26, 0.38, 0.20),
                   "thumb": (0.10, 0.15, 0.20)}

_MIN_WEIGHT = 0.01  # Skinning weights below this are dropped.


def synthhand_model(side: str = "right") -> HandModel:
  """The SynthHand model (built once per side, then cached).

  Args:
    side: 'right' (built) or 'left' (the mirror image of the right hand).

  Returns:
    A ``HandModel`` named 'synthhand'.
  """
  if side not in ("right", "left"):
    raise ValueError(f"side must be 'right' or 'left', got {side!r}")
  return _cached_model(side)


@functools.lru_cache(maxsize=2)
def _cached_model(side: str) -> HandModel:
  return mirror_hand_model(_cached_model("right")) if side == "left" else build_synthhand()


def build_synthhand() -> HandModel:
  """Builds the right SynthHand from scratch (deterministic; ``synthhand_model`` caches it).

  Returns:
    The right-hand ``HandModel``.
  """
  mesh = build_surface()
  joints = anatomy.rest_joints()
  geometry = _DigitGeometry(mesh.vertices, mesh.part, joints)
  regressor = _joint_regressor(mesh, geometry, joints)
  return make_hand_model(
      v_template=mesh.vertices, faces=mesh.faces, J_regressor=regressor,
      weights=_skinning_weights(mesh, geometry),
      posedirs=np.zeros((NUM_VERTICES, 3, 135)),
      shapedirs=_shape_directions(mesh, geometry, joints),
      hands_components=np.eye(45), hands_mean=relaxed_pose()[1:].reshape(-1),
      parents=MANO_PARENTS, tip_vertex_ids=mesh.tips, side="right", name="synthhand",
      source="synthhand")


def relaxed_pose() -> np.ndarray:
  """The relaxed hand: ``RELAXED_FLEXION`` about every joint's flexion axis.

  Returns:
    [16, 3] axis-angle (zero global rotation); rows 1-15 are SynthHand's ``hands_mean``.
  """
  axes = anatomy.joint_axes()
  pose = np.zeros((16, 3))
  for digit in DIGITS:
    for joint, angle in zip(DIGIT_JOINTS[digit], RELAXED_FLEXION[digit]):
      pose[joint] = angle * axes[joint, 0]
  return pose


# ---------------------------------------------------------------------------------------------
# Rigging: joint regressor, skinning weights, shape blend shapes.
# ---------------------------------------------------------------------------------------------


class _DigitGeometry:
  """Per-vertex coordinates along each digit: arc length from the base joint and distance from
  the digit's bone polyline (rest pose)."""

  def __init__(self, vertices: np.ndarray, part: np.ndarray, joints: np.ndarray):
    self.vertices = vertices
    self.part = part
    self.arc = {}
    self.radial = {}
    for digit in DIGITS:
      self.arc[digit], self.radial[digit] = _polyline_coordinates(vertices, digit, joints)

  def finger_share(self) -> np.ndarray:
    """[V, 4] how much each palm vertex belongs to each finger's column (by z, rows sum to 1);
    finger vertices belong to their own finger, thumb and wrist vertices to none."""
    joints = anatomy.rest_joints()
    z_base = np.array([joints[DIGIT_JOINTS[f][0], 2] for f in FINGERS])
    logits = -((self.vertices[:, 2:3] - z_base) ** 2) / (2 * 0.006 ** 2)
    share = np.exp(logits - logits.max(axis=1, keepdims=True))
    share /= share.sum(axis=1, keepdims=True)
    for n, finger in enumerate(FINGERS):
      share[self.part == FINGER_PART[finger]] = np.eye(4)[n]
    share[(self.part == THUMB) | (self.part == CAP)] = 0.0
    return share


def _polyline_coordinates(vertices: np.ndarray, digit: str, joints: np.ndarray):
  """Arc length along a digit's bone polyline (extended straight before its base and past its
  tip) of each vertex's closest point, and the distance to that point."""
  starts = np.stack([joints[j] for j in DIGIT_JOINTS[digit]])
  directions = np.stack(BONE_DIRECTIONS[digit])
  lengths = np.asarray(SEGMENT_LENGTHS[digit])
  offsets = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
  best_arc = np.zeros(len(vertices))
  best_dist = np.full(len(vertices), np.inf)
  for k in range(3):
    t = (vertices - starts[k]) @ directions[k]
    low = -np.inf if k == 0 else 0.0
    high = np.inf if k == 2 else lengths[k]
    t = np.clip(t, low, high)
    dist = np.linalg.norm(vertices - (starts[k] + t[:, None] * directions[k]), axis=1)
    better = dist < best_dist - 1e-12
    best_arc[better] = offsets[k] + t[better]
    best_dist[better] = dist[better]
  return best_arc, best_dist


def _ramp(x, center, half_width):
  """Smoothstep from 0 (x <= center - half_width) to 1 (x >= center + half_width)."""
  t = np.clip((x - center + half_width) / (2.0 * half_width), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _chain_ramps(digit: str, arc: np.ndarray) -> np.ndarray:
  """[V, 3] smooth indicators of having passed the digit's 1st, 2nd and 3rd joint."""
  ends = np.concatenate([[0.0], np.cumsum(SEGMENT_LENGTHS[digit])[:2]])
  half_widths = (0.011, 0.009, 0.008) if digit == "thumb" else (0.010, 0.008, 0.007)
  return np.stack([_ramp(arc, e, h) for e, h in zip(ends, half_widths)], axis=1)


def _skinning_weights(mesh: SynthSurface, geometry: _DigitGeometry) -> np.ndarray:
  """[V, 16] weights: each digit chain blends joint to joint along its arc length; palm vertices
  near the knuckles follow the finger columns they belong to, and the thenar follows the thumb."""
  part = mesh.part
  weights = np.zeros((len(part), 16))
  share = geometry.finger_share()
  # The thenar: palm vertices close to the thumb's first bone.
  thenar = np.exp(-(geometry.radial["thumb"] / 0.016) ** 2) * (part == PALM)
  for digit in DIGITS:
    ramps = _chain_ramps(digit, geometry.arc[digit])
    joints = DIGIT_JOINTS[digit]
    if digit == "thumb":
      own, palm_own = (part == THUMB).astype(np.float64), thenar
    else:
      column = share[:, FINGERS.index(digit)]
      own = column * (part == FINGER_PART[digit])
      palm_own = column * (part == PALM)
    # Palm vertices only ever follow the digit's first joint.
    weights[:, joints[0]] += own * (ramps[:, 0] - ramps[:, 1]) + palm_own * ramps[:, 0]
    weights[:, joints[1]] += own * (ramps[:, 1] - ramps[:, 2])
    weights[:, joints[2]] += own * ramps[:, 2]
  weights[:, 0] = 0.0
  total = weights.sum(axis=1)
  over = total > 1.0
  weights[over] /= total[over, None]
  weights[:, 0] = 1.0 - weights.sum(axis=1)
  weights = _diffuse(mesh.faces, weights, steps=3)
  # Diffusion leaves long tails of tiny weights; cut them so each joint only moves its region.
  weights[weights < _MIN_WEIGHT] = 0.0
  return weights / weights.sum(axis=1, keepdims=True)


def _diffuse(faces: np.ndarray, values: np.ndarray, steps: int, rate: float = 0.5) -> np.ndarray:
  """A few steps of neighbour averaging over the mesh edges (keeps rows summing to 1)."""
  n = len(values)
  edges = unique_edges(faces)
  degree = np.bincount(edges.ravel(), minlength=n).astype(np.float64)
  for _ in range(steps):
    total = np.zeros_like(values)
    np.add.at(total, edges[:, 0], values[edges[:, 1]])
    np.add.at(total, edges[:, 1], values[edges[:, 0]])
    values = (1.0 - rate) * values + rate * total / degree[:, None]
  return values


def _joint_regressor(mesh: SynthSurface, geometry: _DigitGeometry,
                     joints: np.ndarray) -> np.ndarray:
  """[16, V]: each joint is the closest-to-uniform non-negative average of the vertices around
  it that reproduces the designed rest joint exactly."""
  vertices, part = mesh.vertices, mesh.part
  regressor = np.zeros((16, len(vertices)))
  palm_rings = mesh.loops["palm"]
  wrist_set = np.concatenate([mesh.loops["wrist_cap"], palm_rings[0], palm_rings[1]])
  regressor[0] = _min_norm_weights(vertices, wrist_set[wrist_set >= 0], joints[0], "wrist")
  for digit in DIGITS:
    digit_part = THUMB if digit == "thumb" else FINGER_PART[digit]
    ends = np.concatenate([[0.0], np.cumsum(SEGMENT_LENGTHS[digit])[:2]])
    for joint, arc, radius in zip(DIGIT_JOINTS[digit], ends, DIGIT_RADII[digit]):
      near = np.abs(geometry.arc[digit] - arc) < (0.0125 if arc == 0.0 else 0.0045)
      close = geometry.radial[digit] < (2.6 if digit == "thumb" and arc == 0.0 else 1.4) * radius
      allowed = (part == digit_part) | (part == PALM)
      members = np.flatnonzero(near & close & allowed)
      regressor[joint] = _min_norm_weights(vertices, members, joints[joint], f"{digit} {joint}")
  return regressor


def _min_norm_weights(vertices, members, target, what) -> np.ndarray:
  """Non-negative weights on ``members`` with sum 1 and weighted mean == target, close to uniform.

  Minimum-norm corrections of the uniform average; members that would get a negative weight are
  dropped and the rest solved again (an active-set loop), so the result stays exact.
  """
  members = np.asarray(members)
  goal = np.append(target, 1.0)
  while True:
    if len(members) < 4:
      raise AssertionError(f"SynthHand joint regressor: too few vertices around {what}")
    a = np.vstack([vertices[members].T, np.ones(len(members))])
    uniform = np.full(len(members), 1.0 / len(members))
    w = uniform + np.linalg.pinv(a) @ (goal - a @ uniform)
    if w.min() >= 0.0:
      break
    members = members[w > 0.0]
  if np.abs(a @ w - goal).max() > 1e-9:
    raise AssertionError(f"SynthHand joint regressor: {what} is not inside its vertex ring")
  row = np.zeros(len(vertices))
  row[members] = w
  return row


def _shape_directions(mesh: SynthSurface, geometry: _DigitGeometry,
                      joints: np.ndarray) -> np.ndarray:
  """[V, 3, 10] linear shape blend shapes, in the order of ``SHAPE_COEFFICIENTS``."""
  v, part = mesh.vertices, mesh.part
  n = len(v)
  share = geometry.finger_share()
  wrist = joints[0]
  # How far each vertex belongs to a digit rather than to the palm: digit vertices fully, palm
  # vertices only past the knuckle line.
  finger_arc = np.stack([geometry.arc[f] for f in FINGERS], axis=1)  # [V, 4]
  in_finger = share * _ramp(finger_arc, 0.0, 0.008)
  in_finger[part != PALM] = share[part != PALM]
  in_thumb = np.where(part == THUMB, 1.0, 0.0)
  digitness = in_finger.sum(axis=1) + in_thumb
  base = np.zeros((n, 3))  # The base joint each vertex's digit hangs from.
  for k, finger in enumerate(FINGERS):
    base += in_finger[:, k:k + 1] * joints[DIGIT_JOINTS[finger][0]]
  base += in_thumb[:, None] * joints[DIGIT_JOINTS["thumb"][0]]
  base += (1.0 - digitness)[:, None] * v  # Palm vertices are their own anchor.

  def palm_affine(scale_axis: int, factor: float, center: np.ndarray) -> np.ndarray:
    """Stretch of the palm along one axis; digits translate with their base joint."""
    d = np.zeros((n, 3))
    d[:, scale_axis] = factor * (base[:, scale_axis] - center[scale_axis])
    return d

  def finger_lengthen(factors: dict[str, float]) -> np.ndarray:
    """Each (straight) finger stretched along its bone from its base joint; the cross-sections
    ride along unchanged."""
    d = np.zeros((n, 3))
    for k, finger in enumerate(FINGERS):
      offset = np.maximum(geometry.arc[finger], 0.0)[:, None] * BONE_DIRECTIONS[finger][0]
      d += (in_finger[:, k] * factors.get(finger, 0.0))[:, None] * offset
    return d

  dirs = np.zeros((n, 3, 10))
  dirs[..., 0] = 0.06 * (v - wrist)
  dirs[..., 1] = finger_lengthen({f: 0.08 for f in FINGERS})
  # Thickness: push digit vertices away from their bone polyline.
  thick = np.zeros((n, 3))
  for k, digit in enumerate(FINGERS + ("thumb",)):
    amount = in_thumb if digit == "thumb" else in_finger[:, k]
    axis_point = _closest_on_polyline(v, digit, joints)
    outward = v - axis_point
    thick += (amount * _ramp(geometry.arc[digit], 0.004, 0.004))[:, None] * 0.10 * outward
  dirs[..., 2] = thick
  palm_center = np.array([wrist[0], wrist[1], joints[DIGIT_JOINTS["middle"][0], 2]])
  dirs[..., 3] = palm_affine(2, 0.08, palm_center)
  dirs[..., 4] = palm_affine(0, 0.08, wrist)
  thumb_base = joints[DIGIT_JOINTS["thumb"][0]]
  thumb_axis = _closest_on_polyline(v, "thumb", joints)
  dirs[..., 5] = in_thumb[:, None] * 0.10 * (thumb_axis - thumb_base)
  palm_weight = 1.0 - digitness
  center_y = np.interp(v[:, 0], [joints[4, 0], wrist[0]], [joints[4, 1], wrist[1]])
  dirs[:, 1, 6] = 0.12 * palm_weight * (v[:, 1] - center_y)
  dirs[..., 7] = finger_lengthen({"index": 0.06, "ring": -0.06})
  dirs[..., 8] = finger_lengthen({"pinky": 0.10})
  # Spread: each finger turns about the dorsal axis through its base joint (linearised).
  spread = np.zeros((n, 3))
  for k, (finger, angle) in enumerate(zip(FINGERS, (0.06, 0.02, -0.02, -0.06))):
    offset = v - joints[DIGIT_JOINTS[finger][0]]
    spread += (in_finger[:, k] * angle)[:, None] * np.cross(anatomy.DORSAL, offset)
  dirs[..., 9] = spread
  return dirs


def _closest_on_polyline(vertices: np.ndarray, digit: str, joints: np.ndarray) -> np.ndarray:
  """Closest point of each vertex on a digit's bone polyline (extended at both ends)."""
  arc, _ = _polyline_coordinates(vertices, digit, joints)
  ends = np.cumsum(SEGMENT_LENGTHS[digit])
  segment = np.minimum(np.searchsorted(ends, arc, side="right"), 2)
  starts = np.stack([joints[j] for j in DIGIT_JOINTS[digit]])
  offsets = np.concatenate([[0.0], ends[:-1]])
  directions = np.stack(BONE_DIRECTIONS[digit])
  return starts[segment] + (arc - offsets[segment])[:, None] * directions[segment]
