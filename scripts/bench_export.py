"""Exported-file sizes and SVR inference latency: JAX against onnxruntime and StableHLO.

Usage:
  python scripts/bench_export.py [--variant official] [--checkpoint CKPT] [--batches 1,32]
      [--repeats 5] [--warmup 2] [--topology assets.npz] [--keep DIR] [--json out.json]

Exports the SVR with ``simajax.export`` (ONNX and StableHLO, both with a dynamic batch) and
reports each file's size, then the steady-state forward latency at each batch size of:

* ``jax``: the live model as ``simajax.predict`` runs it (jit, weights as arguments, the default
  op formulation);
* ``jax, export formulation``: the same with the ops of ``simajax.models.formulation`` in their
  export form (what the ONNX graph computes), to tell the formulation from the runtime;
* ``stablehlo``: the ``--format stablehlo`` artefact through ``simajax.export.load_stablehlo``
  (weights baked in as constants);
* ``onnxruntime``: the ``--format onnx`` file on onnxruntime's CPU provider (default threads).

Times are medians over ``--repeats`` calls after ``--warmup`` untimed ones (``efficiency.py``'s
``median_time``), with outputs on the host. The load average is printed before and after: on a
shared machine wall times grow with the other load. Without ``--checkpoint`` the weights are
random (He-scaled, as in ``efficiency.py``) on the built-in SynthHand mesh hierarchy, or on
``--topology``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile

import jax
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from efficiency import load_average, median_time, random_variables  # noqa: E402  pylint: disable=g-import-not-at-top

from simajax import export, model_setup, predict  # noqa: E402
from simajax.mesh import MeshTopology  # noqa: E402
from simajax.models import build_svr, formulation, svr_config  # noqa: E402
from simajax.training import export_dir  # noqa: E402


def build(args) -> tuple[export_dir.LoadedModel, str]:
  """The model to export: a checkpoint, or random weights of ``--variant``."""
  if args.checkpoint:
    return predict.load_model(args.checkpoint)
  topology = (MeshTopology.load(args.topology) if args.topology else model_setup.load_topology(
      ml_collections.ConfigDict({"topology": None, "hand_model": None})))
  config = svr_config(args.variant)
  model = build_svr(config, topology)
  variables = random_variables(export_dir.abstract_variables(model), topology)
  return (export_dir.LoadedModel(model, jax.device_put(variables), config, topology),
          f"random {args.variant} weights")


def main(argv=None) -> None:
  """Exports, times and prints the table (module docstring)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--variant", default="official", choices=("official", "small", "tiny"))
  parser.add_argument("--checkpoint", help="export dir or SVR run dir (instead of --variant)")
  parser.add_argument("--topology", help="mesh topology .npz for random weights")
  parser.add_argument("--batches", default="1,32")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--keep", help="write the exported files here instead of a temp dir")
  parser.add_argument("--json", help="also write the numbers as JSON")
  args = parser.parse_args(argv)
  batches = [int(b) for b in args.batches.split(",")]
  print(f"load average before: {load_average():.2f}; {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, jax {jax.__version__} "
        f"({jax.default_backend()})")

  loaded, description = build(args)
  size = loaded.model.input_size
  with tempfile.TemporaryDirectory() as tmp:
    out_dir = pathlib.Path(args.keep or tmp)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, hlo_path = out_dir / "svr.onnx", out_dir / "svr.stablehlo"
    export.export_onnx(loaded, onnx_path)
    hlo_path.write_bytes(export.export_stablehlo(loaded))
    sizes = {"onnx": onnx_path.stat().st_size, "stablehlo": hlo_path.stat().st_size}
    ort_model = export.load_onnx(onnx_path)
    hlo_model = export.load_stablehlo(hlo_path)

    model, variables = loaded.model, loaded.variables
    live = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])

    def export_form_apply(v, x):
      with formulation.export_formulation():  # read while jit traces this function
        return model.apply(v, x, train=False)[0]

    export_form = jax.jit(export_form_apply)
    runners = {
        "jax": lambda x: jax.device_get(live(variables, x)),
        "jax, export formulation": lambda x: jax.device_get(export_form(variables, x)),
        "stablehlo": hlo_model,
        "onnxruntime": ort_model,
    }
    results = {}
    for batch in batches:
      images = np.random.default_rng(batch).random((batch, size, size, 3), dtype=np.float32)
      for name, run in runners.items():
        timing = median_time(lambda r=run: r(images), args.repeats, args.warmup)
        results.setdefault(name, {})[batch] = timing["median_s"]

  print(f"\nSVR {loaded.model_config.variant} ({description}), input {size}x{size}")
  print(f"exported files: ONNX {sizes['onnx'] / 1e6:.1f} MB, StableHLO "
        f"{sizes['stablehlo'] / 1e6:.1f} MB")
  header = " | ".join(f"batch {b} (ms)" for b in batches)
  print(f"\n| runtime | {header} | {' | '.join(f'per image at {b} (ms)' for b in batches)} |")
  print("|---" * (1 + 2 * len(batches)) + "|")
  for name, times in results.items():
    cells = [f"{times[b] * 1e3:.1f}" for b in batches]
    cells += [f"{times[b] * 1e3 / b:.2f}" for b in batches]
    print(f"| {name} | {' | '.join(cells)} |")
  print(f"\nload average after: {load_average():.2f}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(
        {"variant": loaded.model_config.variant, "sizes_bytes": sizes,
         "latency_s": results, "load_average_after": load_average()}, indent=2))


if __name__ == "__main__":
  main()
