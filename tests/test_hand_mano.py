"""The chumpy-free MANO loader on fabricated pickles with the official file's keys and objects."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

from fixtures import mano_fixture
from simajax.cli import UserError
from simajax.hand import (convert_mano_pickle, load_hand_model, load_mano, mirror_hand_model,
                          read_mano_pickle, synthhand_model)
from simajax.hand import mano as mano_module

NV = 778


def official_arrays(seed: int = 0) -> dict:
  """Random arrays with the keys, shapes and dtypes of MANO_RIGHT.pkl (docs/conventions.md#mano-files),
  with joints laid out like a right hand's (the loader checks the side from them)."""
  rng = np.random.default_rng(seed)
  weights = rng.random((NV, 16)) ** 6
  weights /= weights.sum(1, keepdims=True)
  v_template = rng.normal(0.0, 0.04, (NV, 3))
  j_reg = mano_fixture.hand_like_regressor(v_template, rng, per_joint=30)
  kintree = np.array([[4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14],
                      list(range(16))], dtype=np.int64)
  return {
      "v_template": v_template,
      "f": rng.integers(0, NV, (1538, 3)).astype(np.uint32),
      "J_regressor": j_reg,
      "J": j_reg @ v_template,
      "weights": weights,
      "posedirs": rng.normal(0.0, 1e-3, (NV, 3, 135)),
      "shapedirs": rng.normal(0.0, 1e-2, (NV, 3, 10)),
      "hands_components": rng.normal(0.0, 0.3, (45, 45)),
      "hands_mean": rng.normal(0.0, 0.2, 45),
      "hands_coeffs": rng.normal(0.0, 1.0, (1554, 45)),
      "kintree_table": kintree,
      "bs_style": "lbs",
      "bs_type": "lrotmin",
  }


def write_plain_pickle(path, arrays):
  """The dict with scipy's csc_matrix replaced by a dense array (a chumpy-free re-save)."""
  with open(path, "wb") as f:
    pickle.dump(arrays, f, protocol=2)


@pytest.fixture
def chumpy_classes(monkeypatch):
  """Fake ``chumpy.ch.Ch``, ``chumpy.reordering.Select`` and ``scipy.sparse.csc.csc_matrix``
  classes, registered under the official module paths only while the test runs."""
  classes = {}
  for module_name, class_name in [("chumpy.ch", "Ch"), ("chumpy.reordering", "Select"),
                                  ("scipy.sparse.csc", "csc_matrix")]:
    module = types.ModuleType(module_name)
    cls = type(class_name, (), {"__module__": module_name})
    setattr(module, class_name, cls)
    monkeypatch.setitem(sys.modules, module_name, module)
    classes[class_name] = cls
  monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
  return classes


def write_chumpy_pickle(path, arrays, classes, rng):
  """The official object layout: J_regressor as csc_matrix (with split duplicate entries),
  shapedirs as a chumpy Select of a Ch, J as a Ch; protocol 2 like the Python-2 original."""
  data = dict(arrays)
  dense = arrays["J_regressor"]
  rows, cols = np.nonzero(dense)
  values = dense[rows, cols]
  # Split every third entry into two stored duplicates (25 % + 75 %) that must be summed back.
  dup = np.arange(0, len(values), 3)
  rows = np.concatenate([rows, rows[dup]])
  cols = np.concatenate([cols, cols[dup]])
  values = np.concatenate([values, 0.75 * values[dup]])
  values[dup] *= 0.25
  order = np.lexsort((rows, cols))  # column-major, as csc stores them
  rows, cols, values = rows[order], cols[order], values[order]
  csc = classes["csc_matrix"]()
  csc.__dict__.update(data=values, indices=rows.astype(np.int32),
                      indptr=np.searchsorted(cols, np.arange(NV + 1)).astype(np.int32),
                      _shape=(16, NV), maxprint=50)
  data["J_regressor"] = csc
  # shapedirs = Select(a=Ch(x=pool), idxs, preferred_shape): a flat pool larger than needed.
  pool = rng.normal(size=NV * 3 * 10 + 100)
  idxs = rng.permutation(len(pool))[:NV * 3 * 10]
  pool[idxs] = arrays["shapedirs"].reshape(-1)
  ch = classes["Ch"]()
  ch.__dict__.update(x=pool, _dirty_vars=set(), label=None)
  select = classes["Select"]()
  select.__dict__.update(a=ch, idxs=idxs, preferred_shape=(NV, 3, 10))
  data["shapedirs"] = select
  j_ch = classes["Ch"]()
  j_ch.__dict__.update(x=arrays["J"], _dirty_vars={"x"})
  data["J"] = j_ch
  with open(path, "wb") as f:
    pickle.dump(data, f, protocol=2)


def assert_model_matches(model, arrays):
  np.testing.assert_allclose(model.v_template, arrays["v_template"], atol=1e-7)
  np.testing.assert_array_equal(model.faces, arrays["f"].astype(np.int64))
  np.testing.assert_allclose(model.J_regressor, arrays["J_regressor"], atol=1e-7)
  np.testing.assert_allclose(model.shapedirs, arrays["shapedirs"], atol=1e-7)
  np.testing.assert_allclose(model.posedirs, arrays["posedirs"], atol=1e-7)
  np.testing.assert_allclose(model.weights, arrays["weights"], atol=1e-7)
  np.testing.assert_allclose(model.hands_components, arrays["hands_components"], atol=1e-7)
  np.testing.assert_allclose(model.hands_mean, arrays["hands_mean"], atol=1e-7)
  assert model.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


def test_plain_pickle(tmp_path):
  arrays = official_arrays()
  path = tmp_path / "MANO_RIGHT.pkl"
  write_plain_pickle(path, arrays)
  model = load_mano(path, cache=False)
  assert_model_matches(model, arrays)
  assert model.side == "right" and model.tip_vertex_ids == (745, 317, 444, 556, 673)
  assert model.faces.dtype == np.int32 and model.v_template.dtype == np.float32


def test_chumpy_pickle_with_stand_ins(tmp_path, chumpy_classes):
  arrays = mano_fixture.mirror_arrays(official_arrays(1))  # a left hand
  path = tmp_path / "MANO_LEFT.pkl"
  write_chumpy_pickle(path, arrays, chumpy_classes, np.random.default_rng(2))
  raw = open(path, "rb").read()
  for name in (b"chumpy.ch", b"chumpy.reordering", b"scipy.sparse.csc"):
    assert name in raw  # the pickle really references the official class paths
  # The real file is a Python-2 pickle whose arrays use numpy.core (not numpy._core).
  path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
  for module in ("chumpy", "chumpy.ch", "chumpy.reordering", "scipy.sparse.csc"):
    sys.modules.pop(module)  # loading must not need the classes
  model = load_mano(path, cache=False)
  assert_model_matches(model, arrays)
  assert model.side == "left" and model.tip_vertex_ids == (745, 317, 445, 556, 673)


def test_npz_conversion_and_cache(tmp_path, monkeypatch):
  arrays = official_arrays(3)
  pkl = tmp_path / "MANO_RIGHT.pkl"
  write_plain_pickle(pkl, arrays)
  npz = convert_mano_pickle(pkl, tmp_path / "converted.npz")
  with np.load(npz, allow_pickle=False) as data:  # plain arrays only
    assert str(data["side"]) == "right"
  assert_model_matches(load_mano(npz), arrays)

  model = load_hand_model(str(pkl))  # writes MANO_RIGHT.npz next to the pickle
  cache = tmp_path / "MANO_RIGHT.npz"
  assert cache.is_file()
  assert_model_matches(model, arrays)
  monkeypatch.setattr(mano_module, "read_mano_pickle",
                      lambda path: pytest.fail("the cache should have been used"))
  assert_model_matches(load_mano(pkl), arrays)
  os.utime(pkl, (cache.stat().st_mtime + 10,) * 2)  # a newer pickle invalidates the cache
  with pytest.raises(pytest.fail.Exception, match="cache"):
    load_mano(pkl)


class _System:
  """Pickles as a call of os.system (what a malicious 'model file' would do)."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


class _Eval:

  def __reduce__(self):
    return (eval, ("__import__('os').getcwd()",))


def test_malicious_pickles_are_refused_without_running(tmp_path):
  marker = tmp_path / "pwned"
  arrays = official_arrays(4)
  for payload, name in [(_System(f"touch {marker}"), os.system.__module__ + ".system"),
                        (_Eval(), "(__builtin__|builtins).eval")]:
    path = tmp_path / "MANO_RIGHT.pkl"
    with open(path, "wb") as f:
      pickle.dump({**arrays, "hands_coeffs": payload}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=rf"MANO_RIGHT.pkl.*'{name}'"):
      load_mano(path, cache=False)
    assert not marker.exists()
  assert not (tmp_path / "MANO_RIGHT.npz").exists()


def test_bad_files_name_the_file_and_key(tmp_path):
  arrays = official_arrays(5)
  path = tmp_path / "model.pkl"
  write_plain_pickle(path, {k: v for k, v in arrays.items() if k != "posedirs"})
  with pytest.raises(ValueError, match=r"model.pkl: missing key 'posedirs'"):
    read_mano_pickle(path)
  write_plain_pickle(path, {**arrays, "weights": arrays["weights"][:, :15]})
  with pytest.raises(ValueError, match=r"model.pkl: key 'weights' must have shape \[778, 16\]"):
    read_mano_pickle(path)
  bad_tree = arrays["kintree_table"].copy()
  bad_tree[0, 5] = 1
  write_plain_pickle(path, {**arrays, "kintree_table": bad_tree})
  with pytest.raises(ValueError, match="kintree_table"):
    read_mano_pickle(path)
  path.write_bytes(b"not a pickle")
  with pytest.raises(pickle.UnpicklingError, match="model.pkl"):
    read_mano_pickle(path)
  with pytest.raises(FileNotFoundError, match="nowhere.pkl"):
    load_mano(tmp_path / "nowhere.pkl")


# ----------------------------------------------------------------------------------------------
# Handedness from the geometry.


def test_side_is_read_from_the_geometry_of_known_hands(shared_dir):
  # SynthHand is built as a right hand; its mirror image is a left one.
  synth = synthhand_model()
  assert mano_module.geometric_side(synth.v_template, synth.J_regressor)[0] == "right"
  left = mirror_hand_model(synth)
  side, sine = mano_module.geometric_side(left.v_template, left.J_regressor)
  assert side == "left" and sine < -mano_module.MIN_HANDEDNESS
  # The official template (MANO_RIGHT's mesh, posed; shared/mesh_reference) and its 16 MANO
  # joint rows, taken back from the 21-joint order (README of mesh_reference).
  with np.load(shared_dir / "mesh_reference" / "assets.npz") as ref:
    verts, regressor = ref["verts_0"], ref["joint_regressor"]
  mano_rows = [0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3]
  side, sine = mano_module.geometric_side(verts, regressor[mano_rows])
  assert side == "right" and sine > 0.3
  assert mano_module.geometric_side(verts * [-1, 1, 1], regressor[mano_rows])[0] == "left"


def test_wrongly_named_or_sided_file_is_refused(tmp_path):
  right = official_arrays(6)
  left = mano_fixture.mirror_arrays(right)
  swapped = tmp_path / "MANO_RIGHT.pkl"  # MANO_LEFT's contents under the right name
  write_plain_pickle(swapped, left)
  with pytest.raises(UserError, match=r"MANO_RIGHT.pkl: this MANO file holds a LEFT hand.*"
                                      r"loaded as the right hand \(its file name"):
    load_mano(swapped)
  assert not swapped.with_suffix(".npz").exists()  # nothing cached from a refused file
  good_left = tmp_path / "MANO_LEFT.pkl"
  write_plain_pickle(good_left, left)
  assert load_mano(good_left, cache=False).side == "left"
  with pytest.raises(UserError, match=r"holds a LEFT hand.*side='right' was asked for"):
    load_mano(good_left, side="right", cache=False)
  # A name without a side takes the geometry's; a converted .npz keeps the side it stored.
  plain = tmp_path / "mano.pkl"
  write_plain_pickle(plain, left)
  assert load_mano(plain, cache=False).side == "left"
  npz = convert_mano_pickle(good_left, tmp_path / "converted.npz")
  with np.load(npz) as data:
    tampered = {**dict(data), "side": np.array("right")}
  np.savez(npz, **tampered)
  with pytest.raises(UserError, match="holds a LEFT hand.*the side stored in it"):
    load_mano(npz)
  # Not a hand at all: the thumb in the palm plane.
  flat = dict(right, v_template=right["v_template"] * [1.0, 0.0, 1.0])
  write_plain_pickle(swapped, flat)
  with pytest.raises(UserError, match="MANO_RIGHT.pkl: cannot tell which hand"):
    load_mano(swapped, cache=False)
