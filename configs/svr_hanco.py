r"""Stage 2: SiMA-SVR on HanCo, official model size.

Command:
  python -m simajax.train --config=configs/svr_hanco.py --workdir=runs/svr_hanco \
      --config.distill.teacher_checkpoint=runs/mvr_hanco
Smoke run (tiny model and data, a few steps): append `:runlocal` to the config path.
Expected time and hardware: accelerators; 38 epochs. Paper (HanCo, after PA): JPE 6.55, VPE 6.48 mm.
"""

from simajax import config_lib


def get_config(arg=None):
  """Returns the config; ``arg == 'runlocal'`` shrinks it for a smoke run (others: an error)."""
  config = config_lib.base_config("svr", "hanco", variant="official")
  # Build first (see README "Data preparation"); SiMA trains on rgb + rgb_merged copies:
  #   python -m data_pipelines.build hanco/rgb-rgb_merged --data_dir data/tfds --manual_dir HANCO \
  #       --mano MANO_RIGHT.pkl
  config.data.name = "hanco/rgb-rgb_merged"
  config.data.eval_split = "test"  # HanCo has no validation split
  config.hand_model = "MANO_RIGHT.pkl"
  return config_lib.apply_arg(config, arg)
