"""The shared input pipeline on a fabricated schema dataset (no renderer needed).

Each fabricated frame is a random point-cloud "hand" (778 points, 21 joints) posed by a random
root rotation and seen by 8 random pinhole cameras. Its stored hand mask is a disc at every
projected point and its image is noise with the mask painted white, so label/pixel consistency
can be checked through crops and augmentation. One frame is a left hand and some views are
invalid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import schema
from simajax import geometry, input_pipeline
from simajax.preprocessing import augment, crop, sample

NUM_FRAMES = 7
IMAGE_HW = (72, 96)
INVALID_VIEWS = {(1, 3), (4, 0), (4, 5)}  # (frame, view)
LEFT_FRAME = 2


def _look_at(eye, target, rng):
  """world2cam [4, 4] of a camera at ``eye`` looking at ``target`` (OpenCV axes)."""
  forward = (target - eye) / np.linalg.norm(target - eye)
  up = rng.normal(size=3)
  right = np.cross(forward, up)
  right /= np.linalg.norm(right)
  down = np.cross(forward, right)
  rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
  world2cam = np.eye(4)
  world2cam[:3, :3] = rot
  world2cam[:3, 3] = -rot @ eye
  return world2cam


def _disc_mask(points_2d, height, width, radius=1.6):
  rows, cols = np.mgrid[0:height, 0:width]
  mask = np.zeros((height, width), bool)
  for u, v in points_2d:
    mask |= (cols - u) ** 2 + (rows - v) ** 2 <= radius ** 2
  return mask


def _fake_frame(index: int) -> dict:
  rng = np.random.default_rng(index)
  height, width = IMAGE_HW
  root = np.array([0.09, 0.006, 0.006])
  joints_c = root + np.concatenate([np.zeros((1, 3)), rng.normal(scale=0.03, size=(20, 3))])
  verts_c = root + rng.normal(scale=0.03, size=(schema.NUM_VERTS, 3))
  world_rot = geometry.axis_angle_to_matrix(rng.normal(size=3))
  world_trans = rng.normal(scale=0.05, size=3)
  world = lambda p: (p - root) @ world_rot.T + root + world_trans
  centre = world(joints_c).mean(axis=0)
  views = {k: [] for k in list(schema.VIEW_ARRAYS) + list(schema.VIEW_BYTES)
           + list(schema.VIEW_TEXT)}
  for v in range(schema.NUM_VIEWS):
    direction = rng.normal(size=3)
    eye = centre + 0.45 * direction / np.linalg.norm(direction)
    w2c = _look_at(eye, centre, rng)
    f = rng.uniform(110, 130)
    K = np.array([[f, 0, width / 2 + rng.uniform(-4, 4)],
                  [0, f * rng.uniform(0.97, 1.03), height / 2 + rng.uniform(-4, 4)],
                  [0, 0, 1]])
    to_cam = lambda p: p @ w2c[:3, :3].T + w2c[:3, 3]
    joints_camera = to_cam(world(joints_c))
    verts_camera = to_cam(world(verts_c))
    global_rot = w2c[:3, :3] @ world_rot
    uv = (joints_camera @ K.T)[:, :2] / joints_camera[:, 2:]
    mask = _disc_mask((verts_camera @ K.T)[:, :2] / verts_camera[:, 2:], height, width)
    image = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)
    image[mask] = 255
    valid = (index, v) not in INVALID_VIEWS
    views["image"].append(schema.encode_image(image) if valid else b"")
    views["hand_mask"].append(schema.encode_image(mask.astype(np.uint8) * 255) if valid else b"")
    views["camera_id"].append(f"cam{v}")
    views["bg_variant"].append("fake")
    views["view_valid"].append(valid)
    views["K"].append(K)
    views["world2cam"].append(w2c)
    views["joints_img"].append(uv)
    views["joints_cam"].append(joints_camera)
    views["global_rot"].append(global_rot)
    views["mano_pose"].append(np.concatenate([geometry.matrix_to_axis_angle(global_rot),
                                              np.zeros(45)]))
    views["mano_trans"].append(joints_camera[0] - root)
    views["vis_ratio"].append(rng.uniform(0, 1))
  views = {k: (np.asarray(val, dtype=schema.VIEW_ARRAYS[k][1]) if k in schema.VIEW_ARRAYS
               else val) for k, val in views.items()}
  if index == LEFT_FRAME:
    # The schema stores the canonical mesh of the mirrored (right-hand) pose for left hands.
    mirror = np.array([-1.0, 1.0, 1.0])
    joints_c = root + (joints_c - root) * mirror
    verts_c = root + (verts_c - root) * mirror
  return {
      "frame_key": f"fake/{index:04d}", "dataset": "synthetic_hands",
      "hand_side": "left" if index == LEFT_FRAME else "right", "hand_model": "synthhand",
      "has_mesh": True, "mano_shape": np.zeros(10, np.float32),
      "mano_pose": np.zeros(48, np.float32), "mano_trans": world_trans.astype(np.float32),
      "joints_canonical": joints_c.astype(np.float32),
      "verts_canonical": verts_c.astype(np.float32), "views": views}


class FakeHandFrames(tfds.core.GeneratorBasedBuilder):
  """Fabricated frames in the shared schema (tests only)."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=schema.features())

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(NUM_FRAMES):
      example = _fake_frame(i)
      schema.validate_example(example, f"frame {i}")
      yield i, example


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  FakeHandFrames(data_dir=path, file_format="array_record").download_and_prepare()
  return path


def _config(data_dir, **kwargs):
  defaults = dict(dataset="fake_hand_frames", data_dir=data_dir, batch_size=4, image_size=32,
                  num_threads=1)
  defaults.update(kwargs)
  return input_pipeline.InputConfig(**defaults)


def _records(data_dir):
  path = input_pipeline.dataset_dir("fake_hand_frames", data_dir)
  source = tfds.builder_from_directory(path).as_data_source("train")
  return [source[i] for i in range(len(source))]


def _frame_of(records, key):
  return [i for i, r in enumerate(records) if r["frame_key"].decode() == key][0]


def test_single_view_epoch_lists_every_valid_view_once(data_dir):
  records = _records(data_dir)
  expected = {(i, v) for i, r in enumerate(records) for v in range(8)
              if r["views"]["view_valid"][v]}
  assert len(expected) == NUM_FRAMES * 8 - len(INVALID_VIEWS)
  it = input_pipeline.train_iterator(_config(data_dir, batch_size=len(expected)),
                                     process_index=0, process_count=1)
  batch = next(it)
  seen = list(zip(batch["frame_index"].tolist(), batch["view_index"].tolist()))
  assert sorted(seen) == sorted(expected)
  assert batch["image"].shape == (len(expected), 32, 32, 3) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  shapes = {"joints_2d": (21, 2), "joints_rotated": (21, 3), "verts_rotated": (778, 3),
            "joints_canonical": (21, 3), "verts_canonical": (778, 3), "rotation": (3, 3),
            "joints_camera": (21, 3), "verts_camera": (778, 3), "K_crop": (3, 3),
            "vis_ratio": (), "mask": ()}
  for key, shape in shapes.items():
    assert batch[key].shape == (len(expected),) + shape, key
  np.testing.assert_array_equal(batch["mask"], 1.0)


def test_multi_view_batch_carries_view_validity(data_dir):
  records = _records(data_dir)
  it = input_pipeline.train_iterator(_config(data_dir, mode="multi_view", batch_size=NUM_FRAMES),
                                     process_index=0, process_count=1)
  batch = next(it)
  assert batch["image"].shape == (NUM_FRAMES, 8, 32, 32, 3)
  assert batch["verts_rotated"].shape == (NUM_FRAMES, 8, 778, 3)
  assert sorted(batch["frame_index"][:, 0].tolist()) == list(range(NUM_FRAMES))
  for b in range(NUM_FRAMES):
    frame = int(batch["frame_index"][b, 0])
    np.testing.assert_array_equal(batch["view_valid"][b], records[frame]["views"]["view_valid"])
    invalid = ~batch["view_valid"][b]
    assert np.all(batch["image"][b][invalid] == 0)
    # The canonical target is one mesh per frame, the same in every valid view.
    valid_canon = batch["verts_canonical"][b][~invalid]
    np.testing.assert_array_equal(valid_canon, np.broadcast_to(valid_canon[0], valid_canon.shape))


def test_targets_are_consistent_with_the_crop_camera(data_dir):
  """Projecting the augmented camera-frame joints with K_crop gives the 2D targets; the
  model-frame rotated GT is the camera-frame GT moved to the canonical wrist."""
  it = input_pipeline.train_iterator(_config(data_dir, batch_size=16, seed=3),
                                     process_index=0, process_count=1)
  batch = next(it)
  for b in range(16):
    uvw = batch["joints_camera"][b] @ batch["K_crop"][b].T
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:] / 32, batch["joints_2d"][b], atol=1e-4)
    rel_cam = batch["joints_camera"][b] - batch["joints_camera"][b, :1]
    rel_model = batch["joints_rotated"][b] - batch["joints_rotated"][b, :1]
    np.testing.assert_allclose(rel_cam, rel_model, atol=2e-6)
    np.testing.assert_allclose(batch["joints_rotated"][b, 0], batch["joints_canonical"][b, 0],
                               atol=1e-6)
    rot = batch["rotation"][b]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-5)
    expected = ((batch["verts_canonical"][b] - batch["joints_canonical"][b, 0]) @ rot.T
                + batch["joints_canonical"][b, 0])
    np.testing.assert_allclose(batch["verts_rotated"][b], expected, atol=1e-6)


def test_augmented_labels_stay_on_the_hand_pixels(data_dir):
  """Under random scale/rotation (and mirroring of the left hand) the projected mesh lands on the
  warped hand mask, and the image's white hand pixels follow the mask."""
  cfg = _config(data_dir, batch_size=NUM_FRAMES * 8 - len(INVALID_VIEWS), image_size=64,
                with_hand_mask=True, seed=11)
  batch = next(input_pipeline.train_iterator(cfg, process_index=0, process_count=1))
  records = _records(data_dir)
  left = _frame_of(records, f"fake/{LEFT_FRAME:04d}")
  for b in range(len(batch["mask"])):
    uvw = batch["verts_camera"][b] @ batch["K_crop"][b].T
    uv = uvw[:, :2] / uvw[:, 2:]
    inside = (uv >= 0).all(axis=1) & (uv <= 63).all(axis=1)
    cols, rows = np.round(uv[inside]).astype(int).T
    hits = batch["hand_mask"][b][rows, cols]
    assert hits.mean() > 0.97, (b, hits.mean())
    # Hand pixels are 255 times a gain >= 0.8; the background is < 120 times a gain <= 1.2.
    white = batch["image"][b].min(axis=-1) > 0.7
    assert white.sum() > 0
    assert batch["hand_mask"][b][white].mean() > 0.9
  assert left in set(batch["frame_index"].tolist())


def test_rotation_augmentation_updates_global_rotation(data_dir):
  """A = Rz(-rot) composes with the stored root rotation (docs/training.md#crops-and-augmentation)."""
  records = _records(data_dir)
  record = records[_frame_of(records, "fake/0000")]
  plain = sample.process_view(record, 1, 32)
  params = augment.AugmentParams(scale=1.1, rot_deg=40.0, color_gain=(1.0, 1.0, 1.0))
  rotated = sample.process_view(record, 1, 32, params)
  a = -np.deg2rad(40.0)
  rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
  np.testing.assert_allclose(rotated["rotation"], rz @ plain["rotation"], atol=1e-6)
  np.testing.assert_allclose(rotated["joints_camera"], plain["joints_camera"] @ rz.T,
                             atol=1e-6)
  np.testing.assert_array_equal(rotated["verts_canonical"], plain["verts_canonical"])
  # The 2D joints turn by -40 degrees about the crop centre and shrink by 1/1.1.
  centre = np.array([0.5, 0.5])
  rot2 = rz[:2, :2]
  expected = (plain["joints_2d"] - centre) @ rot2.T / 1.1 + centre
  np.testing.assert_allclose(rotated["joints_2d"], expected, atol=1e-5)


def test_left_hand_is_mirrored(data_dir):
  records = _records(data_dir)
  record = records[_frame_of(records, f"fake/{LEFT_FRAME:04d}")]
  mirrored = sample.process_view(record, 0, 32, with_hand_mask=True)
  kept = sample.process_view(record, 0, 32, mirror_left=False, with_hand_mask=True)
  flip = np.diag([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(mirrored["joints_camera"], kept["joints_camera"] @ flip,
                             atol=1e-6)
  np.testing.assert_allclose(mirrored["rotation"], flip @ kept["rotation"] @ flip,
                             atol=1e-6)
  # The mirrored mesh projects onto the flipped image's hand, the unmirrored one does not.
  for item, expect_on_hand in ((mirrored, True), (kept, False)):
    uvw = item["verts_camera"] @ item["K_crop"].T
    cols, rows = np.clip(np.round(uvw[:, :2] / uvw[:, 2:]), 0, 31).astype(int).T
    assert (item["hand_mask"][rows, cols].mean() > 0.97) == expect_on_hand


def test_resume_gives_the_same_batches(data_dir):
  cfg = _config(data_dir, batch_size=6, seed=5)
  reference = input_pipeline.train_iterator(cfg, process_index=0, process_count=1)
  batches = [next(reference) for _ in range(12)]  # crosses epoch boundaries (53 views)
  state = None
  resumed = input_pipeline.train_iterator(cfg, process_index=0, process_count=1)
  for step in range(12):
    if step == 5:
      state = resumed.get_state()
      resumed = input_pipeline.train_iterator(cfg, process_index=0, process_count=1)
      resumed.set_state(state)
    batch = next(resumed)
    for key in batch:
      np.testing.assert_array_equal(batch[key], batches[step][key], err_msg=f"{step} {key}")
  assert state["step"] == 5
  other = input_pipeline.train_iterator(_config(data_dir, batch_size=6, seed=6),
                                        process_index=0, process_count=1)
  with pytest.raises(ValueError, match="seed"):
    other.set_state(state)


def test_processes_split_each_global_batch(data_dir):
  cfg = _config(data_dir, batch_size=8, seed=2)
  whole = input_pipeline.train_iterator(cfg, process_index=0, process_count=1)
  parts = [input_pipeline.train_iterator(cfg, process_index=p, process_count=2) for p in (0, 1)]
  for _ in range(3):
    full = next(whole)
    halves = [next(p) for p in parts]
    for key in full:
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), full[key])


def test_workers_do_not_change_the_batches(data_dir):
  cfg = _config(data_dir, batch_size=4, seed=9)
  plain = input_pipeline.train_iterator(cfg, process_index=0, process_count=1)
  workers = input_pipeline.train_iterator(
      _config(data_dir, batch_size=4, seed=9, num_workers=2), process_index=0, process_count=1)
  for _ in range(3):
    a, b = next(plain), next(workers)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("mode", ["single_view", "multi_view"])
def test_eval_covers_every_example_once(data_dir, mode):
  records = _records(data_dir)
  n_views = sum(int(r["views"]["view_valid"].sum()) for r in records)
  expected_count = n_views if mode == "single_view" else NUM_FRAMES
  seen = []
  batches_per_process = []
  for p in range(2):
    iterable = input_pipeline.eval_iterable(_config(data_dir, mode=mode, batch_size=10),
                                            process_index=p, process_count=2)
    batches = list(iterable)
    batches_per_process.append(len(batches))
    assert len(batches) == -(-expected_count // 10)
    for batch in batches:
      assert batch["image"].shape[0] == 5
      keep = batch["mask"] == 1
      frames = batch["frame_index"][keep]
      views = batch["view_index"][keep]
      if mode == "multi_view":
        frames, views = frames[:, 0], np.zeros_like(frames[:, 0])
      seen += list(zip(frames.tolist(), views.tolist()))
      assert np.all(batch["image"][~keep] == 0)
  assert batches_per_process[0] == batches_per_process[1]
  assert len(seen) == expected_count and len(set(seen)) == expected_count


def test_eval_has_no_augmentation(data_dir):
  cfg = _config(data_dir, batch_size=8, augment=True)
  a = next(iter(input_pipeline.eval_iterable(cfg, process_index=0, process_count=1)))
  b = next(iter(input_pipeline.eval_iterable(dataclasses.replace(cfg, seed=99), 0, 1)))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  records = _records(data_dir)
  frame, view = int(a["frame_index"][0]), int(a["view_index"][0])
  direct = sample.process_view(records[frame], view, 32, frame_index=frame)
  np.testing.assert_array_equal(a["image"][0], direct["image"])


def test_crop_box_matches_the_official_formula():
  joints = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
  # get_bbox x1.5 -> (5, 10, 30, 60); process_bbox clips to (5, 10, 29, 59), centre (19.5, 39.5),
  # grows the width to 59.
  np.testing.assert_allclose(crop.joints_box(joints, 100, 100), [-10.0, 10.0, 59.0, 59.0])
  assert crop.joints_box(np.full((21, 2), 500.0), 100, 100) is None
  # The whole 96x72 image: clipped to (0, 0, 95, 71), centre (47.5, 35.5), side 95.
  np.testing.assert_allclose(crop.full_image_box(96, 72), [0.0, -12.0, 95.0, 95.0])


def test_crop_affine_maps_box_to_crop():
  box = np.array([10.0, 20.0, 40.0, 40.0])
  m = crop.crop_affine(box, 64)
  np.testing.assert_allclose(crop.apply_affine(m, np.array([[30.0, 40.0], [50.0, 60.0]])),
                             [[32.0, 32.0], [64.0, 64.0]], atol=1e-9)
  # Rotating by +90 degrees: the source point below the centre goes to the crop's right.
  m = crop.crop_affine(box, 64, scale=2.0, rot_deg=90.0)
  np.testing.assert_allclose(crop.apply_affine(m, np.array([[30.0, 80.0]])), [[64.0, 32.0]],
                             atol=1e-9)


def test_warp_matches_bilinear_sampling():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(50, 60, 3), dtype=np.uint8)
  m = crop.crop_affine(np.array([12.0, 9.0, 30.0, 30.0]), 24, scale=1.1, rot_deg=25.0)
  warped = crop.warp_image(image, m, 24).astype(np.float64)
  inverse = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
  rows, cols = np.mgrid[0:24, 0:24]
  src = np.stack([cols, rows, np.ones_like(cols)], -1) @ inverse[:2].T
  x0, y0 = np.floor(src[..., 0]).astype(int), np.floor(src[..., 1]).astype(int)
  fx, fy = (src[..., 0] - x0)[..., None], (src[..., 1] - y0)[..., None]
  ref = (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x0 + 1] * fx * (1 - fy)
         + image[y0 + 1, x0] * (1 - fx) * fy + image[y0 + 1, x0 + 1] * fx * fy)
  assert np.abs(warped - ref).max() <= 1.0


def test_augmentation_draws_follow_the_official_ranges():
  rng = np.random.default_rng(0)
  draws = [augment.draw(rng) for _ in range(4000)]
  scales = np.array([d.scale for d in draws])
  rots = np.array([d.rot_deg for d in draws])
  gains = np.array([d.color_gain for d in draws])
  assert 0.75 <= scales.min() and scales.max() <= 1.25
  assert np.abs(rots).max() <= 60.0
  assert abs(np.mean(rots == 0.0) - 0.4) < 0.03
  assert 0.8 <= gains.min() and gains.max() <= 1.2
  # clip(N(0,1), -1, 1) puts ~31.7 % of the mass on the two ends.
  assert abs(np.mean(np.abs(scales - 1.0) > 0.2499) - 0.317) < 0.03
