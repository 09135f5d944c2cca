"""Joint orders: MANO's 16 kinematic joints, MANO+tips (21) and the OpenPose/FreiHAND order.

* MANO order (16): wrist; index 1-3; middle 1-3; pinky 1-3; ring 1-3; thumb 1-3.
* MANO+tips (21): the 16 joints, then the fingertip vertices of thumb, index, middle, ring and
  pinky (manopth's convention).
* OpenPose order (21): wrist; thumb 1-4; index 1-4; middle 1-4; ring 1-4; pinky 1-4. Every
  dataset, metric and network output in simajax uses this order (docs/conventions.md#joint-orders).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from simajax.hand.model import HandModel

MANO_JOINT_NAMES = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)

# OpenPose slot k takes MANO+tips index MANO_TO_OPENPOSE[k].
MANO_TO_OPENPOSE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

OPENPOSE_JOINT_NAMES = (
    "wrist",
    "thumb1", "thumb2", "thumb3", "thumb4",
    "index1", "index2", "index3", "index4",
    "middle1", "middle2", "middle3", "middle4",
    "ring1", "ring2", "ring3", "ring4",
    "pinky1", "pinky2", "pinky3", "pinky4",
)

# Parent of each OpenPose keypoint (-1 for the wrist): the bones used for drawing skeletons.
OPENPOSE_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
OPENPOSE_BONES = tuple((p, c) for c, p in enumerate(OPENPOSE_PARENTS) if p >= 0)

# Finger of each OpenPose keypoint: 0 wrist, 1 thumb, 2 index, 3 middle, 4 ring, 5 pinky.
OPENPOSE_FINGER = (0,) + tuple(f for f in range(1, 6) for _ in range(4))


def joint_regressor_21(model: HandModel, middle_tip: Optional[int] = None) -> np.ndarray:
  """The [21, V] regressor J21 = R @ vertices in OpenPose order.

  It stacks the model's 16 ``J_regressor`` rows with one-hot rows at the five fingertip vertices
  and reorders them with ``MANO_TO_OPENPOSE``. The network's trainable joint regressor starts
  from it (docs/architecture.md#joint-regressor).

  Args:
    model: the hand model.
    middle_tip: overrides the middle-finger tip vertex (the official SiMA regressor uses 445 where
      manopth uses 444 for the right hand). None keeps ``model.tip_vertex_ids``.

  Returns:
    [21, V] float32; every row sums to 1.
  """
  tips = list(model.tip_vertex_ids)
  if middle_tip is not None:
    if not 0 <= int(middle_tip) < model.num_vertices:
      raise ValueError(f"middle_tip must be a vertex id in [0, {model.num_vertices}), "
                       f"got {middle_tip}")
    tips[2] = int(middle_tip)
  one_hot = np.zeros((5, model.num_vertices), np.float32)
  one_hot[np.arange(5), tips] = 1.0
  stacked = np.concatenate([np.asarray(model.J_regressor, np.float32), one_hot], axis=0)
  return stacked[list(MANO_TO_OPENPOSE)]
