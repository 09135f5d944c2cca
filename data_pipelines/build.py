"""Builds our TFDS datasets (array_record) and prints a summary.

Usage:
  python -m data_pipelines.build synthetic_hands/small --data_dir ~/tensorflow_datasets
  python -m data_pipelines.build synthetic_hands/small_mano --data_dir DIR --mano MANO_RIGHT.pkl

Every builder of ours is registered in ``BUILDERS`` with one line: the TFDS name mapped to
"module:Class". Builders take ``config``, ``data_dir``, and optionally ``mano_path`` and
``manual_dir`` keyword arguments. Training calls ``ensure_built`` to build the synthetic data on
first use.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Optional

import numpy as np

from simajax.cli import ArgumentParser, UserError, run

BUILDERS = {
    "synthetic_hands": "data_pipelines.synthetic_hands.builder:SyntheticHands",
    "dexycb": "data_pipelines.dexycb.builder:DexYcb",
    "hanco": "data_pipelines.hanco.builder:HanCo",
}


def builder_class(name: str):
  """The builder class registered for a TFDS name (e.g. "synthetic_hands").

  Raises:
    UserError: listing the registered names when ``name`` is unknown.
  """
  if name not in BUILDERS:
    raise UserError(f"unknown dataset '{name}'; registered: {sorted(BUILDERS)}")
  module, cls = BUILDERS[name].split(":")
  return getattr(importlib.import_module(module), cls)


def make_builder(dataset: str, data_dir: str, mano_path: Optional[str] = None,
                 manual_dir: Optional[str] = None):
  """Instantiates the builder of "<name>/<config>" writing array_record files to ``data_dir``.

  Args:
    dataset: "<name>/<config>", e.g. "synthetic_hands/small".
    data_dir: the TFDS data directory.
    mano_path: a MANO pickle, for builders that need (or can use) the hand model.
    manual_dir: where a builder's manually downloaded files live (Dex-YCB, HanCo).

  Returns:
    The TFDS builder.

  Raises:
    UserError: for an unknown dataset or config name.
  """
  name, _, config = dataset.partition("/")
  cls = builder_class(name)
  if config not in cls.builder_configs:
    raise UserError(f"dataset '{dataset}': {name} has no config {config!r}; configs: "
                    f"{sorted(cls.builder_configs)} (give '<name>/<config>')")
  kwargs = {"config": config, "data_dir": data_dir, "file_format": "array_record"}
  if mano_path is not None:
    kwargs["mano_path"] = mano_path
  if manual_dir is not None:
    kwargs["manual_dir"] = manual_dir
  return cls(**kwargs)


def build(dataset: str, data_dir: str, mano_path: Optional[str] = None,
          manual_dir: Optional[str] = None):
  """Prepares a dataset (no-op if already built) and returns its builder."""
  builder = make_builder(dataset, data_dir, mano_path, manual_dir)
  builder.download_and_prepare(file_format="array_record")
  return builder


def ensure_built(dataset: str, data_dir: str, mano_path: Optional[str] = None) -> str:
  """Builds the dataset when ``data_dir`` does not hold it yet; returns its directory.

  Args:
    dataset: "<name>/<config>", e.g. "synthetic_hands/small".
    data_dir: the TFDS data directory.
    mano_path: optional MANO pickle for builders that use it.

  Returns:
    The prepared dataset's directory (<data_dir>/<name>/<config>/<version>).
  """
  builder = make_builder(dataset, data_dir, mano_path)
  if not os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json")):
    builder.download_and_prepare(file_format="array_record")
  return str(builder.data_dir)


def summarize(builder) -> str:
  """Counts per split and the distribution of per-view visibility ratios, as text."""
  lines = [f"{builder.name}/{builder.builder_config.name} at {builder.data_dir}"]
  for split, info in sorted(builder.info.splits.items()):
    source = builder.as_data_source(split)
    views, ratios = 0, []
    for start in range(0, len(source), 256):
      for record in source.__getitems__(list(range(start, min(start + 256, len(source))))):
        valid = np.asarray(record["views"]["view_valid"], bool)
        views += int(valid.sum())
        ratios.append(np.asarray(record["views"]["vis_ratio"])[valid])
    ratios = np.concatenate(ratios) if ratios else np.zeros(0)
    known = ratios[ratios >= 0]
    line = f"  {split}: {info.num_examples} frames, {views} valid views"
    if known.size:
      q = np.percentile(known, [10, 50, 90])
      line += (f"; vis_ratio known for {known.size}: mean {known.mean():.3f}, "
               f"p10/p50/p90 {q[0]:.3f}/{q[1]:.3f}/{q[2]:.3f}, "
               f"< 0.4: {np.mean(known < 0.4):.1%}, == 1: {np.mean(known >= 0.999):.1%}")
    lines.append(line)
  return "\n".join(lines)


def main(argv=None) -> int:
  """CLI entry point (see the module docstring); a bad input prints one line, exit status 2."""
  return run(_main, argv)


def _main(argv) -> int:
  parser = ArgumentParser(prog="python -m data_pipelines.build",
                          description=__doc__.split("\n\n")[0])
  parser.add_argument("dataset", help="<name>/<config>, e.g. synthetic_hands/small")
  parser.add_argument("--data_dir", required=True, help="TFDS data directory")
  parser.add_argument("--mano", default=None, help="MANO pickle (MANO_RIGHT.pkl)")
  parser.add_argument("--manual_dir", default=None, help="raw dataset files (Dex-YCB, HanCo)")
  args = parser.parse_args(argv)
  start = time.time()
  builder = build(args.dataset, args.data_dir, args.mano, args.manual_dir)
  elapsed = time.time() - start
  print(summarize(builder))
  print(f"  build time: {elapsed:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
