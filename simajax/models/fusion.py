"""MVR-Hand's multi-view feature fusions (paper eq. 1-3; docs/architecture.md#mvr-hand).

Every function takes a per-view validity mask [B, V] and keeps invalid views out of every valid
result: their features are zeroed in the image-level concatenation, left out of the joint-level
statistics, and masked as keys and as query rows in the vertex-level attention. A frame with no
valid view (evaluation padding) still gives finite values.

* ``ImageFusion`` (IFF, eq. 1): for target view k, the V image features in cyclic order
  k, k+1, ... concatenated on channels, through g_i (1x1 conv + BN + ReLU layers, with bias).
* ``JointFusion`` (JFF, eq. 2): masked max / mean / population std over the views, concatenated,
  through g_j (same layer type).
* ``vertex_fusion`` (VFF, eq. 3): parameter-free attention over the views of each coarse
  vertex's lifted feature; the per-view weights are the attention columns averaged over the
  valid query rows.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from simajax.models import layers

Array = jax.Array

STD_EPS = 1e-6  # inside the sqrt of the view std: finite gradient when all views agree


def _view_mask(valid: Array, x: Array) -> Array:
  """[B, V] bool -> broadcastable against x [B, V, ...]."""
  return valid.reshape(valid.shape + (1,) * (x.ndim - 2))


def masked_view_statistics(x: Array, valid: Array) -> tuple[Array, Array, Array]:
  """Max, mean and population std of x over its view axis, over the valid views only.

  Args:
    x: [B, V, ...] per-view features.
    valid: [B, V] bool.

  Returns:
    (max, mean, std), each [B, ...]; std = sqrt(mean squared deviation + 1e-6). All three are
    zero (std: sqrt(1e-6)) for a frame without a valid view.
  """
  mask = _view_mask(valid, x)
  count = jnp.sum(mask, axis=1).astype(x.dtype)
  denom = jnp.maximum(count, 1.0)
  lowest = jnp.finfo(x.dtype).min
  vmax = jnp.max(jnp.where(mask, x, lowest), axis=1)
  vmax = jnp.where(count > 0, vmax, 0.0)
  mean = jnp.sum(jnp.where(mask, x, 0.0), axis=1) / denom
  var = jnp.sum(jnp.where(mask, jnp.square(x - mean[:, None]), 0.0), axis=1) / denom
  return vmax, mean, jnp.sqrt(var + STD_EPS)


class CyclicViewConv(nn.Module):
  """1x1 conv over each target view's cyclic concatenation of all V views' features, with bias.

  For target view k the input is concat_j x[(k + j) mod V] (channel index j * C + c), and the
  kernel is a plain [1, 1, V * C, features] conv kernel (HWIO) over that concatenation. The
  V concatenations are never built: the conv equals one matmul of the views stacked on channels
  with the block-circulant kernel W_eff[i, k] = kernel block (i - k) mod V.
  """
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[B, V, H, W, C] -> [B, V, H, W, features]."""
    v, c = x.shape[1], x.shape[-1]
    fan_in = v * c
    kernel = self.param("kernel", layers.torch_uniform_init(fan_in), (1, 1, fan_in, self.features))
    bias = self.param("bias", layers.torch_uniform_init(fan_in), (self.features,))
    blocks = kernel.reshape(v, c, self.features).astype(x.dtype)
    source = jnp.arange(v)[:, None]
    target = jnp.arange(v)[None, :]
    circulant = blocks[(source - target) % v]  # [V_source, V_target, C, F]
    return jnp.einsum("bihwc,ikcf->bkhwf", x, circulant) + bias.astype(x.dtype)


class ImageFusion(nn.Module):
  """IFF: f_i^M(k) = f_i(k) + g_i(concat of the valid views' f_i, cyclic from k).

  Children ``block_0`` (``conv`` a ``CyclicViewConv``, ``bn``) and ``block_1`` ... (ConvBN with
  bias), so that g_i reads like the SVR's ``shared_encoding_mapping`` with a wider first layer.
  """
  channels: Sequence[int]

  @nn.compact
  def __call__(self, f_i: Array, valid: Array, train: bool) -> tuple[Array, Array]:
    """Fuses image features.

    Args:
      f_i: [B, V, H, W, C] per-view image features.
      valid: [B, V] bool.
      train: train-mode BatchNorm.

    Returns:
      (f_i + g_i(...), g_i(...)), both [B, V, H, W, C].
    """
    if self.channels[-1] != f_i.shape[-1]:
      raise ValueError(f"IFF ends at {self.channels[-1]} channels but is added to the "
                       f"{f_i.shape[-1]}-channel image feature")
    x = jnp.where(_view_mask(valid, f_i), f_i, 0.0)
    x = _FirstBlock(self.channels[0], name="block_0")(x, train)
    x = layers.conv_bn_blocks(x, self.channels[1:], train, first=1)
    return f_i + x, x


class _FirstBlock(nn.Module):
  """CyclicViewConv (``conv``), BatchNorm (``bn``), ReLU."""
  features: int

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = CyclicViewConv(self.features, name="conv")(x)
    return nn.relu(layers.BatchNorm(name="bn")(x, train))


class JointFusion(nn.Module):
  """JFF: g_j(concat[max, mean, std over the valid views of j]); children ``block_{i}``."""
  channels: Sequence[int]

  @nn.compact
  def __call__(self, j: Array, valid: Array, train: bool) -> tuple[Array, Array]:
    """Fuses joint features.

    Args:
      j: [B, V, h, w, C] per-view joint features.
      valid: [B, V] bool.
      train: train-mode BatchNorm.

    Returns:
      (g_j(pooled) [B, h, w, channels[-1]], pooled [B, h, w, 3C]); f_j^M(k) = j(k) + g_j(pooled).
    """
    pooled = jnp.concatenate(masked_view_statistics(j, valid), axis=-1)
    return layers.conv_bn_blocks(pooled, self.channels, train), pooled


def vertex_fusion(f_v: Array, valid: Array) -> tuple[Array, Array]:
  """VFF: attention over the views of each coarse vertex, no learned projections.

  Per vertex, F = the V view features [V, C]; S = softmax over key views of F F^T / sqrt(C),
  invalid views masked out as keys; view weights s_i = mean over the valid query rows of S[:, i];
  f_v^M = sum_i s_i F_i (= the view-average of the attention outputs S F, so f_v^M stays in the
  space and scale of a single-view f_v; our choice, docs/architecture.md#vertex-level-fusion-vff).

  Args:
    f_v: [B, V, N, C] lifted vertex features per view.
    valid: [B, V] bool.

  Returns:
    (f_v^M [B, N, C], view weights [B, N, V]; rows sum to 1 over the valid views, 0 for a frame
    without a valid view).
  """
  c = f_v.shape[-1]
  feats = jnp.where(_view_mask(valid, f_v), f_v, 0.0)
  scores = jnp.einsum("bqnc,bknc->bnqk", feats, feats) / math.sqrt(c)
  key_valid = valid[:, None, None, :]
  # A finite floor, not -inf: a frame without valid views gives uniform rows instead of NaNs
  # (they get zero weight below), and exp underflows to exactly 0 for masked keys otherwise.
  scores = jnp.where(key_valid, scores, jnp.finfo(scores.dtype).min)
  attention = jax.nn.softmax(scores, axis=-1)  # [B, N, Vq, Vk]
  query_valid = valid[:, None, :, None].astype(attention.dtype)
  count = jnp.maximum(jnp.sum(valid, axis=1).astype(attention.dtype), 1.0)
  weights = jnp.sum(attention * query_valid, axis=2) / count[:, None, None]  # [B, N, Vk]
  fused = jnp.einsum("bnk,bknc->bnc", weights, feats)
  return fused, weights
