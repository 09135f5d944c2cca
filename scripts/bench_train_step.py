"""Times the real training step of one stage, with its FLOP rate, memory traffic and page faults.

Usage:
  python scripts/bench_train_step.py --stage sima --variant tiny [--batch 32] [--steps 10]
      [--opt-level N] [--compute-dtype bfloat16] [--profile [--top 30]] [--json-line OUT.jsonl]
      [--tag TAG]

The step is the trainer's own (``simajax.training.steps.make_train_step``, jitted with the state
donated), built from the config the trainer would use: ``--config synthetic`` (the quickstart's and
``configs/*_synthetic.py``'s recipe) or ``--config official`` (the Dex-YCB recipe). Stages:

* ``svr``: the plain SVR on single-view batches of ``--batch`` images;
* ``sima``: the SVR with SiMA distillation, on multi-view batches of ``--batch / 8`` frames, plus
  the frozen MVR teacher's forward pass (randomly initialised; its cost does not depend on its
  weights);
* ``mvr``: the MVR teacher, on ``--batch / 8`` frames.

It prints (and with ``--json-line`` appends as one JSON object) the lowering and compile times,
the median wall and CPU time of ``--steps`` steps after two warm-up steps, XLA's cost analysis of
the compiled step (FLOPs and bytes accessed, from which the achieved GFLOP/s and GB/s), and the
process's minor page faults per step (fresh memory pages the step touched). ``--profile`` records
a ``jax.profiler`` trace of three steps and prints the XLA kernels that took the most thread time,
grouped by kernel name, with their share.

Batches are random (``bench_batches.random_batch``); the loss values do not matter for timing.
The load average is printed: on a shared machine the times grow with the other load.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--stage", default="svr", choices=("svr", "sima", "mvr"))
  parser.add_argument("--variant", default="official", choices=("official", "small", "tiny"))
  parser.add_argument("--config", default="synthetic", choices=("synthetic", "official"),
                      help="the recipe: synthetic (quickstart) or official (Dex-YCB)")
  parser.add_argument("--batch", type=int, default=32, help="images per step")
  parser.add_argument("--steps", type=int, default=10, help="timed steps")
  parser.add_argument("--opt-level", type=int, default=None,
                      help="XLA backend optimisation level (default: XLA's)")
  parser.add_argument("--profile", action="store_true", help="trace 3 steps, print top kernels")
  parser.add_argument("--top", type=int, default=30)
  parser.add_argument("--hlo-out", default=None, help="write the optimized HLO text here")
  parser.add_argument("--json-line", default=None, help="append the result to this file")
  parser.add_argument("--tag", default="", help="a label stored with the result")
  parser.add_argument("--image-size", type=int, default=None,
                      help="input side (data.image_size and model.input_size); default: the config's")
  parser.add_argument("--compute-dtype", default="float32", choices=("float32", "bfloat16"),
                      help="model.compute_dtype: activation dtype (parameters stay float32)")
  parser.add_argument("--allocator", default="tuned", choices=("tuned", "glibc"),
                      help="tuned: simajax.runtime.configure_allocator, as the CLIs; glibc: as is")
  return parser.parse_args(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  from simajax import runtime  # pylint: disable=import-outside-toplevel
  if args.allocator == "tuned" and not runtime.configure_allocator():
    raise SystemExit("could not tune the allocator (not glibc?): use --allocator glibc")
  if args.opt_level is not None:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_backend_optimization_level")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_backend_optimization_level={args.opt_level}"])
  # JAX reads XLA_FLAGS when its backend starts, so everything JAX-related is imported here.
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  import bench_batches  # pylint: disable=import-outside-toplevel
  from simajax import config_lib, model_setup, train  # pylint: disable=import-outside-toplevel
  from simajax.training import optim, steps  # pylint: disable=import-outside-toplevel

  model_stage = "mvr" if args.stage == "mvr" else "svr"
  multi_view = args.stage != "svr"

  def recipe(stage):
    """configs/<stage>_synthetic.py, or the official recipe (without the MANO hand model)."""
    if args.config == "synthetic":
      return config_lib.load_config(
          config_lib.config_file(f"{stage}_synthetic.py") + f":variant={args.variant}")
    return config_lib.base_config(stage, "dexycb", variant=args.variant)

  config = recipe(model_stage)
  config.distill.enabled = args.stage == "sima"
  if args.image_size:
    config.data.image_size = config.model.input_size = args.image_size
  config.model.compute_dtype = args.compute_dtype
  topology = model_setup.load_topology(config)
  model = model_setup.build_model(config, topology)
  tx, schedule = optim.make_optimizer(config, args.batch, steps_per_epoch=1000)
  teacher = teacher_variables = None
  if args.stage == "sima":
    teacher_config = recipe("mvr")
    teacher_config.model.input_size = config.model.input_size
    teacher_config.model.compute_dtype = args.compute_dtype
    teacher = model_setup.build_model(teacher_config, topology)
    teacher_variables = jax.jit(lambda: steps.init_state(
        teacher, tx, 1, *model_setup.input_shapes("mvr", config.data.image_size)))()
    teacher_variables = {"params": teacher_variables["params"],
                         "batch_stats": teacher_variables["batch_stats"]}
  step_fn = steps.make_train_step(
      stage=model_stage, model=model, tx=tx, faces=jnp.asarray(topology.faces[0], jnp.int32),
      loss_weights=train.loss_weights(config, args.stage == "sima"), multi_view=multi_view,
      schedule=schedule, teacher=teacher)
  batch = {k: jnp.asarray(x) for k, x in bench_batches.random_batch(
      topology, args.batch, config.data.image_size, multi_view=multi_view, seed=0).items()}
  state = jax.jit(lambda: steps.init_state(
      model, tx, 0, *model_setup.input_shapes(model_stage, config.data.image_size)))()

  load_start = os.getloadavg()[0]
  start = time.perf_counter()
  lowered = jax.jit(step_fn, donate_argnums=(0,)).lower(state, batch, teacher_variables)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  compiled_at = time.perf_counter()
  if args.hlo_out:
    with open(args.hlo_out, "w", encoding="utf-8") as f:
      f.write(compiled.as_text())
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  cost = cost or {}

  def run(n):
    nonlocal state
    for _ in range(n):
      state, step_metrics = compiled(state, batch, teacher_variables)
    jax.block_until_ready(state)
    return step_metrics

  run(2)  # warm-up
  times, cpu_times = [], []
  faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(args.steps):
    begin, cpu_begin = time.perf_counter(), time.process_time()
    step_metrics = run(1)
    times.append(time.perf_counter() - begin)
    cpu_times.append(time.process_time() - cpu_begin)
  faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / args.steps
  loss = float(step_metrics["loss"])
  if not np.isfinite(loss):
    raise FloatingPointError(f"non-finite loss {loss}")
  median = statistics.median(times)
  flops = float(cost.get("flops", float("nan")))
  bytes_accessed = float(cost.get("bytes accessed", float("nan")))
  result = {
      "stage": args.stage, "variant": args.variant, "config": args.config, "batch": args.batch,
      "compute_dtype": args.compute_dtype, "device": jax.devices()[0].device_kind,
      "tag": args.tag, "allocator": args.allocator, "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "lower_s": lowered_at - start, "compile_s": compiled_at - lowered_at,
      "median_ms": 1e3 * median, "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times),
      "cpu_median_ms": 1e3 * statistics.median(cpu_times),
      "gflop_per_step": flops / 1e9, "gb_accessed_per_step": bytes_accessed / 1e9,
      "gflop_per_s": flops / 1e9 / median, "gb_per_s": bytes_accessed / 1e9 / median,
      "minflt_per_step": faults, "load_start": load_start, "load_end": os.getloadavg()[0],
      "times_ms": [round(1e3 * t, 1) for t in times], "jax": jax.__version__}
  print(f"{args.stage} {args.variant} ({args.config} recipe, {args.compute_dtype}), batch "
        f"{args.batch}: step "
        f"{result['median_ms']:.1f} ms median (min {result['min_ms']:.1f}, max "
        f"{result['max_ms']:.1f}, CPU {result['cpu_median_ms']:.1f}); lower "
        f"{result['lower_s']:.1f} s + compile {result['compile_s']:.1f} s; "
        f"{result['gflop_per_step']:.2f} GFLOP/step = {result['gflop_per_s']:.1f} GFLOP/s; "
        f"{result['gb_accessed_per_step']:.2f} GB accessed/step = {result['gb_per_s']:.1f} GB/s; "
        f"{faults:,.0f} minor page faults/step; load {load_start:.1f} -> "
        f"{result['load_end']:.1f}", flush=True)

  if args.profile:
    result["top_kernels"] = profile(compiled, lambda: run(3), args.top)
  if args.json_line:
    with open(args.json_line, "a", encoding="utf-8") as f:
      f.write(json.dumps(result) + "\n")


def profile(compiled, run_three_steps, top: int) -> list[dict]:
  """Traces three steps; prints and returns the kernels with the most thread time.

  Kernels are named by XLA (``fusion.12``); each is also attributed to the model code it came
  from (its ``op_name`` metadata, e.g. ``transpose(jvp(SVRHand))/backbone/.../bn/mul``), and the
  thread time is summed by forward/backward pass and layer type.
  """
  import jax  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    run_three_steps()
    jax.profiler.stop_trace()
    paths = [os.path.join(root, f) for root, _, files in os.walk(trace_dir)
             for f in files if f.endswith(".xplane.pb")]
    with open(paths[0], "rb") as f:
      data = jax.profiler.ProfileData.from_serialized_xspace(f.read())
  totals = collections.Counter()
  counts = collections.Counter()
  # XLA:CPU runs each kernel (thunk) as an event on the client's and Eigen's worker threads.
  for plane in data.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):
        continue
      for event in line.events:
        if event.name.startswith(("ThreadpoolListener", "ThunkExecutor", "end: ")):
          continue
        totals[event.name] += event.duration_ns / 1e6 / 3
        counts[event.name] += 1
  sources = _kernel_sources(compiled.as_text())
  busy = sum(totals.values())
  print(f"\nkernel thread time per step: {busy:.0f} ms over {len(totals)} kernel names "
        f"({sum(counts.values()) / 3:.0f} kernel calls/step)")
  by_layer = collections.Counter()
  for name, ms in totals.items():
    by_layer[_layer_of(sources.get(name, ""))] += ms
  print("by pass and layer:")
  for key, ms in by_layer.most_common(top):
    print(f"  {ms:8.1f} ms {100 * ms / busy:5.1f} %  {key}")
  rows = []
  print("top kernels:")
  for name, ms in totals.most_common(top):
    rows.append({"name": name, "ms_per_step": ms, "calls_per_step": counts[name] / 3,
                 "source": sources.get(name, "")})
    print(f"  {ms:8.1f} ms {100 * ms / busy:5.1f} %  x{counts[name] / 3:5.0f}  {name}  "
          f"{sources.get(name, '')[-90:]}")
  return rows


def _kernel_sources(hlo_text: str) -> dict[str, str]:
  """Instruction name -> its op_name metadata, over the optimized HLO's instructions."""
  sources = {}
  for line in hlo_text.splitlines():
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*op_name=\"([^\"]*)\"", line)
    if match:
      sources.setdefault(match.group(1), match.group(2))
  return sources


def _layer_of(op_name: str) -> str:
  """'bwd bn/mul' for '.../transpose(jvp(SVRHand))/backbone/dense1/conv1/conv1x1/bn/mul'."""
  if not op_name:
    return "? (no source)"
  direction = "bwd" if "transpose(" in op_name else "fwd"
  parts = [p for p in op_name.split("/") if p and not p.startswith(("jit(", "jvp(", "transpose("))]
  layer_types = ("bn", "conv", "linear", "layer_norm", "upsample", "head")
  layer = next((re.sub(r"_\d+$", "", p) for p in reversed(parts[:-1])
                if p.startswith(layer_types) or p.startswith(("conv3x3", "conv1x1", "w_", "fc",
                                                             "senet", "de_layer"))), "")
  return f"{direction} {layer}/{parts[-1] if parts else op_name}"


def _family(name: str) -> str:
  base = name.split(".")[0].rstrip("0123456789_")
  return base or name


if __name__ == "__main__":
  main()
