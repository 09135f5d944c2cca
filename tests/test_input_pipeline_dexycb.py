"""The shared input pipeline on the Dex-YCB builder's output (its fabricated fixture tree).

The fixture has a left hand, a view without a hand label and an occluded view, so this checks
that the two sides agree on the schema's conventions: left hands stored on their original side
and mirrored by the pipeline, canonical meshes of the right-hand model, invalid views skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines.dexycb import builder as builder_lib
from fixtures import dexycb_fixture
from simajax import input_pipeline

DATASET = "dexycb/s0"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("dexycb")
  truth, right, _ = dexycb_fixture.write_dexycb_with_mano(tmp)
  builder = builder_lib.DexYcb(config="s0", data_dir=str(tmp / "tfds"), mano_path=str(right),
                               manual_dir=str(truth.root), file_format="array_record")
  builder.download_and_prepare(file_format="array_record")
  return str(tmp / "tfds")


@pytest.mark.parametrize("mode", ["single_view", "multi_view"])
def test_rotated_canonical_joints_match_the_annotated_camera_joints(data_dir, mode):
  """R (J_c - J0) + J0 from the canonical joints and the (mirrored) root rotation has the same
  wrist-relative shape as the annotated camera joints, for right and mirrored left hands."""
  cfg = input_pipeline.InputConfig(dataset=DATASET, data_dir=data_dir, split="train", mode=mode,
                                   batch_size=8, image_size=32, num_threads=1)
  count = 0
  iterable = input_pipeline.eval_iterable(cfg, process_index=0, process_count=1)
  for batch in iterable:
    keep = batch["mask"] > 0
    model, camera = batch["joints_rotated"][keep], batch["joints_camera"][keep]
    if mode == "multi_view":
      valid = batch["view_valid"][keep]
      model, camera = model[valid], camera[valid]
    np.testing.assert_allclose(model - model[:, :1], camera - camera[:, :1], atol=1e-6)
    count += len(model)
  path = input_pipeline.dataset_dir(DATASET, data_dir)
  source = tfds.builder_from_directory(path).as_data_source("train")
  records = [source[i] for i in range(len(source))]
  assert count == sum(int(r["views"]["view_valid"].sum()) for r in records)
  assert any(int(r["hand_side"]) == 1 for r in records), "the fixture should hold a left hand"
  assert any(not r["views"]["view_valid"].all() for r in records)
