"""Scores saved predictions against ground truth and writes JSON, markdown and a PCK plot.

Usage:
  python -m simajax.evaluate --pred-npz P.npz --gt-npz G.npz --out metrics.json \
      [--table metrics.md] [--plot pck.png] [--units m|mm] [--occlusion-threshold 0.4]
  python -m simajax.evaluate --checkpoint RUN_DIR [--config CONFIG] [--step N] [--split test] \
      --out metrics.json [--table metrics.md] [--plot pck.png]

The second form scores a training run's checkpoint (default: its best by the run's
``checkpoint.best_metric``) on a whole split of its dataset (default the test split), padded and
masked so every example counts once, overall and per occlusion subset.

Both files hold ``joints [N,21,3]`` and ``verts [N,778,3]`` in metres (camera frame, or any frame:
the metrics are root-relative); the ground-truth file may add ``visibility [N]``, the per-example
visible ratio of the hand (negative = unknown), which splits the examples into occluded
(ratio < threshold) and non-occluded subsets (docs/conventions.md#occlusion-label).

Programmatic use (e.g. checkpoint evaluation): `score_predictions` scores arrays and returns the
results dict of `simajax.metrics.MetricAccumulator.result`; `write_reports` writes it out. A
caller that already runs the metrics batch by batch can feed its own accumulator and pass its
``result()`` to `write_reports`.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
from typing import Sequence

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from simajax import cli
from simajax import metrics as metrics_lib
from simajax import runtime

NUM_JOINTS = 21
NUM_VERTS = 778
FINGERTIPS = (4, 8, 12, 16, 20)
# A real hand spans about 0.2 m from wrist to fingertip; ten times that is no longer metres.
MAX_HAND_SPAN_M = 1.0
# Camera-frame hands sit within a few metres of the camera.
MAX_MEDIAN_COORD_M = 10.0


class InputError(cli.UserError):
  """Bad evaluation input; the message names the file and the array."""


# ------------------------------------------------------------------------------------------------
# Loading and validation.
# ------------------------------------------------------------------------------------------------


def _check_points(array: np.ndarray, name: str, path: str, points: int) -> np.ndarray:
  if array.ndim != 3 or array.shape[1:] != (points, 3):
    raise InputError(f"{path}: array {name!r} has shape {array.shape}, expected [N, {points}, 3]")
  if not np.issubdtype(array.dtype, np.number):
    raise InputError(f"{path}: array {name!r} has dtype {array.dtype}, expected floats")
  bad = ~np.isfinite(array)
  if bad.any():
    examples = np.unique(np.nonzero(bad)[0])
    raise InputError(f"{path}: array {name!r} has {int(bad.sum())} NaN/inf values, in "
                     f"{len(examples)} examples (first: index {int(examples[0])})")
  return array


def _check_metres(joints: np.ndarray, verts: np.ndarray, path: str) -> None:
  """Rejects arrays whose scale says millimetres rather than metres."""
  span = np.linalg.norm(joints[:, FINGERTIPS, :] - joints[:, :1, :], axis=-1).max(axis=1)
  median_span = float(np.median(span))
  median_coord = float(np.median(np.abs(verts)))
  if median_span > MAX_HAND_SPAN_M or median_coord > MAX_MEDIAN_COORD_M:
    raise InputError(
        f"{path}: 'joints'/'verts' look like millimetres, not metres (median wrist-to-fingertip "
        f"distance {median_span:.4g}, median |vertex coordinate| {median_coord:.4g}; a hand spans "
        f"about 0.2 m). Divide the arrays by 1000 or pass --units mm.")


def load_hand_npz(path: str | pathlib.Path, units: str = "m",
                  with_visibility: bool = False) -> dict[str, np.ndarray]:
  """Loads and validates ``joints`` and ``verts`` (and optionally ``visibility``) from an npz.

  Args:
    path: the .npz file.
    units: 'm' or 'mm' (then divided by 1000).
    with_visibility: also read the optional ``visibility [N]`` array.

  Returns:
    {'joints': [N,21,3] float32 metres, 'verts': [N,778,3] float32 metres,
     'visibility': [N] float (only if asked and present)}.

  Raises:
    InputError: naming the file and array, for a missing file or array, a wrong shape, NaN/inf,
      or values in millimetres.
  """
  path = str(path)
  if units not in ("m", "mm"):
    raise InputError(f"units must be 'm' or 'mm', got {units!r}")
  what = "joints [N, 21, 3] and verts [N, 778, 3]" + (", visibility [N]" if with_visibility
                                                      else "")
  try:
    data = cli.open_npz(path, what)
  except FileNotFoundError:
    raise InputError(f"{path}: file not found") from None
  with data:
    for key in ("joints", "verts"):
      if key not in data.files:
        raise InputError(f"{path}: no array {key!r} (arrays present: {sorted(data.files)})")

    def read(key):
      try:
        return np.asarray(data[key])
      except ValueError as e:  # e.g. an object array, which needs pickle
        raise InputError(f"{path}: array {key!r} could not be read ({e})") from None

    joints = _check_points(read("joints"), "joints", path, NUM_JOINTS)
    verts = _check_points(read("verts"), "verts", path, NUM_VERTS)
    visibility = read("visibility") if with_visibility and "visibility" in data.files else None
  if joints.shape[0] != verts.shape[0]:
    raise InputError(f"{path}: 'joints' has {joints.shape[0]} examples but 'verts' has "
                     f"{verts.shape[0]}")
  if joints.shape[0] == 0:
    raise InputError(f"{path}: 'joints' and 'verts' hold no examples")
  scale = 1e-3 if units == "mm" else 1.0
  out = {"joints": (joints * scale).astype(np.float32), "verts": (verts * scale).astype(np.float32)}
  _check_metres(out["joints"], out["verts"], path)
  if visibility is not None:
    if visibility.shape != (joints.shape[0],):
      raise InputError(f"{path}: array 'visibility' has shape {visibility.shape}, expected "
                       f"[{joints.shape[0]}] (one ratio per example)")
    if not np.issubdtype(visibility.dtype, np.number) or np.isnan(visibility).any():
      raise InputError(f"{path}: array 'visibility' must be numbers without NaN "
                       "(use -1 for unknown visibility)")
    out["visibility"] = visibility.astype(np.float64)
  return out


# ------------------------------------------------------------------------------------------------
# Scoring.
# ------------------------------------------------------------------------------------------------


def score_predictions(pred_joints, pred_verts, gt_joints, gt_verts, visibility=None, mask=None, *,
                      batch_size: int = 256,
                      occlusion_threshold: float = metrics_lib.OCCLUSION_THRESHOLD,
                      fscore_chunk_size: int = 2) -> dict:
  """Scores a whole split of predictions; every example is counted exactly once.

  Batches have a fixed size (the last one is padded and masked), so the metrics compile once.

  Args:
    pred_joints: [N, 21, 3] predicted joints, metres.
    pred_verts: [N, 778, 3] predicted vertices, metres.
    gt_joints: [N, 21, 3] ground-truth joints, metres.
    gt_verts: [N, 778, 3] ground-truth vertices, metres.
    visibility: optional [N] visibility ratios (negative = unknown).
    mask: optional [N] bool, False for rows to leave out (e.g. padding).
    batch_size: examples per jitted call.
    occlusion_threshold: visibility ratio below which an example is occluded.
    fscore_chunk_size: see `simajax.metrics.fscore`.

  Returns:
    The results dict of `simajax.metrics.MetricAccumulator.result`.
  """
  arrays = [np.asarray(a, np.float32) for a in (pred_joints, pred_verts, gt_joints, gt_verts)]
  n = arrays[0].shape[0]
  for name, a in zip(("pred_joints", "pred_verts", "gt_joints", "gt_verts"), arrays):
    if a.shape[0] != n:
      raise ValueError(f"{name} has {a.shape[0]} examples, pred_joints has {n}")
  if n == 0:
    raise ValueError("no examples to score")
  visibility = np.full(n, -1.0) if visibility is None else np.asarray(visibility, np.float64)
  mask = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
  if visibility.shape != (n,) or mask.shape != (n,):
    raise ValueError(f"visibility {visibility.shape} and mask {mask.shape} must have shape ({n},)")

  batch_size = min(batch_size, n)
  scorer = functools.partial(metrics_lib.per_example_metrics_jit,
                             fscore_chunk_size=fscore_chunk_size)
  accumulator = metrics_lib.MetricAccumulator(occlusion_threshold)

  def batch(start):
    stop = min(start + batch_size, n)
    rows = np.arange(start, start + batch_size)
    valid = rows < stop
    rows = np.minimum(rows, n - 1)  # pad by repeating the last example, masked out below
    return scorer(*(a[rows] for a in arrays)), mask[rows] & valid, visibility[rows]

  pending = batch(0)
  for start in range(batch_size, n + batch_size, batch_size):
    # Dispatch the next batch before reading this one back, so host and device work overlap.
    upcoming = batch(start) if start < n else None
    out, valid, vis = pending
    accumulator.update(jax.device_get(out), valid, vis)
    pending = upcoming
  return accumulator.result()


# ------------------------------------------------------------------------------------------------
# Reports.
# ------------------------------------------------------------------------------------------------

# (metric, header, scale to the paper's units); AUC and F in %, errors in mm.
_TABLE1_COLUMNS = (("pa_jpe", "PA-JPE↓", 1), ("pa_jauc", "PA-JAUC↑", 100),
                   ("pa_vpe", "PA-VPE↓", 1), ("pa_vauc", "PA-VAUC↑", 100),
                   ("pa_f5", "PA-F@5↑", 100), ("pa_f15", "PA-F@15↑", 100),
                   ("jpe", "JPE↓", 1), ("jauc", "JAUC↑", 100), ("vpe", "VPE↓", 1),
                   ("vauc", "VAUC↑", 100), ("f5", "F@5↑", 100), ("f15", "F@15↑", 100))
_TABLE3_COLUMNS = (("vpe", "VPE↓", 1), ("pa_vpe", "PA-VPE↓", 1), ("pa_f5", "PA-F@5↑", 100))
_GROUP_LABELS = {"overall": "all", "occluded": "occluded", "non_occluded": "non-occluded"}


def _cell(value, scale) -> str:
  return "–" if value is None else f"{value * scale:.2f}"


def format_markdown(results: dict, name: str = "simajax") -> str:
  """Markdown tables laid out like the paper's Table 1 (all metrics) and Table 3 (occlusion).

  Args:
    results: a `MetricAccumulator.result` dict.
    name: the method name in the first column.

  Returns:
    The markdown text.
  """
  metrics = results["metrics"]
  lines = [
      "## Results (Table 1 layout)",
      "",
      "Errors in mm; AUC and F-scores in % (the JSON holds fractions). Unaligned metrics are "
      "root-relative (wrist = joint 0); PA = Procrustes alignment with scale.",
      "",
      "| Method | Subset | N | " + " | ".join(h for _, h, _ in _TABLE1_COLUMNS) + " |",
      "|---|---|---:|" + "---:|" * len(_TABLE1_COLUMNS),
  ]
  for group in metrics_lib.GROUPS:
    entry = metrics[group]
    cells = [_cell(entry[key], scale) for key, _, scale in _TABLE1_COLUMNS]
    lines.append(f"| {name} | {_GROUP_LABELS[group]} | {entry['count']} | " + " | ".join(cells)
                 + " |")
  occluded, visible = metrics["occluded"], metrics["non_occluded"]
  lines += [
      "",
      "## Occluded vs non-occluded (Table 3 layout)",
      "",
      f"Occluded: visibility ratio < {results['occlusion_threshold']:g} "
      f"(N = {occluded['count']}); non-occluded: ratio >= {results['occlusion_threshold']:g} "
      f"(N = {visible['count']}); unknown visibility, in 'all' only: "
      f"{results['unknown_visibility']}.",
      "",
      "| Method | " + " | ".join(f"Occluded {h}" for _, h, _ in _TABLE3_COLUMNS) + " | "
      + " | ".join(f"Non-occluded {h}" for _, h, _ in _TABLE3_COLUMNS) + " |",
      "|---|" + "---:|" * (2 * len(_TABLE3_COLUMNS)),
      f"| {name} | "
      + " | ".join(_cell(occluded[key], scale) for key, _, scale in _TABLE3_COLUMNS) + " | "
      + " | ".join(_cell(visible[key], scale) for key, _, scale in _TABLE3_COLUMNS) + " |",
      "",
  ]
  return "\n".join(lines)


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow without FreeType: a fixed bitmap font
    return ImageFont.load_default()


# (curve, legend label, AUC metric, RGB colour)
_CURVES = (("pa_verts", "PA vertices", "pa_vauc", (200, 40, 40)),
           ("verts", "vertices", "vauc", (40, 80, 200)),
           ("pa_joints", "PA joints", "pa_jauc", (230, 140, 20)),
           ("joints", "joints", "jauc", (40, 150, 60)))


_METHOD_COLORS = ((40, 80, 200), (200, 40, 40), (40, 150, 60), (230, 140, 20), (140, 60, 170),
                  (20, 160, 170), (120, 120, 40), (200, 90, 150))


def render_learning_curves(curves: dict, baseline: dict | None, path: str | pathlib.Path,
                           title: str = "validation error during training") -> None:
  """Validation VPE and PA-VPE against the training step, one line per method, as a PNG.

  Args:
    curves: {method: {"vpe": (steps, values), "pa_vpe": (steps, values)}}, values in mm
      (``simajax.training.logs.read_curve`` gives them under "val/vpe" and "val/pa_vpe").
    baseline: {"vpe": mm, "pa_vpe": mm} of the mean training mesh on the same split, drawn as a
      dashed line (None: no line).
    path: output .png file.
    title: the figure title.
  """
  panels = (("vpe", "VPE (mm)"), ("pa_vpe", "PA-VPE (mm)"))
  panel_w, height = 560, 520
  left, right, top, bottom = 80, 20, 70, 130
  image = Image.new("RGB", (panel_w * len(panels), height), "white")
  draw = ImageDraw.Draw(image)
  font, small = _font(18), _font(14)
  plot_h = height - top - bottom
  x_max = max([1] + [int(c[k][0].max()) for c in curves.values() for k, _ in panels
                     if len(c.get(k, ((), ()))[0])])
  for p, (key, label) in enumerate(panels):
    x0, plot_w = p * panel_w + left, panel_w - left - right
    values = [float(v) for c in curves.values() for v in c.get(key, ((), ()))[1]]
    if baseline and baseline.get(key) is not None:
      values.append(baseline[key])
    y_max = float(np.ceil(max(values + [1.0]) * 1.1 / 10.0) * 10.0)

    def to_px(x, y, x0=x0, plot_w=plot_w, y_max=y_max):
      return x0 + x / x_max * plot_w, top + (1.0 - min(y, y_max) / y_max) * plot_h

    for tick in np.linspace(0.0, y_max, 6):
      _, py = to_px(0, tick)
      draw.line([(x0, py), (x0 + plot_w, py)], fill=(225, 225, 225))
      draw.text((x0 - 8, py), f"{tick:g}", fill="black", font=small, anchor="rm")
    for tick in np.linspace(0.0, x_max, 5):
      px, _ = to_px(tick, 0)
      draw.text((px, top + plot_h + 6), f"{tick:.0f}", fill="black", font=small, anchor="mt")
    draw.rectangle([x0, top, x0 + plot_w, top + plot_h], outline="black", width=2)
    draw.text((x0 + plot_w / 2, top - 12), label, fill="black", font=font, anchor="mb")
    draw.text((x0 + plot_w / 2, top + plot_h + 28), "training step", fill="black", font=small,
              anchor="mt")
    if baseline and baseline.get(key) is not None:
      _, py = to_px(0, baseline[key])
      for dash in range(0, plot_w, 14):
        draw.line([(x0 + dash, py), (x0 + min(dash + 8, plot_w), py)], fill=(90, 90, 90), width=2)
    for (method, curve), color in zip(curves.items(), _METHOD_COLORS):
      steps, vals = curve.get(key, ((), ()))
      points = [to_px(x, y) for x, y in zip(steps, vals)]
      if len(points) > 1:
        draw.line(points, fill=color, width=3)
      for px, py in points:
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
  entries = list(zip(curves, _METHOD_COLORS))
  if baseline:
    entries.append(("mean training mesh", (90, 90, 90)))
  for i, (name, color) in enumerate(entries):
    x, y = 30 + (i % 3) * 370, height - 58 + (i // 3) * 24
    draw.line([(x, y), (x + 30, y)], fill=color, width=3)
    draw.text((x + 38, y), name, fill="black", font=small, anchor="lm")
  draw.text((image.width / 2, 18), title, fill="black", font=font, anchor="mt")
  image.save(path)


def render_pck_plot(results: dict, path: str | pathlib.Path, group: str = "overall",
                    title: str | None = None) -> None:
  """Draws the PCK curves of one group (like the paper's Fig. 5) as a PNG, with PIL only.

  Args:
    results: a `MetricAccumulator.result` dict.
    path: output .png file.
    group: 'overall', 'occluded' or 'non_occluded'.
    title: plot title; a default names the group and its count.
  """
  width, height = 900, 620
  left, right, top, bottom = 90, 30, 60, 80
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  font, small = _font(18), _font(15)
  thresholds = np.asarray(results["pck_curves"]["thresholds_mm"])
  x_max = float(thresholds[-1])
  plot_w, plot_h = width - left - right, height - top - bottom

  def to_px(x, y):
    return left + x / x_max * plot_w, top + (1.0 - y) * plot_h

  for tick in np.linspace(0.0, 1.0, 6):  # y grid and labels, in %
    _, py = to_px(0, tick)
    draw.line([(left, py), (left + plot_w, py)], fill=(225, 225, 225))
    draw.text((left - 10, py), f"{tick * 100:.0f}", fill="black", font=small, anchor="rm")
  for tick in np.linspace(0.0, x_max, 6):  # x grid and labels, in mm
    px, _ = to_px(tick, 0)
    draw.line([(px, top), (px, top + plot_h)], fill=(225, 225, 225))
    draw.text((px, top + plot_h + 8), f"{tick:g}", fill="black", font=small, anchor="mt")
  draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black", width=2)
  draw.text((left + plot_w / 2, height - 22), "error threshold (mm)", fill="black", font=font,
            anchor="mm")
  y_label = Image.new("RGB", (260, 30), "white")
  ImageDraw.Draw(y_label).text((130, 15), "PCK (%)", fill="black", font=font, anchor="mm")
  y_label = y_label.rotate(90, expand=True)
  image.paste(y_label, (12, top + plot_h // 2 - y_label.height // 2))
  count = results["metrics"][group]["count"]
  draw.text((left + plot_w / 2, top / 2),
            title or f"PCK curves ({_GROUP_LABELS[group]} examples, N = {count})",
            fill="black", font=font, anchor="mm")

  curves = results["pck_curves"][group]
  legend = []
  for key, label, auc_key, colour in _CURVES:
    curve = curves[key]
    if curve is None:
      continue
    points = [to_px(x, y) for x, y in zip(thresholds, curve)]
    draw.line(points, fill=colour, width=3, joint="curve")
    auc = results["metrics"][group][auc_key]
    legend.append((f"{label} (AUC {auc * 100:.2f}%)", colour))
  if not legend:
    draw.text((left + plot_w / 2, top + plot_h / 2), "no examples", fill="black", font=font,
              anchor="mm")
  # The curves rise to the top-left, so the legend goes bottom-right.
  box_w, row_h = 300, 26
  box_x = left + plot_w - box_w - 12
  box_y = top + plot_h - 12 - row_h * len(legend) - 8
  if legend:
    draw.rectangle([box_x, box_y, box_x + box_w, top + plot_h - 12], fill="white",
                   outline=(120, 120, 120))
  for i, (text, colour) in enumerate(legend):
    y = box_y + 4 + row_h * i + row_h / 2
    draw.line([(box_x + 10, y), (box_x + 45, y)], fill=colour, width=3)
    draw.text((box_x + 55, y), text, fill="black", font=small, anchor="lm")
  image.save(str(path), format="PNG")


def write_reports(results: dict, out_json: str | pathlib.Path,
                  table_md: str | pathlib.Path | None = None,
                  plot_png: str | pathlib.Path | None = None, name: str = "simajax") -> None:
  """Writes the results as JSON, and optionally as markdown tables and a PCK plot.

  Args:
    results: a `MetricAccumulator.result` dict (extra JSON-ready keys are kept).
    out_json: JSON output path (None values are written as null).
    table_md: optional markdown output path.
    plot_png: optional PNG output path (overall PCK curves).
    name: method name for the tables.
  """
  for path in (out_json, table_md, plot_png):
    if path is not None:
      pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(out_json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
  if table_md is not None:
    pathlib.Path(table_md).write_text(format_markdown(results, name), encoding="utf-8")
  if plot_png is not None:
    render_pck_plot(results, plot_png)


# ------------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
  """The command-line parser (exposed so other entry points can extend it)."""
  parser = cli.ArgumentParser(
      prog="python -m simajax.evaluate",
      description="Score hand-mesh predictions (JPE, VPE, PA-*, AUC, F@5/15, occlusion subsets).")
  parser.add_argument("--pred-npz", help="predictions: joints [N,21,3], verts [N,778,3]")
  parser.add_argument("--gt-npz",
                      help="ground truth: joints [N,21,3], verts [N,778,3], optional visibility [N]")
  parser.add_argument("--checkpoint", help="a training run directory (its --workdir) to score")
  parser.add_argument("--config", help="with --checkpoint: a config overriding the run's "
                      "config.json (path.py[:arg] or .json)")
  parser.add_argument("--step", type=int, help="with --checkpoint: checkpoint step (default best)")
  parser.add_argument("--split", help="with --checkpoint: dataset split (default the test split)")
  parser.add_argument("--data-dir", help="with --checkpoint: TFDS data directory override")
  parser.add_argument("--out", required=True, help="output JSON with all metrics")
  parser.add_argument("--table", default=None, help="optional markdown table output")
  parser.add_argument("--plot", default=None, help="optional PCK-curve PNG output")
  parser.add_argument("--units", choices=("m", "mm"), default="m",
                      help="units of both input files (default metres)")
  parser.add_argument("--occlusion-threshold", type=float,
                      default=metrics_lib.OCCLUSION_THRESHOLD,
                      help="visibility ratio below which an example is occluded (default 0.4)")
  parser.add_argument("--batch-size", type=int, default=None,
                      help="examples per jitted call (default 256; with --checkpoint the run's "
                      "batch size)")
  parser.add_argument("--name", default="simajax", help="method name in the markdown table")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI; returns 0. A bad input prints one line and exits with status 2 (``cli.run``)."""
  return cli.run(_main, argv)


def _main(argv: Sequence[str]) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.batch_size is not None and args.batch_size < 1:
    parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
  if not 0.0 < args.occlusion_threshold <= 1.0:
    parser.error(f"--occlusion-threshold must lie in (0, 1] (a visible ratio), got "
                 f"{args.occlusion_threshold}")
  runtime.configure_process()
  if args.checkpoint:
    if args.pred_npz or args.gt_npz:
      parser.error("give either --checkpoint or --pred-npz/--gt-npz, not both")
    return _evaluate_checkpoint(args)
  if not (args.pred_npz and args.gt_npz):
    parser.error("give --pred-npz and --gt-npz (or --checkpoint RUN_DIR)")
  args.batch_size = 256 if args.batch_size is None else args.batch_size
  pred = load_hand_npz(args.pred_npz, args.units)
  gt = load_hand_npz(args.gt_npz, args.units, with_visibility=True)
  if pred["joints"].shape[0] != gt["joints"].shape[0]:
    raise InputError(f"{args.pred_npz} has {pred['joints'].shape[0]} examples but "
                     f"{args.gt_npz} has {gt['joints'].shape[0]}")
  results = score_predictions(pred["joints"], pred["verts"], gt["joints"], gt["verts"],
                              gt.get("visibility"), batch_size=args.batch_size,
                              occlusion_threshold=args.occlusion_threshold)
  results["inputs"] = {"pred_npz": str(args.pred_npz), "gt_npz": str(args.gt_npz),
                       "units": args.units}
  write_reports(results, args.out, args.table, args.plot, name=args.name)
  overall = results["metrics"]["overall"]
  print(" ".join(f"{k}={overall[k]:.4f}" for k in metrics_lib.METRIC_NAMES)
        + f" (N={overall['count']}) -> {args.out}")
  return 0


def _evaluate_checkpoint(args) -> int:
  from simajax.training import evaluation  # pylint: disable=import-outside-toplevel
  results = evaluation.evaluate_run(args.checkpoint, config_spec=args.config, step=args.step,
                                    split=args.split, batch_size=args.batch_size,
                                    data_dir=args.data_dir)
  write_reports(results, args.out, args.table, args.plot, name=args.name)
  overall = results["metrics"]["overall"]
  run = results["run"]
  print(f"{run['stage']} step {run['step']} on {run['split']}: "
        + " ".join(f"{k}={overall[k]:.4f}" for k in metrics_lib.METRIC_NAMES
                   if overall[k] is not None) + f" (N={overall['count']}) -> {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
