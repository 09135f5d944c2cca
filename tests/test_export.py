"""`python -m simajax.export`: StableHLO, ONNX and official-state_dict exports of the SVR.

The tiny-model exports are compared with the live model on the same four images; the live model
runs at batch 4, the shape ``test_predict_photos`` compiles, so the session compiles it once.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from parity_recipe import he_variables, read_manifest, recipe_state_dict
from simajax import convert, export, model_setup, predict
from simajax.models import OUTPUT_KEYS, build_svr, formulation, layers, svr_config
from simajax.training import export_dir
from test_parity import OUTPUT_NAMES, rel_error


def _installed(*modules):
  return all(importlib.util.find_spec(m) is not None for m in modules)


needs_onnx = pytest.mark.skipif(not _installed("jax2onnx", "onnxruntime"),
                                reason="the [export] extra (jax2onnx, onnxruntime) is not installed")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
  topology = model_setup.load_topology(ml_collections.ConfigDict({"topology": None,
                                                                  "hand_model": None}))
  model = build_svr(svr_config("tiny"), topology)
  path = tmp_path_factory.mktemp("tiny") / "ckpt"
  variables = he_variables(export_dir.abstract_variables(model), topology, seed=0)
  export_dir.save_checkpoint(path, variables, svr_config("tiny"), topology)
  return path


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(7).random((4, 128, 128, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def live_outputs(tiny_ckpt, images):
  loaded, _ = predict.load_model(tiny_ckpt)
  return predict.Predictor(loaded, batch_size=4)(images)


def test_export_formulation_is_the_same_function_in_converter_friendly_ops():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 1, 5)).astype(np.float32)
  kernel1 = rng.normal(size=(1, 1, 5, 4)).astype(np.float32)
  dense = rng.normal(size=(5, 3)).astype(np.float32)
  np.testing.assert_allclose(formulation.depthwise_conv3x3_grouped(x, kernel),
                             layers.depthwise_conv3x3(x, kernel), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(formulation.conv1x1(x, kernel1), x @ kernel1[0, 0], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(formulation.matmul_2d(x, dense), x @ dense, rtol=1e-5, atol=1e-5)

  def primitives(module, params):
    jaxpr = jax.make_jaxpr(lambda v, y: module.apply(v, y))({"params": params}, x)
    return [(e.primitive.name, e.params.get("feature_group_count"), e.invars[0].aval.ndim)
            for e in jaxpr.jaxpr.eqns if e.primitive.name in ("conv_general_dilated",
                                                                "dot_general")]

  depthwise = (layers.Conv(5, 3, depthwise=True), {"kernel": kernel})
  pointwise = (layers.Conv(4, 1), {"kernel": kernel1})
  linear = (layers.Linear(3, use_bias=False), {"kernel": dense})
  # The default forms: shifted multiply-adds (no conv), matmuls on the 4D map.
  assert primitives(*depthwise) == []
  assert primitives(*pointwise) == [("dot_general", None, 4)]
  assert primitives(*linear) == [("dot_general", None, 4)]
  with formulation.export_formulation():
    assert formulation.exporting()
    assert primitives(*depthwise) == [("conv_general_dilated", 5, 4)]
    assert primitives(*pointwise) == [("conv_general_dilated", 1, 4)]
    assert primitives(*linear) == [("dot_general", None, 2)]
  assert not formulation.exporting()


def test_stablehlo_round_trip_runs_without_the_model_code(tiny_ckpt, images, live_outputs,
                                                          tmp_path):
  path = tmp_path / "svr.stablehlo"
  export.main(["--checkpoint", str(tiny_ckpt), "--format", "stablehlo", "--out", str(path)])
  np.save(tmp_path / "images.npy", images)
  # A process in which simajax cannot be imported deserializes and runs the artefact.
  script = (
      "import sys; sys.modules['simajax'] = None\n"
      "import jax, numpy as np\n"
      f"exp = jax.export.deserialize(bytearray(open({str(path)!r}, 'rb').read()))\n"
      f"out = jax.jit(exp.call)(np.load({str(tmp_path / 'images.npy')!r}))\n"
      f"np.savez({str(tmp_path / 'out.npz')!r}, **jax.device_get(out))\n")
  subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
  out = np.load(tmp_path / "out.npz")
  assert sorted(out.files) == sorted(OUTPUT_KEYS)
  # Bit for bit the function that was exported, compiled here; within float32 rounding the live
  # model, whose weights are arguments (XLA folds the baked-in ones, e.g. BatchNorm's rsqrt).
  loaded, _ = predict.load_model(tiny_ckpt)
  same = jax.device_get(jax.jit(export.inference_function(loaded))(images))
  for key in OUTPUT_KEYS:
    assert out[key].dtype == np.float32
    np.testing.assert_array_equal(out[key], same[key], err_msg=key)
    assert rel_error(out[key], live_outputs[key]) <= 1e-5, key

  model = export.load_stablehlo(path)
  assert model.input_shape == (None, 128, 128, 3)  # --batch dynamic, the default
  with pytest.raises(ValueError, match=r"expected float32 images \['B', 128, 128, 3\]"):
    model(images.astype(np.float64))
  fixed = tmp_path / "fixed.stablehlo"
  fixed.write_bytes(export.export_stablehlo(loaded, 2))
  with pytest.raises(ValueError, match=r"fixed.stablehlo: expected float32 images \[2, 128"):
    export.load_stablehlo(fixed)(images)  # a fixed batch of 2
  (tmp_path / "junk.stablehlo").write_bytes(b"junk")
  with pytest.raises(ValueError, match="junk.stablehlo: not a serialized jax.export artefact"):
    export.load_stablehlo(tmp_path / "junk.stablehlo")


@needs_onnx
def test_onnx_matches_jax_on_the_tiny_model(tiny_ckpt, images, live_outputs, tmp_path):
  path = tmp_path / "svr.onnx"
  export.main(["--checkpoint", str(tiny_ckpt), "--format", "onnx", "--out", str(path)])
  model = export.load_onnx(path)
  assert model.output_names == list(OUTPUT_KEYS)
  for batch in (images, images[1:2]):  # a dynamic batch
    out = model(batch)
    for key in OUTPUT_KEYS:
      expected = live_outputs[key][1:2] if len(batch) == 1 else live_outputs[key]
      assert rel_error(out[key], expected) <= 1e-4, key


def test_cli_errors_are_one_line(tiny_ckpt, tmp_path, capsys):
  base = ["--checkpoint", str(tiny_ckpt), "--out"]
  for argv, message in [
      (base + [str(tmp_path / "x.onnx"), "--format", "onnx", "--batch", "0"],
       "--batch must be a positive integer or 'dynamic', got '0'"),
      (base + [str(tmp_path / "missing" / "x.npz"), "--format", "torch"],
       "directory .*missing does not exist"),
      (base + [str(tmp_path / "x.txt"), "--format", "torch"],
       r"a torch state_dict is written as .pth \(needs torch\) or .npz"),
      (["--checkpoint", str(tmp_path), "--format", "stablehlo", "--out", str(tmp_path / "x")],
       "neither an export directory"),
  ]:
    with pytest.raises(SystemExit) as info:
      export.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err), err


# ------------------------------------------------------------------------ torch state_dicts


def _assert_same_state_dict(got, expected):
  assert list(got) == list(expected)  # key for key, in the file's order
  for key, value in expected.items():
    assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
    assert got[key].tobytes() == value.tobytes(), key  # bit for bit


def _read_exported(path):
  if path.suffix == ".npz":
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  import torch  # pylint: disable=g-import-not-at-top
  return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


def test_torch_cli_round_trip_keeps_keys_order_and_skipped_entries(tiny_ckpt, tmp_path, capsys):
  """convert then export through both CLIs, on a tiny state_dict in a shuffled key order with
  the kinds of entries simajax does not keep (counters, MANO-layer buffers, the unused SE block)."""
  loaded, _ = predict.load_model(tiny_ckpt)
  ours = convert.variables_to_state_dict(jax.device_get(loaded.variables))
  extras = {"mano_layer.th_betas": np.arange(10, dtype=np.float32)[None],
            "backbone.dense_stack1.senet3.fc1.0.weight": np.full((2, 3), 0.5, np.float32),
            "backbone.pre_layer.0.1.num_batches_tracked": np.array(17, np.int64)}
  merged = {**ours, **extras}
  order = np.random.default_rng(0).permutation(sorted(merged))
  state_dict = {k: merged[k] for k in order}
  np.savez(tmp_path / "in.npz", **state_dict)
  loaded.topology.save(tmp_path / "topology.npz")
  convert.main(["--torch-state-dict", str(tmp_path / "in.npz"), "--config", "tiny",
                "--topology", str(tmp_path / "topology.npz"), "--out", str(tmp_path / "ckpt")])
  out = tmp_path / ("sd.pth" if _installed("torch") else "sd.npz")
  export.main(["--checkpoint", str(tmp_path / "ckpt"), "--format", "torch", "--out", str(out)])
  _assert_same_state_dict(_read_exported(out), state_dict)
  assert f"{len(state_dict)} keys" in capsys.readouterr().out
  if not _installed("torch"):
    with pytest.raises(SystemExit):
      export.main(["--checkpoint", str(tmp_path / "ckpt"), "--format", "torch",
                   "--out", str(tmp_path / "sd.pth")])
    assert "pip install torch, or write .npz" in capsys.readouterr().err


@pytest.fixture(scope="module")
def recipe(shared_dir):
  return recipe_state_dict(read_manifest(shared_dir / "parity" / "svr_state_dict_manifest.jsonl"))


def test_golden_parity_weights_convert_and_export_back_bit_for_bit(recipe, reference_topology,
                                                                   tmp_path):
  config = svr_config("official")
  variables = convert.convert(recipe, config, reference_topology)
  convert.save_torch_extras(tmp_path, recipe)  # as the convert CLI does
  loaded = export_dir.LoadedModel(build_svr(config, reference_topology), variables, config,
                                     reference_topology)
  state_dict, absent = export.export_torch_state_dict(loaded, tmp_path)
  _assert_same_state_dict(state_dict, recipe)
  assert absent == [] and len(state_dict) == 961

  # A checkpoint not imported by simajax.convert (a training run): counters 0, and no entries
  # for the unused SE block or the MANO buffers, in simajax's variable order.
  state_dict, absent = export.export_torch_state_dict(loaded)
  expected = {k: v for k, v in recipe.items()
              if not k.startswith(("mano_layer.", "backbone.dense_stack1.senet3."))}
  assert sorted(state_dict) == sorted(expected)
  _assert_same_state_dict(state_dict, {k: expected[k] for k in state_dict})
  assert [a.split(" ")[0] for a in absent] == ["backbone.dense_stack1.senet3.*", "mano_layer.*"]


@pytest.fixture(scope="module")
def official_ckpt(recipe, shared_dir, tmp_path_factory):
  """The golden parity weights imported by ``simajax.convert``."""
  root = tmp_path_factory.mktemp("official")
  np.savez(root / "svr.npz", **recipe)
  convert.main(["--torch-state-dict", str(root / "svr.npz"), "--config", "official",
                "--topology", str(shared_dir / "mesh_reference" / "assets.npz"),
                "--out", str(root / "ckpt")])
  return root / "ckpt"


@pytest.mark.slow
@needs_onnx
def test_onnx_matches_jax_and_golden_on_the_official_variant(official_ckpt, shared_dir,
                                                             tmp_path):
  path = tmp_path / "official.onnx"
  export.main(["--checkpoint", str(official_ckpt), "--format", "onnx", "--out", str(path),
               "--batch", "2"])
  golden = np.load(shared_dir / "parity" / "svr_golden_seed0.npz")
  images = np.ascontiguousarray(golden["input/images"].transpose(0, 2, 3, 1))
  out = export.load_onnx(path)(images)
  loaded, _ = predict.load_model(official_ckpt)
  live = predict.Predictor(loaded, batch_size=2)(images)
  for official, ours in OUTPUT_NAMES.items():
    assert rel_error(out[ours], live[ours]) <= 1e-4, ours
    assert rel_error(out[ours], golden[f"out/{official}"]) <= 1e-4, ours
