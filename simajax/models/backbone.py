"""The DenseStack hourglasses and the SVR backbone (docs/architecture.md#backbone).

Module names follow the official ``state_dict`` (``dense1``, ``senet1``, ``thrink1_0`` for torch's
``thrink1.0`` ...), so that ``simajax.convert`` maps official weights by name.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from simajax.models import layers

Array = jax.Array

STACK1 = "stack1"    # DenseStack: encoder without SE 3 and dense4/5; decoder half + bilinear x2
STACK2 = "stack2"    # DenseStack2: full encoder, decoder half, no final up-sampling
ENCODER = "encoder"  # DenseStack2_Encoder: the encoder trunk only (the orientation encoder)


class DenseStack(nn.Module):
  """One hourglass of width c, in one of three official variants.

  Returns, for a [B, S, S, c] input:
    * ``stack1``: [B, S, S, out_channels] (decoder output, bilinearly up-sampled back to S);
    * ``stack2``: ([B, S/2, S/2, out_channels], d4 [B, S/8, S/8, 8c]);
    * ``encoder``: d4 [B, S/8, S/8, 8c].

  The official ``DenseStack`` owns an SE block ``senet3`` that its forward never calls; it is not
  created here (it has no effect and would get no gradient), see ``simajax.convert``.
  """
  out_channels: int
  variant: str = STACK2
  se_max_hidden: int = 256

  @nn.compact
  def __call__(self, x: Array, train: bool):
    if self.variant not in (STACK1, STACK2, ENCODER):
      raise ValueError(f"unknown DenseStack variant {self.variant!r}")
    c = x.shape[-1]

    def se(name):
      return layers.SEBlock(self.se_max_hidden, name=name)

    d1 = layers.avg_pool2(se("senet1")(layers.dense_block2(c, "dense1")(x, train), train))
    d2 = layers.avg_pool2(se("senet2")(layers.dense_block4(2 * c, "dense2")(d1, train), train))
    d3 = layers.dense_block4(4 * c, "dense3")(d2, train)
    if self.variant != STACK1:
      d3 = se("senet3")(d3, train)
    d3 = layers.avg_pool2(d3)
    if self.variant == STACK1:
      bottom = d3
    else:
      d4 = layers.dense_block_no_expand(8 * c, "dense4")(d3, train)
      d4 = layers.dense_block_no_expand(8 * c, "dense5")(d4, train)
      if self.variant == ENCODER:
        return d4
      bottom = d4

    u = layers.MobileUnit(4 * c, 1, name="thrink1_0")(bottom, train)
    u = layers.MobileUnit(4 * c, 2, name="thrink1_1")(u, train)
    us1 = d2 + layers.upsample_nearest2(se("senet4")(u, train))
    u = layers.MobileUnit(2 * c, 1, name="thrink2_0")(us1, train)
    u = layers.MobileUnit(2 * c, 2, name="thrink2_1")(u, train)
    us2 = d1 + layers.upsample_nearest2(se("senet5")(u, train))
    u = layers.MobileUnit(2 * c, 1, name="thrink3_0")(us2, train)
    u = layers.MobileUnit(self.out_channels, 2, name="thrink3_1")(u, train)
    u3 = se("senet6")(u, train)
    if self.variant == STACK1:
      return layers.upsample_bilinear2_align_corners(u3)
    return u3, d4


# The 2D-joint heads (``Backbone.uv_head``, the config's ``model.uv_head``).
UV_REGRESSION = "regression"    # official: flattened map -> bias-free Linear / Hardtanh[0, 4]
UV_SOFT_ARGMAX = "soft_argmax"  # ours: the expected pixel centre under the map's softmax
UV_HEADS = (UV_REGRESSION, UV_SOFT_ARGMAX)


def soft_argmax_2d(heatmaps: Array) -> Array:
  """[B, h, w, J] joint heat-maps -> [B, J, 2] (x, y) in [0, 1] crop units.

  Each joint's position is the mean pixel centre ((col + 0.5) / w, (row + 0.5) / h) under the
  softmax of its map (integral regression, Sun et al. 2018). Why it is offered: the official
  regression head starts with outputs that hardly vary across images (spread 0.009 against the
  labels' 0.157 on the synthetic data) and, in the 2D-joint loss, stayed at the best constant
  guess for ~900 steps (BENCHMARKS.md, "What limits the main job"); here the gradient raises the
  map where the joint is, so localisation is learned by the convolutions directly, and at
  initialisation the output is near the crop centre, i.e. near the labels' mean.
  """
  b, h, w, j = heatmaps.shape
  probs = jax.nn.softmax(heatmaps.reshape(b, h * w, j).astype(jnp.float32), axis=1)
  cols = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
  rows = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
  grid = jnp.stack([jnp.tile(cols, h), jnp.repeat(rows, w)], axis=-1)  # [h * w, 2], row-major
  return jnp.einsum("bpj,pc->bjc", probs, grid).astype(heatmaps.dtype)


class BackboneFeatures(NamedTuple):
  """What the backbone hands to the rest of the network (NHWC)."""
  f_i: Array        # image-level feature ("share_encoding", thrink2) [B, S/4, S/4, c]
  j_latent: Array   # joint-level feature, dense_stack2's bottleneck [B, S/32, S/32, 8c]
  latent: Array     # mid_proj(j_latent) [B, S/32, S/32, latent_channels]
  uv: Array         # raw 2D joints in [0, 1] crop coordinates (x, y) [B, J, 2]


class Backbone(nn.Module):
  """``SIMA_Backnone`` (MobRecon's DenseStack backbone): image -> (f_i, j_latent, latent, uv).

  Field meanings (and the official widths) in ``models/config.py``.
  """
  stem_channels: int
  pre_channels: int
  base_channels: int
  hourglass_out: int
  latent_channels: int
  uv_hidden: tuple[int, ...]
  num_joints: int
  se_max_hidden: int
  uv_head: str = UV_REGRESSION

  @nn.compact
  def __call__(self, images: Array, train: bool) -> tuple[BackboneFeatures, dict[str, Array]]:
    """Runs the backbone.

    Args:
      images: [B, S, S, 3] RGB in [0, 1].
      train: train-mode BatchNorm.

    Returns:
      (features, intermediates); intermediates are keyed as the golden parity data's ``mid/``.
    """
    mids = {}
    x = layers.ConvBN(self.stem_channels, 3, stride=2, name="pre_layer_0")(images, train)
    x = layers.MobileUnit(self.pre_channels, 1, name="pre_layer_1")(x, train)
    mids["backbone_pre_layer"] = x
    thrink = layers.ConvBN(self.base_channels, 1, name="thrink")(layers.reorg(x), train)
    mids["backbone_thrink"] = thrink
    stack1 = DenseStack(self.hourglass_out, STACK1, self.se_max_hidden, name="dense_stack1")(
        thrink, train)
    mids["backbone_dense_stack1"] = stack1
    remap = layers.ConvBN(self.hourglass_out, 1, name="stack1_remap")(stack1, train)
    mids["backbone_stack1_remap"] = remap
    f_i = layers.ConvBN(self.base_channels, 1, name="thrink2")(
        jnp.concatenate([remap, thrink], axis=-1), train)
    mids["image_feature_f_i"] = f_i
    stack2, j_latent = DenseStack(self.hourglass_out, STACK2, self.se_max_hidden,
                                  name="dense_stack2")(f_i, train)
    mids["backbone_dense_stack2_out"] = stack2
    mids["joint_feature_j_latent"] = j_latent
    latent = layers.ConvBN(self.latent_channels, 1, use_bn=False, relu=False, name="mid_proj")(
        j_latent, train)
    mids["latent"] = latent
    heatmaps = layers.ConvBN(self.num_joints, 1, use_bn=False, relu=False, name="reduce")(
        stack2, train)
    mids["backbone_reduce"] = heatmaps
    if self.uv_head == UV_SOFT_ARGMAX:
      uv = soft_argmax_2d(heatmaps)
    elif self.uv_head == UV_REGRESSION:
      b, h, w, j = heatmaps.shape
      # Each joint's map flattened row-major (h * W + w), as torch's view on NCHW.
      uv = heatmaps.transpose(0, 3, 1, 2).reshape(b, j, h * w)
      for i, width in enumerate(self.uv_hidden):
        uv = layers.LinBN(width, use_bn=False, name=f"uv_reg_{i}")(uv, train)
      uv = layers.LinBN(2, use_bn=False, hardtanh=False, name=f"uv_reg_{len(self.uv_hidden)}")(
          uv, train)
    else:
      raise ValueError(f"unknown uv_head {self.uv_head!r}; expected one of {UV_HEADS}")
    mids["uv_raw"] = uv
    return BackboneFeatures(f_i, j_latent, latent, uv), mids
