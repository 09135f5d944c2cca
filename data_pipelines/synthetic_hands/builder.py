"""TFDS builder of the built-in synthetic multi-view hand dataset (array_record, no TensorFlow).

Each example is one frame in ``data_pipelines.schema``: a randomly posed and shaped hand with
0-3 grasp-like occluders, seen mostly fingers-up by 8 calibrated upright cameras (``scene.py``).
Configs (train / validation / test frames, image side):

  tiny      16 / 4 / 4 frames at 96 px: tests, builds in seconds.
  small     1,000 / 100 / 100 frames at 128 px: the main job's default (~2 minutes on 2 cores).
  default   18,000 / 1,000 / 1,000 frames at 224 px (HanCo's size): experiments.
  *_mano    the same with the user's MANO model instead of SynthHand (pass ``mano_path``).

Build with ``python -m data_pipelines.build synthetic_hands/small --data_dir DIR``, or
``synthetic_hands/small_mano ... --mano MANO_RIGHT.pkl``. The config name alone says which hand
model made the data (a MANO path given to a SynthHand config is an error, not a silent switch), so
a dataset name always means one thing. Frames are deterministic functions of (config seed, split,
index): any worker count gives the same data.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import schema
from data_pipelines.synthetic_hands import scene
from simajax.hand import load_hand_model

_HAND_BATCH = 128  # frames posed per hand-model call
_MIN_FRAMES_FOR_WORKERS = 64  # below this, starting worker processes costs more than it saves


@dataclasses.dataclass(eq=False)
class SyntheticHandsConfig(tfds.core.BuilderConfig):
  """A dataset size and look.

  Attributes:
    frames: frames in the train, validation and test splits.
    image_size: side of the square images in pixels.
    hand_model: "synthhand" or "mano".
    seed: the dataset seed.
  """
  frames: tuple[int, int, int] = (16, 4, 4)
  image_size: int = 96
  hand_model: str = "synthhand"
  seed: int = 0


def _configs():
  sizes = {
      "tiny": ((16, 4, 4), 96, "Tests: builds in seconds."),
      "small": ((1000, 100, 100), 128, "The main job's default."),
      "default": ((18000, 1000, 1000), 224, "Experiments (HanCo-sized images)."),
  }
  configs = []
  for name, (frames, size, description) in sizes.items():
    for model in ("synthhand", "mano"):
      suffix = "" if model == "synthhand" else "_mano"
      configs.append(SyntheticHandsConfig(
          name=name + suffix, frames=frames, image_size=size, hand_model=model,
          description=f"{description} {sum(frames)} frames x 8 views, {size} px, {model}."))
  return configs


class SyntheticHands(tfds.core.GeneratorBasedBuilder):
  """Synthetic 8-view hand frames with occluders, in the shared simajax schema."""

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {
      "1.0.0": "First release.",
      "1.1.0": "Upright hands and cameras by default (scene.SceneConfig.orientation).",
      "1.2.0": "A skin albedo map: lighter palm, darker back, nails (scene.skin_regions); "
               "labels unchanged.",
  }
  BUILDER_CONFIGS = _configs()

  def __init__(self, *, mano_path: Optional[str] = None, num_workers: Optional[int] = None,
               **kwargs):
    """Creates the builder.

    Args:
      mano_path: a MANO pickle (or converted .npz), required by the ``*_mano`` configs. None or
        "synthhand" (``simajax.hand.load_hand_model``'s name of the built-in model) for the others.
      num_workers: rendering processes (default: the CPU count; 1 renders in this process).
      **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (config, data_dir, ...).
    """
    if mano_path is not None and str(mano_path).lower() == "synthhand":
      mano_path = None
    self._mano_path = mano_path
    self._num_workers = num_workers
    super().__init__(**kwargs)
    name = f"synthetic_hands/{self.builder_config.name}"
    if self.builder_config.hand_model == "mano":
      if mano_path is None:
        raise ValueError(f"{name} renders MANO hands: pass mano_path (--mano MANO_RIGHT.pkl)")
      if not os.path.exists(mano_path):
        raise FileNotFoundError(f"{name}: MANO model file not found: {mano_path}")
    elif mano_path is not None:
      raise ValueError(f"{name} renders SynthHand hands but mano_path={mano_path!r} was given; "
                       f"use {name}_mano for MANO hands")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[0],
        features=schema.features(),
        # Record i of a split is frame i, so evaluation order is frame order.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split, count)
            for split, count in zip(scene.SPLITS, self.builder_config.frames)}

  def _generate_examples(self, split: str, num_frames: int):
    cfg = self.builder_config
    model = load_hand_model(self._mano_path if cfg.hand_model == "mano" else None)
    job = _RenderJob(faces=np.asarray(model.faces, np.int64),
                     regions=scene.model_skin_regions(model), seed=cfg.seed, split=split,
                     hand_model=cfg.hand_model,
                     scene=scene.SceneConfig(image_size=cfg.image_size))
    workers = self._num_workers or os.cpu_count() or 1
    if num_frames < _MIN_FRAMES_FOR_WORKERS:
      workers = 1
    chunks = [range(start, min(start + _HAND_BATCH, num_frames))
              for start in range(0, num_frames, _HAND_BATCH)]
    if workers == 1:
      for chunk in chunks:
        for hand in scene.sample_hands(model, cfg.seed, split, chunk, config=job.scene):
          yield hand.index, _checked(job(hand))
      return
    # 'spawn': the parent runs JAX (threads), which must not be forked.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for chunk in chunks:
        hands = scene.sample_hands(model, cfg.seed, split, chunk, config=job.scene)
        for hand, example in zip(hands, pool.imap(job, hands, chunksize=2)):
          yield hand.index, _checked(example)


@dataclasses.dataclass(frozen=True)
class _RenderJob:
  """The picklable per-frame work of a split: render one ``HandSample``."""
  faces: np.ndarray
  regions: scene.SkinRegions
  seed: int
  split: str
  hand_model: str
  scene: scene.SceneConfig

  def __call__(self, hand: scene.HandSample) -> dict:
    return scene.render_frame(hand, self.faces, self.regions, self.seed, self.split, self.hand_model,
                              self.scene)


def _checked(example: dict) -> dict:
  schema.validate_example(example, example["frame_key"])
  return example
