"""The hierarchy builder reproduces the official topology; cache, CLI and input checks."""

import numpy as np
import pytest

from fixtures.mesh_fixture import sphere_mesh
from simajax.mesh import MeshTopology, build_topology, cached_topology, topology_key
from simajax.mesh import build as build_cli
from simajax.mesh import hierarchy


@pytest.fixture(scope="module")
def hand_topology(reference_topology):
  """Our hierarchy of the official level-0 mesh, built once for the module."""
  return build_topology(reference_topology.vertices[0], reference_topology.faces[0],
                        joint_regressor=reference_topology.joint_regressor)


def test_reproduces_official_topology(hand_topology, reference_topology):
  ours, ref = hand_topology, reference_topology
  assert ours.level_sizes == ref.level_sizes == (778, 389, 195, 98, 49)
  for l in range(5):
    np.testing.assert_array_equal(ours.faces[l], ref.faces[l])
    np.testing.assert_array_equal(ours.vertices[l], ref.vertices[l])
  for l in range(4):
    for field in ("row", "col", "val"):
      np.testing.assert_array_equal(getattr(ours.down[l], field), getattr(ref.down[l], field))
    assert ours.down[l].shape == ref.down[l].shape
    np.testing.assert_array_equal(ours.spirals[l], ref.spirals[l])
    assert ours.up[l].shape == ref.up[l].shape
    np.testing.assert_allclose(ours.up_dense(l, np.float64), ref.up_dense(l, np.float64),
                               rtol=0, atol=1e-6)
  np.testing.assert_array_equal(ours.joint_regressor, ref.joint_regressor)


def test_up_rows_have_three_distinct_entries(hand_topology):
  for up in hand_topology.up:
    np.testing.assert_array_equal(np.bincount(up.row, minlength=up.shape[0]), 3)
    assert len(set(zip(up.row.tolist(), up.col.tolist()))) == len(up.row)
    assert up.val.dtype == np.float32


def test_saved_topology_round_trips(hand_topology, tmp_path):
  hand_topology.save(tmp_path / "t.npz")
  again = MeshTopology.load(tmp_path / "t.npz")
  for l in range(4):
    np.testing.assert_array_equal(again.spirals[l], hand_topology.spirals[l])
    np.testing.assert_array_equal(again.up[l].val, hand_topology.up[l].val)


def _assert_same_topology(a, b):
  assert a.level_sizes == b.level_sizes
  for x, y in zip(a.vertices + a.faces + a.spirals, b.vertices + b.faces + b.spirals):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(a.up + a.down, b.up + b.down):
    for field in ("row", "col", "val"):
      np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
    assert x.shape == y.shape


def test_small_closed_mesh_hierarchy():
  vertices, faces = sphere_mesh(120)
  topo = build_topology(vertices, faces, num_levels=3, spiral_length=7)
  assert topo.level_sizes == (120, 60, 30)
  for l in range(2):
    down = topo.down[l].to_dense(np.float64)
    np.testing.assert_array_equal(down @ topo.vertices[l], topo.vertices[l + 1])
    assert topo.spirals[l].shape == (topo.level_sizes[l], 7)
    np.testing.assert_array_equal(topo.spirals[l][:, 0], np.arange(topo.level_sizes[l]))
  again = build_topology(vertices, faces, num_levels=3, spiral_length=7)
  _assert_same_topology(topo, again)


def test_cache_returns_equal_topology_and_reuses_file(tmp_path, monkeypatch):
  vertices, faces = sphere_mesh(80, seed=1)
  built = cached_topology(vertices, faces, cache_dir=tmp_path, num_levels=3, spiral_length=5)
  files = list(tmp_path.glob("*.npz"))
  key = topology_key(vertices, faces, num_levels=3, spiral_length=5)
  assert [f.name for f in files] == [f"{key}.npz"]

  def no_build(*args, **kwargs):
    raise AssertionError("the cached file should have been used")

  monkeypatch.setattr(hierarchy, "build_topology", no_build)
  loaded = cached_topology(vertices, faces, cache_dir=tmp_path, num_levels=3, spiral_length=5)
  _assert_same_topology(built, loaded)
  assert list(tmp_path.glob("*.npz")) == files


def test_cache_key_depends_on_mesh_and_parameters():
  vertices, faces = sphere_mesh(40, seed=2)
  key = topology_key(vertices, faces)
  assert key == topology_key(vertices.copy(), faces.astype(np.int32))
  moved = vertices.copy()
  moved[0, 0] += 1e-9
  assert len({key, topology_key(moved, faces), topology_key(vertices, faces[:, [1, 2, 0]]),
              topology_key(vertices, faces, num_levels=4),
              topology_key(vertices, faces, dilation=2),
              topology_key(vertices, faces, joint_regressor=np.ones((1, 40)))}) == 6


def test_cache_dir_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("SIMAJAX_CACHE", str(tmp_path))
  vertices, faces = sphere_mesh(40, seed=3)
  cached_topology(vertices, faces, num_levels=2, spiral_length=4)
  assert len(list((tmp_path / "topology").glob("*.npz"))) == 1


def test_cli_builds_from_ascii_ply_and_npz(tmp_path, capsys):
  vertices, faces = sphere_mesh(60, seed=4)
  ply = tmp_path / "mesh.ply"
  header = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}", "property float x",
            "property float y", "property float z", f"element face {len(faces)}",
            "property list uchar int vertex_indices", "end_header"]
  body = [f"{x!r} {y!r} {z!r}" for x, y, z in vertices.tolist()]
  body += [f"3 {a} {b} {c}" for a, b, c in faces]
  ply.write_text("\n".join(header + body) + "\n")
  build_cli.main(["--mesh", str(ply), "--out", str(tmp_path / "a.npz"), "--levels", "3",
                  "--spiral-length", "5"])
  assert "60 -> 30 -> 15" in capsys.readouterr().out
  expected = build_topology(vertices, faces, num_levels=3, spiral_length=5)
  _assert_same_topology(MeshTopology.load(tmp_path / "a.npz"), expected)

  np.savez(tmp_path / "mesh.npz", verts_0=vertices, faces_0=faces)
  build_cli.main(["--mesh", str(tmp_path / "mesh.npz"), "--out", str(tmp_path / "b.npz"),
                  "--levels", "3", "--spiral-length", "5"])
  _assert_same_topology(MeshTopology.load(tmp_path / "b.npz"), expected)


def test_cli_rejects_unknown_files(tmp_path):
  np.savez(tmp_path / "x.npz", points=np.zeros((3, 3)))
  with pytest.raises(ValueError, match="x.npz: expected arrays 'vertices' and 'faces'"):
    build_cli.read_mesh(tmp_path / "x.npz")
  (tmp_path / "x.obj").write_text("")
  with pytest.raises(ValueError, match="unsupported mesh file type"):
    build_cli.read_mesh(tmp_path / "x.obj")


@pytest.mark.parametrize("faces, message", [
    (np.array([[0, 1, 40]]), "outside"),
    (np.array([[0, 1, -1]]), "outside"),
    (np.array([[0, 1, 2, 3]]), "triangles"),
    (np.array([[0, 1, 1]]), "repeats a vertex"),
    (np.array([[0.0, 1.0, 2.0]]), "integer"),
])
def test_rejects_invalid_faces(faces, message):
  vertices, _ = sphere_mesh(40, seed=5)
  with pytest.raises(ValueError, match=message):
    build_topology(vertices, faces)


def test_rejects_too_deep_hierarchy():
  vertices, faces = sphere_mesh(40, seed=6)
  # 40 -> 20 -> 10 -> 5 -> 3: level 3 (5 vertices) cannot hold spirals of 9.
  with pytest.raises(ValueError, match="too few vertices"):
    build_topology(vertices, faces, num_levels=5)
  with pytest.raises(ValueError, match="num_levels must be >= 2"):
    build_topology(vertices, faces, num_levels=1)


def test_rejects_mismatched_joint_regressor():
  vertices, faces = sphere_mesh(40, seed=7)
  with pytest.raises(ValueError, match=r"joint_regressor must have shape \[J, 40\]"):
    build_topology(vertices, faces, num_levels=2, joint_regressor=np.ones((21, 39)))
