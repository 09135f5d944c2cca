"""Dex-YCB readers and builder on a fabricated tree in the official layout.

The fixture (tests/fixtures/dexycb_fixture.py) plants labels made with an independent numpy MANO
(tests/fixtures/mano_fixture.py); the tests check that the builder puts every planted value where
the schema says, for the S0 split rule, a left hand, a no-hand frame and view, and an occluded
view, and that bad input fails with errors naming the file.
"""

from __future__ import annotations

import io
import pathlib
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from data_pipelines import files
from data_pipelines import schema
from data_pipelines.dexycb import builder as builder_lib
from data_pipelines.dexycb import examples, labels as labels_lib, layout
from fixtures import dexycb_fixture as fx
from fixtures import manual_builder_checks, mano_fixture

MIRROR = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def dex(tmp_path_factory):
  """(truth, MANO_RIGHT path, MANO arrays) of one fabricated tree."""
  return fx.write_dexycb_with_mano(tmp_path_factory.mktemp("dexycb"))


def _build(config, truth, mano_path, data_dir):
  builder = builder_lib.DexYcb(config=config, data_dir=str(data_dir), mano_path=str(mano_path),
                               manual_dir=str(truth.root), file_format="array_record")
  builder.download_and_prepare(file_format="array_record")
  records = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    records[split] = [source[i] for i in range(len(source))]
  return builder, records


@pytest.fixture(scope="module")
def built(dex, tmp_path_factory):
  truth, right, _ = dex
  return _build("s0", truth, right, tmp_path_factory.mktemp("tfds"))


def _key(subject, name, frame):
  return f"dexycb/{subject}/{name}/{frame:06d}"


def _expected_split(subject, index):
  """S0 from the table of docs/datasets.md#dex-ycb-splits, written out for the fixture's subjects."""
  if index % 5 != 4:
    return "train"
  return "validation" if subject == "20200709-subject-01" else "test"


# ----------------------------------------------------------------------------------------------
# Raw readers.


def test_s0_rule_matches_the_toolkit_table():
  assert layout.s0_split(0, 4) == "validation" and layout.s0_split(1, 99) == "validation"
  assert layout.s0_split(2, 4) == "test" and layout.s0_split(9, 94) == "test"
  assert {layout.s0_split(s, i) for s in range(10) for i in (0, 1, 2, 3, 5, 98)} == {"train"}
  counts = {}
  for s in range(10):
    for i in range(100):
      counts[layout.s0_split(s, i)] = counts.get(layout.s0_split(s, i), 0) + 1
  assert counts == {"train": 800, "validation": 40, "test": 160}


def test_layout_reader_sees_the_planted_tree(dex):
  truth, _, _ = dex
  refs = layout.list_sequences(truth.root)
  assert [(r.subject, r.name) for r in refs] == [
      (s, n) for s in fx.SUBJECTS for n in truth.sequences[s]]
  assert [r.index for r in refs] == list(range(fx.NUM_SEQUENCES)) * len(fx.SUBJECTS)
  meta = layout.read_meta(refs[fx.NUM_SEQUENCES + 0].path / "meta.yml")
  assert meta.serials == fx.SERIALS and meta.num_frames == fx.NUM_FRAMES
  assert meta.extrinsics == fx.EXTRINSICS_NAME and meta.mano_side == "right"
  assert layout.read_meta(refs[1].path / "meta.yml").mano_side == "left"
  calib = layout.Calibration(truth.root)
  for serial in fx.SERIALS:
    np.testing.assert_allclose(calib.intrinsics(serial), truth.K[serial], rtol=1e-12)
    np.testing.assert_allclose(calib.cam_to_world(fx.EXTRINSICS_NAME, serial),
                               truth.cam_to_world[serial], atol=1e-12)
  ft = truth.frames[(fx.SUBJECTS[0], truth.sequences[fx.SUBJECTS[0]][0], 0)]
  calib_name = layout.read_meta(refs[0].path / "meta.yml").mano_calib
  np.testing.assert_allclose(calib.betas(calib_name), ft.betas, rtol=1e-12)


def test_yaml_names_that_look_like_numbers_stay_text(tmp_path):
  (tmp_path / "meta.yml").write_text(
      "extrinsics: 20200702_151821\nmano_calib: [20200709_140042_subject-01_right]\n"
      "mano_sides: [left]\nnum_frames: 72\nserials:\n- 836212060125\n- '840412060917'\n"
      "ycb_grasp_ind: 0\nycb_ids: [1, 11]\n")
  meta = layout.read_meta(tmp_path / "meta.yml")
  assert meta.extrinsics == "20200702_151821"
  assert meta.serials == ("836212060125", "840412060917")
  assert meta.mano_calib == "20200709_140042_subject-01_right" and meta.ycb_ids == (1, 11)


def test_labels_reader_flags_missing_hands(dex):
  truth, _, _ = dex
  subject, q, frame = fx.NO_HAND_FRAME
  path = layout.labels_path(truth.root / subject / truth.sequences[subject][q], fx.SERIALS[0],
                            frame)
  labels = labels_lib.read_labels(path)
  assert not labels.has_hand and not labels.has_mano and labels.seg.shape == fx.IMAGE_HW


# ----------------------------------------------------------------------------------------------
# The built dataset.


def test_splits_follow_s0_and_skip_the_no_hand_frame(dex, built):
  truth, _, _ = dex
  builder, records = built
  expected = {"train": [], "validation": [], "test": []}
  for subject in fx.SUBJECTS:
    for q, name in enumerate(truth.sequences[subject]):
      for frame in range(fx.NUM_FRAMES):
        if (subject, q, frame) != fx.NO_HAND_FRAME:
          expected[_expected_split(subject, q)].append(_key(subject, name, frame))
  got = {split: [r["frame_key"].decode() for r in recs] for split, recs in records.items()}
  assert got == expected  # record order = sequence, frame
  counts = builder.info.metadata["build_counts"]
  assert counts["train"]["skipped_no_hand_frames"] == 1
  assert counts["validation"]["skipped_no_hand_frames"] == 0
  assert counts["test"]["skipped_no_hand_frames"] == 0
  assert counts["train"]["views_without_hand"] == 1  # NO_HAND_VIEW; the skipped frame's are not
  for split, recs in records.items():
    planted = sum(len(truth.frames[_parse(r)].views) for r in recs)
    assert counts[split]["valid_views"] == planted
    assert counts[split]["frames"] == len(recs)


def _parse(record):
  _, subject, name, frame = record["frame_key"].decode().split("/")
  return subject, name, int(frame)


def test_views_carry_the_planted_labels_in_serial_order(dex, built):
  truth, _, _ = dex
  _, records = built
  for record in (r for recs in records.values() for r in recs):
    schema_views = record["views"]
    subject, name, frame = _parse(record)
    ft = truth.frames[(subject, name, frame)]
    assert record["dataset"] == schema.DATASETS.index("dexycb")
    assert record["hand_side"] == schema.HAND_SIDES.index(ft.side)
    assert [c.decode() for c in schema_views["camera_id"]] == list(fx.SERIALS)
    for v, serial in enumerate(fx.SERIALS):
      np.testing.assert_allclose(schema_views["K"][v], truth.K[serial], rtol=1e-6)
      np.testing.assert_allclose(schema_views["world2cam"][v],
                                 np.linalg.inv(truth.cam_to_world[serial]), atol=1e-6)
      view_dir = truth.root / subject / name / serial
      vt = ft.views.get(serial)
      assert bool(schema_views["view_valid"][v]) == (vt is not None)
      if vt is None:
        assert schema_views["image"][v] == b"" and schema_views["vis_ratio"][v] == -1
        continue
      assert schema_views["image"][v] == (view_dir / f"color_{frame:06d}.jpg").read_bytes()
      np.testing.assert_allclose(schema_views["joints_cam"][v], vt.joint_3d, atol=1e-6)
      np.testing.assert_allclose(schema_views["joints_img"][v], vt.joint_2d, atol=1e-3)
      np.testing.assert_allclose(schema_views["mano_trans"][v], vt.pose_m[48:], atol=1e-6)
      np.testing.assert_allclose(schema_views["global_rot"][v],
                                 Rotation.from_rotvec(vt.pose_m[:3]).as_matrix(), atol=1e-5)
      seg = np.load(view_dir / f"labels_{frame:06d}.npz")["seg"]
      mask = np.asarray(Image.open(io.BytesIO(schema_views["hand_mask"][v])))
      np.testing.assert_array_equal(mask, np.where(seg == 255, 255, 0))


def test_mesh_and_frame_pose_match_the_planted_mano(dex, built):
  """Right hands: the schema's camera mesh is the planted one. Left hands: what the pipeline
  makes of them (mirror M R M, wrist x -> -x) is the mirror image of the planted left hand."""
  truth, _, _ = dex
  _, records = built
  sides = set()
  for record in (r for recs in records.values() for r in recs):
    ft = truth.frames[_parse(record)]
    sides.add(ft.side)
    views = record["views"]
    verts_c, joints_c = record["verts_canonical"], record["joints_canonical"]
    assert record["has_mesh"]
    for v, serial in enumerate(fx.SERIALS):
      if serial not in ft.views:
        continue
      rot, wrist = views["global_rot"][v], views["joints_cam"][v][0]
      if ft.side == "right":
        verts = schema.derive_verts_camera(verts_c, joints_c, rot, wrist)
        np.testing.assert_allclose(verts, ft.views[serial].verts, atol=2e-5)
      else:
        mirrored_rot = rot * MIRROR[:, None] * MIRROR[None, :]
        verts = schema.derive_verts_camera(verts_c, joints_c, mirrored_rot, wrist * MIRROR)
        np.testing.assert_allclose(verts, ft.views[serial].verts * MIRROR, atol=2e-5)
      np.testing.assert_allclose(views["mano_pose"][v][3:], ft.fingers, atol=1e-5)
    np.testing.assert_allclose(record["mano_shape"], ft.betas, atol=1e-6)
    np.testing.assert_allclose(Rotation.from_rotvec(record["mano_pose"][:3]).as_matrix(),
                               Rotation.from_rotvec(ft.world_root).as_matrix(), atol=1e-5)
    np.testing.assert_allclose(record["mano_pose"][3:], ft.fingers, atol=1e-5)
    np.testing.assert_allclose(record["mano_trans"], ft.world_trans, atol=1e-5)
  assert sides == {"right", "left"}


def test_left_hands_are_mano_left_mirrored(dex, built):
  """Left hands are posed with MANO_LEFT's own arrays, then mirrored (issue 15).

  The fixture's MANO_LEFT keeps MANO_RIGHT's shapedirs, unmirrored, as the released file does,
  and the left sequence has non-zero betas: the mirrored MANO_RIGHT hand is then centimetres
  off the label, and only MANO_LEFT's own hand reproduces it.
  """
  truth, _, arrays = dex
  _, records = built
  left = [r for recs in records.values() for r in recs
          if truth.frames[_parse(r)].side == "left"]
  assert left
  worst_mirrored_right = 0.0
  for record in left:
    ft = truth.frames[_parse(record)]
    assert np.abs(ft.betas).max() > 0.3
    joints_c = np.asarray(record["joints_canonical"], np.float64)
    views = record["views"]
    for v, serial in enumerate(fx.SERIALS):
      if serial not in ft.views:
        continue
      label = ft.views[serial].joint_3d
      rot = np.asarray(views["global_rot"][v], np.float64)
      # The canonical hand mirrored back is MANO_LEFT's: with the view's rotation and wrist it
      # reproduces the labelled joints (manopth's left middle tip 445 included).
      joints = schema.derive_verts_camera(joints_c * MIRROR, joints_c * MIRROR, rot, label[0])
      np.testing.assert_allclose(joints, label, atol=1e-5)
      # What mirroring MANO_RIGHT's hand (mirrored pose: (x, y, z) -> (x, -y, -z)) gives.
      mirrored_fingers = (ft.fingers.reshape(15, 3) * -MIRROR).reshape(45)
      _, right_joints = mano_fixture.numpy_forward(arrays, np.zeros(3), mirrored_fingers,
                                                   ft.betas, np.zeros(3))
      wrong = schema.derive_verts_camera(right_joints * MIRROR, right_joints * MIRROR, rot,
                                         label[0])
      worst_mirrored_right = max(worst_mirrored_right, np.abs(wrong - label).max())
  assert worst_mirrored_right > 2e-3  # the test can tell the two constructions apart


def test_every_stored_vis_ratio_lies_in_0_1(built):
  _, records = built
  ratios = np.concatenate([np.asarray(r["views"]["vis_ratio"])[r["views"]["view_valid"]]
                           for recs in records.values() for r in recs])
  assert ratios.size and np.all((ratios >= 0) & (ratios <= 1)), ratios


def test_vis_ratio_is_seg_over_rendered_silhouette(dex, built):
  truth, _, _ = dex
  _, records = built
  occluded = []
  for record in (r for recs in records.values() for r in recs):
    subject, name, frame = _parse(record)
    for v, serial in enumerate(fx.SERIALS):
      vt = truth.frames[(subject, name, frame)].views.get(serial)
      if vt is not None:
        np.testing.assert_allclose(record["views"]["vis_ratio"][v], vt.vis_ratio, atol=1e-6)
        if record["views"]["vis_ratio"][v] < schema.OCCLUSION_THRESHOLD:
          q = truth.sequences[subject].index(name)
          occluded.append((subject, q, frame, v))
  assert occluded == [fx.OCCLUDED_VIEW]


def test_handoccnet_config_takes_membership_from_the_json(dex, tmp_path):
  truth, right, _ = dex
  subject = fx.SUBJECTS[1]
  omitted = (subject, truth.sequences[subject][0], 0, fx.SERIALS[4])
  listed = fx.write_handoccnet_json(truth, omit=(omitted,))
  builder, records = _build("s0_handoccnet", truth, right, tmp_path)
  assert set(records) == {"train", "test"}
  for split, recs in records.items():
    got = {(*_parse(r), s) for r in recs
           for v, s in enumerate(fx.SERIALS) if r["views"]["view_valid"][v]}
    assert got == listed[split]
  counts = builder.info.metadata["build_counts"]
  assert counts["train"]["views_not_in_json"] == 1
  assert counts["train"]["views_json_joint_mismatch"] == 0


def test_input_pipeline_reads_both_modes(dex, built):
  """Single view: every valid view once; a left hand comes out mirrored, its targets agreeing
  with the mirrored label. Multi view: 8 views."""
  from simajax import input_pipeline
  truth, _, _ = dex
  builder, records = built
  data_dir = str(pathlib.Path(builder.data_dir).parents[2])
  train = records["train"]
  num_valid = sum(int(r["views"]["view_valid"].sum()) for r in train)
  config = input_pipeline.InputConfig(dataset="dexycb/s0", data_dir=data_dir, split="train",
                                      mode="single_view", batch_size=num_valid, image_size=32,
                                      num_threads=1)
  batch = next(iter(input_pipeline.eval_iterable(config, process_index=0, process_count=1)))
  assert batch["image"].shape == (num_valid, 32, 32, 3) and batch["mask"].all()
  sides = set()
  for b in range(num_valid):
    record = train[int(batch["frame_index"][b])]
    serial = fx.SERIALS[int(batch["view_index"][b])]
    ft = truth.frames[_parse(record)]
    mirror = MIRROR if ft.side == "left" else 1.0
    np.testing.assert_allclose(batch["verts_camera"][b], ft.views[serial].verts * mirror,
                               atol=5e-5)
    # The training targets (canonical joints rotated about the wrist) are the label's shape.
    label = ft.views[serial].joint_3d * mirror
    np.testing.assert_allclose(batch["joints_rotated"][b] - batch["joints_rotated"][b][0],
                               label - label[0], atol=1e-5)
    sides.add(ft.side)
  assert sides == {"right", "left"}

  multi = input_pipeline.InputConfig(dataset="dexycb/s0", data_dir=data_dir, split="test",
                                     mode="multi_view", batch_size=2, image_size=32,
                                     num_threads=1, augment=False)
  batch = next(input_pipeline.train_iterator(multi, process_index=0, process_count=1))
  assert batch["image"].shape == (2, 8, 32, 32, 3) and batch["view_valid"].shape == (2, 8)


# ----------------------------------------------------------------------------------------------
# Bad input.


@pytest.fixture
def damaged(dex, tmp_path):
  """A writable copy of the fabricated tree (without MANO)."""
  truth, _, _ = dex
  root = tmp_path / "DexYCB"
  shutil.copytree(truth.root, root)
  return root


def _first_items(root, mano_path, ref_index=0):
  ref = layout.list_sequences(root)[ref_index]
  return examples.FrameReader(root, mano_path)(examples.FrameTask(ref, 0))


def _view_file(root, truth, kind, view=0, frame=0):
  subject = fx.SUBJECTS[0]
  seq = root / subject / truth.sequences[subject][0]
  return (layout.labels_path if kind == "labels" else layout.color_path)(seq, fx.SERIALS[view],
                                                                         frame)


def test_missing_manual_dir_and_mano_are_named(dex, tmp_path):
  truth, right, _ = dex
  manual_builder_checks.check_missing_inputs_are_named(
      builder_lib.DexYcb, "s0", truth.root, right, tmp_path, "MANO_RIGHT_missing.pkl")


def test_missing_left_model_is_named(dex, damaged, tmp_path):
  _, right, _ = dex
  lone = tmp_path / "only_right" / "MANO_RIGHT.pkl"
  lone.parent.mkdir()
  shutil.copy(right, lone)
  with pytest.raises(FileNotFoundError, match="only_right/MANO_LEFT.pkl"):
    _first_items(damaged, lone, ref_index=1)  # LEFT_SEQUENCE


def test_missing_calibration_is_named(dex, damaged):
  truth, right, _ = dex
  (damaged / "calibration" / "intrinsics" / f"{fx.SERIALS[3]}_640x480.yml").unlink()
  with pytest.raises(FileNotFoundError, match=f"{fx.SERIALS[3]}_640x480.yml"):
    _first_items(damaged, right)
  shutil.rmtree(damaged / "calibration")
  with pytest.raises(FileNotFoundError, match="calibration.*directory not found"):
    layout.Calibration(damaged)


def test_unreadable_or_missing_image_is_named(dex, damaged):
  truth, right, _ = dex
  color = _view_file(damaged, truth, "color", view=2)
  color.write_bytes(b"not a jpeg")
  with pytest.raises(files.DatasetFormatError, match=f"{color}.*unreadable image"):
    _first_items(damaged, right)
  color.unlink()
  with pytest.raises(FileNotFoundError, match=str(color)):
    _first_items(damaged, right)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("joint_3d"), r"missing keys \['joint_3d'\]"),
    (lambda d: d.update(pose_m=np.zeros((1, 48), np.float32)), r"'pose_m' must be float \[1, 51\]"),
    (lambda d: d.update(joint_2d=np.zeros((21, 2), np.float32)), r"'joint_2d' must be float"),
    (lambda d: d.update(seg=np.zeros((7, 9), np.uint8)), r"'seg' has shape \[7, 9\], expected"),
])
def test_bad_label_file_is_named(dex, damaged, change, message):
  truth, right, _ = dex
  path = _view_file(damaged, truth, "labels", view=1)
  with np.load(path) as npz:
    data = dict(npz)
  change(data)
  np.savez(path, **data)
  with pytest.raises(files.DatasetFormatError, match=f"{path.name}.*{message}"):
    _first_items(damaged, right)


def test_vis_ratio_above_one_is_an_error_naming_the_view(dex, damaged):
  truth, right, _ = dex
  path = _view_file(damaged, truth, "labels", view=6)
  with np.load(path) as npz:
    data = dict(npz)
  data["seg"] = np.full_like(data["seg"], 255)  # a "hand" mask covering the whole image
  np.savez(path, **data)
  with pytest.raises(files.DatasetFormatError,
                     match=rf"{path} \(view 6, camera {fx.SERIALS[6]}, right hand\): "
                           r"vis_ratio \d+\.\d+ is outside \[0, 1\]"):
    _first_items(damaged, right)


def test_missing_subjects_are_reported(tmp_path):
  (tmp_path / "calibration").mkdir()
  with pytest.raises(FileNotFoundError, match="no Dex-YCB subject folder"):
    layout.list_sequences(tmp_path)


# ----------------------------------------------------------------------------------------------
# The build CLI on bad input: one line, exit status 2, no split written (issue 15).


def _build_cli(capsys, root, mano, data_dir):
  from data_pipelines import build
  try:
    status = build.main(["dexycb/s0", "--data_dir", str(data_dir), "--manual_dir", str(root),
                         "--mano", str(mano)])
  except SystemExit as e:
    status = e.code
  # TFDS draws its progress bars on stderr too (cursor-up escapes, carriage returns): apart from
  # them, stderr must hold the one error line.
  err = re.sub(r"\x1b\[A|\r", "\n", capsys.readouterr().err).splitlines()
  err = [line.strip() for line in err if line.strip()
         and not line.strip().startswith(("Generating", "Shuffling", "Dataset dexycb",
                                          "Downloading and preparing"))]
  written = [p for p in data_dir.rglob("*") if "array_record" in p.name
             or p.name == "dataset_info.json" or "incomplete" in p.name] if data_dir.exists() else []
  return status, err, written


def test_build_cli_refuses_a_left_model_named_right(dex, damaged, tmp_path, capsys):
  _, right, arrays = dex
  swapped = tmp_path / "swapped" / "MANO_RIGHT.pkl"
  swapped.parent.mkdir()
  mano_fixture.write_mano_pickle(swapped, mano_fixture.left_arrays(arrays))
  status, err, written = _build_cli(capsys, damaged, swapped, tmp_path / "tfds")
  assert status == 2 and written == [] and err == [
      f"error: {swapped}: this MANO file holds a LEFT hand (its rest-pose geometry: thumb and "
      "palm of a left hand), but it was loaded as the right hand (side='right' was asked for); "
      "use MANO_RIGHT.pkl from mano_v1_2.zip, or check whether the two files were swapped or "
      "renamed"]


def test_build_cli_stops_at_a_truncated_label_file_without_a_partial_split(dex, damaged,
                                                                           tmp_path, capsys):
  truth, right, _ = dex
  path = _view_file(damaged, truth, "labels", view=4, frame=1)
  path.write_bytes(path.read_bytes()[:200])
  status, err, written = _build_cli(capsys, damaged, right, tmp_path / "tfds")
  assert status == 2 and written == [], (err, written)
  assert len(err) == 1 and err[0].startswith(f"error: {path}: unreadable labels file ("), err
