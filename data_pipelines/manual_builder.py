"""The shared part of the TFDS builders of downloaded hand datasets (Dex-YCB, HanCo).

Both builders read a raw tree the user downloads by hand (``manual_dir``) together with the user's
MANO model, read frames in ``num_workers`` processes with a picklable reader from their
``examples`` module, and store the shared schema (``data_pipelines.schema``) in record order, with
each split's build counts in the dataset metadata. ``ManualBuilder`` holds that part; a subclass
sets ``TITLE``, ``HOMEPAGE`` and ``MANUAL_DOWNLOAD_INSTRUCTIONS``, and its ``_split_generators``
starts with ``_checked_root`` and hands each split's tasks to ``_read_split``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import sys
from typing import Any, Callable, Iterator, Optional, Sequence

import tensorflow_datasets as tfds

from data_pipelines import mano_labels, schema, workers


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder of a manually downloaded dataset labelled with the user's MANO model.

  Attributes:
    TITLE: the dataset's name in error messages, e.g. "Dex-YCB".
    HOMEPAGE: the dataset's web page, stored in the dataset info.
    MANUAL_DOWNLOAD_INSTRUCTIONS: how to get the raw files and MANO (TFDS's attribute, also
      appended to the errors about missing inputs).
  """

  TITLE: str = ""
  HOMEPAGE: str = ""

  def __init__(self, *, mano_path: Optional[str] = None, manual_dir: Optional[str] = None,
               num_workers: Optional[int] = None, **kwargs):
    """Creates the builder.

    Args:
      mano_path: MANO_RIGHT.pkl (a builder that needs MANO_LEFT.pkl looks for it next to it).
      manual_dir: the dataset root (default: TFDS's <data_dir>/downloads/manual).
      num_workers: reader processes (default: the CPU count, or 1 for fewer than
        ``workers.MIN_TASKS_FOR_WORKERS`` frames); 1 reads in this process.
      **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (config, data_dir, ...).
    """
    super().__init__(**kwargs)
    self._mano_path = mano_path
    self._manual_root = manual_dir
    self._num_workers = num_workers

  def _info(self) -> tfds.core.DatasetInfo:
    # The description is the first paragraph of the subclass's module docstring.
    module_doc = sys.modules[type(self).__module__].__doc__
    return tfds.core.DatasetInfo(
        builder=self,
        description=module_doc.split("\n\n")[0],
        features=schema.features(),
        # Record order = task order (sequence, frame, ...): evaluation reads it as is.
        disable_shuffling=True,
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(),
    )

  def _checked_root(self, dl_manager) -> pathlib.Path:
    """The raw-data root, after checking that it exists and that MANO was given and reads.

    Args:
      dl_manager: the download manager TFDS passes to ``_split_generators``.

    Returns:
      The dataset root directory.

    Raises:
      FileNotFoundError: with the download instructions, for a missing root or MANO path; naming
        the file for a MANO model that is missing or unreadable.
    """
    # The builder's manual_dir, else TFDS's default one (<data_dir>/downloads/manual).
    # pylint: disable-next=protected-access
    root = self._manual_root if self._manual_root is not None else dl_manager._manual_dir
    if root is None or not pathlib.Path(root).is_dir():
      raise FileNotFoundError(f"manual_dir {root}: directory not found (pass --manual_dir).\n"
                              + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    if self._mano_path is None:
      raise FileNotFoundError(f"{self.TITLE} needs the MANO model: pass --mano "
                              ".../MANO_RIGHT.pkl\n" + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    mano_labels.cached_mano(self._mano_path)  # fails early when missing or unreadable
    return pathlib.Path(root)

  def _read_split(self, split: str, reader: Callable, tasks: Sequence,
                  counts: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields a split's examples read by ``reader`` from ``tasks``, then reports its counts.

    Args:
      split: the split name.
      reader: picklable callable: task -> ([(key, example), ...], counts), see
        ``workers.run_tasks``.
      tasks: the split's tasks, in record order.
      counts: the split's (zero) counts dataclass, summed over the tasks, printed with its
        ``summary(name)`` method and stored in the dataset metadata under ``build_counts``.

    Yields:
      (key, example) in task order.
    """
    yield from workers.run_tasks(reader, tasks, counts,
                                 workers.num_workers(self._num_workers, len(tasks)))
    text = counts.summary(f"{self.name}/{self.builder_config.name} {split}")
    print(text, flush=True)
    logging.info(text)
    self.info.metadata.setdefault("build_counts", {})[split] = dataclasses.asdict(counts)
