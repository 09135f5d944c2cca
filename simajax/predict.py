"""SVR inference on preprocessed hand crops.

CLI:
  python -m simajax.predict --checkpoint CKPT_DIR --images-npz IN.npz --out OUT.npz
      [--config CONFIG] [--batch-size N]

IN.npz holds ``images`` [B, S, S, 3] float32 RGB in [0, 1] (S = the model's input size, 128:
hand crops as the official pre-processing makes them, no mean/std normalisation). OUT.npz holds
the model outputs (``simajax.models.OUTPUT_KEYS``, official meanings and units): canonical and
rotated vertices [B, 778, 3] and joints [B, 21, 3] in metres, 2D joints [B, 21, 2] in [0, 1]
crop units, the 6D rotation [B, 6] and its matrix [B, 3, 3] (rows convention).

The library entry point is ``Predictor``; other front ends (photos, mesh export) can build on it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import numpy as np

from simajax import checkpoint_io
from simajax.convert import resolve_model_config
from simajax.models import OUTPUT_KEYS


def validate_images(images: np.ndarray, input_size: int, source: str = "images") -> None:
  """Checks a batch of crops: [B, S, S, 3], float32, finite, within [0, 1].

  Raises:
    ValueError: naming ``source`` and what was expected.
  """
  expected = f"[B, {input_size}, {input_size}, 3]"
  if images.ndim != 4 or images.shape[1:] != (input_size, input_size, 3) or not images.shape[0]:
    raise ValueError(f"{source}: expected shape {expected} (NHWC RGB crops), got "
                     f"{list(images.shape)}")
  if images.dtype != np.float32:
    raise ValueError(f"{source}: expected dtype float32 (RGB / 255), got {images.dtype}")
  if not np.all(np.isfinite(images)):
    raise ValueError(f"{source}: contains NaN or infinite values")
  lo, hi = float(images.min()), float(images.max())
  if lo < 0.0 or hi > 1.0:
    raise ValueError(f"{source}: values must lie in [0, 1] (RGB / 255, no mean/std "
                     f"normalisation), got range [{lo:.4g}, {hi:.4g}]")


class Predictor:
  """A restored SVR in eval mode, run in fixed-size batches (one compilation)."""

  def __init__(self, checkpoint: checkpoint_io.LoadedModel, batch_size: int = 32):
    if batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.model = checkpoint.model
    self.variables = checkpoint.variables
    self.batch_size = batch_size
    self._apply = jax.jit(lambda v, x: self.model.apply(v, x, train=False)[0])

  @classmethod
  def from_checkpoint(cls, ckpt_dir, batch_size: int = 32, model_config=None) -> "Predictor":
    """Loads ``ckpt_dir`` (see ``simajax.checkpoint_io``)."""
    return cls(checkpoint_io.load_checkpoint(ckpt_dir, model_config), batch_size)

  def __call__(self, images: np.ndarray, source: str = "images") -> dict[str, np.ndarray]:
    """Runs the model on [B, S, S, 3] crops; returns OUTPUT_KEYS -> [B, ...] numpy arrays.

    Raises:
      ValueError: for invalid images, naming ``source``.
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
    ValueError / FileNotFoundError: naming the file and what was expected.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"images file not found: {path}")
  try:
    data = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable .npz file ({e})") from e
  with data:
    if "images" not in data.files:
      raise ValueError(f"{path}: no 'images' array (found {sorted(data.files)}); expected "
                       f"images [B, S, S, 3] float32 in [0, 1]")
    return data["images"]


def main(argv: list[str] | None = None) -> None:
  """CLI entry point (see the module docstring)."""
  parser = argparse.ArgumentParser(prog="python -m simajax.predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="checkpoint dir (simajax.convert)")
  parser.add_argument("--images-npz", required=True, help="npz with images [B, S, S, 3]")
  parser.add_argument("--out", required=True, help="output .npz")
  parser.add_argument("--config", help="override the checkpoint's model config (a variant "
                                       "name or a config file with get_config().model)")
  parser.add_argument("--batch-size", type=int, default=32)
  args = parser.parse_args(argv)
  try:
    model_config = resolve_model_config(args.config) if args.config else None
    images = read_images(args.images_npz)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.batch_size, model_config)
    outputs = predictor(images, f"{args.images_npz}: images")
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from e
  np.savez(args.out, **outputs)
  print(f"wrote {args.out}: {images.shape[0]} predictions ({', '.join(OUTPUT_KEYS)})")


if __name__ == "__main__":
  main()
