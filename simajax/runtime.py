"""Process-level settings the command-line tools apply before JAX starts: allocator and compile cache.

Both are called first thing by ``simajax.train``, ``simajax.quickstart``, ``simajax.evaluate``,
``simajax.predict`` and the benchmark scripts; a library user may call them too.

* ``configure_allocator``: glibc's malloc returns every buffer above 32 MiB to the kernel when it is
  freed (``mmap``/``munmap``), and XLA:CPU allocates and frees its temporary buffers on every call
  of a compiled function. A training step then touches gigabytes of fresh pages per call: about
  0.9 M page faults per step of the official SVR (each page is zeroed by the kernel), and the
  step waits for it. ``MALLOC_MMAP_THRESHOLD_`` cannot help: glibc caps it at 32 MiB. Keeping
  every allocation in one heap that is never trimmed (one arena, no mmap, a trim threshold of
  2 GiB) lets XLA reuse the same pages from call to call (BENCHMARKS.md, "Training speed"). The
  cost is that the process keeps its peak heap. ``SIMAJAX_MALLOC=default`` leaves glibc as it is.
* ``configure_compilation_cache``: JAX's persistent compilation cache under
  ``~/.cache/simajax/xla`` (``SIMAJAX_CACHE_DIR`` overrides it; ``SIMAJAX_CACHE_DIR=off`` turns it
  off). A second run of the same step loads the compiled executable instead of compiling it (a
  minute for a training step on a 2-core CPU). The directory is safe to delete at any time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "simajax", "xla")

_allocator_configured: Optional[bool] = None


def configure_allocator() -> bool:
  """Makes glibc malloc keep freed memory for reuse (see the module docstring).

  Must run before the first threads allocate (before JAX starts its thread pools, ideally before
  ``import numpy``): a thread takes its malloc arena at its first allocation. Idempotent.

  Returns:
    True when the settings were applied; False on a C library other than glibc, or when the
    environment variable ``SIMAJAX_MALLOC`` is ``default``.
  """
  global _allocator_configured
  if _allocator_configured is not None:
    return _allocator_configured
  _allocator_configured = False
  if os.environ.get("SIMAJAX_MALLOC", "").lower() == "default" or not sys.platform.startswith(
      "linux"):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # musl, or no libc to load: nothing to tune
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  settings = (
      (_M_ARENA_MAX, 1),               # one heap for every thread: pages freed by one are reused
      (_M_MMAP_MAX, 0),                # big buffers from that heap, not fresh mmaps
      (_M_TRIM_THRESHOLD, 2**31 - 1),  # never hand the heap's top back to the kernel
      (_M_TOP_PAD, 64 << 20),          # grow the heap 64 MiB at a time
  )
  _allocator_configured = all(mallopt(param, value) == 1 for param, value in settings)
  return _allocator_configured


def cache_dir() -> Optional[str]:
  """The persistent compilation cache directory, or None when ``SIMAJAX_CACHE_DIR=off``."""
  value = os.environ.get("SIMAJAX_CACHE_DIR", DEFAULT_CACHE_DIR)
  if value.lower() in ("", "0", "off", "none", "false"):
    return None
  return os.path.abspath(os.path.expanduser(value))


def configure_compilation_cache(min_compile_time_s: float = 1.0) -> Optional[str]:
  """Turns on JAX's persistent compilation cache (see the module docstring).

  Args:
    min_compile_time_s: executables that compiled faster than this are not written (tiny
      helper functions would only fill the directory).

  Returns:
    The cache directory, or None when it is turned off.
  """
  directory = cache_dir()
  if directory is None:
    return None
  import jax  # pylint: disable=import-outside-toplevel
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


def configure_process() -> Optional[str]:
  """What every simajax command-line tool calls first: the allocator, then the compile cache.

  Call it before JAX runs anything (its thread pools start with the first computation).

  Returns:
    The compilation cache directory, or None when it is off.
  """
  configure_allocator()
  return configure_compilation_cache()
