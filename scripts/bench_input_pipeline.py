"""Measures training-mode input pipeline throughput (images/s) for several worker counts.

  python scripts/bench_input_pipeline.py --data_dir /tmp/tfds --dataset synthetic_hands/small \
      --workers 0 1 2 --batch_size 32 --steps 30

For each worker count: builds a training iterator (shuffle + scale/rotation/colour augmentation,
crops at --image_size), discards --warmup batches (worker start-up, first reads), then times
--steps batches. Prints images/s (views/s; in multi-view mode also frames/s). Builds the dataset
first when it is missing. Nothing else should run on the machine while measuring.
"""

from __future__ import annotations

import argparse
import sys
import time

from data_pipelines import build
from simajax import input_pipeline


def measure(config: input_pipeline.InputConfig, steps: int, warmup: int) -> float:
  """Seconds per batch of ``config`` after ``warmup`` batches."""
  iterator = input_pipeline.train_iterator(config, process_index=0, process_count=1)
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return (time.perf_counter() - start) / steps


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--dataset", default="synthetic_hands/small")
  parser.add_argument("--mode", default="single_view", choices=input_pipeline.MODES)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--threads", type=int, default=2, help="reader threads when workers = 0")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--warmup", type=int, default=3)
  args = parser.parse_args(argv)

  build.ensure_built(args.dataset, args.data_dir)
  views = 8 if args.mode == "multi_view" else 1
  for workers in args.workers:
    config = input_pipeline.InputConfig(
        dataset=args.dataset, data_dir=args.data_dir, mode=args.mode, batch_size=args.batch_size,
        image_size=args.image_size, num_workers=workers, num_threads=args.threads, prefetch=2)
    seconds = measure(config, args.steps, args.warmup)
    images = args.batch_size * views / seconds
    extra = f", {args.batch_size / seconds:.1f} frames/s" if views > 1 else ""
    print(f"workers={workers} threads={args.threads if workers == 0 else 1}: "
          f"{seconds * 1e3:.1f} ms/batch of {args.batch_size}, {images:.1f} images/s{extra}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
