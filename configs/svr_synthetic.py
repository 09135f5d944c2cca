r"""Stage 2: SiMA-SVR (single-view, distilled from the frozen MVR) on the built-in synthetic hands.

Command:
  python -m simajax.train --config=configs/svr_synthetic.py --workdir=runs/svr_synthetic \
      --config.distill.teacher_checkpoint=runs/mvr_synthetic
Smoke run (tiny model and data, a few steps): append `:runlocal` to the config path.
Expected time and hardware: 2-core CPU (the `small` model on `synthetic_hands/small`): about 5 minutes; see BENCHMARKS.md.
"""

from simajax import config_lib


def get_config(arg=None):
  """Returns the config; ``arg == 'runlocal'`` shrinks it for a smoke run."""
  config = config_lib.base_config("svr", "synthetic", variant="small")
  # The synthetic data is built on first use; `small` builds in a few minutes on 2 cores.
  # The `small` model: the official one learns too slowly for a CPU budget (BENCHMARKS.md).
  config.total_epochs = 12.0
  config.optim.decay_epochs = [9]
  config.log_every_steps = 20
  config.eval_every_steps = 500
  config.checkpoint.every_steps = 200
  if arg == "runlocal":
    config_lib.apply_runlocal(config)
  return config
