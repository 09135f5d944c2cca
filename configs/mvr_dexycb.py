r"""Stage 1: the multi-view teacher (MVR-Hand) on Dex-YCB (setup S0), official model size.

Command (build the data first, below):
  python -m simajax.train --config=configs/mvr_dexycb.py --workdir=runs/mvr_dexycb
Arguments, appended to the path as ``:key=value,flag`` (``config_lib.parse_arg``):
  variant=official  the model size, official | small | tiny (the SVR of stage 2 must match);
  steps=0           > 0: that many steps at one constant rate (``config_lib.apply_fixed_budget``);
  runlocal          a smoke run: tiny model, batch 16, 6 steps (``config_lib.apply_runlocal``).
Hardware: accelerators (paper: 4 Titan V); 38 epochs of ~58k 8-view frames.
Wall time: not measured (no accelerator was lent to this project so far; BENCHMARKS.md).
Paper (MVR, Dex-YCB): JPE / VPE 8.49 / 8.48 mm.
"""

from simajax import config_lib


def get_config(arg=None):
  """The recipe; ``arg``: the module docstring's arguments."""
  arg = config_lib.parse_arg(arg, variant="official", **config_lib.RUN_SIZE_ARGS)
  # dexycb/s0; build it first (needs the download and MANO; see docs/datasets.md):
  #   python -m data_pipelines.build dexycb/s0 --data_dir data/tfds --manual_dir DEX_YCB \
  #       --mano MANO_RIGHT.pkl
  c = config_lib.base_config("mvr", "dexycb", variant=arg.variant)
  c.hand_model = "MANO_RIGHT.pkl"  # your MANO file: the decoder's mesh topology comes from it

  # SiMA's orientation-feature enhancement (False: the no-OFE ablation).
  c.model.use_ofe = True
  # 64 images = 8 frames x 8 views. The paper's "64" could mean images or hands; we read images
  # (docs/training.md#batch-sizes).
  c.batch_size = 64
  # The official schedule (H2ONet's code): Adam at 1e-3 per 32 images, scaled linearly with the
  # global batch (2e-3 here; docs/training.md#learning-rate-scaling), x0.1 after epoch 30 of 38.
  c.optim.update(base_lr=1e-3, base_batch_size=32, decay_epochs=[30])
  c.total_epochs = 38.0
  # L_Recon (eq. 7-11) with the official code's weights: normal x0.1, every other term 1; the
  # rotation term is the official MSE to the target, not the paper's ||R R^T - I|| (eq. 10).
  c.loss.update(mesh_canonical=1.0, joints_canonical=1.0, mesh_rotated=1.0, joints_rotated=1.0,
                joints_2d=1.0, normal=0.1, edge=1.0, rotation=1.0, rotation_form="mse")
  return config_lib.apply_args(c, arg)
