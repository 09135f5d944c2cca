"""What every ``configs/<stage>_<dataset>.py`` file shares, and the helpers that read one.

Each config file is the whole recipe of its experiment (big_vision style): its header gives the
command, the hardware and the measured wall time, and its ``get_config(arg)`` states every value
that is a choice of the recipe (model size, batch, learning rate, schedule, loss and distillation
weights, initialisation) with the reason where it departs from the paper. ``base_config`` holds
the rest, the blocks every run shares (data pipeline, optimiser internals, logging, checkpoints,
mesh, distributed), with the official recipe's values as defaults for the scripts and tests that
build a config without a file. ``parse_arg`` reads a file's path argument
(``configs/svr_synthetic.py:variant=tiny,runlocal``), ``apply_args`` applies the run-size
arguments every file shares (``steps``, ``runlocal``), ``load_config`` reads a file or a saved
``config.json`` and ``config_file`` finds the repository's ``configs/`` folder.

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
from typing import Optional

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
  """The shared blocks of one stage on one dataset, with the official recipe's values.

  The config files restate the recipe's values they depend on (``configs/``); the values here
  are what a config built without a file (the scripts, the tests) gets.

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
  c.data.eval_split = "test" if dataset == "hanco" else "validation"  # HanCo has no validation
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
  # Images per evaluation batch: in-training validation, and scoring a run
  # (training.evaluation.evaluate_run: `simajax.evaluate --checkpoint` without --batch-size, the
  # quickstart, the reproduction script). None: batch_size. A multiple of 8 for the MVR, whose
  # evaluation reads whole 8-view frames.
  c.eval_batch_size = ml_collections.config_dict.placeholder(int)

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
  # none in the official recipe. configs/*_synthetic.py say why the CPU configs use one.
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


def apply_fixed_budget(c: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
  """Trains for ``steps`` steps at one constant rate instead of the epoch schedule.

  The budget is then a fraction of one decay period, so the decay is dropped; validation every
  50 steps draws the learning curves (the validation splits of the synthetic data are small, so
  a point costs a few seconds), a checkpoint every 100. The quickstart's budget
  (``configs/*_synthetic.py:steps=150``).
  """
  c.total_epochs, c.total_steps = None, steps
  c.optim.decay_epochs = []
  c.eval_every_steps = 50
  c.checkpoint.every_steps = 100
  return c


# The path arguments every config file takes, besides its own (``parse_arg`` specs).
RUN_SIZE_ARGS = {"steps": 0, "runlocal": False}


def apply_args(c: ml_collections.ConfigDict, arg: ml_collections.ConfigDict
               ) -> ml_collections.ConfigDict:
  """Applies the run-size arguments of ``RUN_SIZE_ARGS``: ``steps=N`` (N > 0), a fixed budget
  (``apply_fixed_budget``); ``runlocal``, a smoke run (``apply_runlocal``, after ``steps``)."""
  if arg.steps < 0:
    raise UserError(f"config argument steps={arg.steps}: expected >= 0 (0: the epoch schedule)")
  if arg.steps:
    apply_fixed_budget(c, arg.steps)
  if arg.runlocal:
    apply_runlocal(c)
  return c


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _parse_value(key: str, typ: type, text: str):
  """``text`` as a ``typ`` (bool, int, float or str); a UserError naming ``key`` otherwise."""
  if typ is bool:
    if text.lower() in _TRUE + _FALSE:
      return text.lower() in _TRUE
    raise UserError(f"config argument {key}={text!r}: expected true or false (or a bare "
                    f"'{key}' for true)")
  try:
    return typ(text)
  except ValueError:
    raise UserError(f"config argument {key}={text!r}: expected {typ.__name__}") from None


def parse_arg(arg: Optional[str], **spec) -> ml_collections.ConfigDict:
  """A config file's path argument (``configs/x.py:<arg>``) as typed fields, like big_vision's
  ``configs/common.py:parse_arg``.

  ``arg`` is ``'key=value,flag,...'``: ``key=value`` sets a field, a bare ``flag`` sets a boolean
  field to true (so ``:runlocal`` reads as ``runlocal=true``); absent keys keep their default.
  ``spec`` names every allowed key with its default, whose type converts the value (bool: true /
  false / 1 / 0 / yes / no); a ``(type, default)`` pair types a default of None.

  Example: ``parse_arg('variant=tiny,runlocal', variant='small', runlocal=False, steps=0)`` is
  ``{'variant': 'tiny', 'runlocal': True, 'steps': 0}``.

  Raises:
    UserError: for a key not in ``spec`` (naming it and the allowed ones), a bare word for a
      key that is not boolean, or a value its type does not parse.
  """
  types = {k: v if isinstance(v, tuple) else (type(v), v) for k, v in spec.items()}
  values = {k: default for k, (_, default) in types.items()}
  for item in (arg or "").split(","):
    key, has_value, text = (part.strip() for part in item.partition("="))
    if not key and not has_value:
      continue  # '' or a stray comma
    if key not in types:
      raise UserError(f"unknown config argument {key!r}; allowed: {', '.join(types)} (e.g. "
                      "':runlocal' for a smoke run, ':key=value,flag')")
    typ = types[key][0]
    if not has_value and typ is not bool:
      raise UserError(f"config argument {key!r} needs a value ({key}=...)")
    values[key] = _parse_value(key, typ, text) if has_value else True
  return ml_collections.ConfigDict(values, type_safe=False)


# The repository checkout's configs/ folder: next to the simajax package (an editable install,
# `pip install -e .`, imports the package from the checkout). A wheel installs the package only.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def config_file(name: str) -> str:
  """The path of ``configs/<name>`` in the repository checkout simajax is imported from.

  Raises:
    FileNotFoundError: when that checkout has no such file (e.g. simajax installed from a wheel,
      which does not hold the configs).
  """
  path = os.path.join(CONFIG_DIR, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} not found: the configs/ folder ships with the "
                            "repository, not the package; install simajax from a checkout with "
                            "`pip install -e .`")
  return path


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Reads a config: a saved run's ``config.json``, or a config file ``path.py[:arg]``.

  A relative ``configs/...`` path that does not exist from the working directory is read from
  the repository's ``configs/`` folder (``config_file``).

  Raises:
    FileNotFoundError: naming the missing file.
    UserError: for a ``.py`` file without ``get_config``, or a bad argument.
  """
  path, _, arg = spec.partition(":")
  if (not os.path.exists(path) and not os.path.isabs(path)
      and os.path.normpath(path).split(os.sep)[0] == "configs"):
    path = config_file(os.path.relpath(path, "configs"))
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


def eval_batch_size(config: ml_collections.ConfigDict) -> int:
  """Images per validation / test batch: ``config.eval_batch_size``, else the training batch.

  ``.get``: a ``config.json`` saved before ``eval_batch_size`` was a field has none.
  """
  return config.get("eval_batch_size") or config.batch_size


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
