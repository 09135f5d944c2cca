r"""Stage 1: the multi-view teacher (MVR-Hand) on the built-in synthetic hands, sized for a CPU.

Command (``synthetic_hands/small`` is built on first use, 171 s wall on 2 cores):
  python -m simajax.train --config=configs/mvr_synthetic.py --workdir=runs/mvr_synthetic
Arguments, appended to the path as ``:key=value,flag`` (``config_lib.parse_arg``):
  variant=small  the model size, official | small | tiny (the SVR of stage 2 must match);
  steps=0        > 0: that many steps at one constant rate (``config_lib.apply_fixed_budget``);
                 the quickstart's MVR stage is ``:variant=tiny,steps=150``;
  runlocal       a smoke run: tiny model and data, batch 16, 6 steps
                 (``config_lib.apply_runlocal``).
Hardware: a 2-core CPU.
Wall time: the 12-epoch schedule: not measured. ``:variant=tiny,steps=150`` (in
``python -m simajax.quickstart``): 4.8 min on 2 idle cores (BENCHMARKS.md, "Main job").
"""

from simajax import config_lib


def get_config(arg=None):
  """The recipe; ``arg``: the module docstring's arguments."""
  # `small` by default: the official width learns too slowly within a CPU budget (BENCHMARKS.md).
  arg = config_lib.parse_arg(arg, variant="small", **config_lib.RUN_SIZE_ARGS)
  c = config_lib.base_config("mvr", "synthetic", variant=arg.variant)  # synthetic_hands/small

  # SiMA's orientation-feature enhancement (False: the no-OFE ablation).
  c.model.use_ofe = True
  # Keep the joint regressor at its MANO init: trained with Adam from scratch it drifts by
  # centimetres per step, and after 150 steps the MVR's joints were ~0.6 m off (JPE 658 mm) while
  # its mesh had not learned at all; frozen, the canonical mesh error falls from the first steps
  # (BENCHMARKS.md, "Learning at CPU budgets"). The official code trains it.
  c.model.train_joint_regressor = False
  # 64 images = 8 frames x 8 views, as on Dex-YCB (docs/training.md#batch-sizes).
  c.batch_size = 64
  # The lifting matrix starts at 0.01 everywhere, and Adam moves each entry by ~lr (1e-3) per step
  # whatever its gradient's size; f_v, and through the unnormalised decoder the whole mesh,
  # scale with it. At the full rate it drifted 3x in 50 steps and the mesh blew up to metres
  # mid-run (BENCHMARKS.md, "Learning at CPU budgets"); a tenth of the rate kept it stable.
  c.optim.lr_multipliers = {"*lifting/upsample": 0.1}
  # The official rate (1e-3 per 32 images, scaled with the batch: 2e-3 here) on a shorter
  # schedule of the same shape: x0.1 after epoch 9 of 12 (official: 30 of 38).
  c.optim.update(base_lr=1e-3, base_batch_size=32, decay_epochs=[9])
  c.total_epochs = 12.0
  c.log_every_steps, c.eval_every_steps, c.checkpoint.every_steps = 20, 500, 200
  # L_Recon (eq. 7-11) with the official code's weights: normal x0.1, every other term 1; the
  # rotation term is the official MSE to the target, not the paper's ||R R^T - I|| (eq. 10).
  c.loss.update(mesh_canonical=1.0, joints_canonical=1.0, mesh_rotated=1.0, joints_rotated=1.0,
                joints_2d=1.0, normal=0.1, edge=1.0, rotation=1.0, rotation_form="mse")
  return config_lib.apply_args(c, arg)
