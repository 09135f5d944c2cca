"""Draws the 8 views of a few synthetic frames (with skeletons and hand-mask outlines) as a PNG.

  python scripts/show_synthetic.py --data_dir /tmp/tfds --config tiny --out grid.png

Each frame is one row of its 8 stored views: the 2D joints as a coloured skeleton, the visible
hand mask's outline in white and vis_ratio in the corner. With ``--crops`` a second row per frame
shows the training pipeline's augmented 128 px crops of the same views, with their 2D targets and
the rotated GT mesh projected through the crop camera (small dots), so the labels can be checked
against the pixels. Builds the config first when it is missing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from data_pipelines import build, schema
from simajax import input_pipeline
from simajax.preprocessing import augment, sample
from simajax.render import draw


def _outline(mask: np.ndarray) -> np.ndarray:
  """[H, W] bool boundary pixels of a mask."""
  inner = mask.copy()
  inner[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2]
                       & mask[1:-1, 2:])
  return mask & ~inner


def _label(image: np.ndarray, text: str) -> np.ndarray:
  canvas = Image.fromarray(image)
  ImageDraw.Draw(canvas).text((2, 1), text, fill=(255, 255, 0))
  return np.asarray(canvas)


def view_tile(record, view: int) -> np.ndarray:
  """One stored view with its skeleton, mask outline and vis_ratio."""
  views = record["views"]
  image = schema.decode_image(views["image"][view])
  if views["hand_mask"][view]:
    mask = schema.decode_image(views["hand_mask"][view], channels=1) > 127
    image = image.copy()
    image[_outline(mask)] = 255
  image = draw.draw_keypoints(image, views["joints_img"][view], draw.HAND_PARENTS,
                              color=draw.HAND_COLORS, radius=1.5, line_width=1)
  return _label(image, f"{float(views['vis_ratio'][view]):.2f}")


def crop_tile(record, view: int, rng: np.random.Generator, size: int = 128) -> np.ndarray:
  """The augmented training crop of a view with its 2D targets and projected GT mesh."""
  item = sample.process_view(record, view, size, augment.draw(rng))
  image = np.round(item["image"] * 255).astype(np.uint8)
  uvw = item["verts_camera"] @ item["K_crop"].T
  verts_uv = uvw[:, :2] / uvw[:, 2:]
  canvas = Image.fromarray(image)
  pen = ImageDraw.Draw(canvas)
  for u, v in verts_uv[::3]:
    pen.point((float(u), float(v)), fill=(0, 255, 255))
  image = draw.draw_keypoints(np.asarray(canvas), item["joints_2d"] * size, draw.HAND_PARENTS,
                              color=draw.HAND_COLORS, radius=1.5, line_width=1)
  return image


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--config", default="tiny", help="tiny, small, default (or *_mano)")
  parser.add_argument("--split", default="train")
  parser.add_argument("--frames", type=int, default=4)
  parser.add_argument("--first", type=int, default=0, help="index of the first frame shown")
  parser.add_argument("--crops", action="store_true", help="add a row of augmented crops")
  parser.add_argument("--mano", default=None, help="MANO pickle for *_mano configs")
  parser.add_argument("--out", default="grid.png")
  args = parser.parse_args(argv)

  dataset = f"synthetic_hands/{args.config}"
  build.ensure_built(dataset, args.data_dir, args.mano)
  path = input_pipeline.dataset_dir(dataset, args.data_dir)
  source = tfds.builder_from_directory(path).as_data_source(args.split)
  rng = np.random.default_rng(0)
  tiles = []
  for index in range(args.first, min(args.first + args.frames, len(source))):
    record = source[index]
    tiles += [view_tile(record, v) for v in range(schema.NUM_VIEWS)]
    if args.crops:
      tiles += [crop_tile(record, v, rng) for v in range(schema.NUM_VIEWS)]
  draw.save_image(args.out, draw.image_grid(tiles, schema.NUM_VIEWS))
  print(f"wrote {args.out} ({len(tiles)} tiles from {path}, split {args.split})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
