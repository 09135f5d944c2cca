"""Compile time (and optionally step time) of the SVR training step on the current backend.

Usage:
  python scripts/compile_time.py [--variants tiny,small,official] [--batch 32] [--opt-level 0]
      [--steps 5] [--no-flatten] [--cache DIR]

For each variant: the time to trace and lower ``jax.jit(make_train_step(stage='svr', ...))``
(single-view batches, no teacher: the plain SVR baseline's step; forward in train mode, every
L_Recon term, backward, gradient clipping and Adam, state donated), the time XLA takes to compile
it, and, with ``--steps N``, the median wall time of N steps after one warm-up step.

``--opt-level`` sets ``--xla_backend_optimization_level`` in XLA_FLAGS (before JAX is imported;
the tests use 0); other flags already in XLA_FLAGS are kept. The persistent compilation cache is
off unless ``--cache`` names a directory (then a second run measures a cache hit). The load
average is printed with every line: on a shared machine, times grow with the other load.

Weights are the model's own initialisation; the batch is random images and random labels
(``bench_batches.random_batch``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--variants", default="tiny,small,official",
                      help="comma-separated SVR variants (tiny, small, official)")
  parser.add_argument("--batch", type=int, default=32, help="images per step")
  parser.add_argument("--opt-level", type=int, default=None,
                      help="XLA backend optimisation level (default: XLA's, i.e. 3)")
  parser.add_argument("--steps", type=int, default=0,
                      help="also time this many steps (median, after one warm-up step)")
  parser.add_argument("--no-flatten", action="store_true",
                      help="optim.flatten = False (per-tensor Adam state)")
  parser.add_argument("--cache", default=None, help="persistent compilation cache directory")
  return parser.parse_args(argv)


def configure_environment(args: argparse.Namespace) -> None:
  """XLA flags and the compilation cache; must run before JAX is imported."""
  if args.opt_level is not None:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_backend_optimization_level")]
    flags.append(f"--xla_backend_optimization_level={args.opt_level}")
    os.environ["XLA_FLAGS"] = " ".join(flags)
  if args.cache:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = args.cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  else:
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)


def main(argv=None) -> None:
  args = parse_args(argv)
  configure_environment(args)
  # JAX reads XLA_FLAGS when its backend starts, so everything JAX-related is imported here.
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  import bench_batches  # pylint: disable=import-outside-toplevel
  from simajax import config_lib, losses, model_setup  # pylint: disable=import-outside-toplevel
  from simajax.training import optim, steps  # pylint: disable=import-outside-toplevel

  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}, batch {args.batch}", flush=True)
  topology = None
  for variant in args.variants.split(","):
    config = config_lib.base_config("svr", "synthetic", variant)
    config.optim.flatten = not args.no_flatten
    if topology is None:
      topology = model_setup.load_topology(config)
    model = model_setup.build_model(config, topology)
    tx, schedule = optim.make_optimizer(config, args.batch, steps_per_epoch=1000)
    size = config.model.input_size
    step_fn = steps.make_train_step(
        stage="svr", model=model, tx=tx, faces=jnp.asarray(topology.faces[0], jnp.int32),
        loss_weights=losses.LossWeights.from_config(
            {**config.loss.to_dict(), "se": 0.0, "oe": 0.0}),
        multi_view=False, schedule=schedule)

    batch = {k: jnp.asarray(x) for k, x in
             bench_batches.random_batch(topology, args.batch, size, seed=0).items()}
    state = jax.jit(lambda: steps.init_state(model, tx, 0,
                                             *model_setup.input_shapes("svr", size)))()

    start = time.perf_counter()
    lowered = jax.jit(step_fn, donate_argnums=(0,)).lower(state, batch)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    line = (f"{variant:>8}: lower {lowered_at - start:6.1f} s, compile {done - lowered_at:6.1f} s, "
            f"{len(lowered.as_text().splitlines())} StableHLO lines")
    if args.steps:
      state, _ = compiled(state, batch)  # warm-up
      jax.block_until_ready(state)
      times = []
      for _ in range(args.steps):
        begin = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - begin)
      loss = float(metrics["loss"])
      if not np.isfinite(loss):
        raise FloatingPointError(f"{variant}: non-finite loss {loss}")
      line += (f", step median {statistics.median(times):6.2f} s (min {min(times):.2f}, "
               f"max {max(times):.2f}, {args.steps} steps)")
    print(f"{line}, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
  sys.exit(main())
