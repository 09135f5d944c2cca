"""The topology file format round-trips and reads the official assets."""

import numpy as np
import pytest

from simajax.mesh import MeshTopology


def test_reference_assets_load(reference_topology):
  topo = reference_topology
  assert topo.level_sizes == (778, 389, 195, 98, 49)
  np.testing.assert_array_equal(topo.spirals[0][0], [0, 27, 94, 61, 3, 2, 1, 26, 24])
  # Down-sampling keeps positions: verts_{l+1} = D_l @ verts_l exactly.
  for l in range(4):
    np.testing.assert_array_equal(topo.down[l].to_dense(np.float64) @ topo.vertices[l], topo.vertices[l + 1])
  assert topo.joint_regressor.shape == (21, 778)


def test_save_load_round_trip(reference_topology, tmp_path):
  path = tmp_path / "topo.npz"
  reference_topology.save(path)
  again = MeshTopology.load(path)
  for l in range(4):
    np.testing.assert_array_equal(again.spirals[l], reference_topology.spirals[l])
    np.testing.assert_array_equal(again.up_dense(l), reference_topology.up_dense(l))


def test_load_rejects_other_files(tmp_path):
  path = tmp_path / "not_topo.npz"
  np.savez(path, verts_0=np.zeros((3, 3)), verts_1=np.zeros((2, 3)))
  with pytest.raises(ValueError, match="missing key 'faces_0'"):
    MeshTopology.load(path)
