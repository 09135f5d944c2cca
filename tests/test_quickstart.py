"""The quickstart's pieces that do not need a training run: the overlay placement."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import build
from simajax import hand, input_pipeline, quickstart
from simajax.preprocessing import sample
from simajax.render.rasterizer import rasterize

TINY = "synthetic_hands/tiny"


@pytest.fixture(scope="module")
def test_records(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  build.ensure_built(TINY, path)
  source = tfds.builder_from_directory(input_pipeline.dataset_dir(TINY, path)).as_data_source(
      "test")
  return [source[i] for i in range(len(source))]


def test_overlay_placement_puts_the_ground_truth_on_its_silhouette(test_records):
  """The placement the overlays give a prediction, applied to the ground truth in the network's
  output convention (the rotated-mesh loss targets), lands on the hand's silhouette in the
  crop; the same mesh drawn without the placement does not."""
  faces = np.asarray(hand.load_hand_model(None).faces, np.int64)
  size = 96
  placed_iou, unplaced_iou = [], []
  for record in test_records:
    for view in range(8):
      s = sample.process_view(record, view, size, with_hand_mask=True)
      if s["vis_ratio"] < 0.95:  # the mask is the visible hand; compare unoccluded views only
        continue
      mask = s["hand_mask"] > 0
      for verts, ious in ((quickstart.place_at_wrist(s["verts_rotated"], s["joints_rotated"],
                                                     s["joints_camera"][0]), placed_iou),
                          (s["verts_rotated"], unplaced_iou)):
        drawn = rasterize(verts, faces, s["K_crop"], size, size).mask
        ious.append((drawn & mask).sum() / max((drawn | mask).sum(), 1))
  assert len(placed_iou) >= 5
  assert min(placed_iou) > 0.9, placed_iou
  assert max(unplaced_iou) < 0.5, unplaced_iou


def test_learning_curves_read_the_logged_validation_points(tmp_path):
  """read_curve returns the validation points in step order (a resumed run's repeated step keeps
  its last value), and the plot of two methods with a baseline is written."""
  from PIL import Image
  from simajax import evaluate
  from simajax.training import logs
  writer = logs.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(10, {"train/loss": 1.0})
  writer.write(50, {"val/vpe": 70.0, "val/pa_vpe": 30.0})  # mm, as the trainer logs
  writer.write(100, {"val/vpe": 60.0, "val/pa_vpe": 25.0})
  writer.write(50, {"val/vpe": 65.0, "val/pa_vpe": 28.0})  # resumed from step 0: re-logged
  writer.close()
  curve = logs.read_curve(str(tmp_path))
  np.testing.assert_array_equal(curve["val/vpe"][0], [50, 100])
  np.testing.assert_allclose(curve["val/vpe"][1], [65.0, 60.0])
  np.testing.assert_allclose(curve["train/loss"][1], [1.0])
  path = tmp_path / "curves.png"
  evaluate.render_learning_curves(
      {"a": {"vpe": curve["val/vpe"], "pa_vpe": curve["val/pa_vpe"]},
       "b": {"vpe": (np.array([100]), np.array([50.0])), "pa_vpe": (np.array([]), np.array([]))}},
      {"vpe": 66.0, "pa_vpe": 32.0}, path)
  image = np.asarray(Image.open(path).convert("RGB"))
  assert image.shape[1] > image.shape[0] > 100
  assert (image == (90, 90, 90)).all(axis=-1).sum() > 100  # the dashed mean-mesh lines
