"""Reading and writing triangle meshes as Wavefront OBJ and ASCII PLY.

The PLY reader handles the layout of the official ``template.ply`` (``element vertex`` with
float x, y, z; ``element face`` with ``property list uchar int vertex_indices``), optional
red/green/blue vertex colours, extra properties and elements (skipped), and comments. Polygons
with more than three corners are split into triangle fans. Binary PLY is rejected with a clear
error. Every parse error names the file and the line (and element) at fault.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]


class TriangleMesh(NamedTuple):
  """A mesh read from disk.

  Attributes:
    vertices: [N, 3] float64 positions.
    faces: [F, 3] int64 zero-based vertex indices.
    colors: [N, 3] uint8 vertex colours, or None when the file has none.
  """
  vertices: np.ndarray
  faces: np.ndarray
  colors: Optional[np.ndarray] = None


def write_obj(path: PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
  """Writes a triangle mesh as Wavefront OBJ (``v`` and 1-based ``f`` lines).

  Floats are written with enough digits to read back bit-exactly (9 for float32, 17 otherwise).

  Args:
    path: output file.
    vertices: [N, 3] positions.
    faces: [F, 3] zero-based vertex indices.
  """
  vertices, faces = _check_mesh(vertices, faces, f"write_obj({path})")
  fmt = _float_format(vertices)
  lines = [f"v {fmt % x} {fmt % y} {fmt % z}" for x, y, z in vertices.tolist()]
  lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
  _write_lines(path, ["# written by simajax.render.mesh_io"] + lines)


def write_ply(path: PathLike, vertices: np.ndarray, faces: np.ndarray,
              colors: Optional[np.ndarray] = None) -> None:
  """Writes a triangle mesh as ASCII PLY (``property list uchar int vertex_indices``).

  Args:
    path: output file.
    vertices: [N, 3] positions; float32 input is written as ``float``, anything else as
      ``double``, both bit-exact.
    faces: [F, 3] zero-based vertex indices.
    colors: optional [N, 3] vertex colours, uint8 or floats in [0, 1] (stored as uchar).
  """
  vertices, faces = _check_mesh(vertices, faces, f"write_ply({path})")
  scalar = "float" if vertices.dtype == np.float32 else "double"
  header = ["ply", "format ascii 1.0", "comment written by simajax.render.mesh_io",
            f"element vertex {len(vertices)}", f"property {scalar} x", f"property {scalar} y",
            f"property {scalar} z"]
  fmt = _float_format(vertices)
  rows = [f"{fmt % x} {fmt % y} {fmt % z}" for x, y, z in vertices.tolist()]
  if colors is not None:
    colors = _colors_to_uint8(colors, len(vertices), f"write_ply({path})")
    header += ["property uchar red", "property uchar green", "property uchar blue"]
    rows = [f"{row} {r} {g} {b}" for row, (r, g, b) in zip(rows, colors.tolist())]
  header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
  rows += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
  _write_lines(path, header + rows)


def read_obj(path: PathLike) -> TriangleMesh:
  """Reads the ``v`` and ``f`` statements of a Wavefront OBJ file.

  Face corners may be ``i``, ``i/t``, ``i//n`` or ``i/t/n``; negative indices count back from the
  latest vertex. Other statements (vt, vn, o, g, s, usemtl, ...) are ignored.

  Args:
    path: the .obj file.

  Returns:
    ``TriangleMesh`` (colors None).

  Raises:
    ValueError: naming the file and line of a malformed ``v`` or ``f`` statement, or of a face
      index outside the vertex list.
  """
  vertices, faces = [], []
  for number, line in enumerate(_read_lines(path), start=1):
    tokens = line.split()
    if not tokens:
      continue
    where = f"{path}:{number}"
    if tokens[0] == "v":
      if len(tokens) < 4:
        raise ValueError(f"{where}: a 'v' line needs 3 coordinates, got {line!r}")
      vertices.append(_parse_floats(tokens[1:4], where))
    elif tokens[0] == "f":
      corners = []
      for token in tokens[1:]:
        index = _parse_int(token.split("/")[0], where)
        if index == 0:
          raise ValueError(f"{where}: OBJ indices are 1-based, got 0 in {line!r}")
        index = index - 1 if index > 0 else len(vertices) + index
        if not 0 <= index < len(vertices):
          raise ValueError(f"{where}: face corner {token!r} refers to a vertex not yet defined "
                           f"({len(vertices)} so far)")
        corners.append(index)
      faces.extend(_fan(corners, where))
  return TriangleMesh(_as_vertices(vertices), _as_faces(faces))


def read_ply(path: PathLike) -> TriangleMesh:
  """Reads an ASCII PLY triangle (or polygon) mesh.

  Args:
    path: the .ply file.

  Returns:
    ``TriangleMesh``; colors are set when the vertices have red, green and blue properties.

  Raises:
    ValueError: naming the file and line (and element) of a malformed header or body, binary
      files, missing x/y/z or vertex-index properties, or out-of-range face indices.
  """
  lines = _read_lines(path)
  elements, body_start = _parse_ply_header(lines, path)
  names = [name for name, _, _ in elements]
  if "vertex" not in names:
    raise ValueError(f"{path}: PLY header declares no 'vertex' element")
  vertices, colors, faces = None, None, []
  line_no = body_start
  for name, count, properties in elements:
    if line_no + count > len(lines):
      raise ValueError(f"{path}: file ends inside element '{name}' (expected {count} lines from "
                       f"line {line_no + 1}, file has {len(lines)} lines)")
    rows = lines[line_no:line_no + count]
    if name == "vertex":
      vertices, colors = _ply_vertices(rows, properties, path, line_no)
    elif name == "face":
      faces = _ply_faces(rows, properties, path, line_no)
    line_no += count
  faces = _as_faces(faces)
  if faces.size and faces.max() >= len(vertices):
    bad = int(np.argmax(faces.max(axis=1) >= len(vertices)))
    raise ValueError(f"{path}: element 'face' refers to vertex {faces[bad].max()}, but there are "
                     f"only {len(vertices)} vertices")
  return TriangleMesh(vertices, faces, colors)


def _parse_ply_header(lines, path):
  """[(element name, count, [(property name, kind)])], first body line index.

  kind is 'scalar' or 'list'.
  """
  if not lines or lines[0].strip() != "ply":
    raise ValueError(f"{path}:1: not a PLY file (first line must be 'ply')")
  elements = []
  for number, line in enumerate(lines[1:], start=2):
    tokens = line.split()
    where = f"{path}:{number}"
    if not tokens or tokens[0] in ("comment", "obj_info"):
      continue
    if tokens[0] == "format":
      if len(tokens) < 2 or tokens[1] != "ascii":
        raise ValueError(f"{where}: only ASCII PLY is supported, got {line.strip()!r}")
    elif tokens[0] == "element":
      if len(tokens) != 3 or not tokens[2].isdigit():
        raise ValueError(f"{where}: expected 'element <name> <count>', got {line.strip()!r}")
      elements.append((tokens[1], int(tokens[2]), []))
    elif tokens[0] == "property":
      if not elements:
        raise ValueError(f"{where}: property before any element")
      if tokens[1:2] == ["list"] and len(tokens) == 5:
        elements[-1][2].append((tokens[4], "list"))
      elif len(tokens) == 3:
        elements[-1][2].append((tokens[2], "scalar"))
      else:
        raise ValueError(f"{where}: malformed property line {line.strip()!r}")
    elif tokens[0] == "end_header":
      return elements, number
    else:
      raise ValueError(f"{where}: unexpected PLY header line {line.strip()!r}")
  raise ValueError(f"{path}: PLY header has no 'end_header'")


def _ply_vertices(rows, properties, path, line_no):
  names = [name for name, _ in properties]
  if any(kind == "list" for _, kind in properties):
    raise ValueError(f"{path}: list properties in element 'vertex' are not supported")
  for axis in "xyz":
    if axis not in names:
      raise ValueError(f"{path}: element 'vertex' has no property '{axis}' (has {names})")
  values = np.empty((len(rows), len(names)))
  for i, row in enumerate(rows):
    tokens = row.split()
    where = f"{path}:{line_no + i + 1} (element 'vertex' #{i})"
    if len(tokens) != len(names):
      raise ValueError(f"{where}: expected {len(names)} values {names}, got {row.strip()!r}")
    values[i] = _parse_floats(tokens, where)
  vertices = values[:, [names.index(a) for a in "xyz"]]
  colors = None
  if all(c in names for c in ("red", "green", "blue")):
    colors = values[:, [names.index(c) for c in ("red", "green", "blue")]]
    if colors.size and (colors.min() < 0 or colors.max() > 255 or (colors % 1).any()):
      raise ValueError(f"{path}: element 'vertex' colours must be integers in 0..255")
    colors = colors.astype(np.uint8)
  return vertices, colors


def _ply_faces(rows, properties, path, line_no):
  names = [name for name, _ in properties]
  index_prop = next((i for i, (name, kind) in enumerate(properties)
                     if kind == "list" and name in ("vertex_indices", "vertex_index")), None)
  if index_prop is None:
    raise ValueError(f"{path}: element 'face' has no list property 'vertex_indices' "
                     f"(has {names})")
  faces = []
  for i, row in enumerate(rows):
    tokens = row.split()
    where = f"{path}:{line_no + i + 1} (element 'face' #{i})"
    position = 0
    for j, (_, kind) in enumerate(properties):
      if position >= len(tokens):
        raise ValueError(f"{where}: line ends early: {row.strip()!r}")
      if kind == "scalar":
        position += 1
        continue
      length = _parse_int(tokens[position], where)
      items = tokens[position + 1:position + 1 + length]
      if length < 0 or len(items) != length:
        raise ValueError(f"{where}: list announces {length} items, line is {row.strip()!r}")
      if j == index_prop:
        corners = [_parse_int(t, where) for t in items]
        if min(corners) < 0:
          raise ValueError(f"{where}: negative vertex index in {row.strip()!r}")
        faces.extend(_fan(corners, where))
      position += 1 + length
    if position != len(tokens):
      raise ValueError(f"{where}: unexpected extra values in {row.strip()!r}")
  return faces


def _fan(corners, where):
  if len(corners) < 3:
    raise ValueError(f"{where}: a face needs at least 3 corners, got {len(corners)}")
  return [(corners[0], corners[k], corners[k + 1]) for k in range(1, len(corners) - 1)]


def _parse_floats(tokens, where):
  try:
    return [float(t) for t in tokens]
  except ValueError:
    raise ValueError(f"{where}: expected numbers, got {' '.join(tokens)!r}") from None


def _parse_int(token, where):
  try:
    return int(token)
  except ValueError:
    raise ValueError(f"{where}: expected an integer, got {token!r}") from None


def _read_lines(path):
  try:
    with open(path, "r", encoding="ascii") as f:
      return f.read().splitlines()
  except UnicodeDecodeError:
    raise ValueError(f"{path}: not an ASCII text file (binary PLY/OBJ is not supported)") from None


def _write_lines(path, lines):
  with open(path, "w", encoding="ascii") as f:
    f.write("\n".join(lines) + "\n")


def _check_mesh(vertices, faces, what):
  vertices = np.asarray(vertices)
  faces = np.asarray(faces)
  if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.issubdtype(vertices.dtype,
                                                                       np.floating):
    raise ValueError(f"{what}: vertices must be a float [N, 3] array, got {vertices.dtype} "
                     f"{vertices.shape}")
  if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
    raise ValueError(f"{what}: faces must be an integer [F, 3] array, got {faces.dtype} "
                     f"{faces.shape}")
  if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
    raise ValueError(f"{what}: face indices must lie in [0, {len(vertices)})")
  return vertices, faces


def _float_format(vertices):
  return "%.9g" if vertices.dtype == np.float32 else "%.17g"


def _colors_to_uint8(colors, num_vertices, what):
  colors = np.asarray(colors)
  if colors.shape != (num_vertices, 3):
    raise ValueError(f"{what}: colors must be [{num_vertices}, 3], got {colors.shape}")
  if colors.dtype == np.uint8:
    return colors
  if not np.issubdtype(colors.dtype, np.floating) or colors.min() < 0 or colors.max() > 1:
    raise ValueError(f"{what}: colors must be uint8 or floats in [0, 1]")
  return np.round(colors * 255.0).astype(np.uint8)


def _as_vertices(rows):
  return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _as_faces(rows):
  return np.asarray(rows, dtype=np.int64).reshape(-1, 3)
