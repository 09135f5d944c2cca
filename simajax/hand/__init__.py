"""Hand models: MANO (from the user's own pickle) and the built-in procedural SynthHand.

Both are ``HandModel``s with MANO's parameterisation (778 vertices, 16 joints, 10 shape
coefficients, 45 finger pose values) and run through the same ``hand_forward``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional, Union

from simajax.hand.forward import HandOutput, hand_forward, pose_to_axis_angle
from simajax.hand.joints import (MANO_JOINT_NAMES, MANO_TO_OPENPOSE, OPENPOSE_BONES,
                                 OPENPOSE_FINGER, OPENPOSE_JOINT_NAMES, OPENPOSE_PARENTS,
                                 joint_regressor_21)
from simajax.hand.limits import (JOINT_AXES, JOINT_LIMITS, digits_collide, pose_components,
                                  sample_pose, sample_shape, within_limits)
from simajax.hand.mano import convert_mano_pickle, load_mano, read_mano_pickle
from simajax.hand.mirror import (mirror_axis_angle, mirror_box, mirror_crop_points_2d,
                                 mirror_faces, mirror_hand_model, mirror_image,
                                 mirror_intrinsics, mirror_points, mirror_points_2d,
                                 mirror_rotation_6d, mirror_rotation_matrix)
from simajax.hand.model import MANO_PARENTS, HandModel, make_hand_model
from simajax.hand.synthhand import SHAPE_COEFFICIENTS, synthhand_model


def load_hand_model(spec: Optional[Union[str, os.PathLike]] = None) -> HandModel:
  """The hand model named by a config string.

  Args:
    spec: None or 'synthhand' for the built-in SynthHand (right hand); otherwise the path of a
      MANO ``.pkl`` or of a ``.npz`` converted from one.

  Returns:
    The model.

  Raises:
    FileNotFoundError: when the MANO file does not exist.
    ValueError: for a path that is neither ``.pkl`` nor ``.npz``.
  """
  if spec is None or str(spec).lower() == "synthhand":
    return synthhand_model()
  path = pathlib.Path(spec).expanduser()
  if path.suffix.lower() not in (".pkl", ".npz"):
    raise ValueError(f"hand model spec {str(spec)!r}: expected None, 'synthhand', or a path to a "
                     "MANO .pkl / converted .npz file")
  if not path.is_file():
    raise FileNotFoundError(
        f"MANO model file not found: {path}. Download MANO_RIGHT.pkl from "
        "https://mano.is.tue.mpg.de (licence required) or use 'synthhand'")
  return load_mano(path)


__all__ = [
    "HandModel", "HandOutput", "JOINT_AXES", "JOINT_LIMITS", "MANO_JOINT_NAMES", "MANO_PARENTS",
    "MANO_TO_OPENPOSE", "OPENPOSE_BONES", "OPENPOSE_FINGER", "OPENPOSE_JOINT_NAMES",
    "OPENPOSE_PARENTS", "SHAPE_COEFFICIENTS", "convert_mano_pickle", "digits_collide",
    "hand_forward", "joint_regressor_21", "load_hand_model", "load_mano", "make_hand_model",
    "mirror_axis_angle", "mirror_box", "mirror_crop_points_2d", "mirror_faces", "mirror_hand_model", "mirror_image", "mirror_intrinsics",
    "mirror_points", "mirror_points_2d", "mirror_rotation_6d", "mirror_rotation_matrix", "pose_components",
    "pose_to_axis_angle", "read_mano_pickle", "sample_pose", "sample_shape", "synthhand_model",
    "within_limits",
]
