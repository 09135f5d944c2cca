"""`python -m simajax.evaluate`: reports, hand-computable metrics and input validation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from simajax import evaluate
from simajax import metrics as M

N = 16  # the batch size of test_metrics, so the jitted metrics are compiled once per session


def _hands(seed=0):
  rng = np.random.default_rng(seed)
  centre = np.array([0.05, -0.02, 0.7])
  joints = (rng.normal(scale=0.04, size=(N, 21, 3)) + centre).astype(np.float32)
  verts = (rng.normal(scale=0.04, size=(N, 778, 3)) + centre).astype(np.float32)
  return joints, verts


@pytest.fixture
def files(tmp_path):
  """GT hands, and a prediction whose joints 1..20 and vertices are 2 mm off along x."""
  joints, verts = _hands()
  pred_joints = joints.copy()
  pred_joints[:, 1:, 0] += 0.002
  visibility = np.array([-1.0, 0.1, 0.5, 0.39, 0.4, 1.2] + [0.2] * 5 + [0.9] * 5)
  np.savez(tmp_path / "gt.npz", joints=joints, verts=verts, visibility=visibility)
  np.savez(tmp_path / "pred.npz", joints=pred_joints, verts=verts + [0.002, 0.0, 0.0])
  return tmp_path, visibility


def _run(tmp_path, *extra, pred="pred.npz", gt="gt.npz"):
  """The CLI's exit status: main's return value, or the status of its SystemExit."""
  try:
    return evaluate.main(["--pred-npz", str(tmp_path / pred), "--gt-npz", str(tmp_path / gt),
                          "--out", str(tmp_path / "out" / "metrics.json"), *extra])
  except SystemExit as e:
    return e.code


def test_cli_writes_hand_computable_metrics_table_and_plot(files, capsys):
  tmp_path, visibility = files
  rc = _run(tmp_path, "--table", str(tmp_path / "out" / "metrics.md"),
            "--plot", str(tmp_path / "out" / "pck.png"))
  assert rc == 0, capsys.readouterr().err
  results = json.loads((tmp_path / "out" / "metrics.json").read_text())

  # Root-relative, every vertex and joints 1..20 are 2 mm off, the wrist 0 mm. On the PCK grid
  # t_i = 50 i / 99 a 2 mm error passes from i = 4 on: trapezoid area 95.5 steps of 99.
  overall = results["metrics"]["overall"]
  expected = {"jpe": 2.0 * 20 / 21, "vpe": 2.0, "vauc": 95.5 / 99,
              "jauc": (20 * 95.5 / 99 + 1.0) / 21, "f5": 1.0, "f15": 1.0, "pa_vpe": 0.0,
              "pa_f5": 1.0, "pa_f15": 1.0}
  for name, value in expected.items():
    assert overall[name] == pytest.approx(value, abs=2e-4), name
  assert set(M.METRIC_NAMES) | {"count"} == set(overall)

  occluded = (visibility >= 0) & (visibility < 0.4)
  assert overall["count"] == N
  assert results["metrics"]["occluded"]["count"] == occluded.sum() == 7
  assert results["metrics"]["non_occluded"]["count"] == (visibility >= 0.4).sum() == 8
  assert results["unknown_visibility"] == 1
  assert len(results["pck_curves"]["thresholds_mm"]) == 100
  assert results["inputs"]["units"] == "m"

  table = (tmp_path / "out" / "metrics.md").read_text()
  header = next(line for line in table.splitlines() if line.startswith("| Method | Subset"))
  assert [c.strip() for c in header.split("|")[4:-1]] == [
      "PA-JPE↓", "PA-JAUC↑", "PA-VPE↓", "PA-VAUC↑", "PA-F@5↑", "PA-F@15↑", "JPE↓", "JAUC↑",
      "VPE↓", "VAUC↑", "F@5↑", "F@15↑"]  # the paper's Table 1 order
  row = next(line for line in table.splitlines() if line.startswith("| simajax | all |"))
  cells = [c.strip() for c in row.split("|")[1:-1]]
  assert cells[2] == str(N) and cells[5] == "0.00" and cells[11] == "2.00"  # PA-VPE, VPE in mm
  assert cells[13] == "100.00"  # F@5 in %
  assert "Occluded VPE↓" in table and "Non-occluded PA-F@5↑" in table

  image = Image.open(tmp_path / "out" / "pck.png").convert("RGB")
  assert image.size == (900, 620)
  colours = {tuple(c) for c in np.asarray(image).reshape(-1, 3)}
  for _, _, _, colour in evaluate._CURVES:
    assert colour in colours  # every curve and its legend entry is drawn
  assert "N=16" in capsys.readouterr().out


def test_units_mm(files, capsys):
  tmp_path, visibility = files
  for name in ("pred", "gt"):
    with np.load(tmp_path / f"{name}.npz") as data:
      arrays = dict(data)
    np.savez(tmp_path / f"{name}_mm.npz", **{k: v * 1000.0 if k != "visibility" else v
                                             for k, v in arrays.items()})
  assert _run(tmp_path, gt="gt_mm.npz") == 2
  err = capsys.readouterr().err
  assert "gt_mm.npz" in err and "millimetres" in err and "1000" in err and "--units mm" in err

  assert _run(tmp_path, "--units", "mm", pred="pred_mm.npz", gt="gt_mm.npz") == 0
  in_mm = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
  assert _run(tmp_path) == 0
  in_m = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
  for group in M.GROUPS:
    for name in M.METRIC_NAMES:
      assert in_mm[group][name] == pytest.approx(in_m[group][name], rel=1e-4, abs=1e-4)


def _corrupt(tmp_path, file, **changes):
  with np.load(tmp_path / file) as data:
    arrays = dict(data)
  for key, value in changes.items():
    if value is None:
      del arrays[key]
    else:
      arrays[key] = value(arrays[key]) if callable(value) else value
  np.savez(tmp_path / file, **arrays)


def _with(index, value):
  def change(a):
    a = a.copy()
    a[index] = value
    return a
  return change


@pytest.mark.parametrize("file,changes,words", [
    ("pred.npz", dict(verts=_with((3, 7, 1), np.nan)), ["pred.npz", "'verts'", "NaN", "index 3"]),
    ("gt.npz", dict(joints=_with((0, 2, 0), np.inf)), ["gt.npz", "'joints'", "NaN/inf"]),
    ("pred.npz", dict(verts=lambda a: a[:, :700]), ["pred.npz", "'verts'", "[N, 778, 3]"]),
    ("gt.npz", dict(joints=lambda a: a[:10], verts=lambda a: a[:10], visibility=lambda a: a[:10]),
     ["pred.npz", "16 examples", "gt.npz", "10"]),
    ("pred.npz", dict(joints=lambda a: a[:5]), ["pred.npz", "'joints' has 5", "'verts' has 16"]),
    ("gt.npz", dict(verts=None), ["gt.npz", "no array 'verts'"]),
    ("pred.npz", dict(joints=np.array([{"a": 1}], dtype=object)), ["pred.npz", "'joints'"]),
    ("gt.npz", dict(visibility=lambda a: a[:3]), ["gt.npz", "'visibility'", "[16]"]),
    ("gt.npz", dict(visibility=_with(2, np.nan)), ["gt.npz", "'visibility'", "-1 for unknown"]),
])
def test_bad_input_is_named(files, capsys, file, changes, words):
  tmp_path, _ = files
  _corrupt(tmp_path, file, **changes)
  assert _run(tmp_path) == 2
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and err.startswith("error: "), err
  for word in words:
    assert word in err
  assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_file(tmp_path, capsys):
  assert _run(tmp_path) == 2
  assert "pred.npz: file not found" in capsys.readouterr().err


def test_module_entry_point():
  completed = subprocess.run([sys.executable, "-m", "simajax.evaluate", "--help"],
                             capture_output=True, text=True, check=False, timeout=120)
  assert completed.returncode == 0
  assert "--pred-npz" in completed.stdout and "--units" in completed.stdout
