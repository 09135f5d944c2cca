r"""Stage 1: the multi-view teacher (MVR-Hand) on HanCo, official model size.

Command (build the data first: SiMA trains on the rgb and rgb_merged copies of each frame):
  python -m data_pipelines.build hanco/rgb-rgb_merged --data_dir data/tfds --manual_dir HANCO \
      --mano MANO_RIGHT.pkl
  python -m simajax.train --config=configs/mvr_hanco.py --workdir=runs/mvr_hanco
Arguments: configs/mvr_dexycb.py's (e.g. ``configs/mvr_hanco.py:runlocal``).
Hardware: accelerators; 38 epochs of ~16k 8-view frames (rgb + rgb_merged).
Wall time: not measured (no accelerator was lent to this project so far; BENCHMARKS.md).
"""

import os

from simajax import config_lib


def get_config(arg=None):
  """Dex-YCB's recipe (configs/mvr_dexycb.py says why each value) on HanCo's data block
  (``hanco/rgb-rgb_merged``, validated on its test split: HanCo has no validation split)."""
  c = config_lib.load_config(os.path.join(os.path.dirname(__file__), "mvr_dexycb.py")
                              + f":{arg or ''}")
  c.data = config_lib.base_config(c.stage, "hanco").data
  return c
