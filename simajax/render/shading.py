"""Normals and Lambertian shading of rasterized meshes.

Colours here are RGB floats in [0, 1]. Light directions are given in the camera frame, as the
direction the light *travels* ((0, 0, 1) is a head-light shining along the view axis).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from simajax.render.rasterizer import Fragments


@dataclasses.dataclass(frozen=True)
class Light:
  """A directional light plus ambient term: intensity = ambient + diffuse * max(0, n . -dir).

  Attributes:
    direction: [3] direction the light travels, camera frame (need not be normalised).
    ambient: ambient intensity.
    diffuse: diffuse (Lambertian) intensity.
  """
  direction: tuple[float, float, float] = (0.3, 0.5, 1.0)
  ambient: float = 0.35
  diffuse: float = 0.65


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Unnormalised face normals (v1 - v0) x (v2 - v0); their length is twice the face area.

  Args:
    vertices: [N, 3] vertex positions.
    faces: [F, 3] vertex indices.

  Returns:
    [F, 3] normals, pointing outward for counter-clockwise (right-handed) winding.
  """
  tri = np.asarray(vertices, dtype=np.float64)[faces]
  return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Unit vertex normals: the area-weighted mean of the normals of the faces around each vertex.

  Args:
    vertices: [N, 3] vertex positions.
    faces: [F, 3] vertex indices.

  Returns:
    [N, 3] unit normals (zero for vertices used by no face of non-zero area).
  """
  normals = face_normals(vertices, faces)
  summed = np.stack([np.bincount(faces.ravel(), weights=np.repeat(normals[:, d], 3),
                                 minlength=len(vertices)) for d in range(3)], axis=1)
  return _normalize(summed)


def corner_normals(vertices: np.ndarray, faces: np.ndarray, crease_angle: float = 180.0, *,
                   for_faces: Optional[np.ndarray] = None) -> np.ndarray:
  """Unit normals at each face corner, smoothed only across edges flatter than ``crease_angle``.

  The normal at corner (f, k) is the area-weighted mean of the normals of the faces around vertex
  ``faces[f, k]`` whose normal is within ``crease_angle`` degrees of face f's normal. So a sphere
  or a hand shades smoothly while a box keeps flat sides and a cylinder a sharp rim.

  Args:
    vertices: [N, 3] vertex positions.
    faces: [F, 3] vertex indices.
    crease_angle: degrees; 180 (or more) smooths across every edge (plain vertex normals), 0 gives
      flat (per-face) shading.
    for_faces: optional [M] face indices; only their corners are computed (e.g. the visible
      faces of a render), which is cheaper than all F.

  Returns:
    [F, 3, 3] (or [M, 3, 3] with ``for_faces``) unit normals, indexed [face, corner, xyz].
  """
  faces = np.asarray(faces, dtype=np.int64)
  wanted = np.arange(len(faces)) if for_faces is None else np.asarray(for_faces, dtype=np.int64)
  if crease_angle >= 180.0:
    return vertex_normals(vertices, faces)[faces[wanted]]
  normals = face_normals(vertices, faces)
  unit = _normalize(normals)
  # Pair every wanted corner with every corner (of any face) that shares its vertex, itself
  # included; corner c of the whole mesh is face c // 3, slot c % 3.
  by_vertex = np.argsort(faces.ravel(), kind="stable")
  valence = np.bincount(faces.ravel(), minlength=len(vertices))
  group_start = np.cumsum(valence) - valence
  corner_vertex = faces[wanted].ravel()
  pairs_per_corner = valence[corner_vertex]
  corner = np.repeat(np.arange(corner_vertex.size), pairs_per_corner)
  rank = np.arange(corner.size) - np.repeat(np.cumsum(pairs_per_corner) - pairs_per_corner,
                                            pairs_per_corner)
  partner_face = by_vertex[group_start[corner_vertex[corner]] + rank] // 3
  own_face = wanted[corner // 3]
  smooth = (np.einsum("pi,pi->p", unit[own_face], unit[partner_face])
            >= np.cos(np.deg2rad(crease_angle)) - 1e-12)
  summed = np.stack([np.bincount(corner, weights=normals[partner_face, d] * smooth,
                                 minlength=corner_vertex.size) for d in range(3)], axis=1)
  return _normalize(summed).reshape(-1, 3, 3)


def shade(fragments: Fragments, vertices_cam: np.ndarray, faces: np.ndarray,
          corner_colors: np.ndarray, normals_at_corners: np.ndarray,
          light: Light = Light()) -> np.ndarray:
  """Lambertian + ambient shading of the visible surface.

  Normals are interpolated with the perspective-correct barycentrics and turned towards the
  camera where they face away from it (two-sided lighting), so open meshes such as the hand,
  seen through their opening, are lit rather than black.

  Args:
    fragments: output of ``rasterize`` for these vertices and faces.
    vertices_cam: [N, 3] vertices in the camera frame.
    faces: [F, 3] vertex indices.
    corner_colors: [F, 3, 3] RGB in [0, 1] at each face corner.
    normals_at_corners: [F, 3, 3] unit normals at each face corner (camera frame).
    light: the light.

  Returns:
    [H, W, 3] float RGB in [0, 1]; 0 where nothing is drawn.
  """
  height, width = fragments.face_id.shape
  rgb = np.zeros((height * width, 3))
  pixels = np.flatnonzero(fragments.face_id.ravel() >= 0)
  if pixels.size == 0:
    return rgb.reshape(height, width, 3)
  face = fragments.face_id.ravel()[pixels]
  bary = fragments.bary.reshape(-1, 3)[pixels]
  # One gather and one contraction for the three interpolated attributes.
  corners = np.concatenate([np.asarray(vertices_cam, dtype=np.float64)[faces],
                            normals_at_corners, corner_colors], axis=2)  # [F, 3, 9]
  attributes = np.einsum("pk,pkd->pd", bary, corners[face])
  points, normal, color = attributes[:, 0:3], _normalize(attributes[:, 3:6]), attributes[:, 6:9]
  # The camera sits at the origin: a normal pointing along the viewing ray faces away from it.
  normal *= np.where(np.einsum("pd,pd->p", normal, points) > 0, -1.0, 1.0)[:, None]
  towards_light = -_normalize(np.asarray(light.direction, dtype=np.float64)[None])[0]
  intensity = light.ambient + light.diffuse * np.maximum(normal @ towards_light, 0.0)
  rgb[pixels] = np.clip(color * intensity[:, None], 0.0, 1.0)
  return rgb.reshape(height, width, 3)


def _normalize(vectors: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / np.where(norm > 0, norm, 1.0)
