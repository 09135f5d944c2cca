"""Command line: build a mesh topology file from a mesh.

  python -m simajax.mesh.build --mesh MESH --out TOPO.npz [--levels 5] [--spiral-length 9]
      [--dilation 1] [--joint-regressor J.npy]

MESH is an ASCII ``.ply`` or an ``.npz`` holding ``vertices``/``faces`` (or ``verts_0``/``faces_0``,
as in an ``assets.npz``). The output is in the ``assets.npz`` format (``MeshTopology.save``).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

from simajax.mesh.hierarchy import build_topology


def _read_ascii_ply(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Vertices (x, y, z properties) and faces (vertex-index lists) of an ASCII PLY file."""
  with open(path, encoding="ascii", errors="replace") as f:
    lines = f.read().splitlines()
  if not lines or lines[0].strip() != "ply":
    raise ValueError(f"{path}: not a PLY file (first line is not 'ply')")
  elements: list[tuple[str, int, list[str]]] = []
  body = None
  for i, line in enumerate(lines[1:], start=1):
    words = line.split()
    if not words:
      continue
    if words[0] == "format" and words[1] != "ascii":
      raise ValueError(f"{path}: only ASCII PLY is supported, got format {words[1]!r}")
    if words[0] == "element":
      elements.append((words[1], int(words[2]), []))
    elif words[0] == "property":
      elements[-1][2].append(words[-1])
    elif words[0] == "end_header":
      body = i + 1
      break
  if body is None:
    raise ValueError(f"{path}: PLY header has no end_header")
  vertices = faces = None
  row = body
  for name, count, properties in elements:
    rows = [line.split() for line in lines[row:row + count]]
    if len(rows) != count:
      raise ValueError(f"{path}: expected {count} '{name}' lines, found {len(rows)}")
    if name == "vertex":
      try:
        columns = [properties.index(axis) for axis in ("x", "y", "z")]
      except ValueError:
        raise ValueError(f"{path}: vertex element lacks x, y, z properties") from None
      vertices = np.array([[float(r[k]) for k in columns] for r in rows])
    elif name == "face":
      if any(int(r[0]) != 3 or len(r) < 4 for r in rows):
        raise ValueError(f"{path}: faces must all be triangles ('3 a b c' lines)")
      faces = np.array([[int(v) for v in r[1:4]] for r in rows], dtype=np.int64)
    row += count
  if vertices is None or faces is None:
    raise ValueError(f"{path}: PLY needs both a vertex and a face element")
  return vertices, faces


def read_mesh(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Reads (vertices [N, 3], faces [F, 3]) from an ASCII ``.ply`` or an ``.npz``.

  Args:
    path: the mesh file.

  Returns:
    The vertex and face arrays as stored (validated later by the builder).

  Raises:
    ValueError: naming the file when its type or content is not supported.
  """
  path = pathlib.Path(path)
  if path.suffix.lower() == ".ply":
    return _read_ascii_ply(path)
  if path.suffix.lower() == ".npz":
    with np.load(path, allow_pickle=False) as data:
      for vertex_key, face_key in (("vertices", "faces"), ("verts_0", "faces_0")):
        if vertex_key in data.files and face_key in data.files:
          return data[vertex_key], data[face_key]
    raise ValueError(f"{path}: expected arrays 'vertices' and 'faces' (or 'verts_0' and "
                     f"'faces_0')")
  raise ValueError(f"{path}: unsupported mesh file type (expected .ply or .npz)")


def main(argv: list[str] | None = None) -> None:
  """Parses the command line, builds the topology and writes it."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mesh", required=True, help="ASCII .ply or .npz mesh")
  parser.add_argument("--out", required=True, help="output topology .npz")
  parser.add_argument("--levels", type=int, default=5, help="levels including the full mesh")
  parser.add_argument("--spiral-length", type=int, default=9)
  parser.add_argument("--dilation", type=int, default=1)
  parser.add_argument("--joint-regressor", help="optional .npy [J, N] stored with the topology")
  args = parser.parse_args(argv)

  vertices, faces = read_mesh(args.mesh)
  regressor = np.load(args.joint_regressor) if args.joint_regressor else None
  start = time.perf_counter()
  topology = build_topology(vertices, faces, num_levels=args.levels,
                            spiral_length=args.spiral_length, dilation=args.dilation,
                            joint_regressor=regressor)
  seconds = time.perf_counter() - start
  topology.save(args.out)
  sizes = " -> ".join(str(n) for n in topology.level_sizes)
  print(f"{args.out}: levels {sizes}, built in {seconds:.2f} s")


if __name__ == "__main__":
  main()
