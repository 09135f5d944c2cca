"""Official-weight import (``simajax.convert``) and inference (``simajax.predict``), end to end."""

from __future__ import annotations

import json

import flax
import jax
import numpy as np
import pytest

from parity_recipe import he_variables, read_manifest, recipe_state_dict
from simajax import convert, predict
from simajax.models import build_svr, svr_config
from simajax.training import export_dir
from test_parity import OUTPUT_NAMES, rel_error


@pytest.fixture(scope="module")
def manifest(shared_dir):
  return read_manifest(shared_dir / "parity" / "svr_state_dict_manifest.jsonl")


@pytest.fixture(scope="module")
def official_abstract(reference_topology):
  return export_dir.abstract_variables(build_svr(svr_config("official"), reference_topology))


@pytest.fixture(scope="module")
def tiny_state_dict(reference_topology):
  model = build_svr(svr_config("tiny"), reference_topology)
  variables = he_variables(export_dir.abstract_variables(model), reference_topology)
  return variables, convert.variables_to_state_dict(variables)


def test_every_official_key_is_mapped_or_deliberately_skipped(manifest, official_abstract):
  table = convert.variable_map(official_abstract)
  keys = [e["key"] for e in manifest]
  skipped = [k for k in keys if convert.is_skipped_key(k)]
  assert sorted(table) == sorted(k for k in keys if not convert.is_skipped_key(k))
  # 148 num_batches_tracked, 9 MANO-layer buffers, the unused SE block's other 2 x 5 entries.
  assert len(skipped) == 148 + 9 + 10
  shapes = {e["key"]: tuple(e["shape"]) for e in manifest}
  zeros = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
  variables = convert.state_dict_to_variables(zeros, official_abstract)
  assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda a: a.shape, official_abstract)


def test_import_lists_unknown_missing_and_misshaped_keys_at_once(manifest, official_abstract):
  state_dict = {e["key"]: np.zeros(e["shape"], np.float32) for e in manifest}
  del state_dict["rot_reg.crs_attn.fc.weight"]
  state_dict["rot_reg.extra_head.weight"] = np.zeros((2, 2), np.float32)
  state_dict["decoder3d.head.layer.weight"] = np.zeros((3, 289), np.float32)
  with pytest.raises(ValueError) as info:
    convert.state_dict_to_variables(state_dict, official_abstract, source="bad.npz")
  message = str(info.value)
  assert "bad.npz" in message and "\n" not in message
  assert "unknown keys 1: rot_reg.extra_head.weight;" in message
  assert "missing keys 1: rot_reg.crs_attn.fc.weight;" in message
  assert "mis-shaped keys 1: decoder3d.head.layer.weight: expected [3, 288], got [3, 289]" in message


def test_layouts_round_trip(tiny_state_dict, reference_topology):
  variables, state_dict = tiny_state_dict
  # torch layouts: OIHW convs, [out, in] linears, [out, in, 1] Conv1d.
  assert state_dict["backbone.pre_layer.0.0.weight"].shape == (8, 3, 3, 3)
  assert state_dict["backbone.pre_layer.1.conv3x3.0.0.weight"].shape == (8, 1, 3, 3)
  assert state_dict["rot_reg.conv_block.0.weight"].shape == (16, 128, 1)
  assert state_dict["decoder3d.de_layer.0.conv.layer.weight"].shape == (16, 9 * 16)
  np.testing.assert_array_equal(
      state_dict["backbone.thrink.0.weight"][5, 7, 0, 0],
      variables["params"]["backbone"]["thrink"]["conv"]["kernel"][0, 0, 7, 5])
  np.testing.assert_array_equal(
      state_dict["backbone.dense_stack2.senet1.fc1.1.running_var"],
      variables["batch_stats"]["backbone"]["dense_stack2"]["senet1"]["fc1"]["bn"]["var"])
  model = build_svr(svr_config("tiny"), reference_topology)
  back = convert.state_dict_to_variables(state_dict, export_dir.abstract_variables(model))
  jax.tree.map(np.testing.assert_array_equal, back, variables)


def test_backbone_only_import_initialises_the_rest(tiny_state_dict, reference_topology):
  variables, state_dict = tiny_state_dict
  backbone = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
  converted = convert.convert(backbone, svr_config("tiny"), reference_topology,
                              backbone_only=True, seed=3)
  for collection in ("params", "batch_stats"):
    jax.tree.map(np.testing.assert_array_equal, converted[collection]["backbone"],
                 variables[collection]["backbone"])
  params = converted["params"]  # the rest comes from the official initialisers
  np.testing.assert_array_equal(params["mano_joint_reg"], reference_topology.joint_regressor)
  np.testing.assert_array_equal(params["lifting"]["upsample"], np.float32(0.01))
  np.testing.assert_array_equal(params["decoder3d"]["head"]["bias"], 0.0)
  np.testing.assert_array_equal(params["rot_reg"]["crs_attn"]["layer_norm"]["scale"], 1.0)
  stats = flax.traverse_util.flatten_dict(converted["batch_stats"]["dense_stack3"])
  assert all(np.all(v == (0.0 if k[-1] == "mean" else 1.0)) for k, v in stats.items())
  kernel = params["rot_reg"]["pre_block_0"]["kernel"]
  bound = 1 / np.sqrt(kernel.shape[0])
  assert np.abs(kernel).max() <= bound and np.std(kernel) > 0.5 * bound / np.sqrt(3)
  with pytest.raises(ValueError, match="unknown keys 1: backbone.decoder.weight"):
    convert.convert({**backbone, "decoder.weight": np.zeros(1)}, svr_config("tiny"),
                    reference_topology, backbone_only=True)


def test_cli_reports_bad_state_dict(tiny_state_dict, shared_dir, tmp_path, capsys):
  _, state_dict = tiny_state_dict
  bad = dict(state_dict)
  del bad["backbone.reduce.0.weight"]
  bad["backbone.unused"] = np.zeros(2, np.float32)
  bad["lifting.foo"] = np.zeros(2, np.float32)
  np.savez(tmp_path / "bad.npz", **bad)
  with pytest.raises(SystemExit):
    convert.main(["--torch-state-dict", str(tmp_path / "bad.npz"), "--config", "tiny",
                  "--topology", str(shared_dir / "mesh_reference" / "assets.npz"),
                  "--out", str(tmp_path / "ckpt")])
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1, err
  assert "unknown keys 2: backbone.unused, lifting.foo;" in err
  assert "missing keys 1: backbone.reduce.0.weight" in err
  assert not (tmp_path / "ckpt").exists()


def test_pth_needs_torch(tmp_path):
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    pytest.skip("torch is installed")
  except ImportError:
    pass
  (tmp_path / "w.pth").write_bytes(b"not read")
  with pytest.raises(ValueError, match="pip install torch.*npz"):
    convert.read_state_dict(tmp_path / "w.pth")


def test_official_weights_convert_and_predict_match_golden(manifest, shared_dir, tmp_path):
  np.savez(tmp_path / "svr.npz", **recipe_state_dict(manifest, seed=0))
  topology = shared_dir / "mesh_reference" / "assets.npz"
  ckpt = tmp_path / "ckpt"
  convert.main(["--torch-state-dict", str(tmp_path / "svr.npz"), "--config", "official",
                "--topology", str(topology), "--out", str(ckpt)])
  assert json.loads((ckpt / "model_config.json").read_text())["variant"] == "official"
  golden = np.load(shared_dir / "parity" / "svr_golden_seed0.npz")
  images = np.concatenate([golden["input/images"].transpose(0, 2, 3, 1)] * 2)[:3]
  np.savez(tmp_path / "in.npz", images=images)
  predict.main(["--checkpoint", str(ckpt), "--images-npz", str(tmp_path / "in.npz"),
                "--out", str(tmp_path / "out.npz"), "--batch-size", "2"])
  out = np.load(tmp_path / "out.npz")
  assert sorted(out.files) == sorted(OUTPUT_NAMES.values())
  for official, ours in OUTPUT_NAMES.items():
    expected = np.concatenate([golden[f"out/{official}"]] * 2)[:3]  # the padded last batch
    assert rel_error(out[ours], expected) <= 1e-4, ours


@pytest.mark.parametrize("images, match", [
    (np.zeros((2, 3, 128, 128), np.float32), r"expected shape \[B, 128, 128, 3\]"),
    (np.zeros((2, 128, 128, 3), np.float64), "expected dtype float32"),
    (np.full((2, 128, 128, 3), 255.0, np.float32), r"must lie in \[0, 1\]"),
    (np.full((1, 128, 128, 3), np.nan, np.float32), "NaN"),
])
def test_predict_validates_images(images, match):
  with pytest.raises(ValueError, match=match):
    predict.validate_images(images, 128, "in.npz: images")


def test_predict_cli_names_the_bad_file(tmp_path, capsys):
  np.savez(tmp_path / "in.npz", imgs=np.zeros((1, 128, 128, 3), np.float32))
  with pytest.raises(SystemExit):
    predict.main(["--checkpoint", str(tmp_path / "none"), "--images-npz",
                  str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz")])
  assert "no 'images' array" in capsys.readouterr().err
