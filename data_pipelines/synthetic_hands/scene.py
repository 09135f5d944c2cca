"""One synthetic multi-view frame: a posed hand, grasp-like occluders, 8 cameras, 8 renders.

The hand is posed in two steps so that the expensive part can be batched: ``sample_hands`` draws
pose, shape and global orientation for many frames and runs the (JAX) hand model once per batch,
giving each frame's canonical (zero-root-rotation) mesh; ``render_frame`` then builds the scene of
one frame from its own random stream and renders it with the numpy rasterizer. All randomness of
frame i of a split comes from ``frame_rng(seed, split, i, stream)``, so any subset of frames can
be generated, in any order or process, with identical results.

Scene conventions (world frame = metres, the hand centred at the origin):
  * hand: ``V_world = R_w (V0 - J0) + J0 + t`` with V0 the canonical mesh, J0 its wrist and t
    chosen so that the mesh centroid is the origin. R_w follows ``SceneConfig.orientation``:
    'upright' (default) points the wrist-to-knuckles direction up (world +z), tilted by a
    half-normal angle of scale ``hand_tilt_deg`` about a random horizontal axis, at a uniformly
    random yaw; 'uniform' draws R_w uniformly from SO(3);
  * occluders: 0-3 spheres, boxes or cylinders touching the palm or a finger on its palmar side
    (sometimes the back), like grasped objects, so they hide the hand differently per view;
  * cameras: 8 look-at cameras on jittered cube-corner directions (elevations about +-35 deg),
    at a distance that makes the hand fill 55-95 % of the image, with varied focal length and
    principal point. 'upright': the rig is turned by a random yaw and the cameras are upright
    (image up = world +z) up to a normal roll of scale ``camera_roll_deg``, like the fixed rigs of
    Dex-YCB and HanCo; 'uniform': the rig is randomly rotated and the roll is uniform;
  * images: Lambert-shaded skin and occluder colours over a random background (gradient, value
    noise, random shapes, pixel noise), then a slight blur; the stored hand mask is the visible
    hand, and ``vis_ratio`` divides its area by the area of the hand rendered without occluders.
    The skin is a per-frame tone with an albedo map like a real hand's (``skin_regions``): the
    palm and the palmar side of the fingers lighter and pinker than the back, whitish nails on
    the back of the fingertips, and a smooth per-vertex variation. These are the cues that tell
    which side of a hand a camera sees; a one-tone hand seen from the palm and from the back
    differs only in its silhouette.

Why 'upright' is the default: in real captures the cameras stand upright and hands are seen
mostly fingers-up; a uniform SO(3) orientation (every roll and every viewpoint equally likely) is
far harder than any real dataset, and a small model learns no orientation from it within a CPU
budget (BENCHMARKS.md, "Learning at CPU budgets"). Training still adds the official in-plane
rotation augmentation (up to +-60 deg) on top.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data_pipelines import schema
from simajax import geometry
from simajax.hand import hand_forward, sample_pose, sample_shape
from simajax.render import primitives
from simajax.render.rasterizer import project
from simajax.render.scene import Mesh, render_scene, silhouette
from simajax.render.shading import Light

SPLITS = ("train", "validation", "test")
HAND_LABEL = 1
OCCLUDER_LABEL = 2
# OpenPose ids: wrist, and the MCP joints of index, middle, ring and pinky.
_WRIST, _MCPS = 0, (5, 9, 13, 17)
_FINGER_CHAINS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
# Skin tones, light to dark (sRGB 0..1); a frame blends two neighbours.
_SKIN_TONES = np.array([[0.98, 0.87, 0.78], [0.94, 0.78, 0.66], [0.87, 0.67, 0.52],
                        [0.76, 0.55, 0.40], [0.58, 0.39, 0.26], [0.40, 0.26, 0.18]])
# Probabilities of 0, 1, 2, 3 occluders per frame.
OCCLUDER_COUNTS = (0.05, 0.25, 0.35, 0.35)
ORIENTATIONS = ("upright", "uniform")


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """What a frame looks like.

  Attributes:
    image_size: side of the square images in pixels.
    fov_deg: range of the horizontal field of view.
    fill: range of (projected hand bounding radius) / (half the image side).
    occluder_counts: probabilities of 0, 1, 2, 3 occluders.
    jpeg_quality: quality of the stored JPEG images.
    orientation: 'upright' or 'uniform' (hand orientation and camera roll; module docstring).
    hand_tilt_deg: 'upright' only: scale of the half-normal tilt of the hand from vertical.
    camera_roll_deg: 'upright' only: scale of the normal camera roll.
  """
  image_size: int = 128
  fov_deg: tuple[float, float] = (40.0, 65.0)
  fill: tuple[float, float] = (0.55, 0.95)
  occluder_counts: tuple[float, ...] = OCCLUDER_COUNTS
  jpeg_quality: int = 95
  orientation: str = "upright"
  hand_tilt_deg: float = 40.0
  camera_roll_deg: float = 10.0

  def __post_init__(self):
    if self.orientation not in ORIENTATIONS:
      raise ValueError(f"SceneConfig.orientation must be one of {ORIENTATIONS}, "
                       f"got {self.orientation!r}")


@dataclasses.dataclass(frozen=True)
class HandSample:
  """A frame's hand: parameters and canonical geometry (hand-model frame, metres).

  Attributes:
    index: the frame index within its split.
    pose: [48] pose with zero root rotation (hand model convention, fingers relative to the
      model's hands_mean).
    betas: [10] shape.
    world_rot: [3, 3] the global orientation R_w.
    verts_canonical: [778, 3] zero-root-rotation posed mesh.
    joints_canonical: [21, 3] its joints (OpenPose order).
  """
  index: int
  pose: np.ndarray
  betas: np.ndarray
  world_rot: np.ndarray
  verts_canonical: np.ndarray
  joints_canonical: np.ndarray

  @property
  def world_trans(self) -> np.ndarray:
    """t such that the world mesh R_w (V0 - J0) + J0 + t has its centroid at the origin."""
    root = self.joints_canonical[0]
    return -((self.verts_canonical.mean(axis=0) - root) @ self.world_rot.T + root)

  def to_world(self, points: np.ndarray) -> np.ndarray:
    """Canonical-frame points -> world frame (rotation about the wrist, then translation)."""
    root = self.joints_canonical[0]
    return (points - root) @ self.world_rot.T + root + self.world_trans


def frame_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
  """The random stream ``stream`` of frame ``index`` of ``split`` (0: hand, 1: scene)."""
  return np.random.default_rng([seed, SPLITS.index(split), index, stream])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
  """A uniformly distributed (Haar) rotation matrix."""
  q, r = np.linalg.qr(rng.standard_normal((3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q


def upright_rotation(joints: np.ndarray, yaw: float, tilt_axis: float, tilt: float) -> np.ndarray:
  """R_w of an upright hand: wrist-to-knuckles along world +z, palm towards world +x, then
  tilted by ``tilt`` radians about the horizontal axis at angle ``tilt_axis`` and turned by
  ``yaw`` about +z.

  Args:
    joints: [21, 3] the hand's canonical joints (its palm frame sets the base orientation).
    yaw, tilt_axis, tilt: angles in radians.
  """
  _, normal, _, along = _palm_frame(joints)
  across = np.cross(along, normal)
  # Rows: where the canonical palm normal, across-palm and along directions go (x, y, z).
  base = np.stack([normal, across, along])
  axis = np.array([np.cos(tilt_axis), np.sin(tilt_axis), 0.0])
  turn = geometry.axis_angle_to_matrix(tilt * axis) if tilt else np.eye(3)
  return geometry.rotation_about_z(np.float64(yaw)) @ turn @ base


def sample_hands(model, seed: int, split: str, indices, batch: int = 128,
                 config: SceneConfig = SceneConfig()) -> list[HandSample]:
  """Draws and poses the hands of several frames with batched, jitted hand-model calls.

  Args:
    model: a ``simajax.hand.HandModel``.
    seed: the dataset seed.
    split: split name.
    indices: frame indices within the split.
    batch: hands per compiled call (calls are padded to it, so it compiles once).
    config: the scene config (its ``orientation`` fields set R_w).

  Returns:
    One ``HandSample`` per index, in order.
  """
  indices = list(indices)
  poses, betas, orientations = [], [], []
  for index in indices:
    rng = frame_rng(seed, split, index, 0)
    # Finger values relative to hands_mean: the flat_hand_mean=False convention of the schema.
    poses.append(np.array(sample_pose(rng, 1, global_rotation=False,
                                      hands_mean=np.asarray(model.hands_mean)),
                          np.float64).reshape(-1))
    betas.append(np.array(sample_shape(rng, 1), np.float64).reshape(-1))
    if config.orientation == "uniform":
      orientations.append(random_rotation(rng))
    else:  # (yaw, tilt axis, tilt); the rotation needs the posed joints (below)
      orientations.append((rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi),
                           abs(rng.normal(0, np.deg2rad(config.hand_tilt_deg)))))
  forward = jax.jit(hand_forward)
  verts, joints = [], []
  for start in range(0, len(indices), batch):
    pose_chunk = np.zeros((batch, len(poses[0])), np.float32)
    beta_chunk = np.zeros((batch, len(betas[0])), np.float32)
    count = min(batch, len(indices) - start)
    pose_chunk[:count] = poses[start:start + count]
    beta_chunk[:count] = betas[start:start + count]
    out = forward(model, pose_chunk, beta_chunk)
    verts += list(np.asarray(out.vertices, np.float64)[:count])
    joints += list(np.asarray(out.joints21, np.float64)[:count])
  rotations = [o if config.orientation == "uniform" else upright_rotation(j, *o)
               for o, j in zip(orientations, joints)]
  return [HandSample(index=i, pose=p, betas=b, world_rot=r, verts_canonical=v, joints_canonical=j)
          for i, p, b, r, v, j in zip(indices, poses, betas, rotations, verts, joints)]


def _unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _palm_frame(joints: np.ndarray):
  """Palm centre and unit palmar normal, across-palm (pinky to index) and wrist-to-knuckles
  directions of a right hand, from its canonical joints.

  The palmar normal is the palm plane's normal turned towards -y, the palm side of the hand
  model frame (simajax.hand.anatomy): fingers curl that way.
  """
  mcps = joints[list(_MCPS)]
  centre = (joints[_WRIST] + mcps.sum(axis=0)) / 5.0
  across = _unit(mcps[0] - mcps[3])  # pinky -> index
  along = _unit(mcps.mean(axis=0) - joints[_WRIST])
  normal = _unit(np.cross(along, across))
  if normal[1] > 0:
    normal = -normal
  return centre, normal, across, along


def _occluders(hand: HandSample, rng: np.random.Generator, config: SceneConfig):
  """0-3 grasp-like occluder meshes (world frame), each with a random colour."""
  count = rng.choice(len(config.occluder_counts), p=config.occluder_counts)
  joints = hand.joints_canonical
  centre, normal, across, along = _palm_frame(joints)
  meshes = []
  for _ in range(count):
    side = normal if rng.random() < 0.65 else -normal  # mostly in the palm, sometimes behind
    if rng.random() < 0.6:
      anchor = centre + along * rng.uniform(-0.01, 0.03)
      surface = 0.012  # half the palm's thickness
    else:
      chain = _FINGER_CHAINS[rng.integers(5)]
      k = rng.integers(3)
      anchor = joints[chain[k]] + rng.uniform(0, 1) * (joints[chain[k + 1]] - joints[chain[k]])
      surface = 0.009
    anchor = anchor + across * rng.normal(0, 0.01)
    kind = rng.choice(["sphere", "box", "cylinder"])
    # Local frame: z across the palm (a grasped handle's axis), jittered; x towards the object.
    axis = _unit(across + 0.35 * rng.normal(size=3))
    x_dir = _unit(side - np.dot(side, axis) * axis)
    frame = np.stack([x_dir, np.cross(axis, x_dir), axis], axis=1)
    if kind == "sphere":
      radius = rng.uniform(0.03, 0.06)
      vertices, faces = primitives.uv_sphere(np.zeros(3), radius)
      half = radius
    elif kind == "box":
      size = rng.uniform([0.04, 0.06, 0.08], [0.08, 0.12, 0.16])
      vertices, faces = primitives.box(np.zeros(3), size, subdivisions=2)
      half = size[0] / 2.0
    else:
      radius = rng.uniform(0.025, 0.05)
      vertices, faces = primitives.cylinder(np.zeros(3), radius, rng.uniform(0.08, 0.2),
                                            num_segments=18)
      half = radius
    # Spin about x keeps the extent towards the hand (``half``) while turning the long axes.
    spin = geometry.axis_angle_to_matrix(np.array([rng.uniform(0, 2 * np.pi), 0.0, 0.0]))
    # Grasped objects press into the soft hand a little, or float just off it.
    gap = rng.uniform(-0.35, 0.1) * half
    local = vertices @ (frame @ spin).T + anchor + side * (surface + half + gap)
    color = _occluder_color(rng)
    meshes.append(Mesh(hand.to_world(local), faces, color=color, label=OCCLUDER_LABEL))
  return meshes


def _occluder_color(rng):
  hue_color = rng.uniform(0.05, 0.95, size=3)
  if rng.random() < 0.5:  # saturate: push one channel down
    hue_color[rng.integers(3)] *= 0.3
  return tuple(float(c) for c in hue_color)


@dataclasses.dataclass(frozen=True)
class SkinRegions:
  """Per-vertex weights of the skin's albedo regions, fixed per vertex of the hand model.

  Attributes:
    palm: [V] in [0, 1]: 1 on the palm and the palmar side of the fingers, 0 on the back, with a
      soft seam along the sides.
    nail: [V] in [0, 1]: 1 on the nail beds (the back of each distal phalanx, towards its tip).
  """
  palm: np.ndarray
  nail: np.ndarray


# The albedo map, from how real hands look: palms (and the palmar side of the fingers) carry
# less melanin than the back, so they are lighter and pinker on every skin tone, the more so the
# darker the tone; nails are pale pink-white whatever the tone. The palm is the frame's tone
# blended with PALM_TINT; the back is the tone darkened by BACK_SHADE.
PALM_TINT = np.array([0.96, 0.79, 0.72])
PALM_TINT_BLEND = 0.4
BACK_SHADE = 0.85
NAIL_COLOR = np.array([0.93, 0.80, 0.78])
NAIL_BLEND = 0.75  # how much of a nail's colour is its own, the rest the skin below it


def skin_regions(template_verts: np.ndarray, template_joints: np.ndarray,
                 faces: np.ndarray) -> SkinRegions:
  """Palm/back and nail weights of every vertex, from the hand model's (flat) rest template.

  Computed once per hand model on the template, so a vertex keeps its region in every pose and
  shape. The palm side is where the template's vertex normal points along the palmar normal of
  ``_palm_frame``; a nail is the back of a fingertip: the dorsal vertices of the last 55 % of
  each distal phalanx (DIP joint to tip).

  Args:
    template_verts: [V, 3] rest mesh (hand-model frame).
    template_joints: [21, 3] its joints, OpenPose order.
    faces: [F, 3] faces.
  """
  from simajax.render.shading import vertex_normals  # pylint: disable=import-outside-toplevel
  _, palmar, _, _ = _palm_frame(template_joints)
  normals = vertex_normals(template_verts, faces)
  facing = normals @ palmar
  palm = 1.0 / (1.0 + np.exp(-facing / 0.12))  # soft seam of ~15 deg either side
  nail = np.zeros(len(template_verts))
  for chain in _FINGER_CHAINS:
    dip, tip = template_joints[chain[2]], template_joints[chain[3]]
    axis = tip - dip
    along = (template_verts - dip) @ axis / float(axis @ axis)
    radial = template_verts - dip - along[:, None] * axis
    near = np.linalg.norm(radial, axis=1) < 0.012  # within the finger's radius of its axis
    nail = np.maximum(nail, ((along > 0.45) & (along < 1.05) & near & (facing < -0.45))
                      .astype(np.float64))
  return SkinRegions(palm=palm, nail=nail)


def model_skin_regions(model) -> SkinRegions:
  """``skin_regions`` of a ``simajax.hand.HandModel``'s rest template."""
  from simajax.hand.joints import joint_regressor_21  # pylint: disable=import-outside-toplevel
  verts = np.asarray(model.v_template, np.float64)
  joints = joint_regressor_21(model).astype(np.float64) @ verts
  return skin_regions(verts, joints, np.asarray(model.faces, np.int64))


def _skin_colors(hand: HandSample, regions: SkinRegions, rng: np.random.Generator) -> np.ndarray:
  """[778, 3] per-vertex skin colour: a frame tone, the albedo map, a smooth variation."""
  t = rng.uniform(0, len(_SKIN_TONES) - 1)
  lo = int(np.floor(t))
  hi = min(lo + 1, len(_SKIN_TONES) - 1)
  tone = _SKIN_TONES[lo] + (t - lo) * (_SKIN_TONES[hi] - _SKIN_TONES[lo])
  tone = tone * rng.uniform(0.9, 1.05) + rng.normal(0, 0.015, size=3)
  points = hand.verts_canonical - hand.verts_canonical.mean(axis=0)
  variation = np.zeros(len(points))
  for _ in range(3):
    direction = _unit(rng.normal(size=3))
    variation += np.sin(points @ direction * rng.uniform(30, 90) + rng.uniform(0, 2 * np.pi))
  palm = regions.palm[:, None]
  palm_color = (1.0 - PALM_TINT_BLEND) * tone + PALM_TINT_BLEND * PALM_TINT
  colors = palm * palm_color + (1.0 - palm) * (BACK_SHADE * tone)
  colors = colors * (1.0 + 0.03 * variation[:, None])
  nail = NAIL_BLEND * regions.nail[:, None]
  colors = (1.0 - nail) * colors + nail * NAIL_COLOR
  return np.clip(colors, 0.0, 1.0)


def _cameras(radius: float, min_distance: float, rng: np.random.Generator, config: SceneConfig):
  """8 (K, world2cam) pairs looking at the origin from around the hand."""
  size = config.image_size
  corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
  upright = config.orientation == "upright"
  rig = (geometry.rotation_about_z(rng.uniform(0, 2 * np.pi)) if upright
         else random_rotation(rng))
  directions = _unit(_unit(corners) @ rig.T + rng.normal(0, 0.25, (8, 3)))
  cameras = []
  for direction in directions:
    fov = np.deg2rad(rng.uniform(*config.fov_deg))
    focal = size / (2.0 * np.tan(fov / 2.0))
    aspect = rng.uniform(-0.015, 0.015)
    K = np.array([[focal * (1 + aspect), 0.0, size / 2.0 + rng.uniform(-0.04, 0.04) * size],
                  [0.0, focal * (1 - aspect), size / 2.0 + rng.uniform(-0.04, 0.04) * size],
                  [0.0, 0.0, 1.0]])
    distance = max(2.0 * radius * focal / (rng.uniform(*config.fill) * size), min_distance)
    target = rng.normal(0, 0.15 * radius, size=3)
    eye = target + distance * direction
    forward = _unit(target - eye)
    if upright:  # image up = world +z, then a small roll about the viewing axis
      right = _unit(np.cross(forward, np.array([0.0, 0.0, 1.0])))
      down = np.cross(forward, right)
      roll = rng.normal(0, np.deg2rad(config.camera_roll_deg))
      right, down = (np.cos(roll) * right + np.sin(roll) * down,
                     -np.sin(roll) * right + np.cos(roll) * down)
    else:
      up = rng.normal(size=3)  # a uniformly random roll about the viewing axis
      right = _unit(np.cross(forward, up))
      down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in the world frame
    world2cam = np.eye(4)
    world2cam[:3, :3] = rotation
    world2cam[:3, 3] = -rotation @ eye
    cameras.append((K, world2cam))
  return cameras


def random_background(size: int, rng: np.random.Generator) -> np.ndarray:
  """uint8 [size, size, 3]: a gradient, value noise and random shapes, plus pixel noise."""
  c0, c1 = rng.uniform(0, 1, size=(2, 3))
  angle = rng.uniform(0, 2 * np.pi)
  ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
  t = np.clip((np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) + 0.5, 0, 1)
  image = c0 + t[..., None] * (c1 - c0)
  cells = int(rng.integers(2, 12))
  noise = rng.uniform(0, 1, size=(cells, cells, 3))
  noise = np.asarray(Image.fromarray((noise * 255).astype(np.uint8)).resize(
      (size, size), Image.Resampling.BILINEAR), np.float64) / 255.0
  weight = rng.uniform(0, 0.6)
  image = (1 - weight) * image + weight * noise
  canvas = Image.fromarray((image * 255).astype(np.uint8))
  draw = ImageDraw.Draw(canvas, "RGBA")
  for _ in range(int(rng.integers(2, 12))):
    color = tuple(int(c) for c in rng.integers(0, 256, size=3)) + (int(rng.integers(90, 256)),)
    x0, y0 = rng.uniform(-0.2, 1.0, size=2) * size
    w, h = rng.uniform(0.05, 0.6, size=2) * size
    kind = rng.integers(4)
    if kind == 0:
      draw.ellipse([x0, y0, x0 + w, y0 + h], fill=color)
    elif kind == 1:
      draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
    elif kind == 2:
      points = [tuple(p) for p in rng.uniform(-0.1, 1.1, size=(int(rng.integers(3, 6)), 2)) * size]
      draw.polygon(points, fill=color)
    else:
      width = int(rng.integers(1, max(2, size // 20)))
      draw.line([x0, y0, x0 + w, y0 + h], fill=color, width=width)
  image = np.asarray(canvas, np.float64) + rng.normal(0, rng.uniform(0, 8), size=(size, size, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def _light(rng: np.random.Generator) -> Light:
  direction = _unit(np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), 1.0]))
  return Light(direction=tuple(direction), ambient=rng.uniform(0.25, 0.5),
               diffuse=rng.uniform(0.45, 0.8))


def render_frame(hand: HandSample, faces: np.ndarray, regions: SkinRegions, seed: int,
                 split: str, hand_model: str, config: SceneConfig) -> dict:
  """Builds and renders one frame; returns the schema example (see ``data_pipelines.schema``).

  Args:
    hand: the frame's hand from ``sample_hands``.
    faces: [F, 3] hand-model faces.
    regions: the hand model's ``skin_regions``.
    seed: the dataset seed.
    split: split name.
    hand_model: "synthhand" or "mano", stored in the example.
    config: image size and scene ranges.

  Returns:
    The example dict.
  """
  rng = frame_rng(seed, split, hand.index, 1)
  size = config.image_size
  verts_world = hand.to_world(hand.verts_canonical)
  joints_world = hand.to_world(hand.joints_canonical)
  hand_mesh = Mesh(verts_world, faces, color=_skin_colors(hand, regions, rng), label=HAND_LABEL,
                   crease_angle=180.0)
  occluders = _occluders(hand, rng, config)
  radius = float(np.linalg.norm(verts_world, axis=1).max())
  reach = max([radius] + [float(np.linalg.norm(m.vertices, axis=1).max()) for m in occluders])
  cameras = _cameras(radius, reach + 0.05, rng, config)
  root = hand.joints_canonical[0]
  fingers = hand.pose[3:]
  views = {name: [] for name in list(schema.VIEW_ARRAYS) + list(schema.VIEW_BYTES)
           + list(schema.VIEW_TEXT)}
  for v, (K, world2cam) in enumerate(cameras):
    result = render_scene([hand_mesh] + occluders, K, world2cam, size, size, light=_light(rng),
                          background=random_background(size, rng))
    visible = result.mask(HAND_LABEL)
    full = silhouette([hand_mesh], K, world2cam, size, size) if occluders else visible
    rgb = Image.fromarray(result.rgb).filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.7)))
    rot_cam = world2cam[:3, :3]
    joints_cam = joints_world @ rot_cam.T + world2cam[:3, 3]
    global_rot = rot_cam @ hand.world_rot
    views["image"].append(schema.encode_image(np.asarray(rgb), "jpeg", config.jpeg_quality))
    views["hand_mask"].append(schema.encode_image(visible.astype(np.uint8) * 255, "png"))
    views["camera_id"].append(f"cam{v}")
    views["bg_variant"].append("synthetic")
    views["view_valid"].append(bool(full.any()))
    views["K"].append(K)
    views["world2cam"].append(world2cam)
    views["joints_img"].append(project(joints_cam, K))
    views["joints_cam"].append(joints_cam)
    views["global_rot"].append(global_rot)
    views["mano_pose"].append(np.concatenate([geometry.matrix_to_axis_angle(global_rot), fingers]))
    views["mano_trans"].append(joints_cam[0] - root)
    views["vis_ratio"].append(visible.sum() / full.sum() if full.any() else -1.0)
  return {
      "frame_key": f"synthetic_hands/{split}/{hand.index:08d}",
      "dataset": "synthetic_hands",
      "hand_side": "right",
      "hand_model": hand_model,
      "has_mesh": True,
      "mano_shape": hand.betas.astype(np.float32),
      "mano_pose": np.concatenate([geometry.matrix_to_axis_angle(hand.world_rot),
                                   fingers]).astype(np.float32),
      "mano_trans": hand.world_trans.astype(np.float32),
      "joints_canonical": hand.joints_canonical.astype(np.float32),
      "verts_canonical": hand.verts_canonical.astype(np.float32),
      "views": {name: (np.asarray(values, schema.VIEW_ARRAYS[name][1])
                       if name in schema.VIEW_ARRAYS else values)
                for name, values in views.items()},
  }

