r"""SiMA's claim at small scale: MVR vs plain SVR vs SiMA-SVR (and ablations) on synthetic hands.

  python scripts/reproduce_synthetic.py --workdir runs/reproduce \
      [--dataset synthetic_hands/default] [--variant small] [--seeds 0,1,2] \
      [--mvr-steps 3000] [--svr-steps 3000] [--methods mvr,svr,sima,no_ofe,se_only,oe_only]

For every seed it trains the MVR teacher (stage 1), then every single-view method (stage 2) with
the same data, batch, step budget and seed, scores each on the whole test split with the paper's
protocol (overall, occluded and non-occluded views), and finally writes

  <workdir>/results.md    mean +- std over seeds, laid out like the paper's Tables 3 and 5;
  <workdir>/results.json  every seed's numbers;
  <workdir>/results.png   PA-VPE and VPE on occluded / non-occluded views per method;
  <workdir>/learning_curves.png  validation VPE and PA-VPE against the step, every method (mean
                          over seeds), with the mean training mesh's level.

Methods (paper rows in brackets):
  mvr      the multi-view teacher, scored on every view of each test frame      [Tab. 5 (vi)]
  svr      plain SVR-Hand, no distillation                                        [Tab. 5 (ix)]
  sima     SVR-Hand with SiMA: L_SE on f_v and L_OE on the enhanced f_o tokens   [Tab. 5 (xii)]
  no_ofe   SVR-Hand without the orientation feature enhancement, no distillation [Tab. 5 (vii)]
  se_only  SiMA with the shape term only (gamma = 0)                              [Tab. 6 (ii)]
  oe_only  SiMA with the orientation term only (beta = 0)

Every single-view method reads the same multi-view batches (``batch_size / 8`` frames of 8 views
each), which SiMA's teacher needs, and starts from the same pre-trained modules (the seed's MVR
backbone and shape branch, when 'mvr' is among the methods), so the methods differ only in their
losses and modules. The score is the last checkpoint's (equal budgets), not the best on
validation.

Each run lives in ``<workdir>/seed<S>/<method>`` and is skipped when its ``test.json`` exists, so
an interrupted reproduction continues where it stopped (the trainer itself resumes a run from its
last checkpoint). Compiled programs are cached in ``<workdir>/jax_cache``: every seed after the
first reuses them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

METHODS = ("mvr", "svr", "sima", "no_ofe", "se_only", "oe_only")
METHOD_LABELS = {
    "mvr": "MVR (8 views)", "svr": "SVR", "sima": "SiMA-SVR", "no_ofe": "SVR w/o OFE",
    "se_only": "SiMA, L_SE only", "oe_only": "SiMA, L_OE only",
}
PLOT_LABELS = {"mvr": "MVR", "svr": "SVR", "sima": "SiMA", "no_ofe": "no OFE",
               "se_only": "SE only", "oe_only": "OE only"}
GROUPS = (("overall", "All"), ("occluded", "Occluded"), ("non_occluded", "Non-occluded"))
TABLE_METRICS = (("jpe", "JPE"), ("vpe", "VPE"), ("pa_jpe", "PA-JPE"), ("pa_vpe", "PA-VPE"),
                 ("f5", "F@5"))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--dataset", default="synthetic_hands/default",
                      help="TFDS name/config (built on first use when missing)")
  parser.add_argument("--data-dir", default="data/tfds")
  parser.add_argument("--variant", default="small", choices=("official", "small", "tiny"))
  parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (>= 3 for a std)")
  parser.add_argument("--mvr-steps", type=int, default=3000)
  parser.add_argument("--svr-steps", type=int, default=3000)
  parser.add_argument("--methods", default=",".join(METHODS),
                      help=f"comma-separated subset of {METHODS}; SiMA methods need 'mvr'")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="extra config override for every run (JSON value), e.g. "
                      "--set loss.rotation=2.0; repeatable")
  args = parser.parse_args(argv)
  args.methods = [m for m in args.methods.split(",") if m]
  unknown = sorted(set(args.methods) - set(METHODS))
  if unknown:
    parser.error(f"unknown methods {unknown}; expected a subset of {METHODS}")
  args.methods = [m for m in METHODS if m in args.methods]  # the teacher (mvr) first
  if any(m in ("sima", "se_only", "oe_only") for m in args.methods) and "mvr" not in args.methods:
    parser.error("the SiMA methods distil from the MVR teacher: add 'mvr' to --methods")
  args.seeds = [int(s) for s in args.seeds.split(",") if s]
  return args


def set_path(config, key: str, value) -> None:
  """``config[a][b] = value`` for ``key = 'a.b'``."""
  node = config
  *parents, leaf = key.split(".")
  for parent in parents:
    node = node[parent]
  node[leaf] = value


def method_config(method: str, args: argparse.Namespace, seed: int, teacher_dir: str):
  """The training config of one method and seed: ``configs/<stage>_synthetic.py`` with the
  method's switches."""
  from simajax import config_lib  # pylint: disable=import-outside-toplevel
  stage = "mvr" if method == "mvr" else "svr"
  # The recipe of configs/<stage>_synthetic.py (which says why each value), then this
  # experiment's data, seed and step budget.
  config = config_lib.load_config(
      config_lib.config_file(f"{stage}_synthetic.py") + f":variant={args.variant}")
  config.seed = seed
  config.data.name = args.dataset
  config.data.data_dir = args.data_dir
  config.data.mode = "multi_view"
  config.total_epochs = None
  config.total_steps = args.mvr_steps if stage == "mvr" else args.svr_steps
  config.optim.decay_epochs = []  # one constant rate: the budgets are far below 12 epochs
  # Ten validation points per run draw the learning curves.
  config.eval_every_steps = max(1, config.total_steps // 10)
  config.checkpoint.every_steps = max(1, config.total_steps // 4)
  if stage == "svr":
    config.distill.enabled = method in ("sima", "se_only", "oe_only")
    config.distill.teacher_checkpoint = teacher_dir if config.distill.enabled else None
    config.distill.se_weight = 0.0 if method == "oe_only" else config.distill.se_weight
    config.distill.oe_weight = 0.0 if method == "se_only" else config.distill.oe_weight
    config.model.use_ofe = method != "no_ofe"
    # Every single-view method starts from the same pre-trained modules, the seed's MVR backbone
    # and shape branch (config.init_from_modules), as the paper's SVRs all start from one
    # pre-trained encoder (MobRecon's).
    config.init_from = teacher_dir if "mvr" in args.methods else None
  for item in args.set:
    key, _, value = item.partition("=")
    set_path(config, key, json.loads(value))
  return config


def run_method(method: str, args: argparse.Namespace, seed: int) -> dict:
  """Trains (or resumes) one run and scores its last checkpoint on the test split."""
  from simajax import train  # pylint: disable=import-outside-toplevel
  from simajax.training import evaluation  # pylint: disable=import-outside-toplevel
  seed_dir = os.path.join(args.workdir, f"seed{seed}")
  run_dir = os.path.join(seed_dir, method)
  result_file = os.path.join(run_dir, "test.json")
  if os.path.exists(result_file):
    with open(result_file, encoding="utf-8") as f:
      return json.load(f)
  config = method_config(method, args, seed, os.path.join(seed_dir, "mvr"))
  start = time.perf_counter()
  train.train_and_evaluate(config, run_dir)
  train_s = time.perf_counter() - start
  result = evaluation.evaluate_run(run_dir, step=config.total_steps)
  result = {"metrics": result["metrics"], "train_s": train_s, "seed": seed, "method": method,
            "steps": config.total_steps}
  with open(result_file, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  return result


def aggregate(results: list[dict]) -> dict:
  """{method: {group: {metric: (mean, std, n)}}} over seeds (std with ddof=1; 0 for one seed)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  table = {}
  for method in METHODS:
    runs = [r for r in results if r["method"] == method]
    if not runs:
      continue
    table[method] = {}
    for group, _ in GROUPS:
      table[method][group] = {}
      for key, _ in TABLE_METRICS:
        values = np.asarray([r["metrics"][group][key] for r in runs
                             if r["metrics"][group][key] is not None], np.float64)
        if key.startswith("f"):
          values = values * 100.0
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table[method][group][key] = (float(values.mean()) if len(values) else None, std,
                                     len(values))
  return table


def format_table(table: dict) -> str:
  """Markdown: one row per method, JPE/VPE/PA-JPE/PA-VPE (mm) and F@5 (%) per view group."""
  header = ["Method"] + [f"{label} {name}" for _, label in GROUPS for _, name in TABLE_METRICS]
  lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for method, groups in table.items():
    cells = [METHOD_LABELS[method]]
    for group, _ in GROUPS:
      for key, _ in TABLE_METRICS:
        mean, std, n = groups[group][key]
        cells.append("-" if mean is None else f"{mean:.2f} ± {std:.2f}" if n > 1
                     else f"{mean:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def mean_curves(args: argparse.Namespace) -> dict:
  """{method label: {"vpe"|"pa_vpe": (steps, mean over seeds)}} from the runs' metrics.jsonl,
  on the validation steps every seed logged."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from simajax.training import logs  # pylint: disable=import-outside-toplevel
  curves = {}
  for method in args.methods:
    runs = [logs.read_curve(os.path.join(args.workdir, f"seed{seed}", method))
            for seed in args.seeds]
    curves[PLOT_LABELS[method]] = {}
    for key in ("vpe", "pa_vpe"):
      common = sorted(set.intersection(*(set(r[f"val/{key}"][0].tolist()) for r in runs)))
      values = [np.mean([dict(zip(*r[f"val/{key}"]))[s] for r in runs]) for s in common]
      curves[PLOT_LABELS[method]][key] = (np.asarray(common), np.asarray(values))
  return curves


def render_plot(table: dict, path: str) -> None:
  """Bars of VPE and PA-VPE (mean with +-std whiskers) on occluded and non-occluded views."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  from simajax import evaluate  # pylint: disable=import-outside-toplevel
  panels = (("vpe", "VPE (mm)"), ("pa_vpe", "PA-VPE (mm)"))
  bars = (("occluded", (200, 70, 60)), ("non_occluded", (70, 120, 200)))
  methods = list(table)
  width, height, margin = 1100, 560, 70
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  font, small = evaluate._font(18), evaluate._font(13)  # pylint: disable=protected-access
  panel_w = (width - margin) / len(panels)
  for p, (key, title) in enumerate(panels):
    x0, y0, y1 = margin + p * panel_w, 60, height - 90
    values = [table[m][g][key] for m in methods for g, _ in bars]
    top = max((mean + std for mean, std, _ in values if mean is not None), default=1.0) * 1.15
    draw.text((x0 + panel_w / 2, 30), title, fill="black", font=font, anchor="mm")
    draw.line([(x0, y1), (x0 + panel_w - 20, y1)], fill="black", width=2)
    for tick in range(5):
      value = top * tick / 4
      y = y1 - (y1 - y0) * tick / 4
      draw.text((x0 - 6, y), f"{value:.0f}", fill="black", font=small, anchor="rm")
      draw.line([(x0, y), (x0 + panel_w - 20, y)], fill=(225, 225, 225))
    slot = (panel_w - 40) / len(methods)
    for i, method in enumerate(methods):
      for b, (group, colour) in enumerate(bars):
        mean, std, _ = table[method][group][key]
        if mean is None:
          continue
        left = x0 + 10 + i * slot + b * slot * 0.4 + slot * 0.1
        right = left + slot * 0.38
        y = y1 - (y1 - y0) * mean / top
        draw.rectangle([left, y, right, y1], fill=colour)
        mid = (left + right) / 2
        for edge in (mean - std, mean + std):
          draw.line([(mid - 4, y1 - (y1 - y0) * edge / top), (mid + 4, y1 - (y1 - y0) * edge / top)],
                    fill="black")
        draw.line([(mid, y1 - (y1 - y0) * (mean - std) / top),
                   (mid, y1 - (y1 - y0) * (mean + std) / top)], fill="black")
      draw.text((x0 + 10 + (i + 0.5) * slot, y1 + 8), PLOT_LABELS[method], fill="black",
                font=small, anchor="ma")
  for b, (group, colour) in enumerate(bars):
    x = margin + b * 200
    draw.rectangle([x, height - 35, x + 18, height - 17], fill=colour)
    draw.text((x + 26, height - 26), group.replace("_", "-") + " views", fill="black",
              font=small, anchor="lm")
  image.save(path, format="PNG")


def main(argv=None) -> int:
  args = parse_args(argv)
  args.workdir = os.path.abspath(args.workdir)
  os.makedirs(args.workdir, exist_ok=True)
  import jax  # pylint: disable=import-outside-toplevel
  # Seeds change only values, not programs: every seed after the first reuses the compilations.
  jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  start = time.perf_counter()
  results = []
  for seed in args.seeds:
    for method in args.methods:
      result = run_method(method, args, seed)
      results.append(result)
      overall = result["metrics"]["overall"]
      print(f"seed {seed} {method}: VPE {overall['vpe']:.2f} PA-VPE {overall['pa_vpe']:.2f} mm "
            f"({result['train_s'] / 60:.1f} min)", flush=True)
  table = aggregate(results)
  markdown = format_table(table)
  with open(os.path.join(args.workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(f"{args.dataset}, variant {args.variant}, seeds {args.seeds}, "
            f"MVR {args.mvr_steps} / SVR {args.svr_steps} steps; errors in mm, F@5 in %, "
            f"mean ± std over seeds\n\n" + markdown)
  with open(os.path.join(args.workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"args": vars(args), "runs": results,
               "wall_s_this_invocation": time.perf_counter() - start}, f, indent=1)
  render_plot(table, os.path.join(args.workdir, "results.png"))
  from simajax import evaluate, quickstart  # pylint: disable=import-outside-toplevel
  config = method_config(args.methods[0], args, args.seeds[0], "")
  baseline = quickstart.mean_mesh_baseline(config, (config.data.eval_split,))
  evaluate.render_learning_curves(
      mean_curves(args), baseline[config.data.eval_split]["metrics"]["overall"],
      os.path.join(args.workdir, "learning_curves.png"),
      title=f"validation split of {args.dataset}, mean over seeds {args.seeds}")
  print("\n" + markdown)
  print(f"Wall time {(time.perf_counter() - start) / 60:.1f} min; table, plot and per-run "
        f"numbers in {args.workdir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
