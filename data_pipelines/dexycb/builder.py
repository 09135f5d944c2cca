"""TFDS builder of Dex-YCB (setup S0) in the shared multi-view schema.

Build::

  python -m data_pipelines.build dexycb/s0 --data_dir DIR --manual_dir DEX_YCB_DIR \
      --mano MANO_DIR/MANO_RIGHT.pkl

Configs and splits:
  * ``dexycb/s0``: train / validation / test by the toolkit's S0 rule on the raw tree
    (docs/datasets.md#dex-ycb-splits): every subject; sequence i (sorted) with i % 5 == 4 is held out,
    subjects 01-02 -> validation, subjects 03-10 -> test; all 8 cameras.
  * ``dexycb/s0_handoccnet``: train / test with view membership taken from HandOccNet's
    ``<root>/annotations/DEX_YCB_s0_{train,test}_data.json`` (labels still from the raw files).

One example = one (subject, sequence, frame) with its 8 views in ``layout.SERIALS`` order (see
``data_pipelines.schema``); ``examples.py`` documents how each field is derived. Frames where no
view has a hand label are skipped; the counts are printed at the end of each split and stored in
the dataset's ``metadata.json`` under ``build_counts``.

Expected sizes on the full data set (not verifiable offline): the unfiltered S0 train split has
465,504 images = 58,188 frames x 8 views; HandOccNet's JSONs (the paper's 406,888 train /
78,768 test) should equal this builder's *valid views* of train / test, since both apply the
same hand-presence filter (``joint_3d`` not all -1).

Decisions on open points of the data (ours; summarised in docs/datasets.md#decisions-on-open-points):
  * occlusion: ``vis_ratio`` is H2ONet's rule: pixels with seg == 255 over the pixels of the
    rendered, unoccluded MANO silhouette (GT mesh root-aligned to ``joint_3d[0]``, left hands
    mirrored back), whole image; "occluded" means < 0.4. SiMA's ``depth_occ_ratio`` is unreleased.
    The silhouette is computed for every split (``vis_ratio=False`` in a config skips it).
  * counts: 406,888 / 78,768 are assumed to be the hand-filtered views (see above). No frame
    subsampling by default (``frame_step=1``; SiMA's test cfg uses step 1, its train step is
    unknown).
  * multi-view grouping: ours, as specified: key (subject, sequence, frame), views in serial
    order, views without a hand label kept as ``view_valid=False`` (their image is not stored);
    frames with at least one valid view are kept, however few.
  * the HandOccNet JSON is read for membership and a joint cross-check only; unknown keys
    are ignored.
  * Left hands (docs/conventions.md#left-hands): stored on their original side (``hand_side`` = left; image,
    ``joints_*``, ``global_rot``, ``mano_pose`` with the left PCA basis, ``mano_trans`` of
    MANO_LEFT); the input pipeline mirrors them. ``verts_canonical``/``joints_canonical`` are
    MANO_LEFT's own zero-rotation hand (its PCA basis, mean, unmirrored ``shapedirs``, middle tip
    445: how the ``joint_3d`` labels were made) mirrored into the right-hand frame, as the
    schema requires. Mirroring MANO_RIGHT's hand instead puts the mesh up to ~2 cm off the
    labels when the betas are not zero (docs/conventions.md#left-hands).
  * Views with ``joint_3d`` but an all-zero ``pose_m`` (never expected) are made invalid and
    counted.
  * ``joints_canonical`` comes from the side's MANO forward pass with manopth's fingertips
    (middle tip 444 right, 445 left); ``joints_cam``/``joints_img`` are the dataset's annotations.

Build cost (one core, fabricated MANO at 640x480): ~50 ms per frame to read, check and encode the
8 views, plus ~80 ms per valid view for the silhouette behind ``vis_ratio`` (~3 us per covered
pixel). Frames are spread over ``num_workers`` processes (default: all CPUs).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_pipelines import manual_builder
from data_pipelines.dexycb import examples, handoccnet, layout

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Dex-YCB:
  1. Download from https://dex-ycb.github.io the 10 subject archives (20200709-subject-01.tar.gz
     ... 20201022-subject-10.tar.gz), calibration.tar.gz and (optionally) models.tar.gz.
  2. Extract them into one directory and pass it as --manual_dir; it must contain the 10
     2020xxxx-subject-xx/ folders and calibration/ (intrinsics/, extrinsics_*/, mano_*/).
  3. For the dexycb/s0_handoccnet config only: put HandOccNet's DEX_YCB_s0_train_data.json and
     DEX_YCB_s0_test_data.json (Google-Drive folder linked from
     https://github.com/namepllet/HandOccNet) into <manual_dir>/annotations/.
MANO (required: GT meshes and visibility ratios):
  Register at https://mano.is.tue.mpg.de, download mano_v1_2.zip and pass
  models/MANO_RIGHT.pkl with --mano; put MANO_LEFT.pkl next to it (left-hand sequences use the
  left PCA basis). MANO is for non-commercial research only: never redistribute it or the built
  dataset's meshes.
"""


@dataclasses.dataclass
class DexYcbConfig(tfds.core.BuilderConfig):
  """Builder options.

  Attributes:
    split_source: "raw" (S0 rule on the tree) or "handoccnet" (HandOccNet JSON membership).
    handoccnet_template: JSON file name under <root>/annotations, with ``{split}``.
    frame_step: keep every frame_step-th frame of each sequence.
    vis_ratio: render MANO silhouettes for ``vis_ratio`` (else -1).
  """
  split_source: str = "raw"
  handoccnet_template: str = handoccnet.DEFAULT_TEMPLATE
  frame_step: int = 1
  vis_ratio: bool = True


class DexYcb(manual_builder.ManualBuilder):
  """Dex-YCB S0 as multi-view frames (see the module docstring)."""

  name = "dexycb"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Dex-YCB S0 from the raw tree, shared multi-view schema."}
  BUILDER_CONFIGS = [
      DexYcbConfig(name="s0", description="S0 train/validation/test by the toolkit's rule."),
      DexYcbConfig(name="s0_handoccnet", split_source="handoccnet",
                   description="S0 train/test views listed in HandOccNet's JSONs."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  TITLE = "Dex-YCB"
  HOMEPAGE = "https://dex-ycb.github.io"

  def _split_generators(self, dl_manager):
    root = self._checked_root(dl_manager)
    layout.Calibration(root)
    cfg = self.builder_config
    if cfg.split_source == "raw":
      groups = examples.split_sequences(root)
      return {split: self._generate_examples(split, root, seqs, None)
              for split, seqs in groups.items()}
    if cfg.split_source != "handoccnet":
      raise ValueError(f"DexYcbConfig.split_source={cfg.split_source!r}, expected 'raw' or "
                       "'handoccnet'")
    sequences = layout.list_sequences(root)
    generators = {}
    for split in ("train", "test"):
      listed = handoccnet.read_split(handoccnet.json_path(root, split, cfg.handoccnet_template))
      names = {(subject, sequence) for subject, sequence, _ in listed}
      seqs = [s for s in sequences if (s.subject, s.name) in names]
      missing = names - {(s.subject, s.name) for s in seqs}
      if missing:
        raise FileNotFoundError(
            f"{root}: sequences listed in the {split} JSON are missing from the tree, e.g. "
            f"{'/'.join(sorted(missing)[0])} ({len(missing)} in all)")
      generators[split] = self._generate_examples(split, root, seqs, listed)
    return generators

  def _generate_examples(self, split, root, sequences, listed):
    cfg = self.builder_config
    tasks = list(examples.frame_tasks(sequences, frame_step=cfg.frame_step, listed=listed))
    reader = examples.FrameReader(root, self._mano_path, with_vis_ratio=cfg.vis_ratio)
    yield from self._read_split(split, reader, tasks, examples.BuildCounts())
