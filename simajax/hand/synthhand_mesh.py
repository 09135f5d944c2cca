"""The SynthHand surface: a closed, hand-shaped triangle mesh of exactly 778 vertices.

Built from cross-section rings in MANO's frame (``anatomy.py``):
  * the palm is a tube of superellipse sections lofted from the wrist to the knuckle loop, closed
    at the wrist by a shallow dome;
  * the knuckle loop is the four finger base rings side by side; neighbouring fingers share their
    web vertex, so fingers branch off without extra web faces;
  * each digit is a series of 8-vertex elliptical rings (one on every inner joint) ending in a
    rounded cap whose apex is the fingertip vertex;
  * the thumb is bridged from an opening cut into the palm's thenar corner, with wider rings
    over the thenar;
  * a few Taubin smoothing steps round the junctions without shrinking the hand.
Loops of different lengths are zipped by arc fraction, so triangles stay well shaped (no angle
below 10 degrees), which keeps quadric decimation of the mesh well behaved.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simajax.hand import anatomy
from simajax.hand.anatomy import (BONE_DIRECTIONS, DIGIT_JOINTS, DIGIT_RADII, FINGERS,
                                  SEGMENT_LENGTHS, WRIST)

NUM_VERTICES = 778

# Vertex part labels: palm, the four fingers (FINGERS order), thumb, wrist cap.
PALM, THUMB, CAP = 0, 5, 6
FINGER_PART = {f: 1 + i for i, f in enumerate(FINGERS)}

_ELLIPSE = (1.05, 0.93)  # Digit cross-sections: width and height factors on the radius.
_RING = 8  # Vertices per digit ring.
_SPACING = 0.0072  # Target distance between digit rings.
_FINGER_BASE = 0.008  # The fingers leave the palm this far past their knuckle joint.
_PALM_RINGS = 10
_THENAR_RINGS = (2, 6)  # Palm rings spanned by the thumb opening.
_THENAR_ENTRIES = (28, 0)  # Palm-loop entries spanned by the thumb opening (cyclic).
_CAP_LATITUDES = (1.0,)  # Tip caps: ring latitudes (radians) before the apex.
_SMOOTHING_STEPS = 4
_THUMB_BASE_RING = 12  # The thumb's rings over the thenar have more vertices ...
_THUMB_WIDE_UNTIL = 0.022  # ... up to this arc length from its first joint.


@dataclasses.dataclass(frozen=True, eq=False)
class SynthSurface:
  """The built surface.

  Attributes:
    vertices: [778, 3] float64, MANO frame, metres.
    faces: [1552, 3] int64, counter-clockwise seen from outside.
    part: [778] part label of every vertex (PALM, FINGER_PART[f], THUMB, CAP).
    tips: apex vertex ids of the thumb, index, middle, ring and pinky.
    loops: named vertex loops used for rigging: 'palm' ([rings, 32] ids, -1 inside the thumb
      opening), 'thenar' (the opening), 'wrist_cap' (first dome ring), 'base_<finger>'.
  """
  vertices: np.ndarray
  faces: np.ndarray
  part: np.ndarray
  tips: tuple[int, ...]
  loops: dict


def unique_edges(faces: np.ndarray) -> np.ndarray:
  """Undirected edges of a triangle mesh.

  Args:
    faces: [F, 3] vertex ids.

  Returns:
    [E, 2] sorted unique edges, smaller id first.
  """
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  return np.unique(np.sort(edges, axis=1), axis=0)


def build_surface() -> SynthSurface:
  """Builds the SynthHand surface (deterministic).

  Returns:
    The ``SynthSurface`` (778 vertices, 1552 triangles).
  """
  mesh = _Mesh()
  knuckles, finger_rings = _knuckle_loop(mesh)
  palm_ids = _build_palm(mesh, knuckles)
  opening = _thenar_opening(mesh, palm_ids)
  thumb_apex = _build_digit(mesh, "thumb", opening, _thumb_start(mesh, opening), THUMB)
  finger_apex = {f: _build_digit(mesh, f, finger_rings[f], _FINGER_BASE, FINGER_PART[f])
                 for f in FINGERS}
  wrist_cap = _close_wrist(mesh, palm_ids[0])
  _taubin_smooth(mesh, _SMOOTHING_STEPS)
  loops = {"palm": palm_ids, "thenar": opening, "wrist_cap": wrist_cap,
           **{f"base_{f}": finger_rings[f] for f in FINGERS}}
  tips = (thumb_apex,) + tuple(finger_apex[f] for f in ("index", "middle", "ring", "pinky"))
  return SynthSurface(vertices=mesh.vertices, faces=mesh.faces, part=mesh.part, tips=tips,
                      loops=loops)


def _build_palm(mesh: _Mesh, knuckles: np.ndarray) -> np.ndarray:
  """The palm tube from the wrist plane to the knuckle loop, with the thumb opening left out.

  Each loop entry is lofted from a superellipse section at the wrist plane to its knuckle-loop
  vertex (matched by arc fraction around the section) and pulled onto the knuckle loop over the
  last 40 %.

  Returns:
    [rings + 1, 32] vertex ids, the last row being the knuckle loop; -1 inside the opening.
  """
  knuckle_points = mesh.position(knuckles)
  knuckle_u = _arc_fractions(knuckle_points[:, [2, 1]])
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
      palm_ids[r, k] = mesh.add(points[k], PALM)[0]
  for r in range(_PALM_RINGS):
    for k in range(n_entries):
      k1 = (k + 1) % n_entries
      if r0 <= r < r1 and k in thenar_entries[:-1]:
        continue
      mesh.quad(palm_ids[r, k], palm_ids[r, k1], palm_ids[r + 1, k1], palm_ids[r + 1, k])
  return palm_ids


def _thenar_opening(mesh: _Mesh, palm_ids: np.ndarray) -> np.ndarray:
  """The boundary of the thumb opening, counter-clockwise about the thumb's first bone."""
  r0, r1 = _THENAR_RINGS
  entries = _cyclic_range(*_THENAR_ENTRIES, palm_ids.shape[1])
  loop = ([palm_ids[r0, k] for k in entries]
          + [palm_ids[r, entries[-1]] for r in range(r0 + 1, r1)]
          + [palm_ids[r1, k] for k in entries[::-1]]
          + [palm_ids[r, entries[0]] for r in range(r1 - 1, r0, -1)])
  return _orient_loop(mesh, np.array(loop), BONE_DIRECTIONS["thumb"][0])


class _Mesh:
  """A growing mesh: vertices with a part label each, and faces."""

  def __init__(self):
    self._points: list[np.ndarray] = []
    self._parts: list[int] = []
    self._faces: list[tuple[int, int, int]] = []

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
    webs.append(int(mesh.add(0.5 * (rings[a][4] + rings[b][0]), PALM)[0]))
  for n, finger in enumerate(FINGERS):
    ring_ids = np.empty(_RING, np.int64)
    own = [k for k in range(_RING) if not ((k == 0 and n > 0) or (k == 4 and n < 3))]
    ring_ids[own] = mesh.add(rings[finger][own], FINGER_PART[finger])
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


def _close_wrist(mesh: _Mesh, wrist_ring: np.ndarray) -> np.ndarray:
  """Closes the wrist with a shallow dome whose rings use up the remaining vertex budget.

  Returns:
    The dome's outer ring (vertex ids).
  """
  remaining = NUM_VERTICES - mesh.num_vertices
  outer = int(round(remaining * 2 / 3))
  inner = remaining - 1 - outer
  if inner < 4:
    raise AssertionError(f"SynthHand vertex budget exceeded: {remaining} left for the wrist")
  backward = np.array([1.0, 0.0, 0.0])  # Out of the wrist, away from the fingers.
  ring_points = mesh.position(wrist_ring)
  center = ring_points.mean(axis=0)
  previous = wrist_ring[::-1]  # Counter-clockwise about the backward axis.
  rings = []
  for count, scale, depth in ((outer, 0.72, 0.006), (inner, 0.38, 0.010)):
    u = np.arange(count) / count
    dense_u = _arc_fractions(ring_points[::-1])
    points = np.stack([np.interp(u, dense_u, ring_points[::-1, c], period=1.0)
                       for c in range(3)], axis=1)
    ring = mesh.add(center + scale * (points - center) + depth * backward, CAP)
    mesh.bridge(previous, ring)
    rings.append(ring)
    previous = ring
  apex = int(mesh.add(center + 0.012 * backward, CAP)[0])
  mesh.fan(previous, apex)
  return rings[0]


def _taubin_smooth(mesh: _Mesh, steps: int, lam: float = 0.5, mu: float = -0.53):
  """Taubin (lambda|mu) smoothing with uniform weights: rounds the junctions, keeps volume."""
  vertices = mesh.vertices
  faces = mesh.faces
  n = len(vertices)
  edges = unique_edges(faces)
  degree = np.bincount(edges.ravel(), minlength=n).astype(np.float64)
  for _ in range(steps):
    for factor in (lam, mu):
      total = np.zeros_like(vertices)
      np.add.at(total, edges[:, 0], vertices[edges[:, 1]])
      np.add.at(total, edges[:, 1], vertices[edges[:, 0]])
      vertices = vertices + factor * (total / degree[:, None] - vertices)
  mesh.set_vertices(vertices)
