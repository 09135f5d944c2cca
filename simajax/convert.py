"""Import official PyTorch SVRHand weights (a ``state_dict``) into simajax variables.

Library: ``state_dict_to_variables`` maps a dict of numpy arrays keyed as the official
``state_dict`` (shared/parity/svr_state_dict_manifest.jsonl) onto our ``params`` /
``batch_stats``; ``variables_to_state_dict`` is its inverse. Layouts (parity README §5): conv
OIHW -> HWIO, Linear [out, in] -> [in, out], Conv1d k=1 [out, in, 1] -> [in, out], BatchNorm
weight/bias/running_mean/running_var -> scale/bias/mean/var; ``upsample`` and ``mano_joint_reg``
as they are. Our module names follow torch's, so the key of every variable is derived from its
path (``_torch_key``).

Keys of the official file that are deliberately not imported (``SKIPPED_KEY_PATTERNS``): the
``num_batches_tracked`` counters (no effect with momentum 0.1), the nine ``mano_layer.*`` buffers
(the forward never reads them) and ``backbone.dense_stack1.senet3.*`` (an SE block the official
forward never calls; simajax does not create it). Anything else unknown, missing or mis-shaped is
reported in one ``UserError``, as counts and the first few keys of each kind. The CLI keeps
those skipped entries, and the file's key order, in ``CKPT_DIR/torch_extras.npz``
(``save_torch_extras``), so that ``simajax.export --format torch`` gives the imported state_dict
back bit for bit.

CLI:
  python -m simajax.convert --torch-state-dict FILE.{pth,npz} --config official
      --topology assets.npz --out CKPT_DIR [--backbone-only] [--seed 0]
"""

from __future__ import annotations

import importlib.util
import pathlib
import pickle
import re
import sys
from typing import Any, Iterable, Mapping

import flax
import jax
import ml_collections
import numpy as np

from simajax import cli
from simajax.mesh import MeshTopology
from simajax.models import build_svr, init_variables, svr_config
from simajax.models.config import VARIANTS
from simajax.training import export_dir

SKIPPED_KEY_PATTERNS = (
    r".*\.num_batches_tracked",
    r"mano_layer\..*",
    r"backbone\.dense_stack1\.senet3\..*",
)

# torch nn.Sequential containers: our child "<name>_<i>" is torch's "<name>.<i>".
_SEQUENTIALS = ("pre_layer", "conv3x3", "thrink1", "thrink2", "thrink3", "uv_reg", "de_layer",
                "conv_block", "pre_block", "fc_block_1")
# Children of our ConvBN / LinBN wrappers: torch's conv_layer / linear_layer Sequential indices.
_WRAPPER_CHILDREN = {"conv": "0", "linear": "0", "bn": "1"}
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
               "var": "running_var"}
_MAPPINGS = ("shared_encoding_mapping", "j_latent_mapping")
BACKBONE_PREFIX = "backbone."
TORCH_EXTRAS_FILE = "torch_extras.npz"
_KEY_ORDER = "__key_order__"  # not a torch key (torch keys are dotted module paths)


def is_skipped_key(key: str) -> bool:
  """Whether an official state_dict key is deliberately not imported (module docstring)."""
  return any(re.fullmatch(p, key) for p in SKIPPED_KEY_PATTERNS)


def _torch_key(path: tuple[str, ...]) -> str:
  """The official state_dict key of our variable at ``path`` (module names..., leaf)."""
  *modules, leaf = path
  if modules and modules[0] == "lifting":  # our Lifting groups two top-level torch members
    modules = modules[1:]
  parts = []
  i = 0
  while i < len(modules):
    seg = modules[i]
    if seg in _MAPPINGS:
      # mapping.block_k.{conv,bn} -> torch Sequential(conv, bn, relu) x 3: indices 3k, 3k + 1.
      block = int(modules[i + 1].split("_")[1])
      offset = int(_WRAPPER_CHILDREN[modules[i + 2]])
      parts += [seg, str(3 * block + offset)]
      i += 3
      continue
    m = re.fullmatch(r"(.+)_(\d+)", seg)
    if m and m.group(1) in _SEQUENTIALS:
      parts += [m.group(1), m.group(2)]
    elif seg in _WRAPPER_CHILDREN and modules[0] != "decoder3d":
      parts.append(_WRAPPER_CHILDREN[seg])
    else:
      parts.append(seg)
    i += 1
  if modules and modules[0] == "decoder3d":
    parts.append("layer")  # SpiralConv keeps its weights in a Linear called "layer"
  parts.append(_LEAF_NAMES.get(leaf, leaf) if modules else leaf)
  return ".".join(parts)


def _layout(path: tuple[str, ...], ndim: int) -> str:
  """How our array relates to torch's: 'conv' (HWIO/OIHW), 'conv1d', 'linear' or 'copy'."""
  if path[-1] != "kernel":
    return "copy"
  if ndim == 4:
    return "conv"
  if any(seg.startswith("conv_block_") for seg in path):
    return "conv1d"
  return "linear"


def _to_ours(x: np.ndarray, layout: str) -> np.ndarray:
  if layout == "conv":
    return x.transpose(2, 3, 1, 0)
  if layout == "conv1d":
    return x[:, :, 0].T
  if layout == "linear":
    return x.T
  return x


def _to_torch(x: np.ndarray, layout: str) -> np.ndarray:
  if layout == "conv":
    return x.transpose(3, 2, 0, 1)
  if layout == "conv1d":
    return x.T[:, :, None]
  if layout == "linear":
    return x.T
  return x


def _torch_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
  return tuple(_to_torch(np.empty(shape, np.uint8), layout).shape)


def variable_map(abstract_variables: Mapping[str, Any]) -> dict[str, tuple[str, tuple, str]]:
  """torch key -> (collection, path, layout) for every variable of the model.

  Args:
    abstract_variables: {'params': ..., 'batch_stats': ...} (arrays or ShapeDtypeStructs).
  """
  table = {}
  for collection in ("params", "batch_stats"):
    flat = flax.traverse_util.flatten_dict(dict(abstract_variables.get(collection, {})))
    for path, leaf in flat.items():
      key = _torch_key(path)
      if key in table:
        raise AssertionError(f"two variables map to the torch key {key!r}")
      table[key] = (collection, path, _layout(path, len(leaf.shape)))
  return table


def _format_problems(unknown: Iterable[str], missing: Iterable[str],
                     misshaped: Iterable[str]) -> str:
  """One line: each kind of problem as a count and its first few keys."""
  return "; ".join(f"{title} {cli.summarize_names(items)}" for title, items in
                   (("unknown keys", list(unknown)), ("missing keys", list(missing)),
                    ("mis-shaped keys", list(misshaped))) if items)


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray],
                            abstract_variables: Mapping[str, Any],
                            *, only_prefix: str | None = None,
                            source: str = "state_dict") -> dict[str, Any]:
  """Maps an official ``state_dict`` onto our variables.

  Args:
    state_dict: official key -> array (numpy or anything ``np.asarray`` accepts).
    abstract_variables: the target model's variables or their shapes (``abstract_variables``).
    only_prefix: import only the variables whose torch key starts with this prefix (e.g.
      ``"backbone."``); the result then holds only those.
    source: a name for the state_dict in error messages (e.g. its file).

  Returns:
    {'params': ..., 'batch_stats': ...} nested dicts of numpy arrays in the target dtypes
    (only the imported subset when ``only_prefix`` is given).

  Raises:
    UserError: summarising the unknown, missing and mis-shaped keys at once.
  """
  table = variable_map(abstract_variables)
  if only_prefix is not None:
    table = {k: v for k, v in table.items() if k.startswith(only_prefix)}
  unknown = sorted(k for k in state_dict if k not in table and not is_skipped_key(k))
  missing = sorted(k for k in table if k not in state_dict)
  misshaped = []
  flat_abstract = {c: flax.traverse_util.flatten_dict(dict(abstract_variables.get(c, {})))
                   for c in ("params", "batch_stats")}
  for key, (collection, path, layout) in table.items():
    if key not in state_dict:
      continue
    expected = _torch_shape(tuple(flat_abstract[collection][path].shape), layout)
    got = tuple(np.shape(state_dict[key]))
    if got != expected:
      misshaped.append(f"{key}: expected {list(expected)}, got {list(got)}")
  if unknown or missing or misshaped:
    raise cli.UserError(f"{source} does not fit the SVR model (another variant? see --config): "
                        + _format_problems(unknown, missing, sorted(misshaped)))
  flat_out = {"params": {}, "batch_stats": {}}
  for key, (collection, path, layout) in table.items():
    dtype = flat_abstract[collection][path].dtype
    flat_out[collection][path] = np.ascontiguousarray(
        _to_ours(np.asarray(state_dict[key]), layout)).astype(dtype)
  return {c: flax.traverse_util.unflatten_dict(v) for c, v in flat_out.items()}


def variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Inverse of ``state_dict_to_variables``: our variables as an official-layout state_dict.

  The skipped keys (``SKIPPED_KEY_PATTERNS``) are not produced.
  """
  table = variable_map(variables)
  flat = {c: flax.traverse_util.flatten_dict(dict(variables.get(c, {})))
          for c in ("params", "batch_stats")}
  return {key: np.ascontiguousarray(_to_torch(np.asarray(flat[collection][path]), layout))
          for key, (collection, path, layout) in table.items()}


def normalise_backbone_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """A DenseStack backbone state_dict with every key under ``backbone.``.

  MobRecon's backbone file may carry the prefix (saved from the whole model) or not (saved
  from the backbone module); a file mixing both is kept as is, so its unprefixed keys are
  reported as unknown.
  """
  if any(k.startswith(BACKBONE_PREFIX) for k in state_dict):
    return dict(state_dict)
  return {BACKBONE_PREFIX + k: v for k, v in state_dict.items()}


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Reads a ``.pth`` (needs torch) or ``.npz`` state_dict into numpy arrays.

  Raises:
    FileNotFoundError / UserError: with a message naming the file and what was expected.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"state_dict file not found: {path}")
  if path.suffix == ".npz":
    with cli.open_npz(path, "an SVRHand state_dict (official key -> array)") as data:
      try:
        return {k: data[k] for k in data.files}
      except ValueError as e:  # an object array, which would need pickle
        raise cli.UserError(f"{path}: an array could not be read ({e})") from None
  if path.suffix in (".pth", ".pt"):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise cli.UserError(
          f"reading {path} needs PyTorch, which is not installed: `pip install torch`, or save "
          f"the state_dict as .npz (np.savez(out, **{{k: v.numpy() for k, v in sd.items()}}))"
      ) from e
    try:
      obj = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:
      raise cli.UserError(f"{path}: not a readable torch file ({cli.first_line(e)})") from e
    if isinstance(obj, dict) and not any(hasattr(v, "numpy") for v in obj.values()):
      # Training checkpoints wrap the state_dict; take the single nested dict of tensors.
      nested = [v for v in obj.values() if isinstance(v, dict)
                and any(hasattr(t, "numpy") for t in v.values())]
      if len(nested) != 1:
        raise cli.UserError(f"{path}: expected a state_dict (name -> tensor), found a dict with "
                         f"keys {sorted(obj)[:10]}")
      obj = nested[0]
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "numpy")}
  raise cli.UserError(f"{path}: unsupported state_dict file type {path.suffix!r}; expected .pth "
                   f"or .npz")


def resolve_model_config(spec: str) -> ml_collections.ConfigDict:
  """A model config from a variant name or a config file whose ``get_config()`` has ``model``.

  Raises:
    UserError: when ``spec`` is neither.
  """
  if spec in VARIANTS:
    return svr_config(spec)
  path = pathlib.Path(spec)
  if not path.is_file():
    raise cli.UserError(f"--config {spec!r}: neither a model variant {VARIANTS} nor a config "
                        "file")
  module_spec = importlib.util.spec_from_file_location(f"_simajax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise cli.UserError(f"{path}: a config file must define get_config()")
  config = module.get_config()
  if "model" not in config:
    raise cli.UserError(f"{path}: get_config() has no 'model' field")
  return config.model


def convert(state_dict: Mapping[str, np.ndarray], model_config: ml_collections.ConfigDict,
            topology: MeshTopology, *, backbone_only: bool = False, seed: int = 0,
            source: str = "state_dict") -> dict[str, Any]:
  """Variables of ``build_svr(model_config, topology)`` from an official state_dict.

  With ``backbone_only`` only the ``backbone.*`` weights come from the file (a MobRecon
  DenseStack backbone, keys with or without the ``backbone.`` prefix); every other variable is
  freshly initialised from ``seed``.
  """
  model = build_svr(model_config, topology)
  abstract = export_dir.abstract_variables(model)
  if not backbone_only:
    return state_dict_to_variables(state_dict, abstract, source=source)
  imported = state_dict_to_variables(normalise_backbone_keys(state_dict), abstract,
                                     only_prefix=BACKBONE_PREFIX, source=source)
  variables = jax.tree.map(np.asarray, init_variables(model, seed))
  for collection in ("params", "batch_stats"):
    variables[collection]["backbone"] = imported[collection]["backbone"]
  return variables


def save_torch_extras(ckpt_dir: str | pathlib.Path, state_dict: Mapping[str, Any]) -> None:
  """Writes the skipped entries of an imported state_dict, and its key order, into ``ckpt_dir``.

  They are what ``simajax.export --format torch`` needs besides the variables to give the file
  back as it was (``read_torch_extras``).
  """
  skipped = {k: np.asarray(v) for k, v in state_dict.items() if is_skipped_key(k)}
  np.savez(pathlib.Path(ckpt_dir) / TORCH_EXTRAS_FILE, **skipped,
           **{_KEY_ORDER: np.array(list(state_dict), dtype=str)})


def read_torch_extras(ckpt_dir: str | pathlib.Path
                      ) -> tuple[dict[str, np.ndarray], list[str]] | None:
  """(skipped entries, key order) saved by ``save_torch_extras``, or None when there are none."""
  path = pathlib.Path(ckpt_dir) / TORCH_EXTRAS_FILE
  if not path.is_file():
    return None
  with np.load(path, allow_pickle=False) as data:
    entries = {k: data[k] for k in data.files if k != _KEY_ORDER}
    return entries, [str(k) for k in data[_KEY_ORDER]]


def _main(argv: list[str]) -> int:
  parser = cli.module_parser("simajax.convert", __doc__)
  parser.add_argument("--torch-state-dict", required=True,
                      help="official SVRHand state_dict: .pth (needs torch) or .npz, same keys")
  parser.add_argument("--config", default="official",
                      help=f"model variant {VARIANTS} or a config file with get_config().model")
  parser.add_argument("--topology",
                      help="mesh topology .npz (assets.npz format); official weights need the "
                           "official topology (shared/mesh_reference/assets.npz)")
  parser.add_argument("--out", required=True, help="checkpoint directory to create")
  parser.add_argument("--backbone-only", action="store_true",
                      help="import only a MobRecon DenseStack backbone; initialise the rest")
  parser.add_argument("--seed", type=int, default=0, help="init seed for --backbone-only")
  args = parser.parse_args(argv)
  if args.topology is None:
    parser.error("--topology is required: official weights are tied to the official spirals "
                 "and up-sampling matrices (shared/mesh_reference/assets.npz)")
  model_config = resolve_model_config(args.config)
  topology = MeshTopology.load(args.topology)
  state_dict = read_state_dict(args.torch_state_dict)
  variables = convert(state_dict, model_config, topology, backbone_only=args.backbone_only,
                      seed=args.seed, source=args.torch_state_dict)
  export_dir.save_checkpoint(args.out, variables, model_config, topology)
  if not args.backbone_only:
    save_torch_extras(args.out, state_dict)
  num = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
  print(f"wrote {args.out}: {num:,} parameters ({model_config.variant} SVR)")
  return 0


main = cli.entry_point(_main)


if __name__ == "__main__":
  sys.exit(main())
