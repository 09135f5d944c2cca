"""The command-line error convention shared by every simajax entry point.

A mistake in what the user passed (a missing or corrupt file, an unknown dataset or config name,
a bad flag value, arrays of the wrong shape, a checkpoint of another model) ends the program with
**one line on stderr and exit status 2**; the traceback is shown only with ``--verbose`` or
``SIMAJAX_DEBUG=1``. Anything else is a programming error and keeps its traceback.

  * ``UserError`` is the exception for such mistakes. It is a ``ValueError``, so library callers
    that catch ``ValueError`` keep working. Missing files stay ``FileNotFoundError`` (also a user
    error here), and a pickle refused by a restricted unpickler is ``pickle.UnpicklingError``.
  * ``run(main, argv)`` calls a CLI's ``main(argv)`` and applies the convention;
    ``ArgumentParser`` turns argparse's usage errors into ``UserError`` (argparse itself prints
    the whole usage text). ``parse_absl_flags`` and ``config_flag_value`` do the same for the
    absl / ml_collections flags of ``simajax.train``.
  * ``open_npz``, ``summarize_names`` and ``first_line`` are the message helpers readers need: a
    ``.npz`` that is missing or not a zip names the file in one line, a list of wrong keys
    becomes a count and the first few names instead of hundreds of lines, and a library's long
    error is quoted by its first line.

This module imports nothing heavy, so readers that must not pull in JAX can use it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import re
import sys
import traceback
import zipfile
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

DEBUG_ENV = "SIMAJAX_DEBUG"
VERBOSE_FLAG = "--verbose"
# Ends a message whose further lines were left out (the traceback shows them all).
MORE_DETAILS = f"(details: {VERBOSE_FLAG} or {DEBUG_ENV}=1)"


class UserError(ValueError):
  """A mistake in the user's input; the message names the file or field, what was expected and
  what was found, in one line."""


class MissingExtraError(UserError, ImportError):
  """An optional extra of simajax that a feature needs is not installed (also an ImportError,
  for library callers that catch that)."""


# Errors that are the user's to fix, whatever raised them.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, pickle.UnpicklingError)


def verbose_requested(argv: Optional[Sequence[str]] = None) -> bool:
  """Whether ``argv`` (default ``sys.argv``) holds ``--verbose`` or ``SIMAJAX_DEBUG`` is set."""
  argv = sys.argv[1:] if argv is None else argv
  return VERBOSE_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
  """The error's message as one line: its first line, with a pointer to the rest if any."""
  text = str(error).strip() or type(error).__name__
  first, _, rest = text.partition("\n")
  if isinstance(error, OSError) and error.filename and not isinstance(error, UserError):
    # e.g. "[Errno 2] No such file or directory: 'x'" from open(): already names the file.
    first = first if str(error.filename) in first else f"{error.filename}: {first}"
  return f"{first} {MORE_DETAILS}" if rest.strip() else first


def run(main: Callable[[Optional[Sequence[str]]], Optional[int]],
        argv: Optional[Sequence[str]] = None) -> int:
  """Runs a CLI's ``main(argv)`` under the error convention (module docstring).

  Args:
    main: the entry point; returns an exit status or None (0).
    argv: the arguments without the program name (default ``sys.argv[1:]``).

  Returns:
    ``main``'s exit status.

  Raises:
    SystemExit(2): after printing ``error: <one line>`` for a user error (``USER_ERRORS``).
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    status = main(argv)
  except USER_ERRORS as e:
    if verbose_requested(argv):
      traceback.print_exc()
    print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
  return 0 if status is None else int(status)


class ArgumentParser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` that raises ``UserError`` for usage errors and knows
  ``--verbose`` (which ``run`` reads)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.add_argument(VERBOSE_FLAG, action="store_true",
                      help=f"show tracebacks of errors (also: {DEBUG_ENV}=1)")

  def error(self, message):
    raise UserError(f"{self.prog}: {message} (see --help)")


def entry_point(body: Callable[[Sequence[str]], Optional[int]]
                ) -> Callable[[Optional[Sequence[str]]], int]:
  """A CLI's ``main(argv=None)``: runs ``body(argv)`` under the error convention (``run``)."""
  def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(body, argv)
  main.__doc__ = ("CLI entry point (see the module docstring); a bad input prints one line, "
                  "exit status 2.")
  return main


def module_parser(module: str, doc: str) -> ArgumentParser:
  """The ``ArgumentParser`` of ``python -m <module>``, showing ``doc`` (its module docstring)."""
  return ArgumentParser(prog=f"python -m {module}", description=doc,
                        formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_absl_flags(flag_values, argv: Sequence[str]):
  """absl's flag parsing (an ``app.run`` ``flags_parser``) under the convention: a bad flag, a
  config file that does not load or an override of a field the config lacks prints one line and
  exits with status 2, where absl would print its usage text (exit 1) or a traceback.

  Args:
    flag_values: the ``absl.flags.FlagValues`` (``flags.FLAGS``).
    argv: the full command line, program name first.

  Returns:
    The arguments left after parsing, as absl's parser returns them.
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  try:
    return flag_values(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    if verbose_requested(argv):
      traceback.print_exc()
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    message = lines[0]
    if not isinstance(e, flags.Error):
      # ml_collections' config flag: --config.<field>=... names a field the config lacks. Its
      # message quotes the field (escaped once per wrapping) and may suggest another, so the
      # field is the override's path component that the message mentions.
      text = str(e)
      hint = re.search(r'Did you mean "([^"]+)"', text)
      found = [(arg.partition("=")[0], part) for arg in argv if arg.startswith("--")
               for part in arg.partition("=")[0].lstrip("-").split(".")[1:]
               if re.search(rf"\b{re.escape(part)}\b", text.replace(hint.group(0), "")
                            if hint else text)]
      flag, field = found[0] if found else ("--config", message)
      message = (f"flag {flag}: the config has no field {field!r}"
                 + (f" (did you mean {hint.group(1)!r}?)" if hint else ""))
    elif len(lines) > 1:
      # The config flag quotes the config file's whole traceback; its last line is the error.
      error = re.sub(r"^[\w.]*UserError: ", "", lines[-1])
      message = f"{message.partition(': ')[0]}: {error}"
    print(f"error: {message} (see --helpfull)", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def config_flag_value(flag_values, name: str):
  """The value of an ml_collections config-file flag.

  Raises:
    UserError: naming the file when it failed to load (the flag defers that error to the
      first use of a stand-in value).
  """
  config = getattr(flag_values, name)
  try:
    config.get("stage")
  except OSError as e:
    raise UserError(f"--{name} {flag_values[name].config_filename}: cannot load the config "
                    f"file ({str(e).strip().splitlines()[-1].strip()})") from e
  return config


def open_npz(path: str | os.PathLike, what: str):
  """``np.load`` of a ``.npz`` without pickles, with one-line errors naming the file.

  Args:
    path: the file.
    what: what it should hold, e.g. "predictions: joints [N, 21, 3], verts [N, 778, 3]".

  Returns:
    The open ``NpzFile`` (use it as a context manager).

  Raises:
    FileNotFoundError: when the file does not exist.
    UserError: when it is not a readable ``.npz`` (not a zip, truncated, a plain ``.npy``).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: file not found; expected {what}")
  try:
    data = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"{path}: not a readable .npz file ({first_line(e)}); expected {what}") from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise UserError(f"{path}: a single .npy array, not an .npz archive; expected {what}")
  return data


def summarize_names(names: Iterable[str], limit: int = 3) -> str:
  """``"N: a, b, c, ..."`` for a possibly long list of names (keys of a state dict, ...)."""
  names = list(names)
  shown = ", ".join(names[:limit])
  return f"{len(names)}: {shown}{', ...' if len(names) > limit else ''}"


def first_line(error: BaseException, limit: int = 240) -> str:
  """The first line of an error's message (its type name if empty), cut to ``limit`` chars:
  for library errors quoted inside one of ours (orbax's run to kilobytes)."""
  text = (str(error).strip() or type(error).__name__).partition("\n")[0]
  return text if len(text) <= limit else text[:limit - 3] + "..."
