"""Loads the user's own MANO model (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``) without chumpy.

The official files are Python-2 pickles that reference chumpy and scipy.sparse classes
(docs/conventions.md#mano-files). They are read with a restricted unpickler that admits only the globals
those files use (numpy's array reconstruction, ``set``, and chumpy/scipy class names mapped to
inert stand-ins that just store their state); any other global is refused before anything runs.
The stand-ins are then turned into plain arrays:
  * ``chumpy.ch.Ch`` -> ``state['x']``;
  * ``chumpy.reordering.Select`` -> ``a.flatten()[idxs].reshape(preferred_shape)``;
  * ``scipy.sparse.csc_matrix`` -> dense, from data/indices/indptr (duplicates summed).

Two more harmless globals are admitted so that chumpy-free re-saves made with Python 3 load too:
``_codecs.encode`` restricted to latin-1 (how protocol 2 stores bytes) and numpy's
``_frombuffer`` (protocol 5 arrays).

The side a file holds is read from its geometry (``geometric_side``), not trusted from its
name: a ``MANO_LEFT.pkl`` saved as ``MANO_RIGHT.pkl`` (or the reverse) is refused with a message
saying which hand it holds, since every label built from it would be wrong.

The result can be cached as a plain ``.npz`` (``convert_mano_pickle``). MANO files are
licence-restricted: never commit them or anything derived from them (the ``.npz`` included).
"""

from __future__ import annotations

import codecs
import os
import pathlib
import pickle
from typing import Any, Optional, Union

import numpy as np
from numpy._core import multiarray as _np_multiarray
from numpy._core import numeric as _np_numeric

from simajax.cli import UserError, open_npz
from simajax.hand.model import (MANO_LEFT_TIP_IDS, MANO_PARENTS, MANO_RIGHT_TIP_IDS, HandModel,
                                make_hand_model)

PathLike = Union[str, os.PathLike]

# Keys of the official pickle that the model needs, with their expected shapes (None = any).
_REQUIRED_KEYS = {
    "v_template": (778, 3),
    "f": (None, 3),
    "J_regressor": (16, 778),
    "weights": (778, 16),
    "posedirs": (778, 3, 135),
    "shapedirs": (778, 3, 10),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}
_NPZ_KEYS = ("v_template", "faces", "J_regressor", "weights", "posedirs", "shapedirs",
             "hands_components", "hands_mean", "parents", "side")


class _StateHolder:
  """An inert stand-in for a pickled class: creating it does nothing, its state is kept as is."""

  def __new__(cls, *args, **kwargs):
    del args, kwargs
    return object.__new__(cls)

  def __init__(self, *args, **kwargs):
    del args, kwargs  # Constructor arguments of the real class are irrelevant here.
    self.state = None

  def __setstate__(self, state):
    self.state = state


class _ChStub(_StateHolder):
  """Stand-in for ``chumpy.ch.Ch``."""


class _SelectStub(_StateHolder):
  """Stand-in for ``chumpy.reordering.Select``."""


class _CscStub(_StateHolder):
  """Stand-in for ``scipy.sparse.csc_matrix``."""


def _latin1_encode(text, encoding="latin1"):
  """``_codecs.encode`` limited to latin-1: how Python 3 protocol-2 pickles store bytes."""
  if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
    raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
  return text.encode("latin1")


_ALLOWED_GLOBALS = {
    **{(module, "_reconstruct"): _np_multiarray._reconstruct
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _np_numeric._frombuffer
       for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("_codecs", "encode"): _latin1_encode,
    ("chumpy.ch", "Ch"): _ChStub,
    ("chumpy.reordering", "Select"): _SelectStub,
    ("scipy.sparse.csc", "csc_matrix"): _CscStub,
    ("scipy.sparse._csc", "csc_matrix"): _CscStub,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only the allow-listed globals; everything else is an ``UnpicklingError``."""

  def __init__(self, file, source: str):
    super().__init__(file, encoding="latin1")
    self._source = source

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"{self._source}: refusing to load global '{module}.{name}': a MANO pickle only "
          "references numpy arrays, set, chumpy Ch/Select and scipy csc_matrix") from None


def read_mano_pickle(path: PathLike) -> dict[str, np.ndarray]:
  """Reads an official MANO pickle into a dict of plain float64 / int arrays.

  Args:
    path: ``MANO_RIGHT.pkl`` or ``MANO_LEFT.pkl`` (or a chumpy-free re-save of it).

  Returns:
    A dict with the keys ``v_template``, ``faces``, ``J_regressor`` (dense), ``weights``,
    ``posedirs``, ``shapedirs``, ``hands_components``, ``hands_mean`` and ``parents``.

  Raises:
    FileNotFoundError: when the file is missing.
    pickle.UnpicklingError: when the pickle references anything outside the allow-list.
    UserError: when a key is missing or has the wrong shape (naming the file and the key).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"MANO model file not found: {path}")
  with open(path, "rb") as f:
    try:
      data = _RestrictedUnpickler(f, str(path)).load()
    except Exception as e:  # Truncated or corrupted files raise many different types.
      if str(path) in str(e):
        raise
      raise pickle.UnpicklingError(f"{path}: not a readable MANO pickle ({e})") from e
  if not isinstance(data, dict):
    raise UserError(f"{path}: expected a pickled dict, got {type(data).__name__}")
  out = {}
  for key, shape in _REQUIRED_KEYS.items():
    if key not in data:
      raise UserError(f"{path}: missing key '{key}' (found {sorted(map(str, data))})")
    value = _to_array(data[key], f"{path}: key '{key}'")
    if value.ndim != len(shape) or any(s is not None and s != v
                                       for s, v in zip(shape, value.shape)):
      want = ["F" if s is None else s for s in shape]
      raise UserError(f"{path}: key '{key}' must have shape {want}, got {list(value.shape)}")
    out["faces" if key == "f" else key] = value
  if not np.issubdtype(out["faces"].dtype, np.integer):
    raise UserError(f"{path}: key 'f' must hold integer vertex ids, got {out['faces'].dtype}")
  out["faces"] = out["faces"].astype(np.int32)
  for key in ("v_template", "J_regressor", "weights", "posedirs", "shapedirs",
              "hands_components", "hands_mean"):
    out[key] = out[key].astype(np.float64)
  out["parents"] = _parents(data, path)
  return out


def convert_mano_pickle(pkl_path: PathLike, npz_path: PathLike,
                        side: Optional[str] = None) -> pathlib.Path:
  """Converts a MANO pickle to a plain ``.npz`` (no pickled objects) once.

  Args:
    pkl_path: the official pickle.
    npz_path: where to write the arrays (do not commit it: it is MANO-derived).
    side: 'right' or 'left', checked against the geometry; None: the file name's side if it
      names one, else the geometry's (see ``load_mano``).

  Returns:
    The written path.

  Raises:
    UserError: when the model's geometry is the other hand than ``side`` or the file name says.
  """
  arrays = read_mano_pickle(pkl_path)
  arrays["side"] = np.array(_checked_side(pkl_path, arrays, side))
  npz_path = pathlib.Path(npz_path)
  tmp = npz_path.with_name(npz_path.name + ".tmp.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, npz_path)
  return npz_path


def load_mano(path: PathLike, side: Optional[str] = None, cache: bool = True) -> HandModel:
  """Loads MANO from the official ``.pkl`` or from a ``.npz`` written by ``convert_mano_pickle``.

  Args:
    path: ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` or a converted ``.npz``.
    side: 'right' or 'left', the hand the caller expects. None: the side stored in the ``.npz``,
      else the one the file name names ('left' or 'right', case-insensitive), else the one its
      geometry shows. Whichever it is, it must agree with the geometry (``geometric_side``).
    cache: for a ``.pkl``, write ``<stem>.npz`` next to it on first use and read that on later
      calls (while it is newer than the pickle). Unwritable folders just skip the cache.

  Returns:
    The ``HandModel`` (name 'mano'), with manopth's fingertip ids for its side.

  Raises:
    FileNotFoundError: when the file is missing.
    UserError: for a file that is not a MANO model, or holds the other hand than expected.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"MANO model file not found: {path}")
  suffix = path.suffix.lower()
  if suffix == ".pkl":
    npz_path = path.with_suffix(".npz")
    if cache and npz_path.is_file() and npz_path.stat().st_mtime >= path.stat().st_mtime:
      return load_mano(npz_path, side=side)
    if cache:
      try:
        convert_mano_pickle(path, npz_path, side=side)
        return load_mano(npz_path, side=side)
      except OSError:
        pass
    arrays = read_mano_pickle(path)
    stored = None
  elif suffix == ".npz":
    with open_npz(path, "a MANO model converted by convert_mano_pickle") as npz:
      missing = [k for k in _NPZ_KEYS if k not in npz.files]
      if missing:
        raise UserError(f"{path}: missing keys {missing}; write it with convert_mano_pickle")
      arrays = {k: npz[k] for k in _NPZ_KEYS}
    stored = str(arrays.pop("side"))
  else:
    raise UserError(f"{path}: expected a MANO .pkl or a converted .npz file")
  if side not in (None, "right", "left"):
    raise ValueError(f"{path}: side must be 'right' or 'left', got {side!r}")
  side = _checked_side(path, arrays, side, stored)
  try:
    return make_hand_model(
        v_template=arrays["v_template"], faces=arrays["faces"],
        J_regressor=arrays["J_regressor"], weights=arrays["weights"],
        posedirs=arrays["posedirs"], shapedirs=arrays["shapedirs"],
        hands_components=arrays["hands_components"], hands_mean=arrays["hands_mean"],
        parents=arrays["parents"], side=side, name="mano", source=str(path),
        tip_vertex_ids=MANO_RIGHT_TIP_IDS if side == "right" else MANO_LEFT_TIP_IDS)
  except ValueError as e:  # the file's arrays (named in the message) are not a valid model
    raise UserError(str(e)) from e


# |sin| of the thumb's elevation over the palm plane below which the side is not told: MANO's
# right template gives about +0.49 (shared/mesh_reference), the built-in SynthHand +0.37.
MIN_HANDEDNESS = 0.1


def geometric_side(v_template: np.ndarray, J_regressor: np.ndarray) -> tuple[str, float]:
  """Which hand a model is, from its rest pose alone.

  With the rest joints J = J_regressor @ v_template in MANO's order, the wrist J0 and the index
  and little knuckles J1, J7 span the palm plane. Its normal n = (J1 - J0) x (J7 - J0) points out
  of the palm of a right hand (seen palm-on, fingers up, the index is to the right of the
  little finger) and out of the back of a left one: a mirror image reverses every cross
  product. The thumb's base J13 sits in front of the palm on either hand (the thenar eminence),
  so the sign of n̂ · unit(J13 - J0) is the side. Rotations and scale do not change it.

  Args:
    v_template: [V, 3] rest mesh.
    J_regressor: [16, V] joint regressor.

  Returns:
    ('right' or 'left', the signed sine: positive for right).

  Raises:
    UserError: when the thumb lies within ``MIN_HANDEDNESS`` of the palm plane (not a hand).
  """
  joints = np.asarray(J_regressor, np.float64) @ np.asarray(v_template, np.float64)
  normal = np.cross(joints[1] - joints[0], joints[7] - joints[0])
  thumb = joints[13] - joints[0]
  scale = np.linalg.norm(normal) * np.linalg.norm(thumb)
  sine = float(normal @ thumb / scale) if scale > 0 else 0.0
  if not abs(sine) >= MIN_HANDEDNESS:
    raise UserError(
        f"cannot tell which hand this model is: in its rest pose the thumb base lies in the "
        f"palm plane (sine {sine:+.3f}, |sine| >= {MIN_HANDEDNESS} expected); not a MANO hand?")
  return ("right" if sine > 0 else "left"), sine


def _checked_side(path: PathLike, arrays: dict, side: Optional[str],
                  stored: Optional[str] = None) -> str:
  """The side of a model's arrays: the geometry's, after checking what the caller, the stored
  side or the file name claims (in that order of precedence)."""
  try:
    actual, _ = geometric_side(arrays["v_template"], arrays["J_regressor"])
  except UserError as e:
    raise UserError(f"{path}: {e}") from None
  name_side = _side_from_name(path)
  claims = [(side, f"side={side!r} was asked for"), (stored, "the side stored in it says so"),
            (name_side, "its file name says so")]
  claimed, why = next(((s, w) for s, w in claims if s is not None), (actual, ""))
  if claimed != actual:
    raise UserError(
        f"{path}: this MANO file holds a {actual.upper()} hand (its rest-pose geometry: thumb "
        f"and palm of a {actual} hand), but it was loaded as the {claimed} hand ({why}); use "
        f"MANO_{claimed.upper()}.pkl from mano_v1_2.zip, or check whether the two files were "
        "swapped or renamed")
  return actual


def _side_from_name(path: PathLike) -> Optional[str]:
  name = pathlib.Path(path).name.lower()
  return "left" if "left" in name else "right" if "right" in name else None


def _parents(data: dict, path: pathlib.Path) -> np.ndarray:
  """Parents from ``kintree_table`` row 0 (root sentinel ignored), checked against MANO's tree."""
  if "kintree_table" not in data:
    return np.array(MANO_PARENTS)
  table = _to_array(data["kintree_table"], f"{path}: key 'kintree_table'")
  if table.shape != (2, 16):
    raise UserError(f"{path}: key 'kintree_table' must have shape [2, 16], "
                     f"got {list(table.shape)}")
  parents = np.array([-1] + [int(p) for p in table[0, 1:]])
  if tuple(parents) != MANO_PARENTS or list(table[1]) != list(range(16)):
    raise UserError(f"{path}: key 'kintree_table' is not MANO's joint tree: parents "
                     f"{parents.tolist()}, expected {list(MANO_PARENTS)}")
  return parents


def _to_array(obj: Any, what: str) -> np.ndarray:
  """Turns an unpickled value (array, chumpy or csc stand-in, list) into a numpy array."""
  if isinstance(obj, np.ndarray):
    return obj
  if isinstance(obj, _ChStub):
    state = _state_dict(obj, what)
    if "x" not in state:
      raise UserError(f"{what}: chumpy Ch object without an 'x' array")
    return _to_array(state["x"], what)
  if isinstance(obj, _SelectStub):
    state = _state_dict(obj, what)
    missing = [k for k in ("a", "idxs", "preferred_shape") if k not in state]
    if missing:
      raise UserError(f"{what}: chumpy Select object without {missing}")
    source = _to_array(state["a"], what).reshape(-1)
    idxs = np.asarray(_to_array(state["idxs"], what)).reshape(-1).astype(np.int64)
    shape = tuple(int(s) for s in np.asarray(state["preferred_shape"]).reshape(-1))
    return source[idxs].reshape(shape)
  if isinstance(obj, _CscStub):
    return _csc_to_dense(_state_dict(obj, what), what)
  if isinstance(obj, (list, tuple)) or np.isscalar(obj):
    return np.asarray(obj)
  raise UserError(f"{what}: unsupported object of type {type(obj).__name__}")


def _state_dict(obj: _StateHolder, what: str) -> dict:
  state = obj.state
  # Objects with __slots__ pickle their state as (dict, slots_dict).
  if isinstance(state, tuple) and len(state) == 2:
    state = {**(state[0] or {}), **(state[1] or {})}
  if not isinstance(state, dict):
    raise UserError(f"{what}: {type(obj).__name__} without a state dict")
  return state


def _csc_to_dense(state: dict, what: str) -> np.ndarray:
  """Dense matrix of a pickled csc_matrix state (data, indices = rows, indptr = column offsets)."""
  missing = [k for k in ("data", "indices", "indptr") if k not in state]
  if missing:
    raise UserError(f"{what}: csc_matrix without {missing}")
  data = np.asarray(state["data"], np.float64).reshape(-1)
  rows = np.asarray(state["indices"]).reshape(-1).astype(np.int64)
  indptr = np.asarray(state["indptr"]).reshape(-1).astype(np.int64)
  shape = state.get("_shape", state.get("shape"))
  if shape is None:
    shape = (int(rows.max()) + 1 if rows.size else 0, indptr.size - 1)
  shape = tuple(int(s) for s in shape)
  if (len(shape) != 2 or indptr.size != shape[1] + 1 or indptr[0] != 0 or indptr[-1] != data.size
      or rows.size != data.size or np.any(np.diff(indptr) < 0)
      or (rows.size and (rows.min() < 0 or rows.max() >= shape[0]))):
    raise UserError(f"{what}: inconsistent csc_matrix (shape {shape}, {data.size} values, "
                     f"{indptr.size} column offsets)")
  cols = np.repeat(np.arange(shape[1]), np.diff(indptr))
  dense = np.zeros(shape, np.float64)
  np.add.at(dense, (rows, cols), data)
  return dense
