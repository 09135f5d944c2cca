"""The one feature schema of every simajax hand dataset (synthetic hands, Dex-YCB, HanCo).

One example is one **multi-view frame**: a hand at one time step seen by ``NUM_VIEWS`` = 8
calibrated cameras (docs/datasets.md#tfds-schema). Single-view training and evaluation flatten the views
in the input pipeline (``simajax.input_pipeline``), keeping only views with ``view_valid``.

Conventions shared by all fields:
  * Units are metres; pixels are (u, v) = (column, row) with (0, 0) the centre of the top-left
    pixel, i.e. ``u = fx X / Z + cx`` in the OpenCV pinhole model (x right, y down, z forward).
  * Joint order is the 21-joint OpenPose/FreiHAND order: 0 wrist; 1-4 thumb; 5-8 index;
    9-12 middle; 13-16 ring; 17-20 little (base to tip). Joint 0 (the wrist) is the root.
  * Rotations are matrices acting on column vectors: ``x_cam = R x_model + t``.
  * "Hand model frame" is the frame of the hand model's own template (MANO's rest pose, or the
    built-in SynthHand's). It is **not** root-centred: the wrist sits at the template's rest wrist.

Frame-level fields:
  frame_key        Text. Unique id, "<dataset>/<...>", e.g. "synthetic_hands/train/00000012".
  dataset          ClassLabel ``DATASETS``.
  hand_side        ClassLabel ``HAND_SIDES`` (the original side; the pipeline mirrors left hands).
  hand_model       Text: "mano" or "synthhand", the model the pose/shape and canonical mesh use.
  mano_shape       [10] f32 shape coefficients (betas) of ``hand_model``.
  mano_pose        [48] f32 full pose in the frame's world frame: [0:3] root axis-angle, [3:48]
                   the 15 finger joints' axis-angles in ``hand_model``'s convention (for MANO:
                   offsets from ``hands_mean``, flat_hand_mean=False, as Dex-YCB/HanCo store them).
  mano_trans       [3] f32 world translation, added after rotating about the rest wrist J0.
  has_mesh         bool. False when no hand model was available at build time; then the two
                   canonical fields below are zeros and mesh targets must be masked out.
  joints_canonical [21, 3] f32 joints of the zero-global-rotation posed hand, hand model frame.
  verts_canonical  [778, 3] f32 the zero-global-rotation posed mesh, hand model frame: the
                   network's canonical target. **Always a right hand**: for a left hand the
                   builder poses the left model with its own arrays (MANO_LEFT's PCA basis, mean,
                   shapedirs and middle tip 445, as the dataset's labels were made) and stores
                   the mirror image (x -> -x) of that mesh and of its joints, which is what the
                   network must predict once the pipeline has flipped the image.

Per-view fields, each with a leading axis of ``NUM_VIEWS`` (views in a fixed camera order):
  image         bytes, encoded JPEG or PNG RGB (any size); b"" for a missing view.
  hand_mask     bytes, encoded 1-channel PNG, 255 where the hand is visible (occluders removed
                from it); b"" when unknown.
  camera_id     str, e.g. a Dex-YCB serial or "cam3".
  bg_variant    str, background variant of the image ("rgb", "rgb_merged", "synthetic", ...).
  view_valid    bool. False for missing views and views without a hand label.
  K             [3, 3] f32 pinhole intrinsics of this image.
  world2cam     [4, 4] f32 extrinsic: x_cam = world2cam[:3, :3] x_world + world2cam[:3, 3].
  joints_img    [21, 2] f32 pixel coordinates of the joints (= projection of joints_cam with K).
  joints_cam    [21, 3] f32 joints in this camera's frame, original side (not mirrored).
  global_rot    [3, 3] f32 rotation R of the hand root in this camera (original side). With J0
                the canonical wrist, the camera-frame mesh is R (verts_canonical - J0) +
                joints_cam[0]; for left hands this holds after the pipeline's mirroring
                (R -> M R M and x -> -x, M = diag(-1, 1, 1)).
  mano_pose     [48] f32 the frame's pose with the root rotation expressed in this camera
                ([0:3] = axis-angle of ``global_rot``, [3:48] = the frame's finger pose).
  mano_trans    [3] f32 camera-frame translation in the manopth convention (added after rotating
                about J0), so ``joints_cam[0] = J0 + mano_trans`` for the original side's model.
  vis_ratio     f32 visible hand pixels / hand-silhouette pixels without occluders, over the whole
                image (docs/conventions.md#occlusion-label); -1 when unknown. "Occluded" means < 0.4.

Decision on GT vertices: camera-frame vertices are **not stored per view**; they are derived
exactly from the per-frame canonical mesh, the per-view ``global_rot`` and the camera-frame wrist
(the formula at ``global_rot`` above, which is how MANO applies the root rotation). This keeps an
example small (one mesh per frame instead of eight) and identical for all three datasets. Builders
of real datasets fill the canonical mesh from the user's hand model at build time (``has_mesh``),
never shipping it; ``derive_verts_camera`` is the one implementation of the formula.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

NUM_VIEWS = 8
NUM_JOINTS = 21
NUM_VERTS = 778
NUM_BETAS = 10
POSE_DIM = 48
DATASETS = ("synthetic_hands", "dexycb", "hanco")
HAND_SIDES = ("right", "left")
HAND_MODELS = ("synthhand", "mano")
OCCLUSION_THRESHOLD = 0.4
UNKNOWN_VIS_RATIO = -1.0

# Name -> (per-view shape, dtype) of the fixed-size array fields; image-like and string fields
# are listed separately because they are variable-length bytes.
FRAME_ARRAYS = {
    "mano_shape": ((NUM_BETAS,), np.float32),
    "mano_pose": ((POSE_DIM,), np.float32),
    "mano_trans": ((3,), np.float32),
    "joints_canonical": ((NUM_JOINTS, 3), np.float32),
    "verts_canonical": ((NUM_VERTS, 3), np.float32),
}
VIEW_ARRAYS = {
    "K": ((3, 3), np.float32),
    "world2cam": ((4, 4), np.float32),
    "joints_img": ((NUM_JOINTS, 2), np.float32),
    "joints_cam": ((NUM_JOINTS, 3), np.float32),
    "global_rot": ((3, 3), np.float32),
    "mano_pose": ((POSE_DIM,), np.float32),
    "mano_trans": ((3,), np.float32),
    "vis_ratio": ((), np.float32),
    "view_valid": ((), np.bool_),
}
VIEW_BYTES = ("image", "hand_mask")
VIEW_TEXT = ("camera_id", "bg_variant")


def features() -> tfds.features.FeaturesDict:
  """The TFDS feature dict every builder of ours declares (see the module docstring)."""
  tensor = tfds.features.Tensor
  frame = {name: tensor(shape=shape, dtype=dtype) for name, (shape, dtype) in FRAME_ARRAYS.items()}
  views = {name: tensor(shape=(NUM_VIEWS,) + shape, dtype=dtype)
           for name, (shape, dtype) in VIEW_ARRAYS.items()}
  # Encoded images are stored as raw bytes: tfds.features.Image would re-encode numpy images
  # through TensorFlow (not installed) and would decode all eight views on every read, while the
  # single-view pipeline needs only one.
  views.update({name: tensor(shape=(NUM_VIEWS,), dtype=np.object_) for name in VIEW_BYTES})
  views.update({name: tensor(shape=(NUM_VIEWS,), dtype=np.str_) for name in VIEW_TEXT})
  return tfds.features.FeaturesDict({
      "frame_key": tfds.features.Text(),
      "dataset": tfds.features.ClassLabel(names=DATASETS),
      "hand_side": tfds.features.ClassLabel(names=HAND_SIDES),
      "hand_model": tfds.features.Text(),
      "has_mesh": tensor(shape=(), dtype=np.bool_),
      **frame,
      "views": tfds.features.FeaturesDict(views),
  })


def validate_example(example: Mapping[str, Any], where: str = "example") -> None:
  """Checks an example dict (as a builder yields it) against the schema.

  Args:
    example: the dict a builder's ``_generate_examples`` yields.
    where: a name for error messages (e.g. the frame key).

  Raises:
    ValueError: naming the field and what was expected, for a missing field, a wrong shape,
      non-finite values or an unknown class label.
  """
  for name in ("frame_key", "dataset", "hand_side", "hand_model", "has_mesh", "views"):
    if name not in example:
      raise ValueError(f"{where}: missing field '{name}'")
  if example["dataset"] not in DATASETS:
    raise ValueError(f"{where}: dataset={example['dataset']!r}, expected one of {DATASETS}")
  if example["hand_side"] not in HAND_SIDES:
    raise ValueError(f"{where}: hand_side={example['hand_side']!r}, expected one of {HAND_SIDES}")
  if example["hand_model"] not in HAND_MODELS:
    raise ValueError(
        f"{where}: hand_model={example['hand_model']!r}, expected one of {HAND_MODELS}")
  _check_arrays(example, FRAME_ARRAYS, (), where)
  views = example["views"]
  _check_arrays(views, VIEW_ARRAYS, (NUM_VIEWS,), f"{where}.views")
  for name in VIEW_BYTES + VIEW_TEXT:
    if name not in views or len(views[name]) != NUM_VIEWS:
      raise ValueError(f"{where}.views: field '{name}' must hold {NUM_VIEWS} entries")
  for v in np.flatnonzero(np.asarray(views["view_valid"])):
    if not views["image"][v]:
      raise ValueError(f"{where}.views: view {v} is valid but its image is empty")


def _check_arrays(group, spec, lead, where):
  for name, (shape, _) in spec.items():
    if name not in group:
      raise ValueError(f"{where}: missing field '{name}'")
    value = np.asarray(group[name])
    if value.shape != lead + shape:
      raise ValueError(f"{where}: field '{name}' has shape {value.shape}, expected {lead + shape}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
      raise ValueError(f"{where}: field '{name}' has non-finite values")


def derive_verts_camera(verts_canonical: np.ndarray, joints_canonical: np.ndarray,
                        global_rot: np.ndarray, wrist_camera: np.ndarray) -> np.ndarray:
  """Camera-frame mesh from the canonical mesh: R (V0 - J0) + wrist_camera.

  Args:
    verts_canonical: [..., N, 3] zero-global-rotation mesh in the hand model frame.
    joints_canonical: [..., 21, 3] its joints (joint 0 = the wrist J0).
    global_rot: [..., 3, 3] root rotation in the camera.
    wrist_camera: [..., 3] camera-frame wrist (``joints_cam[..., 0, :]``).

  Returns:
    [..., N, 3] vertices in the camera frame.
  """
  root = joints_canonical[..., 0:1, :]
  return (verts_canonical - root) @ np.swapaxes(global_rot, -1, -2) + wrist_camera[..., None, :]


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
  """Encodes an HxWx3 or HxW uint8 array as PNG or JPEG bytes.

  Args:
    image: uint8 array, RGB [H, W, 3] or single-channel [H, W].
    fmt: "png" or "jpeg".
    quality: JPEG quality (ignored for PNG).

  Returns:
    The encoded bytes.
  """
  if image.dtype != np.uint8:
    raise ValueError(f"encode_image: expected uint8 pixels, got {image.dtype}")
  buffer = io.BytesIO()
  if fmt == "png":
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
  elif fmt == "jpeg":
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  else:
    raise ValueError(f"encode_image: fmt={fmt!r}, expected 'png' or 'jpeg'")
  return buffer.getvalue()


def decode_image(data: bytes, channels: int = 3) -> np.ndarray:
  """Decodes PNG/JPEG bytes to uint8 [H, W, channels] (channels 3) or [H, W] (channels 1)."""
  if not data:
    raise ValueError("decode_image: empty image bytes (a missing view?)")
  with Image.open(io.BytesIO(data)) as image:
    image = image.convert("RGB" if channels == 3 else "L")
    return np.asarray(image)
