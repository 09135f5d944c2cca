"""`python -m simajax.predict --images`: photos in; meshes, overlays and predictions out.

Every CLI run here predicts on the same four photos, so the tiny SVR is compiled once per session
(one batch shape) and later runs hit the compilation cache. The tiny SVR's weights, export and
run directories are tests/conftest.py's fixtures.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from simajax import config_lib, geometry, hand, photo, predict
from simajax.models import OUTPUT_KEYS
from simajax.preprocessing import crop
from simajax.render import Mesh, face_normals, read_obj, read_ply, render_scene
from simajax.training import checkpointing

S = 128  # the tiny model's input size
M = np.array([-1.0, 1.0, 1.0])
BOX_A = [52.0, 20.0, 118.0, 92.0]  # around the rendered hand of photo A


def _render_hand(width, height, shift, seed):
  """A SynthHand rendered over a noisy gradient background."""
  model = hand.synthhand_model()
  verts = np.asarray(model.v_template, np.float64)
  verts = (verts - verts.mean(axis=0)) + [shift, 0.0, 0.45]
  K = np.array([[260.0, 0.0, width / 2.0], [0.0, 260.0, height / 2.0], [0.0, 0.0, 1.0]])
  rng = np.random.default_rng(seed)
  ramp = np.linspace(40, 200, width)[None, :, None] + np.zeros((height, 1, 3))
  background = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
  return render_scene([Mesh(verts, np.asarray(model.faces), color=(0.9, 0.7, 0.6))], K, None,
                      height, width, background=background).rgb


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """A PNG and a JPEG (other proportions) of a hand, their exact horizontal flips, and boxes.

  The flip of the JPEG is stored losslessly, since re-encoding would change its pixels. The
  flipped photos are marked left hands, and photo a's box is mirrored with it.
  """
  root = tmp_path_factory.mktemp("photos")
  Image.fromarray(_render_hand(170, 120, 0.0, 0)).save(root / "a.png")
  Image.fromarray(_render_hand(110, 150, 0.02, 1)).save(root / "b.jpg", quality=90)
  for name, flipped_name in (("a.png", "a_flipped.png"), ("b.jpg", "b_flipped.png")):
    decoded = photo.read_photo(root / name)
    Image.fromarray(np.ascontiguousarray(decoded[:, ::-1])).save(root / flipped_name)
  x0, y0, x1, y1 = BOX_A
  (root / "boxes.json").write_text(json.dumps({
      "a.png": BOX_A,
      "a_flipped.png": {"box": [170 - 1 - x1, y0, 170 - 1 - x0, y1], "left": True},
      "b_flipped.png": {"left": True}}))
  return root


def _predict_cli(checkpoint, photos, out_dir):
  """Runs the CLI on the four photos (one batch shape for every run: one compilation)."""
  names = ["a.png", "b.jpg", "a_flipped.png", "b_flipped.png"]
  predict.main(["--checkpoint", str(checkpoint), "--images", *[str(photos / n) for n in names],
                "--boxes-json", str(photos / "boxes.json"), "--out-dir", str(out_dir)])
  return np.load(out_dir / "predictions.npz")


@pytest.fixture(scope="module")
def export_run(photos, export_ckpt, tmp_path_factory):
  out = tmp_path_factory.mktemp("out_export")
  return out, _predict_cli(export_ckpt, photos, out)


def _bilinear(image, u, v):
  """Independent bilinear sample of a uint8 [H, W, 3] image at pixel (u, v), zero outside."""
  h, w = image.shape[:2]
  x0, y0 = int(np.floor(u)), int(np.floor(v))
  fx, fy = u - x0, v - y0
  total = np.zeros(3)
  for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                         (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
    x, y = x0 + dx, y0 + dy
    if 0 <= x < w and 0 <= y < h:
      total += weight * image[y, x]
  return total


def test_crop_follows_the_official_box_rule_and_bilinear_warp():
  width, height = 200, 160
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  x0, y0, x1, y1 = 40.0, 30.0, 100.0, 70.0
  # Official rule: the box grows 1.5x about its centre, its far side is at start + size - 1, and
  # the square takes the longer side: centre shifts by -0.5, side 1.5 * 60 - 1.
  centre = np.array([(x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5])
  side = 1.5 * max(x1 - x0, y1 - y0) - 1.0
  result = photo.crop_photo(image, S, np.array([x0, y0, x1, y1]))
  np.testing.assert_allclose(result.box, [*(centre - side / 2), side, side])
  corners = np.array([centre - side / 2, centre + side / 2, centre])
  np.testing.assert_allclose(crop.apply_affine(result.affine, corners),
                             [[0, 0], [S, S], [S / 2, S / 2]], atol=1e-9)
  assert result.image.dtype == np.float32 and result.image.shape == (S, S, 3)
  for q in ([0, 0], [17, 100], [64, 64], [127, 5], [90, 127]):
    u, v = centre + (np.array(q) - S / 2) * side / S  # the crop pixel's source in the photo
    if 1 <= u <= width - 2 and 1 <= v <= height - 2:  # PIL clamps at the border (crop.py)
      np.testing.assert_allclose(result.image[q[1], q[0]] * 255.0, _bilinear(image, u, v),
                                 atol=1.0)

  # A left hand: the network sees the crop of the flipped photo, whose box is the flip of the
  # user box; the official -0.5 shift then lands on the other side of the original centre.
  left = photo.crop_photo(image, S, np.array([x0, y0, x1, y1]), left=True)
  flipped_centre = np.array([(width - 1 - x1 + width - 1 - x0) / 2 - 0.5, centre[1]])
  np.testing.assert_allclose(left.box, [width - 1 - flipped_centre[0] - side / 2,
                                        centre[1] - side / 2, side, side])
  for q in ([10, 20], [64, 64], [120, 90]):
    u, v = flipped_centre + (np.array(q) - S / 2) * side / S
    np.testing.assert_allclose(left.image[q[1], q[0]] * 255.0,
                               _bilinear(image[:, ::-1], u, v), atol=1.0)
    # The stored affine takes the photo point to the crop as the photo shows it (x mirrored).
    np.testing.assert_allclose(crop.apply_affine(left.affine, [width - 1 - u, v]),
                               [S - q[0], q[1]], atol=1e-9)

  whole = photo.crop_photo(image, S)  # no box: the whole image, square about its centre
  np.testing.assert_allclose(whole.box, [99.5 - 99.5, 79.5 - 99.5, 199, 199])


def test_box_and_input_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match=r"b.json: entry 'x.png': box must be 4 numbers"):
    photo.parse_box([1, 2, 3], "b.json: entry 'x.png'")
  with pytest.raises(ValueError, match="x0 < x1"):
    photo.parse_box([5, 0, 5, 10], "--box")
  with pytest.raises(ValueError, match="finite"):
    photo.parse_box([0, 0, np.nan, 10], "--box")
  with pytest.raises(ValueError, match=r"p.jpg: box \[300.0, 10.0, 400.0, 50.0\] lies outside "
                                       r"the 200x100 image"):
    photo.square_crop_box(200, 100, np.array([300.0, 10.0, 400.0, 50.0]), source="p.jpg")
  with pytest.raises(ValueError, match=r"p.jpg: box \[-20.0, 10.0, -1.0, 50.0\] lies outside"):
    photo.crop_photo(np.zeros((100, 200, 3), np.uint8), S, np.array([-20.0, 10.0, -1.0, 50.0]),
                     left=True, source="p.jpg")

  (tmp_path / "p.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match="p.png: not a readable image"):
    photo.read_photo(tmp_path / "p.png")
  Image.new("RGB", (20, 10)).save(tmp_path / "q.png")
  boxes = tmp_path / "boxes.json"
  for content, match in [
      ({"q.png": [1, 2, 3, 4, 5]}, "entry 'q.png': box must be 4 numbers"),
      ({"q.png": {"box": [1, 2, 3, 4], "side": "left"}}, r"unknown fields \['side'\]"),
      ({"q.png": {"left": "yes"}}, "'left' must be true or false"),
      ({"r.png": [1, 2, 3, 4]}, r"entries \['r.png'\] match none of the photos"),
      ([[1, 2, 3, 4]], "expected a JSON object"),
  ]:
    boxes.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as info:
      photo.photo_specs([tmp_path / "q.png"], boxes_json=boxes)
    assert str(boxes) in str(info.value)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty: directory has no"):
    photo.photo_specs([tmp_path / "empty"])
  (tmp_path / "other").mkdir()
  Image.new("RGB", (20, 10)).save(tmp_path / "other" / "q.jpg")
  with pytest.raises(ValueError, match="would write the same output files q"):
    photo.photo_specs([tmp_path / "q.png", tmp_path / "other"])
  with pytest.raises(FileNotFoundError, match="missing.png"):
    photo.photo_specs([tmp_path / "missing.png"])


def test_cli_reports_bad_photos_and_boxes(export_ckpt, tmp_path, capsys):
  Image.new("RGB", (40, 30)).save(tmp_path / "ok.png")
  (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
  base = ["--checkpoint", str(export_ckpt), "--out-dir", str(tmp_path / "out")]
  with pytest.raises(SystemExit):
    predict.main(base + ["--images", str(tmp_path / "ok.png"), "--box", "1", "2", "3"])
  assert "--box: expected 4 arguments" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    predict.main(base + ["--images", str(tmp_path / "ok.png"), str(tmp_path / "broken.jpg")])
  assert "broken.jpg: not a readable image file" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()  # every photo is checked before anything is written


def test_left_flag_and_json_sides(tmp_path):
  for name in ("p.png", "q.png"):
    Image.new("RGB", (20, 10)).save(tmp_path / name)
  (tmp_path / "sides.json").write_text(json.dumps({"q.png": {"left": False}}))
  specs = photo.photo_specs([tmp_path], boxes_json=tmp_path / "sides.json", left=True)
  assert [(s.name, s.left, s.box) for s in specs] == [("p", True, None), ("q", False, None)]
  specs = photo.photo_specs([tmp_path / "q.png"], box=[1, 2, 3, 4])
  np.testing.assert_array_equal(specs[0].box, [1, 2, 3, 4])
  assert not specs[0].left
  with pytest.raises(ValueError, match="either one box for all photos or a boxes JSON"):
    photo.photo_specs([tmp_path], box=[1, 2, 3, 4], boxes_json=tmp_path / "sides.json")


def test_weak_perspective_overlay_lands_on_the_joints(topology):
  model = hand.synthhand_model()
  verts = np.asarray(model.v_template, np.float64)
  joints = np.asarray(topology.joint_regressor, np.float64) @ verts
  scale = 700.0
  offset = np.array([100.0, 80.0]) - scale * joints[:, :2].mean(axis=0)
  joints_photo = scale * joints[:, :2] + offset
  fit_scale, fit_offset = photo.weak_perspective_fit(joints, joints_photo)
  np.testing.assert_allclose([fit_scale, *fit_offset], [scale, *offset], rtol=1e-9)

  background = np.full((160, 200, 3), 30, np.uint8)
  faces = np.asarray(topology.faces[0])
  overlay, _, _ = photo.render_overlay(background, verts, faces, joints, joints_photo)
  changed = np.any(overlay != background, axis=2)
  pixels = np.round(scale * verts[:, :2] + offset).astype(int)
  assert (pixels >= 1).all() and (pixels < [199, 159]).all()
  # Every vertex lands on the drawn mesh, or within a pixel of it on the silhouette.
  near = np.zeros(len(pixels), bool)
  for du in (-1, 0, 1):
    for dv in (-1, 0, 1):
      near |= changed[pixels[:, 1] + dv, pixels[:, 0] + du]
  assert near.all()
  assert changed[pixels[:, 1], pixels[:, 0]].mean() > 0.8
  assert changed.mean() < 0.3 and not changed[:, :5].any()  # and not the rest of the photo

  # Joints that contradict the 3D pose (u mirrored): no weak-perspective view, no mesh drawn.
  mirrored = joints_photo * [-1.0, 1.0] + [200.0, 0.0]
  overlay, fit_scale, _ = photo.render_overlay(background, verts, faces, joints, mirrored)
  assert fit_scale < 0
  assert np.any(overlay != background, axis=2)[pixels[:, 1], pixels[:, 0]].mean() < 0.5


def test_photos_cli_writes_meshes_overlays_and_predictions(export_run, topology):
  out, pred = export_run
  assert set(OUTPUT_KEYS) <= set(pred.files)
  assert list(pred["names"]) == ["a", "b", "a_flipped", "b_flipped"]
  assert list(pred["left"]) == [False, False, True, True]
  assert pred["verts_rotated"].shape == (4, 778, 3)
  faces = np.asarray(topology.faces[0])
  for i, (stem, size) in enumerate((("a", (170, 120)), ("b", (110, 150)))):
    expected = pred["verts_rotated"][i] - pred["joints_rotated"][i, 0]  # root-relative
    for mesh in (read_obj(out / f"{stem}.obj"), read_ply(out / f"{stem}.ply")):
      assert mesh.vertices.shape == (778, 3)
      np.testing.assert_allclose(mesh.vertices, expected, rtol=1e-6, atol=1e-9)
      np.testing.assert_array_equal(mesh.faces, faces)
    for name in (stem, f"{stem}_flipped"):
      with Image.open(out / f"{name}_overlay.png") as overlay:
        assert overlay.size == size
    assert tuple(pred["photo_sizes"][i]) == size

  # Photo a used its JSON box (official 1.5x square), photo b the whole image.
  x0, y0, x1, y1 = BOX_A
  side = 1.5 * max(x1 - x0, y1 - y0) - 1.0
  np.testing.assert_allclose(pred["crop_boxes"][0], [(x0 + x1 - 1 - side) / 2,
                                                     (y0 + y1 - 1 - side) / 2, side, side])
  np.testing.assert_allclose(pred["crop_boxes"][1], [(109 - 149) / 2, 0, 149, 149])
  for i in range(2):  # photo pixels = box corner + crop pixels scaled by box side / S
    x, y, w, _ = pred["crop_boxes"][i]
    np.testing.assert_allclose(pred["joints_photo"][i],
                               [x, y] + pred["joints_2d"][i] * S * (w / S), rtol=1e-6)


def test_left_hand_predictions_mirror_those_of_the_unflipped_photo(export_run):
  out, pred = export_run
  right, left = slice(0, 2), slice(2, 4)  # a, b and their flips, marked left
  for key in ("verts_canonical", "joints_canonical", "verts_rotated", "joints_rotated"):
    np.testing.assert_allclose(pred[key][left], pred[key][right] * M, atol=1e-6, err_msg=key)
  np.testing.assert_allclose(pred["rotation"][left],
                             pred["rotation"][right] * M[:, None] * M, atol=1e-6)
  np.testing.assert_allclose(pred["joints_2d"][left],
                             pred["joints_2d"][right] * [-1, 1] + [1, 0], atol=1e-6)
  expected = pred["joints_photo"][right].copy()
  expected[..., 0] = pred["photo_sizes"][right, :1] - 1.0 - expected[..., 0]  # u -> W - 1 - u
  np.testing.assert_allclose(pred["joints_photo"][left], expected, atol=1e-5)
  # The 6D output still maps to the mirrored matrix (rows convention).
  np.testing.assert_allclose(geometry.rot6d_to_matrix(pred["rotation_6d"][left]),
                             pred["rotation"][left], atol=1e-5)

  for stem in ("a", "b"):
    right_mesh, left_mesh = read_obj(out / f"{stem}.obj"), read_obj(out / f"{stem}_flipped.obj")
    np.testing.assert_allclose(left_mesh.vertices, right_mesh.vertices * M, atol=1e-6)
    np.testing.assert_array_equal(left_mesh.faces, right_mesh.faces[:, ::-1])
    # Reversed winding keeps the normals the mirror images of the right hand's (outward).
    np.testing.assert_allclose(face_normals(left_mesh.vertices, left_mesh.faces),
                               face_normals(right_mesh.vertices, right_mesh.faces) * M,
                               atol=1e-9)


def test_training_run_dir_predicts_from_its_best_checkpoint(run_dir, export_run, photos,
                                                            make_variables, tmp_path, capsys):
  ours = _predict_cli(run_dir, photos, tmp_path)
  assert "step 10 (best by 'pa_vpe'" in capsys.readouterr().out
  _, export = export_run
  for key in OUTPUT_KEYS:  # step 10 holds the export's weights
    np.testing.assert_allclose(ours[key], export[key], atol=1e-6, err_msg=key)

  loaded, description = predict.load_model(run_dir / "checkpoints", step=20)
  assert "step 20 (--step)" in description
  expected = make_variables(1)
  np.testing.assert_array_equal(loaded.variables["params"]["decoder3d"]["head"]["kernel"],
                                expected["params"]["decoder3d"]["head"]["kernel"])


def test_checkpoint_errors_are_clear(run_dir, export_ckpt, tmp_path):
  with pytest.raises(ValueError, match=r"has checkpoints at steps \[10, 20\]"):
    predict.load_model(run_dir, step=30)
  with pytest.raises(ValueError, match="--step 5: .* is an export directory"):
    predict.load_model(export_ckpt, step=5)
  with pytest.raises(FileNotFoundError, match="neither an export directory"):
    predict.load_model(tmp_path)

  empty = tmp_path / "empty_run"
  empty.mkdir()
  shutil.copy(run_dir / "config.json", empty / "config.json")
  (empty / "checkpoints").mkdir()
  with pytest.raises(FileNotFoundError, match="empty_run: no checkpoint in"):
    predict.load_model(empty)

  mvr = tmp_path / "mvr_run"
  mvr.mkdir()
  (mvr / "config.json").write_text(config_lib.base_config("mvr", variant="tiny").to_json())
  with pytest.raises(ValueError, match="stage 'mvr' run. Only SVR runs"):
    predict.load_model(mvr)


def test_checkpoint_that_does_not_fit_the_model_is_named():
  abstract = {"params": {"head": {"kernel": np.zeros((4, 3)), "bias": np.zeros(3)}},
              "batch_stats": {}}
  restored = {"params": {"head": {"kernel": np.zeros((4, 2))}, "extra": np.zeros(1)},
              "batch_stats": {}}
  with pytest.raises(ValueError) as info:
    checkpointing.check_tree_fits(restored, abstract, "run/checkpoints/7")
  message = str(info.value)
  assert message.startswith("run/checkpoints/7: the checkpoint does not fit this model")
  assert "missing 1: params/head/bias" in message
  assert "unexpected 1: params/extra" in message
  assert "other shapes 1: params/head/kernel [4, 2] (expected [4, 3])" in message
  assert "\n" not in message
