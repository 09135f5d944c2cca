"""Reading a build's frames, in this process or in worker processes, and tallying what was read.

A reader is a picklable callable task -> ([(key, example), ...], counts) whose counts are a
dataclass of integers (``BuildCounts`` of each dataset's ``examples`` module). ``run_tasks``
runs it over a split's tasks, in order, and sums the counts; ``num_workers`` picks the process
count; ``counts_summary`` is the printed form of the counts.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from typing import Any, Callable, Iterable, Iterator, Optional

from data_pipelines import schema

# Default builds read fewer frames than this in the main process (see ``num_workers``).
MIN_TASKS_FOR_WORKERS = 64


def run_tasks(reader: Callable, tasks: Iterable, counts: Any,
              num_workers: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
  """Runs ``reader`` over ``tasks`` in order and yields the examples; merges the counts.

  Args:
    reader: picklable callable: task -> ([(key, example), ...], counts dataclass).
    tasks: the tasks, in output order.
    counts: a counts dataclass, updated in place with every task's counts.
    num_workers: > 1 runs the reader in that many 'spawn' processes (the parent may run JAX
      threads, which must not be forked); results keep the task order.

  Yields:
    (key, example), in task order, each checked with ``schema.validate_example``.
  """
  def checked(items, delta):
    _add_counts(counts, delta)
    for key, example in items:
      schema.validate_example(example, key)
      yield key, example

  if num_workers <= 1:
    for items, delta in map(reader, tasks):
      yield from checked(items, delta)
    return
  with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
    for items, delta in pool.imap(reader, tasks, chunksize=2):
      yield from checked(items, delta)


def _add_counts(total, delta) -> None:
  for field in dataclasses.fields(total):
    setattr(total, field.name, getattr(total, field.name) + getattr(delta, field.name))


def num_workers(requested: Optional[int], num_tasks: int) -> int:
  """Worker processes for a build: ``requested``, or by default the CPU count (1 for fewer than
  ``MIN_TASKS_FOR_WORKERS`` tasks, where starting processes costs more than it saves)."""
  if requested is not None:
    return requested
  return 1 if num_tasks < MIN_TASKS_FOR_WORKERS else (os.cpu_count() or 1)


def counts_summary(counts: Any, headline: str, num_headline_fields: int) -> str:
  """A counts dataclass as text: ``headline``, then one indented line per other non-zero count.

  Args:
    counts: the counts dataclass.
    headline: the first line, which states the first ``num_headline_fields`` fields.
    num_headline_fields: how many leading fields the headline already states.

  Returns:
    The lines, joined by newlines.
  """
  lines = [headline]
  for field in dataclasses.fields(counts)[num_headline_fields:]:
    value = getattr(counts, field.name)
    if value:
      lines.append(f"  {field.name}: {value}")
  return "\n".join(lines)
