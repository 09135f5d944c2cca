"""MVR-Hand, the multi-view teacher (paper eq. 1-3; docs/architecture.md#mvr-hand).

Not released by the authors; every [choice] of docs/architecture.md#mvr-hand is followed:

views [B, V] -> the SVR's backbone, weights shared (f_i, j, latent, uv per view)
  shape:       per-view lifting (the SVR's) -> VFF -> f_v^M [B, 49, C] -> the SVR's spiral
               decoder -> one canonical mesh per hand -> joints (trainable regressor)
  orientation: IFF on stop_grad(f_i) -> f_i^M(k) -> dense_stack3 -> f_o^M_raw(k);
               JFF on stop_grad(j) -> f_j^M(k) = j(k) + g_j(pooled);
               x(k) = f_j^M(k) + f_o^M_raw(k) -> H2ONet's regressor -> R_k (rows convention)
  per view:    (stop_grad(V) - stop_grad(r)) R_k^T + r, as the SVR.

Outputs carry a [B, V] prefix on every key of ``svr.OUTPUT_KEYS`` (the canonical mesh broadcast
over the views), so losses treat the views like SVR examples. The distilled features are the
intermediates ``fused_vertex_feature`` (f_v^M, [B, 49, C], the SVR's ``lifted_vertex_feature_f_v``
per example) and ``fused_orientation_tokens`` (f_o^M(k) := x(k) as tokens, [B, V, T, 8c], the
SVR's ``orientation_feature_enhanced_f_o_hat`` per example).

Missing views (``view_valid`` False) never influence a valid view's result: their images are
zeroed inside the model, so their pixels cannot leak anywhere, and they are masked out of IFF,
JFF and VFF (``simajax.models.fusion``). In train mode the zeroed images still take part in the
BatchNorm batch statistics (they are rows of the [B * V] batch), so *how many* views are missing
changes the statistics, while *what* they showed does not. Outputs of invalid views are computed
(from zeros) and must be masked by the loss.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from simajax import geometry
from simajax.mesh import MeshTopology
from simajax.models import backbone as backbone_lib
from simajax.models import fusion
from simajax.models.config import HandNetFields, MVRFields, config_name
from simajax.models.orientation import RotationRegressor
from simajax.models.svr import (decode_mesh, encode_and_lift, network_kwargs, orientation_input,
                                 rotate_about_wrist, to_compute_dtype, to_float32, to_tokens)

Array = jax.Array

# Backbone intermediates handed out per view ([B, V, ...]).
_PER_VIEW_BACKBONE_MIDS = ("image_feature_f_i", "joint_feature_j_latent", "latent", "uv_raw")


class MVRHand(MVRFields):
  """The MVR network. Build it with ``build_mvr``; field meanings in ``models/config.py``.

  ``__call__(images, view_valid, train)`` returns ``(outputs, intermediates)``: outputs keyed by
  ``svr.OUTPUT_KEYS``, each [B, V, ...]; intermediates a flat dict (see the module docstring).
  Variables: ``params`` and ``batch_stats``. Module names shared with the SVR (``backbone``,
  ``lifting``, ``decoder3d``, ``mano_joint_reg``, ``dense_stack3``) hold the same shapes as the
  SVR's of the same variant, so weights can move between the two.
  """

  @nn.compact
  def __call__(self, images: Array, view_valid: Array,
               train: bool) -> tuple[dict[str, Array], dict[str, Array]]:
    """Runs the MVR on a batch of multi-view frames.

    Args:
      images: [B, V, S, S, 3] RGB in [0, 1], V = ``num_views``.
      view_valid: [B, V] bool (or 0/1), False for a missing view.
      train: train-mode BatchNorm.

    Returns:
      (outputs, intermediates), see the class docstring.
    """
    s, v = self.input_size, self.num_views
    if images.ndim != 5 or images.shape[1:] != (v, s, s, 3):
      raise ValueError(f"MVRHand expects images [B, {v}, {s}, {s}, 3] (views of NHWC RGB), "
                       f"got {images.shape}")
    if view_valid.shape != images.shape[:2]:
      raise ValueError(f"MVRHand expects view_valid [B, V] = {images.shape[:2]}, "
                       f"got {view_valid.shape}")
    b = images.shape[0]
    images = to_compute_dtype(self, images)
    valid = view_valid.astype(bool)
    images = jnp.where(valid[:, :, None, None, None], images, jnp.zeros((), images.dtype))

    def per_view(x):  # [B * V, ...] -> [B, V, ...]
      return x.reshape((b, v) + x.shape[1:])

    def flat(x):  # [B, V, ...] -> [B * V, ...]
      return x.reshape((b * v,) + x.shape[2:])

    # Shape branch: lift every view, fuse over the views, decode one canonical mesh per hand.
    feats, f_v, view_mids = encode_and_lift(self, flat(images), train)
    mids = {k: per_view(view_mids[k]) for k in _PER_VIEW_BACKBONE_MIDS}
    f_v = per_view(f_v)
    f_v_fused, view_weights = fusion.vertex_fusion(f_v, valid)
    verts, joints, decoder_mids = decode_mesh(self, f_v_fused)
    mids.update(decoder_mids)
    mids.update({"lifted_vertex_feature_f_v": f_v, "vff_view_weights": view_weights,
                 "fused_vertex_feature": f_v_fused})

    # Orientation branch, on detached backbone features (as the SVR's).
    f_i = per_view(orientation_input(self, feats.f_i))
    f_i_fused, _ = fusion.ImageFusion(tuple(self.iff_channels), name="image_fusion")(
        f_i, valid, train)
    f_o = backbone_lib.DenseStack(self.hourglass_out, backbone_lib.ENCODER, self.se_max_hidden,
                                  name="dense_stack3")(flat(f_i_fused), train)
    j = per_view(orientation_input(self, feats.j_latent))
    g_j, _ = fusion.JointFusion(tuple(self.jff_channels), name="joint_fusion")(j, valid, train)
    f_j_fused = j + g_j[:, None]
    tokens = to_tokens(flat(f_j_fused) + f_o)
    rot6d, _ = RotationRegressor(tuple(self.rot_conv_channels), tuple(self.rot_pre_channels),
                                 tuple(self.rot_fc_channels), use_ofe=False,
                                 name="rot_reg")(None, tokens, train)
    rot6d, verts, joints = to_float32((rot6d, verts, joints))
    rot_mat = per_view(geometry.rot6d_to_matrix(rot6d))
    mids.update({"fused_image_feature_f_i": f_i_fused, "orientation_feature_f_o": per_view(f_o),
                 "fused_joint_feature_f_j": f_j_fused,
                 "fused_orientation_tokens": per_view(tokens)})

    # The hand's one canonical mesh, rotated about its wrist once per view, with the SVR's
    # detaches.
    verts_v = jnp.broadcast_to(verts[:, None], (b, v) + verts.shape[1:])
    joints_v = jnp.broadcast_to(joints[:, None], (b, v) + joints.shape[1:])
    verts_rotated, joints_rotated = rotate_about_wrist(flat(verts_v), flat(joints_v),
                                                       flat(rot_mat))
    outputs = {
        "verts_canonical": verts_v, "joints_canonical": joints_v,
        "verts_rotated": per_view(verts_rotated), "joints_rotated": per_view(joints_rotated),
        "joints_2d": per_view(feats.uv), "rotation_6d": per_view(rot6d), "rotation": rot_mat,
    }
    return to_float32(outputs), to_float32(mids)


def init_mvr_variables(model: MVRHand, seed: int = 0) -> dict:
  """Fresh variables {'params', 'batch_stats'} of ``model``; see ``svr.init_variables``."""
  s, v = model.input_size, model.num_views
  images = jax.ShapeDtypeStruct((1, v, s, s, 3), jnp.float32)
  view_valid = jax.ShapeDtypeStruct((1, v), jnp.bool_)
  key = jax.random.key(seed, impl="unsafe_rbg")
  return jax.jit(lambda k: model.lazy_init({"params": k}, images, view_valid, train=False))(key)


def build_mvr(model_config: ml_collections.ConfigDict, topology: MeshTopology) -> MVRHand:
  """Builds the MVR of a config (``mvr_config``) on a mesh topology.

  The fields shared with the SVR are validated as ``build_svr`` does. MVR fields a config lacks
  (e.g. a plain ``svr_config``) default to those of ``mvr_config(model_config.variant)``.

  Args:
    model_config: the ``model`` ConfigDict.
    topology: the mesh hierarchy (spirals, up-sampling matrices, joint regressor).

  Returns:
    An unbound ``MVRHand``.

  Raises:
    ValueError: for an invalid topology or knob (e.g. fusion widths that do not end at the
      feature they are added to).
  """
  kwargs = network_kwargs(MVRHand, model_config, topology)
  if kwargs["num_views"] < 1:
    raise ValueError(f"model.num_views must be >= 1, got {kwargs['num_views']}")
  shared = {f.name for f in dataclasses.fields(HandNetFields)}
  for field in dataclasses.fields(MVRFields):
    if field.name not in shared and isinstance(field.default, tuple) and not kwargs[field.name]:
      raise ValueError(f"model.{config_name(field)} must list at least one width")
  iff, jff, width = kwargs["iff_channels"], kwargs["jff_channels"], kwargs["base_channels"]
  if iff[-1] != width:
    raise ValueError(f"model.iff_channels must end at base_channels = {width} (g_i "
                     f"is added to f_i), got {iff}")
  if jff[-1] != 8 * width:
    raise ValueError(f"model.jff_channels must end at 8 * base_channels = "
                     f"{8 * width} (g_j is added to j), got {jff}")
  return MVRHand(**kwargs)
