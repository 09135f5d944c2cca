"""SynthHand: a built-in procedural right hand with MANO's interface and mesh size.

Used whenever no MANO file is given (synthetic data, demos, tests). It is not derived from MANO
in any way; only the conventions are shared:

* exactly 778 vertices (so every network shape equals the official model's), a closed,
  consistently outward-oriented, manifold triangle surface: a palm tube closed at the wrist, four
  fingers branching from the knuckle line (neighbouring fingers share their web vertex) and the
  thumb attached through an opening on the palm's thenar corner, in its natural opposed position;
* MANO's frame and 16-joint tree (``anatomy.py``): fingers along -x, back of the hand +y, thumb
  on +z, wrist at (0.096, 0.006, 0.006) m; wrist to middle fingertip 0.178 m;
* ``J_regressor`` [16, 778]: every row is a non-negative combination (rows sum to 1) of the vertex
  rings around the joint, chosen with minimal deviation from a uniform average so that it returns
  the designed rest joints exactly;
* smooth skinning weights (rows sum to 1), blended over about one ring on each side of a joint;
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
                                  SEGMENT_LENGTHS, WRIST)
from simajax.hand.mirror import mirror_hand_model
from simajax.hand.model import MANO_PARENTS, HandModel, make_hand_model

NUM_VERTICES = 778

SHAPE_COEFFICIENTS = ("scale", "finger_length", "finger_thickness", "palm_width", "palm_length",
                      "thumb_length", "palm_thickness", "index_ring_ratio", "pinky_length",
                      "finger_spread")

# Relaxed flexion (radians) of the three joints of every digit: the SynthHand ``hands_mean``.
RELAXED_FLEXION = {"index": (0.20, 0.30, 0.15), "middle": (0.22, 0.35, 0.18),
                   "pinky": (0.30, 0.40, 0.20), "ring": (0.26, 0.38, 0.20),
                   "thumb": (0.10, 0.15, 0.20)}

_ELLIPSE = (1.05, 0.93)  # Digit cross-sections: width and height factors on the radius.
_RING = 8  # Vertices per digit ring.
_SPACING = 0.0072  # Target distance between digit rings.
_FINGER_BASE = 0.008  # The fingers leave the palm this far past their knuckle joint.
_PALM_RINGS = 10
_THENAR_RINGS = (2, 6)  # Palm rings spanned by the thumb opening.
_THENAR_ENTRIES = (28, 0)  # Palm-loop entries spanned by the thumb opening (cyclic).
_CAP_LATITUDES = (1.0,)  # Tip caps: ring latitudes (radians) before the apex.
_SMOOTHING_STEPS = 4
_MIN_WEIGHT = 0.01  # Skinning weights below this are dropped.
_THUMB_BASE_RING = 12  # The thumb's rings over the thenar have more vertices ...
_THUMB_WIDE_UNTIL = 0.022  # ... up to this arc length from its first joint.


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
  """Builds the right SynthHand from scratch (deterministic; ``synthhand_model`` caches it)."""
  mesh = _build_mesh()
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
  """[16, 3] axis-angle of the relaxed hand (zero global rotation), flexion about each joint."""
  axes = anatomy.joint_axes()
  pose = np.zeros((16, 3))
  for digit in DIGITS:
    for joint, angle in zip(DIGIT_JOINTS[digit], RELAXED_FLEXION[digit]):
      pose[joint] = angle * axes[joint, 0]
  return pose


# ---------------------------------------------------------------------------------------------
# Surface construction.
# ---------------------------------------------------------------------------------------------

# Vertex parts: 0 palm, 1..4 fingers (FINGERS order), 5 thumb, 6 wrist cap.
_PALM, _THUMB, _CAP = 0, 5, 6
_FINGER_PART = {f: 1 + i for i, f in enumerate(FINGERS)}


class _Mesh:
  """Vertices, faces, a part label per vertex and the fingertip ids of the built surface."""

  def __init__(self):
    self._points: list[np.ndarray] = []
    self._parts: list[int] = []
    self._faces: list[tuple[int, int, int]] = []
    self.tips: tuple[int, ...] = ()
    self.loops: dict[str, np.ndarray] = {}

  def add(self, points, part: int) -> np.ndarray:
    points = np.atleast_2d(points)
    start = len(self._points)
    self._points.extend(points)
    self._parts.extend([part] * len(points))
    return np.arange(start, start + len(points))

  @property
  def num_vertices(self) -> int:
    return len(self._points)

  def position(self, ids) -> np.ndarray:
    return np.asarray([self._points[i] for i in np.atleast_1d(ids)])

  def quad(self, a, b, c, d):
    """Quad a-b-c-d (counter-clockwise from outside), split along its shorter diagonal."""
    pa, pb, pc, pd = self.position([a, b, c, d])
    if np.linalg.norm(pa - pc) <= np.linalg.norm(pb - pd):
      self._faces += [(a, b, c), (a, c, d)]
    else:
      self._faces += [(a, b, d), (b, c, d)]

  def bridge(self, back, front):
    """Triangulates the band between two loops ordered the same way around the forward axis.

    Loops may differ in length; the front loop is rotated to line up with the back loop, then
    the band is zipped by advancing the loop that lags in arc fraction (the shorter new edge on
    ties), so triangles stay well shaped.
    """
    back, front = np.asarray(back), np.asarray(front)
    na, nb = len(back), len(front)
    pa, pb = self.position(back), self.position(front)
    match = np.round(np.arange(nb) * na / nb).astype(int) % na
    costs = [np.sum((np.roll(pb, -r, axis=0) - pa[match]) ** 2) for r in range(nb)]
    shift = int(np.argmin(costs))
    front, pb = np.roll(front, -shift), np.roll(pb, -shift, axis=0)
    window = 0.75 / max(na, nb)
    i = j = 0
    while i < na or j < nb:
      lead = (i + 1) / na - (j + 1) / nb
      if j == nb or (i < na and lead < -window):
        advance_back = True
      elif i == na or lead > window:
        advance_back = False
      else:
        advance_back = (np.linalg.norm(pa[(i + 1) % na] - pb[j % nb])
                        <= np.linalg.norm(pa[i % na] - pb[(j + 1) % nb]))
      if advance_back:
        self._faces.append((back[i % na], back[(i + 1) % na], front[j % nb]))
        i += 1
      else:
        self._faces.append((back[i % na], front[(j + 1) % nb], front[j % nb]))
        j += 1

  def fan(self, loop, apex: int):
    """Closes a loop (ordered around the forward axis) with triangles to an apex in front."""
    loop = np.asarray(loop)
    for k in range(len(loop)):
      self._faces.append((loop[k], loop[(k + 1) % len(loop)], apex))

  def remove_faces(self, keep: np.ndarray):
    self._faces = [f for f, k in zip(self._faces, keep) if k]

  @property
  def faces(self) -> np.ndarray:
    return np.asarray(self._faces, np.int64)

  @property
  def vertices(self) -> np.ndarray:
    return np.asarray(self._points, np.float64)

  @property
  def part(self) -> np.ndarray:
    return np.asarray(self._parts)

  def set_vertices(self, vertices: np.ndarray):
    self._points = list(vertices)


def _ring_points(center, lateral, dorsal, radius, count=_RING) -> np.ndarray:
  """``count`` points of an elliptical cross-section, from +lateral over +dorsal (the order is
  counter-clockwise about lateral x dorsal, i.e. about the digit's forward direction)."""
  phi = 2.0 * np.pi * np.arange(count) / count
  return (center + np.outer(np.cos(phi) * radius * _ELLIPSE[0], lateral)
          + np.outer(np.sin(phi) * radius * _ELLIPSE[1], dorsal))


def _digit_frame(digit: str, s: float):
  """Centre, forward, lateral and dorsal axes of a digit at arc length s from its base joint."""
  joints = anatomy.rest_joints()
  lengths = SEGMENT_LENGTHS[digit]
  ends = np.cumsum(lengths)
  segment = int(min(np.searchsorted(ends, s, side="right"), 2))
  start = ends[segment - 1] if segment else 0.0
  center = joints[DIGIT_JOINTS[digit][segment]] + (s - start) * BONE_DIRECTIONS[digit][segment]
  forward = BONE_DIRECTIONS[digit][segment]
  # At an inner joint the cross-section bisects the two bones.
  for k in (1, 2):
    if abs(s - ends[k - 1]) < 1e-9:
      forward = anatomy._unit(BONE_DIRECTIONS[digit][k - 1] + BONE_DIRECTIONS[digit][k])
  up = anatomy.THUMB_NAIL if digit == "thumb" else anatomy.DORSAL
  dorsal = anatomy._unit(up - np.dot(up, forward) * forward)
  lateral = np.cross(dorsal, forward)
  return center, forward, lateral, dorsal


def _digit_radius(digit: str, s: float) -> float:
  ends = np.cumsum(SEGMENT_LENGTHS[digit])
  cap_start = ends[2] - DIGIT_RADII[digit][3]
  return float(np.interp(s, [0.0, ends[0], ends[1], cap_start], DIGIT_RADII[digit]))


def _digit_stations(digit: str, start: float) -> list[float]:
  """Arc lengths of the digit's body rings after ``start``: rings on both inner joints, about
  ``_SPACING`` apart, up to where the tip cap begins."""
  ends = np.cumsum(SEGMENT_LENGTHS[digit])
  cap_start = ends[2] - DIGIT_RADII[digit][3]
  stations, previous = [], start
  for stop in (ends[0], ends[1], cap_start):
    count = max(1, int(round((stop - previous) / _SPACING)))
    stations += list(previous + (stop - previous) * np.arange(1, count + 1) / count)
    previous = stop
  return stations


def _build_digit(mesh: _Mesh, digit: str, base_loop: np.ndarray, start: float, part: int) -> int:
  """Rings from ``start`` to the tip cap, bridged from ``base_loop``; returns the apex id."""
  previous = base_loop
  for s in _digit_stations(digit, start):
    center, _, lateral, dorsal = _digit_frame(digit, s)
    count = _THUMB_BASE_RING if digit == "thumb" and s < _THUMB_WIDE_UNTIL else _RING
    ring = mesh.add(_ring_points(center, lateral, dorsal, _digit_radius(digit, s), count), part)
    mesh.bridge(previous, ring)
    previous = ring
  length = float(np.sum(SEGMENT_LENGTHS[digit]))
  cap_radius = DIGIT_RADII[digit][3]
  cap_center, forward, lateral, dorsal = _digit_frame(digit, length - cap_radius)
  for latitude in _CAP_LATITUDES:
    ring = mesh.add(_ring_points(cap_center + cap_radius * np.sin(latitude) * forward, lateral,
                                 dorsal, cap_radius * np.cos(latitude)), part)
    mesh.bridge(previous, ring)
    previous = ring
  apex = int(mesh.add(cap_center + cap_radius * forward, part)[0])
  mesh.fan(previous, apex)
  return apex


def _knuckle_loop(mesh: _Mesh) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """The palm's distal loop: the four finger base rings, neighbours sharing their web vertex.

  Returns:
    The 32-entry loop (web vertices appear twice: once on the back, once on the palm side) and
    each finger's 8-vertex base ring.
  """
  rings = {}
  for finger in FINGERS:
    center, _, lateral, dorsal = _digit_frame(finger, _FINGER_BASE)
    rings[finger] = _ring_points(center, lateral, dorsal, _digit_radius(finger, _FINGER_BASE))
  ids = {}
  webs = []
  for a, b in zip(FINGERS[:-1], FINGERS[1:]):
    # Ring point 4 points to -z (towards the next finger), point 0 to +z.
    webs.append(int(mesh.add(0.5 * (rings[a][4] + rings[b][0]), _PALM)[0]))
  for n, finger in enumerate(FINGERS):
    ring_ids = np.empty(_RING, np.int64)
    own = [k for k in range(_RING) if not ((k == 0 and n > 0) or (k == 4 and n < 3))]
    ring_ids[own] = mesh.add(rings[finger][own], _FINGER_PART[finger])
    if n > 0:
      ring_ids[0] = webs[n - 1]
    if n < 3:
      ring_ids[4] = webs[n]
    ids[finger] = ring_ids
  index, middle, ring, pinky = (ids[f] for f in FINGERS)
  loop = np.concatenate([
      index[0:4], middle[0:4], ring[0:4], pinky[0:5],  # back of the hand, thumb side first
      pinky[5:8], ring[4:8], middle[4:8], index[4:8],  # palm side, back towards the thumb
  ])
  return loop, ids


def _superellipse(count_dense: int, half_width, top, bottom, exponent=3.0) -> np.ndarray:
  """Dense closed cross-section (z, y) from +z over +y, with arc-length parameter [0, 1)."""
  psi = 2.0 * np.pi * np.arange(count_dense) / count_dense
  c, s = np.cos(psi), np.sin(psi)
  z = half_width * np.sign(c) * np.abs(c) ** (2.0 / exponent)
  y = np.where(s > 0, top, bottom) * np.sign(s) * np.abs(s) ** (2.0 / exponent)
  return np.stack([z, y], axis=1)


def _arc_fractions(points: np.ndarray) -> np.ndarray:
  """Cumulative arc-length fraction of each point of a closed polyline (first point = 0)."""
  seg = np.linalg.norm(np.diff(np.vstack([points, points[:1]]), axis=0), axis=1)
  return np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()


def _palm_section(tau: float):
  """Palm cross-section at fraction tau from the wrist (0) to the knuckles (1), relative to
  the wrist: half-width, z centre, back height, palm-side depth, y centre."""
  half_width = np.interp(tau, [0.0, 0.5, 1.0], [0.029, 0.040, 0.041])
  z_center = np.interp(tau, [0.0, 1.0], [0.0, -0.004])
  top = np.interp(tau, [0.0, 0.6, 1.0], [0.016, 0.013, 0.011])
  bottom = np.interp(tau, [0.0, 0.5, 1.0], [0.019, 0.017, 0.012])
  return half_width, z_center, top, bottom


def _build_mesh() -> _Mesh:
  mesh = _Mesh()
  knuckles, finger_rings = _knuckle_loop(mesh)
  knuckle_points = mesh.position(knuckles)
  knuckle_u = _arc_fractions(knuckle_points[:, [2, 1]])

  # Palm rings: each loop entry is lofted from a superellipse section at the wrist plane to its
  # knuckle-loop vertex, pulled onto the knuckle loop over the last 40 %.
  n_entries = len(knuckles)
  r0, r1 = _THENAR_RINGS
  thenar_entries = _cyclic_range(*_THENAR_ENTRIES, n_entries)
  palm_ids = np.full((_PALM_RINGS + 1, n_entries), -1, np.int64)
  palm_ids[_PALM_RINGS] = knuckles
  for r in range(_PALM_RINGS):
    tau = r / _PALM_RINGS
    half_width, z_center, top, bottom = _palm_section(tau)
    dense = _superellipse(720, half_width, top, bottom)
    dense_u = _arc_fractions(dense)
    z = np.interp(knuckle_u, dense_u, dense[:, 0], period=1.0) + z_center
    y = np.interp(knuckle_u, dense_u, dense[:, 1], period=1.0)
    section = WRIST + np.stack([np.zeros_like(z), y, z], axis=1)
    section[:, 0] = WRIST[0] + tau * (knuckle_points[:, 0] - WRIST[0])
    pull = max(0.0, (tau - 0.6) / 0.4) ** 2
    points = (1.0 - pull) * section + pull * knuckle_points
    for k in range(n_entries):
      if r0 < r < r1 and k in thenar_entries[1:-1]:
        continue  # inside the thumb opening
      palm_ids[r, k] = mesh.add(points[k], _PALM)[0]
  for r in range(_PALM_RINGS):
    for k in range(n_entries):
      k1 = (k + 1) % n_entries
      if r0 <= r < r1 and k in thenar_entries[:-1]:
        continue
      mesh.quad(palm_ids[r, k], palm_ids[r, k1], palm_ids[r + 1, k1], palm_ids[r + 1, k])

  # Thumb: bridged from the thenar opening (walked counter-clockwise seen from outside).
  ring_entries = [palm_ids[r0, k] for k in thenar_entries]
  side_far = [palm_ids[r, thenar_entries[-1]] for r in range(r0 + 1, r1)]
  top_entries = [palm_ids[r1, k] for k in thenar_entries[::-1]]
  side_near = [palm_ids[r, thenar_entries[0]] for r in range(r1 - 1, r0, -1)]
  opening = np.array(ring_entries + side_far + top_entries + side_near)
  opening = _orient_loop(mesh, opening, BONE_DIRECTIONS["thumb"][0])
  mesh.loops["thenar"] = opening
  thumb_apex = _build_digit(mesh, "thumb", opening, _thumb_start(mesh, opening), _THUMB)

  finger_apex = {f: _build_digit(mesh, f, finger_rings[f], _FINGER_BASE, _FINGER_PART[f])
                 for f in FINGERS}
  mesh.loops.update({f"base_{f}": finger_rings[f] for f in FINGERS})
  mesh.loops["palm"] = palm_ids

  _close_wrist(mesh, palm_ids[0])
  mesh.tips = (thumb_apex, finger_apex["index"], finger_apex["middle"], finger_apex["ring"],
               finger_apex["pinky"])
  _taubin_smooth(mesh, _SMOOTHING_STEPS)
  return mesh


def _cyclic_range(first: int, last: int, n: int) -> list[int]:
  return [k % n for k in range(first, last + (n if last < first else 0) + 1)]


def _orient_loop(mesh: _Mesh, loop: np.ndarray, forward: np.ndarray) -> np.ndarray:
  """The loop, reversed if needed, so it runs counter-clockwise about ``forward``."""
  points = mesh.position(loop)
  center = points.mean(axis=0)
  area = np.sum(np.cross(points - center, np.roll(points, -1, axis=0) - center), axis=0)
  return loop if np.dot(area, forward) > 0 else loop[::-1]


def _thumb_start(mesh: _Mesh, opening: np.ndarray) -> float:
  """Arc length along the thumb of the opening's centre (its rings start after it)."""
  center = mesh.position(opening).mean(axis=0)
  cmc = anatomy.rest_joints()[DIGIT_JOINTS["thumb"][0]]
  return float(np.dot(center - cmc, BONE_DIRECTIONS["thumb"][0]))


def _close_wrist(mesh: _Mesh, wrist_ring: np.ndarray):
  """Closes the wrist with a shallow dome whose rings use up the remaining vertex budget."""
  remaining = NUM_VERTICES - mesh.num_vertices
  outer = int(round(remaining * 2 / 3))
  inner = remaining - 1 - outer
  if inner < 4:
    raise AssertionError(f"SynthHand vertex budget exceeded: {remaining} left for the wrist")
  backward = np.array([1.0, 0.0, 0.0])  # Out of the wrist, away from the fingers.
  ring_points = mesh.position(wrist_ring)
  center = ring_points.mean(axis=0)
  previous = wrist_ring[::-1]  # Counter-clockwise about the backward axis.
  for count, scale, depth in ((outer, 0.72, 0.006), (inner, 0.38, 0.010)):
    u = np.arange(count) / count
    dense_u = _arc_fractions(ring_points[::-1])
    points = np.stack([np.interp(u, dense_u, ring_points[::-1, c], period=1.0)
                       for c in range(3)], axis=1)
    ring = mesh.add(center + scale * (points - center) + depth * backward, _CAP)
    mesh.bridge(previous, ring)
    mesh.loops.setdefault("wrist_cap", ring)
    previous = ring
  apex = int(mesh.add(center + 0.012 * backward, _CAP)[0])
  mesh.fan(previous, apex)


def _taubin_smooth(mesh: _Mesh, steps: int, lam: float = 0.5, mu: float = -0.53):
  """Taubin (lambda|mu) smoothing with uniform weights: rounds the junctions, keeps volume."""
  vertices = mesh.vertices
  faces = mesh.faces
  n = len(vertices)
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  edges = np.unique(np.sort(edges, axis=1), axis=0)
  degree = np.bincount(edges.ravel(), minlength=n).astype(np.float64)
  for _ in range(steps):
    for factor in (lam, mu):
      total = np.zeros_like(vertices)
      np.add.at(total, edges[:, 0], vertices[edges[:, 1]])
      np.add.at(total, edges[:, 1], vertices[edges[:, 0]])
      vertices = vertices + factor * (total / degree[:, None] - vertices)
  mesh.set_vertices(vertices)


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
      share[self.part == _FINGER_PART[finger]] = np.eye(4)[n]
    share[(self.part == _THUMB) | (self.part == _CAP)] = 0.0
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


def _skinning_weights(mesh: _Mesh, geometry: _DigitGeometry) -> np.ndarray:
  """[V, 16] weights: each digit chain blends joint to joint along its arc length; palm vertices
  near the knuckles follow the finger columns they belong to, and the thenar follows the thumb."""
  part = mesh.part
  weights = np.zeros((len(part), 16))
  share = geometry.finger_share()
  thumb_ramps = _chain_ramps("thumb", geometry.arc["thumb"])
  # The thenar: palm vertices close to the thumb's first bone.
  thenar = np.exp(-(geometry.radial["thumb"] / 0.016) ** 2) * (part == _PALM)
  for digit in DIGITS:
    ramps = _chain_ramps(digit, geometry.arc[digit])
    joints = DIGIT_JOINTS[digit]
    if digit == "thumb":
      own, palm_own = (part == _THUMB).astype(np.float64), thenar
    else:
      column = share[:, FINGERS.index(digit)]
      own = column * (part == _FINGER_PART[digit])
      palm_own = column * (part == _PALM)
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
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  edges = np.unique(np.sort(edges, axis=1), axis=0)
  degree = np.bincount(edges.ravel(), minlength=n).astype(np.float64)
  for _ in range(steps):
    total = np.zeros_like(values)
    np.add.at(total, edges[:, 0], values[edges[:, 1]])
    np.add.at(total, edges[:, 1], values[edges[:, 0]])
    values = (1.0 - rate) * values + rate * total / degree[:, None]
  return values


def _joint_regressor(mesh: _Mesh, geometry: _DigitGeometry, joints: np.ndarray) -> np.ndarray:
  """[16, V]: each joint is the closest-to-uniform non-negative average of the vertices around
  it that reproduces the designed rest joint exactly."""
  vertices, part = mesh.vertices, mesh.part
  regressor = np.zeros((16, len(vertices)))
  palm_rings = mesh.loops["palm"]
  wrist_set = np.concatenate([mesh.loops["wrist_cap"], palm_rings[0], palm_rings[1]])
  regressor[0] = _min_norm_weights(vertices, wrist_set[wrist_set >= 0], joints[0], "wrist")
  for digit in DIGITS:
    digit_part = _THUMB if digit == "thumb" else _FINGER_PART[digit]
    ends = np.concatenate([[0.0], np.cumsum(SEGMENT_LENGTHS[digit])[:2]])
    for joint, arc, radius in zip(DIGIT_JOINTS[digit], ends, DIGIT_RADII[digit]):
      near = np.abs(geometry.arc[digit] - arc) < (0.0125 if arc == 0.0 else 0.0045)
      close = geometry.radial[digit] < (2.6 if digit == "thumb" and arc == 0.0 else 1.4) * radius
      allowed = (part == digit_part) | (part == _PALM)
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


def _shape_directions(mesh: _Mesh, geometry: _DigitGeometry, joints: np.ndarray) -> np.ndarray:
  """[V, 3, 10] linear shape blend shapes, in the order of ``SHAPE_COEFFICIENTS``."""
  v, part = mesh.vertices, mesh.part
  n = len(v)
  share = geometry.finger_share()
  thumb = (part == _THUMB).astype(np.float64)
  wrist = joints[0]
  # How far each vertex belongs to a digit rather than to the palm: digit vertices fully, palm
  # vertices only past the knuckle line (and the thenar towards the thumb).
  finger_arc = np.stack([geometry.arc[f] for f in FINGERS], axis=1)  # [V, 4]
  in_finger = share * _ramp(finger_arc, 0.0, 0.008)
  in_finger[part != _PALM] = share[part != _PALM]
  in_thumb = np.where(part == _THUMB, 1.0, 0.0)
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
