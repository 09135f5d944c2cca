"""TFDS builder of HanCo in the shared multi-view schema.

Build::

  python -m data_pipelines.build hanco/rgb-rgb_merged --data_dir DIR --manual_dir HANCO_DIR \
      --mano MANO_DIR/MANO_RIGHT.pkl

Configs (splits ``train`` and ``test``):
  * ``hanco/rgb``: frames with ``is_valid``; train = ``is_train`` sequences, test = the others;
    rgb images only.
  * ``hanco/rgb-rgb_merged`` (SiMA's released cfg, ``read_aug: [rgb, rgb_merged]``): as ``rgb``,
    and every train frame is written a second time with its ``rgb_merged`` images (key suffix
    "/rgb_merged", ``bg_variant`` "rgb_merged"); test stays rgb only.
  * ``hanco/has_fit-rgb``: the alternative rule of a third-party loader: every frame of the
    sequences fully covered by ``has_fit``; train = those with ``rgb_color_auto`` copies.
Each example is one time step seen by the 8 cameras (views "cam0".."cam7"); ``examples.py``
documents the fields. The counts are printed at the end of each split and stored in the dataset's
``metadata.json`` under ``build_counts``.

Decisions on open points of the data (ours; summarised in docs/datasets.md#decisions-on-open-points):
  * split: SiMA's split code is unreleased; the default rule keeps ``is_valid`` frames
    (SiMA's cfg reads the ``is_valid`` file) and splits by ``is_train``. Expected on the full data
    set: 7,983 train / 1,072 test frames (paper: 63,864 / 8,576 images = 8 views each); not
    verifiable offline. No frame subsampling (``frame_step=1``).
  * rgb/rgb_merged mixing: we read the paper (docs/datasets.md#hanco-splits) as "training set doubled by
    background-replaced copies" (63,864 + 63,864), so ``rgb-rgb_merged`` doubles the train frames;
    ``rgb_merged`` views that do not exist (the augmented folders cover only part of the data)
    are invalid in the copy and counted.
  * occlusion: ``vis_ratio`` = pixels of ``mask_hand`` (JPEG, >= 128) over the pixels of the
    rendered MANO silhouette (world fit moved to the camera, root-aligned to the annotated wrist),
    whole image; our reconstruction of H2ONet's rule for HanCo.
  * nested ``shape`` values are flattened.
  * Hand side: always right (SiMA never flips HanCo). Joints come from ``xyz``, the mesh from the
    world MANO fit; the per-camera 61-vector files are not read.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_pipelines import files, manual_builder
from data_pipelines.hanco import examples, layout

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
HanCo:
  1. Download from https://lmb.informatik.uni-freiburg.de/resources/datasets/HanCo.en.html:
     meta.json, rgb, rgb_merged, mask_hand, calib, xyz and shape (and rgb_color_auto for the
     hanco/has_fit-rgb config). A small tester sample is at
     https://lmb.informatik.uni-freiburg.de/data/HanCo/HanCo_tester.zip.
  2. Unzip everything into one directory and pass it as --manual_dir, so that it holds
     meta.json, rgb/<sid>/cam<c>/<fid>.jpg, calib/<sid>/<fid>.json, xyz/..., shape/...,
     mask_hand/..., rgb_merged/....
MANO (required: GT meshes and visibility ratios):
  Register at https://mano.is.tue.mpg.de, download mano_v1_2.zip and pass models/MANO_RIGHT.pkl
  with --mano. MANO is for non-commercial research only: never redistribute it or the built
  dataset's meshes.
"""


@dataclasses.dataclass
class HanCoConfig(tfds.core.BuilderConfig):
  """Builder options.

  Attributes:
    split_rule: one of ``layout.SPLIT_RULES``.
    train_variants: image folders written for train frames ("rgb" first).
    frame_step: keep frame ids divisible by this.
    vis_ratio: render MANO silhouettes for ``vis_ratio`` (else -1).
  """
  split_rule: str = "is_valid"
  train_variants: tuple[str, ...] = ("rgb",)
  frame_step: int = 1
  vis_ratio: bool = True


class HanCo(manual_builder.ManualBuilder):
  """HanCo as multi-view frames (see the module docstring)."""

  name = "hanco"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "HanCo from the raw tree, shared multi-view schema."}
  BUILDER_CONFIGS = [
      HanCoConfig(name="rgb", description="is_valid frames, split by is_train; rgb images."),
      HanCoConfig(name="rgb-rgb_merged", train_variants=("rgb", "rgb_merged"),
                  description="As 'rgb', train frames also written with rgb_merged images."),
      HanCoConfig(name="has_fit-rgb", split_rule="has_fit_color_auto",
                  description="Fully fitted sequences; train = those with rgb_color_auto."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  TITLE = "HanCo"
  HOMEPAGE = "https://lmb.informatik.uni-freiburg.de/resources/datasets/HanCo.en.html"

  def _split_generators(self, dl_manager):
    root = self._checked_root(dl_manager)
    cfg = self.builder_config
    if not cfg.train_variants or cfg.train_variants[0] != examples.BASE_VARIANT:
      raise ValueError(f"HanCoConfig.train_variants must start with 'rgb', got "
                       f"{cfg.train_variants}")
    files.require_dir(root / "rgb", "HanCo's rgb/<sid>/cam<c>/<fid>.jpg images")
    meta = layout.read_meta(root)
    splits = layout.split_frames(root, meta, cfg.split_rule, cfg.frame_step)
    variants = {"train": cfg.train_variants, "test": (examples.BASE_VARIANT,)}
    return {split: self._generate_examples(split, root, frames, variants[split])
            for split, frames in splits.items() if frames}

  def _generate_examples(self, split, root, frames, variants):
    reader = examples.FrameReader(root, self._mano_path, variants,
                                  with_vis_ratio=self.builder_config.vis_ratio)
    yield from self._read_split(split, reader, frames, examples.BuildCounts())
