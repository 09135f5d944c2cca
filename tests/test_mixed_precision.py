"""model.compute_dtype = 'bfloat16': activations in bfloat16, everything else float32.

Checked against the float32 model with the same weights, in eval mode: the outputs agree to the
~1 % that bfloat16's 8-bit mantissa allows and leave the model as float32, and the gradients are
float32 and point the same way as float32's. In train mode only the dtypes are compared: at
random weights with a batch of a few images, train-mode BatchNorm (the SE blocks normalise over
the batch) makes the network chaotic, and in float32 alone a 0.1 % perturbation of the input
changes the outputs by 20-70 %, so no tolerance would be meaningful there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from parity_recipe import he_variables
from simajax.models import build_mvr, build_svr, mvr_config, svr_config

# Max |bf16 - f32| / max |f32| over each output. bfloat16 rounds every activation to a relative
# 2^-9 = 0.2 %; through ~100 layers the errors add up. Measured at these random weights (tiny
# MVR, jitted): 0.7-1.5 % on the rotation and 2D joints, 3.9-5.1 % on the 3D mesh and joints,
# which the spiral decoder (no normalisation) amplifies; the bound leaves 1.5x headroom.
OUTPUT_TOLERANCE = 0.075


def _pair(build, config):
  f32 = build(config)
  config.compute_dtype = "bfloat16"
  return f32, build(config)


def _images(rng, shape):
  """Random images whose brightness differs from image to image: train-mode BatchNorm over a
  batch of a few noise images of equal brightness would divide by a near-zero spread, where any
  rounding is amplified without bound."""
  gain = rng.uniform(0.2, 1.0, shape[:-3] + (1, 1, 1))
  return jnp.asarray(rng.random(shape) * gain, jnp.float32)


def _relative(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("stage", ["svr", "mvr"])
def test_bfloat16_outputs_agree_with_float32(stage, reference_topology):
  rng = np.random.default_rng(0)
  if stage == "svr":
    m32, m16 = _pair(lambda c: build_svr(c, reference_topology), svr_config("tiny"))
    inputs = (_images(rng, (4, 128, 128, 3)),)
  else:
    m32, m16 = _pair(lambda c: build_mvr(c, reference_topology), mvr_config("tiny"))
    inputs = (_images(rng, (1, 8, 128, 128, 3)), jnp.ones((1, 8), bool))
  abstract = jax.eval_shape(lambda: m32.init(jax.random.key(0), *inputs, train=False))
  variables = he_variables(abstract, reference_topology)
  # Jitted: op-by-op, these deep networks dispatch (and compile) thousands of small ops.
  o32, _ = jax.jit(functools.partial(m32.apply, train=False))(variables, *inputs)
  o16, _ = jax.jit(functools.partial(m16.apply, train=False))(variables, *inputs)
  for key in o32:
    assert o16[key].dtype == jnp.float32, key
    assert _relative(o16[key], o32[key]) < OUTPUT_TOLERANCE, key
  (o16, mids), stats = jax.jit(functools.partial(m16.apply, train=True,
                                                 mutable=["batch_stats"]))(
      variables, *inputs, rngs={"dropout": jax.random.key(1)})
  # Outputs, features and the updated BatchNorm statistics leave the model in float32.
  assert {x.dtype for x in jax.tree.leaves((o16, mids, stats))} == {jnp.dtype(jnp.float32)}
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(o16))


def test_bfloat16_gradients_are_float32_and_agree(reference_topology):
  m32, m16 = _pair(lambda c: build_svr(c, reference_topology), svr_config("tiny"))
  rng = np.random.default_rng(1)
  images = _images(rng, (4, 128, 128, 3))
  abstract = jax.eval_shape(lambda: m32.init(jax.random.key(0), images, train=False))
  variables = he_variables(abstract, reference_topology)

  def grads(model):
    def loss(params):
      out, _ = model.apply({**variables, "params": params}, images, train=False)
      return jnp.mean(jnp.abs(out["verts_canonical"])) + jnp.mean(jnp.square(out["rotation_6d"]))
    return jax.jit(jax.grad(loss))(variables["params"])

  g32 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads(m32))])
  g16_tree = grads(m16)
  assert {x.dtype for x in jax.tree.leaves(g16_tree)} == {jnp.dtype(jnp.float32)}
  g16 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g16_tree)])
  cosine = float(jnp.dot(g32, g16) / (jnp.linalg.norm(g32) * jnp.linalg.norm(g16)))
  assert cosine > 0.99
