r"""The whole method end to end on the built-in synthetic hands (the README's main command).

  python -m simajax.quickstart --workdir runs/quickstart

1. builds ``synthetic_hands/small`` when missing (8-view frames with object occlusion);
2. trains the multi-view teacher (MVR, stage 1) and then the single-view model with SiMA
   distillation from the frozen teacher (SVR, stage 2), with the recipes of
   ``configs/mvr_synthetic.py`` and ``configs/svr_synthetic.py`` on the `tiny` model and a fixed
   step budget (``:variant=tiny,steps=150``; ``QUICKSTART_STEPS``);
3. scores both on the test split with the paper's protocol, next to the trivial baseline that
   predicts the mean root-relative training mesh for every image, and prints the table;
4. draws the validation learning curves of both stages with the mean mesh's level
   (``results/learning_curves.png``), and writes example meshes (.obj) and overlay pictures of
   test crops.

Each stage resumes from its workdir when the command is run again, so an interrupted quickstart
continues where it stopped.

The config files live in the repository's ``configs/`` folder, which ``pip install -e .`` leaves
in place next to the package (``simajax.config_lib.config_file``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Optional, Sequence

import jax
import numpy as np

from simajax import cli, config_lib, evaluate, input_pipeline, runtime, train
from simajax.training import evaluation, logs, run_dir

DATASET = "synthetic_hands/small"
TABLE_METRICS = (("jpe", "JPE"), ("vpe", "VPE"), ("pa_jpe", "PA-JPE"), ("pa_vpe", "PA-VPE"),
                 ("pa_f5", "PA-F@5"))

# The main job's step budgets (the configs' ``steps`` argument), on the `tiny` model (`small`
# takes ~8x longer per step on a CPU and learns less within the budget): the whole command (data
# build, both stages with their compilations, evaluation) took 8.3 minutes with them on 2 idle
# CPU cores on 2026-12-02, within the 15-minute goal; 250 steps per stage did not learn more on today's code,
# and a 2000-step teacher (over 3x what 15 minutes allow) only reached the mean mesh's VPE
# (BENCHMARKS.md, "Main job", "Learning at CPU budgets" and "What limits the main job").
QUICKSTART_STEPS = {"mvr": 150, "svr": 150}


def _split_targets(config, split: str) -> dict[str, np.ndarray]:
  """Camera-frame GT joints/verts and visibility of every view of a split, in record order."""
  iterable = input_pipeline.eval_iterable(
      config_lib.input_config(config, split, "single_view", False, 64))
  parts = {"joints": [], "verts": [], "visibility": []}
  for batch in iterable:
    keep = batch["mask"] > 0
    parts["joints"].append(batch["joints_camera"][keep])
    parts["verts"].append(batch["verts_camera"][keep])
    parts["visibility"].append(batch["vis_ratio"][keep])
  return {k: np.concatenate(v) for k, v in parts.items()}


def mean_mesh_baseline(config, splits: Sequence[str] = ("test",)) -> dict[str, dict]:
  """Scores the mean root-relative training mesh, predicted for every view of each of
  ``splits`` ('train' / 'validation' / 'test' or the config's names); the training split is
  read once. Returns {split: results dict}."""
  train_gt = _split_targets(config, config.data.train_split)
  root = lambda x, j: x - j[:, :1]  # noqa: E731  (wrist = joint 0)
  mean_joints = root(train_gt["joints"], train_gt["joints"]).mean(axis=0)
  mean_verts = root(train_gt["verts"], train_gt["joints"]).mean(axis=0)
  results = {}
  for split in splits:
    gt = _split_targets(config, split)
    n = len(gt["joints"])
    results[split] = evaluate.score_predictions(
        np.broadcast_to(mean_joints, (n,) + mean_joints.shape),
        np.broadcast_to(mean_verts, (n,) + mean_verts.shape),
        gt["joints"], gt["verts"], gt["visibility"])
  return results


def place_at_wrist(verts_rotated: np.ndarray, joints_rotated: np.ndarray,
                   wrist_camera: np.ndarray) -> np.ndarray:
  """Camera-frame vertices of a predicted mesh, for drawing it over its crop.

  The network predicts the rotated mesh ``verts_rotated`` and joints ``joints_rotated``, which are
  camera-oriented but not positioned (root-relative, plus an arbitrary offset; the losses'
  targets are R (V - J0) + J0 in the hand-model frame). The camera translation is not predicted,
  so the picture puts the predicted wrist at the ground-truth wrist ``wrist_camera``.
  """
  return verts_rotated - joints_rotated[0] + wrist_camera


def write_examples(svr_dir: str, out_dir: str, count: int) -> None:
  """Predicted meshes (.obj) and overlays (prediction | ground truth) of the first test views,
  placed by ``place_at_wrist`` and projected with the crop's intrinsics."""
  from simajax.render import draw, mesh_io  # pylint: disable=import-outside-toplevel
  run = run_dir.load_run(svr_dir)  # its best (else latest) checkpoint
  config, model = run.config, run.model
  batch = next(iter(input_pipeline.eval_iterable(
      config_lib.input_config(config, config.data.test_split, "single_view", False, count))))
  outputs, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(run.variables,
                                                                   batch["image"])
  faces = np.asarray(run.topology.faces[0])
  os.makedirs(out_dir, exist_ok=True)
  tiles = []
  for i in range(int((batch["mask"] > 0).sum())):
    pred = np.asarray(outputs["verts_rotated"][i])
    placed = place_at_wrist(pred, np.asarray(outputs["joints_rotated"][i]),
                            batch["joints_camera"][i][0])
    mesh_io.write_obj(os.path.join(out_dir, f"test_view{i}.obj"), pred, faces)
    crop = (np.clip(batch["image"][i], 0, 1) * 255).astype(np.uint8)
    K = batch["K_crop"][i]
    tiles.append(draw.overlay_mesh(crop, placed, faces, K))
    tiles.append(draw.overlay_mesh(crop, batch["verts_camera"][i], faces, K,
                                   color=(0.6, 1.0, 0.6)))
  draw.save_image(os.path.join(out_dir, "overlays.png"), draw.image_grid(tiles, ncols=2))


def format_table(rows: dict[str, dict]) -> str:
  """Markdown table: method x (overall, occluded) metrics."""
  header = "| Method | " + " | ".join(f"{name}" for _, name in TABLE_METRICS) + \
      " | Occl. VPE | Occl. PA-VPE |"
  lines = [header, "|---" * (len(TABLE_METRICS) + 3) + "|"]
  for method, result in rows.items():
    overall, occluded = result["metrics"]["overall"], result["metrics"]["occluded"]

    def cell(entry, key):
      value = entry.get(key)
      scale = 100 if key.startswith(("pa_f", "f")) else 1
      return "-" if value is None else f"{value * scale:.2f}"

    lines.append(f"| {method} | " + " | ".join(cell(overall, k) for k, _ in TABLE_METRICS)
                 + f" | {cell(occluded, 'vpe')} | {cell(occluded, 'pa_vpe')} |")
  return "\n".join(lines) + "\n"


STAGE_NAMES = {"mvr": "MVR teacher (8 views)", "svr": "SiMA-SVR (1 view)"}


def stage_config(stage: str, workdir: str, data_dir: str, *, variant: str = "tiny",
                 steps: Optional[int] = None):
  """The config of one stage: ``configs/<stage>_synthetic.py:variant=<variant>,steps=<budget>``
  with the data in ``data_dir`` (built beforehand) and, for the SVR, the teacher and the
  pre-trained modules from ``<workdir>/mvr``.

  ``steps``: None keeps ``QUICKSTART_STEPS``; 0 runs the config's epoch schedule, with the
  quickstart's validation and checkpoint cadence; else that many steps.
  """
  path = config_lib.config_file(f"{stage}_synthetic.py")
  config = config_lib.load_config(f"{path}:variant={variant},steps={QUICKSTART_STEPS[stage]}")
  config.data.data_dir = data_dir
  config.data.build_if_missing = False
  if steps == 0:  # the config file's schedule
    schedule = config_lib.load_config(f"{path}:variant={variant}")
    config.total_epochs, config.total_steps = schedule.total_epochs, None
    config.optim.decay_epochs = schedule.optim.decay_epochs
  elif steps is not None:
    config.total_steps = steps
  if stage == "svr":
    config.distill.teacher_checkpoint = os.path.join(workdir, "mvr")
    config.init_from = os.path.join(workdir, "mvr")  # pre-trained modules: init_from_modules
  return config


def run(workdir: str, data_dir: str, *, variant: str = "tiny", mvr_steps: Optional[int] = None,
        svr_steps: Optional[int] = None, examples: int = 4) -> dict:
  """Runs the quickstart; returns {method: results dict} on the test split.

  ``mvr_steps`` / ``svr_steps``: None keeps ``QUICKSTART_STEPS``; 0 runs the config's epoch
  schedule (``configs/*_synthetic.py``).
  """
  workdir = os.path.abspath(workdir)
  timings = {}
  start = time.perf_counter()
  from data_pipelines import build  # pylint: disable=import-outside-toplevel
  build.ensure_built(DATASET, data_dir)
  timings["data"] = time.perf_counter() - start

  configs = {}
  for stage, steps in (("mvr", mvr_steps), ("svr", svr_steps)):
    config = configs[stage] = stage_config(stage, workdir, data_dir, variant=variant, steps=steps)
    t = time.perf_counter()
    train.train_and_evaluate(config, os.path.join(workdir, stage))
    timings[stage] = time.perf_counter() - t

  t = time.perf_counter()
  svr = configs["svr"]
  baselines = mean_mesh_baseline(svr, (svr.data.test_split, svr.data.eval_split))
  results = {"mean training mesh": baselines[svr.data.test_split]}
  for stage, name in STAGE_NAMES.items():
    results[name] = evaluation.evaluate_run(os.path.join(workdir, stage))
  out = os.path.join(workdir, "results")
  evaluate.write_reports(results["SiMA-SVR (1 view)"], os.path.join(out, "svr_test.json"),
                         os.path.join(out, "svr_test.md"), os.path.join(out, "svr_pck.png"),
                         name="SiMA-SVR")
  write_learning_curves(workdir, baselines[svr.data.eval_split]["metrics"]["overall"],
                        os.path.join(out, "learning_curves.png"))
  write_examples(os.path.join(workdir, "svr"), os.path.join(out, "examples"), examples)
  timings["evaluation"] = time.perf_counter() - t
  table = format_table(results)
  with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
    f.write(table)
  with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"timings_s": timings,
               "results": {k: v["metrics"] for k, v in results.items()}}, f, indent=1)
  print("\nTest split of synthetic_hands/small (errors in mm, F-score in %):\n")
  print(table)
  print("Stage times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
        + f"; total {sum(timings.values()) / 60:.1f} min")
  print(f"Reports, learning curves, example meshes and overlays: {out}")
  return results


def write_learning_curves(workdir: str, baseline: dict, path: str) -> None:
  """Validation VPE / PA-VPE of both stages against their step, with the mean mesh's level
  ``baseline`` (its overall validation metrics)."""
  curves = {}
  for stage, name in STAGE_NAMES.items():
    logged = logs.read_curve(os.path.join(workdir, stage))
    curves[name] = {"vpe": logged["val/vpe"], "pa_vpe": logged["val/pa_vpe"]}
  evaluate.render_learning_curves(curves, baseline, path,
                                  title="validation split of synthetic_hands/small")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """CLI entry point (see the module docstring); a bad input prints one line, exit status 2."""
  return cli.run(_main, argv)


def _main(argv: Sequence[str]) -> int:
  parser = cli.ArgumentParser(prog="python -m simajax.quickstart", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="runs/quickstart")
  parser.add_argument("--data-dir", default="data/tfds")
  # The recipes are configs/*_synthetic.py; the step budgets and why: QUICKSTART_STEPS.
  parser.add_argument("--variant", default="tiny", choices=("official", "small", "tiny"))
  parser.add_argument("--mvr-steps", type=int, default=None,
                      help="MVR training steps (default: "
                      f"{QUICKSTART_STEPS['mvr']}; 0: the config's 12 epochs)")
  parser.add_argument("--svr-steps", type=int, default=None,
                      help="SVR training steps (default: "
                      f"{QUICKSTART_STEPS['svr']}; 0: the config's 12 epochs)")
  parser.add_argument("--examples", type=int, default=4, help="example meshes/overlays to write")
  args = parser.parse_args(argv)
  for flag in ("mvr_steps", "svr_steps", "examples"):
    if getattr(args, flag) is not None and getattr(args, flag) < 0:
      parser.error(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
  for flag in ("workdir", "data_dir"):
    path = os.path.expanduser(getattr(args, flag))
    if os.path.exists(path) and not os.path.isdir(path):
      raise cli.UserError(f"--{flag.replace('_', '-')} {path}: exists and is not a directory")
  runtime.configure_process()
  logging.basicConfig(level=logging.WARNING)
  run(args.workdir, args.data_dir, variant=args.variant, mvr_steps=args.mvr_steps,
      svr_steps=args.svr_steps, examples=args.examples)
  return 0


if __name__ == "__main__":
  sys.exit(main())
