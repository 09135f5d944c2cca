"""Export formulations: equivalent forms of model ops for converters, chosen at trace time.

The default form of an op is the one tuned for XLA (training speed, docs/architecture.md#performance-notes). Some of
those forms are poor inputs for other runtimes: converted op by op to ONNX they turn into
thousands of nodes. Inside ``export_formulation()`` the modules trace these ops in an equivalent
form that a converter maps onto one native operator instead; outside it nothing changes.

Ops with an export form (see ``simajax.export``), and why:

* the depthwise 3x3 convolution of the MobileUnits (``layers.depthwise_conv3x3``: nine shifted
  multiply-adds with a hand-written VJP) becomes one grouped convolution
  (``depthwise_conv3x3_grouped``: ``lax.conv_general_dilated`` with ``feature_group_count = C``),
  i.e. one ONNX ``Conv`` with ``group = C``. Op by op, each of the nine taps is a ``Slice`` of
  the padded input, a ``Gather`` of the kernel tap (with ~20 index-building nodes) and a
  ``Mul``/``Add``: the 57 depthwise convs made the tiny SVR an 18,000-node graph that jax2onnx took
  2 minutes to optimise (its graph passes are quadratic in the node count); grouped, the graph has
  ~3,500 nodes and converts in ~15 s, the official SVR in ~30 s.
* the 1x1 convolutions (``layers.Conv`` with k = 1: a matmul over the channel axis of the NHWC
  map) become a 1x1 ``lax.conv_general_dilated`` (``conv1x1``), one ONNX ``Conv``. The matmul
  converts to an ONNX ``Einsum``, which took 67 % of onnxruntime's time on the official SVR
  (batch 1: 185 of 276 ms); as ``Conv`` the graph ran about twice as fast.
* ``layers.Linear`` on inputs with more than two axes (tokens [B, T, C], spiral features
  [B, N, S * C]) becomes a 2D product of the flattened leading axes (``matmul_2d``): ONNX
  ``Gemm``/``MatMul`` instead of ``Einsum``.

On XLA:CPU the export forms are slower than the defaults (the grouped convolution most: the
official SVR's forward at batch 1 took 183 ms against 76 ms, measured with
``scripts/bench_export.py``), so JAX keeps the default forms.

The flag is read while a function is traced, so a function jitted outside the context keeps its
default form when it is later called inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax

Array = jax.Array

_EXPORT_FORMULATION = contextvars.ContextVar("simajax_export_formulation", default=False)


@contextlib.contextmanager
def export_formulation() -> Iterator[None]:
  """Traces model ops in their export form while the context is active (module docstring)."""
  token = _EXPORT_FORMULATION.set(True)
  try:
    yield
  finally:
    _EXPORT_FORMULATION.reset(token)


def exporting() -> bool:
  """Whether ops are being traced in their export form."""
  return _EXPORT_FORMULATION.get()


def conv1x1(x: Array, kernel: Array) -> Array:
  """A 1x1 convolution (stride 1) as a convolution op instead of a matmul over the channels.

  Equal, up to float rounding, to ``x @ kernel[0, 0]`` (the default form in ``layers.Conv``).

  Args:
    x: [B, H, W, C_in].
    kernel: [1, 1, C_in, C_out] (HWIO).

  Returns:
    [B, H, W, C_out].
  """
  return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), ((0, 0), (0, 0)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def matmul_2d(x: Array, kernel: Array) -> Array:
  """``x @ kernel`` for x [..., C_in] as one 2D matrix product: [prod(...), C_in] @ kernel.

  Equal, up to float rounding, to ``x @ kernel``.
  """
  lead = x.shape[:-1]
  return (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*lead, kernel.shape[-1])


def depthwise_conv3x3_grouped(x: Array, kernel: Array) -> Array:
  """The depthwise 3x3 convolution (stride 1, zero padding 1) as one grouped convolution.

  Equal, up to float rounding, to ``layers.depthwise_conv3x3``.

  Args:
    x: [B, H, W, C].
    kernel: [3, 3, 1, C] (HWIO with feature_group_count = C).

  Returns:
    [B, H, W, C].
  """
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
