"""The SVR on videos and webcams: frame sources, hand detection, batched inference, outputs.

``predict_video`` reads frames from a ``FrameSource`` (``VideoFileSource`` for a file,
``WebcamSource`` for a camera, both through PyAV, optional extra ``[demo]``; anything with the
same interface works, e.g. a list of frames in a test), finds the hands of each frame with a
detector (``simajax.hand_detector``: the MediaPipe hand landmarker, or one fixed ``--box``), crops
every hand as ``simajax.photo`` crops a photo (a left hand is flipped into the right-hand model and
its predictions mirrored back), and runs the SVR on the crops in fixed-size batches (one
compilation; the last batch is padded). A frame without a hand is recorded with zero hands.

Outputs in ``out_dir``:

  overlay.mp4        the frames with each hand's mesh, 2D skeleton and crop box drawn (as
                     ``simajax.photo.render_overlay``), at the source's timestamps.
  predictions.npz    per frame: frame_index [F] (decoding order), frame_time [F] (seconds from
                     the source's start), frame_num_hands [F] (0: no hand found); per hand, in
                     frame order and left to right: hand_frame [N] (its frame's position in the
                     frame arrays), box [N, 4] (x0, y0, x1, y1, detector or user box, frame
                     pixels), left [N], handedness_score [N], crop_box [N, 4] (x, y, w, h),
                     joints_frame [N, 21, 2] (the 2D joints in frame pixels), joints_3d
                     [N, 21, 3] and vertices [N, 778, 3] (``joints_rotated`` and
                     ``verts_rotated`` made root-relative: wrist at the origin; metres, camera
                     orientation), weak_perspective [N, 3] (the overlay's fit, see
                     ``simajax.photo``), and the raw model outputs ``OUTPUT_KEYS`` [N, ...]
                     (``verts_canonical``, ``joints_canonical``, ``verts_rotated``,
                     ``joints_rotated``, ``joints_2d`` in crop units, ``rotation_6d`` and
                     ``rotation`` [N, 3, 3], the global rotation, rows convention; mirrored for
                     left hands, never smoothed). Also frame_size [2] (width, height) and source
                     (its name).
  meshes/            with ``meshes=True``: frame<index>_hand<k>.obj / .ply (root-relative
                     vertices; faces wound outward, reversed for left hands).

``smooth=True`` filters joints_frame, joints_3d and vertices of each hand over time with a One-Euro
filter (``OneEuroFilter``; hands are followed from frame to frame by side and box position,
``HandSmoother``), and draws the smoothed values.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import os
import pathlib
import platform
import time
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, Union

import numpy as np

from simajax import photo
from simajax.cli import UserError
from simajax.extras import require
from simajax.hand_detector import Detection, HandDetector
from simajax.mesh import MeshTopology
from simajax.models import OUTPUT_KEYS

PathLike = Union[str, os.PathLike]
OVERLAY_FILE = "overlay.mp4"
PREDICTIONS_FILE = "predictions.npz"
MESH_DIR = "meshes"
# Time base of sources without their own (a webcam read by the clock), and of written videos then.
CLOCK_TIME_BASE = fractions.Fraction(1, 1000)


@dataclasses.dataclass(frozen=True)
class Frame:
  """One decoded frame.

  Attributes:
    index: position in the source (0, 1, ...).
    image: uint8 [H, W, 3] RGB.
    time: seconds from the source's first frame.
    pts: the timestamp in units of the source's ``time_base``.
  """
  index: int
  image: np.ndarray
  time: float
  pts: int


class FrameSource(Protocol):
  """What ``predict_video`` reads: iterating gives ``Frame``s in order.

  Attributes:
    name: for messages and outputs.
    num_frames: the frame count when known (a file), else None (a camera).
    fps: the nominal frame rate, or None.
    time_base: the unit of ``Frame.pts`` (a Fraction of a second).
  """
  name: str
  num_frames: Optional[int]
  fps: Optional[float]
  time_base: fractions.Fraction

  def __iter__(self) -> Iterator[Frame]:
    ...

  def close(self) -> None:
    ...


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split())


class _PyAVSource:
  """Frames of the first video stream of an open PyAV container."""

  def __init__(self, container, name: str):
    self._container = container
    self.name = name
    if not container.streams.video:
      container.close()
      raise UserError(f"{name}: no video stream")
    self._stream = container.streams.video[0]
    self._stream.thread_type = "AUTO"
    self.num_frames = int(self._stream.frames) or None
    rate = self._stream.average_rate or self._stream.guessed_rate
    self.fps = float(rate) if rate else None
    self.time_base = fractions.Fraction(self._stream.time_base or CLOCK_TIME_BASE)

  def __iter__(self) -> Iterator[Frame]:
    av = require("av", "reading video")
    start = None
    index = 0
    clock_start = time.monotonic()
    try:
      for decoded in self._container.decode(self._stream):
        if decoded.pts is None:  # no container timestamps (some cameras): the clock's
          pts = round((time.monotonic() - clock_start) / self.time_base)
        else:
          pts = int(decoded.pts)
        start = pts if start is None else start
        yield Frame(index, decoded.to_ndarray(format="rgb24"),
                    float((pts - start) * self.time_base), pts - start)
        index += 1
    except av.error.FFmpegError as e:
      raise UserError(f"{self.name}: cannot decode frame {index} ({_one_line(e)})") from e

  def close(self) -> None:
    self._container.close()


class VideoFileSource(_PyAVSource):
  """The frames of a video file (any format FFmpeg reads), with their timestamps.

  Raises:
    ImportError: without the ``[demo]`` extra (one line).
    FileNotFoundError / ValueError: naming the file, when it is missing or not a video.
  """

  def __init__(self, path: PathLike):
    av = require("av", "--video")
    path = pathlib.Path(path)
    if not path.is_file():
      raise FileNotFoundError(f"video file not found: {path}")
    try:
      container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
      raise UserError(f"{path}: not a readable video ({_one_line(e)})") from e
    super().__init__(container, str(path))


def webcam_input(device: Union[int, str]) -> tuple[str, str]:
  """(FFmpeg input format, device name) of a camera index or name on this platform.

  Raises:
    ValueError: on a platform without a known capture format for an index.
  """
  system = platform.system()
  index = str(device)
  if system == "Linux":
    return "v4l2", (f"/dev/video{index}" if index.isdigit() else index)
  if system == "Darwin":
    return "avfoundation", index
  if system == "Windows":
    if index.isdigit():
      raise UserError(f"--webcam {device}: on Windows give the camera's name (as "
                       "'ffmpeg -list_devices true -f dshow -i dummy' lists it)")
    return "dshow", f"video={index}"
  raise UserError(f"--webcam: no known capture format for {system}")


class WebcamSource(_PyAVSource):
  """Frames of a camera (Linux v4l2, macOS avfoundation, Windows dshow), until stopped.

  Stop with Ctrl-C (``predict_video`` finishes the outputs) or ``max_frames``.

  Raises:
    ImportError: without the ``[demo]`` extra (one line). ValueError: naming the camera when it
    cannot be opened.
  """

  def __init__(self, device: Union[int, str] = 0):
    av = require("av", "--webcam")
    fmt, name = webcam_input(device)
    try:
      container = av.open(name, format=fmt)
    except av.error.FFmpegError as e:
      raise UserError(f"--webcam {device}: cannot open camera {name} ({fmt}: "
                       f"{_one_line(e)})") from e
    super().__init__(container, f"webcam {device}")
    self.num_frames = None  # a camera goes on


class VideoWriter:
  """Writes RGB frames as H.264 (.mp4) at given timestamps (PyAV).

  Args:
    path: the output file.
    width: frame width.
    height: frame height.
    time_base: unit of the timestamps passed to ``write``.
    fps: nominal frame rate (container metadata).
  """

  def __init__(self, path: PathLike, width: int, height: int,
               time_base: fractions.Fraction = CLOCK_TIME_BASE, fps: Optional[float] = None):
    av = require("av", "writing video")
    self._container = av.open(os.fspath(path), "w")
    rate = fractions.Fraction(fps).limit_denominator(1001) if fps else fractions.Fraction(30)
    self._stream = self._container.add_stream("libx264", rate=rate)
    self._stream.width, self._stream.height = width, height
    # 4:2:0 chroma needs even sizes; 4:4:4 takes any.
    self._stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    self._stream.time_base = time_base
    self._stream.codec_context.time_base = time_base
    self._stream.options = {"bf": "0", "crf": "18"}  # no B-frames: packets in pts order
    self._time_base = time_base
    self._av = av

  def write(self, image: np.ndarray, pts: int) -> None:
    """Encodes one uint8 [H, W, 3] RGB frame shown at ``pts`` (units of ``time_base``)."""
    frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = int(pts)
    frame.time_base = self._time_base
    for packet in self._stream.encode(frame):
      self._container.mux(packet)

  def close(self) -> None:
    """Flushes the encoder and closes the file."""
    for packet in self._stream.encode():
      self._container.mux(packet)
    self._container.close()


class OneEuroFilter:
  """The One-Euro filter (Casiez et al., CHI 2012) over arrays of points, one timestamp per call.

  A first-order low-pass whose cutoff rises with speed: cutoff = min_cutoff + beta * |dx/dt|,
  with the speed smoothed at ``d_cutoff``. Slow motion is smoothed hard (little jitter), fast
  motion lightly (little lag). The speed of each point is the norm over the last axis.

  Args:
    min_cutoff: Hz, the cutoff at rest.
    beta: Hz per unit of speed (units of x per second).
    d_cutoff: Hz, the cutoff of the speed estimate.
  """

  def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
    self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
    self._x = self._dx = self._t = None

  @staticmethod
  def _alpha(cutoff, dt):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)

  def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
    """The filtered value of ``x`` [..., D] at time ``t`` (seconds, increasing)."""
    x = np.asarray(x, np.float64)
    if self._x is None or t <= self._t:  # first sample (or a repeated time): taken as it is
      self._x, self._dx, self._t = x, np.zeros_like(x), t
      return x.copy()
    dt = t - self._t
    dx = (x - self._x) / dt
    self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
    speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)
    alpha = self._alpha(self.min_cutoff + self.beta * speed, dt)
    self._x = self._x + alpha * (x - self._x)
    self._t = t
    return self._x.copy()


# One-Euro settings per smoothed quantity: (min_cutoff Hz, beta in Hz per (hand size / s)).
# Speeds are measured in hand sizes per second (the 2D box side, or 0.2 m in 3D), so one setting
# fits every image size; moving one hand size per second raises the cutoff by 1.5 Hz.
SMOOTHING = {"joints_frame": (1.0, 1.5), "joints_3d": (1.0, 1.5), "vertices": (1.0, 1.5)}
HAND_SIZE_3D = 0.2  # metres, wrist to middle fingertip is ~0.18


class HandSmoother:
  """One-Euro smoothing of each hand followed across frames.

  A hand continues the track of the previous frame's hand of the same side whose box centre is
  nearest, if it is within one box side; otherwise it starts a new track (unsmoothed first
  value). Tracks not seen in a frame end.
  """

  def __init__(self, settings: Optional[dict[str, tuple[float, float]]] = None):
    self.settings = dict(SMOOTHING if settings is None else settings)
    self._tracks: list[dict[str, Any]] = []

  def __call__(self, t: float, hands: Sequence[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Smooths one frame's hands.

    Args:
      t: the frame time, seconds.
      hands: per hand, ``left``, ``box`` (x0, y0, x1, y1) and the arrays of ``self.settings``.

    Returns:
      Per hand, the smoothed arrays (same keys as ``settings``).
    """
    previous, self._tracks = self._tracks, []
    out = []
    for hand in hands:
      box = np.asarray(hand["box"], np.float64)
      centre, side = (box[:2] + box[2:]) / 2.0, float(max(box[2] - box[0], box[3] - box[1], 1.0))
      best, best_distance = None, side
      for track in previous:
        distance = float(np.linalg.norm(track["centre"] - centre))
        if track["left"] == hand["left"] and distance <= best_distance:
          best, best_distance = track, distance
      if best is None:
        best = {"left": hand["left"], "filters": {
            key: OneEuroFilter(cutoff, beta / (side if key == "joints_frame" else HAND_SIZE_3D))
            for key, (cutoff, beta) in self.settings.items()}}
      else:
        previous.remove(best)
      best["centre"] = centre
      self._tracks.append(best)
      out.append({key: f(hand[key], t) for key, f in best["filters"].items()})
    return out


def _progress(total: Optional[int], name: str, enabled: bool):
  """A progress bar with frames/s and (with a known total) ETA, on stderr."""
  if not enabled:
    return None
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top  (a dependency of the base install)
  return tqdm(total=total, unit="frame", desc=name, dynamic_ncols=True, smoothing=0.1)


def predict_video(predictor, source: FrameSource, out_dir: PathLike, topology: MeshTopology, *,
                  detector: HandDetector, expansion: float = photo.BBOX_EXPANSION,
                  smooth: bool = False, meshes: bool = False, overlay: bool = True,
                  max_frames: Optional[int] = None, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
  """Reconstructs every hand of every frame; writes the outputs of the module docstring.

  Args:
    predictor: a ``simajax.predict.Predictor``; its batch size is the model batch (crops of
      several frames share a batch; the last batch is padded).
    source: the frames (``VideoFileSource``, ``WebcamSource`` or any ``FrameSource``).
    out_dir: output directory (created).
    topology: the model's mesh topology (faces of the meshes and overlays).
    detector: boxes and sides per frame (``simajax.hand_detector``).
    expansion: growth of each box about its centre before the square crop (official 1.5).
    smooth: One-Euro smoothing of joints and vertices over time (``HandSmoother``).
    meshes: also write per-hand .obj / .ply files.
    overlay: write ``overlay.mp4``.
    max_frames: stop after this many frames.
    progress: show a progress bar.
    log: receives the summary line.

  Returns:
    The arrays written to ``predictions.npz``.

  Raises:
    ValueError: for an unreadable frame or a box outside a frame, naming the source and frame.
    The source is closed in any case.
  """
  size = predictor.model.input_size
  faces = np.asarray(topology.faces[0], np.int64)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  if meshes:
    (out_dir / MESH_DIR).mkdir(exist_ok=True)
  smoother = HandSmoother() if smooth else None
  total = source.num_frames if max_frames is None else min(max_frames, source.num_frames or
                                                           max_frames)
  bar = _progress(total, source.name, progress)
  writer = None
  frames: list[dict[str, Any]] = []
  hands: list[dict[str, Any]] = []
  pending: list[tuple[Frame, list[Detection], list[photo.PhotoCrop]]] = []

  def flush():
    nonlocal writer
    crops = [c for _, _, frame_crops in pending for c in frame_crops]
    if crops:
      raw = predictor(np.stack([c.image for c in crops]), f"{source.name}: hand crops")
      outputs = photo.outputs_for_sides(raw, np.array([c.left for c in crops]))
    k = 0
    for frame, detections, frame_crops in pending:
      frame_hands = []
      for detection, crop in zip(detections, frame_crops):
        out = {key: outputs[key][k] for key in OUTPUT_KEYS}
        k += 1
        root = out["joints_rotated"][0]
        frame_hands.append(dict(
            out, box=detection.box, left=detection.left, handedness_score=detection.score,
            crop_box=crop.box, joints_frame=photo.joints_to_photo(out["joints_2d"], crop, size),
            joints_3d=out["joints_rotated"] - root, vertices=out["verts_rotated"] - root,
            hand_frame=len(frames)))
      if smoother is not None:
        for hand, smoothed in zip(frame_hands, smoother(frame.time, frame_hands)):
          hand.update(smoothed)
      image = frame.image
      for i, hand in enumerate(frame_hands):
        hand_faces = faces[:, ::-1] if hand["left"] else faces
        if overlay:
          image, scale, offset = photo.render_overlay(
              image, hand["vertices"], hand_faces, hand["joints_3d"], hand["joints_frame"],
              hand["crop_box"])
          hand["weak_perspective"] = np.array([scale, *offset])
        else:
          hand["weak_perspective"] = np.full(3, np.nan)
        if meshes:
          photo.write_meshes(out_dir / MESH_DIR / f"frame{frame.index:06d}_hand{i}",
                             hand["vertices"], hand_faces)
      if overlay:
        if writer is None:
          writer = VideoWriter(out_dir / OVERLAY_FILE, image.shape[1], image.shape[0],
                               source.time_base, source.fps)
        writer.write(image, frame.pts)
      frames.append({"index": frame.index, "time": frame.time, "num_hands": len(frame_hands)})
      hands.extend(frame_hands)
      if bar is not None:
        bar.update(1)
    pending.clear()

  frame_size = None
  iterator = iter(source)
  try:
    while max_frames is None or len(frames) + len(pending) < max_frames:
      try:
        frame = next(iterator)
      except StopIteration:
        break
      except KeyboardInterrupt:  # a webcam is stopped with Ctrl-C: keep what was read
        break
      frame_size = frame_size or (frame.image.shape[1], frame.image.shape[0])
      detections = list(detector.detect(frame.image))
      crops = [photo.crop_photo(frame.image, size, d.box, d.left, expansion,
                                source=f"{source.name} frame {frame.index}") for d in detections]
      pending.append((frame, detections, crops))
      if (sum(len(c) for _, _, c in pending) >= predictor.batch_size
          or len(pending) >= predictor.batch_size):
        flush()
    flush()
  finally:
    if bar is not None:
      bar.close()
    if writer is not None:
      writer.close()
    source.close()
  if not frames:
    raise UserError(f"{source.name}: no frames")
  results = _collect(frames, hands, frame_size, source.name, topology.level_sizes[0])
  np.savez(out_dir / PREDICTIONS_FILE, **results)
  no_hand = int(np.sum(results["frame_num_hands"] == 0))
  log(f"{source.name}: {len(frames)} frames, {len(hands)} hands, {no_hand} frames without a "
      f"hand -> {out_dir}")
  return results


_HAND_FIELDS = ("hand_frame", "box", "left", "handedness_score", "crop_box", "joints_frame",
                "joints_3d", "vertices", "weak_perspective") + OUTPUT_KEYS


def _empty_shapes(num_vertices: int, num_joints: int = 21) -> dict[str, tuple[int, ...]]:
  """Trailing shapes of the per-hand arrays (for a video without any hand)."""
  v, j = (num_vertices, 3), (num_joints, 3)
  return {"hand_frame": (), "box": (4,), "left": (), "handedness_score": (), "crop_box": (4,),
          "joints_frame": (num_joints, 2), "joints_3d": j, "vertices": v,
          "weak_perspective": (3,), "verts_canonical": v, "joints_canonical": j,
          "verts_rotated": v, "joints_rotated": j, "joints_2d": (num_joints, 2),
          "rotation_6d": (6,), "rotation": (3, 3)}


def _collect(frames, hands, frame_size, name, num_vertices) -> dict[str, np.ndarray]:
  results = {"frame_index": np.array([f["index"] for f in frames], np.int64),
             "frame_time": np.array([f["time"] for f in frames], np.float64),
             "frame_num_hands": np.array([f["num_hands"] for f in frames], np.int64),
             "frame_size": np.array(frame_size, np.int64), "source": np.array(name)}
  if hands:
    for key in _HAND_FIELDS:
      results[key] = np.stack([np.asarray(h[key]) for h in hands])
  else:  # empty arrays of the right trailing shapes, so readers need no special case
    for key, shape in _empty_shapes(num_vertices).items():
      results[key] = np.zeros((0,) + shape, np.float32)
  results["hand_frame"] = results["hand_frame"].astype(np.int64)
  results["left"] = results["left"].astype(bool)
  return results
