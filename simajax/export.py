"""Deployable files from a trained SVR: StableHLO, ONNX, and the official PyTorch state_dict.

CLI:
  python -m simajax.export --checkpoint CKPT --format onnx|stablehlo|torch --out FILE
      [--batch N|dynamic] [--step N]

CKPT is an export directory (``simajax.convert``) or a training run directory, as for
``simajax.predict`` (``--step`` picks a run's checkpoint). Formats:

* ``stablehlo``: a serialized ``jax.export`` artefact of the SVR inference function (eval mode,
  float32, the weights baked in as constants): images [B, S, S, 3] float32 RGB in [0, 1] ->
  ``OUTPUT_KEYS`` (``verts_canonical``, ``joints_canonical``, ``verts_rotated``,
  ``joints_rotated``, ``joints_2d``, ``rotation_6d``, ``rotation``: vertices and joints without and
  with the global rotation, 2D joints, the 6D rotation and its matrix; meanings in
  ``simajax.predict``). It is lowered for the platform JAX runs on here (CPU unless an
  accelerator is present). ``load_stablehlo(FILE)`` runs it with jax alone, without simajax's
  model code.
* ``onnx``: the same function converted by jax2onnx (optional extra ``[export]``); input
  ``images`` NHWC, one output per ``OUTPUT_KEYS`` entry, by name. ``load_onnx(FILE)`` runs it with
  onnxruntime. The graph uses the models' export formulation (``simajax.models.formulation``):
  equivalent, converter-friendly forms of a few ops.
* ``torch``: the official SVRHand ``state_dict`` (``.pth`` via torch, or ``.npz`` with the same
  keys), the inverse of ``simajax.convert``: it loads into the official PyTorch code. Keys that
  simajax does not keep (``convert.SKIPPED_KEY_PATTERNS``) come back as ``simajax.convert`` found
  them when the checkpoint was imported by it (``torch_extras.npz``); otherwise the BatchNorm
  counters are written as 0, and the unused ``dense_stack1.senet3`` block and the MANO-layer
  buffers are absent (load with ``strict=False``; the official model builds those buffers itself).

``--batch``: a fixed batch size N, or ``dynamic`` (the default) for any batch size.

Library: ``inference_function``, ``export_stablehlo``, ``load_stablehlo``, ``export_onnx``,
``load_onnx``, ``export_torch_state_dict``, ``write_state_dict``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sys
from typing import Callable, Iterator, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from simajax import cli, convert
from simajax.cli import UserError
from simajax.extras import require
from simajax.models import OUTPUT_KEYS
from simajax.models import formulation
from simajax.training import export_dir

FORMATS = ("onnx", "stablehlo", "torch")
DYNAMIC = "dynamic"
INPUT_NAME = "images"
Batch = Union[int, str]


def parse_batch(value: Optional[str]) -> Batch:
  """``--batch``: a positive int, or ``dynamic`` (also for None).

  Raises:
    ValueError: for anything else.
  """
  if value is None or value == DYNAMIC:
    return DYNAMIC
  try:
    batch = int(value)
  except ValueError:
    batch = 0
  if batch < 1:
    raise UserError(f"--batch must be a positive integer or '{DYNAMIC}', got {value!r}")
  return batch


def inference_function(loaded: export_dir.LoadedModel) -> Callable[[jax.Array], dict]:
  """images [B, S, S, 3] float32 -> {OUTPUT_KEYS: arrays}: the SVR in eval mode.

  The variables are closed over as numpy arrays, so tracing the function bakes them in as
  constants (an exported file then needs no separate weights).
  """
  model = loaded.model
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(loaded.variables))

  def infer(images):
    outputs, _ = model.apply(variables, images, train=False)
    return {key: outputs[key] for key in OUTPUT_KEYS}

  return infer


def input_shape(input_size: int, batch: Batch) -> tuple:
  """The image batch shape; a dynamic batch is the dimension name 'B'."""
  return ("B" if batch == DYNAMIC else int(batch), input_size, input_size, 3)


def export_stablehlo(loaded: export_dir.LoadedModel, batch: Batch = DYNAMIC) -> bytes:
  """The serialized ``jax.export`` artefact of ``inference_function(loaded)``."""
  size = loaded.model.input_size
  if batch == DYNAMIC:
    shape = jax.export.symbolic_shape(f"B, {size}, {size}, 3")
  else:
    shape = input_shape(size, batch)
  exported = jax.export.export(jax.jit(inference_function(loaded)))(
      jax.ShapeDtypeStruct(shape, jnp.float32))
  return bytes(exported.serialize())


class StableHLOModel:
  """A deserialized StableHLO artefact: ``model(images)`` -> {OUTPUT_KEYS: numpy arrays}.

  Attributes:
    exported: the ``jax.export.Exported``.
    input_shape: (B, S, S, 3) with B None for a dynamic batch.
  """

  def __init__(self, exported: jax.export.Exported, source: str = "StableHLO artefact"):
    self.exported = exported
    self.source = source
    (aval,) = exported.in_avals
    self.input_shape = tuple(d if isinstance(d, int) else None for d in aval.shape)
    self._call = jax.jit(exported.call)

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs the artefact on float32 images shaped like ``input_shape``.

    Raises:
      ValueError: for a batch of another shape or dtype.
    """
    images = np.asarray(images)
    expected = self.input_shape
    if (images.dtype != np.float32 or images.ndim != 4
        or any(e is not None and e != g for e, g in zip(expected, images.shape))):
      shown = ["B" if d is None else d for d in expected]
      raise UserError(f"{self.source}: expected float32 images {shown}, got {images.dtype} "
                       f"{list(images.shape)}")
    return jax.device_get(self._call(images))


def load_stablehlo(path: Union[str, os.PathLike]) -> StableHLOModel:
  """Loads a ``--format stablehlo`` file; running it needs jax only, no simajax model code.

  Raises:
    FileNotFoundError / ValueError: naming the file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"StableHLO file not found: {path}")
  try:
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
  except Exception as e:  # flatbuffer / version errors have no common type
    raise UserError(f"{path}: not a serialized jax.export artefact ({e})") from e
  return StableHLOModel(exported, str(path))


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
  """Silences jax2onnx's and onnx_ir's warnings while converting.

  jax2onnx imports all of its plugins and logs a traceback for each that does not import with
  this jax (dm_pix ones we do not use), and onnx_ir warns about every untyped constant shape.
  """
  loggers = [logging.getLogger(name) for name in ("jax2onnx", "onnx_ir")]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.ERROR)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def export_onnx(loaded: export_dir.LoadedModel, path: Union[str, os.PathLike],
                batch: Batch = DYNAMIC) -> None:
  """Converts ``inference_function(loaded)`` to ONNX with jax2onnx and writes ``path``.

  The model is traced in its export formulation (``simajax.models.formulation``).

  Raises:
    ImportError: without the ``[export]`` extra (one line).
  """
  with _quiet_converter():
    jax2onnx = require("jax2onnx", "ONNX export", "export")
    onnx = require("onnx", "ONNX export", "export")
    infer = inference_function(loaded)

    def infer_tuple(images):  # outputs in OUTPUT_KEYS order, named below
      outputs = infer(images)
      return tuple(outputs[key] for key in OUTPUT_KEYS)

    with formulation.export_formulation():
      proto = jax2onnx.to_onnx(infer_tuple, [input_shape(loaded.model.input_size, batch)],
                               model_name="simajax_svr", input_names=[INPUT_NAME],
                               output_names=list(OUTPUT_KEYS))
  onnx.save(proto, os.fspath(path))


class ONNXModel:
  """An onnxruntime session of a ``--format onnx`` file: ``model(images)`` -> {OUTPUT_KEYS: ...}."""

  def __init__(self, path: Union[str, os.PathLike], threads: Optional[int] = None):
    ort = require("onnxruntime", "running an ONNX export", "export")
    options = ort.SessionOptions()
    if threads:
      options.intra_op_num_threads = threads
    self.session = ort.InferenceSession(os.fspath(path), options,
                                        providers=["CPUExecutionProvider"])
    self.output_names = [o.name for o in self.session.get_outputs()]

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs the graph on float32 NHWC images."""
    values = self.session.run(None, {INPUT_NAME: np.asarray(images, np.float32)})
    return dict(zip(self.output_names, values))


def load_onnx(path: Union[str, os.PathLike], threads: Optional[int] = None) -> ONNXModel:
  """An onnxruntime (CPU) session of an ONNX export.

  Raises:
    FileNotFoundError: naming the file. ImportError: without onnxruntime.
  """
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f"ONNX file not found: {path}")
  return ONNXModel(path, threads)


def export_torch_state_dict(loaded: export_dir.LoadedModel,
                            ckpt_dir: Optional[Union[str, os.PathLike]] = None
                            ) -> tuple[dict[str, np.ndarray], list[str]]:
  """The official-layout state_dict of a checkpoint (the inverse of ``simajax.convert``).

  Args:
    loaded: the model and its variables.
    ckpt_dir: its directory; when it holds ``convert.TORCH_EXTRAS_FILE``, the keys simajax
      skipped on import come back from it, in the imported file's key order.

  Returns:
    (state_dict, absent): key -> numpy array, and the official keys that could not be produced
    (empty when the extras file was found). Without it the BatchNorm ``num_batches_tracked``
    counters are 0 (int64) and ``absent`` names the other skipped keys' groups.
  """
  ours = convert.variables_to_state_dict(jax.device_get(loaded.variables))
  extras = None if ckpt_dir is None else convert.read_torch_extras(ckpt_dir)
  if extras is not None:
    entries, order = extras
    merged = {**ours, **entries}
    ordered = [k for k in order if k in merged]
    ordered += [k for k in merged if k not in set(ordered)]
    return {k: merged[k] for k in ordered}, []
  state_dict = {}
  for key, value in ours.items():
    state_dict[key] = value
    if key.endswith(".running_var"):  # torch orders a BN's counter after its statistics
      state_dict[key[:-len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
  absent = ["backbone.dense_stack1.senet3.* (an SE block the official forward never calls)",
            "mano_layer.* (buffers the official model loads from MANO itself)"]
  return state_dict, absent


def write_state_dict(path: Union[str, os.PathLike], state_dict: Mapping[str, np.ndarray]) -> None:
  """Writes a state_dict as ``.pth`` (torch.save of tensors) or ``.npz`` (same keys).

  Raises:
    ImportError: for .pth without torch. ValueError: for another suffix.
  """
  path = pathlib.Path(path)
  if path.suffix == ".npz":
    np.savez(path, **state_dict)
    return
  if path.suffix not in (".pth", ".pt"):
    raise UserError(f"--out {path}: a torch state_dict is written as .pth (needs torch) or "
                     f".npz (same keys), not {path.suffix!r}")
  torch = require("torch", f"writing {path}",
                  hint="pip install torch, or write .npz (same keys) instead")
  torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)


def _main(argv: list[str]) -> int:
  # Imported here: predict pulls in the photo and render code, which the library API needs not.
  from simajax import predict, runtime  # pylint: disable=import-outside-toplevel

  parser = cli.module_parser("simajax.export", __doc__)
  parser.add_argument("--checkpoint", required=True,
                      help="export dir (simajax.convert) or SVR training run dir")
  parser.add_argument("--format", required=True, choices=FORMATS)
  parser.add_argument("--out", required=True, help="file to write")
  parser.add_argument("--batch", help=f"fixed batch size N, or '{DYNAMIC}' (default; onnx and "
                                      "stablehlo only)")
  parser.add_argument("--step", type=int, help="checkpoint step of a training run dir")
  args = parser.parse_args(argv)
  runtime.configure_process()
  if args.format == "torch" and args.batch is not None:
    parser.error("--batch applies to --format onnx and stablehlo, not to a state_dict")
  out = pathlib.Path(args.out)
  batch = parse_batch(args.batch)
  if not out.parent.is_dir():
    raise FileNotFoundError(f"--out {out}: directory {out.parent} does not exist")
  loaded, description = predict.load_model(args.checkpoint, args.step)
  if args.format == "stablehlo":
    out.write_bytes(export_stablehlo(loaded, batch))
  elif args.format == "onnx":
    export_onnx(loaded, out, batch)
  else:
    state_dict, absent = export_torch_state_dict(loaded, args.checkpoint)
    write_state_dict(out, state_dict)
  what = f"{len(state_dict)} keys" if args.format == "torch" else f"batch {batch}"
  print(f"wrote {out} ({args.format}, {what}, {out.stat().st_size / 1e6:.1f} MB) from "
        f"{description}")
  if args.format == "torch" and absent:
    print("not in this checkpoint (load with strict=False): " + "; ".join(absent))
  return 0


main = cli.entry_point(_main)


if __name__ == "__main__":
  sys.exit(main())
