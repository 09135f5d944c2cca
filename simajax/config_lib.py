"""The base training config shared by every ``configs/<stage>_<dataset>.py`` file.

Config files stay short: they call ``base_config(stage, dataset)`` and change what differs. The
base lives in the package (not in ``configs/``) so configs work from any working directory.

Precedence of the initial weights, in ``simajax.train``:
  1. resume: the latest checkpoint in ``<workdir>/checkpoints`` (always, when one exists);
  2. ``init_from``: weights (params + batch_stats) of another run's checkpoint, fresh optimizer;
     with ``init_from_modules``, only those top-level modules (e.g. an SVR's ``backbone`` from
     an MVR run, whose shared modules have the same shapes), the rest from scratch;
  3. scratch: random initialisation from ``seed``.
"""

from __future__ import annotations

import importlib.util
import json
import os

import ml_collections

from simajax.cli import UserError
from simajax.models.config import mvr_config, svr_config

STAGES = ("mvr", "svr")

# TFDS dataset names per config dataset key.
DATASETS = {
    "synthetic": "synthetic_hands/small",
    "dexycb": "dexycb/s0",
    "hanco": "hanco/rgb-rgb_merged",
}


def base_config(stage: str, dataset: str = "synthetic",
                variant: str = "official") -> ml_collections.ConfigDict:
  """The defaults for one stage on one dataset.

  Args:
    stage: 'mvr' (stage 1: the multi-view teacher) or 'svr' (stage 2: the single-view model,
      with SiMA distillation from a trained MVR unless ``distill.enabled`` is False).
    dataset: a key of ``DATASETS``.
    variant: model size, 'official' | 'small' | 'tiny' (see ``simajax.models.config``).
  """
  if stage not in STAGES:
    raise UserError(f"stage must be one of {STAGES}, got {stage!r}")
  if dataset not in DATASETS:
    raise UserError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
  c = ml_collections.ConfigDict()
  c.stage = stage
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = DATASETS[dataset]
  c.data.data_dir = "data/tfds"  # relative to the working directory; gitignored
  c.data.manual_dir = ml_collections.config_dict.placeholder(str)  # Dex-YCB / HanCo downloads
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.test_split = "test"
  c.data.image_size = 128
  c.data.num_workers = 0  # grain worker processes; 0 decodes in threads of the trainer process
  c.data.num_threads = 2
  c.data.prefetch = 2
  # The synthetic data is built on first use when missing (Dex-YCB / HanCo must be built by hand).
  c.data.build_if_missing = dataset == "synthetic"

  # Hand model: None = the built-in SynthHand; a path to MANO_RIGHT.pkl (or its .npz) = MANO.
  # The mesh topology the decoder runs on comes from this hand's template mesh, unless
  # `topology` names a topology .npz (e.g. the official assets, required for official weights).
  c.hand_model = ml_collections.config_dict.placeholder(str)
  c.topology = ml_collections.config_dict.placeholder(str)

  # The teacher and the student of a SiMA run use the same variant, so the distilled features
  # (f_v, f_o tokens) have the same shapes.
  c.model = mvr_config(variant) if stage == "mvr" else svr_config(variant)
  c.model.use_ofe = True  # SiMA's orientation-feature enhancement (False: the no-OFE ablation)

  # Global batch in images (views); multi-view stages read batch_size / 8 hands of 8 views each.
  # Paper: MVR 64 images (8 hands x 8 views), SVR 32 images (our choice, docs/training.md#batch-sizes).
  # The learning rate scales with it (optim.base_batch_size), so results do not depend on the
  # number of devices.
  c.batch_size = 64 if stage == "mvr" else 32
  # 'multi_view' feeds whole 8-view frames (the MVR, and the SVR under SiMA, whose teacher needs
  # every view of the same augmented batch); 'single_view' samples views independently (the
  # plain SVR baseline may use either).
  c.data.mode = "multi_view"
  c.total_epochs = 38.0
  c.total_steps = ml_collections.config_dict.placeholder(int)

  c.optim = ml_collections.ConfigDict()
  c.optim.base_lr = 1e-3
  c.optim.base_batch_size = 32  # images per step at base_lr (official: 1e-3 at batch 32)
  c.optim.decay_epochs = [30]
  c.optim.decay_factor = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.grad_clip_norm = 0.1
  # Run clipping and Adam on all parameters raveled into one vector: same updates, about half
  # the training step's compile time (hundreds of small per-tensor ops fewer). Must be False with
  # mesh.model > 1, whose sharded optimizer moments need per-tensor state.
  c.optim.flatten = True
  c.optim.warmup_steps = ml_collections.config_dict.placeholder(int)
  c.optim.warmup_epochs = ml_collections.config_dict.placeholder(float)
  # Per-parameter update scales, {glob over 'module/.../param' names: factor} (0 freezes);
  # none in the official recipe. See synthetic_config for why the CPU configs use one.
  c.optim.lr_multipliers = {}

  # Loss weights (simajax.losses.LossWeights): official defaults, normal x0.1, others 1.
  c.loss = ml_collections.ConfigDict()
  c.loss.mesh_canonical = 1.0
  c.loss.joints_canonical = 1.0
  c.loss.mesh_rotated = 1.0
  c.loss.joints_rotated = 1.0
  c.loss.joints_2d = 1.0
  c.loss.normal = 0.1
  c.loss.edge = 1.0
  c.loss.rotation = 1.0
  c.loss.rotation_form = "mse"  # official; 'frobenius' is the paper's ||R R^T - I|| (eq. 10)
  c.loss.feature_norm = "mse"   # L_SE / L_OE distance ('mse' | 'l2' | 'l1'), our choice, docs/architecture.md#sima-distillation

  # SiMA distillation (SVR stage only). beta/gamma are not published: 1/1 (our choice, docs/architecture.md#sima-distillation).
  c.distill = ml_collections.ConfigDict()
  c.distill.enabled = stage == "svr"  # needs data.mode = 'multi_view'
  c.distill.teacher_checkpoint = ml_collections.config_dict.placeholder(str)  # an MVR workdir
  c.distill.teacher_config = ml_collections.config_dict.placeholder(str)  # its config.json
  c.distill.se_weight = 1.0  # beta, vertex-level shape features f_v
  c.distill.oe_weight = 1.0  # gamma, enhanced orientation features f̂_o

  c.init_from = ml_collections.config_dict.placeholder(str)  # weights-only start (see docstring)
  c.init_from_modules = []  # [] = every module of init_from; else these top-level names only

  c.log_every_steps = 50
  c.eval_every_steps = 1000
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 1000
  c.checkpoint.max_to_keep = 3
  c.checkpoint.keep_best = 1
  c.checkpoint.best_metric = "pa_vpe"
  c.checkpoint.best_mode = "min"
  c.checkpoint.async_save = True

  c.mesh = ml_collections.ConfigDict()
  c.mesh.model = 1  # model-axis size; >1 splits the large attention/MLP kernels
  c.mesh.num_devices = ml_collections.config_dict.placeholder(int)  # None: all devices

  # Multi-host: `jax.distributed.initialize` with these (None = auto-detect on TPU/SLURM).
  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False
  c.distributed.coordinator_address = ml_collections.config_dict.placeholder(str)
  c.distributed.num_processes = ml_collections.config_dict.placeholder(int)
  c.distributed.process_id = ml_collections.config_dict.placeholder(int)
  c.distributed.local_device_ids = ml_collections.config_dict.placeholder(str)
  return c


# The main job's step budgets (python -m simajax.quickstart): the whole command (data build,
# both stages with their compilations, evaluation) took 11.3 minutes with them on 2 idle CPU
# cores, within the 15-minute goal; 250 steps per stage did not learn more on today's code
# (BENCHMARKS.md, "Main job" and "Learning at CPU budgets").
QUICKSTART_STEPS = {"mvr": 150, "svr": 150}


def quickstart_config(stage: str, variant: str = "tiny") -> ml_collections.ConfigDict:
  """The main job's recipe: ``synthetic_config`` with a fixed step budget, on the `tiny` model.

  Args:
    stage: 'mvr' or 'svr'.
    variant: the model size; `tiny` by default: `small` takes ~8x longer per step on a CPU and
      learns less within the budget (BENCHMARKS.md, "Learning at CPU budgets").
  """
  c = synthetic_config(stage, variant=variant)
  c.total_epochs, c.total_steps = None, QUICKSTART_STEPS[stage]
  c.optim.decay_epochs = []  # one constant rate: the budget is a fraction of one decay period
  # Validation every 50 steps draws the learning curves (results/learning_curves.png); the
  # validation split is small, so this costs a few seconds per point.
  c.eval_every_steps = 50
  c.checkpoint.every_steps = 100
  return c


def apply_runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config for a smoke run on a laptop: tiny model and data, a few steps."""
  tiny = mvr_config("tiny") if c.stage == "mvr" else svr_config("tiny")
  tiny.use_ofe = c.model.get("use_ofe", True)
  tiny.train_joint_regressor = c.model.get("train_joint_regressor", True)
  c.model = tiny
  if c.data.name.startswith("synthetic_hands/"):
    c.data.name = "synthetic_hands/tiny"
  c.batch_size = 16
  c.total_epochs = None
  c.total_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 6
  c.checkpoint.every_steps = 3
  return c


CONFIG_ARGS = ("runlocal",)


def apply_arg(c: ml_collections.ConfigDict, arg) -> ml_collections.ConfigDict:
  """Applies a config file's path argument (``configs/x.py:<arg>``): none, or 'runlocal'.

  Raises:
    UserError: for any other argument (a typo would otherwise run the full config).
  """
  if arg in (None, ""):
    return c
  if arg not in CONFIG_ARGS:
    raise UserError(f"unknown config argument {arg!r}: append ':runlocal' to the config path "
                    "for a smoke run, or nothing")
  return apply_runlocal(c)


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Reads a config: a saved run's ``config.json``, or a config file ``path.py[:arg]``.

  Raises:
    FileNotFoundError: naming the missing file.
    ValueError: for a ``.py`` file without ``get_config``.
  """
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} not found")
  if path.endswith(".json"):
    with open(path, encoding="utf-8") as f:
      return ml_collections.ConfigDict(json.load(f))
  module_spec = importlib.util.spec_from_file_location("_simajax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise UserError(f"config file {path} has no get_config()")
  return module.get_config(arg or None)


def input_config(config: ml_collections.ConfigDict, split: str, mode: str, augment: bool,
                 batch_images: int):
  """The input pipeline config of one split; ``batch_images`` counts views (images).

  Multi-view batches hold ``batch_images / 8`` frames of 8 views.
  """
  from simajax import input_pipeline  # pylint: disable=import-outside-toplevel
  from data_pipelines import schema  # pylint: disable=import-outside-toplevel
  multi = mode == "multi_view"
  if multi and batch_images % schema.NUM_VIEWS:
    raise UserError(f"batch of {batch_images} images is not a whole number of "
                     f"{schema.NUM_VIEWS}-view frames (multi-view batches hold "
                     f"batch_size / {schema.NUM_VIEWS} frames)")
  return input_pipeline.InputConfig(
      dataset=config.data.name, data_dir=os.path.expanduser(config.data.data_dir), split=split,
      mode=mode, batch_size=batch_images // schema.NUM_VIEWS if multi else batch_images,
      image_size=config.data.image_size, seed=config.seed, augment=augment,
      num_workers=config.data.num_workers, num_threads=config.data.num_threads,
      prefetch=config.data.prefetch)


def synthetic_config(stage: str, variant: str = "small") -> ml_collections.ConfigDict:
  """The defaults of both stages on the built-in synthetic hands (``configs/*_synthetic.py``
  and the quickstart), sized for a 2-core CPU.

  The `small` model: the official one learns too slowly within a CPU budget (BENCHMARKS.md).
  """
  c = base_config(stage, "synthetic", variant=variant)
  # Keep the joint regressor at its MANO init: trained with Adam from scratch it drifts by
  # centimetres per step, and after 150 steps the MVR's joints were ~0.6 m off (JPE 658 mm) while
  # its mesh had not learned at all; frozen, the canonical mesh error falls from the first steps
  # (BENCHMARKS.md, "Learning at CPU budgets").
  c.model.train_joint_regressor = False
  # The lifting matrix starts at 0.01 everywhere, and Adam moves each entry by ~lr (1e-3) per step
  # whatever its gradient's size; f_v, and through the unnormalised decoder the whole mesh,
  # scale with it. At the full rate it drifted 3x in 50 steps and the mesh blew up to metres
  # mid-run (BENCHMARKS.md, "Learning at CPU budgets"); a tenth of the rate kept it stable.
  c.optim.lr_multipliers = {"*lifting/upsample": 0.1}
  if stage == "svr":
    # The paper starts the SVR from a pre-trained feature encoder (MobRecon's). Here the MVR
    # teacher, trained on the same frames, plays that role: its backbone and shape branch have
    # the SVR's shapes, and L_SE pulls the student's f_v towards the f_v^M its decoder reads.
    # From scratch, the SiMA-SVR's PA-VPE after 150 steps was 31.9 mm (mean mesh: 32.3); from
    # the backbone alone 34.3; from these three modules 20.9 (BENCHMARKS.md). Applies when
    # init_from names the MVR run (the quickstart and the reproduction script set it).
    c.init_from_modules = ["backbone", "lifting", "decoder3d"]
  c.total_epochs = 12.0
  c.optim.decay_epochs = [9]
  c.log_every_steps = 20
  c.eval_every_steps = 500
  c.checkpoint.every_steps = 200
  return c
