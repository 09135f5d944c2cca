"""SVR-Hand, the single-view reconstructor (official ``SVRHand``; docs/architecture.md#svr-hand).

image -> backbone (f_i, j_latent, latent, uv)
      -> shape branch: lifting (f_v) -> spiral decoder -> canonical vertices -> joints
      -> orientation branch: f_o = dense_stack3(mapping(stop_grad(f_i))),
         f_j = mapping(stop_grad(j_latent)), OFE attention (f̂_o) -> 6D rotation
      -> rotated mesh: (stop_grad(V) - stop_grad(r)) R^T + r, r = wrist joint.

Gradients are stopped exactly where the official code detaches (docs/architecture.md#where-gradients-stop): the orientation branch
never trains the backbone, and the rotated outputs train the root position but not the rest of
the canonical mesh.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from simajax import geometry
from simajax.mesh import MeshTopology
from simajax.models import backbone as backbone_lib
from simajax.models import config as config_lib
from simajax.models.config import HandNetFields, SVRFields
from simajax.models.lifting import Lifting
from simajax.models.orientation import ResidualMapping, RotationRegressor
from simajax.models.spiral import SPIRAL_IMPLS, SpiralDecoder

Array = jax.Array

# The outputs, named as the batch's ground truth (simajax.preprocessing.sample): canonical mesh and
# joints (no global rotation), the same rotated about the wrist by the predicted root rotation,
# the 2D joints in [0, 1] crop units, the 6D rotation and its 3x3 matrix.
OUTPUT_KEYS = ("verts_canonical", "joints_canonical", "verts_rotated", "joints_rotated",
               "joints_2d", "rotation_6d", "rotation")


def to_tokens(x: Array) -> Array:
  """[B, h, w, C] -> [B, h * w, C], token t = row * w + col (torch: flatten(2).transpose)."""
  b, h, w, c = x.shape
  return x.reshape(b, h * w, c)


def rotate_about_wrist(verts: Array, joints: Array, rot_mat: Array) -> tuple[Array, Array]:
  """The official composition: (stop_grad(P) - stop_grad(r)) R^T + r with r = joints[:, 0].

  The canonical mesh and the subtracted root are detached; the added-back root is not, so
  losses on the rotated mesh train R and the root position but not the rest of the canonical
  shape (docs/architecture.md#rotation-and-the-rotated-mesh and docs/architecture.md#where-gradients-stop).

  Args:
    verts: [B, V, 3] canonical vertices.
    joints: [B, J, 3] canonical joints, joint 0 = wrist.
    rot_mat: [B, 3, 3] rotations (rows convention).

  Returns:
    (rotated vertices, rotated joints).
  """
  root = joints[:, 0]
  root_sg = jax.lax.stop_gradient(root)
  root_grad = (root - root_sg)[:, None, :]  # zero in value, identity in gradient
  verts_rotated = geometry.rotate_about_root(jax.lax.stop_gradient(verts), rot_mat, root_sg)
  joints_rotated = geometry.rotate_about_root(jax.lax.stop_gradient(joints), rot_mat, root_sg)
  return verts_rotated + root_grad, joints_rotated + root_grad


def orientation_input(model: HandNetFields, x: Array) -> Array:
  """A backbone feature as the orientation branch reads it: detached, as the official code does,
  unless ``model.detach_orientation_inputs`` is False (then the rotation loss trains the
  backbone too; see ``models/config.py``)."""
  return jax.lax.stop_gradient(x) if model.detach_orientation_inputs else x


COMPUTE_DTYPES = ("float32", "bfloat16")


def to_compute_dtype(model: HandNetFields, images: Array) -> Array:
  """The images in the model's activation dtype (parameters stay float32 and are cast per layer).

  With 'float32' the images pass as given, so a float64 input (the parity tests) stays float64.
  """
  return images if model.compute_dtype == "float32" else images.astype(model.compute_dtype)


def to_float32(tree):
  """Every floating array of ``tree`` in at least float32: outputs and features leave the model
  so, and losses, metrics and distillation never run in bfloat16."""
  return jax.tree.map(
      lambda a: (a.astype(jnp.promote_types(a.dtype, jnp.float32))
                 if jnp.issubdtype(a.dtype, jnp.floating) else a), tree)


def encode_and_lift(model: HandNetFields, images: Array,
                    train: bool) -> tuple[backbone_lib.BackboneFeatures, Array, dict[str, Array]]:
  """The backbone and the lifting, shared by ``SVRHand`` and ``MVRHand``.

  Call it from the network's compact ``__call__``: it creates the submodules ``backbone`` and
  ``lifting`` in the network itself, at the parameter paths official weights load into.

  Args:
    model: the network.
    images: [N, S, S, 3] in the compute dtype.
    train: train-mode BatchNorm.

  Returns:
    (backbone features, f_v [N, N_L, C], backbone and lifting intermediates).
  """
  num_joints = model.joint_regressor.shape[0]
  feats, mids = backbone_lib.Backbone(
      model.stem_channels, model.pre_channels, model.base_channels, model.hourglass_out,
      model.latent_channels, tuple(model.uv_hidden), num_joints, model.se_max_hidden,
      model.uv_head, name="backbone")(images, train)
  coarse_vertices = model.up_matrices[-1].shape[1]
  f_v, lifting_mids = Lifting(coarse_vertices, name="lifting")(feats.latent, feats.uv)
  return feats, f_v, {**mids, **lifting_mids}


def decode_mesh(model: HandNetFields, f_v: Array) -> tuple[Array, Array, dict[str, Array]]:
  """The spiral decoder and the joint regressor, shared by ``SVRHand`` and ``MVRHand``.

  Creates ``decoder3d`` and the parameter ``mano_joint_reg`` in the calling network, as
  ``encode_and_lift`` does.

  Args:
    model: the network.
    f_v: [B, N_L, C] coarse vertex features (the MVR's fused over the views).

  Returns:
    (canonical vertices [B, V, 3], joints [B, J, 3], decoder intermediates).
  """
  verts, mids = SpiralDecoder(tuple(model.decoder_channels), tuple(model.up_matrices),
                              tuple(model.spirals), model.spiral_impl, name="decoder3d")(f_v)
  regressor = model.param("mano_joint_reg", lambda *_: jnp.asarray(model.joint_regressor))
  if not model.train_joint_regressor:
    regressor = jax.lax.stop_gradient(regressor)
  joints = jnp.einsum("jv,bvc->bjc", regressor.astype(verts.dtype), verts)
  return verts, joints, mids


class SVRHand(SVRFields):
  """The SVR network. Build it with ``build_svr``; field meanings in ``models/config.py``.

  ``__call__(images, train)`` returns ``(outputs, intermediates)``: outputs keyed by
  ``OUTPUT_KEYS`` (metres, MANO frame; joints_2d in [0, 1] crop units; rotation rows
  convention), intermediates a flat dict of NHWC / token-major features named as the golden
  parity data's ``mid/`` keys. Variables: ``params`` and ``batch_stats``; dropout rng 'dropout'.

  ``use_ofe=False`` is the paper's "w/o OFE" ablation (Table 5): no attention blocks, and no
  ``j_latent_mapping`` either, whose f_j only the attention reads; the rotation regressor reads
  the f_o tokens, which are then also ``orientation_feature_enhanced_f_o_hat`` (the L_OE target).
  """
  # An ablation switch, not a variant knob: ``svr_config`` leaves it out, and a training config
  # sets it (``simajax.config_lib``).
  use_ofe: bool = True

  @nn.compact
  def __call__(self, images: Array, train: bool) -> tuple[dict[str, Array], dict[str, Array]]:
    """Runs the SVR on [B, S, S, 3] RGB images in [0, 1] (no mean/std normalisation)."""
    s = self.input_size
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
      raise ValueError(f"SVRHand expects images [B, {s}, {s}, 3] (NHWC RGB), got {images.shape}")
    images = to_compute_dtype(self, images)
    # Backbone and shape branch.
    feats, f_v, mids = encode_and_lift(self, images, train)
    verts, joints, decoder_mids = decode_mesh(self, f_v)
    mids.update(decoder_mids)

    # Orientation branch, on detached backbone features.
    share = orientation_input(self, feats.f_i)
    shared_sum, shared_residual = ResidualMapping(name="shared_encoding_mapping")(share, train)
    f_o = backbone_lib.DenseStack(self.hourglass_out, backbone_lib.ENCODER, self.se_max_hidden,
                                  name="dense_stack3")(shared_sum, train)
    mids.update({"shared_encoding_residual": shared_residual, "shared_encoding_sum": shared_sum,
                 "orientation_feature_f_o": f_o})
    f_j_tokens = None
    if self.use_ofe:
      j_latent = orientation_input(self, feats.j_latent)
      f_j, j_residual = ResidualMapping(name="j_latent_mapping")(j_latent, train)
      mids.update({"j_latent_residual": j_residual, "joint_feature_f_j": f_j})
      f_j_tokens = to_tokens(f_j)
    rot6d, rot_mids = RotationRegressor(
        tuple(self.rot_conv_channels), tuple(self.rot_pre_channels), tuple(self.rot_fc_channels),
        self.use_ofe, self.attention_heads, self.attention_head_dim, self.attention_dropout,
        name="rot_reg")(f_j_tokens, to_tokens(f_o), train)
    mids.update(rot_mids)
    # The rotation and the rotated mesh in float32 (Gram-Schmidt and the composition are cheap).
    rot6d, verts, joints = to_float32((rot6d, verts, joints))
    rot_mat = geometry.rot6d_to_matrix(rot6d)

    verts_rotated, joints_rotated = rotate_about_wrist(verts, joints, rot_mat)
    outputs = {
        "verts_canonical": verts, "joints_canonical": joints,
        "verts_rotated": verts_rotated, "joints_rotated": joints_rotated,
        "joints_2d": feats.uv, "rotation_6d": rot6d, "rotation": rot_mat,
    }
    return to_float32(outputs), to_float32(mids)


def init_variables(model: SVRHand, seed: int = 0) -> dict:
  """Fresh variables {'params', 'batch_stats'} of ``model`` (the torch initialisers).

  Equivalent to ``model.init`` but compiles several times faster on XLA:CPU: the forward pass
  is not traced (``lazy_init``), and the key is an 'unsafe_rbg' one, because the ~600
  parameters each need a fold-in per module level, and compiling that many threefry hashes takes
  about a minute on two cores whatever the model width.

  Args:
    model: the module (``build_svr``).
    seed: init seed.
  """
  s = model.input_size
  images = jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32)
  key = jax.random.key(seed, impl="unsafe_rbg")
  return jax.jit(lambda k: model.lazy_init({"params": k}, images, train=False))(key)


def decoder_topology(topology: MeshTopology, num_stages: int):
  """(spirals, dense up-sampling matrices) of levels 0..num_stages-1, validated.

  Raises:
    ValueError: when the topology has too few levels or inconsistent table sizes.
  """
  if len(topology.spirals) < num_stages or len(topology.up) < num_stages:
    raise ValueError(f"the decoder needs spirals and up-sampling matrices for {num_stages} mesh "
                     f"levels; the topology has {len(topology.spirals)} and {len(topology.up)}")
  sizes = topology.level_sizes
  spirals = tuple(np.asarray(topology.spirals[l], np.int32) for l in range(num_stages))
  ups = tuple(topology.up_dense(l, np.float32) for l in range(num_stages))
  for l in range(num_stages):
    if spirals[l].shape[0] != sizes[l] or ups[l].shape != (sizes[l], sizes[l + 1]):
      raise ValueError(f"mesh level {l}: spiral table {spirals[l].shape} and up-sampling matrix "
                       f"{ups[l].shape} do not match the level sizes {sizes}")
  return spirals, ups


def network_kwargs(cls: type[HandNetFields], model_config: ml_collections.ConfigDict,
                   topology: MeshTopology) -> dict[str, Any]:
  """The constructor arguments of a network (``SVRHand``, ``MVRHand``), validated.

  Args:
    cls: the network class.
    model_config: the ``model`` ConfigDict; its knobs are read by ``config.module_kwargs``.
    topology: the mesh hierarchy; its spirals, up-sampling matrices and joint regressor (the
      init of the trainable ``mano_joint_reg``) are baked into the module.

  Returns:
    The keyword arguments of ``cls``.

  Raises:
    ValueError: when the topology has no joint regressor or does not fit the decoder, or a knob
      shared by both networks is invalid.
  """
  if topology.joint_regressor is None:
    raise ValueError("the mesh topology has no joint_regressor; SVRHand needs it to initialise "
                     "mano_joint_reg (use a topology file with a 'joint_regressor' array)")
  knobs = config_lib.module_kwargs(cls, model_config)
  if knobs["compute_dtype"] not in COMPUTE_DTYPES:
    raise ValueError(f"model.compute_dtype must be one of {COMPUTE_DTYPES}, "
                     f"got {knobs['compute_dtype']!r}")
  if knobs["spiral_impl"] not in SPIRAL_IMPLS:
    raise ValueError(f"model.spiral_impl must be one of {SPIRAL_IMPLS}, "
                     f"got {knobs['spiral_impl']!r}")
  if knobs["uv_head"] not in backbone_lib.UV_HEADS:
    raise ValueError(f"model.uv_head must be one of {backbone_lib.UV_HEADS}, "
                     f"got {knobs['uv_head']!r}")
  if knobs["input_size"] % 32:
    raise ValueError(f"model.input_size must be a multiple of 32, got {knobs['input_size']}")
  if knobs["base_channels"] % 2:
    raise ValueError(f"model.base_channels must be even (dense-block growth c/2), "
                     f"got {knobs['base_channels']}")
  spirals, ups = decoder_topology(topology, len(knobs["decoder_channels"]))
  regressor = np.asarray(topology.joint_regressor, np.float32)
  if regressor.shape[1] != topology.level_sizes[0]:
    raise ValueError(f"joint_regressor {regressor.shape} does not match the "
                     f"{topology.level_sizes[0]}-vertex mesh")
  return dict(spirals=spirals, up_matrices=ups, joint_regressor=regressor, **knobs)


def build_svr(model_config: ml_collections.ConfigDict, topology: MeshTopology) -> SVRHand:
  """Builds the SVR of a config (``svr_config``) on a mesh topology.

  Args:
    model_config: the ``model`` ConfigDict (fields of ``simajax.models.config.svr_config``,
      plus an optional ``use_ofe``, default True: False builds the "w/o OFE" ablation).
    topology: the mesh hierarchy (spirals, up-sampling matrices, joint regressor).

  Returns:
    An unbound ``SVRHand``.

  Raises:
    ValueError: see ``network_kwargs``.
  """
  return SVRHand(**network_kwargs(SVRHand, model_config, topology))
