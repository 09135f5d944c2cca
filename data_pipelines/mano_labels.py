"""MANO labels of the downloaded datasets, from the user's MANO model files.

``ManoModels`` holds MANO_RIGHT (and, on demand, MANO_LEFT) and does what the readers need of
them: finger poses from PCA coefficients, the rest wrist J0(betas), and the schema's canonical
(zero global rotation) mesh in the right-hand frame; ``cached_mano`` loads it once per process.
``mesh_in_camera`` poses that canonical mesh in a camera, and ``move_trans`` moves a MANO
translation into another frame. Left/right mirroring is ``simajax.hand.mirror``'s.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np

from data_pipelines import schema
from data_pipelines.files import PathLike
from simajax.hand import forward, mano, mirror


def left_model_path(right_path: PathLike) -> pathlib.Path:
  """Where MANO_LEFT is expected: next to the right model, with RIGHT/right -> LEFT/left."""
  right_path = pathlib.Path(right_path)
  name = right_path.name.replace("RIGHT", "LEFT").replace("right", "left")
  if name == right_path.name:
    name = "MANO_LEFT" + right_path.suffix
  return right_path.with_name(name)


class ManoModels:
  """The user's MANO_RIGHT (and, on demand, MANO_LEFT) with the few operations builders need.

  Each hand is posed with its own side's model, as the datasets' labels were made (manopth's
  ``ManoLayer(side=...)``): a left hand with MANO_LEFT's PCA basis, mean pose, ``shapedirs`` and
  middle fingertip 445. That matters because the released MANO_LEFT is not the mirror image of
  MANO_RIGHT: its ``shapedirs`` are the right model's, unmirrored (docs/conventions.md#left-hands), so
  with non-zero betas the mirrored MANO_RIGHT hand differs from the labelled one by centimetres.
  The *result* is then mirrored (x -> -x) into the right-hand frame the network trains in: the
  schema's canonical mesh of a left hand is the mirror image of MANO_LEFT's, and
  ``mesh_in_camera`` mirrors it back, so label, canonical mesh, camera mesh and visibility
  render all describe the same hand.
  """

  def __init__(self, right_path: PathLike):
    """Loads MANO_RIGHT.

    Args:
      right_path: MANO_RIGHT.pkl (or a converted .npz); MANO_LEFT is looked for next to it.

    Raises:
      FileNotFoundError: naming the path and where MANO comes from, when it is missing.
    """
    self.right_path = pathlib.Path(right_path).expanduser()
    if not self.right_path.is_file():
      raise FileNotFoundError(
          f"{self.right_path}: MANO model file not found; expected MANO_RIGHT.pkl from "
          "mano_v1_2.zip (register at https://mano.is.tue.mpg.de), passed with --mano")
    self.right = mano.load_mano(self.right_path, side="right")
    self._left = None

  def model(self, side: str):
    """The MANO model of ``side`` ('right' or 'left'); MANO_LEFT is loaded on first use.

    Raises:
      FileNotFoundError: naming the expected MANO_LEFT path when it is missing.
    """
    if side == "right":
      return self.right
    if side != "left":
      raise ValueError(f"hand side must be 'right' or 'left', got {side!r}")
    if self._left is None:
      path = left_model_path(self.right_path)
      if not path.is_file():
        raise FileNotFoundError(
            f"{path}: MANO_LEFT model file not found; it is needed for the left-hand sequences "
            f"(their PCA poses use the left basis). Put MANO_LEFT.pkl from mano_v1_2.zip next "
            f"to {self.right_path.name}")
      self._left = mano.load_mano(path, side="left")
    return self._left

  def pca_to_axis_angle(self, side: str, pca: np.ndarray) -> np.ndarray:
    """[45] PCA coefficients -> [45] finger axis-angles, offsets from ``hands_mean``.

    ``pca · hands_components`` of the hand's own side, without the mean: HandOccNet's JSON form
    and the schema's (docs/datasets.md#handoccnet-annotations).
    """
    return np.asarray(pca, np.float64) @ np.asarray(self.model(side).hands_components, np.float64)

  def rest_wrist(self, side: str, betas: np.ndarray) -> np.ndarray:
    """[3] J0(betas): the rest-pose wrist of the shaped template, about which MANO rotates."""
    model = self.model(side)
    shaped = (np.asarray(model.v_template, np.float64)
              + np.asarray(model.shapedirs, np.float64) @ np.asarray(betas, np.float64))
    return np.asarray(model.J_regressor[0], np.float64) @ shaped

  def canonical(self, fingers: np.ndarray, betas: np.ndarray,
                side: str) -> tuple[np.ndarray, np.ndarray]:
    """The schema's canonical hand: zero global rotation, in the right-hand frame.

    Args:
      fingers: [45] finger axis-angles of the ``side`` hand (offsets from its hands_mean).
      betas: [10] shape.
      side: the hand's side; it is posed with that side's model (class docstring), and a left
        hand's mesh and joints are then mirrored (x -> -x).

    Returns:
      (verts [778, 3], joints [21, 3]) float64: a right hand's mesh and joints (for a left hand,
      the mirror image of MANO_LEFT's, with its middle tip 445).
    """
    pose = np.concatenate([np.zeros(3), np.asarray(fingers, np.float64)])[None]
    out = _jitted_forward()(self.model(side), pose.astype(np.float32),
                            np.asarray(betas, np.float32)[None])
    verts = np.asarray(out.vertices, np.float64)[0]
    joints = np.asarray(out.joints21, np.float64)[0]
    if side == "left":
      verts, joints = mirror.mirror_points(verts), mirror.mirror_points(joints)
    return verts, joints

  @property
  def faces(self) -> np.ndarray:
    """[F, 3] triangles of the right model (for silhouettes of either side: the rasterizer
    covers a triangle whatever its winding)."""
    return self.right.faces


@functools.lru_cache(maxsize=4)
def cached_mano(right_path: str) -> ManoModels:
  """``ManoModels(right_path)``, loaded once per process (builders read it for every frame)."""
  return ManoModels(right_path)


@functools.lru_cache(maxsize=1)
def _jitted_forward():
  """``hand_forward`` jitted once per process (the model is an argument, so builds share it)."""
  return jax.jit(forward.hand_forward)


def mesh_in_camera(verts_canonical: np.ndarray, joints_canonical: np.ndarray,
                   global_rot: np.ndarray, wrist_camera: np.ndarray, side: str) -> np.ndarray:
  """The original-side camera-frame mesh, root-aligned to the annotated wrist.

  For a right hand ``R (V0 - J0) + wrist``. A left hand's canonical mesh is the mirror image of
  MANO_LEFT's (``ManoModels.canonical``), so it is mirrored back first: ``R M (V0 - J0) + wrist``
  with M = diag(-1, 1, 1), which is MANO_LEFT's own posed mesh (docs/conventions.md#occlusion-label).

  Args:
    verts_canonical: [V, 3] schema canonical mesh.
    joints_canonical: [21, 3] its joints.
    global_rot: [3, 3] original-side root rotation in the camera.
    wrist_camera: [3] annotated camera-frame wrist.
    side: 'right' or 'left'.

  Returns:
    [V, 3] float64 vertices in the camera frame.
  """
  verts = np.asarray(verts_canonical, np.float64)
  joints = np.asarray(joints_canonical, np.float64)
  if side == "left":
    verts, joints = mirror.mirror_points(verts), mirror.mirror_points(joints)
  return schema.derive_verts_camera(verts, joints, global_rot, wrist_camera)


def move_trans(trans: np.ndarray, rest_wrist: np.ndarray, transform: np.ndarray) -> np.ndarray:
  """Moves a MANO translation into another frame: R_M (J0 + t) + t_M - J0 (docs/datasets.md#hanco-layout).

  MANO rotates about the rest wrist J0, so the wrist sits at J0 + t in the source frame; that
  point is transformed and J0 subtracted again. The root rotation moves separately (R_M R).

  Args:
    trans: [3] translation in the source frame.
    rest_wrist: [3] J0(betas) of the model the translation belongs to.
    transform: [4, 4] source -> target rigid transform.

  Returns:
    [3] translation in the target frame.
  """
  return transform[:3, :3] @ (rest_wrist + trans) + transform[:3, 3] - rest_wrist
