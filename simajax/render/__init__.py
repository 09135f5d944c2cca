"""Pure-numpy rendering and mesh export: z-buffer rasterizer, shading, primitives, drawing, I/O.

Used by the synthetic multi-view dataset builder (hand + occluders from calibrated cameras), by
prediction overlays on photos and by demo pictures. Camera convention: OpenCV (x right, y down,
z forward), ``(u, v) = (K X)[:2] / z`` with pixel centres at integer coordinates.
"""

from simajax.render.draw import (HAND_COLORS, HAND_PARENTS, draw_keypoints, image_grid,
                                 overlay_mesh, save_image)
from simajax.render.mesh_io import TriangleMesh, read_obj, read_ply, write_obj, write_ply
from simajax.render.primitives import box, cylinder, uv_sphere
from simajax.render.rasterizer import Fragments, project, rasterize
from simajax.render.scene import (Mesh, RenderResult, look_at, render_scene, silhouette,
                                  to_camera)
from simajax.render.shading import Light, corner_normals, face_normals, shade, vertex_normals

__all__ = [
    "Fragments", "HAND_COLORS", "HAND_PARENTS", "Light", "Mesh", "RenderResult", "TriangleMesh",
    "box", "corner_normals", "cylinder", "draw_keypoints", "face_normals", "image_grid", "look_at",
    "overlay_mesh", "project", "rasterize", "read_obj", "read_ply", "render_scene", "save_image",
    "shade", "silhouette", "to_camera", "uv_sphere", "vertex_normals", "write_obj", "write_ply",
]
