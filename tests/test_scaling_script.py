"""scripts/scaling.py: the sweep's mechanics on fake CPU devices, its flag checks, and the random
benchmark batches it shares with scripts/compile_time.py."""

import importlib
import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(name="scripts")
def _scripts(monkeypatch):
  """The scripts folder on sys.path, as when a script runs (its own folder comes first)."""
  monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
  return importlib.import_module("scaling"), importlib.import_module("bench_batches")


@pytest.fixture(name="topology", scope="module")
def _topology():
  from simajax import config_lib, model_setup
  return model_setup.load_topology(config_lib.base_config("svr", "synthetic", "tiny"))


@pytest.mark.slow
def test_svr_sweep_rows(scripts, tmp_path, capsys):
  scaling, _ = scripts
  out = tmp_path / "rows.json"
  rows = scaling.main(["--stage", "svr", "--variant", "tiny", "--devices", "1,2",
                       "--per-device-batch", "2", "--steps", "1", "--json", str(out)])
  assert [r["devices"] for r in rows] == [1, 2]
  assert [r["global_batch"] for r in rows] == [2, 4]
  assert [r["mesh"] for r in rows] == ["1x1", "2x1"]
  for r in rows:
    assert math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0
    assert r["images_per_s"] == pytest.approx(r["global_batch"] / r["step_median_s"])
    assert 0 < r["step_min_s"] <= r["step_median_s"]
    assert math.isfinite(r["loss"])
  per_device = [r["images_per_s"] / r["devices"] for r in rows]
  assert rows[0]["efficiency"] == pytest.approx(1.0)
  assert rows[1]["efficiency"] == pytest.approx(per_device[1] / per_device[0])
  written = json.loads(out.read_text())
  assert written["rows"] == rows
  assert written["run"]["stage"] == "svr" and written["run"]["per_device_batch"] == 2
  table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
  assert len(table) == 1 + len(rows)  # header + one line per device count


def test_multi_view_batch_must_be_whole_frames(scripts, capsys):
  scaling, _ = scripts
  for stage in ("sima", "mvr"):
    with pytest.raises(SystemExit):
      scaling.parse_args(["--stage", stage, "--per-device-batch", "12"])
    assert "not a multiple of 8" in capsys.readouterr().err
  assert scaling.parse_args(["--stage", "svr", "--per-device-batch", "12"]).per_device_batch == 12


def test_flag_checks(scripts, capsys):
  scaling, _ = scripts
  assert scaling.parse_args(["--devices", "4,1,2,2"]).device_counts == [1, 2, 4]
  for argv, message in ((["--devices", "1,x"], "comma-separated integers"),
                        (["--devices", "0,2"], "positive device counts"),
                        (["--devices", "2,3", "--model-axis", "2"], "does not divide")):
    with pytest.raises(SystemExit):
      scaling.parse_args(argv)
    assert message in capsys.readouterr().err


def test_more_devices_than_available_is_refused(scripts):
  scaling, _ = scripts
  import jax
  too_many = len(jax.devices()) * 2
  with pytest.raises(ValueError, match=f"asks for {too_many} devices but JAX has"):
    scaling.main(["--variant", "tiny", "--devices", f"1,{too_many}"])


@pytest.mark.parametrize("multi_view", [False, True])
def test_random_batch_feeds_the_step_inputs(scripts, topology, multi_view):
  _, bench_batches = scripts
  from simajax.training import steps
  batch = bench_batches.random_batch(topology, 16, 32, multi_view=multi_view, seed=3)
  lead = (2, 8) if multi_view else (16,)
  assert batch["image"].shape == lead + (32, 32, 3)
  assert batch["mask"].shape == lead[:1]
  assert ("view_valid" in batch) == multi_view
  # The step's own helpers read every key they need, one row per image.
  device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
  truth = steps.per_view(device_batch, multi_view)  # the losses read the batch's keys directly
  num_verts, num_joints = topology.level_sizes[0], topology.joint_regressor.shape[0]
  assert truth["verts_rotated"].shape == (16, num_verts, 3)
  assert truth["joints_2d"].shape == (16, num_joints, 2)
  assert steps.example_weights(device_batch, multi_view).shape == (16,)
  rot = np.asarray(truth["rotation"], np.float64)
  np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  assert all(x.dtype in (np.float32, np.bool_) for x in batch.values())


def test_random_batch_rejects_partial_frames(scripts, topology):
  _, bench_batches = scripts
  with pytest.raises(ValueError, match="not a multiple of 8"):
    bench_batches.random_batch(topology, 12, 32, multi_view=True)
