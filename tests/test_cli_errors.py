"""Bad input to every CLI: one line on stderr, exit status 2, nothing written (issue 15).

The convention itself (``simajax.cli``): user errors print ``error: <one line>``; tracebacks only
with ``--verbose`` or ``SIMAJAX_DEBUG=1``; programming errors keep theirs. Then, per CLI, the
mistakes a new user makes: missing and corrupt files, unknown names, bad flag values, arrays of
the wrong shape, NaN predictions, checkpoints of another model variant and damaged checkpoints.
``simajax.train`` runs in subprocesses (tests/test_train.py: absl's flags are process-global);
the Dex-YCB build's own bad inputs are in tests/test_dexycb.py. Everything here runs in-process
and compiles nothing.
"""

from __future__ import annotations

import logging
import pathlib
import shutil

import numpy as np
import pytest

from data_pipelines import build
from fixtures import damage
from simajax import cli, config_lib, convert, evaluate, predict, quickstart


def run_cli(main, argv, capsys):
  """(exit status, stderr lines) of ``main(argv)``."""
  try:
    status = main([str(a) for a in argv])
  except SystemExit as e:
    status = e.code
  return status, capsys.readouterr().err.splitlines()


def assert_one_line(status, err, *words):
  assert status == 2, (status, err)
  assert len(err) == 1 and err[0].startswith("error: "), err
  for word in words:
    assert word in err[0], (word, err[0])


def files_under(path):
  return sorted(p.relative_to(path) for p in path.rglob("*")) if path.exists() else []


# ----------------------------------------------------------------------------------------------
# The convention.


def test_user_errors_are_one_line_and_programming_errors_keep_their_traceback(capsys,
                                                                              monkeypatch):
  def fails(argv):
    del argv
    raise cli.UserError("x.npz: array 'joints' has shape (2, 3), expected [N, 21, 3]\nmore")

  assert_one_line(*run_cli(lambda argv: cli.run(fails, argv), [], capsys),
                  "x.npz: array 'joints' has shape (2, 3), expected [N, 21, 3]",
                  cli.MORE_DETAILS)
  # With --verbose (or SIMAJAX_DEBUG=1) the traceback comes first, the one line last.
  for argv, env in ((["--verbose"], "0"), ([], "1")):
    monkeypatch.setenv(cli.DEBUG_ENV, env)
    status, err = run_cli(lambda a: cli.run(fails, a), argv, capsys)
    assert status == 2 and err[0] == "Traceback (most recent call last):"
    assert err[-1].startswith("error: x.npz")
  monkeypatch.delenv(cli.DEBUG_ENV)
  with pytest.raises(ZeroDivisionError):  # a bug is not the user's: Python's traceback
    cli.run(lambda argv: 1 / 0, [])
  status, err = run_cli(lambda a: cli.run(lambda _: open(a[0], encoding="utf-8"), a),
                        ["/nonexistent/x.json"], capsys)
  assert_one_line(status, err, "No such file or directory", "/nonexistent/x.json")


def test_open_npz_and_summaries(tmp_path):
  np.savez(tmp_path / "ok.npz", a=np.zeros(3))
  (tmp_path / "torn.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:100])
  with pytest.raises(cli.UserError, match=r"torn.npz: not a readable .npz file \(.*\); expected "
                                          "an array"):
    cli.open_npz(tmp_path / "torn.npz", "an array")
  np.save(tmp_path / "single.npy", np.zeros(3))
  with pytest.raises(cli.UserError, match="single.npy: a single .npy array, not an .npz"):
    cli.open_npz(tmp_path / "single.npy", "an array")
  with pytest.raises(FileNotFoundError, match="none.npz: file not found; expected an array"):
    cli.open_npz(tmp_path / "none.npz", "an array")
  assert cli.summarize_names([f"k{i}" for i in range(798)]) == "798: k0, k1, k2, ..."
  assert cli.summarize_names(["a", "b"]) == "2: a, b"


# ----------------------------------------------------------------------------------------------
# python -m simajax.train's flags (its subprocess tests: tests/test_train.py)


@pytest.mark.parametrize("argv, message", [
    (["--config=configs/svr_synthetic.py:runlokal"],
     "flag --config=configs/svr_synthetic.py:runlokal: unknown config argument 'runlokal'; "
     "allowed: variant, steps, runlocal (e.g. ':runlocal' for a smoke run, ':key=value,flag') "
     "(see --helpfull)"),
    (["--config=configs/svr_synthetic.py"],
     "flag --workdir=None: Flag --workdir must have a value other than None. (see --helpfull)"),
], ids=["unknown_config_arg", "no_workdir"])
def test_train_flag_errors_are_one_line(argv, message, capsys, monkeypatch):
  """train's flags on a private FlagValues (overrides such as --config.x=... register on the
  global one only: those cases run through the real entry point in tests/test_train.py)."""
  from absl import flags
  from ml_collections import config_flags
  monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
  workdir = [] if "--workdir=None" in message else ["--workdir=w"]
  with pytest.raises(SystemExit) as info:
    cli.parse_absl_flags(flag_values, ["simajax.train", *argv, *workdir])
  err = capsys.readouterr().err.splitlines()
  assert info.value.code == 2 and err == [f"error: {message}"], err


# ----------------------------------------------------------------------------------------------
# python -m data_pipelines.build


@pytest.mark.parametrize("argv, words", [
    (["nosuch/s0"], ["unknown dataset 'nosuch'; registered: ['dexycb', 'hanco', "
                     "'synthetic_hands']"]),
    (["synthetic_hands/huge"], ["dataset 'synthetic_hands/huge': synthetic_hands has no config "
                                "'huge'; configs: [", "'tiny'"]),
    (["synthetic_hands"], ["has no config ''"]),
    (["dexycb/s0", "--mano", "MANO_RIGHT.pkl"], ["manual_dir ", "directory not found (pass "
                                                 "--manual_dir)", cli.MORE_DETAILS]),
    (["hanco/rgb", "--manual_dir", "{tmp}", "--mano", "{tmp}/nope/MANO_RIGHT.pkl"],
     ["nope/MANO_RIGHT.pkl: MANO model file not found"]),
], ids=["unknown_dataset", "unknown_config", "no_config", "no_manual_dir", "missing_mano"])
def test_build_cli_bad_input(tmp_path, capsys, argv, words):
  data_dir = tmp_path / "tfds"
  argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
  assert_one_line(*run_cli(build.main, argv + ["--data_dir", data_dir], capsys), *words)
  # No split, finished or not: TFDS writes into <version>.incomplete* and renames at the end.
  assert not [p for p in files_under(data_dir) if "array_record" in p.name
              or p.name == "dataset_info.json" or "incomplete" in str(p)]


def test_build_cli_flag_errors(capsys):
  assert_one_line(*run_cli(build.main, ["synthetic_hands/tiny"], capsys),
                  "the following arguments are required: --data_dir")
  assert_one_line(*run_cli(build.main, ["synthetic_hands/tiny", "--data_dir", "d",
                            "--manual_dir"], capsys),
                  "python -m data_pipelines.build: argument --manual_dir: expected one argument")


# ----------------------------------------------------------------------------------------------
# python -m simajax.evaluate (array files: more in tests/test_evaluate_cli.py)


@pytest.fixture
def hand_files(tmp_path):
  rng = np.random.default_rng(0)
  joints = (rng.normal(scale=0.04, size=(4, 21, 3)) + [0, 0, 0.6]).astype(np.float32)
  verts = (rng.normal(scale=0.04, size=(4, 778, 3)) + [0, 0, 0.6]).astype(np.float32)
  np.savez(tmp_path / "gt.npz", joints=joints, verts=verts)
  np.savez(tmp_path / "pred.npz", joints=joints, verts=verts)
  return tmp_path


def _evaluate(capsys, *argv, out):
  return run_cli(evaluate.main, [*argv, "--out", out], capsys)


def test_evaluate_cli_bad_arrays(hand_files, capsys):
  out = hand_files / "out" / "metrics.json"
  pred, gt = hand_files / "pred.npz", hand_files / "gt.npz"
  (hand_files / "torn.npz").write_bytes(pred.read_bytes()[:100])
  assert_one_line(*_evaluate(capsys, "--pred-npz", hand_files / "torn.npz", "--gt-npz", gt,
                             out=out), "torn.npz: not a readable .npz file")
  with np.load(pred) as data:
    joints, verts = data["joints"].copy(), data["verts"]
  joints[2, 5, 1] = np.nan
  np.savez(hand_files / "nan.npz", joints=joints, verts=verts)
  assert_one_line(*_evaluate(capsys, "--pred-npz", hand_files / "nan.npz", "--gt-npz", gt,
                             out=out),
                  "nan.npz: array 'joints' has 1 NaN/inf values, in 1 examples (first: index 2)")
  np.savez(hand_files / "flat.npz", joints=joints.reshape(4, -1), verts=verts)
  assert_one_line(*_evaluate(capsys, "--pred-npz", hand_files / "flat.npz", "--gt-npz", gt,
                             out=out), "flat.npz: array 'joints' has shape (4, 63), expected "
                                       "[N, 21, 3]")
  np.savez(hand_files / "text.npz", joints=joints.astype("U8"), verts=verts)
  assert_one_line(*_evaluate(capsys, "--pred-npz", hand_files / "text.npz", "--gt-npz", gt,
                             out=out), "text.npz: array 'joints' has dtype <U8, expected floats")
  assert not out.parent.exists()


def test_evaluate_cli_bad_flags(hand_files, capsys):
  out = hand_files / "out" / "metrics.json"
  files = ["--pred-npz", hand_files / "pred.npz", "--gt-npz", hand_files / "gt.npz"]
  assert_one_line(*_evaluate(capsys, *files, "--occlusion-threshold", "40", out=out),
                  "--occlusion-threshold must lie in (0, 1] (a visible ratio), got 40.0")
  assert_one_line(*_evaluate(capsys, *files, "--units", "cm", out=out),
                  "argument --units: invalid choice: 'cm'")
  assert_one_line(*_evaluate(capsys, *files, "--batch-size", "0", out=out),
                  "--batch-size must be >= 1, got 0")
  assert_one_line(*_evaluate(capsys, "--pred-npz", hand_files / "pred.npz", out=out),
                  "give --pred-npz and --gt-npz (or --checkpoint RUN_DIR)")
  assert not out.parent.exists()


@pytest.fixture
def run_copy(run_dir, tmp_path):
  """A writable copy of the conftest's training run (steps 10, best, and 20)."""
  copy = tmp_path / "run"
  shutil.copytree(run_dir, copy)
  return copy


def test_evaluate_cli_bad_checkpoints(run_copy, tmp_path, capsys):
  out = tmp_path / "out" / "metrics.json"
  assert_one_line(*_evaluate(capsys, "--checkpoint", tmp_path / "nope", out=out),
                  f"config file {tmp_path / 'nope' / 'config.json'} not found")
  # A config of another variant than the checkpoint's: refused before anything is read.
  small = tmp_path / "small.json"
  small.write_text(config_lib.base_config("svr", variant="small").to_json())
  assert_one_line(*_evaluate(capsys, "--checkpoint", run_copy, "--config", small, out=out),
                  f"{run_copy / 'checkpoints'}/10: the checkpoint does not fit this model",
                  "other shapes ")
  damage.truncate_array_files(run_copy / "checkpoints" / "20")
  before = files_under(run_copy)
  assert_one_line(*_evaluate(capsys, "--checkpoint", run_copy, "--step", "20", out=out),
                  "checkpoint step 20 (", ") is damaged; pass another --step (other steps: [10])")
  assert files_under(run_copy) == before and not out.parent.exists()


# ----------------------------------------------------------------------------------------------
# python -m simajax.predict


def test_predict_cli_bad_input(export_ckpt, run_copy, tmp_path, capsys):
  out = tmp_path / "out.npz"

  def predict_npz(images, *extra, checkpoint=export_ckpt):
    return run_cli(predict.main, ["--checkpoint", checkpoint, "--images-npz", images,
                                  "--out", out, *extra], capsys)

  good = tmp_path / "in.npz"
  np.savez(good, images=np.zeros((2, 128, 128, 3), np.float32))
  (tmp_path / "torn.npz").write_bytes(good.read_bytes()[:100])
  assert_one_line(*predict_npz(tmp_path / "torn.npz"), "torn.npz: not a readable .npz file")
  np.savez(tmp_path / "nchw.npz", images=np.zeros((2, 3, 128, 128), np.float32))
  assert_one_line(*predict_npz(tmp_path / "nchw.npz"),
                  "nchw.npz: images: expected shape [B, 128, 128, 3] (NHWC RGB crops), got "
                  "[2, 3, 128, 128]")
  assert_one_line(*predict_npz(good, "--batch-size", "0"), "--batch-size must be >= 1, got 0")
  assert_one_line(*predict_npz(good, "--config", "small"),
                  f"{export_ckpt / 'variables'}: the checkpoint does not fit this model")
  assert_one_line(*predict_npz(good, "--config", "huge"),
                  "--config 'huge': neither a model variant")
  damage.truncate_array_files(run_copy / "checkpoints" / "10")
  assert_one_line(*predict_npz(good, "--step", "10", checkpoint=run_copy),
                  "checkpoint step 10 (", "is damaged; pass another --step")
  assert not out.exists()


def test_predict_falls_back_from_a_damaged_best_checkpoint(run_copy, make_variables, caplog):
  damage.truncate_array_files(run_copy / "checkpoints" / "10")  # the best by pa_vpe
  with caplog.at_level(logging.WARNING):
    loaded, description = predict.load_model(run_copy)
  assert "step 20 (best by 'pa_vpe', else latest)" in description
  np.testing.assert_array_equal(loaded.variables["params"]["decoder3d"]["head"]["kernel"],
                                make_variables(1)["params"]["decoder3d"]["head"]["kernel"])
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.WARNING and r.name.startswith("simajax")]
  assert len(warnings) == 1 and "step 10 (" in warnings[0], warnings
  assert "read step 20 instead" in warnings[0]
  assert (run_copy / "checkpoints" / "10").is_dir()  # a reader moves nothing


# ----------------------------------------------------------------------------------------------
# python -m simajax.convert


def test_convert_cli_bad_input(topology, make_variables, export_ckpt, tmp_path, capsys):
  topology_file = tmp_path / "topology.npz"
  topology.save(topology_file)
  state_dict = convert.variables_to_state_dict(make_variables(0))
  np.savez(tmp_path / "svr.npz", **state_dict)
  out = tmp_path / "ckpt"

  def convert_cli(*extra, weights=tmp_path / "svr.npz", config="tiny", topo=topology_file,
                  to=out):
    return run_cli(convert.main, ["--torch-state-dict", weights, "--config", config,
                                  "--topology", topo, "--out", to, *extra], capsys)

  assert_one_line(*convert_cli(config="huge"), "--config 'huge': neither a model variant")
  assert_one_line(*convert_cli(topo=tmp_path / "none.npz"), "none.npz: file not found; "
                                                            "expected a mesh topology")
  (tmp_path / "torn.npz").write_bytes((tmp_path / "svr.npz").read_bytes()[:100])
  assert_one_line(*convert_cli(weights=tmp_path / "torn.npz"),
                  "torn.npz: not a readable .npz file")
  # The weights of the tiny model for the small one: 798 lines before, now a summary.
  assert_one_line(*convert_cli(config="small"), "svr.npz does not fit the SVR model",
                  "mis-shaped keys ", ", ...")
  wrong = {k: v for k, v in state_dict.items() if not k.startswith("rot_reg.")}
  wrong["rot_reg.extra.weight"] = np.zeros(2, np.float32)
  np.savez(tmp_path / "wrong.npz", **wrong)
  status, err = convert_cli(weights=tmp_path / "wrong.npz")
  missing = sorted(k for k in state_dict if k.startswith("rot_reg."))
  assert_one_line(status, err, "unknown keys 1: rot_reg.extra.weight;",
                  f"missing keys {len(missing)}: {', '.join(missing[:3])}, ...")
  assert not out.exists()
  before = files_under(export_ckpt)
  assert_one_line(*convert_cli(to=export_ckpt), f"{export_ckpt} already holds a checkpoint")
  assert files_under(export_ckpt) == before
  assert_one_line(*convert_cli("--seed", "x"), "argument --seed: invalid int value: 'x'")


# ----------------------------------------------------------------------------------------------
# python -m simajax.quickstart


def test_quickstart_cli_bad_flags(tmp_path, capsys):
  workdir = tmp_path / "qs"

  def quick(*argv):
    return run_cli(quickstart.main, ["--workdir", workdir, "--data-dir", tmp_path / "tfds",
                                     *argv], capsys)

  assert_one_line(*quick("--variant", "huge"), "argument --variant: invalid choice: 'huge'")
  assert_one_line(*quick("--mvr-steps", "-5"), "--mvr-steps must be >= 0, got -5")
  assert_one_line(*quick("--svr-steps", "ten"), "argument --svr-steps: invalid int value")
  (tmp_path / "file").write_text("not a directory")
  assert_one_line(*run_cli(quickstart.main, ["--workdir", tmp_path / "file"], capsys),
                  f"--workdir {tmp_path / 'file'}: exists and is not a directory")
  assert not workdir.exists() and not (tmp_path / "tfds").exists()


def test_every_cli_knows_verbose(capsys):
  for main in (build.main, evaluate.main, predict.main, convert.main, quickstart.main):
    with pytest.raises(SystemExit) as info:
      main(["--help"])
    assert info.value.code == 0 and "--verbose" in capsys.readouterr().out, main
