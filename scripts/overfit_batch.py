r"""Sanity check: can the network memorise one fixed batch? (plain SVR, no distillation)

  python scripts/overfit_batch.py --variant tiny --steps 200 [--data-dir data/tfds] \
      [--dataset synthetic_hands/small] [--batch 32]

Trains on the same un-augmented single-view batch every step and prints every loss term. When a
term does not fall here, the cause is in the model, the loss or the labels; when it falls here
but not in real training, the cause is the budget or the optimisation (this is how
BENCHMARKS.md, "Learning at CPU budgets", tells the two apart for the orientation).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--variant", default="tiny", choices=("official", "small", "tiny"))
  parser.add_argument("--dataset", default="synthetic_hands/small")
  parser.add_argument("--data-dir", default="data/tfds")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--print-every", type=int, default=20)
  args = parser.parse_args(argv)

  # pylint: disable=import-outside-toplevel
  from simajax import config_lib, input_pipeline, model_setup, train
  from simajax.training import optim, steps
  config = config_lib.load_config(
      config_lib.config_file("svr_synthetic.py") + f":variant={args.variant}")
  config.data.name, config.data.data_dir = args.dataset, args.data_dir
  config.distill.enabled = False
  config.data.mode = "single_view"
  config.batch_size = args.batch
  config.optim.decay_epochs = []
  if config.data.build_if_missing:
    from data_pipelines import build
    build.ensure_built(config.data.name, config.data.data_dir)
  batch = next(input_pipeline.train_iterator(config_lib.input_config(
      config, config.data.train_split, "single_view", False, args.batch)))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  topology = model_setup.load_topology(config)
  model = model_setup.build_model(config, topology)
  tx, schedule = optim.make_optimizer(config, args.batch, steps_per_epoch=args.steps)
  state = jax.jit(lambda: steps.init_state(
      model, tx, config.seed, *model_setup.input_shapes("svr", config.data.image_size)))()
  train_step = jax.jit(steps.make_train_step(
      stage="svr", model=model, tx=tx, faces=jnp.asarray(topology.faces[0], jnp.int32),
      loss_weights=train.loss_weights(config, False), multi_view=False, schedule=schedule),
      donate_argnums=(0,))
  start = time.perf_counter()
  for step in range(1, args.steps + 1):
    state, metrics = train_step(state, batch)
    if step == 1 or step % args.print_every == 0 or step == args.steps:
      terms = {k[len("loss_"):]: round(float(v), 4) for k, v in metrics.items()
               if k.startswith("loss_")}
      print(f"step {step} ({time.perf_counter() - start:.0f} s): {terms}", flush=True)


if __name__ == "__main__":
  main()
