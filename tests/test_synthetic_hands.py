"""The synthetic multi-view hand dataset: the tiny build, its labels, masks, visibility, and the
input pipeline on rendered frames."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import build, schema
from data_pipelines.synthetic_hands import scene
from simajax import geometry, hand, input_pipeline
from simajax.render.rasterizer import project, rasterize

TINY = "synthetic_hands/tiny"
TINY_FRAMES = {"train": 16, "validation": 4, "test": 4}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  build.build(TINY, path)
  return path


@pytest.fixture(scope="module")
def train_records(data_dir):
  source = tfds.builder_from_directory(input_pipeline.dataset_dir(TINY, data_dir)).as_data_source(
      "train")
  return [source[i] for i in range(len(source))]


@pytest.fixture(scope="module")
def faces():
  return np.asarray(hand.load_hand_model(None).faces, np.int64)


@pytest.fixture(scope="module")
def regions():
  return scene.model_skin_regions(hand.load_hand_model(None))


def _mask(record, view):
  return schema.decode_image(record["views"]["hand_mask"][view], channels=1) > 127


def _verts_camera(record, view):
  views = record["views"]
  return schema.derive_verts_camera(record["verts_canonical"].astype(np.float64),
                                    record["joints_canonical"].astype(np.float64),
                                    views["global_rot"][view].astype(np.float64),
                                    views["joints_cam"][view, 0].astype(np.float64))


def test_tiny_build_has_the_configured_splits_in_frame_order(data_dir, train_records):
  builder = tfds.builder_from_directory(input_pipeline.dataset_dir(TINY, data_dir))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == TINY_FRAMES
  keys = [r["frame_key"].decode() for r in train_records]
  assert keys == [f"synthetic_hands/train/{i:08d}" for i in range(16)]
  record = train_records[0]
  assert schema.decode_image(record["views"]["image"][0]).shape == (96, 96, 3)
  assert record["views"]["view_valid"].all()


def test_stored_2d_joints_are_the_projected_3d_joints(train_records):
  for record in train_records:
    views = record["views"]
    uvw = np.einsum("vij,vkj->vki", views["K"].astype(np.float64),
                    views["joints_cam"].astype(np.float64))
    np.testing.assert_allclose(uvw[..., :2] / uvw[..., 2:], views["joints_img"], atol=2e-3)


def test_per_view_geometry_is_one_hand_seen_by_calibrated_cameras(train_records):
  """world2cam maps one world hand into every camera; global_rot and mano_pose agree."""
  for record in train_records:
    views = record["views"]
    root = record["joints_canonical"][0].astype(np.float64)
    world_rot = geometry.axis_angle_to_matrix(record["mano_pose"][:3].astype(np.float64))
    world = ((record["joints_canonical"] - root) @ world_rot.T + root + record["mano_trans"])
    for v in range(8):
      w2c = views["world2cam"][v].astype(np.float64)
      np.testing.assert_allclose(world @ w2c[:3, :3].T + w2c[:3, 3], views["joints_cam"][v],
                                 atol=1e-5)
      np.testing.assert_allclose(w2c[:3, :3] @ world_rot, views["global_rot"][v], atol=1e-5)
      np.testing.assert_allclose(
          geometry.axis_angle_to_matrix(views["mano_pose"][v, :3].astype(np.float64)),
          views["global_rot"][v], atol=1e-5)
      np.testing.assert_allclose(views["mano_trans"][v], views["joints_cam"][v, 0] - root,
                                 atol=1e-6)
      # The hand is in front of the camera and roughly centred.
      assert (views["joints_cam"][v, :, 2] > 0.05).all()
      centre = views["joints_img"][v].mean(axis=0)
      assert np.all(np.abs(centre - 48) < 40)


def test_hand_mask_agrees_with_the_projected_mesh(train_records, faces):
  unoccluded = 0
  for record in train_records:
    views = record["views"]
    for v in range(8):
      mask = _mask(record, v)
      verts = _verts_camera(record, v)
      silhouette = rasterize(verts, faces, views["K"][v], 96, 96).mask
      # The visible hand is part of the hand's silhouette, and vis_ratio is their area ratio.
      assert (mask & ~silhouette).sum() <= 0.01 * max(mask.sum(), 1)
      np.testing.assert_allclose(views["vis_ratio"][v], mask.sum() / silhouette.sum(), atol=0.02)
      if views["vis_ratio"][v] < 1.0:
        continue
      unoccluded += 1
      iou = (mask & silhouette).sum() / (mask | silhouette).sum()
      assert iou > 0.98
      uv = project(verts, views["K"][v])
      inside = (uv > 0).all(axis=1) & (uv < 95).all(axis=1)
      cols, rows = np.round(uv[inside]).astype(int).T
      near = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(
          mask, -1, 1)
      assert near[rows, cols].mean() > 0.97
  assert unoccluded >= 5


def test_visibility_ratio_drops_with_occluders(faces, regions):
  model = hand.load_hand_model(None)
  hands = scene.sample_hands(model, 0, "train", range(4))
  for h in hands:
    clear = scene.render_frame(h, faces, regions, 0, "train", "synthhand",
                               scene.SceneConfig(image_size=64, occluder_counts=(1, 0, 0, 0)))
    blocked = scene.render_frame(h, faces, regions, 0, "train", "synthhand",
                                 scene.SceneConfig(image_size=64, occluder_counts=(0, 0, 0, 1)))
    np.testing.assert_array_equal(clear["views"]["vis_ratio"], 1.0)
    ratios = blocked["views"]["vis_ratio"]
    assert ((0.0 <= ratios) & (ratios <= 1.0)).all()
    assert ratios.mean() < 0.95 and ratios.min() < 0.8


def test_default_scene_occludes_20_to_40_percent_of_views(faces, regions):
  """The share of views with vis_ratio < 0.4 under the default scene ranges (64 px renders of
  40 frames; the ratio is an area ratio, so resolution barely matters)."""
  model = hand.load_hand_model(None)
  ratios = []
  for h in scene.sample_hands(model, 123, "train", range(40)):
    example = scene.render_frame(h, faces, regions, 123, "train", "synthhand",
                                 scene.SceneConfig(image_size=64))
    ratios.append(example["views"]["vis_ratio"])
  occluded = np.mean(np.concatenate(ratios) < 0.4)
  assert 0.2 <= occluded <= 0.4, occluded


def test_a_frame_regenerated_alone_equals_the_built_one(train_records, faces, regions):
  model = hand.load_hand_model(None)
  (h,) = scene.sample_hands(model, 0, "train", [5])
  example = scene.render_frame(h, faces, regions, 0, "train", "synthhand", scene.SceneConfig(96))
  record = train_records[5]
  assert example["views"]["image"] == list(record["views"]["image"])
  np.testing.assert_allclose(example["verts_canonical"], record["verts_canonical"], atol=1e-6)


def test_augmented_crops_keep_labels_on_the_hand(data_dir):
  """Through the training pipeline (random scale/rotation): rotating the canonical mesh by the
  updated global rotation about the wrist, placing it at the camera-frame wrist and projecting
  with the crop intrinsics lands on the warped hand mask, and so do the 2D joint targets."""
  cfg = input_pipeline.InputConfig(dataset=TINY, data_dir=data_dir, batch_size=128,
                                   image_size=64, with_hand_mask=True, seed=4, num_threads=1)
  batch = next(input_pipeline.train_iterator(cfg, process_index=0, process_count=1))
  checked = 0
  for b in range(128):
    if batch["vis_ratio"][b] < 1.0:
      continue
    checked += 1
    root = batch["joints_canonical"][b, 0]
    verts = ((batch["verts_canonical"][b] - root) @ batch["rotation"][b].T
             + batch["joints_camera"][b, 0])
    uv = project(verts, batch["K_crop"][b])
    inside = (uv > 0).all(axis=1) & (uv < 63).all(axis=1)
    cols, rows = np.round(uv[inside]).astype(int).T
    mask = batch["hand_mask"][b] > 0
    near = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(
        mask, -1, 1)
    assert near[rows, cols].mean() > 0.95, b
    joints = batch["joints_2d"][b] * 64
    on_image = (joints > 0).all(axis=1) & (joints < 63).all(axis=1)
    cols, rows = np.round(joints[on_image]).astype(int).T
    assert near[rows, cols].mean() > 0.85, b
  assert checked >= 5


def test_cli_prints_a_summary(data_dir, capsys):
  assert build.main([TINY, "--data_dir", data_dir]) == 0
  out = capsys.readouterr().out
  assert "train: 16 frames, 128 valid views" in out and "test: 4 frames" in out
  assert build.ensure_built(TINY, data_dir) == input_pipeline.dataset_dir(TINY, data_dir)


def test_the_config_name_decides_the_hand_model(tmp_path):
  """*_mano configs need an existing MANO file; SynthHand configs refuse one ("synthhand", the
  hand-model name of the built-in model, is accepted)."""
  data_dir = str(tmp_path / "tfds")
  mano_path = tmp_path / "MANO_RIGHT.pkl"
  mano_path.write_bytes(b"not read before building")
  builder = build.make_builder("synthetic_hands/tiny_mano", data_dir, mano_path=str(mano_path))
  assert builder.builder_config.hand_model == "mano"
  assert build.make_builder(TINY, data_dir, mano_path="synthhand").builder_config.name == "tiny"
  with pytest.raises(ValueError, match="tiny_mano"):
    build.make_builder(TINY, data_dir, mano_path=str(mano_path))
  with pytest.raises(ValueError, match="mano_path"):
    build.make_builder("synthetic_hands/tiny_mano", data_dir)
  with pytest.raises(FileNotFoundError, match="missing.pkl"):
    build.make_builder("synthetic_hands/tiny_mano", data_dir,
                       mano_path=str(tmp_path / "missing.pkl"))


def _tilt_from_vertical_deg(h: scene.HandSample) -> float:
  """Angle between world +z and the hand's wrist-to-knuckles direction in the world frame."""
  joints = h.to_world(h.joints_canonical)
  along = joints[[5, 9, 13, 17]].mean(axis=0) - joints[0]
  return float(np.degrees(np.arccos(along[2] / np.linalg.norm(along))))


def test_upright_hands_point_up_with_half_normal_tilt():
  model = hand.load_hand_model(None)
  level = scene.sample_hands(model, 0, "train", range(8), config=scene.SceneConfig(
      hand_tilt_deg=1e-9))
  np.testing.assert_allclose([_tilt_from_vertical_deg(h) for h in level], 0.0, atol=1e-4)
  tilts = [_tilt_from_vertical_deg(h) for h in scene.sample_hands(model, 0, "train", range(256))]
  # Half-normal of scale 40 deg: mean 40 sqrt(2/pi) = 31.9 deg (standard error ~1.5 deg).
  assert 27.0 < np.mean(tilts) < 37.0
  uniform = scene.sample_hands(model, 0, "train", range(256),
                               config=scene.SceneConfig(orientation="uniform"))
  # Uniform rotations send the direction uniformly over the sphere: mean angle 90 deg.
  assert 80.0 < np.mean([_tilt_from_vertical_deg(h) for h in uniform]) < 100.0


def test_upright_cameras_see_world_up_as_image_up(faces, regions):
  """With no roll, every camera's x axis is horizontal and its image-down axis points down."""
  model = hand.load_hand_model(None)
  (h,) = scene.sample_hands(model, 0, "train", [3])
  example = scene.render_frame(h, faces, regions, 0, "train", "synthhand",
                               scene.SceneConfig(image_size=32, camera_roll_deg=1e-9))
  rotations = example["views"]["world2cam"][:, :3, :3]  # rows: camera x, y (down), z in world
  np.testing.assert_allclose(rotations[:, 0, 2], 0.0, atol=1e-6)
  assert (rotations[:, 1, 2] < 0).all()


def test_unknown_orientation_is_rejected():
  with pytest.raises(ValueError, match="orientation must be one of"):
    scene.SceneConfig(orientation="random")


def test_skin_regions_follow_the_hand_geometry(regions):
  """Palm weights agree with which side of the palm plane a vertex lies on, and every finger
  has a nail on the back of its tip."""
  from simajax.hand.joints import joint_regressor_21
  model = hand.load_hand_model(None)
  verts = np.asarray(model.v_template, np.float64)
  joints = joint_regressor_21(model) @ verts
  centre, palmar, _, _ = scene._palm_frame(joints)  # pylint: disable=protected-access
  offset = (verts - centre) @ palmar
  near_palm = np.linalg.norm(verts - centre, axis=1) < 0.035
  palmar_side, dorsal_side = near_palm & (offset > 0.004), near_palm & (offset < -0.004)
  assert palmar_side.sum() > 10 and dorsal_side.sum() > 10
  assert (regions.palm[palmar_side] > 0.5).mean() > 0.95
  assert (regions.palm[dorsal_side] < 0.5).mean() > 0.95
  assert 0.35 < (regions.palm > 0.5).mean() < 0.65
  nails = regions.nail > 0.5
  assert (regions.palm[nails] < 0.5).all()
  for tip in (4, 8, 12, 16, 20):  # every fingertip has nail vertices within 1.5 cm
    assert (np.linalg.norm(verts[nails] - joints[tip], axis=1) < 0.015).sum() >= 3


def test_palm_views_look_lighter_and_appearance_changes_no_label(faces, regions):
  """Views that face the palm show a lighter hand than views of the back under the albedo map,
  not with one uniform albedo; and the albedo changes the images only, never a label."""
  model = hand.load_hand_model(None)
  uniform = scene.SkinRegions(palm=np.ones_like(regions.palm), nail=np.zeros_like(regions.nail))
  config = scene.SceneConfig(image_size=64, occluder_counts=(1, 0, 0, 0))
  ratios = {}
  for name, skin in (("albedo", regions), ("uniform", uniform)):
    brightness = {"palm": [], "back": []}
    examples = []
    for h in scene.sample_hands(model, 0, "train", range(8)):
      example = scene.render_frame(h, faces, skin, 0, "train", "synthhand", config)
      examples.append(example)
      _, palmar, _, _ = scene._palm_frame(h.joints_canonical)  # pylint: disable=protected-access
      for v in range(8):
        mask = schema.decode_image(example["views"]["hand_mask"][v], channels=1) > 127
        facing = (example["views"]["global_rot"][v] @ palmar)[2]  # < 0: towards the camera
        if mask.sum() >= 20 and abs(facing) > 0.5:
          pixels = schema.decode_image(example["views"]["image"][v])[mask].astype(np.float64)
          brightness["palm" if facing < 0 else "back"].append(pixels.mean())
    assert min(len(b) for b in brightness.values()) >= 5
    ratios[name] = np.mean(brightness["palm"]) / np.mean(brightness["back"])
    if name == "albedo":
      reference = examples
  assert ratios["albedo"] > ratios["uniform"] + 0.15, ratios
  for with_albedo, without in zip(reference, examples):
    for key, value in with_albedo.items():
      if key != "views":
        np.testing.assert_array_equal(value, without[key], err_msg=key)
    for key, value in with_albedo["views"].items():
      if key == "image":
        assert value != without["views"][key]
      else:
        np.testing.assert_array_equal(value, without["views"][key], err_msg=key)
