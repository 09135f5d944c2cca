"""OBJ / ASCII PLY writers and readers: exact round trips, the template layout, clear errors."""

import numpy as np
import pytest

from simajax.render import primitives, read_obj, read_ply, write_obj, write_ply

# The layout of the official template.ply (docs/architecture.md#mesh-hierarchy): float x, y, z and
# `property list uchar int vertex_indices`, with comments, here with one quad to triangulate.
TEMPLATE_STYLE_PLY = """ply
format ascii 1.0
comment template-style test file
element vertex 5
property float x
property float y
property float z
element face 3
property list uchar int vertex_indices
end_header
0.01 -0.02 0.3
0.05 -0.02 0.31
0.05 0.03 0.32
0.01 0.03 0.29
0.03 0.0 0.35
3 0 1 4
4 0 1 2 3
3 3 2 4
"""


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_obj_and_ply_round_trip_exactly(tmp_path, dtype):
  rng = np.random.default_rng(0)
  vertices, faces = primitives.box((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), subdivisions=2)
  vertices = (vertices + rng.normal(scale=1e-3, size=vertices.shape)).astype(dtype)
  colors = rng.integers(0, 256, size=vertices.shape, dtype=np.uint8)
  write_obj(tmp_path / "m.obj", vertices, faces)
  write_ply(tmp_path / "m.ply", vertices, faces, colors)
  write_ply(tmp_path / "plain.ply", vertices, faces)
  for mesh in (read_obj(tmp_path / "m.obj"), read_ply(tmp_path / "m.ply"),
               read_ply(tmp_path / "plain.ply")):
    np.testing.assert_array_equal(mesh.vertices.astype(dtype), vertices)
    np.testing.assert_array_equal(mesh.faces, faces)
  np.testing.assert_array_equal(read_ply(tmp_path / "m.ply").colors, colors)
  assert read_ply(tmp_path / "plain.ply").colors is None
  assert read_obj(tmp_path / "m.obj").colors is None


def test_float_colors_are_stored_as_bytes(tmp_path):
  vertices, faces = primitives.box()
  write_ply(tmp_path / "c.ply", vertices, faces, np.full(vertices.shape, 0.5))
  assert (read_ply(tmp_path / "c.ply").colors == 128).all()


def test_template_style_ply_with_a_quad(tmp_path):
  path = tmp_path / "template.ply"
  path.write_text(TEMPLATE_STYLE_PLY)
  mesh = read_ply(path)
  np.testing.assert_allclose(mesh.vertices[2], [0.05, 0.03, 0.32])
  np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [0, 1, 2], [0, 2, 3], [3, 2, 4]])


def test_reference_template_round_trips_as_float32_ply(tmp_path, reference_topology):
  vertices = reference_topology.vertices[0].astype(np.float32)
  faces = reference_topology.faces[0]
  write_ply(tmp_path / "template.ply", vertices, faces)
  text = (tmp_path / "template.ply").read_text()
  assert "property float x" in text and "property list uchar int vertex_indices" in text
  mesh = read_ply(tmp_path / "template.ply")
  assert mesh.vertices.shape == (778, 3) and mesh.faces.shape == (1538, 3)
  np.testing.assert_array_equal(mesh.vertices.astype(np.float32), vertices)
  np.testing.assert_array_equal(mesh.faces, faces)


def test_obj_corner_forms_negative_indices_and_polygons(tmp_path):
  path = tmp_path / "m.obj"
  path.write_text("# comment\no thing\nv 0 0 0\nv 1 0 0\nv 1 1 0 0.5 0.5 0.5\nv 0 1 0\n"
                  "vt 0 0\nvn 0 0 1\ns off\nf 1/1/1 2/1/1 3/1/1\nf -4//1 -2//1 -1//1\n"
                  "f 1 2 3 4\n")
  mesh = read_obj(path)
  np.testing.assert_array_equal(mesh.vertices[2], [1, 1, 0])
  np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("text,message", [
    (TEMPLATE_STYLE_PLY.replace("0.05 -0.02 0.31", "0.05 -0.02"),
     r":12 \(element 'vertex' #1\): expected 3 values"),
    (TEMPLATE_STYLE_PLY.replace("4 0 1 2 3", "4 0 1 2"),
     r":17 \(element 'face' #1\): list announces 4 items"),
    (TEMPLATE_STYLE_PLY.replace("3 3 2 4", "3 3 2 9"), "refers to vertex 9, but there are only 5"),
    (TEMPLATE_STYLE_PLY.replace("0.01 0.03 0.29", "0.01 abc 0.29"),
     r":14 \(element 'vertex' #3\): expected numbers"),
    (TEMPLATE_STYLE_PLY.replace("format ascii 1.0", "format binary_little_endian 1.0"),
     ":2: only ASCII PLY"),
    (TEMPLATE_STYLE_PLY.replace("property float z\n", ""), "no property 'z'"),
    (TEMPLATE_STYLE_PLY.replace("vertex_indices", "corners"), "no list property 'vertex_indices'"),
    (TEMPLATE_STYLE_PLY.split("3 3 2 4")[0], "file ends inside element 'face'"),
    ("plyx\n", ":1: not a PLY file"),
])
def test_malformed_ply_errors_name_file_and_line(tmp_path, text, message):
  path = tmp_path / "bad.ply"
  path.write_text(text)
  with pytest.raises(ValueError, match=message) as info:
    read_ply(path)
  assert "bad.ply" in str(info.value)


@pytest.mark.parametrize("text,message", [
    ("v 0 0 0\nv 1 0\n", r"bad.obj:2: a 'v' line needs 3 coordinates"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 5\n", r"bad.obj:4: face corner '5' refers to a vertex"),
    ("v 0 0 0\nv 1 0 0\nf 1 2\n", r"bad.obj:3: a face needs at least 3 corners"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 x 3\n", r"bad.obj:4: expected an integer"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", r"bad.obj:4: OBJ indices are 1-based"),
])
def test_malformed_obj_errors_name_file_and_line(tmp_path, text, message):
  path = tmp_path / "bad.obj"
  path.write_text(text)
  with pytest.raises(ValueError, match=message):
    read_obj(path)


def test_binary_files_and_bad_arrays_are_rejected(tmp_path):
  path = tmp_path / "binary.ply"
  path.write_bytes(b"ply\nformat binary_little_endian 1.0\nend_header\n\xff\xfe\x00")
  with pytest.raises(ValueError, match="binary.ply"):
    read_ply(path)
  with pytest.raises(ValueError, match="faces must be an integer"):
    write_obj(tmp_path / "x.obj", np.zeros((3, 3)), np.zeros((1, 3)))
  with pytest.raises(ValueError, match="face indices"):
    write_ply(tmp_path / "x.ply", np.zeros((3, 3)), np.array([[0, 1, 3]]))
  with pytest.raises(ValueError, match="colors must be"):
    write_ply(tmp_path / "x.ply", np.zeros((3, 3)), np.array([[0, 1, 2]]), np.full((3, 3), 2.0))
