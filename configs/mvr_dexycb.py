r"""Stage 1: the multi-view teacher on Dex-YCB (setup S0), official model size.

Command:
  python -m simajax.train --config=configs/mvr_dexycb.py --workdir=runs/mvr_dexycb
Smoke run (tiny model and data, a few steps): append `:runlocal` to the config path.
Expected time and hardware: accelerators (paper: 4 Titan V); 38 epochs of ~58k 8-view frames. Paper MVR: JPE/VPE 8.49/8.48 mm.
"""

from simajax import config_lib


def get_config(arg=None):
  """Returns the config; ``arg == 'runlocal'`` shrinks it for a smoke run (others: an error)."""
  config = config_lib.base_config("mvr", "dexycb", variant="official")
  # Build first (needs the download and MANO; see README "Data preparation"):
  #   python -m data_pipelines.build dexycb/s0 --data_dir data/tfds --manual_dir DEX_YCB \
  #       --mano MANO_RIGHT.pkl
  config.data.name = "dexycb/s0"
  config.hand_model = "MANO_RIGHT.pkl"  # your MANO file: the decoder's mesh topology comes from it
  return config_lib.apply_arg(config, arg)
