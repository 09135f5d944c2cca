"""Scene rendering: shading against Lambert's law, labels/occlusion, extrinsics, normals."""

import numpy as np
import pytest

from simajax.render import (Light, Mesh, corner_normals, face_normals, look_at, primitives,
                            render_scene, silhouette, to_camera, vertex_normals)

H, W = 64, 80
K = np.array([[90.0, 0, 39.5], [0, 90.0, 31.5], [0, 0, 1]])


def pixel_rays(K, height, width):
  rows, cols = np.mgrid[:height, :width]
  return np.stack([cols, rows, np.ones_like(cols)], -1).reshape(-1, 3) @ np.linalg.inv(K).T


def tilted_square(normal, center, half=0.4):
  """Two triangles spanning a square with the given unit normal (wound counter-clockwise)."""
  normal = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
  u = np.cross(normal, [0.0, 1.0, 0.0] if abs(normal[1]) < 0.9 else [1.0, 0.0, 0.0])
  u /= np.linalg.norm(u)
  v = np.cross(normal, u)
  corners = [center - half * u - half * v, center + half * u - half * v,
             center + half * u + half * v, center - half * u + half * v]
  return np.array(corners), np.array([[0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("normal,light_dir", [
    ((0.0, 0.0, -1.0), (0.0, 0.0, 1.0)),      # facing the camera, head-light
    ((0.3, -0.2, -1.0), (0.5, 0.4, 1.0)),     # tilted, oblique light
    ((0.3, -0.2, 1.0), (0.5, 0.4, 1.0)),      # wound away from the camera: lit two-sided
    ((0.0, 0.0, -1.0), (0.0, 0.0, -1.0)),     # light from behind: ambient only
])
def test_flat_surface_follows_lamberts_law(normal, light_dir):
  vertices, faces = tilted_square(normal, np.array([0.0, 0.0, 2.0]))
  light = Light(direction=light_dir, ambient=0.25, diffuse=0.7)
  color = np.array([0.9, 0.6, 0.3])
  result = render_scene([Mesh(vertices, faces, color=color)], K, None, H, W, light=light)
  unit = np.asarray(normal) / np.linalg.norm(normal)
  towards_camera = unit if unit @ vertices[0] < 0 else -unit
  to_light = -np.asarray(light_dir) / np.linalg.norm(light_dir)
  intensity = 0.25 + 0.7 * max(0.0, towards_camera @ to_light)
  expected = np.round(255 * np.clip(color * intensity, 0, 1))
  covered = result.fragments.mask
  assert covered.sum() > 500
  np.testing.assert_allclose(result.rgb[covered], np.broadcast_to(expected, (covered.sum(), 3)),
                             atol=1)
  assert (result.rgb[~covered] == 0).all()


def test_sphere_is_brightest_where_it_faces_the_light():
  center, radius = np.array([0.05, -0.03, 1.5]), 0.4
  light_dir = np.array([0.6, -0.4, 1.0])
  sphere = Mesh(*primitives.uv_sphere(center, radius, num_lat=32, num_lon=64), color=(1, 1, 1))
  result = render_scene([sphere], K, None, H, W, light=Light(light_dir, 0.2, 0.8))
  gray = result.rgb[..., 0].astype(float)
  gray[~result.fragments.mask] = -1
  row, col = np.unravel_index(np.argmax(gray), gray.shape)
  brightest = center - radius * light_dir / np.linalg.norm(light_dir)
  u, v = (K @ brightest)[:2] / brightest[2]
  assert np.hypot(col - u, row - v) < 2.5


def test_per_vertex_colors_interpolate_perspective_correctly():
  # Colour is an affine function of the 3D position, so at each pixel it must equal that function
  # of the surface point the pixel's ray hits.
  vertices = np.array([[-0.6, -0.5, 1.0], [0.7, -0.4, 3.0], [-0.2, 0.6, 1.8]])
  faces = np.array([[0, 1, 2]])

  def colour_of(points):
    return np.stack([(points[:, 2] - 1.0) / 2.0, (points[:, 0] + 0.6) / 1.3,
                     np.full(len(points), 0.5)], axis=1)

  mesh = Mesh(vertices, faces, color=colour_of(vertices))
  result = render_scene([mesh], K, None, H, W, light=Light(ambient=1.0, diffuse=0.0))
  covered = result.fragments.mask.ravel()
  rays = pixel_rays(K, H, W)[covered]
  normal = np.cross(vertices[1] - vertices[0], vertices[2] - vertices[0])
  points = rays * (normal @ vertices[0] / (rays @ normal))[:, None]
  expected = np.round(255 * colour_of(points))
  np.testing.assert_allclose(result.rgb.reshape(-1, 3)[covered], expected, atol=1)


def test_occluder_hides_hand_and_labels_follow_visibility():
  hand = Mesh(*primitives.uv_sphere((0.0, 0.0, 2.0), 0.5), color=(0.9, 0.7, 0.6), label=1)
  occluder = Mesh(*primitives.box((0.3, 0.1, 1.2), (0.4, 0.5, 0.2)), color=(0.2, 0.3, 0.9),
                  label=2)
  behind = Mesh(*primitives.box((-0.3, 0.0, 3.0), (0.6, 0.6, 0.3)), color=(0.1, 0.8, 0.1),
                label=3)
  meshes = [hand, occluder, behind]
  result = render_scene(meshes, K, None, H, W)
  alone = {m.label: silhouette([m], K, None, H, W) for m in meshes}
  visible_hand = result.mask(1)
  # The hand is visible exactly where it is not hidden by the nearer occluder; it hides the box
  # behind it.
  np.testing.assert_array_equal(visible_hand, alone[1] & ~alone[2])
  np.testing.assert_array_equal(result.mask(3), alone[3] & ~alone[1] & ~alone[2])
  np.testing.assert_array_equal(result.mask(2), alone[2])
  np.testing.assert_array_equal(result.label_map == -1, ~(alone[1] | alone[2] | alone[3]))
  ratio = visible_hand.sum() / alone[1].sum()
  assert 0.3 < ratio < 0.95
  np.testing.assert_array_equal(result.mesh_index, np.where(result.label_map > 0,
                                                            result.label_map - 1, -1))
  # The list order does not matter: depth decides.
  reordered = render_scene(meshes[::-1], K, None, H, W)
  np.testing.assert_array_equal(reordered.label_map, result.label_map)
  np.testing.assert_array_equal(reordered.rgb, result.rgb)


def test_culling_closed_meshes_changes_nothing_but_the_work():
  rot = np.array([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]])
  shapes = [primitives.uv_sphere((0.0, 0.0, 2.0), 0.5), primitives.box((0.3, 0.1, 1.2), 0.3, rot),
            primitives.cylinder((-0.4, 0.2, 1.6), 0.15, 0.6, rot)]
  images = []
  for cull in (False, True):
    meshes = [Mesh(v, f, label=i, cull_backfaces=cull) for i, (v, f) in enumerate(shapes)]
    images.append(render_scene(meshes, K, None, H, W))
  np.testing.assert_array_equal(images[0].rgb, images[1].rgb)
  np.testing.assert_array_equal(images[0].label_map, images[1].label_map)
  np.testing.assert_array_equal(images[0].depth, images[1].depth)
  # The culled faces are exactly the ones turned away from the camera, and none of them is seen.
  vertices = np.concatenate([v for v, _ in shapes])
  offsets = np.cumsum([0] + [len(v) for v, _ in shapes])
  faces = np.concatenate([f + o for (_, f), o in zip(shapes, offsets)])
  tri = vertices[faces]
  away = np.einsum("fi,fi->f", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]),
                   tri[:, 0]) >= 0
  assert 0.3 < away.mean() < 0.7
  assert not away[images[0].fragments.face_id[images[0].fragments.mask]].any()


def test_extrinsic_equals_transforming_the_vertices():
  theta = 0.4
  rot = np.array([[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]])
  trans = np.array([0.1, -0.05, 2.0])
  vertices, faces = primitives.box((0.0, 0.0, 0.0), (0.5, 0.3, 0.4), subdivisions=2)
  in_camera = np.array([rot @ x + trans for x in vertices])
  reference = render_scene([Mesh(in_camera, faces)], K, None, H, W)
  world2cam = np.eye(4)
  world2cam[:3, :3], world2cam[:3, 3] = rot, trans
  for extrinsic in (world2cam, world2cam[:3]):
    result = render_scene([Mesh(vertices, faces)], K, extrinsic, H, W)
    np.testing.assert_array_equal(result.fragments.face_id, reference.fragments.face_id)
    np.testing.assert_allclose(result.depth[result.fragments.mask],
                               reference.depth[reference.fragments.mask], rtol=1e-12)
    np.testing.assert_allclose(result.rgb, reference.rgb, atol=1)


def test_background_image_and_colour():
  rng = np.random.default_rng(0)
  photo = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
  mesh = Mesh(*primitives.uv_sphere((0.0, 0.0, 2.0), 0.4))
  result = render_scene([mesh], K, None, H, W, background=photo)
  empty = ~result.fragments.mask
  assert empty.sum() > 1000
  np.testing.assert_array_equal(result.rgb[empty], photo[empty])
  result = render_scene([mesh], K, None, H, W, background=(1.0, 0.5, 0.0))
  np.testing.assert_array_equal(result.rgb[empty], np.broadcast_to([255, 128, 0], (empty.sum(), 3)))


def test_normals_smooth_spheres_and_keep_box_creases():
  center = np.array([0.2, -0.1, 1.0])
  vertices, faces = primitives.uv_sphere(center, 0.5, num_lat=16, num_lon=32)
  radial = (vertices - center) / 0.5
  cosine = np.einsum("vi,vi->v", vertex_normals(vertices, faces), radial)
  assert cosine.min() > np.cos(np.deg2rad(3.0))
  np.testing.assert_allclose(corner_normals(vertices, faces, 180.0),
                             vertex_normals(vertices, faces)[faces], atol=1e-12)
  np.testing.assert_allclose(corner_normals(vertices, faces, 60.0),
                             vertex_normals(vertices, faces)[faces], atol=1e-12)
  flat = face_normals(vertices, faces)
  flat /= np.linalg.norm(flat, axis=1, keepdims=True)
  np.testing.assert_allclose(corner_normals(vertices, faces, 0.0),
                             np.repeat(flat[:, None], 3, axis=1), atol=1e-12)

  vertices, faces = primitives.box(center, 0.4, subdivisions=2)
  unit = face_normals(vertices, faces)
  unit /= np.linalg.norm(unit, axis=1, keepdims=True)
  np.testing.assert_allclose(corner_normals(vertices, faces, 60.0),
                             np.repeat(unit[:, None], 3, axis=1), atol=1e-12)
  subset = np.array([5, 0, 17])
  np.testing.assert_allclose(corner_normals(vertices, faces, 60.0, for_faces=subset),
                             corner_normals(vertices, faces, 60.0)[subset], atol=1e-12)


def test_bad_scene_inputs_are_named():
  vertices, faces = primitives.box((0, 0, 2.0), 0.5)
  with pytest.raises(ValueError, match=r"meshes\[0\].color must be RGB floats in \[0, 1\]"):
    render_scene([Mesh(vertices, faces, color=(255, 0, 0))], K, None, H, W)
  with pytest.raises(ValueError, match="background image"):
    render_scene([Mesh(vertices, faces)], K, None, H, W, background=np.zeros((H, W, 3)))
  with pytest.raises(ValueError, match=r"meshes\[1\].faces"):
    render_scene([Mesh(vertices, faces), Mesh(vertices, faces + 100)], K, None, H, W)
  with pytest.raises(ValueError, match="extrinsic"):
    render_scene([Mesh(vertices, faces)], K, np.eye(3), H, W)


def test_look_at_builds_an_opencv_camera():
  # Camera 1 m in front of the origin along -z, world y down: the identity rotation.
  np.testing.assert_allclose(look_at((0, 0, -1.0), (0, 0, 0)),
                             [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], atol=1e-12)
  eye, target, up = np.array([0.5, -0.3, 0.8]), np.array([0.1, 0.2, 2.0]), np.array([0, 0, 1.0])
  world2cam = look_at(eye, target, up)
  rotation = world2cam[:3, :3]
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
  assert np.linalg.det(rotation) == pytest.approx(1.0)
  np.testing.assert_allclose(to_camera(eye, world2cam), 0.0, atol=1e-12)
  target_cam = to_camera(target, world2cam)
  np.testing.assert_allclose(target_cam[:2], 0.0, atol=1e-12)  # on the optical axis
  assert target_cam[2] == pytest.approx(np.linalg.norm(target - eye))
  assert to_camera(target + 0.1 * up, world2cam)[1] < 0  # "up" is up in the image (v smaller)
  with pytest.raises(ValueError, match="parallel"):
    look_at((0, 0, 0), (0, 0, 1), (0, 0, 1))
