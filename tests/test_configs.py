"""configs/*.py: the path arguments (config_lib.parse_arg), that every file resolves with each of
them, the HanCo configs being Dex-YCB's recipes on HanCo's data, and where the quickstart and
the reproduction script read their recipes."""

import importlib
import json
import pathlib

import pytest

from simajax import cli, config_lib, quickstart

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py"))


def test_parse_arg_types_the_values_and_reads_bare_flags_as_true():
  spec = dict(variant="small", steps=0, runlocal=False, scale=0.5, name=(str, None))
  assert config_lib.parse_arg(None, **spec).to_dict() == {
      "variant": "small", "steps": 0, "runlocal": False, "scale": 0.5, "name": None}
  arg = config_lib.parse_arg("variant=tiny,runlocal,steps=150,scale=2,name=x", **spec)
  assert arg.to_dict() == {"variant": "tiny", "steps": 150, "runlocal": True, "scale": 2.0,
                           "name": "x"}
  assert isinstance(arg.steps, int) and isinstance(arg.scale, float)
  assert config_lib.parse_arg("runlocal=false,", **spec).runlocal is False
  assert config_lib.parse_arg("runlocal", **spec).runlocal is True  # the bare ':runlocal' form


@pytest.mark.parametrize("arg, message", [
    ("runlokal", "unknown config argument 'runlokal'; allowed: variant, steps, runlocal (e.g. "
                 "':runlocal' for a smoke run, ':key=value,flag')"),
    ("variant=tiny,bogus=1", "unknown config argument 'bogus'; allowed: variant, steps, runlocal"),
    ("steps=many", "config argument steps='many': expected int"),
    ("steps", "config argument 'steps' needs a value (steps=...)"),
    ("runlocal=maybe", "config argument runlocal='maybe': expected true or false"),
])
def test_parse_arg_errors_are_one_line_user_errors(arg, message):
  with pytest.raises(cli.UserError) as info:
    config_lib.parse_arg(arg, variant="official", **config_lib.RUN_SIZE_ARGS)
  assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_resolves_with_each_argument(name):
  path = str(REPO / "configs" / name)
  full = config_lib.load_config(path)
  assert full.stage == name[:3] and full.eval_batch_size is None
  assert full.model.variant == ("small" if "synthetic" in name else "official")
  assert config_lib.load_config(path + ":variant=tiny").model.variant == "tiny"
  local = config_lib.load_config(path + ":runlocal")
  assert (local.model.variant, local.total_steps, local.batch_size) == ("tiny", 6, 16)
  budget = config_lib.load_config(path + ":steps=40")
  assert (budget.total_epochs, budget.total_steps, budget.optim.decay_epochs) == (None, 40, [])
  with pytest.raises(cli.UserError, match="unknown config argument 'nope'"):
    config_lib.load_config(path + ":nope")


@pytest.mark.parametrize("stage", ["mvr", "svr"])
def test_hanco_configs_are_dexycbs_recipe_on_hancos_data(stage):
  hanco = json.loads(config_lib.load_config(f"configs/{stage}_hanco.py").to_json())
  dexycb = json.loads(config_lib.load_config(f"configs/{stage}_dexycb.py").to_json())
  assert (hanco.pop("data")["name"], hanco["hand_model"]) == ("hanco/rgb-rgb_merged",
                                                             "MANO_RIGHT.pkl")
  assert dexycb.pop("data")["eval_split"] == "validation"
  assert hanco == dexycb
  assert config_lib.load_config(f"configs/{stage}_hanco.py").data.eval_split == "test"


def test_configs_resolve_from_any_working_directory(tmp_path, monkeypatch):
  """'configs/...' falls back to the checkout next to the package; the quickstart reads there."""
  monkeypatch.chdir(tmp_path)
  assert config_lib.load_config("configs/svr_synthetic.py:runlocal").total_steps == 6
  config = quickstart.stage_config("svr", "w", "d")
  assert (config.model.variant, config.total_steps, config.eval_every_steps) == ("tiny", 150, 50)
  assert config.init_from == config.distill.teacher_checkpoint == str(pathlib.Path("w", "mvr"))
  assert quickstart.stage_config("mvr", "w", "d", steps=0).total_epochs == 12.0
  with pytest.raises(FileNotFoundError, match="configs/ folder ships with the repository"):
    config_lib.config_file("nosuch.py")


def test_the_reproduction_script_starts_from_the_synthetic_configs(monkeypatch):
  monkeypatch.syspath_prepend(str(REPO / "scripts"))
  reproduce = importlib.import_module("reproduce_synthetic")
  args = reproduce.parse_args(["--workdir", "w", "--methods", "mvr,svr"])
  config = json.loads(reproduce.method_config("svr", args, 0, "w/seed0/mvr").to_json())
  recipe = json.loads(config_lib.load_config("configs/svr_synthetic.py").to_json())
  assert config["model"] == recipe["model"] and config["optim"]["lr_multipliers"] == {
      "*lifting/upsample": 0.1}
  assert config["init_from_modules"] == recipe["init_from_modules"]
