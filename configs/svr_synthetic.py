r"""Stage 2: SiMA-SVR (single view, distilled from the frozen MVR) on the built-in synthetic hands.

Command (after stage 1, configs/mvr_synthetic.py):
  python -m simajax.train --config=configs/svr_synthetic.py --workdir=runs/svr_synthetic \
      --config.distill.teacher_checkpoint=runs/mvr_synthetic --config.init_from=runs/mvr_synthetic
(init_from: the student starts from the teacher's backbone, lifting and decoder; see
``init_from_modules`` below.)
Arguments: configs/mvr_synthetic.py's (``variant``, ``steps``, ``runlocal``); ``variant`` must be
the teacher's, and the quickstart's SVR stage is ``:variant=tiny,steps=150``.
Hardware and wall time: a 2-core CPU; 3.8 min on 2 idle cores at ``:variant=tiny,steps=150`` (the
SiMA-SVR stage of ``python -m simajax.quickstart``, BENCHMARKS.md, "Main job"); the 12-epoch
schedule: not measured.
"""

from simajax import config_lib


def get_config(arg=None):
  """The recipe; ``arg``: configs/mvr_synthetic.py's arguments."""
  # `small` by default: the official width learns too slowly within a CPU budget (BENCHMARKS.md).
  arg = config_lib.parse_arg(arg, variant="small", **config_lib.RUN_SIZE_ARGS)
  c = config_lib.base_config("svr", "synthetic", variant=arg.variant)  # synthetic_hands/small

  # SiMA (eq. 12): distillation from the frozen teacher on multi-view batches (False: the plain
  # SVR); beta (L_SE) and gamma (L_OE) are not published: 1 and 1, as on Dex-YCB.
  c.distill.update(enabled=True, se_weight=1.0, oe_weight=1.0)
  # SiMA's orientation-feature enhancement (False: the no-OFE ablation, Tab. 5 (vii)).
  c.model.use_ofe = True
  # Frozen at its MANO init, as in configs/mvr_synthetic.py (which says why).
  c.model.train_joint_regressor = False
  # 32 images, 4 frames x 8 views (the teacher sees every view of a frame), as on Dex-YCB.
  c.batch_size = 32
  # The paper starts the SVR from a pre-trained feature encoder (MobRecon's). Here the MVR
  # teacher, trained on the same frames, plays that role: its backbone and shape branch have
  # the SVR's shapes, and L_SE pulls the student's f_v towards the f_v^M its decoder reads.
  # From scratch, the SiMA-SVR's PA-VPE after 150 steps was 31.9 mm (mean mesh: 32.3); from
  # the backbone alone 34.3; from these three modules 20.9 (BENCHMARKS.md). Applies when
  # init_from names the MVR run (the quickstart and the reproduction script set it).
  c.init_from_modules = ["backbone", "lifting", "decoder3d"]
  # The lifting matrix at a tenth of the rate, as in configs/mvr_synthetic.py (which says why).
  c.optim.lr_multipliers = {"*lifting/upsample": 0.1}
  # The official rate (1e-3 per 32 images) on a shorter schedule of the same shape: x0.1 after
  # epoch 9 of 12 (official: 30 of 38).
  c.optim.update(base_lr=1e-3, base_batch_size=32, decay_epochs=[9])
  c.total_epochs = 12.0
  c.log_every_steps, c.eval_every_steps, c.checkpoint.every_steps = 20, 500, 200
  # L_Recon with the official code's weights, as on Dex-YCB; L_SE / L_OE's distance is the mean
  # squared error (our choice, docs/architecture.md#sima-distillation).
  c.loss.update(mesh_canonical=1.0, joints_canonical=1.0, mesh_rotated=1.0, joints_rotated=1.0,
                joints_2d=1.0, normal=0.1, edge=1.0, rotation=1.0, rotation_form="mse",
                feature_norm="mse")
  return config_lib.apply_args(c, arg)
