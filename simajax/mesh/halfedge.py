"""A replay of OpenMesh's halfedge construction, for its vertex-vertex circulator order.

The official spiral tables come from ``openmesh.TriMesh(vertices, faces)`` and its ``vv``
circulator. Which neighbour a ring starts at depends on each vertex's stored outgoing halfedge,
and that is decided by the order in which ``PolyConnectivity::add_face`` links halfedges while the
faces are added one by one. This module replays ``add_face`` (OpenMesh 8/9, triangles only):
edges are numbered in creation order, halfedge 2e runs along the first use a->b of edge e and
2e+1 is its twin. Faces OpenMesh would reject (complex vertex, complex edge, failed patch
re-linking) are skipped, as OpenMesh skips them.
"""

from __future__ import annotations

import numpy as np

_INVALID = -1


class HalfedgeMesh:
  """The connectivity OpenMesh builds from a face list (no geometry, no deletions)."""

  def __init__(self, num_vertices: int, faces):
    """Builds the halfedge structure by adding ``faces`` in array order.

    Args:
      num_vertices: number of vertices N (isolated vertices are allowed).
      faces: [F, 3] vertex ids in [0, N).
    """
    self.to_vertex: list[int] = []
    self.next: list[int] = []
    self.prev: list[int] = []
    self.face: list[int] = []
    self.vertex_halfedge = [_INVALID] * num_vertices
    self.num_faces = 0
    self._halfedge_of: dict[tuple[int, int], int] = {}
    for face in np.asarray(faces, dtype=np.int64).tolist():
      self.add_face(face)

  def _is_boundary_vertex(self, v: int) -> bool:
    h = self.vertex_halfedge[v]
    return h == _INVALID or self.face[h] == _INVALID

  def _new_edge(self, start: int, end: int) -> int:
    h = len(self.to_vertex)
    self.to_vertex += [end, start]
    self.next += [_INVALID, _INVALID]
    self.prev += [_INVALID, _INVALID]
    self.face += [_INVALID, _INVALID]
    self._halfedge_of[(start, end)] = h
    self._halfedge_of[(end, start)] = h + 1
    return h

  def _outgoing(self, v: int):
    """Outgoing halfedges of v in OpenMesh's (clockwise) circulator order."""
    start = self.vertex_halfedge[v]
    h = start
    while h != _INVALID:
      yield h
      h = self.next[h ^ 1]
      if h == start:
        return

  def add_face(self, vertices: list[int]) -> bool:
    """``PolyConnectivity::add_face`` for one polygon; returns False where OpenMesh rejects it."""
    n = len(vertices)
    halfedges = [_INVALID] * n
    is_new = [False] * n
    needs_adjust = [False] * n
    for i in range(n):
      if not self._is_boundary_vertex(vertices[i]):
        return False  # complex vertex
      h = self._halfedge_of.get((vertices[i], vertices[(i + 1) % n]), _INVALID)
      halfedges[i] = h
      is_new[i] = h == _INVALID
      if not is_new[i] and self.face[h] != _INVALID:
        return False  # complex edge

    # Links are collected first and applied at the end, as OpenMesh's next_cache does: the
    # case analysis below must read the connectivity from before this face.
    links: list[tuple[int, int]] = []
    for i in range(n):
      ii = (i + 1) % n
      if is_new[i] or is_new[ii]:
        continue
      inner_prev, inner_next = halfedges[i], halfedges[ii]
      if self.next[inner_prev] == inner_next:
        continue
      # Two consecutive edges exist but are not consecutive on the boundary: move the patch
      # between them to a free gap elsewhere around the vertex.
      boundary_prev = inner_next ^ 1
      while True:
        boundary_prev = self.next[boundary_prev] ^ 1
        if self.face[boundary_prev] == _INVALID:
          break
      boundary_next = self.next[boundary_prev]
      if boundary_prev == inner_prev:
        return False  # patch re-linking failed
      patch_start = self.next[inner_prev]
      patch_end = self.prev[inner_next]
      links += [(boundary_prev, patch_start), (patch_end, boundary_next), (inner_prev, inner_next)]

    for i in range(n):
      if is_new[i]:
        halfedges[i] = self._new_edge(vertices[i], vertices[(i + 1) % n])

    face = self.num_faces
    self.num_faces += 1
    for i in range(n):
      ii = (i + 1) % n
      vertex = vertices[ii]
      inner_prev, inner_next = halfedges[i], halfedges[ii]
      case = (1 if is_new[i] else 0) | (2 if is_new[ii] else 0)
      if case:
        outer_prev, outer_next = inner_next ^ 1, inner_prev ^ 1
        if case == 1:  # previous edge new, next edge old
          links.append((self.prev[inner_next], outer_next))
          self.vertex_halfedge[vertex] = outer_next
        elif case == 2:  # previous edge old, next edge new
          boundary_next = self.next[inner_prev]
          links.append((outer_prev, boundary_next))
          self.vertex_halfedge[vertex] = boundary_next
        elif self.vertex_halfedge[vertex] == _INVALID:  # both new, vertex was isolated
          self.vertex_halfedge[vertex] = outer_next
          links.append((outer_prev, outer_next))
        else:  # both new, vertex already on the boundary of another fan
          boundary_next = self.vertex_halfedge[vertex]
          links += [(self.prev[boundary_next], outer_next), (outer_prev, boundary_next)]
        links.append((inner_prev, inner_next))
      else:
        needs_adjust[ii] = self.vertex_halfedge[vertex] == inner_next
      self.face[halfedges[i]] = face

    for h, h_next in links:
      self.next[h] = h_next
      self.prev[h_next] = h

    # A vertex whose stored halfedge was just swallowed by the face moves it to a boundary one.
    for i in range(n):
      if needs_adjust[i]:
        for h in self._outgoing(vertices[i]):
          if self.face[h] == _INVALID:
            self.vertex_halfedge[vertices[i]] = h
            break
    return True

  def one_ring(self, v: int) -> list[int]:
    """Neighbours of v in the order of OpenMesh's ``vv`` circulator (boundary neighbour first)."""
    return [self.to_vertex[h] for h in self._outgoing(v)]
