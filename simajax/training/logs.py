"""Metric logging: JSON lines plus TensorBoard event files, written by process 0 only.

Each ``write`` appends one JSON object ``{"step": s, "<name>": value, ...}`` to
``<workdir>/metrics.jsonl`` and the same scalars to TensorBoard (tensorboardX, no TensorFlow).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping, Optional

import jax
import numpy as np

from simajax.training.run_dir import METRICS_FILE


class MetricWriter:
  """Writes scalars to ``metrics.jsonl`` and TensorBoard in ``workdir`` (process 0 only)."""

  def __init__(self, workdir: str, *, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8")
      if tensorboard:
        from tensorboardX import SummaryWriter  # imported lazily: only the trainer needs it
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Records ``scalars`` (host numbers or 0-d arrays) at ``step``."""
    if not self.enabled:
      return
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **values}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in values.items():
        self._tb.add_scalar(k, v, int(step))
      self._tb.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


class Progress:
  """Measures steps/s and estimates the remaining time for a progress line."""

  def __init__(self, first_step: int, total_steps: int):
    self.total_steps = total_steps
    self._start_step = first_step
    self._start_time: Optional[float] = None

  def start(self, step: int) -> None:
    """Starts the clock after the first (compiling) step, so compile time does not skew ETA."""
    self._start_step, self._start_time = step, time.perf_counter()

  def line(self, step: int, scalars: Mapping[str, float]) -> str:
    """``step 120/1000 | 3.21 steps/s | ETA 4m34s | loss 0.123 ...``."""
    parts = [f"step {step}/{self.total_steps}"]
    if self._start_time is not None and step > self._start_step:
      rate = (step - self._start_step) / (time.perf_counter() - self._start_time)
      parts.append(f"{rate:.2f} steps/s")
      parts.append(f"ETA {format_seconds((self.total_steps - step) / rate)}")
    parts += [f"{k} {float(np.asarray(v)):.4g}" for k, v in scalars.items()]
    return " | ".join(parts)


def format_seconds(seconds: float) -> str:
  """1h02m, 4m34s or 12s."""
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


def read_curve(workdir: str, keys=("val/vpe", "val/pa_vpe", "train/loss")) -> dict:
  """The logged values of ``keys`` in ``<workdir>/metrics.jsonl``, as {key: (steps, values)}.

  A resumed run appends to the file; a step logged twice keeps its last value.
  """
  points: dict[str, dict[int, float]] = {k: {} for k in keys}
  path = os.path.join(workdir, METRICS_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        entry = json.loads(line)
        for key in keys:
          if key in entry:
            points[key][int(entry["step"])] = float(entry[key])
  return {k: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)])) for k, v in points.items()}
