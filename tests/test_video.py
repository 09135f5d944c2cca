"""`python -m simajax.predict --video / --webcam`: frame sources, the hand detector, outputs.

The videos are SynthHand renders (``simajax.render``), encoded here with PyAV. Every model run
uses batch 4, the shape ``test_predict_photos`` compiles, so the session compiles it once.
"""

from __future__ import annotations

import fractions
import importlib.util
import json
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from parity_recipe import he_variables
from simajax import export, hand, hand_detector, model_setup, photo, predict, video
from simajax.models import OUTPUT_KEYS, build_svr, svr_config
from simajax.render import Mesh, read_obj, render_scene
from simajax.training import export_dir

WIDTH, HEIGHT = 192, 128
FPS = fractions.Fraction(25, 2)
# Per frame: the hands, (x offset in metres, left). Frame 3 shows no hand; frame 2 shows two.
SCENES = [[(0.0, False)], [(-0.04, False)], [(-0.1, False), (0.1, True)], [], [(0.04, True)]]

HAS_AV = importlib.util.find_spec("av") is not None
HAS_DETECTOR = HAS_AV and importlib.util.find_spec("mediapipe") is not None
needs_av = pytest.mark.skipif(not HAS_AV, reason="the [demo] extra (PyAV) is not installed")
needs_detector = pytest.mark.skipif(not HAS_DETECTOR,
                                    reason="the [demo] extra (PyAV, mediapipe) is not installed")


def _render(scene, seed):
  """A frame with SynthHands palm-on, fingers up (left ones mirrored), and each hand's
  silhouette box (x0, y0, x1, y1)."""
  model = hand.synthhand_model()
  verts = np.asarray(model.v_template, np.float64)
  verts = verts - verts.mean(axis=0)
  # MANO (fingers -x, back of the hand +y, thumb +z) -> camera (x right, y down, z forward).
  upright = np.stack([verts[:, 2], verts[:, 0], verts[:, 1]], axis=1)
  K = np.array([[220.0, 0.0, WIDTH / 2], [0.0, 220.0, HEIGHT / 2], [0.0, 0.0, 1.0]])
  rng = np.random.default_rng(seed)
  background = np.clip(np.linspace(60, 160, WIDTH)[None, :, None] + np.zeros((HEIGHT, 1, 3))
                       + rng.normal(0, 8, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
  if not scene:
    return background, []
  meshes = []
  for label, (shift, left) in enumerate(scene):
    faces = np.asarray(model.faces)
    vertices = hand.mirror_points(upright) if left else upright
    meshes.append(Mesh(vertices + [shift, 0.0, 0.45], hand.mirror_faces(faces) if left else faces,
                       color=(0.87, 0.67, 0.55), label=label))
  result = render_scene(meshes, K, None, HEIGHT, WIDTH, background=background)
  boxes = []
  for label in range(len(scene)):
    ys, xs = np.nonzero(result.mask(label))
    boxes.append(np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64))
  return result.rgb, boxes


@pytest.fixture(scope="module")
def rendered():
  return [_render(scene, seed) for seed, scene in enumerate(SCENES)]


@pytest.fixture(scope="module")
def video_path(rendered, tmp_path_factory):
  """The frames as an H.264 .mp4 at 12.5 frames/s, encoded with PyAV directly."""
  if not HAS_AV:
    pytest.skip("the [demo] extra (PyAV) is not installed")
  import av  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp("video") / "hands.mp4"
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"crf": "0", "bf": "0"}
    for i, (image, _) in enumerate(rendered):
      frame = av.VideoFrame.from_ndarray(image, format="rgb24")
      frame.pts = i
      container.mux(stream.encode(frame))
    container.mux(stream.encode())
  return path


@pytest.fixture(scope="module")
def export_ckpt(tmp_path_factory):
  topology = model_setup.load_topology(ml_collections.ConfigDict({"topology": None,
                                                                  "hand_model": None}))
  abstract = export_dir.abstract_variables(build_svr(svr_config("tiny"), topology))
  path = tmp_path_factory.mktemp("ckpt") / "ckpt"
  export_dir.save_checkpoint(path, he_variables(abstract, topology, seed=0),
                                svr_config("tiny"), topology)
  return path


def _iou(a, b):
  inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
  return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@needs_av
def test_video_source_keeps_frame_count_and_timestamps(video_path, rendered):
  source = video.VideoFileSource(video_path)
  assert source.num_frames == len(SCENES) and source.fps == 12.5
  frames = list(source)
  source.close()
  assert [f.index for f in frames] == list(range(len(SCENES)))
  np.testing.assert_allclose([f.time for f in frames], np.arange(len(SCENES)) / 12.5, atol=1e-9)
  for i, frame in enumerate(frames):
    assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
    # Lossy chroma (4:2:0): each decoded frame is nearest to its own render, in order.
    errors = [np.abs(frame.image.astype(float) - image).mean() for image, _ in rendered]
    assert np.argmin(errors) == i and errors[i] < 6


@needs_detector
def test_detector_finds_the_rendered_hands_and_their_sides(rendered):
  with hand_detector.MediaPipeHandDetector() as detector:
    for (image, boxes), scene in zip(rendered, SCENES):
      found = detector.detect(image)  # left to right, as the scene lists its hands
      assert [d.left for d in found] == [left for _, left in scene]
      for detection, box in zip(found, boxes):
        assert _iou(detection.box, box) >= 0.5, (detection.box, box)
        assert detection.keypoints.shape == (21, 2)


def _read_predictions(out_dir):
  with np.load(out_dir / video.PREDICTIONS_FILE, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


@needs_detector
def test_video_outputs_agree_with_predict_on_the_same_crops(video_path, export_ckpt, tmp_path):
  out = tmp_path / "video"
  predict.main(["--checkpoint", str(export_ckpt), "--video", str(video_path), "--out-dir",
                str(out), "--batch-size", "4", "--meshes", "--no-progress"])
  pred = _read_predictions(out)
  assert list(pred["frame_num_hands"]) == [len(s) for s in SCENES]  # frame 3: recorded, no hand
  assert list(pred["hand_frame"]) == [0, 1, 2, 2, 4]
  assert list(pred["left"]) == [left for scene in SCENES for _, left in scene]
  np.testing.assert_allclose(pred["frame_time"], np.arange(len(SCENES)) / 12.5, atol=1e-9)
  overlay = video.VideoFileSource(out / video.OVERLAY_FILE)  # same frames, same timestamps
  np.testing.assert_allclose([f.time for f in overlay], pred["frame_time"], atol=1e-6)
  assert read_obj(out / "meshes" / "frame000002_hand1.obj").vertices.shape == (778, 3)

  # The same hands through `predict --images`: each frame (decoded) as a lossless PNG, with the
  # detected box and side in the boxes file.
  source = video.VideoFileSource(video_path)
  frames = list(source)
  names, boxes = [], {}
  for i, frame_index in enumerate(pred["hand_frame"]):
    name = f"hand{i}.png"
    Image.fromarray(frames[frame_index].image).save(tmp_path / name)
    names.append(str(tmp_path / name))
    boxes[name] = {"box": pred["box"][i].tolist(), "left": bool(pred["left"][i])}
  (tmp_path / "boxes.json").write_text(json.dumps(boxes))
  predict.main(["--checkpoint", str(export_ckpt), "--images", *names, "--boxes-json",
                str(tmp_path / "boxes.json"), "--out-dir", str(tmp_path / "photos"),
                "--no-overlay", "--batch-size", "4"])
  photos = np.load(tmp_path / "photos" / "predictions.npz")
  for key in OUTPUT_KEYS:
    np.testing.assert_allclose(pred[key], photos[key], rtol=1e-5, atol=1e-6, err_msg=key)
  np.testing.assert_allclose(pred["crop_box"], photos["crop_boxes"], atol=1e-9)
  np.testing.assert_allclose(pred["joints_frame"], photos["joints_photo"], atol=1e-3)
  root = photos["joints_rotated"][:, :1]
  np.testing.assert_allclose(pred["vertices"], photos["verts_rotated"] - root, atol=1e-6)
  np.testing.assert_allclose(pred["joints_3d"], photos["joints_rotated"] - root, atol=1e-6)
  np.testing.assert_allclose(pred["rotation"], photos["rotation"], atol=1e-6)


@needs_av
def test_a_fixed_box_needs_no_detector(video_path, export_ckpt, tmp_path):
  out = tmp_path / "box"
  predict.main(["--checkpoint", str(export_ckpt), "--video", str(video_path), "--out-dir",
                str(out), "--box", "70", "15", "135", "110", "--left", "--batch-size", "4",
                "--no-overlay", "--no-progress", "--max-frames", "4"])
  pred = _read_predictions(out)
  assert list(pred["frame_num_hands"]) == [1, 1, 1, 1] and pred["left"].all()
  np.testing.assert_array_equal(pred["box"], [[70, 15, 135, 110]] * 4)
  assert not (out / video.OVERLAY_FILE).exists()


class FakeCamera:
  """A webcam stand-in: no frame count, millisecond clock timestamps."""
  name = "fake camera"
  num_frames = None
  fps = None
  time_base = fractions.Fraction(1, 1000)

  def __init__(self, images, times_ms):
    self.images, self.times_ms, self.closed = images, times_ms, False

  def __iter__(self):
    for i, (image, ms) in enumerate(zip(self.images, self.times_ms)):
      yield video.Frame(i, image, ms / 1000.0, ms)

  def close(self):
    self.closed = True


class ScriptedDetector:
  """Detections given per frame index (several hands, none, left hands)."""

  def __init__(self, script):
    self.script, self.calls = script, 0

  def detect(self, image):
    del image
    self.calls += 1
    return self.script[self.calls - 1]


def test_camera_interface_with_a_fake_source(rendered, export_ckpt, tmp_path):
  image, (box,) = rendered[0]
  flipped = np.ascontiguousarray(image[:, ::-1])
  mirrored_box = hand.mirror_box(box, WIDTH)
  empty = rendered[3][0]
  det = hand_detector.Detection
  script = [[det(box, False), det(mirrored_box, False)], [], [det(box, False)],
            [det(mirrored_box, True)], [det(box, False)]]
  camera = FakeCamera([image, empty, image, flipped, image], [0, 40, 95, 130, 170])
  loaded, _ = predict.load_model(export_ckpt)
  results = video.predict_video(predict.Predictor(loaded, 4), camera, tmp_path, loaded.topology,
                                detector=ScriptedDetector(script), overlay=HAS_AV,
                                progress=False, max_frames=4, log=lambda _: None)
  assert camera.closed
  assert list(results["frame_num_hands"]) == [2, 0, 1, 1]  # frame 1 is kept, with no hand
  assert list(results["hand_frame"]) == [0, 0, 2, 3]
  np.testing.assert_allclose(results["frame_time"], [0.0, 0.04, 0.095, 0.13])
  assert list(results["left"]) == [False, False, False, True]
  # Frame 3 is frame 2 flipped, marked left: its hand is the mirror image of frame 2's.
  m = np.array([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(results["vertices"][3], results["vertices"][2] * m, atol=1e-6)
  np.testing.assert_allclose(results["rotation"][3], results["rotation"][2] * m[:, None] * m,
                             atol=1e-6)
  expected = results["joints_frame"][2].copy()
  expected[:, 0] = WIDTH - 1.0 - expected[:, 0]
  np.testing.assert_allclose(results["joints_frame"][3], expected, atol=1e-4)
  if HAS_AV:
    written = list(video.VideoFileSource(tmp_path / video.OVERLAY_FILE))
    np.testing.assert_allclose([f.time for f in written], results["frame_time"], atol=1e-6)


def test_one_euro_filter_is_a_low_pass_whose_cutoff_rises_with_speed():
  times = np.array([0.0, 0.03, 0.07, 0.1, 0.16, 0.2])
  signal = np.array([0.0, 1.0, 1.0, 3.0, 2.0, 2.0])
  plain = video.OneEuroFilter(min_cutoff=2.0, beta=0.0)
  got = [float(plain(np.array([[x]]), t)[0, 0]) for x, t in zip(signal, times)]
  expected = [signal[0]]  # beta 0: exponential smoothing, alpha = 1 / (1 + 1 / (2 pi fc dt))
  for i in range(1, len(signal)):
    alpha = 1.0 / (1.0 + 1.0 / (2 * np.pi * 2.0 * (times[i] - times[i - 1])))
    expected.append(expected[-1] + alpha * (signal[i] - expected[-1]))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  fast = video.OneEuroFilter(min_cutoff=2.0, beta=1.0)
  step = [float(fast(np.array([[x]]), t)[0, 0]) for x, t in zip(signal, times)]
  assert all(abs(s - x) < abs(g - x) for s, g, x in zip(step[1:], got[1:], signal[1:]))

  # Tracks follow each hand by side and position, whatever the order they are listed in.
  smoother = video.HandSmoother({"joints_frame": (1.0, 0.0)})
  right = {"left": False, "box": [0, 0, 10, 10], "joints_frame": np.zeros((21, 2))}
  left = {"left": True, "box": [50, 0, 60, 10], "joints_frame": np.full((21, 2), 100.0)}
  smoother(0.0, [right, left])
  moved = dict(left, joints_frame=np.full((21, 2), 110.0))
  out = smoother(0.1, [moved, dict(right)])
  assert 100.0 < out[0]["joints_frame"][0, 0] < 110.0 and out[1]["joints_frame"][0, 0] == 0.0


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00\x00\x18ftypmp42" + b"\x07" * 300, "not a readable video"),
    (None, "video file not found"),
])
def test_a_bad_video_is_a_one_line_error(content, message, export_ckpt, tmp_path, capsys):
  path = tmp_path / "in.mp4"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(SystemExit) as info:
    predict.main(["--checkpoint", str(export_ckpt), "--video", str(path), "--out-dir",
                  str(tmp_path / "out"), "--no-progress"])
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ")
  assert (message if HAS_AV else "pip install 'simajax[demo]'") in err
  if HAS_AV:
    assert str(path) in err
  assert not (tmp_path / "out").exists()


def test_missing_extras_are_named_in_one_line(monkeypatch, export_ckpt, tmp_path, capsys):
  for module in ("av", "mediapipe", "jax2onnx"):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
  for make, extra in [(lambda: video.VideoFileSource(tmp_path / "x.mp4"), "demo"),
                      (lambda: video.WebcamSource(0), "demo"),
                      (hand_detector.MediaPipeHandDetector, "demo"),
                      (lambda: export.export_onnx(None, tmp_path / "x.onnx"), "export")]:
    with pytest.raises(ImportError) as info:
      make()
    assert str(info.value).endswith(f"pip install 'simajax[{extra}]'")
    assert "\n" not in str(info.value)
  with pytest.raises(SystemExit):
    predict.main(["--checkpoint", str(export_ckpt), "--webcam", "0", "--out-dir",
                  str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert err == "error: --webcam needs the optional package 'av': pip install 'simajax[demo]'\n"


def test_webcam_devices_by_platform(monkeypatch):
  monkeypatch.setattr(video.platform, "system", lambda: "Linux")
  assert video.webcam_input(0) == ("v4l2", "/dev/video0")
  assert video.webcam_input("/dev/video4") == ("v4l2", "/dev/video4")
  monkeypatch.setattr(video.platform, "system", lambda: "Darwin")
  assert video.webcam_input(1) == ("avfoundation", "1")
  monkeypatch.setattr(video.platform, "system", lambda: "Windows")
  assert video.webcam_input("Integrated Camera") == ("dshow", "video=Integrated Camera")
  with pytest.raises(ValueError, match="on Windows give the camera's name"):
    video.webcam_input(0)
