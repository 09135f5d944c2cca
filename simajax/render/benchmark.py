"""Times the renderer on the dataset builder's workload: a hand plus occluders, 8 cameras.

  python -m simajax.render.benchmark --hand shared/mesh_reference/assets.npz --size 224

``--hand`` takes an assets.npz (``verts_0``/``faces_0``), a .ply or an .obj; without it a
hand-sized ellipsoid with the hand's face count (1536) stands in. Three primitives (~1000 faces)
partly occlude it. Every call is timed over the 8 views (cameras on a ring around the hand), and
the median and minimum per render are printed. Pure numpy (run with OMP_NUM_THREADS=1 for one
core); the machine load is printed too, since shared machines make wall times noisy.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from simajax.render import mesh_io, primitives
from simajax.render.rasterizer import rasterize
from simajax.render.scene import Mesh, look_at, render_scene, silhouette, to_camera


def load_hand(path):
  """(vertices, faces) of the hand, centred at the origin; a stand-in when ``path`` is None."""
  if path is None:
    vertices, faces = primitives.uv_sphere(num_lat=25, num_lon=32)
    vertices = vertices * [0.09, 0.05, 0.025]
  elif str(path).endswith(".npz"):
    with np.load(path) as assets:
      vertices, faces = assets["verts_0"], assets["faces_0"]
  else:
    reader = mesh_io.read_ply if str(path).endswith(".ply") else mesh_io.read_obj
    vertices, faces = reader(path)[:2]
  return vertices - vertices.mean(axis=0), np.asarray(faces, dtype=np.int64)


def build_scene(hand_vertices, hand_faces, cull_objects):
  """The hand (label 1) and three occluders (label 2) of about 1000 faces in all."""
  ball = primitives.uv_sphere((0.03, 0.02, -0.04), 0.03, num_lat=12, num_lon=20)
  block = primitives.box((-0.05, -0.02, 0.03), (0.05, 0.03, 0.04), subdivisions=5)
  can = primitives.cylinder((0.0, 0.05, 0.0), 0.02, 0.12, num_segments=32, num_bands=3)
  objects = [Mesh(v, f, color=c, label=2, cull_backfaces=cull_objects)
             for (v, f), c in zip((ball, block, can), ((0.2, 0.4, 0.9), (0.3, 0.8, 0.3),
                                                        (0.8, 0.2, 0.2)))]
  return [Mesh(hand_vertices, hand_faces, color=(0.9, 0.7, 0.6), label=1)] + objects


def ring_cameras(num_views, distance):
  """World-to-camera matrices on a tilted ring around the origin."""
  cameras = []
  for k in range(num_views):
    angle = 2.0 * np.pi * k / num_views
    eye = distance * np.array([np.cos(angle), 0.4 * np.sin(2 * angle), np.sin(angle)])
    cameras.append(look_at(eye, (0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)))
  return cameras


def time_per_call(fn, cameras, repeats):
  """Median wall, minimum wall and median CPU seconds of ``fn(camera)`` over all calls.

  CPU time (all threads of this process) is less disturbed than wall time when other processes
  compete for the cores.
  """
  wall, cpu = [], []
  for _ in range(repeats):
    for camera in cameras:
      start_wall, start_cpu = time.perf_counter(), time.process_time()
      fn(camera)
      wall.append(time.perf_counter() - start_wall)
      cpu.append(time.process_time() - start_cpu)
  return float(np.median(wall)), float(np.min(wall)), float(np.median(cpu))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--hand", default=None, help="assets.npz, .ply or .obj of the hand mesh")
  parser.add_argument("--size", type=int, default=224, help="image height = width in pixels")
  parser.add_argument("--repeats", type=int, default=10, help="passes over the 8 views")
  args = parser.parse_args(argv)

  hand_vertices, hand_faces = load_hand(args.hand)
  size = args.size
  focal = 1.4 * size  # the hand's ~0.18 m span fills ~2/3 of the image from 0.4 m
  K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]])
  cameras = ring_cameras(8, 0.4)
  scene = build_scene(hand_vertices, hand_faces, cull_objects=False)
  culled = build_scene(hand_vertices, hand_faces, cull_objects=True)
  all_vertices = np.concatenate([m.vertices for m in scene])
  offsets = np.cumsum([0] + [len(m.vertices) for m in scene])
  all_faces = np.concatenate([m.faces + o for m, o in zip(scene, offsets)])
  print(f"hand: {len(hand_vertices)} vertices, {len(hand_faces)} faces; objects: "
        f"{len(all_faces) - len(hand_faces)} faces; {size}x{size}, 8 views; "
        f"load average {os.getloadavg()[0]:.2f}")
  visible = [render_scene(scene, K, c, size, size).mask(1).sum() for c in cameras]
  alone = [silhouette(scene[:1], K, c, size, size).sum() for c in cameras]
  print("hand pixels per view (visible / unoccluded):",
        " ".join(f"{v}/{a}" for v, a in zip(visible, alone)))
  runs = {
      "rasterize (hand + objects, no culling)":
          lambda c: rasterize(to_camera(all_vertices, c), all_faces, K, size, size),
      "render_scene (RGB + labels, objects culled)":
          lambda c: render_scene(culled, K, c, size, size),
      "render_scene (RGB + labels, no culling)":
          lambda c: render_scene(scene, K, c, size, size),
      "silhouette (hand alone)": lambda c: silhouette(scene[:1], K, c, size, size),
  }
  for name, fn in runs.items():
    median, best, cpu = time_per_call(fn, cameras, args.repeats)
    print(f"{name:46s} wall median {1e3 * median:6.2f} ms, min {1e3 * best:6.2f} ms; "
          f"cpu median {1e3 * cpu:6.2f} ms")


if __name__ == "__main__":
  main()
