"""Rest-pose anatomy of a right hand in MANO's frame, shared by SynthHand and the pose sampler.

MANO's frame (read off the MANO template; docs/conventions.md#hand-model-frame): the fingers point along -x, the
back of the hand faces +y (the palm faces -y, where the fingers curl), and the thumb is on the +z
side. The rest wrist sits near (0.096, 0.006, 0.006) m, so the origin lies in the palm near the
middle-finger knuckle. SynthHand's rest pose is a flat hand with straight, slightly spread
fingers, like MANO's template.

Every joint gets an anatomical frame (flexion, abduction, twist axes) in which pose limits are
written: flexion is a rotation about ``flex = dorsal x bone`` (positive curls towards the palm),
abduction about the dorsal axis and twist about the bone.
"""

from __future__ import annotations

import numpy as np

# Digits in MANO's chain order and the MANO ids of their three joints (docs/conventions.md#joint-orders).
DIGITS = ("index", "middle", "pinky", "ring", "thumb")
DIGIT_JOINTS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9),
                "ring": (10, 11, 12), "thumb": (13, 14, 15)}
FINGERS = ("index", "middle", "ring", "pinky")  # The four fingers from the thumb side outwards.

WRIST = np.array([0.0957, 0.0064, 0.0062])

DORSAL = np.array([0.0, 1.0, 0.0])


def _unit(v) -> np.ndarray:
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


# First joint (MCP of fingers, CMC of the thumb) relative to the wrist, metres.
BASE_OFFSET = {
    "index": np.array([-0.0860, 0.0000, 0.0240]),
    "middle": np.array([-0.0900, 0.0000, 0.0040]),
    "ring": np.array([-0.0850, -0.0010, -0.0150]),
    "pinky": np.array([-0.0770, -0.0030, -0.0320]),
    "thumb": np.array([-0.0250, -0.0120, 0.0200]),
}
# Unit bone directions of the three segments of every digit (fingers are straight at rest).
BONE_DIRECTIONS = {
    "index": (_unit([-1.0, 0.0, 0.07]),) * 3,
    "middle": (_unit([-1.0, 0.0, 0.01]),) * 3,
    "ring": (_unit([-1.0, 0.0, -0.06]),) * 3,
    "pinky": (_unit([-1.0, 0.0, -0.14]),) * 3,
    "thumb": (_unit([-0.72, -0.30, 0.62]), _unit([-0.84, -0.26, 0.48]),
              _unit([-0.92, -0.22, 0.33])),
}
# Segment lengths (proximal, middle, distal-to-tip), metres. Wrist to middle tip = 0.178 m.
SEGMENT_LENGTHS = {
    "index": (0.036, 0.022, 0.021),
    "middle": (0.040, 0.025, 0.023),
    "ring": (0.037, 0.024, 0.022),
    "pinky": (0.029, 0.018, 0.020),
    "thumb": (0.036, 0.030, 0.030),
}
# Digit radii at the base joint, the two inner joints and where the rounded tip begins, metres.
DIGIT_RADII = {
    "index": (0.0098, 0.0088, 0.0079, 0.0073),
    "middle": (0.0100, 0.0090, 0.0081, 0.0075),
    "ring": (0.0095, 0.0085, 0.0077, 0.0071),
    "pinky": (0.0085, 0.0077, 0.0069, 0.0064),
    "thumb": (0.0150, 0.0112, 0.0104, 0.0094),
}
# The thumb nail faces sideways and up; orthogonalised against each bone.
THUMB_NAIL = _unit([0.0, 0.55, 0.83])


def rest_joints() -> np.ndarray:
  """The designed rest skeleton (SynthHand's, close to MANO's).

  Returns:
    [16, 3] joint positions in MANO order, MANO frame, metres.
  """
  joints = np.zeros((16, 3))
  joints[0] = WRIST
  for digit in DIGITS:
    point = WRIST + BASE_OFFSET[digit]
    for joint, direction, length in zip(DIGIT_JOINTS[digit], BONE_DIRECTIONS[digit],
                                        SEGMENT_LENGTHS[digit]):
      joints[joint] = point
      point = point + length * direction
  return joints


def fingertips() -> dict[str, np.ndarray]:
  """Rest fingertips.

  Returns:
    {digit: [3] end of its distal segment}, MANO frame, metres.
  """
  joints = rest_joints()
  return {d: joints[DIGIT_JOINTS[d][2]] + SEGMENT_LENGTHS[d][2] * BONE_DIRECTIONS[d][2]
          for d in DIGITS}


def dorsal_axis(digit: str, segment: int) -> np.ndarray:
  """The dorsal (nail-side) direction of a digit segment.

  Args:
    digit: one of ``DIGITS``.
    segment: 0, 1 or 2 (proximal to distal).

  Returns:
    [3] unit vector orthogonal to the segment's bone.
  """
  bone = BONE_DIRECTIONS[digit][segment]
  up = THUMB_NAIL if digit == "thumb" else DORSAL
  return _unit(up - np.dot(up, bone) * bone)


def joint_axes() -> np.ndarray:
  """Anatomical axes of every joint.

  Returns:
    [16, 3, 3]: for each joint the rows (flexion, abduction, twist), a right-handed orthonormal
    frame. The root's frame is the identity (the global rotation has no anatomical limits).
  """
  axes = np.tile(np.eye(3), (16, 1, 1))
  for digit in DIGITS:
    for segment, joint in enumerate(DIGIT_JOINTS[digit]):
      bone = BONE_DIRECTIONS[digit][segment]
      dorsal = dorsal_axis(digit, segment)
      axes[joint] = np.stack([np.cross(dorsal, bone), dorsal, bone])
  return axes
