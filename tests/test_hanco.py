"""HanCo readers and builder on a fabricated tree in the official layout.

The fixture (tests/fixtures/hanco_fixture.py) plants world MANO fits made with an independent
numpy MANO, their world keypoints, per-frame calibrations, per-camera 61-vector fits, masks and
rgb/rgb_merged/rgb_color_auto images for sequences with mixed is_train/is_valid/has_fit.
"""

from __future__ import annotations

import io
import json
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from data_pipelines import files
from data_pipelines import schema
from data_pipelines.hanco import builder as builder_lib
from data_pipelines.hanco import examples, layout
from fixtures import hanco_fixture as fx
from fixtures import manual_builder_checks, mano_fixture


@pytest.fixture(scope="module")
def hanco(tmp_path_factory):
  """(truth, MANO_RIGHT path, MANO arrays) of one fabricated tree."""
  tmp = tmp_path_factory.mktemp("hanco")
  arrays = mano_fixture.fake_mano_arrays(seed=5)
  right, _ = mano_fixture.write_mano_pair(tmp / "mano", seed=5, chumpy=False)
  truth = fx.write_hanco(tmp / "HanCo", arrays)
  return truth, right, arrays


def _build(config, truth, mano_path, data_dir, num_workers=None):
  builder = builder_lib.HanCo(config=config, data_dir=str(data_dir), mano_path=str(mano_path),
                              manual_dir=str(truth.root), num_workers=num_workers,
                              file_format="array_record")
  builder.download_and_prepare(file_format="array_record")
  records = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    records[split] = [source[i] for i in range(len(source))]
  return builder, records


@pytest.fixture(scope="module")
def built(hanco, tmp_path_factory):
  truth, right, _ = hanco
  return _build("rgb-rgb_merged", truth, right, tmp_path_factory.mktemp("tfds"))


def _expected_frames(rule):
  """The split of the fixture's frames, read off its SEQUENCES table (docs/datasets.md#hanco-splits)."""
  out = {"train": [], "test": []}
  for sid, (is_train, is_valid, has_fit) in fx.SEQUENCES.items():
    for fid in range(len(is_valid)):
      if rule == "is_valid" and is_valid[fid]:
        out["train" if is_train else "test"].append((sid, fid))
      if rule == "has_fit_color_auto" and all(has_fit):
        out["train" if sid in fx.COLOR_AUTO else "test"].append((sid, fid))
  return out


def _parse(record):
  parts = record["frame_key"].decode().split("/")
  return int(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else "rgb"


# ----------------------------------------------------------------------------------------------
# Raw readers.


def test_split_rules(hanco):
  truth, _, _ = hanco
  meta = layout.read_meta(truth.root)
  assert meta.num_sequences == len(fx.SEQUENCES)
  for rule in layout.SPLIT_RULES:
    assert layout.split_frames(truth.root, meta, rule) == _expected_frames(rule)
  stepped = layout.split_frames(truth.root, meta, "is_valid", frame_step=2)
  assert stepped == {k: [f for f in v if f[1] % 2 == 0]
                     for k, v in _expected_frames("is_valid").items()}


def test_frame_files_are_read_with_their_units(hanco):
  truth, _, _ = hanco
  ft = truth.frames[(0, 1)]
  K, M = layout.read_calib(layout.frame_json_path(truth.root, "calib", 0, 1))
  np.testing.assert_allclose(K, ft.K, rtol=1e-12)
  np.testing.assert_allclose(M, ft.M, rtol=1e-12)
  xyz = layout.read_xyz(layout.frame_json_path(truth.root, "xyz", 0, 1))
  np.testing.assert_allclose(xyz @ M[3, :3, :3].T + M[3, :3, 3], ft.joints_camera[3], atol=1e-12)
  fit = layout.read_world_fit(layout.frame_json_path(truth.root, "shape", 0, 1))
  np.testing.assert_allclose(fit.poses, ft.poses, rtol=1e-12)
  np.testing.assert_allclose(fit.shapes, ft.shapes, rtol=1e-12)
  np.testing.assert_allclose(fit.global_t, ft.global_t, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# The built dataset.


def test_splits_keys_and_variant_copies(hanco, built):
  builder, records = built
  frames = _expected_frames("is_valid")
  expected = {
      "train": [key for sid, fid in frames["train"]
                for key in (examples.frame_key(sid, fid),
                            examples.frame_key(sid, fid, "rgb_merged"))],
      "test": [examples.frame_key(sid, fid) for sid, fid in frames["test"]],
  }
  assert {s: [r["frame_key"].decode() for r in recs] for s, recs in records.items()} == expected
  counts = builder.info.metadata["build_counts"]
  assert counts["train"]["frames"] == len(frames["train"])
  assert counts["train"]["views_missing_variant"] == len(fx.MISSING_MERGED)
  assert counts["train"]["valid_views"] == 16 * len(frames["train"]) - len(fx.MISSING_MERGED)
  assert counts["test"]["valid_views"] == 8 * len(frames["test"])


def test_views_carry_the_planted_labels(hanco, built):
  truth, _, arrays = hanco
  _, records = built
  for record in (r for recs in records.values() for r in recs):
    sid, fid, variant = _parse(record)
    ft = truth.frames[(sid, fid)]
    views = record["views"]
    assert record["hand_side"] == schema.HAND_SIDES.index("right")
    assert [c.decode() for c in views["camera_id"]] == [f"cam{c}" for c in range(8)]
    np.testing.assert_allclose(record["mano_pose"], ft.poses, atol=1e-6)
    np.testing.assert_allclose(record["mano_trans"], ft.global_t, atol=1e-6)
    np.testing.assert_allclose(record["mano_shape"], ft.shapes, atol=1e-6)
    rest_wrist = mano_fixture.rest_wrist(arrays, ft.shapes)
    for cam in range(8):
      image = layout.image_path(truth.root, variant, sid, cam, fid)
      valid = image.is_file()
      assert bool(views["view_valid"][cam]) == valid
      np.testing.assert_allclose(views["K"][cam], ft.K[cam], rtol=1e-6)
      np.testing.assert_allclose(views["world2cam"][cam], ft.M[cam], atol=1e-6)
      if not valid:
        assert views["image"][cam] == b""
        continue
      assert views["bg_variant"][cam].decode() == variant
      assert views["image"][cam] == image.read_bytes()
      np.testing.assert_allclose(views["joints_cam"][cam], ft.joints_camera[cam], atol=1e-6)
      uv = (ft.joints_camera[cam] @ ft.K[cam].T)[:, :2] / ft.joints_camera[cam][:, 2:]
      np.testing.assert_allclose(views["joints_img"][cam], uv, atol=1e-3)
      # manopth convention: the camera-frame wrist is J0(betas) + trans.
      np.testing.assert_allclose(rest_wrist + views["mano_trans"][cam], ft.joints_camera[cam][0],
                                 atol=1e-6)
      mask = np.asarray(Image.open(io.BytesIO(views["hand_mask"][cam])))
      assert set(np.unique(mask)) <= {0, 255} and mask.shape == (fx.IMAGE_SIZE,) * 2


def test_mesh_matches_the_per_camera_fit(hanco, built):
  """The schema's camera mesh equals the one rebuilt from HanCo's per-camera 61-vector."""
  truth, _, arrays = hanco
  _, records = built
  for record in records["test"] + records["train"][:2]:
    sid, fid, _ = _parse(record)
    views = record["views"]
    for cam in range(8):
      values = json.loads((truth.root / "shape" / f"{sid:04d}" / f"cam{cam}" /
                           f"{fid:08d}.json").read_text())
      expected = fx.camera_fit_mesh(values, arrays, truth.frames[(sid, fid)].K[cam])
      verts = schema.derive_verts_camera(record["verts_canonical"], record["joints_canonical"],
                                         views["global_rot"][cam], views["joints_cam"][cam][0])
      np.testing.assert_allclose(verts, expected, atol=2e-5)
      np.testing.assert_allclose(Rotation.from_rotvec(views["mano_pose"][cam][:3]).as_matrix(),
                                 Rotation.from_rotvec(values[:3]).as_matrix(), atol=1e-5)


def test_vis_ratio_is_mask_over_rendered_silhouette(hanco, built):
  truth, _, _ = hanco
  _, records = built
  occluded = set()
  for record in (r for recs in records.values() for r in recs):
    sid, fid, _ = _parse(record)
    views = record["views"]
    for cam in np.flatnonzero(views["view_valid"]):
      np.testing.assert_allclose(views["vis_ratio"][cam], truth.frames[(sid, fid)].vis_ratio[cam],
                                 atol=1e-6)
      if views["vis_ratio"][cam] < schema.OCCLUSION_THRESHOLD:
        occluded.add((sid, fid, int(cam)))
  assert occluded == {fx.OCCLUDED_VIEW}


def test_alternative_split_rule_config_with_worker_processes(hanco, tmp_path):
  truth, right, _ = hanco
  builder, records = _build("has_fit-rgb", truth, right, tmp_path, num_workers=2)
  got = {s: [_parse(r)[:2] for r in recs] for s, recs in records.items()}
  assert got == _expected_frames("has_fit_color_auto")  # in order, across 2 processes
  counts = builder.info.metadata["build_counts"]
  assert {s: counts[s]["valid_views"] for s in counts} == {s: 8 * len(f) for s, f in got.items()}


def test_input_pipeline_reads_both_modes(built):
  from simajax import input_pipeline
  builder, records = built
  data_dir = str(pathlib.Path(builder.data_dir).parents[2])
  num_valid = sum(int(r["views"]["view_valid"].sum()) for r in records["test"])
  single = input_pipeline.InputConfig(dataset="hanco/rgb-rgb_merged", data_dir=data_dir,
                                      split="test", mode="single_view", batch_size=num_valid,
                                      image_size=32, num_threads=1)
  batch = next(iter(input_pipeline.eval_iterable(single, process_index=0, process_count=1)))
  assert batch["image"].shape == (num_valid, 32, 32, 3) and batch["mask"].all()
  np.testing.assert_array_equal(batch["has_mesh"], True)
  multi = input_pipeline.InputConfig(dataset="hanco/rgb-rgb_merged", data_dir=data_dir,
                                     split="train", mode="multi_view", batch_size=3,
                                     image_size=32, num_threads=1)
  batch = next(input_pipeline.train_iterator(multi, process_index=0, process_count=1))
  assert batch["image"].shape == (3, 8, 32, 32, 3) and batch["view_valid"].shape == (3, 8)


# ----------------------------------------------------------------------------------------------
# Bad input.


@pytest.fixture
def damaged(hanco, tmp_path):
  truth, _, _ = hanco
  root = tmp_path / "HanCo"
  shutil.copytree(truth.root, root)
  return root


def _read_frame(root, mano_path, sid=0, fid=0):
  return examples.FrameReader(root, mano_path)((sid, fid))


def test_missing_manual_dir_mano_and_meta_are_named(hanco, damaged, tmp_path):
  truth, right, _ = hanco
  manual_builder_checks.check_missing_inputs_are_named(
      builder_lib.HanCo, "rgb", truth.root, right, tmp_path, "gone.pkl")
  meta = json.loads((damaged / "meta.json").read_text())
  del meta["is_valid"]
  (damaged / "meta.json").write_text(json.dumps(meta))
  with pytest.raises(files.DatasetFormatError, match="meta.json: missing key 'is_valid'"):
    layout.read_meta(damaged)
  (damaged / "meta.json").unlink()
  with pytest.raises(FileNotFoundError, match="meta.json"):
    layout.read_meta(damaged)


def test_missing_calibration_and_fit_are_named(hanco, damaged):
  _, right, _ = hanco
  calib = layout.frame_json_path(damaged, "calib", 0, 0)
  calib.write_text(json.dumps({"K": [[[1, 0, 0], [0, 1, 0], [0, 0, 1]]] * 7, "M": []}))
  with pytest.raises(files.DatasetFormatError, match=r"00000000.json: field 'K' must have shape"):
    _read_frame(damaged, right)
  calib.unlink()
  with pytest.raises(FileNotFoundError, match=str(calib)):
    _read_frame(damaged, right)
  fit = layout.frame_json_path(damaged, "shape", 0, 1)
  fit.unlink()
  with pytest.raises(FileNotFoundError, match=f"{fit}.*MANO fit"):
    _read_frame(damaged, right, fid=1)


def test_unreadable_or_missing_image_is_named(hanco, damaged):
  _, right, _ = hanco
  image = layout.image_path(damaged, "rgb", 0, 4, 2)
  image.write_bytes(b"\xff\xd8 truncated")
  with pytest.raises(files.DatasetFormatError, match=f"{image}.*unreadable image"):
    _read_frame(damaged, right, fid=2)
  image.unlink()
  with pytest.raises(FileNotFoundError, match=str(image)):
    _read_frame(damaged, right, fid=2)
