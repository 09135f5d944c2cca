"""simajax against the official PyTorch SVRHand on this machine, side by side, one table.

Usage:
  python scripts/bench_vs_pytorch.py [--rounds 3] [--workloads eval1,eval32,train32]
      [--torch-python PY] [--sima-dir DIR] [--torch-reference DIR] [--json-lines OUT.jsonl]

Workloads (official width, float32, random 128 px images):
  eval1    inference, batch 1
  eval32   inference, batch 32
  train32  one training step, batch 32. simajax: its own SVR step (every loss term of the
           official recipe, gradient clipping, Adam, state donated; ``bench_train_step.py``).
           torch: the harness's step (L1 on the rotated vertices, joints and 2D joints, backward,
           Adam), which does less work than ours.

Every measurement runs in its own process, and the rounds alternate the implementations, so slow
drift of the machine hits both sides alike; the table gives each side's median over the rounds and
the spread of the round medians. Sides:
  torch        the official code as released (NCHW, glibc's allocator);
  torch tuned  the allocator env of docs/architecture.md#performance-notes, and channels_last for eval32
               (the faster of the memory formats there);
  simajax      the CLIs' settings (``simajax.runtime.configure_allocator``).

The torch side needs torch 2.13.0 (CPU build) in ``--torch-python`` (default ``$TORCH_PYTHON``)
and a checkout of the official code (github: JoyboyWang/SiMA-Hand_Pytorch, its ``common``,
``data_loader``, ``experiment`` and ``model`` folders) at ``--sima-dir`` (default ``$SIMA_DIR``),
run through the harness in ``../shared/torch_reference`` (DEVELOPERS.md). Without them the
simajax half runs alone, and the script says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKLOADS = ("eval1", "eval32", "train32")
TORCH_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296",
                       "MALLOC_TRIM_THRESHOLD_": "68719476736",
                       "MALLOC_TOP_PAD_": "1073741824"}


def simajax_worker(mode: str, repeats: int | None) -> dict:
  """Times one simajax workload in this process; returns the result row."""
  if mode == "train32":
    import bench_train_step  # pylint: disable=import-outside-toplevel
    out = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
    bench_train_step.main(["--stage", "svr", "--variant", "official", "--config", "official",
                           "--batch", "32", "--steps", str(repeats or 7), "--json-line", out])
    with open(out, encoding="utf-8") as f:
      r = json.loads(f.readlines()[-1])
    os.unlink(out)
    return {"median_ms": r["median_ms"], "min_ms": r["min_ms"], "max_ms": r["max_ms"],
            "minflt_per_call": r["minflt_per_step"], "compile_s": r["lower_s"] + r["compile_s"]}
  from simajax import runtime  # pylint: disable=import-outside-toplevel
  runtime.configure_allocator()
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import efficiency  # pylint: disable=import-outside-toplevel
  from simajax.models import build_svr, svr_config  # pylint: disable=import-outside-toplevel

  batch = 1 if mode == "eval1" else 32
  repeats = repeats or (30 if batch == 1 else 9)
  topology = efficiency.load_topology(None)
  model = build_svr(svr_config("official"), topology)
  size = model.input_size
  abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)},
                                               jax.numpy.zeros((1, size, size, 3)), train=False))
  variables = efficiency.random_variables(abstract, topology)
  (images,) = efficiency.svr_inputs(batch, size, np.float32)
  start = time.perf_counter()
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False)[0]).lower(variables, images).compile()
  compile_s = time.perf_counter() - start
  for _ in range(5 if batch == 1 else 3):
    jax.block_until_ready(forward(variables, images))
  times = []
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(repeats):
    begin = time.perf_counter()
    jax.block_until_ready(forward(variables, images))
    times.append(time.perf_counter() - begin)
  faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats
  return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
          "max_ms": 1e3 * max(times), "minflt_per_call": faults, "compile_s": compile_s}


def run_simajax(mode: str, repeats: int | None) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode]
  if repeats:
    cmd += ["--repeats", str(repeats)]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
  return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def run_torch(mode: str, tuned: bool, args) -> dict:
  torch_mode = {"eval1": "eval1", "eval32": "cl32" if tuned else "eval32",
                "train32": "train32"}[mode]
  env = dict(os.environ, SIMA_DIR=args.sima_dir)
  if tuned:
    env.update(TORCH_ALLOCATOR_ENV)
  cmd = [args.torch_python, os.path.join(args.torch_reference, "torch_bench.py"),
         "--mode", torch_mode]
  if args.repeats:
    cmd += ["--repeats", str(args.repeats)]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
  r = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
  return {"median_ms": r["median_ms"], "min_ms": r["min_ms"], "max_ms": r["max_ms"],
          "minflt_per_call": r["minflt_per_call"], "torch_mode": torch_mode}


def torch_available(args) -> str | None:
  """None when the torch side can run, else the reason it cannot."""
  if not args.torch_python or not os.path.exists(args.torch_python):
    return "no torch Python (--torch-python or $TORCH_PYTHON)"
  if not args.sima_dir or not os.path.isdir(os.path.join(args.sima_dir, "model")):
    return "no checkout of the official code (--sima-dir or $SIMA_DIR)"
  if not os.path.exists(os.path.join(args.torch_reference, "torch_bench.py")):
    return f"no torch harness at {args.torch_reference}"
  check = subprocess.run([args.torch_python, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
  if check.returncode or not check.stdout.startswith("2.13.0"):
    return f"{args.torch_python} has no torch 2.13.0 ({check.stdout.strip() or check.stderr[-200:]})"
  return None


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--workloads", default=",".join(WORKLOADS))
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed calls per process (default: the harness's, 30/9/7)")
  parser.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"))
  parser.add_argument("--sima-dir", default=os.environ.get("SIMA_DIR"))
  parser.add_argument("--torch-reference",
                      default=os.path.join(REPO, "..", "shared", "torch_reference"))
  parser.add_argument("--json-lines", default=None, help="append every measurement here")
  parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    print(json.dumps(simajax_worker(args.worker, args.repeats)), flush=True)
    return
  workloads = [w for w in args.workloads.split(",") if w]
  unknown = sorted(set(workloads) - set(WORKLOADS))
  if unknown:
    parser.error(f"unknown workloads {unknown}; expected some of {WORKLOADS}")
  reason = torch_available(args)
  sides = ["simajax"] if reason else ["torch", "torch tuned", "simajax"]
  if reason:
    print(f"torch side skipped: {reason}. Timing simajax alone.", flush=True)
  print(f"{args.rounds} rounds, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
  results = {(w, s): [] for w in workloads for s in sides}
  for r in range(args.rounds):
    for w in workloads:
      # Alternate which side goes first, so neither always runs on a warmer machine.
      order = sides if r % 2 == 0 else sides[::-1]
      for side in order:
        row = (run_simajax(w, args.repeats) if side == "simajax"
               else run_torch(w, side == "torch tuned", args))
        row.update(round=r, workload=w, side=side, load1=os.getloadavg()[0])
        results[(w, side)].append(row)
        print(f"  round {r} {w:8s} {side:12s} {row['median_ms']:9.1f} ms "
              f"({row['minflt_per_call']:,.0f} page faults/call, load {row['load1']:.1f})",
              flush=True)
        if args.json_lines:
          with open(args.json_lines, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

  def cell(w, s):
    medians = [row["median_ms"] for row in results[(w, s)]]
    return statistics.median(medians), min(medians), max(medians)

  header = "| workload | " + " | ".join(sides) + (" | simajax / torch | simajax / torch tuned |"
                                                   if len(sides) > 1 else " |")
  print("\nmedian of the round medians (range of the round medians), ms per call\n")
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for w in workloads:
    cells = [cell(w, s) for s in sides]
    line = f"| {w} | " + " | ".join(f"{m:,.1f} ({lo:,.0f}–{hi:,.0f})" for m, lo, hi in cells)
    if len(sides) > 1:
      line += f" | {cells[2][0] / cells[0][0]:.2f}× | {cells[2][0] / cells[1][0]:.2f}×"
    print(line + " |")
  print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  sys.path.insert(0, HERE)
  main()
