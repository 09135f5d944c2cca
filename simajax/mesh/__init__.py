"""Mesh topology: the multi-level hierarchy (decimation, up-sampling, spirals) of a hand mesh."""

from simajax.mesh.decimation import Decimation, decimate
from simajax.mesh.hierarchy import build_topology, cached_topology, default_cache_dir, topology_key
from simajax.mesh.spirals import spiral_indices
from simajax.mesh.topology import MeshTopology, SparseCOO
from simajax.mesh.upsampling import ClosestPoints, closest_points, upsampling_matrix

__all__ = [
    "ClosestPoints",
    "Decimation",
    "MeshTopology",
    "SparseCOO",
    "build_topology",
    "cached_topology",
    "closest_points",
    "decimate",
    "default_cache_dir",
    "spiral_indices",
    "topology_key",
    "upsampling_matrix",
]
