"""Building blocks against independent numpy references and the official sizes (docs/architecture.md#building-blocks and docs/architecture.md#parameter-counts)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simajax.models import layers
from simajax.models.attention import MultiHeadAttention
from simajax.models.backbone import DenseStack
from simajax.models.spiral import SpiralConv


def count_params(module, *inputs, **kwargs) -> int:
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, **kwargs))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


def rng(seed=0):
  return np.random.default_rng(seed)


def test_batchnorm_train_and_eval_match_torch_rules():
  x = rng().normal(1.0, 2.0, (3, 4, 5, 6)).astype(np.float32)
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(0), x, train=False)
  variables = {"params": {"scale": np.linspace(0.5, 1.5, 6, dtype=np.float32),
                          "bias": np.linspace(-1, 1, 6, dtype=np.float32)},
               "batch_stats": {"mean": np.full(6, 0.3, np.float32),
                               "var": np.full(6, 2.0, np.float32)}}
  y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  flat = x.reshape(-1, 6).astype(np.float64)
  mean, var_biased, var_unbiased = flat.mean(0), flat.var(0), flat.var(0, ddof=1)
  expected = ((flat - mean) / np.sqrt(var_biased + 1e-5) * variables["params"]["scale"]
              + variables["params"]["bias"])
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 6), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.9 * 0.3 + 0.1 * mean, rtol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 * 2.0 + 0.1 * var_unbiased,
                             rtol=1e-6)
  y_eval = bn.apply(variables, x, train=False)
  expected_eval = ((flat - 0.3) / np.sqrt(2.0 + 1e-5) * variables["params"]["scale"]
                   + variables["params"]["bias"])
  np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 6), expected_eval, rtol=1e-5,
                             atol=1e-5)


def test_batchnorm_refuses_single_value_per_channel():
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(0), jnp.ones((1, 8)), train=False)
  with pytest.raises(ValueError, match="batch >= 2"):
    bn.apply(variables, jnp.ones((1, 8)), train=True, mutable=["batch_stats"])


def test_depthwise_conv_matches_grouped_convolution_and_its_gradient():
  x = rng(1).normal(size=(2, 7, 6, 5)).astype(np.float32)
  k = rng(2).normal(size=(3, 3, 1, 5)).astype(np.float32)

  def grouped(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=5)

  np.testing.assert_allclose(layers.depthwise_conv3x3(x, k), grouped(x, k), rtol=1e-5,
                             atol=1e-5)
  w = rng(3).normal(size=(2, 7, 6, 5)).astype(np.float32)
  g_ours = jax.grad(lambda x, k: jnp.sum(layers.depthwise_conv3x3(x, k) * w), (0, 1))(x, k)
  g_ref = jax.grad(lambda x, k: jnp.sum(grouped(x, k) * w), (0, 1))(x, k)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_stride2_conv_pads_symmetrically_like_torch():
  x = rng(4).normal(size=(1, 6, 6, 2)).astype(np.float32)
  conv = layers.Conv(3, kernel_size=3, stride=2)
  variables = conv.init(jax.random.key(0), x)
  k = np.asarray(variables["params"]["kernel"], np.float64)
  y = np.asarray(conv.apply(variables, x))
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  expected = np.zeros((1, 3, 3, 3))
  for i in range(3):
    for j in range(3):
      patch = xp[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
      expected[0, i, j] = np.einsum("hwc,hwco->o", patch, k)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_reorg_is_channel_major_space_to_depth():
  x = rng(5).normal(size=(2, 4, 6, 3))
  y = np.asarray(layers.reorg(x))
  assert y.shape == (2, 2, 3, 12)
  for i in range(2):
    for j in range(3):
      for c in range(3):
        for dy in range(2):
          for dx in range(2):
            assert y[1, i, j, c * 4 + dy * 2 + dx] == x[1, 2 * i + dy, 2 * j + dx, c]


def test_bilinear_upsample_align_corners():
  x = rng(6).normal(size=(1, 3, 4, 2)).astype(np.float32)
  y = np.asarray(layers.upsample_bilinear2_align_corners(x))
  assert y.shape == (1, 6, 8, 2)
  expected = np.zeros_like(y)
  for oy in range(6):
    for ox in range(8):
      sy, sx = oy * 2 / 5, ox * 3 / 7  # (n_in - 1) / (n_out - 1)
      y0, x0 = min(int(sy), 1), min(int(sx), 2)
      fy, fx = sy - y0, sx - x0
      expected[0, oy, ox] = ((1 - fy) * (1 - fx) * x[0, y0, x0] + (1 - fy) * fx * x[0, y0, x0 + 1]
                             + fy * (1 - fx) * x[0, y0 + 1, x0] + fy * fx * x[0, y0 + 1, x0 + 1])
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y[0, [0, 0, -1, -1], [0, -1, 0, -1]],
                             x[0, [0, 0, -1, -1], [0, -1, 0, -1]], rtol=1e-6)


def _grid_sample_reference(feature, grid):
  """torch grid_sample(bilinear, zeros, align_corners=True), one point at a time."""
  b, h, w, c = feature.shape
  out = np.zeros((b, grid.shape[1], c))
  for n in range(b):
    for p in range(grid.shape[1]):
      px = (grid[n, p, 0] + 1) / 2 * (w - 1)
      py = (grid[n, p, 1] + 1) / 2 * (h - 1)
      x0, y0 = int(np.floor(px)), int(np.floor(py))
      for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
          if 0 <= yy < h and 0 <= xx < w:
            out[n, p] += wy * wx * feature[n, yy, xx]
  return out


def test_grid_sample_align_corners_values_and_grid_gradient():
  feature = rng(7).normal(size=(2, 4, 4, 3))
  grid = np.array([[[-1, -1], [1, 1], [0.3, -0.7], [1, -0.2]],
                   [[0.0, 0.0], [-0.45, 0.9], [-1, 1], [0.99, 0.01]]])
  y = np.asarray(layers.grid_sample_align_corners(feature.astype(np.float32),
                                                  grid.astype(np.float32)))
  np.testing.assert_allclose(y, _grid_sample_reference(feature, grid), rtol=1e-5, atol=1e-6)
  # Inside a cell, the gradient w.r.t. the grid is the bilinear slope (finite differences).
  weights = rng(8).normal(size=(2, 4, 3))
  loss = lambda g: jnp.sum(layers.grid_sample_align_corners(feature, g) * weights)  # noqa: E731
  with jax.enable_x64(True):
    g = np.asarray(jax.grad(loss)(jnp.asarray(grid, jnp.float64)))
    eps = 1e-6
    bumped = grid.copy()
    bumped[0, 2, 0] += eps
    numeric = (float(loss(jnp.asarray(bumped))) - float(loss(jnp.asarray(grid)))) / eps
  np.testing.assert_allclose(g[0, 2, 0], numeric, rtol=1e-4)


@pytest.mark.parametrize("impl", ["plain", "per_slot"])
def test_spiral_conv_gathers_slot_major_features(impl):
  spiral = rng(9).integers(0, 10, size=(7, 4))
  x = rng(10).normal(size=(2, 10, 3)).astype(np.float32)
  conv = SpiralConv(5, spiral, impl)
  variables = conv.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"])
  bias = rng(11).normal(size=5).astype(np.float32)
  variables = {"params": {"kernel": kernel, "bias": bias}}
  y = np.asarray(conv.apply(variables, x))
  expected = np.zeros((2, 7, 5))
  for n in range(7):
    feat = np.concatenate([x[:, spiral[n, s]] for s in range(4)], axis=-1)  # index s * C + c
    expected[:, n] = feat @ kernel + bias
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  bound = math.sqrt(6 / (12 + 5))  # xavier-uniform, fan_in = S * C_in
  assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.5 * bound


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_multi_head_attention_is_post_norm_with_query_residual():
  q_in = rng(12).normal(size=(2, 5, 8)).astype(np.float32)
  kv_in = rng(13).normal(size=(2, 6, 8)).astype(np.float32)
  mha = MultiHeadAttention(num_heads=2, head_dim=3, dropout=0.1)
  variables = mha.init(jax.random.key(0), q_in, kv_in, kv_in, train=False)
  p = jax.tree.map(np.asarray, variables["params"])
  p["layer_norm"] = {"scale": rng(14).uniform(0.5, 1.5, 8).astype(np.float32),
                     "bias": rng(15).normal(size=8).astype(np.float32)}
  apply = jax.jit(mha.apply, static_argnames="train")
  y = np.asarray(apply({"params": p}, q_in, kv_in, kv_in, train=False))

  def heads(x, w):  # [B, L, 8] @ [8, 6] -> [B, 2, L, 3], head h owns features h*3 .. h*3+2
    return (x @ w).reshape(x.shape[0], x.shape[1], 2, 3).transpose(0, 2, 1, 3)

  q, k, v = (heads(q_in, p["w_qs"]["kernel"]), heads(kv_in, p["w_ks"]["kernel"]),
             heads(kv_in, p["w_vs"]["kernel"]))
  attn = _softmax((q / math.sqrt(3)) @ k.transpose(0, 1, 3, 2))
  out = (attn @ v).transpose(0, 2, 1, 3).reshape(2, 5, 6) @ p["fc"]["kernel"] + q_in
  out = out.astype(np.float64)
  mean, var = out.mean(-1, keepdims=True), out.var(-1, keepdims=True)
  expected = (out - mean) / np.sqrt(var + 1e-6) * p["layer_norm"]["scale"] + p["layer_norm"]["bias"]
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
  # Dropout acts in train mode only, and needs the 'dropout' rng.
  y_train = apply({"params": p}, q_in, kv_in, kv_in, train=True,
                  rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(y_train, y)


def test_torch_uniform_init_bounds():
  linear = layers.Linear(300)
  params = linear.init(jax.random.key(0), jnp.zeros((1, 400)))["params"]
  bound = 1 / math.sqrt(400)
  for leaf in (params["kernel"], params["bias"]):
    assert np.abs(leaf).max() <= bound
    np.testing.assert_allclose(np.std(leaf), bound / math.sqrt(3), rtol=0.05)
  conv = layers.Conv(16, 3, depthwise=True)
  kernel = conv.init(jax.random.key(0), jnp.zeros((1, 4, 4, 16)))["params"]["kernel"]
  assert kernel.shape == (3, 3, 1, 16) and np.abs(kernel).max() <= 1 / 3  # fan_in = 9


@pytest.mark.parametrize("builder, c, expected", [
    (lambda: layers.dense_block2(128, "d"), 128, 24_256),
    (lambda: layers.SEBlock(), 256, 66_304),
    (lambda: layers.dense_block4(256, "d"), 256, 106_112),
    (lambda: layers.SEBlock(), 512, 263_680),
    (lambda: layers.dense_block4(512, "d"), 512, 392_448),
    (lambda: layers.SEBlock(), 1024, 526_848),
    (lambda: layers.dense_block_no_expand(1024, "d"), 1024, 1_278_208),
    (lambda: layers.SEBlock(), 24, 648),
])
def test_block_parameter_counts_match_official(builder, c, expected):
  assert count_params(builder(), jnp.zeros((2, 8, 8, c)), train=False) == expected


def test_dense_stack_shapes_and_sizes():
  x = jnp.zeros((2, 32, 32, 128))
  stack1 = DenseStack(24, "stack1")
  shapes = jax.eval_shape(lambda: stack1.init(jax.random.key(0), x, train=False))
  out = jax.eval_shape(lambda v: stack1.apply(v, x, train=False), shapes)
  assert out.shape == (2, 32, 32, 24)
  # The official dense_stack1 has 2,810,872 parameters including the never-called senet3.
  assert sum(a.size for a in jax.tree.leaves(shapes["params"])) == 2_810_872 - 526_848
  assert count_params(DenseStack(24, "encoder"), x, train=False) == 3_936_064
  stack2 = DenseStack(24, "stack2")
  shapes = jax.eval_shape(lambda: stack2.init(jax.random.key(0), x, train=False))
  out, mid = jax.eval_shape(lambda v: stack2.apply(v, x, train=False), shapes)
  assert out.shape == (2, 16, 16, 24) and mid.shape == (2, 4, 4, 1024)
  assert sum(a.size for a in jax.tree.leaves(shapes["params"])) == 5_367_288


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (7, 6)])
def test_batch_norm_train_vjp_matches_autodiff_of_the_formula(shape):
  """The hand-written BatchNorm VJP against autodiff of the textbook two-pass formula."""

  def reference(x, scale, bias):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias, mean, var

  r = rng(16)
  x, w = r.normal(1.0, 2.0, shape), r.normal(size=shape)
  scale, bias, w_mean, w_var = (r.normal(size=6) for _ in range(4))

  def loss(fn, with_stats):
    def f(x, scale, bias):
      y, mean, var = fn(x, scale, bias)
      total = jnp.sum(y * w)
      return total + jnp.sum(mean * w_mean) + jnp.sum(var * w_var) if with_stats else total
    return f

  ours = lambda x, s, b: layers.batch_norm_train(x, s, b, 1e-5)  # noqa: E731
  with jax.enable_x64(True):
    for with_stats in (False, True):
      got = jax.grad(loss(ours, with_stats), (0, 1, 2))(x, scale, bias)
      expected = jax.grad(loss(reference, with_stats), (0, 1, 2))(x, scale, bias)
      for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours(x, scale, bias)[0], reference(x, scale, bias)[0], rtol=1e-12,
                               atol=1e-12)
