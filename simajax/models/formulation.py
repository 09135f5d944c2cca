"""Export formulations: equivalent forms of model ops for converters, chosen at trace time.

The default form of an op is the one tuned for XLA (training speed, docs/PERFORMANCE.md). Some of
those forms are poor inputs for other runtimes: converted op by op to ONNX they turn into
thousands of nodes. Inside ``export_formulation()`` the modules trace these ops in an equivalent
form that a converter maps onto one native operator instead; outside it nothing changes.

Ops with an export form (see ``simajax.export``):

* the depthwise 3x3 convolution of the MobileUnits (``layers.depthwise_conv3x3``: nine shifted
  multiply-adds with a hand-written VJP) becomes one grouped convolution
  (``lax.conv_general_dilated`` with ``feature_group_count = C``), i.e. one ONNX ``Conv`` with
  ``group = C``. Op by op, each of the nine taps is a ``Slice`` of the padded input, a ``Gather``
  of the kernel tap (with ~20 index-building nodes) and a ``Mul``/``Add``: 57 depthwise convs made
  the tiny SVR an 18,000-node graph that jax2onnx took minutes to optimise (its graph passes are
  quadratic in the node count); grouped, the graph has ~3,500 nodes and converts in seconds.

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
