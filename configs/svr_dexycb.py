r"""Stage 2: SiMA-SVR on Dex-YCB (setup S0), official model size (the paper's main result).

Command:
  python -m simajax.train --config=configs/svr_dexycb.py --workdir=runs/svr_dexycb \
      --config.distill.teacher_checkpoint=runs/mvr_dexycb
Smoke run (tiny model and data, a few steps): append `:runlocal` to the config path.
Expected time and hardware: accelerators; 38 epochs. Paper (SiMA-SVR): PA-JPE 5.16, PA-VPE 4.98, JPE 13.25, VPE 12.78 mm.
"""

from simajax import config_lib


def get_config(arg=None):
  """Returns the config; ``arg == 'runlocal'`` shrinks it for a smoke run (others: an error)."""
  config = config_lib.base_config("svr", "dexycb", variant="official")
  # Build first (needs the download and MANO; see README "Data preparation"):
  #   python -m data_pipelines.build dexycb/s0 --data_dir data/tfds --manual_dir DEX_YCB \
  #       --mano MANO_RIGHT.pkl
  config.data.name = "dexycb/s0"
  config.hand_model = "MANO_RIGHT.pkl"  # your MANO file: the decoder's mesh topology comes from it
  return config_lib.apply_arg(config, arg)
