r"""Stage 2: SiMA-SVR on HanCo, official model size.

Command (after stage 1, configs/mvr_hanco.py, on the same data):
  python -m simajax.train --config=configs/svr_hanco.py --workdir=runs/svr_hanco \
      --config.distill.teacher_checkpoint=runs/mvr_hanco
Arguments: configs/svr_dexycb.py's (e.g. ``configs/svr_hanco.py:runlocal``).
Hardware: accelerators; 38 epochs.
Wall time: not measured (no accelerator was lent to this project so far; BENCHMARKS.md).
Paper (SiMA-SVR, HanCo, after Procrustes alignment): JPE 6.55, VPE 6.48 mm.
"""

import os

from simajax import config_lib


def get_config(arg=None):
  """Dex-YCB's recipe (configs/svr_dexycb.py says why each value) on configs/mvr_hanco.py's
  data."""
  c = config_lib.load_config(os.path.join(os.path.dirname(__file__), "svr_dexycb.py")
                              + f":{arg or ''}")
  c.data = config_lib.base_config(c.stage, "hanco").data
  return c
