"""A vectorised z-buffer triangle rasterizer for a pinhole camera (pure numpy).

Conventions:
  * Camera frame (OpenCV): x right, y down, z forward, metres. A point projects to
    ``u = (K[0,0] x + K[0,1] y) / z + K[0,2]``, ``v = K[1,1] y / z + K[1,2]``, i.e.
    ``(u, v) = (K X)[:2] / z``.
  * Pixel centres sit at integer coordinates: pixel ``[row, col]`` samples the image point
    ``(u, v) = (col, row)``. This is the convention that makes a projected point ``(u, v)`` land in
    pixel ``[round(v), round(u)]`` and the horizontal flip ``u -> W - 1 - u`` exact.
  * Coverage: a pixel is covered by a triangle when its centre lies strictly inside it, or on an
    edge that is a *top* edge (horizontal, the triangle below it in the image) or a *left* edge
    (the triangle to its right). Two triangles sharing an edge therefore never both cover, and
    never both miss, a pixel centre on that edge: a closed mesh renders without cracks or double
    hits, whatever the winding.
  * Projected vertices are snapped to a 1/256-pixel grid (as GPUs do). With snapped coordinates
    every edge function below is computed exactly in float64 (while vertices project within about
    1e5 pixels of the image), so ties are true ties and the rule above holds exactly, also at
    pixel centres that coincide with a shared vertex. Beyond that range a shared edge is still
    evaluated from its vertices in a canonical (ascending id) order and negated for the other
    triangle, which keeps the two triangles exactly complementary along it.
  * Depth is the camera-frame z of the visible surface (not the Euclidean ray length). It is
    interpolated perspective-correctly (1/z is affine in screen space).
  * Triangles with any vertex at ``z <= near`` are dropped (no clipping); back faces are kept
    unless ``cull_backfaces``. Front means the outward normal (counter-clockwise winding in the
    right-handed camera frame, as for an outward-oriented closed mesh) points towards the camera.

How it is fast: every face's clipped pixel bounding box is cut into one-pixel-high row segments;
segments are grouped by box width (rounded up to a few bucket sizes) and each group is tested as
one dense [segments, width] array of edge functions (a multiply-add and a compare per edge, no
per-pixel gathers). The z-test packs (1/z as float32 bits, face) into one int64 key and resolves
all candidates with a single ``np.maximum.at``; ties in depth go to the higher face id.
Barycentrics and depth are then computed for the winning fragments only.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np

# Bucket edge lengths (pixels) of the bounding-box grids: about 25 % padding at worst above 8 px.
_BUCKET_SIZES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80,
                          96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512])
# Upper bound on candidate pixels evaluated in one broadcast (keeps temporaries in cache).
_MAX_CANDIDATES_PER_CHUNK = 1 << 16
# Pixels interpolated at once: small enough for the temporaries to stay in cache.
_MAX_PIXELS_PER_CHUNK = 1 << 14
# Sub-pixel grid that projected vertices are snapped to (see the module docstring).
_SUBPIXEL = 256.0
# E > 0 <=> E >= the smallest positive double, so "strict" and "inclusive" edges share one compare.
_TINY = np.nextafter(0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class Fragments:
  """Per-pixel result of ``rasterize``.

  Attributes:
    depth: [H, W] float64 camera-frame z of the visible surface; ``inf`` where nothing is drawn.
    face_id: [H, W] int64 index of the visible face; -1 where nothing is drawn.
    bary: [H, W, 3] float64 perspective-correct barycentric weights of the visible face's three
      vertices (``faces[face_id]``); they sum to 1 on covered pixels and are 0 elsewhere.
  """
  depth: np.ndarray
  face_id: np.ndarray
  bary: np.ndarray

  @property
  def mask(self) -> np.ndarray:
    """[H, W] bool, True where some face is visible."""
    return self.face_id >= 0


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
  """Pinhole projection ``(u, v) = (K X)[:2] / z`` of camera-frame points.

  Args:
    points_cam: [..., 3] points in the camera frame (z forward).
    K: [3, 3] intrinsics.

  Returns:
    [..., 2] pixel coordinates (u = column, v = row; pixel centres at integers).
  """
  points_cam = np.asarray(points_cam, dtype=np.float64)
  uvw = points_cam @ np.asarray(K, dtype=np.float64).T
  return uvw[..., :2] / uvw[..., 2:3]


def rasterize(vertices_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int,
              *, near: float = 1e-3,
              cull_backfaces: Union[bool, np.ndarray] = False) -> Fragments:
  """Rasterizes a triangle mesh seen by a pinhole camera into a z-buffer.

  Several objects are rendered together (so that they occlude each other correctly) by
  concatenating their vertices and faces (offsetting face indices); map ``face_id`` through a
  per-face label array to know which object each pixel shows.

  Args:
    vertices_cam: [N, 3] vertices in the camera frame (OpenCV: x right, y down, z forward), metres.
    faces: [F, 3] integer vertex indices.
    K: [3, 3] intrinsics (``K[2] == (0, 0, 1)``).
    height: image height H in pixels.
    width: image width W in pixels.
    near: faces with a vertex at ``z <= near`` are dropped.
    cull_backfaces: if True, faces whose outward normal (counter-clockwise winding, right-handed)
      points away from the camera are dropped; a [F] bool array applies this per face (e.g. only
      to the faces of closed objects, whose back faces can never be seen).

  Returns:
    ``Fragments`` with depth, face_id and perspective-correct barycentrics (see the module
    docstring for the pixel-centre and coverage conventions).
  """
  vertices_cam, faces, K = _check_inputs(vertices_cam, faces, K, height, width)
  num_pixels = height * width
  setup = _setup_faces(vertices_cam, faces, K, height, width, near, cull_backfaces)
  pixels, invz, row = _candidate_fragments(setup, width)

  # 1/z > 0, so its float32 bit pattern orders like its value; the setup row (ascending in face
  # id) rides in the low bits.
  keys = invz.astype(np.float32).view(np.int32).astype(np.int64) << 32
  keys |= row
  zbuffer = np.full(num_pixels, -1, dtype=np.int64)
  np.maximum.at(zbuffer, pixels, keys)
  rows, cols = np.nonzero(zbuffer.reshape(height, width) >= 0)
  covered = rows * width + cols
  winner = zbuffer[covered] & 0xFFFFFFFF

  face_id = np.full(num_pixels, -1, dtype=np.int64)
  face_id[covered] = setup.face[winner]
  depth = np.full(num_pixels, np.inf)
  bary = np.zeros((num_pixels, 3))
  for start in range(0, covered.size, _MAX_PIXELS_PER_CHUNK):
    part = slice(start, start + _MAX_PIXELS_PER_CHUNK)
    depth[covered[part]], bary[covered[part]] = _interpolate(setup, winner[part], cols[part],
                                                             rows[part])
  return Fragments(depth=depth.reshape(height, width), face_id=face_id.reshape(height, width),
                   bary=bary.reshape(height, width, 3))


def check_mesh_arrays(vertices, faces, vertices_name: str,
                      faces_name: str) -> tuple[np.ndarray, np.ndarray]:
  """``vertices`` as a float64 [N, 3] array and ``faces`` as an integer [F, 3] array of vertex ids
  in [0, N); the rasterizer's and the scene renderer's shared input check.

  Raises:
    ValueError: naming the array (``vertices_name``, ``faces_name``: how the caller calls it).
  """
  vertices = np.asarray(vertices, dtype=np.float64)
  faces = np.asarray(faces)
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f"{vertices_name} must be [N, 3], got shape {vertices.shape}")
  if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
    raise ValueError(f"{faces_name} must be an integer [F, 3] array, got {faces.dtype} "
                     f"{faces.shape}")
  if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
    raise ValueError(f"{faces_name}: face indices must lie in [0, {len(vertices)}), got "
                     f"[{faces.min()}, {faces.max()}]")
  return vertices, faces


def _check_inputs(vertices_cam, faces, K, height, width):
  vertices_cam, faces = check_mesh_arrays(vertices_cam, faces, "rasterize: vertices_cam",
                                          "rasterize: faces")
  K = np.asarray(K, dtype=np.float64)
  if K.shape != (3, 3):
    raise ValueError(f"rasterize: K must be [3, 3], got shape {K.shape}")
  if not np.allclose(K[2], [0.0, 0.0, 1.0]):
    raise ValueError(f"rasterize: K's last row must be (0, 0, 1), got {K[2]}")
  if int(height) <= 0 or int(width) <= 0:
    raise ValueError(f"rasterize: height and width must be positive, got {height}x{width}")
  if not np.isfinite(vertices_cam).all():
    raise ValueError("rasterize: vertices_cam contains NaN or inf")
  return vertices_cam, faces.astype(np.int64), K


@dataclasses.dataclass
class _FaceSetup:
  """Per-face screen-space quantities of the faces that survive culling (index k)."""
  face: np.ndarray       # [k] original face index
  edge_a: np.ndarray     # [k, 3] edge functions E_i = a x + b y + c, positive inside;
  edge_b: np.ndarray     #        E_i is the edge opposite vertex i, E_i(vertex i) = |2 area|
  edge_c: np.ndarray
  threshold: np.ndarray  # [k, 3] 0 for top/left edges (inclusive), _TINY otherwise (strict)
  plane: np.ndarray      # [k, 3] (p, q, r): 1/z = p x + q y + r on the face (affine on screen)
  # [k, 9]: (a_i, b_i, c_i) / (|2 area| z_i), so that l_i / z_i = a'_i x + b'_i y + c'_i, where
  # l_i = E_i / |2 area| are the screen-space barycentrics.
  weighted_edges: np.ndarray
  x0: np.ndarray         # [k] clipped bounding box, inclusive pixel bounds
  x1: np.ndarray
  y0: np.ndarray
  y1: np.ndarray


def _setup_faces(vertices, faces, K, height, width, near, cull_backfaces) -> _FaceSetup:
  z = vertices[:, 2]
  keep = (z[faces] > near).all(axis=1)
  cull = np.broadcast_to(np.asarray(cull_backfaces, dtype=bool), keep.shape)
  if cull.any():
    tri = vertices[faces[cull]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    keep[cull] &= np.einsum("fi,fi->f", normal, tri[:, 0]) < 0.0
  face = np.flatnonzero(keep)
  tri_ids = faces[face]
  with np.errstate(divide="ignore", invalid="ignore"):
    # Vertices behind the near plane only feed dropped faces, whatever they project to.
    uv = np.round(project(vertices, K) * _SUBPIXEL) / _SUBPIXEL
  # Edge i runs between corners i+1 and i+2; evaluate it from its lower to its higher vertex id
  # (see the module docstring) and negate where the triangle traverses it the other way.
  start = tri_ids[:, [1, 2, 0]]
  end = tri_ids[:, [2, 0, 1]]
  flipped = start > end
  lo, hi = np.where(flipped, end, start), np.where(flipped, start, end)
  ux, uy, vx, vy = uv[lo, 0], uv[lo, 1], uv[hi, 0], uv[hi, 1]
  a = -(vy - uy)
  b = vx - ux
  c = -(a * ux + b * uy)
  sign = np.where(flipped, -1.0, 1.0)
  corners = uv[tri_ids]  # [k, 3, 2]
  area2 = ((corners[:, 1, 0] - corners[:, 0, 0]) * (corners[:, 2, 1] - corners[:, 0, 1])
           - (corners[:, 1, 1] - corners[:, 0, 1]) * (corners[:, 2, 0] - corners[:, 0, 0]))
  # Make every edge function positive inside, whichever way the triangle winds on screen.
  sign *= np.sign(area2)[:, None]
  a, b, c = a * sign, b * sign, c * sign
  # Top-left rule: the inward normal (a, b) points right (a > 0), or straight down (a == 0, b > 0).
  top_left = (a > 0) | ((a == 0) & (b > 0))
  threshold = np.where(top_left, 0.0, _TINY)

  x0 = np.maximum(np.ceil(corners[..., 0].min(axis=1)), 0)
  x1 = np.minimum(np.floor(corners[..., 0].max(axis=1)), width - 1)
  y0 = np.maximum(np.ceil(corners[..., 1].min(axis=1)), 0)
  y1 = np.minimum(np.floor(corners[..., 1].max(axis=1)), height - 1)
  live = (area2 != 0) & (x0 <= x1) & (y0 <= y1)
  a, b, c, area2 = a[live], b[live], c[live], area2[live]
  # 1/z = sum_i (E_i / |2 area|) / z_i is affine in (x, y), like the edge functions.
  weights = 1.0 / (np.abs(area2)[:, None] * z[tri_ids[live]])
  weighted_edges = np.concatenate([a * weights, b * weights, c * weights], axis=1)
  plane = weighted_edges.reshape(-1, 3, 3).sum(axis=2)
  return _FaceSetup(
      face=face[live], edge_a=a, edge_b=b, edge_c=c, threshold=threshold[live], plane=plane,
      weighted_edges=weighted_edges, x0=x0[live].astype(np.int64),
      x1=x1[live].astype(np.int64), y0=y0[live].astype(np.int64), y1=y1[live].astype(np.int64))


def _candidate_fragments(setup: _FaceSetup, width: int):
  """Every (pixel index, 1/z, setup row) whose pixel centre a face covers, before the z-test.

  Each face's bounding box is cut into row segments; segments are grouped by their width rounded
  up to a bucket size, and every group is tested as one dense [segments, width] array.
  """
  if setup.face.size == 0:
    empty = np.zeros(0, dtype=np.int64)
    return empty, np.zeros(0), empty
  box_h = setup.y1 - setup.y0 + 1
  grid_w = _round_up_to_bucket(setup.x1 - setup.x0 + 1)
  order = np.argsort(grid_w, kind="stable")
  seg_face = np.repeat(order, box_h[order])  # setup row of each segment, grouped by bucket
  first = np.repeat(np.cumsum(box_h[order]) - box_h[order], box_h[order])
  seg_y = setup.y0[seg_face] + (np.arange(seg_face.size) - first)
  seg_w = grid_w[seg_face]
  # Row terms b_i y + c_i of the edge functions and q y + r of the inverse depth, per segment.
  seg_yf = seg_y[:, None].astype(np.float64)
  row_edge = setup.edge_b[seg_face] * seg_yf + setup.edge_c[seg_face]
  row_invz = setup.plane[seg_face, 1] * seg_y + setup.plane[seg_face, 2]
  seg_a = setup.edge_a[seg_face]
  seg_threshold = setup.threshold[seg_face]
  seg_x0 = setup.x0[seg_face]
  seg_x1 = setup.x1[seg_face]

  hit_segments, hit_x = [], []
  bounds = np.flatnonzero(np.diff(seg_w)) + 1
  for start, stop in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [seg_w.size]])):
    grid = int(seg_w[start])
    step = max(1, _MAX_CANDIDATES_PER_CHUNK // grid)
    for lo in range(start, stop, step):
      hi = min(stop, lo + step)
      xs = (seg_x0[lo:hi, None] + np.arange(grid)).astype(np.float64)
      edge = np.empty_like(xs)
      inside = np.ones(xs.shape, dtype=bool)
      for i in range(3):
        np.multiply(seg_a[lo:hi, i, None], xs, out=edge)
        edge += row_edge[lo:hi, i, None]
        inside &= edge >= seg_threshold[lo:hi, i, None]
      seg, dx = np.nonzero(inside)
      seg += lo
      hit_segments.append(seg)
      hit_x.append(seg_x0[seg] + dx)
  seg = np.concatenate(hit_segments)
  px = np.concatenate(hit_x)
  # Grid columns past the box only pad the bucket; they may lie outside the image (clipped boxes).
  in_box = px <= seg_x1[seg]
  seg, px = seg[in_box], px[in_box]
  invz = setup.plane[seg_face[seg], 0] * px + row_invz[seg]
  return seg_y[seg] * width + px, invz, seg_face[seg]


def _round_up_to_bucket(extent):
  """Rounds box extents up to the next bucket size; extents past the largest bucket stay exact."""
  sizes = _BUCKET_SIZES
  rounded = sizes[np.minimum(np.searchsorted(sizes, extent), len(sizes) - 1)]
  return np.where(extent <= sizes[-1], rounded, extent)


def _interpolate(setup: _FaceSetup, sel, px, py):
  """Depth and perspective-correct barycentrics of the winning faces (setup rows) at (px, py)."""
  coeffs = setup.weighted_edges[sel]
  weights = coeffs[:, 0:3] * px[:, None].astype(np.float64)  # l_i / z_i
  weights += coeffs[:, 3:6] * py[:, None].astype(np.float64)
  weights += coeffs[:, 6:9]
  inv_depth = weights.sum(axis=1)
  return 1.0 / inv_depth, weights / inv_depth[:, None]
