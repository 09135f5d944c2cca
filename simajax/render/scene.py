"""Render several meshes (a hand and its occluders) seen by one calibrated camera.

Typical use (synthetic multi-view data)::

  hand = Mesh(hand_verts, hand_faces, color=(0.9, 0.7, 0.6), label=1)
  ball = Mesh(*primitives.uv_sphere(centre, 0.03), color=(0.2, 0.4, 0.9), label=2,
              cull_backfaces=True)
  result = render_scene([hand, ball], K, world2cam, 224, 224)
  visible = result.mask(1)                                   # hand pixels not hidden by the ball
  unoccluded = silhouette([hand], K, world2cam, 224, 224)    # hand pixels without occluders
  visibility_ratio = visible.sum() / max(unoccluded.sum(), 1)
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import numpy as np

from simajax.render.rasterizer import Fragments, check_mesh_arrays, rasterize
from simajax.render.shading import Light, corner_normals, shade

ColorLike = Union[Sequence[float], np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Mesh:
  """A triangle mesh to render.

  Attributes:
    vertices: [N, 3] vertex positions in the world frame (the camera frame when no extrinsic is
      given), metres.
    faces: [F, 3] vertex indices.
    color: RGB floats in [0, 1]: one [3] colour for the whole mesh or [N, 3] per vertex.
    label: integer written to ``RenderResult.label_map`` where this mesh is visible (>= 0;
      several meshes may share a label).
    crease_angle: degrees; edges sharper than this are shaded as creases (see
      ``shading.corner_normals``). The default keeps box sides and cylinder rims sharp and
      smooths spheres and hands.
    cull_backfaces: skip faces turned away from the camera. Only for closed, outward-oriented
      meshes seen from outside (e.g. the primitives), where it changes nothing but the time; not
      for the hand, which is open at the wrist.
  """
  vertices: np.ndarray
  faces: np.ndarray
  color: ColorLike = (0.8, 0.8, 0.8)
  label: int = 0
  crease_angle: float = 60.0
  cull_backfaces: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class RenderResult:
  """Output of ``render_scene``.

  Attributes:
    rgb: [H, W, 3] uint8 shaded image over the background.
    depth: [H, W] float64 camera-frame z of the visible surface, ``inf`` on the background.
    label_map: [H, W] int64 ``Mesh.label`` of the visible mesh, -1 on the background.
    mesh_index: [H, W] int64 position in the ``meshes`` list of the visible mesh, -1 on the
      background.
    fragments: the raw rasterizer output (face ids index the concatenated faces of all meshes).
  """
  rgb: np.ndarray
  depth: np.ndarray
  label_map: np.ndarray
  mesh_index: np.ndarray
  fragments: Fragments

  def mask(self, label: int) -> np.ndarray:
    """[H, W] bool: pixels where a mesh with this label is the visible surface."""
    return self.label_map == label


def render_scene(meshes: Sequence[Mesh], K: np.ndarray, extrinsic: Optional[np.ndarray],
                 height: int, width: int, *, light: Light = Light(),
                 background: Union[ColorLike, np.ndarray] = (0.0, 0.0, 0.0)) -> RenderResult:
  """Renders meshes with one shared z-buffer, so they occlude each other correctly.

  Args:
    meshes: the meshes (world frame).
    K: [3, 3] intrinsics (OpenCV; pixel centres at integer coordinates, see ``rasterizer``).
    extrinsic: world-to-camera transform, [4, 4] or [3, 4] ``[R | t]`` with
      ``x_cam = R x_world + t``; None when the vertices are already in the camera frame.
    height: image height in pixels.
    width: image width in pixels.
    light: directional + ambient light (direction in the camera frame).
    background: an RGB colour (floats in [0, 1]) or a uint8 [H, W, 3] image.

  Returns:
    A ``RenderResult``.
  """
  vertices, faces, mesh_of_face = _concatenate(meshes, extrinsic)
  rgb = _background(background, height, width)
  fragments = rasterize(vertices, faces, K, height, width,
                        cull_backfaces=_cull_flags(meshes, mesh_of_face))
  corner_colors, normals = _visible_corner_attributes(meshes, vertices, fragments)
  shaded = shade(fragments, vertices, faces, corner_colors, normals, light)
  covered = fragments.mask
  rgb[covered] = np.round(shaded[covered] * 255.0)
  labels = np.array([m.label for m in meshes], dtype=np.int64)
  mesh_index = np.where(covered, mesh_of_face[np.maximum(fragments.face_id, 0)], -1)
  return RenderResult(
      rgb=rgb, depth=fragments.depth,
      label_map=np.where(covered, labels[np.maximum(mesh_index, 0)], -1),
      mesh_index=mesh_index, fragments=fragments)


def silhouette(meshes: Sequence[Mesh], K: np.ndarray, extrinsic: Optional[np.ndarray],
               height: int, width: int) -> np.ndarray:
  """[H, W] bool coverage of the meshes (no shading); e.g. the unoccluded hand mask.

  Args:
    meshes: the meshes (world frame).
    K: [3, 3] intrinsics.
    extrinsic: world-to-camera [4, 4] or [3, 4], or None (vertices already in the camera frame).
    height: image height in pixels.
    width: image width in pixels.

  Returns:
    True where any of the meshes covers the pixel centre.
  """
  vertices, faces, mesh_of_face = _concatenate(meshes, extrinsic)
  return rasterize(vertices, faces, K, height, width,
                   cull_backfaces=_cull_flags(meshes, mesh_of_face)).mask


def to_camera(points: np.ndarray, extrinsic: Optional[np.ndarray]) -> np.ndarray:
  """Applies a world-to-camera transform ([4, 4] or [3, 4] ``[R | t]``) to [..., 3] points."""
  points = np.asarray(points, dtype=np.float64)
  if extrinsic is None:
    return points
  extrinsic = np.asarray(extrinsic, dtype=np.float64)
  if extrinsic.shape not in ((4, 4), (3, 4)):
    raise ValueError(f"extrinsic must be [4, 4] or [3, 4] world-to-camera, got {extrinsic.shape}")
  return points @ extrinsic[:3, :3].T + extrinsic[:3, 3]


def look_at(eye: ColorLike, target: ColorLike, up: ColorLike = (0.0, -1.0, 0.0)) -> np.ndarray:
  """World-to-camera [4, 4] of an OpenCV camera at ``eye`` looking at ``target``.

  The camera's z axis points at the target, its y axis (image down) is opposite to ``up`` as far
  as orthogonality allows, and x = y cross z (image right).

  Args:
    eye: [3] camera centre (world frame).
    target: [3] point that projects to the principal point.
    up: [3] world direction that appears upward in the image (must not be parallel to the view
      direction).

  Returns:
    [4, 4] world-to-camera matrix ``[R | t; 0 0 0 1]`` with ``x_cam = R x_world + t``.
  """
  eye = np.asarray(eye, dtype=np.float64)
  forward = np.asarray(target, dtype=np.float64) - eye
  up = np.asarray(up, dtype=np.float64)
  down = -(up - (up @ forward) / (forward @ forward) * forward)
  if np.linalg.norm(forward) == 0 or np.linalg.norm(down) < 1e-9 * np.linalg.norm(up):
    raise ValueError("look_at: eye equals target, or up is parallel to the view direction")
  z_axis = forward / np.linalg.norm(forward)
  y_axis = down / np.linalg.norm(down)
  rotation = np.stack([np.cross(y_axis, z_axis), y_axis, z_axis])
  world2cam = np.eye(4)
  world2cam[:3, :3] = rotation
  world2cam[:3, 3] = -rotation @ eye
  return world2cam


def _concatenate(meshes, extrinsic):
  if not meshes:
    raise ValueError("render: need at least one mesh")
  vertices, faces, owner, offset = [], [], [], 0
  for i, mesh in enumerate(meshes):
    v, f = check_mesh_arrays(mesh.vertices, mesh.faces, f"render: meshes[{i}].vertices",
                             f"render: meshes[{i}].faces")
    if int(mesh.label) < 0:
      raise ValueError(f"render: meshes[{i}].label must be >= 0 (-1 marks background)")
    vertices.append(to_camera(v, extrinsic))
    faces.append(f.astype(np.int64) + offset)
    owner.append(np.full(len(f), i, dtype=np.int64))
    offset += len(v)
  return np.concatenate(vertices), np.concatenate(faces), np.concatenate(owner)


def _cull_flags(meshes, mesh_of_face):
  return np.array([m.cull_backfaces for m in meshes], dtype=bool)[mesh_of_face]


def _visible_corner_attributes(meshes, vertices_cam, fragments):
  """[F, 3, 3] corner colours and camera-frame corner normals, filled for visible faces only."""
  num_faces = sum(len(m.faces) for m in meshes)
  colors = np.zeros((num_faces, 3, 3))
  normals = np.zeros((num_faces, 3, 3))
  visible = np.unique(fragments.face_id[fragments.face_id >= 0])
  vertex_offset = face_offset = 0
  for i, mesh in enumerate(meshes):
    faces = np.asarray(mesh.faces)
    local = visible[(visible >= face_offset) & (visible < face_offset + len(faces))] - face_offset
    colors[local + face_offset] = _corner_colors(mesh, i)[local]
    # Per mesh, so that creases never join two objects.
    normals[local + face_offset] = corner_normals(
        vertices_cam[vertex_offset:vertex_offset + len(mesh.vertices)], faces, mesh.crease_angle,
        for_faces=local)
    vertex_offset += len(mesh.vertices)
    face_offset += len(faces)
  return colors, normals


def _corner_colors(mesh: Mesh, index: int) -> np.ndarray:
  color = np.asarray(mesh.color, dtype=np.float64)
  num_vertices = len(mesh.vertices)
  if color.shape not in ((3,), (num_vertices, 3)):
    raise ValueError(f"render: meshes[{index}].color must be [3] or [{num_vertices}, 3], got "
                     f"{color.shape}")
  if color.size and (color.min() < 0.0 or color.max() > 1.0):
    raise ValueError(f"render: meshes[{index}].color must be RGB floats in [0, 1], got values in "
                     f"[{color.min()}, {color.max()}]")
  faces = np.asarray(mesh.faces)
  if color.ndim == 1:
    return np.broadcast_to(color, (len(faces), 3, 3))
  return color[faces]


def _background(background, height, width) -> np.ndarray:
  """A fresh uint8 [H, W, 3] canvas holding the background."""
  background = np.asarray(background)
  if background.shape == (3,):
    color = background.astype(np.float64)
    if color.min() < 0.0 or color.max() > 1.0:
      raise ValueError(f"render: a background colour must be RGB floats in [0, 1], got {color}")
    return np.broadcast_to(np.round(color * 255.0).astype(np.uint8), (height, width, 3)).copy()
  if background.shape != (height, width, 3) or background.dtype != np.uint8:
    raise ValueError(f"render: a background image must be uint8 [{height}, {width}, 3], got "
                     f"{background.dtype} {background.shape}")
  return background.copy()
