r"""Stage 1: the multi-view teacher (MVR-Hand) on the built-in synthetic hands.

Command:
  python -m simajax.train --config=configs/mvr_synthetic.py --workdir=runs/mvr_synthetic
Smoke run (tiny model and data, a few steps): append `:runlocal` to the config path.
Expected time and hardware: 2-core CPU (the `small` model on `synthetic_hands/small`): about 5 minutes; see BENCHMARKS.md.
"""

from simajax import config_lib


def get_config(arg=None):
  """Returns the config; ``arg == 'runlocal'`` shrinks it for a smoke run (others: an error)."""
  # The synthetic data is built on first use; `small` builds in a few minutes on 2 cores.
  config = config_lib.synthetic_config("mvr")
  return config_lib.apply_arg(config, arg)
