"""The official transformer ``MultiHeadAttention`` block (docs/architecture.md#ofe-attention).

Post-norm, no feed-forward sublayer: bias-free q/k/v projections d_model -> H * d_head, scores
(q / sqrt(d_head)) k^T, softmax over keys, dropout on the weights, head-major concatenation,
bias-free output projection, dropout, plus the **query** input, then LayerNorm (eps 1e-6).
Official sizes: 8 heads x 512, d_model 1024, dropout 0.1.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from simajax.models import layers

Array = jax.Array


class MultiHeadAttention(nn.Module):
  """Children ``w_qs``, ``w_ks``, ``w_vs``, ``fc`` (Linear, no bias) and ``layer_norm``."""
  num_heads: int = 8
  head_dim: int = 512
  dropout: float = 0.1

  @nn.compact
  def __call__(self, q: Array, k: Array, v: Array, train: bool) -> Array:
    """Attends queries [B, Lq, D] to keys/values [B, Lk, D]; returns [B, Lq, D]."""
    b, lq, d_model = q.shape
    lk = k.shape[1]
    h, dh = self.num_heads, self.head_dim
    qh = layers.Linear(h * dh, use_bias=False, name="w_qs")(q).reshape(b, lq, h, dh)
    kh = layers.Linear(h * dh, use_bias=False, name="w_ks")(k).reshape(b, lk, h, dh)
    vh = layers.Linear(h * dh, use_bias=False, name="w_vs")(v).reshape(b, lk, h, dh)
    scores = jnp.einsum("bqhd,bkhd->bhqk", qh / math.sqrt(dh), kh)
    weights = jax.nn.softmax(scores, axis=-1)
    weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, vh).reshape(b, lq, h * dh)
    out = layers.Linear(d_model, use_bias=False, name="fc")(out)
    out = nn.Dropout(self.dropout)(out, deterministic=not train)
    return nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, name="layer_norm")(out + q)
