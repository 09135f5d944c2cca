"""Parameters, FLOPs, compile time, latency, throughput and training-step time of SVR-Hand and
MVR-Hand on the current JAX backend (CPU or GPU, unchanged).

Usage:
  python scripts/efficiency.py [--variant official] [--models svr,mvr] [--batch 32]
      [--latency-batch 1] [--repeats 5] [--warmup 2] [--dtype float32] [--precision default]
      [--no-train] [--profile] [--topology assets.npz] [--json out.json]

For each model: the parameter count (``jax.eval_shape``, nothing compiled), the FLOPs of one
forward call from XLA's cost analysis of the compiled executable (XLA counts a multiply-add as 2
FLOPs; the official PyTorch SVR is 3.262 GFLOP = 1.631 GMAC per image, docs/architecture.md#parameter-counts),
the lowering and compile times (separately, per batch size), the steady-state forward latency at
``--latency-batch`` and the throughput at ``--batch`` images. Batches count images: the MVR runs
``batch // num_views`` frames of ``num_views`` views (at least one frame), and reports images/s
and frames/s. The SVR training step (unless ``--no-train``) is the official benchmark's: train-mode
forward, L1 losses on the vertices, joints (canonical and rotated) and 2D joints plus the MSE on
the rotation matrix, backward, Adam; batch ``--batch``, the state donated.

Every time is the median over ``--repeats`` calls after ``--warmup`` untimed calls, with
``block_until_ready``. The load average is printed before and after: on a shared machine, wall
times grow with the other load. ``--profile`` times the official SVR's blocks as separately jitted
sub-networks (backbone; orientation encoder = both residual mappings + dense_stack3; orientation
head = OFE attention + regressor; shape branch = lifting + spiral decoder + joint regressor) at
both batch sizes, and checks that chaining them reproduces the full model's outputs.

Weights are random (He-scaled, so activations are O(1) as in a trained model; tiny activations
could hit slow denormal arithmetic on a CPU). The mesh is the built-in SynthHand hierarchy
(778 ... 49 vertices, as MANO's) unless ``--topology`` names a topology .npz.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from simajax import geometry
from simajax import model_setup
from simajax.mesh import MeshTopology
from simajax.models import backbone as backbone_lib
from simajax.models import build_mvr, build_svr, mvr_config, svr_config
from simajax.models.lifting import Lifting
from simajax.models.orientation import ResidualMapping, RotationRegressor
from simajax.models.spiral import SpiralDecoder
from simajax.models.svr import to_tokens

OFFICIAL_TORCH_GFLOP_PER_IMAGE = 3.262


def load_average() -> float:
  return os.getloadavg()[0]


def count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def random_variables(abstract, topology: MeshTopology, seed: int = 0):
  """He-normal kernels, zero biases, unit BN statistics; the fixed-init parameters as the model's."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "mano_joint_reg":
      return np.asarray(topology.joint_regressor, np.float32)
    if name == "upsample":
      return np.full(leaf.shape, 1.0 / leaf.shape[1], np.float32)
    if name in ("scale", "var"):
      return np.ones(leaf.shape, np.float32)
    if name in ("bias", "mean"):
      return np.zeros(leaf.shape, np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape).astype(np.float32)

  return jax.device_put(jax.tree_util.tree_map_with_path(draw, abstract))


def flops_of(compiled) -> float | None:
  """Total FLOPs of a compiled executable from XLA's cost analysis (None if unavailable)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def compile_timed(fn: Callable, *args, donate_argnums=()) -> tuple[Any, dict[str, float]]:
  """jit + lower + compile, timed separately. Returns (compiled, {'lower_s', 'compile_s'})."""
  start = time.perf_counter()
  lowered = jax.jit(fn, donate_argnums=donate_argnums).lower(*args)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  done = time.perf_counter()
  return compiled, {"lower_s": lowered_at - start, "compile_s": done - lowered_at}


def median_time(call: Callable[[], Any], repeats: int, warmup: int) -> dict[str, float]:
  """Median wall time of ``call()`` (blocked until ready) after ``warmup`` untimed calls.

  Also the median process CPU time (all threads): on a shared machine it grows less with the
  other load than the wall time does, so it compares runs made under different loads better.
  """
  for _ in range(warmup):
    jax.block_until_ready(call())
  times, cpu_times = [], []
  for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "cpu_median_s": statistics.median(cpu_times)}


def svr_inputs(batch: int, size: int, dtype, seed: int = 1):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.random((batch, size, size, 3), np.float32), dtype),)


def mvr_inputs(frames: int, views: int, size: int, dtype, seed: int = 1):
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.random((frames, views, size, size, 3), np.float32), dtype)
  return images, jnp.ones((frames, views), bool)


def bench_forward(model, variables, inputs, images_per_call: int, args) -> dict[str, Any]:
  """Compile and time one eval-mode forward call on ``inputs``."""

  def forward(v, *x):
    return model.apply(v, *x, train=False)[0]

  compiled, times = compile_timed(forward, variables, *inputs)
  flops = flops_of(compiled)
  timing = median_time(lambda: compiled(variables, *inputs), args.repeats, args.warmup)
  return {**times, **timing, "images": images_per_call,
          "ms_per_image": 1e3 * timing["median_s"] / images_per_call,
          "images_per_s": images_per_call / timing["median_s"],
          "gflop_per_image": None if flops is None else flops / images_per_call / 1e9}


def svr_train_step_bench(model, variables, batch: int, args, dtype) -> dict[str, Any]:
  """Time the SVR training step: forward (train mode) + L1/MSE losses + backward + Adam."""
  size = model.input_size
  (images,) = svr_inputs(batch, size, dtype, seed=2)
  rng = np.random.default_rng(3)
  num_joints = model.joint_regressor.shape[0]
  num_verts = model.joint_regressor.shape[1]
  gt = {"verts_canonical": rng.normal(0, 0.05, (batch, num_verts, 3)),
        "joints_canonical": rng.normal(0, 0.05, (batch, num_joints, 3)),
        "verts_rotated": rng.normal(0, 0.05, (batch, num_verts, 3)),
        "joints_rotated": rng.normal(0, 0.05, (batch, num_joints, 3)),
        "joints_2d": rng.random((batch, num_joints, 2)),
        "rotation": geometry.axis_angle_to_matrix(rng.normal(0, 1, (batch, 3)))}
  gt = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), gt)
  tx = optax.adam(1e-3)

  def loss_fn(params, stats, key):
    (out, _), updates = model.apply({"params": params, "batch_stats": stats}, images, train=True,
                                    mutable=["batch_stats"], rngs={"dropout": key})
    loss = sum(jnp.mean(jnp.abs(out[k].astype(jnp.float32) - gt[k]))
               for k in gt if k != "rotation")
    loss += jnp.mean(jnp.square(out["rotation"].astype(jnp.float32) - gt["rotation"]))
    return loss, updates["batch_stats"]

  def train_step(state):
    key = jax.random.fold_in(jax.random.key(0), state["step"])
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], state["batch_stats"], key)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
            "batch_stats": stats, "opt_state": opt_state}, loss

  state = {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
           "batch_stats": variables["batch_stats"], "opt_state": tx.init(variables["params"])}
  state = jax.tree.map(jnp.copy, state)  # the step donates its input state
  compiled, times = compile_timed(train_step, state, donate_argnums=(0,))
  flops = flops_of(compiled)
  holder = {"state": state}

  def call():
    holder["state"], loss = compiled(holder["state"])
    return loss

  timing = median_time(call, args.repeats, args.warmup)
  loss = float(call())
  if not np.isfinite(loss):
    raise FloatingPointError(f"the SVR training step gave a non-finite loss {loss}")
  return {**times, **timing, "images": batch, "ms_per_image": 1e3 * timing["median_s"] / batch,
          "gflop_per_image": None if flops is None else flops / batch / 1e9}


def svr_blocks(model) -> dict[str, Callable]:
  """The SVR's blocks as functions of (variables, inputs), wired as ``SVRHand.__call__``."""
  backbone = backbone_lib.Backbone(
      model.stem_channels, model.pre_channels, model.base_channels, model.hourglass_out,
      model.latent_channels, tuple(model.uv_hidden), model.joint_regressor.shape[0],
      model.se_max_hidden)
  shared_mapping = ResidualMapping()
  j_mapping = ResidualMapping()
  encoder = backbone_lib.DenseStack(model.hourglass_out, backbone_lib.ENCODER, model.se_max_hidden)
  head = RotationRegressor(tuple(model.rot_conv_channels), tuple(model.rot_pre_channels),
                           tuple(model.rot_fc_channels), model.use_ofe, model.attention_heads,
                           model.attention_head_dim, model.attention_dropout)
  lifting = Lifting(model.up_matrices[-1].shape[1])
  decoder = SpiralDecoder(tuple(model.decoder_channels), tuple(model.up_matrices),
                          tuple(model.spirals), model.spiral_impl)

  def sub(v, name):
    return {c: v[c][name] for c in v if name in v[c]}

  def run_backbone(v, images):
    feats, _ = backbone.apply(sub(v, "backbone"), images, False)
    return feats

  def run_encoder(v, f_i, j_latent):
    shared, _ = shared_mapping.apply(sub(v, "shared_encoding_mapping"), f_i, False)
    f_o = encoder.apply(sub(v, "dense_stack3"), shared, False)
    f_j = j_mapping.apply(sub(v, "j_latent_mapping"), j_latent, False)[0] if model.use_ofe else None
    return f_o, f_j

  def run_head(v, f_o, f_j):
    rot6d, _ = head.apply(sub(v, "rot_reg"), None if f_j is None else to_tokens(f_j),
                          to_tokens(f_o), False)
    return rot6d, geometry.rot6d_to_matrix(rot6d)

  def run_shape(v, latent, uv):
    f_v, _ = lifting.apply(sub(v, "lifting"), latent, uv)
    verts, _ = decoder.apply(sub(v, "decoder3d"), f_v)
    joints = jnp.einsum("jv,bvc->bjc", v["params"]["mano_joint_reg"].astype(verts.dtype), verts)
    return verts, joints

  return {"backbone": run_backbone, "orientation_encoder": run_encoder,
          "orientation_head": run_head, "shape_branch": run_shape}


def profile_svr(model, variables, batch: int, args, dtype) -> dict[str, Any]:
  """Times the SVR's blocks at one batch size and checks that they chain to the full model."""
  blocks = svr_blocks(model)
  (images,) = svr_inputs(batch, model.input_size, dtype)
  full, mids = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  block_inputs = {
      "backbone": (images,),
      "orientation_encoder": (mids["image_feature_f_i"], mids["joint_feature_j_latent"]),
      "orientation_head": (mids["orientation_feature_f_o"], mids.get("joint_feature_f_j")),
      "shape_branch": (mids["latent"], mids["uv_raw"])}
  result, block_outputs = {}, {}
  for name, fn in blocks.items():
    compiled, times = compile_timed(fn, variables, *block_inputs[name])
    block_outputs[name] = compiled(variables, *block_inputs[name])
    timing = median_time(lambda c=compiled, x=block_inputs[name]: c(variables, *x),
                         args.repeats, args.warmup)
    flops = flops_of(compiled)
    result[name] = {**times, **timing,
                    "gflop_per_image": None if flops is None else flops / batch / 1e9}
  # Each block, fed the full model's intermediates, must give the full model's results.
  chained = {"uv_raw": block_outputs["backbone"].uv,
             "orientation_feature_f_o": block_outputs["orientation_encoder"][0],
             "rotation_6d": block_outputs["orientation_head"][0],
             "verts_canonical": block_outputs["shape_branch"][0]}
  reference = {**mids, **full}
  result["chain_max_abs_diff"] = {k: float(jnp.max(jnp.abs(v - reference[k])))
                                  for k, v in chained.items()}
  return result


def load_topology(path: str | None) -> MeshTopology:
  if path:
    return MeshTopology.load(path)
  return model_setup.load_topology(ml_collections.ConfigDict({"topology": None,
                                                              "hand_model": None}))


def fmt_ms(seconds: float) -> str:
  return f"{1e3 * seconds:9.1f} ms"


def report_forward(label: str, r: dict[str, Any], frames: int | None = None) -> None:
  gflop = "n/a" if r["gflop_per_image"] is None else f"{r['gflop_per_image']:.3f}"
  extra = f", {frames / r['median_s']:.2f} frames/s" if frames else ""
  print(f"  {label:<22}{fmt_ms(r['median_s'])} per call (min {1e3 * r['min_s']:.1f}, "
        f"max {1e3 * r['max_s']:.1f}, CPU {1e3 * r['cpu_median_s']:.1f}); "
        f"{r['ms_per_image']:.1f} ms/image, "
        f"{r['images_per_s']:.1f} images/s{extra}; {gflop} GFLOP/image; "
        f"lower {r['lower_s']:.1f} s + compile {r['compile_s']:.1f} s")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="official", choices=("official", "small", "tiny"))
  parser.add_argument("--models", default="svr,mvr", help="comma-separated: svr, mvr")
  parser.add_argument("--batch", type=int, default=32, help="images per throughput/train call")
  parser.add_argument("--latency-batch", type=int, default=1, help="images per latency call "
                      "(the MVR uses one frame)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                      help="activation dtype (weights stay float32 and are cast per layer)")
  parser.add_argument("--precision", default="default", choices=("default", "high", "highest"),
                      help="jax_default_matmul_precision (matters on GPU/TPU)")
  parser.add_argument("--no-ofe", action="store_true", help="the SVR without OFE")
  parser.add_argument("--no-train", action="store_true", help="skip the SVR training step")
  parser.add_argument("--profile", action="store_true", help="time the SVR's blocks")
  parser.add_argument("--topology", default=None, help="a topology .npz (default: SynthHand)")
  parser.add_argument("--json", default=None, help="also write the results to this file")
  args = parser.parse_args()
  models = [m.strip() for m in args.models.split(",") if m.strip()]
  if not set(models) <= {"svr", "mvr"}:
    parser.error(f"--models must list svr and/or mvr, got {args.models!r}")
  dtype = jnp.dtype(args.dtype)
  if args.precision != "default":
    jax.config.update("jax_default_matmul_precision", args.precision)

  device = jax.devices()[0]
  env = {"jax": jax.__version__, "backend": jax.default_backend(),
         "device": getattr(device, "device_kind", str(device)), "num_devices": jax.device_count(),
         "cpu_count": os.cpu_count(), "machine": platform.machine(),
         "xla_flags": os.environ.get("XLA_FLAGS", ""), "variant": args.variant,
         "dtype": args.dtype, "precision": args.precision, "batch": args.batch,
         "latency_batch": args.latency_batch, "repeats": args.repeats, "warmup": args.warmup,
         "load_average_start": load_average()}
  print(f"jax {env['jax']} on {env['backend']} ({env['device']}), {env['cpu_count']} CPUs, "
        f"load average {env['load_average_start']:.2f}; variant {args.variant}, {args.dtype}, "
        f"precision {args.precision}; median of {args.repeats} after {args.warmup} warm-up calls")
  topology = load_topology(args.topology)
  results: dict[str, Any] = {"env": env}

  if "svr" in models:
    config = svr_config(args.variant)
    config.use_ofe = not args.no_ofe
    model = build_svr(config, topology)
    size = model.input_size
    abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)},
                                                 jnp.zeros((1, size, size, 3)), train=False))
    variables = random_variables(abstract, topology)
    r = {"params": count(abstract["params"]), "use_ofe": model.use_ofe}
    print(f"SVR ({args.variant}{'' if model.use_ofe else ', no OFE'}): {r['params']:,} parameters")
    r["latency"] = bench_forward(model, variables, svr_inputs(args.latency_batch, size, dtype),
                                 args.latency_batch, args)
    report_forward(f"forward, batch {args.latency_batch}", r["latency"])
    r["throughput"] = bench_forward(model, variables, svr_inputs(args.batch, size, dtype),
                                    args.batch, args)
    report_forward(f"forward, batch {args.batch}", r["throughput"])
    if not args.no_train:
      t = svr_train_step_bench(model, variables, args.batch, args, dtype)
      r["train_step"] = t
      gflop = "n/a" if t["gflop_per_image"] is None else f"{t['gflop_per_image']:.3f}"
      print(f"  {'train step, batch ' + str(args.batch):<22}{fmt_ms(t['median_s'])} per step "
            f"(min {1e3 * t['min_s']:.1f}, max {1e3 * t['max_s']:.1f}, "
            f"CPU {1e3 * t['cpu_median_s']:.1f}); "
            f"{t['ms_per_image']:.1f} ms/image; {gflop} GFLOP/image; "
            f"lower {t['lower_s']:.1f} s + compile {t['compile_s']:.1f} s")
    if args.profile:
      r["profile"] = {}
      for batch in sorted({args.latency_batch, args.batch}):
        p = profile_svr(model, variables, batch, args, dtype)
        r["profile"][f"batch_{batch}"] = p
        total = sum(p[name]["median_s"] for name in svr_blocks(model))
        print(f"  blocks at batch {batch} (jitted separately; sum {1e3 * total:.1f} ms; chained "
              f"outputs differ from the full model by {p['chain_max_abs_diff']}):")
        for name in svr_blocks(model):
          b = p[name]
          gflop = "n/a" if b["gflop_per_image"] is None else f"{b['gflop_per_image']:.3f}"
          print(f"    {name:<20}{fmt_ms(b['median_s'])} ({100 * b['median_s'] / total:4.1f} %, "
                f"CPU {1e3 * b['cpu_median_s']:.1f} ms), "
                f"{gflop} GFLOP/image, compile {b['compile_s']:.1f} s")
    results["svr"] = r

  if "mvr" in models:
    model = build_mvr(mvr_config(args.variant), topology)
    size, views = model.input_size, model.num_views
    abstract = jax.eval_shape(lambda: model.init(
        {"params": jax.random.key(0)}, jnp.zeros((1, views, size, size, 3)),
        jnp.ones((1, views), bool), train=False))
    variables = random_variables(abstract, topology)
    r = {"params": count(abstract["params"]), "num_views": views}
    print(f"MVR ({args.variant}, {views} views): {r['params']:,} parameters")
    frames = max(1, args.batch // views)
    r["latency"] = bench_forward(model, variables, mvr_inputs(1, views, size, dtype), views, args)
    report_forward("forward, 1 frame", r["latency"], frames=1)
    r["throughput"] = bench_forward(model, variables, mvr_inputs(frames, views, size, dtype),
                                    frames * views, args)
    report_forward(f"forward, {frames} frames", r["throughput"], frames=frames)
    results["mvr"] = r

  env["load_average_end"] = load_average()
  print(f"load average at the end: {env['load_average_end']:.2f}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
