"""Data-parallel scaling of the training step: step time, images/s and efficiency per device count.

Usage:
  python scripts/scaling.py [--stage svr|sima|mvr] [--variant tiny|small|official]
      [--per-device-batch 8] [--devices 1,2,4,8] [--steps 5] [--model-axis 1]
      [--fake-cpu-devices 8] [--json out.json]

Stages: ``svr`` is the plain SVR baseline's step (single-view batches, no teacher); ``sima`` the
SVR step with SiMA distillation from a frozen MVR teacher of the same variant (randomly
initialised here), whose variables are a separate pytree argument of the step as in
``simajax.train``; ``mvr`` the MVR teacher's step. ``sima`` and ``mvr`` read multi-view batches,
so their per-device batch counts images and must be a multiple of 8 (frames of 8 views).

For each device count d (the first d of ``jax.devices()``) the step is set up as the trainer sets
it up: a ``(data, model)`` mesh with a model axis of ``--model-axis``, the state built sharded from
the start (``eval_shape`` -> ``state_shardings`` -> ``jit(init, out_shardings=...)``), the step
jitted with those in/out shardings and the state donated, the global batch (``--per-device-batch``
x d images, random, ``bench_batches.random_batch``) assembled with ``sharding.global_batch``. One
warm-up step is timed on its own (compile + first step), then ``--steps`` steps (median and min
wall time, each up to ``block_until_ready``). images/s = global batch / median step time, and the
efficiency is images/s per device relative to the smallest device count of the run (1 device,
usually): (images/s at d) / (d x images/s at 1 device). With ``--model-axis`` M > 1 every count
must be a multiple of M, the global batch is still ``--per-device-batch`` x d (each data-parallel
group of M devices holds M times the per-device batch), and Adam's moments are kept per tensor
(``optim.flatten=False``) so the model axis can split them.

``--fake-cpu-devices N`` sets ``--xla_force_host_platform_device_count=N`` in XLA_FLAGS before JAX
is imported (other XLA flags are kept), so the mechanics can be checked on a CPU. There all the
"devices" share the same cores: the efficiency only checks the mechanics (expect about 1/d, less
with the collective overhead), not the scaling. On accelerators it is the real scaling run.
The script is single-process: a multi-host run (``jax.distributed``, one process per host) is out
of scope. The load average is printed before and after: on a shared machine, times grow with the
other load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

STAGES = ("svr", "sima", "mvr")
NUM_VIEWS = 8
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--stage", choices=STAGES, default="svr",
                      help="svr: plain SVR; sima: SVR with SiMA distillation from an MVR teacher; "
                      "mvr: the MVR teacher")
  parser.add_argument("--variant", choices=("tiny", "small", "official"), default="official",
                      help="model size")
  parser.add_argument("--per-device-batch", type=int, default=8,
                      help="images per device and step (sima/mvr: a multiple of 8 views)")
  parser.add_argument("--devices", default="1,2,4,8",
                      help="comma-separated device counts, e.g. 1,2,4,8")
  parser.add_argument("--steps", type=int, default=5,
                      help="timed steps per device count (after one warm-up step)")
  parser.add_argument("--model-axis", type=int, default=1,
                      help="model-parallel axis size (must divide every device count)")
  parser.add_argument("--fake-cpu-devices", type=int, default=None,
                      help="create this many CPU devices (XLA_FLAGS, before JAX starts)")
  parser.add_argument("--json", default=None, help="also write the run and its rows here")
  args = parser.parse_args(argv)
  try:
    args.device_counts = parse_device_counts(args.devices)
    check_args(args)
  except ValueError as e:
    parser.error(str(e))
  return args


def parse_device_counts(text: str) -> list[int]:
  """'1,2,4' -> [1, 2, 4] (sorted, distinct, positive)."""
  try:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
  except ValueError as e:
    raise ValueError(f"--devices must be comma-separated integers, got {text!r}") from e
  if not counts or counts[0] < 1:
    raise ValueError(f"--devices must list positive device counts, got {text!r}")
  return counts


def check_args(args: argparse.Namespace) -> None:
  """Rejects batch/device combinations the step cannot run, naming the flag."""
  if args.per_device_batch < 1:
    raise ValueError(f"--per-device-batch must be positive, got {args.per_device_batch}")
  if args.stage != "svr" and args.per_device_batch % NUM_VIEWS:
    raise ValueError(f"--stage {args.stage} reads frames of {NUM_VIEWS} views: "
                     f"--per-device-batch={args.per_device_batch} images is not a multiple "
                     f"of {NUM_VIEWS}")
  if args.steps < 1:
    raise ValueError(f"--steps must be positive, got {args.steps}")
  if args.model_axis < 1:
    raise ValueError(f"--model-axis must be positive, got {args.model_axis}")
  odd = [d for d in args.device_counts if d % args.model_axis]
  if odd:
    raise ValueError(f"--model-axis={args.model_axis} does not divide the device counts {odd}")


def configure_environment(args: argparse.Namespace) -> None:
  """The fake CPU device count; must run before JAX starts its backend."""
  if args.fake_cpu_devices is None:
    return
  if "jax" in sys.modules:
    print("note: JAX was imported before --fake-cpu-devices was applied; it takes effect only "
          "if no JAX backend has started yet", file=sys.stderr)
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith(_DEVICE_COUNT_FLAG)]
  flags.append(f"{_DEVICE_COUNT_FLAG}={args.fake_cpu_devices}")
  os.environ["XLA_FLAGS"] = " ".join(flags)


class Bench:
  """The model, teacher and step builder of one stage; ``run(d)`` times it on d devices."""

  def __init__(self, stage: str, variant: str, model_axis: int):
    # JAX reads XLA_FLAGS when its backend starts, so everything JAX-related is imported here.
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import optax  # pylint: disable=import-outside-toplevel

    from simajax import config_lib, model_setup, train  # pylint: disable=import-outside-toplevel
    from simajax.training import steps  # pylint: disable=import-outside-toplevel

    self.stage = stage
    self.multi_view = stage != "svr"
    self.distill = stage == "sima"
    self.config = config_lib.base_config("mvr" if stage == "mvr" else "svr", "synthetic",
                                         variant)
    self.config.distill.enabled = self.distill
    self.config.data.mode = "multi_view" if self.multi_view else "single_view"
    self.config.mesh.model = model_axis
    # Flattened Adam moments are one vector, which a model axis cannot split.
    self.config.optim.flatten = model_axis == 1
    self.topology = model_setup.load_topology(self.config)
    self.model = model_setup.build_model(self.config, self.topology)
    self.faces = jnp.asarray(self.topology.faces[0], jnp.int32)
    self.loss_weights = train.loss_weights(self.config, self.distill)
    size = self.image_size = self.config.data.image_size
    self.input_shapes = model_setup.input_shapes("mvr" if stage == "mvr" else "svr", size)
    self.teacher, self.teacher_variables = None, None
    if self.distill:
      # A teacher of the same variant (SiMA distils features of equal shapes), initialised as
      # the MVR stage would be; kept on the host like a restored checkpoint, then placed per mesh.
      teacher_config = config_lib.base_config("mvr", "synthetic", variant)
      self.teacher = model_setup.build_model(teacher_config, self.topology, stage="mvr")
      init = jax.jit(lambda: steps.init_state(self.teacher, optax.identity(), teacher_config.seed,
                                              *model_setup.input_shapes("mvr", size)))()
      self.teacher_variables = jax.device_get(
          {"params": init["params"], "batch_stats": init["batch_stats"]})

  def run(self, num_devices: int, per_device_batch: int, num_steps: int) -> dict[str, Any]:
    """Sets the step up on the first ``num_devices`` devices and times it.

    Returns:
      One row: devices, mesh shape, global batch, init / compile+first / median / min step
      seconds, images/s and the last step's loss.

    Raises:
      FloatingPointError: for a non-finite loss.
    """
    import jax  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    import bench_batches  # pylint: disable=import-outside-toplevel
    from simajax.training import optim, sharding, steps  # pylint: disable=import-outside-toplevel

    mesh = sharding.make_mesh(self.config.mesh.model, jax.devices()[:num_devices])
    global_images = per_device_batch * num_devices
    tx, schedule = optim.make_optimizer(self.config, global_images, steps_per_epoch=1000)

    def init_fn():
      return steps.init_state(self.model, tx, self.config.seed, *self.input_shapes)

    begin = time.perf_counter()
    state_shardings = sharding.state_shardings(mesh, jax.eval_shape(init_fn))
    state = jax.jit(init_fn, out_shardings=state_shardings)()
    jax.block_until_ready(state)
    init_s = time.perf_counter() - begin

    teacher_variables, teacher_shardings = None, None
    if self.teacher_variables is not None:
      teacher_shardings = sharding.state_shardings(mesh, self.teacher_variables)
      teacher_variables = jax.device_put(self.teacher_variables, teacher_shardings)
    train_step = jax.jit(
        steps.make_train_step(stage="mvr" if self.stage == "mvr" else "svr", model=self.model,
                              tx=tx, faces=self.faces, loss_weights=self.loss_weights,
                              multi_view=self.multi_view, schedule=schedule,
                              teacher=self.teacher),
        in_shardings=(state_shardings, sharding.batch_sharding(mesh), teacher_shardings),
        out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=(0,))
    batch = sharding.global_batch(
        bench_batches.random_batch(self.topology, global_images, self.image_size,
                                   multi_view=self.multi_view, seed=0), mesh)

    begin = time.perf_counter()
    state, step_metrics = train_step(state, batch, teacher_variables)
    jax.block_until_ready(state)
    first_s = time.perf_counter() - begin
    times = []
    for _ in range(num_steps):
      begin = time.perf_counter()
      state, step_metrics = train_step(state, batch, teacher_variables)
      jax.block_until_ready(state)
      times.append(time.perf_counter() - begin)
    loss = float(step_metrics["loss"])
    if not np.isfinite(loss):
      raise FloatingPointError(f"{self.stage} on {num_devices} devices: non-finite loss {loss}")
    median = statistics.median(times)
    return {"devices": num_devices,
            "mesh": f"{mesh.shape[sharding.DATA_AXIS]}x{mesh.shape[sharding.MODEL_AXIS]}",
            "global_batch": global_images, "init_s": init_s, "compile_first_step_s": first_s,
            "step_median_s": median, "step_min_s": min(times),
            "images_per_s": global_images / median, "loss": loss}


def add_efficiency(rows: list[dict[str, Any]]) -> None:
  """Images/s per device relative to the first (smallest) device count's, in place."""
  base = rows[0]["images_per_s"] / rows[0]["devices"]
  for row in rows:
    row["efficiency"] = row["images_per_s"] / row["devices"] / base


def markdown_table(rows: list[dict[str, Any]]) -> str:
  """The rows as a markdown table."""
  lines = ["| devices | mesh (data x model) | global batch | init s | compile + 1st step s "
           "| step median s | step min s | images/s | efficiency |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['devices']} | {r['mesh']} | {r['global_batch']} | {r['init_s']:.1f} "
                 f"| {r['compile_first_step_s']:.1f} | {r['step_median_s']:.3f} "
                 f"| {r['step_min_s']:.3f} | {r['images_per_s']:.1f} | {r['efficiency']:.2f} |")
  return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
  """Runs the scaling sweep, prints the table and returns its rows.

  Raises:
    ValueError: for bad flags, or more devices asked for than JAX has.
  """
  args = parse_args(argv)
  configure_environment(args)
  import jax  # pylint: disable=import-outside-toplevel

  available = len(jax.devices())
  if args.device_counts[-1] > available:
    hint = (" (on a CPU, add --fake-cpu-devices N to create N devices)"
            if jax.devices()[0].platform == "cpu" else "")
    raise ValueError(f"--devices asks for {args.device_counts[-1]} devices but JAX has "
                     f"{available}{hint}")
  run_info = {
      "stage": args.stage, "variant": args.variant, "per_device_batch": args.per_device_batch,
      "model_axis": args.model_axis, "steps": args.steps, "jax": jax.__version__,
      "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
      "available_devices": available, "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "load_before": os.getloadavg()[0]}
  print(f"stage {args.stage}, variant {args.variant}, {args.per_device_batch} images per device, "
        f"model axis {args.model_axis}; jax {jax.__version__}, {run_info['device_kind']} "
        f"x{available} ({run_info['platform']}), XLA_FLAGS={run_info['xla_flags']!r}, "
        f"load {run_info['load_before']:.1f}", flush=True)
  bench = Bench(args.stage, args.variant, args.model_axis)
  rows = []
  for d in args.device_counts:
    rows.append(bench.run(d, args.per_device_batch, args.steps))
    r = rows[-1]
    print(f"  {d} devices: compile + first step {r['compile_first_step_s']:.1f} s, step median "
          f"{r['step_median_s']:.3f} s, {r['images_per_s']:.1f} images/s, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
  add_efficiency(rows)
  run_info["load_after"] = os.getloadavg()[0]
  print()
  print(markdown_table(rows))
  print(f"\n{args.stage} ({args.variant}), {args.per_device_batch} images per device, "
        f"{run_info['device_kind']} ({run_info['platform']}), jax {jax.__version__}, load average "
        f"{run_info['load_before']:.1f} before, {run_info['load_after']:.1f} after; efficiency "
        f"relative to {rows[0]['devices']} device(s)", flush=True)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"run": run_info, "rows": rows}, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
