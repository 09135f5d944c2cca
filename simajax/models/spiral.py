"""Spiral convolution and the spiral mesh decoder ``Upsample_MV`` (docs/architecture.md#spiral-decoder).

A spiral convolution gathers each vertex's spiral neighbourhood ``x[:, spiral]`` -> [B, N, S, C],
flattens it with feature index s * C + c and applies a Linear layer with bias (torch:
``SpiralConv.layer``; our kernel is its transposed weight, [S * C_in, C_out]). It is a gather
plus a matmul; no sparse library. Two equivalent formulations:

* ``plain``: one gather of the whole neighbourhood, then one [S*C_in, C_out] matmul;
* ``per_slot``: sum over the S spiral slots of ``x[:, spiral[:, s]] @ W_s`` with W_s the s-th
  [C_in, C_out] block of the kernel (S smaller gathers and matmuls, no [B, N, S*C] buffer).

The decoder up-samples with the fixed dense matrices U_l (x_fine = U_l @ x_coarse) between
spiral convolutions.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

SPIRAL_IMPLS = ("plain", "per_slot")


class SpiralConv(nn.Module):
  """Spiral convolution over a fixed [N, S] spiral index table, with bias.

  Init as the official SpiralConv: xavier-uniform kernel, zero bias.
  """
  features: int
  spiral: np.ndarray  # int [N, S]
  impl: str = "plain"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[B, N_in, C_in] -> [B, N, features] (N = rows of the spiral table)."""
    n, s = self.spiral.shape
    cin = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.xavier_uniform(), (s * cin, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
    spiral = jnp.asarray(self.spiral, jnp.int32)
    if self.impl == "plain":
      gathered = jnp.take(x, spiral.reshape(-1), axis=1)  # [B, N * S, C]
      y = gathered.reshape(x.shape[0], n, s * cin) @ kernel
    elif self.impl == "per_slot":
      blocks = kernel.reshape(s, cin, self.features)
      y = None
      for slot in range(s):
        term = jnp.take(x, spiral[:, slot], axis=1) @ blocks[slot]
        y = term if y is None else y + term
    else:
      raise ValueError(f"unknown spiral_impl {self.impl!r}; expected one of {SPIRAL_IMPLS}")
    return y + bias


class SpiralDecoder(nn.Module):
  """``Upsample_MV`` (torch ``decoder3d``): coarse vertex features -> canonical vertices.

  Stage i (``de_layer_{i}``, i = 0..L-1) up-samples with U_{L-1-i}, applies a SpiralConv over
  spiral_{L-1-i} to ``channels[L-1-i]`` and a ReLU; the ``head`` SpiralConv over spiral_0 writes
  3 coordinates without activation.

  Attributes:
    channels: output widths, finest level first (official (32, 64, 128, 256)).
    up_matrices: dense U_l [N_l, N_{l+1}] for l = 0..L-1.
    spirals: spiral tables [N_l, S] for l = 0..L-1.
    impl: spiral-conv formulation, see the module docstring.
  """
  channels: Sequence[int]
  up_matrices: Sequence[np.ndarray]
  spirals: Sequence[np.ndarray]
  impl: str = "plain"

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, dict[str, Array]]:
    """Decodes [B, N_L, C] features.

    Returns:
      (vertices [B, N_0, 3], intermediates ``decoder_stage{i}`` [B, N_{L-1-i}, channels]).
    """
    num_stages = len(self.channels)
    mids = {}
    for i in range(num_stages):
      level = num_stages - 1 - i
      up = jnp.asarray(self.up_matrices[level], x.dtype)
      x = jnp.einsum("nm,bmc->bnc", up, x)
      x = _SpiralStage(self.channels[level], self.spirals[level], self.impl,
                       name=f"de_layer_{i}")(x)
      mids[f"decoder_stage{i}"] = x
    verts = SpiralConv(3, self.spirals[0], self.impl, name="head")(x)
    return verts, mids


class _SpiralStage(nn.Module):
  """One decoder stage after its up-sampling: SpiralConv (child ``conv``) + ReLU."""
  features: int
  spiral: np.ndarray
  impl: str

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return nn.relu(SpiralConv(self.features, self.spiral, self.impl, name="conv")(x))
