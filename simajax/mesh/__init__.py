"""Mesh topology: the multi-level hierarchy (decimation, up-sampling, spirals) of a hand mesh."""

from simajax.mesh.topology import MeshTopology, SparseCOO

__all__ = ["MeshTopology", "SparseCOO"]
