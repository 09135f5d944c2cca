"""Times the evaluation metrics on a Dex-YCB-sized chunk of random predictions.

Usage:
  python scripts/bench_metrics.py [--num 10000] [--batch-size 256] [--repeats 2]

Prints the compile time of the jitted per-batch metrics (lowering + XLA compilation, measured
separately), then the wall time of `simajax.evaluate.score_predictions` on ``--num`` examples of
778 vertices (all metrics, both occlusion subsets, PCK histograms), split into the jitted metrics
alone and the full pipeline with the host-side accumulator. The process CPU time (all threads) and
the load average are printed too: on a shared machine, wall times grow with the other load.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from simajax import evaluate
from simajax import metrics


def make_data(num: int, seed: int = 0):
  """Random hands: GT around 0.6 m depth, predictions a few mm off, with a global offset."""
  rng = np.random.default_rng(seed)
  centre = np.array([0.0, 0.0, 0.6])
  gt_verts = rng.normal(scale=0.04, size=(num, 778, 3)) + centre
  gt_joints = rng.normal(scale=0.04, size=(num, 21, 3)) + centre
  pred_verts = gt_verts + rng.normal(scale=0.006, size=gt_verts.shape) + 0.01
  pred_joints = gt_joints + rng.normal(scale=0.006, size=gt_joints.shape) + 0.01
  visibility = rng.uniform(-0.2, 1.0, size=num)
  cast = lambda a: a.astype(np.float32)
  return cast(pred_joints), cast(pred_verts), cast(gt_joints), cast(gt_verts), visibility


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num", type=int, default=10000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()

  pj, pv, gj, gv, vis = make_data(args.num)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {args.num} examples, "
        f"batch {args.batch_size}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

  scorer = metrics.per_example_metrics_jit  # what score_predictions calls per batch
  shapes = [jax.ShapeDtypeStruct((args.batch_size,) + a.shape[1:], a.dtype)
            for a in (pj, pv, gj, gv)]
  start = time.perf_counter()
  scorer.lower(*shapes).compile()
  print(f"compile (lower + XLA compile of the per-batch metrics): "
        f"{time.perf_counter() - start:.2f} s")
  # Warm the jit dispatch cache, so the timings below exclude compilation.
  jax.block_until_ready(scorer(*(a[:args.batch_size] for a in (pj, pv, gj, gv))))

  for repeat in range(args.repeats):
    start = time.perf_counter()
    for s in range(0, args.num - args.batch_size + 1, args.batch_size):
      jax.block_until_ready(scorer(*(a[s:s + args.batch_size] for a in (pj, pv, gj, gv))))
    full_batches = args.num // args.batch_size
    metrics_only = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    results = evaluate.score_predictions(pj, pv, gj, gv, vis, batch_size=args.batch_size)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"run {repeat}: jitted metrics alone on {full_batches * args.batch_size} examples "
          f"{metrics_only:.2f} s; score_predictions on {args.num} (with accumulator) {total:.2f} s "
          f"wall = {total / args.num * 1e3:.3f} ms per example, {cpu:.2f} s CPU; "
          f"load average {os.getloadavg()[0]:.1f}")
  overall = results["metrics"]["overall"]
  assert overall["count"] == args.num
  print("counts:", {g: results["metrics"][g]["count"] for g in metrics.GROUPS},
        "unknown:", results["unknown_visibility"])
  print("overall:", " ".join(f"{k}={overall[k]:.4f}" for k in metrics.METRIC_NAMES))


if __name__ == "__main__":
  main()
