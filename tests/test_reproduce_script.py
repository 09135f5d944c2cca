"""scripts/reproduce_synthetic.py: per-method configs, flag checks and the seed aggregation
(the training runs themselves are what tests/test_train.py covers)."""

import importlib
import pathlib

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(name="reproduce")
def _reproduce(monkeypatch):
  monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
  return importlib.import_module("reproduce_synthetic")


def test_methods_differ_only_in_their_switches(reproduce):
  args = reproduce.parse_args(["--workdir", "w", "--dataset", "synthetic_hands/tiny",
                               "--variant", "tiny", "--svr-steps", "40", "--mvr-steps", "30",
                               "--set", "loss.rotation=2.0"])
  configs = {m: reproduce.method_config(m, args, seed=3, teacher_dir="w/seed3/mvr")
             for m in reproduce.METHODS}
  assert configs["mvr"].stage == "mvr" and configs["mvr"].total_steps == 30
  for method, config in configs.items():
    assert config.seed == 3 and config.data.name == "synthetic_hands/tiny"
    assert config.data.mode == "multi_view" and config.loss.rotation == 2.0
    if method == "mvr":
      continue
    assert config.stage == "svr" and config.total_steps == 40
    distilled = method in ("sima", "se_only", "oe_only")
    assert config.distill.enabled == distilled
    assert config.distill.teacher_checkpoint == ("w/seed3/mvr" if distilled else None)
    assert config.model.use_ofe == (method != "no_ofe")
  assert (configs["se_only"].distill.se_weight, configs["se_only"].distill.oe_weight) == (1.0, 0.0)
  assert (configs["oe_only"].distill.se_weight, configs["oe_only"].distill.oe_weight) == (0.0, 1.0)
  assert configs["sima"].distill.se_weight == configs["sima"].distill.oe_weight == 1.0


def test_sima_methods_need_the_teacher_and_unknown_methods_are_refused(reproduce, capsys):
  for methods, message in (("svr,sima", "add 'mvr'"), ("svr,bogus", "unknown methods")):
    with pytest.raises(SystemExit):
      reproduce.parse_args(["--workdir", "w", "--methods", methods])
    assert message in capsys.readouterr().err


def test_aggregate_is_mean_and_sample_std_over_seeds(reproduce, tmp_path):
  rng = np.random.default_rng(0)
  runs = []
  for seed in range(3):
    for method in ("svr", "sima"):
      groups = {g: {k: float(rng.uniform(1, 50)) for k, _ in reproduce.TABLE_METRICS}
                for g, _ in reproduce.GROUPS}
      groups["occluded"]["vpe"] = None if method == "svr" and seed == 0 else 10.0 + seed
      runs.append({"method": method, "seed": seed, "metrics": groups})
  table = reproduce.aggregate(runs)
  assert list(table) == ["svr", "sima"]
  values = [r["metrics"]["overall"]["pa_vpe"] for r in runs if r["method"] == "sima"]
  mean, std, n = table["sima"]["overall"]["pa_vpe"]
  assert (mean, std, n) == pytest.approx((np.mean(values), np.std(values, ddof=1), 3))
  f5 = [r["metrics"]["non_occluded"]["f5"] * 100 for r in runs if r["method"] == "svr"]
  assert table["svr"]["non_occluded"]["f5"][0] == pytest.approx(np.mean(f5))
  # An empty group of one seed is left out, not counted as zero.
  assert table["svr"]["occluded"]["vpe"] == pytest.approx((11.5, np.std([11, 12], ddof=1), 2))
  markdown = reproduce.format_table(table)
  assert markdown.count("\n") == 4 and "SiMA-SVR" in markdown and "±" in markdown
  reproduce.render_plot(table, str(tmp_path / "plot.png"))
  assert (tmp_path / "plot.png").stat().st_size > 1000
