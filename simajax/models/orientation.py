"""The SVR's orientation branch (docs/architecture.md#orientation-branch).

* ``ResidualMapping``: x + 3 x [1x1 conv with bias, BN, ReLU](x); the official
  ``shared_encoding_mapping`` (on the detached f_i, before the orientation encoder, a
  ``DenseStack`` in its ``encoder`` variant) and ``j_latent_mapping`` (on the detached j_latent,
  giving f_j).
* ``RotationRegressor`` (``SIMA_GlobRotReg``, torch ``rot_reg``): the orientation-feature
  enhancement (OFE, ``simajax.models.ofe``: f_j and f_o tokens -> f̂_o) and the regressor (two
  k=1 Conv1d, a channel-major flatten, the pre block and the fc block) to a 6D rotation. With
  ``use_ofe=False`` (the paper's "w/o OFE" ablation, Table 5; also H2ONet's plain regressor,
  which the MVR uses) there are no attention blocks: the regressor reads the f_o tokens
  directly, and those tokens stand in for f̂_o as the L_OE target.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from simajax.models import layers
from simajax.models.ofe import OrientationFeatureEnhancement

Array = jax.Array


class ResidualMapping(nn.Module):
  """x + mapping(x), mapping = ``num_layers`` x [1x1 conv with bias, BN, ReLU] (``block_{i}``)."""
  num_layers: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool) -> tuple[Array, Array]:
    """Returns (x + residual, residual), both shaped like x [B, H, W, C]."""
    residual = layers.conv_bn_blocks(x, (x.shape[-1],) * self.num_layers, train)
    return x + residual, residual


class RotationRegressor(nn.Module):
  """f_j and f_o tokens [B, T, D] -> (6D rotation [B, 6], intermediates).

  Children: ``self_attn_1``, ``self_attn_2``, ``crs_attn`` (the OFE's attention, in this scope;
  only with ``use_ofe``),
  ``conv_block_{0,2}`` (k=1 Conv1d as Linear), ``pre_block_{0,2}`` and ``fc_block_1_{0,2,...}``
  (Linear with bias), named after torch's Sequential indices. Widths (and the official ones) in
  ``models/config.py``.
  """
  conv_channels: Sequence[int]
  pre_channels: Sequence[int]
  fc_channels: Sequence[int]
  use_ofe: bool = True
  # The OFE attention blocks' heads, per-head width and dropout; read only with ``use_ofe``.
  num_heads: int | None = None
  head_dim: int | None = None
  dropout: float = 0.0

  @nn.compact
  def __call__(self, f_j: Array | None, f_o: Array,
               train: bool) -> tuple[Array, dict[str, Array]]:
    """Regresses the rotation; ``f_j`` is not read (may be None) when ``use_ofe`` is False."""
    if self.use_ofe:
      f_o_hat, mids = OrientationFeatureEnhancement.attach(
          self, num_heads=self.num_heads, head_dim=self.head_dim, dropout=self.dropout)(
              f_j, f_o, train)
    else:
      f_o_hat = f_o
      mids = {}
    mids["orientation_feature_enhanced_f_o_hat"] = f_o_hat
    x = f_o_hat
    for i, width in enumerate(self.conv_channels):
      x = nn.relu(layers.Linear(width, name=f"conv_block_{2 * i}")(x))
    mids["rot_conv_block"] = x  # token-major [B, T, C]; torch's is [B, C, T]
    b, t, c = x.shape
    x = x.transpose(0, 2, 1).reshape(b, c * t)  # torch flattens channel-major: c * T + t
    for i, width in enumerate(self.pre_channels):
      x = nn.relu(layers.Linear(width, name=f"pre_block_{2 * i}")(x))
    mids["rot_pre_block"] = x
    for i, width in enumerate(self.fc_channels):
      x = nn.relu(layers.Linear(width, name=f"fc_block_1_{2 * i}")(x))
    rot6d = layers.Linear(6, name=f"fc_block_1_{2 * len(self.fc_channels)}")(x)
    return rot6d, mids
