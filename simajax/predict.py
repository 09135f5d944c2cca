"""SVR inference: on preprocessed hand crops, or on a researcher's own photos.

CLI:
  python -m simajax.predict --checkpoint CKPT --images-npz IN.npz --out OUT.npz
      [--step N] [--config CONFIG] [--batch-size N]
  python -m simajax.predict --checkpoint CKPT --images PHOTO_OR_DIR [...] --out-dir DIR
      [--box X0 Y0 X1 Y1 | --boxes-json BOXES.json] [--box-expansion 1.5] [--left]
      [--no-overlay] [--step N] [--config CONFIG] [--batch-size N]
  python -m simajax.predict --checkpoint CKPT (--video IN.mp4 | --webcam 0) --out-dir DIR
      [--box X0 Y0 X1 Y1 [--left]] [--max-hands 2] [--smooth] [--meshes] [--no-overlay]
      [--max-frames N] [--no-progress] [--box-expansion 1.5] [--batch-size N] [...]

CKPT is either an export directory written by ``simajax.convert`` (``variables/``,
``model_config.json``, ``topology.npz``) or a training run directory (a trainer ``--workdir``:
``config.json``, ``topology.npz``, ``checkpoints/``), whose checkpoint is the best by the run's
``checkpoint.best_metric``, else the latest, or ``--step N``. Only SVR runs (stage 'svr', the
SiMA student or the plain baseline) predict from single images; the MVR teacher needs the 8
calibrated views of its dataset and is scored with ``python -m simajax.evaluate --checkpoint``.

IN.npz holds ``images`` [B, S, S, 3] float32 RGB in [0, 1] (S = the model's input size, 128:
hand crops as the official pre-processing makes them, no mean/std normalisation). OUT.npz holds
the model outputs (``simajax.models.OUTPUT_KEYS``, official meanings and units), named as the
training targets: ``verts_canonical`` [B, 778, 3] and ``joints_canonical`` [B, 21, 3] (no global
rotation, hand-model frame, metres), ``verts_rotated`` [B, 778, 3] and ``joints_rotated``
[B, 21, 3] (the same rotated about the wrist by the predicted root rotation: camera-oriented,
not camera-positioned), ``joints_2d`` [B, 21, 2] in [0, 1] crop units, ``rotation_6d`` [B, 6]
and its matrix ``rotation`` [B, 3, 3] (rows convention).

Photos (JPEG/PNG files, or directories of them) are cropped as the official test-time
pre-processing does (``simajax.photo``): a box ``[x0, y0, x1, y1]`` (``--box`` for all photos, or
``--boxes-json`` {file name: box, or {"box": box, "left": true}}) is expanded 1.5x about its centre
(``--box-expansion``; 1 keeps it) and made square; without a box the whole image, made square
about its centre and zero-padded, is the crop. ``--left`` (or ``"left": true``) flips a left-hand
photo before cropping and mirrors the predictions back, so every output is of the photo's own
hand. DIR receives, per photo ``<name>`` (its file stem):

  <name>.obj, <name>.ply   the rotated mesh ``verts_rotated``, root-relative (wrist joint at the
                           origin), metres, camera orientation (x right, y down, z away from the
                           camera); faces of the topology's level 0, wound outward.
  <name>_overlay.png       the photo with the mesh (weak-perspective fit of the 3D joints to the
                           2D joints, see ``simajax.photo``), the 2D skeleton and the crop box.
  predictions.npz          for all photos in order: OUTPUT_KEYS (verts_canonical,
                           joints_canonical, verts_rotated, joints_rotated, joints_2d,
                           rotation_6d, rotation; as predicted, mirrored for left hands;
                           joints_2d in units of the crop as the photo shows it), plus
                           joints_photo [B, 21, 2] (photo pixels), crop_boxes [B, 4] (x, y, w, h
                           square crop box, photo pixels), crop_affines [B, 2, 3] (photo pixels ->
                           crop pixels, joints_2d * S), weak_perspective [B, 3] (s in pixels per
                           metre, t [2] pixels; NaN or s <= 0: no fit, no mesh drawn), photo_sizes
                           [B, 2] (width, height), left [B], names [B], files [B].

Videos and cameras (optional extra ``[demo]``: ``pip install 'simajax[demo]'``) are read frame by
frame; without ``--box`` the MediaPipe hand landmarker finds every hand (up to ``--max-hands``)
and its side, a left hand is flipped into the model and mirrored back, and the crops of several
frames share each model batch. DIR receives overlay.mp4, predictions.npz (per frame and per hand:
box, side, 2D joints in frame pixels, root-relative 3D joints and vertices, rotation; frames
without a hand are kept, with zero hands) and, with ``--meshes``, meshes/; ``--smooth`` applies a
One-Euro filter over time. Layout in ``simajax.video``. ``--webcam`` runs until Ctrl-C or
``--max-frames``.

The library entry points are ``Predictor``, ``load_model``, ``predict_photos`` and
``simajax.video.predict_video``.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np

from simajax import cli, photo, runtime
from simajax.cli import UserError
from simajax.convert import resolve_model_config
from simajax.mesh import MeshTopology
from simajax.models import OUTPUT_KEYS
from simajax.render import draw
from simajax.training import export_dir, run_dir


def validate_images(images: np.ndarray, input_size: int, source: str = "images") -> None:
  """Checks a batch of crops: [B, S, S, 3], float32, finite, within [0, 1].

  Raises:
    UserError: naming ``source`` and what was expected.
  """
  expected = f"[B, {input_size}, {input_size}, 3]"
  if images.ndim != 4 or images.shape[1:] != (input_size, input_size, 3) or not images.shape[0]:
    raise UserError(f"{source}: expected shape {expected} (NHWC RGB crops), got "
                     f"{list(images.shape)}")
  if images.dtype != np.float32:
    raise UserError(f"{source}: expected dtype float32 (RGB / 255), got {images.dtype}")
  if not np.all(np.isfinite(images)):
    raise UserError(f"{source}: contains NaN or infinite values")
  lo, hi = float(images.min()), float(images.max())
  if lo < 0.0 or hi > 1.0:
    raise UserError(f"{source}: values must lie in [0, 1] (RGB / 255, no mean/std "
                     f"normalisation), got range [{lo:.4g}, {hi:.4g}]")


class Predictor:
  """A restored SVR in eval mode, run in fixed-size batches (one compilation)."""

  def __init__(self, checkpoint: export_dir.LoadedModel, batch_size: int = 32):
    if batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.model = checkpoint.model
    self.variables = checkpoint.variables
    self.batch_size = batch_size
    self._apply = jax.jit(lambda v, x: self.model.apply(v, x, train=False)[0])

  @classmethod
  def from_checkpoint(cls, ckpt_dir, batch_size: int = 32, model_config=None) -> "Predictor":
    """Loads ``ckpt_dir`` (see ``simajax.training.export_dir``)."""
    return cls(export_dir.load_checkpoint(ckpt_dir, model_config), batch_size)

  def __call__(self, images: np.ndarray, source: str = "images") -> dict[str, np.ndarray]:
    """Runs the model on [B, S, S, 3] crops; returns OUTPUT_KEYS -> [B, ...] numpy arrays.

    Raises:
      UserError: for invalid images, naming ``source``.
    """
    validate_images(images, self.model.input_size, source)
    num = images.shape[0]
    chunks = []
    for start in range(0, num, self.batch_size):
      batch = images[start:start + self.batch_size]
      valid = batch.shape[0]
      if valid < self.batch_size:  # pad the last batch so every call has the compiled shape
        pad = np.zeros((self.batch_size - valid,) + batch.shape[1:], batch.dtype)
        batch = np.concatenate([batch, pad])
      out = jax.device_get(self._apply(self.variables, batch))
      chunks.append({k: v[:valid] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in OUTPUT_KEYS}


def read_images(path: str | pathlib.Path) -> np.ndarray:
  """The ``images`` array of an .npz file.

  Raises:
    UserError / FileNotFoundError: naming the file and what was expected.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"images file not found: {path}")
  with cli.open_npz(path, "images [B, S, S, 3] float32 in [0, 1]") as data:
    if "images" not in data.files:
      raise UserError(f"{path}: no 'images' array (found {sorted(data.files)}); expected "
                      f"images [B, S, S, 3] float32 in [0, 1]")
    try:
      return data["images"]
    except ValueError as e:  # an object array, which would need pickle
      raise UserError(f"{path}: array 'images' could not be read ({e})") from None


def load_model(checkpoint: str | os.PathLike, step: Optional[int] = None,
               model_config: Optional[ml_collections.ConfigDict] = None
               ) -> tuple[export_dir.LoadedModel, str]:
  """Restores an SVR from an export directory or a training run directory.

  Args:
    checkpoint: an export dir (``simajax.convert``), a training run dir, or its ``checkpoints/``.
    step: a training run's checkpoint step; default the best by the run's
      ``checkpoint.best_metric``, else the latest. Not valid for export dirs.
    model_config: overrides the stored model config (the variables must still fit it).

  Returns:
    (the model, a one-line description of what was loaded).

  Raises:
    FileNotFoundError: when the directory is neither kind, or a run has no checkpoint.
    UserError: for an MVR run, an unknown or damaged step, or variables that do not fit the
      model.
  """
  path = pathlib.Path(checkpoint).absolute()
  if (path / export_dir.VARIABLES_DIR).is_dir() or (path / export_dir.CONFIG_FILE).exists():
    if step is not None:
      raise UserError(f"--step {step}: {path} is an export directory (one set of weights); "
                       "--step selects a checkpoint of a training run directory")
    return export_dir.load_checkpoint(path, model_config), f"export directory {path}"
  if not run_dir.is_run_dir(path):
    raise FileNotFoundError(
        f"{path} is neither an export directory ({export_dir.VARIABLES_DIR}/, "
        f"{export_dir.CONFIG_FILE}, {export_dir.TOPOLOGY_FILE}) nor a training run directory "
        f"({run_dir.CONFIG_FILE}, {run_dir.TOPOLOGY_FILE}, {run_dir.CHECKPOINT_DIR}/)")
  config = run_dir.read_config(path)
  stage = config.get("stage")
  if stage != "svr":
    where = run_dir.run_dir_of(path)
    raise UserError(
        f"{where}: a stage {stage!r} run. Only SVR runs (stage 'svr') predict from single "
        "images; the MVR teacher fuses the 8 calibrated views of its dataset. Predict with the "
        f"SVR run it taught, or score it with: python -m simajax.evaluate --checkpoint {where}")
  run = run_dir.load_run(path, step=step, config=config, model_config=model_config)
  best_metric = run.config.checkpoint.get("best_metric")
  how = "--step" if step is not None else (
      f"best by {best_metric!r}, else latest" if best_metric else "latest")
  variables = jax.device_put(run.variables, jax.devices()[0])
  return (export_dir.LoadedModel(run.model, variables, run.config.model, run.topology),
          f"training run {run.directory}, step {run.step} ({how})")


def predict_photos(predictor: Predictor, specs: Sequence[photo.PhotoSpec],
                   out_dir: str | os.PathLike, topology: MeshTopology, *,
                   expansion: float = photo.BBOX_EXPANSION, overlays: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
  """Predicts on photos and writes meshes, overlays and ``predictions.npz`` into ``out_dir``.

  Args:
    predictor: the restored SVR.
    specs: the photos (``photo.photo_specs``).
    out_dir: output directory (created).
    topology: the model's mesh topology (level-0 faces for the meshes).
    expansion: growth factor of user boxes about their centre (official 1.5).
    overlays: also render ``<name>_overlay.png``.
    log: receives one line per photo.

  Returns:
    The arrays written to ``predictions.npz`` (see the module docstring).

  Raises:
    UserError: for unreadable photos or bad boxes, naming the file; every photo is read and
      cropped before the model runs.
  """
  size = predictor.model.input_size
  crops = [photo.crop_photo(photo.read_photo(spec.path), size, spec.box, spec.left, expansion,
                            source=str(spec.path)) for spec in specs]
  raw = predictor(np.stack([c.image for c in crops]), "photo crops")
  left = np.array([spec.left for spec in specs])
  outputs = photo.outputs_for_sides(raw, left)
  joints_photo = np.stack([photo.joints_to_photo(outputs["joints_2d"][i], c, size)
                           for i, c in enumerate(crops)])
  faces = np.asarray(topology.faces[0], np.int64)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  fits = np.full((len(specs), 3), np.nan)
  for i, (spec, photo_crop) in enumerate(zip(specs, crops)):
    # A mirrored mesh keeps outward normals only with its triangles' winding reversed.
    hand_faces = faces[:, ::-1] if spec.left else faces
    root = outputs["joints_rotated"][i, 0]
    vertices = outputs["verts_rotated"][i] - root
    photo.write_meshes(out_dir / spec.name, vertices, hand_faces)
    written = [f"{spec.name}.obj", f"{spec.name}.ply"]
    note = ""
    if overlays:
      image, scale, offset = photo.render_overlay(
          photo.read_photo(spec.path), vertices, hand_faces, outputs["joints_rotated"][i] - root,
          joints_photo[i], photo_crop.box)
      fits[i] = [scale, *offset]
      draw.save_image(out_dir / f"{spec.name}_overlay.png", image)
      written.append(f"{spec.name}_overlay.png")
      if not scale > 0:
        note = " (the 3D and 2D joints admit no weak-perspective fit: overlay without mesh)"
    box = "whole image" if spec.box is None else f"box {spec.box.tolist()}"
    log(f"{spec.path} ({box}{', left hand' if spec.left else ''}) -> "
        f"{', '.join(written)}{note}")
  results = dict(outputs)
  results.update(
      joints_photo=joints_photo,
      crop_boxes=np.stack([c.box for c in crops]),
      crop_affines=np.stack([c.affine for c in crops]),
      weak_perspective=fits,
      photo_sizes=np.array([[c.width, c.height] for c in crops], np.int64),
      left=left,
      names=np.array([spec.name for spec in specs]),
      files=np.array([str(spec.path) for spec in specs]))
  np.savez(out_dir / "predictions.npz", **results)
  return results


def _main(argv: list[str]) -> int:
  parser = cli.module_parser("simajax.predict", __doc__)
  parser.add_argument("--checkpoint", required=True,
                      help="export dir (simajax.convert) or training run dir")
  parser.add_argument("--step", type=int, help="checkpoint step of a training run dir")
  inputs = parser.add_mutually_exclusive_group(required=True)
  inputs.add_argument("--images-npz", help="npz with images [B, S, S, 3]")
  inputs.add_argument("--images", nargs="+", help="JPEG/PNG photos and/or directories of them")
  inputs.add_argument("--video", help="a video file (needs the [demo] extra)")
  inputs.add_argument("--webcam", help="a camera index (or device name) (needs the [demo] extra)")
  parser.add_argument("--out", help="output .npz (with --images-npz)")
  parser.add_argument("--out-dir", help="output directory (with --images, --video, --webcam)")
  boxes = parser.add_mutually_exclusive_group()
  boxes.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                     help="hand box in photo pixels, for every photo")
  boxes.add_argument("--boxes-json", help='JSON {file name: [x0, y0, x1, y1] or '
                                          '{"box": [...], "left": true}}')
  parser.add_argument("--box-expansion", type=float, default=photo.BBOX_EXPANSION,
                      help="growth of a box about its centre (official 1.5; 1 keeps the box)")
  parser.add_argument("--left", action="store_true",
                      help="the photos (or the --box hand of a video) show left hands")
  parser.add_argument("--no-overlay", action="store_true",
                      help="skip the overlay pictures (overlay.mp4 for a video)")
  parser.add_argument("--max-hands", type=int, default=2, help="video: hands per frame at most")
  parser.add_argument("--smooth", action="store_true",
                      help="video: One-Euro smoothing of joints and vertices over time")
  parser.add_argument("--meshes", action="store_true", help="video: also write per-frame meshes")
  parser.add_argument("--max-frames", type=int, help="video: stop after N frames")
  parser.add_argument("--no-progress", action="store_true", help="video: no progress bar")
  parser.add_argument("--config", help="override the checkpoint's model config (a variant "
                                       "name or a config file with get_config().model)")
  parser.add_argument("--batch-size", type=int,
                      help="model batch (default 32; 8 for a video, 1 for a webcam)")
  args = parser.parse_args(argv)
  runtime.configure_process()
  streaming = args.video is not None or args.webcam is not None
  if args.images_npz is not None and not args.out:
    parser.error("--images-npz needs --out")
  if (args.images is not None or streaming) and not args.out_dir:
    parser.error(f"{'--images' if args.images is not None else '--video/--webcam'} needs "
                 "--out-dir")
  photo_only = {"--out-dir": args.out_dir, "--box": args.box, "--boxes-json": args.boxes_json,
                "--left": args.left or None, "--no-overlay": args.no_overlay or None}
  if args.images_npz is not None and any(v is not None for v in photo_only.values()):
    parser.error(f"{[k for k, v in photo_only.items() if v is not None]} apply to --images only")
  video_only = {"--smooth": args.smooth, "--meshes": args.meshes,
                "--max-frames": args.max_frames is not None, "--no-progress": args.no_progress}
  if not streaming and any(video_only.values()):
    parser.error(f"{[k for k, v in video_only.items() if v]} apply to --video/--webcam only")
  if streaming and args.left and args.box is None:
    parser.error("--left goes with --box for a video; without a box the detector tells each "
                 "hand's side")
  if streaming and args.boxes_json:
    parser.error("--boxes-json names photos; give a video one --box, or let the detector find "
                 "the hands")
  if args.box_expansion <= 0:
    parser.error(f"--box-expansion must be positive, got {args.box_expansion}")
  for flag, value in (("--max-hands", args.max_hands), ("--max-frames", args.max_frames),
                      ("--batch-size", args.batch_size)):
    if value is not None and value < 1:
      parser.error(f"{flag} must be >= 1, got {value}")
  model_config = resolve_model_config(args.config) if args.config else None
  if streaming:
    _predict_stream(args, model_config)
    return 0
  batch_size = args.batch_size or 32
  if args.images is not None:
    specs = photo.photo_specs(args.images, box=args.box, boxes_json=args.boxes_json,
                              left=args.left)
    loaded, description = load_model(args.checkpoint, args.step, model_config)
    print(f"model: {description}")
    predictor = Predictor(loaded, min(batch_size, len(specs)))
    predict_photos(predictor, specs, args.out_dir, loaded.topology,
                   expansion=args.box_expansion, overlays=not args.no_overlay)
    print(f"wrote {len(specs)} predictions to {args.out_dir} (predictions.npz, meshes"
          f"{'' if args.no_overlay else ', overlays'})")
    return 0
  images = read_images(args.images_npz)
  loaded, description = load_model(args.checkpoint, args.step, model_config)
  predictor = Predictor(loaded, batch_size)
  outputs = predictor(images, f"{args.images_npz}: images")
  np.savez(args.out, **outputs)
  print(f"wrote {args.out}: {images.shape[0]} predictions ({', '.join(OUTPUT_KEYS)}) from "
        f"{description}")
  return 0


main = cli.entry_point(_main)


def _predict_stream(args, model_config) -> None:
  """``--video`` / ``--webcam``: the source and the detector are opened before the model loads,
  so a bad file or a missing extra fails fast."""
  from simajax import hand_detector, video  # pylint: disable=import-outside-toplevel
  box = None if args.box is None else photo.parse_box(args.box, "--box")
  source = (video.VideoFileSource(args.video) if args.video is not None
            else video.WebcamSource(args.webcam))
  try:
    detector = (hand_detector.FixedBox(box, args.left) if box is not None
                else hand_detector.MediaPipeHandDetector(max_hands=args.max_hands))
    loaded, description = load_model(args.checkpoint, args.step, model_config)
  except BaseException:
    source.close()
    raise
  print(f"model: {description}")
  batch_size = args.batch_size or (8 if args.video is not None else 1)
  try:
    video.predict_video(Predictor(loaded, batch_size), source, args.out_dir, loaded.topology,
                        detector=detector, expansion=args.box_expansion, smooth=args.smooth,
                        meshes=args.meshes, overlay=not args.no_overlay,
                        max_frames=args.max_frames, progress=not args.no_progress)
  finally:
    if hasattr(detector, "close"):
      detector.close()


if __name__ == "__main__":
  sys.exit(main())
