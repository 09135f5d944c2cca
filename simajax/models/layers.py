"""Building blocks of the DenseStack backbone, with PyTorch-compatible numerics and initialisers.

Everything is NHWC. The official model's conventions (docs/architecture.md#building-blocks and docs/architecture.md#initialisation) that
Flax defaults would get wrong are reproduced explicitly:

* BatchNorm: eps 1e-5, torch momentum 0.1; train mode normalises with the biased batch variance
  but updates ``var`` with the unbiased one (n / (n - 1)), as torch does.
* Convolutions pad symmetrically (1 on every side for 3x3, also at stride 2), have no bias unless
  asked, and keep HWIO kernels (depthwise: [3, 3, 1, C]).
* Initialisers: torch's kaiming-uniform(a=sqrt(5)) for conv and linear weights and biases, i.e.
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm scale 1, bias 0, statistics (0, 1).
* Reorg (2x2 space-to-depth) orders output channels c*4 + dy*2 + dx (torch, channel-major).
* Bilinear x2 up-sampling and grid sampling use align_corners=True.

Speed (docs/architecture.md#performance-notes): the depthwise 3x3 is nine shifted multiply-adds on a padded input
with a hand-written VJP (XLA:CPU's grouped convolution measured 3-12x slower in the backward
pass at the backbone's shapes), and 1x1 convolutions are plain matmuls over the channel axis.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from simajax.models import formulation

Array = jax.Array


def torch_uniform_init(fan_in: int) -> Callable:
  """torch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Linear(nn.Module):
  """torch ``nn.Linear`` (kernel stored [in, out], i.e. the transposed torch weight).

  The product accumulates in at least float32; the result is returned in the input's dtype, or
  in the accumulation dtype with ``keep_accumulator`` (a BatchNorm that follows then normalises
  unrounded values: see ``ConvBN``).
  """
  features: int
  use_bias: bool = True
  keep_accumulator: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    fan_in = x.shape[-1]
    kernel = self.param("kernel", torch_uniform_init(fan_in), (fan_in, self.features))
    acc = _accumulation_dtype(x)
    if formulation.exporting() and x.ndim > 2:  # a 2D product converts to Gemm, not Einsum
      y = formulation.matmul_2d(x, kernel.astype(x.dtype)).astype(acc)
    else:
      y = jnp.matmul(x, kernel.astype(x.dtype), preferred_element_type=acc)
    if self.use_bias:
      y = y + self.param("bias", torch_uniform_init(fan_in), (self.features,)).astype(acc)
    return y if self.keep_accumulator else y.astype(x.dtype)


class BatchNorm(nn.Module):
  """torch BatchNorm1d/2d over the last axis (eps 1e-5, momentum 0.1, unbiased running var).

  Variables: params ``scale``, ``bias``; batch_stats ``mean``, ``var``.
  """
  momentum: float = 0.1  # torch convention: running = (1 - momentum) * running + momentum * batch
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    c = x.shape[-1]
    # Parameters and statistics stay float32 whatever the activations' dtype (bfloat16 under
    # model.compute_dtype): the per-channel affine map is formed in float32, then applied.
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if not train:
      return _normalize(x, scale, bias, running_mean.value, running_var.value, self.epsilon)
    n = x.size // c
    if n < 2:
      raise ValueError(
          f"train-mode BatchNorm needs more than one value per channel, got input shape "
          f"{x.shape} (the SE blocks' BatchNorm1d normalises over the batch: use batch >= 2)")
    y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      m = self.momentum
      running_mean.value = (1.0 - m) * running_mean.value + m * mean
      running_var.value = (1.0 - m) * running_var.value + m * var * (n / (n - 1))
    return y


def _normalize(x: Array, scale: Array, bias: Array, mean: Array, var: Array,
               epsilon: float) -> Array:
  """x * a + b with the per-channel a, b of the affine normalisation, formed in float32."""
  inv = scale * jax.lax.rsqrt(var + epsilon)
  return x * inv.astype(x.dtype) + (bias - mean * inv).astype(x.dtype)


def _accumulation_dtype(x: Array):
  """float32 for bfloat16/float16/float32 arrays, float64 for float64 ones."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _batch_stats(x: Array) -> tuple[Array, Array]:
  """Per-channel (mean, biased variance) of x [..., C] from the raw sums of x and x^2.

  One pass over x for both moments: XLA:CPU hands both sums to its (XNNPACK) reduction kernels
  straight from x, where the two-pass formula (or any per-channel shift) first materialises
  x - mean, doubling the memory traffic (BENCHMARKS.md, "Training speed"). The price is
  cancellation in E[x^2] - E[x]^2 when a channel's mean is large against its spread: in float32
  the normalised output is then off by ~1e-6 (mean = 3 std) to ~6e-5 (mean = 10 std), against
  ~2e-6 for the two-pass formula. BatchNorm inputs here are bias-free convolutions of
  normalised activations, well within that range; in float64 the parity test holds to 1e-7.
  """
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  x = x.astype(_accumulation_dtype(x))  # sums in float32 also for bfloat16 activations
  mean = jnp.sum(x, axes) / n
  var = jnp.maximum(jnp.sum(x * x, axes) / n - mean * mean, 0.0)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: Array, scale: Array, bias: Array,
                     epsilon: float) -> tuple[Array, Array, Array]:
  """Train-mode batch normalisation over all axes but the last, with a hand-written VJP.

  Autodiff of the statistics emits about 40 XLA ops per layer for the backward pass (and the SVR
  has ~150 BatchNorms); the closed form below needs two reductions and one elementwise pass,
  which cuts the training step's compile time and memory traffic.

  Args:
    x: [..., C] input.
    scale: [C] gain.
    bias: [C] offset.
    epsilon: added to the biased batch variance.

  Returns:
    (y, mean, var): the normalised ``x``, and the batch mean and biased variance [C]. All three
    are differentiable.
  """
  mean, var = _batch_stats(x)
  return _normalize(x, scale, bias, mean, var, epsilon), mean, var


def _batch_norm_fwd(x, scale, bias, epsilon):
  x, scale, bias = x.value, scale.value, bias.value
  mean, var = _batch_stats(x)
  y = _normalize(x, scale, bias, mean, var, epsilon)
  return (y, mean, var), (x, scale, mean, jax.lax.rsqrt(var + epsilon))


def _batch_norm_bwd(epsilon, residuals, cotangents):
  """dx = a * g + b * (x - mean) + c with per-channel a, b, c; zero stats cotangents skipped."""
  del epsilon
  x, scale, mean, rstd = residuals
  g, g_mean, g_var = cotangents
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  if isinstance(g, SymbolicZero):
    g = jnp.zeros_like(x)
  # sum(g * (x - mean)) from the sums of g and g * x, as the forward's statistics: the
  # reductions read g and x directly, and no x - mean tensor is materialised. Per-channel
  # quantities are float32; g and x may be bfloat16.
  g32, x32 = g.astype(_accumulation_dtype(g)), x.astype(_accumulation_dtype(x))
  d_bias = jnp.sum(g32, axes)
  d_scale = (jnp.sum(g32 * x32, axes) - mean * d_bias) * rstd
  a = scale * rstd
  b = -(a * rstd * d_scale) / n
  c = -(a * d_bias) / n
  # Only a caller that differentiates the returned statistics gets these terms; the running
  # averages of the BatchNorm module do not.
  if not isinstance(g_var, SymbolicZero):
    b = b + 2.0 * g_var / n
  if not isinstance(g_mean, SymbolicZero):
    c = c + g_mean / n
  dx = (g32 * a + (x32 - mean) * b + c).astype(x.dtype)
  return dx, d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd, symbolic_zeros=True)


def _padded(x: Array) -> Array:
  """x [B, H, W, C] zero-padded by 1 on H and W, materialised behind an optimisation barrier.

  Without the barrier XLA:CPU fuses x's producers into each of the nine shifted reads of the
  taps; through chains of these layers the fusions grew to ~1,000 instructions, recomputed 9x per
  level, which doubled the training step's compile time and slowed it down.
  """
  return jax.lax.optimization_barrier(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))


def _shifted_taps(xp: Array, kernel: Array) -> Array:
  """sum over the 9 taps of shift(x) * kernel[dy, dx] on the padded input ``xp``: the depthwise
  3x3 correlation, accumulated (and returned) in at least float32."""
  h, w = xp.shape[1] - 2, xp.shape[2] - 2
  acc = _accumulation_dtype(xp)
  k = kernel.reshape(3, 3, -1).astype(acc)
  out = None
  for dy in range(3):
    for dx in range(3):
      term = xp[:, dy:dy + h, dx:dx + w, :].astype(acc) * k[dy, dx]
      out = term if out is None else out + term
  return out


@jax.custom_vjp
def depthwise_conv3x3(x: Array, kernel: Array) -> Array:
  """Depthwise 3x3 convolution, stride 1, zero padding 1, as nine shifted multiply-adds.

  The hand-written VJP (the input gradient is the same shifted sum with the flipped kernel;
  the kernel gradient is nine reductions) compiles about twice as fast as autodiff of the
  slices and runs faster; XLA:CPU's grouped convolution is several times slower backward.

  Args:
    x: [B, H, W, C].
    kernel: [3, 3, 1, C] (HWIO with feature_group_count = C).

  Returns:
    [B, H, W, C] in at least float32, equal to ``lax.conv_general_dilated(...,
    feature_group_count=C)``.
  """
  return _shifted_taps(_padded(x), kernel)


def _depthwise_fwd(x, kernel):
  xp = _padded(x)
  # The padded input is the residual: the backward pass reads it as it is, without padding again.
  return _shifted_taps(xp, kernel), (xp, kernel)


def _depthwise_bwd(residuals, g):
  xp, kernel = residuals
  h, w = xp.shape[1] - 2, xp.shape[2] - 2
  dx = _shifted_taps(_padded(g), kernel[::-1, ::-1]).astype(xp.dtype)
  # The nine tap sums as one variadic reduction: one kernel reading x and g once. Nine separate
  # sums made XLA:CPU materialise eight shifted copies of x (shared with the forward pass) and
  # read g nine times, about 2.5x slower at the backbone's shapes.
  g = jax.lax.optimization_barrier(g)
  zero = jnp.zeros((), g.dtype)
  sums = jax.lax.reduce([xp[:, dy:dy + h, dxx:dxx + w, :] * g for dy in range(3) for dxx in range(3)],
                        [zero] * 9, lambda a, b: [u + v for u, v in zip(a, b)], (0, 1, 2))
  return dx, jnp.stack(sums).reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv3x3.defvjp(_depthwise_fwd, _depthwise_bwd)


class _ConvFields(nn.Module):
  """torch Conv2d's arguments, the fields ``Conv`` and ``ConvBN`` share."""
  features: int
  kernel_size: int = 1
  stride: int = 1
  depthwise: bool = False
  use_bias: bool = False


class Conv(_ConvFields):
  """torch Conv2d with symmetric explicit padding (k // 2), HWIO kernel, optional bias.

  ``depthwise=True`` is the groups = C, 3x3, stride-1 case used by the MobileUnits. Accumulates
  in at least float32 and returns the input's dtype, or the accumulation dtype with
  ``keep_accumulator`` (as ``Linear``).
  """
  keep_accumulator: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cin = x.shape[-1]
    k = self.kernel_size
    acc = _accumulation_dtype(x)
    if self.depthwise:
      if k != 3 or self.stride != 1 or self.features != cin:
        raise ValueError(f"depthwise conv supports 3x3, stride 1, C -> C only (got k={k}, "
                         f"stride={self.stride}, {cin} -> {self.features})")
      fan_in = 9
      kernel = self.param("kernel", torch_uniform_init(fan_in), (3, 3, 1, cin))
      # simajax.export traces the converter-friendly grouped form (models/formulation.py).
      depthwise = (formulation.depthwise_conv3x3_grouped if formulation.exporting()
                   else depthwise_conv3x3)
      y = depthwise(x, kernel)
    else:
      fan_in = cin * k * k
      kernel = self.param("kernel", torch_uniform_init(fan_in), (k, k, cin, self.features))
      kernel = kernel.astype(x.dtype)
      if k == 1 and self.stride == 1:
        # The export form is one ONNX Conv; the matmul converts to a slow Einsum.
        y = (formulation.conv1x1(x, kernel).astype(acc) if formulation.exporting()
             else jnp.matmul(x, kernel[0, 0], preferred_element_type=acc))
      else:
        pad = k // 2
        y = jax.lax.conv_general_dilated(
            x, kernel, (self.stride, self.stride), ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=acc)
    if self.use_bias:
      y = y + self.param("bias", torch_uniform_init(fan_in), (self.features,)).astype(acc)
    return y if self.keep_accumulator else y.astype(x.dtype)


class ConvBN(_ConvFields):
  """The official ``conv_layer``: Conv, then optional BatchNorm, then optional ReLU.

  Children ``conv`` and ``bn`` are torch's ``<p>.0`` and ``<p>.1``. Under bfloat16 activations
  the BatchNorm reads the convolution's float32 accumulator, not its bfloat16 rounding: train-mode
  normalisation divides by the batch spread, which magnifies a 0.4 % rounding of values whose
  mean is large against that spread, and through ~100 layers the errors grew to ~30 %.
  """
  use_bn: bool = True
  relu: bool = True

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    y = Conv(self.features, self.kernel_size, self.stride, self.depthwise, self.use_bias,
             keep_accumulator=self.use_bn, name="conv")(x)
    if self.use_bn:
      y = BatchNorm(name="bn")(y, train)
    if self.relu:
      y = nn.relu(y)
    return y.astype(x.dtype)


def conv_bn_blocks(x: Array, widths: Sequence[int], train: bool, first: int = 0) -> Array:
  """x through one 1x1 ``ConvBN`` with bias (BN, ReLU) per width: an official ``conv_layer``
  Sequential of the orientation branch and the fusions, children ``block_{first}``, ... .

  Call it from a compact ``__call__``: the children are created in the calling module.
  """
  for i, width in enumerate(widths, start=first):
    x = ConvBN(width, 1, use_bias=True, name=f"block_{i}")(x, train)
  return x


class LinBN(nn.Module):
  """The official ``linear_layer``: bias-free Linear, optional BatchNorm1d, optional Hardtanh[0, 4].

  Children ``linear`` and ``bn`` are torch's ``<p>.0`` and ``<p>.1``; mixed precision as
  ``ConvBN``.
  """
  features: int
  use_bn: bool = True
  hardtanh: bool = True

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    y = Linear(self.features, use_bias=False, keep_accumulator=self.use_bn, name="linear")(x)
    if self.use_bn:
      y = BatchNorm(name="bn")(y, train)
    if self.hardtanh:
      y = jnp.clip(y, 0.0, 4.0)  # torch.nn.Hardtanh(0, 4), not a ReLU
    return y.astype(x.dtype)


class MobileUnit(nn.Module):
  """``num_dw`` depthwise 3x3 ConvBNReLU, then a 1x1 ConvBNReLU; residual when C_in == C_out.

  Children: ``conv3x3_{i}`` and ``conv1x1``.
  """
  features: int
  num_dw: int = 1

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    y = x
    for i in range(self.num_dw):
      y = ConvBN(x.shape[-1], 3, depthwise=True, name=f"conv3x3_{i}")(y, train)
    y = ConvBN(self.features, 1, name="conv1x1")(y, train)
    if x.shape[-1] == self.features:
      y = y + x  # added after the ReLU, as the official mobile_unit
    return y


class SEBlock(nn.Module):
  """Squeeze-and-excitation: mean pool, LinBN(C -> m, Hardtanh), LinBN(m -> C), sigmoid, scale.

  m = min(C // 2, max_hidden). Children ``fc1`` and ``fc2``.
  """
  max_hidden: int = 256

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    c = x.shape[-1]
    pooled = jnp.mean(x, axis=(1, 2))
    h = LinBN(min(c // 2, self.max_hidden), name="fc1")(pooled, train)
    gate = jax.nn.sigmoid(LinBN(c, hardtanh=False, name="fc2")(h, train))
    return x * gate[:, None, None, :]


class DenseBlock(nn.Module):
  """A densely connected run of MobileUnits ``conv1``, ``conv2``, ...

  Unit i reads the concatenation [input, out_1, ..., out_{i-1}] and writes ``growth[i]``
  channels. The output is that concatenation including the last unit, or, with
  ``keep_input=False`` (DenseBlock2_noExpand), only [out_1, ..., out_n].
  """
  growth: Sequence[int]
  keep_input: bool = True

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    comb = x
    outs = []
    for i, g in enumerate(self.growth):
      out = MobileUnit(g, name=f"conv{i + 1}")(comb, train)
      outs.append(out)
      comb = jnp.concatenate([comb, out], axis=-1)
    return comb if self.keep_input else jnp.concatenate(outs, axis=-1)


def dense_block2(c: int, name: str) -> DenseBlock:
  """DenseBlock2(c): two units of c/2 channels -> 2c."""
  return DenseBlock((c // 2, c // 2), name=name)


def dense_block4(c: int, name: str) -> DenseBlock:
  """DenseBlock(c) of the official code: four units of c/4 channels -> 2c."""
  return DenseBlock((c // 4,) * 4, name=name)


def dense_block_no_expand(c: int, name: str) -> DenseBlock:
  """DenseBlock2_noExpand(c): units of 3c/4 and c/4 channels; output [out1, out2] = c."""
  return DenseBlock((c * 3 // 4, c // 4), keep_input=False, name=name)


def reorg(x: Array) -> Array:
  """2x2 space-to-depth, torch channel order: out channel c*4 + dy*2 + dx. [B,H,W,C] -> [B,H/2,W/2,4C]."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def avg_pool2(x: Array) -> Array:
  """2x2 average pooling, stride 2."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def upsample_nearest2(x: Array) -> Array:
  """x2 nearest-neighbour up-sampling (each pixel repeated 2x2)."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


def _align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] linear-interpolation weights, source index = i * (n_in - 1) / (n_out - 1)."""
  src = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1))
  lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  m = np.zeros((n_out, n_in), np.float64)
  np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
  np.add.at(m, (np.arange(n_out), hi), frac)
  return m


def upsample_bilinear2_align_corners(x: Array) -> Array:
  """x2 bilinear up-sampling with align_corners=True (torch ``nn.Upsample``), [B,H,W,C] -> [B,2H,2W,C]."""
  _, h, w, _ = x.shape
  mh = jnp.asarray(_align_corners_matrix(h, 2 * h), x.dtype)
  mw = jnp.asarray(_align_corners_matrix(w, 2 * w), x.dtype)
  x = jnp.einsum("oh,bhwc->bowc", mh, x)
  return jnp.einsum("pw,bowc->bopc", mw, x)


def grid_sample_align_corners(feature: Array, grid: Array) -> Array:
  """Bilinear sampling of a feature map at points, torch ``grid_sample(align_corners=True)``.

  Zero padding outside the map. Pixel coordinates are x = (g_x + 1) / 2 * (W - 1) and likewise
  y; the gradient with respect to the grid is torch's (taken from the floor cell).

  Args:
    feature: [B, H, W, C].
    grid: [B, P, 2], (x, y) in [-1, 1].

  Returns:
    [B, P, C].
  """
  _, h, w, _ = feature.shape

  def axis_weights(coord, size):
    pix = (coord + 1.0) * 0.5 * (size - 1)
    lo = jnp.floor(pix)
    frac = pix - lo
    cells = jnp.arange(size, dtype=pix.dtype)
    lo = jax.lax.stop_gradient(lo)[..., None]
    return (jnp.where(cells == lo, 1.0 - frac[..., None], 0.0)
            + jnp.where(cells == lo + 1.0, frac[..., None], 0.0))  # [B, P, size]

  wx = axis_weights(grid[..., 0], w)
  wy = axis_weights(grid[..., 1], h)
  return jnp.einsum("bph,bpw,bhwc->bpc", wy, wx, feature)
