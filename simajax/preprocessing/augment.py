"""Training-time augmentation draws and the label updates they imply (docs/training.md#crops-and-augmentation).

Per image: a scale s = 1 + 0.25 clip(N(0,1), -1, 1); with probability 0.6 an in-plane rotation
rot = 30 deg clip(N(0,1), -2, 2), else 0; a per-channel colour gain U(0.8, 1.2). The crop affine
rotates the image by -rot (``crop.crop_affine``); the 3D labels follow with A = Rz(-rot) about the
camera's optical axis: camera-frame points become A x, the root rotation becomes A R_root, and the
canonical (zero-rotation) mesh does not change.

Left hands are mirrored to right hands before cropping (docs/conventions.md#left-hands), with
``simajax.hand.mirror``: the image is flipped, u -> W - 1 - u, x -> -x in the camera frame, and
R -> M R M with M = diag(-1, 1, 1), which is negating the y and z components of the axis-angle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simajax import geometry

SCALE_FACTOR = 0.25
ROT_FACTOR_DEG = 30.0
ROT_PROBABILITY = 0.6
COLOR_FACTOR = 0.2


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """One image's augmentation: scale, in-plane rotation (degrees) and RGB gains."""
  scale: float = 1.0
  rot_deg: float = 0.0
  color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)


IDENTITY = AugmentParams()


def draw(rng: np.random.Generator) -> AugmentParams:
  """Draws one image's augmentation from the official distributions.

  Args:
    rng: the generator; the draw order is scale, rotation gate, rotation, colour.

  Returns:
    The parameters.
  """
  scale = 1.0 + SCALE_FACTOR * float(np.clip(rng.standard_normal(), -1.0, 1.0))
  rotate = rng.random() <= ROT_PROBABILITY
  rot = ROT_FACTOR_DEG * float(np.clip(rng.standard_normal(), -2.0, 2.0))
  gain = rng.uniform(1.0 - COLOR_FACTOR, 1.0 + COLOR_FACTOR, size=3)
  return AugmentParams(scale=scale, rot_deg=rot if rotate else 0.0,
                       color_gain=tuple(float(g) for g in gain))


def rotation_matrix(rot_deg: float) -> np.ndarray:
  """A = Rz(-rot): the camera-frame rotation that matches an image rotated by ``rot_deg``."""
  return geometry.rotation_about_z(np.float64(-np.deg2rad(rot_deg)))


def apply_color(image: np.ndarray, gain) -> np.ndarray:
  """Per-channel gain on a uint8 [H, W, 3] image, clipped to [0, 255], scaled to float32 [0, 1]."""
  scaled = image.astype(np.float32) * np.asarray(gain, np.float32)
  return np.clip(scaled, 0.0, 255.0) * np.float32(1.0 / 255.0)
