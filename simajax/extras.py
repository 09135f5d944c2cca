"""Optional dependencies: imported on use, with a one-line error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from simajax.cli import MissingExtraError


def install_hint(extra: str) -> str:
  """The pip command that installs an optional extra of simajax."""
  return f"pip install 'simajax[{extra}]'"


def require(module: str, feature: str, extra: str = "demo", hint: str | None = None) -> ModuleType:
  """Imports ``module``, or raises ``MissingExtraError`` (one line: the feature, the package, the
  fix).

  Args:
    module: the module to import.
    feature: what needs it (e.g. '--video'), for the message.
    extra: the simajax extra that installs it.
    hint: another fix to suggest instead of installing the extra.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise MissingExtraError(f"{feature} needs the optional package {module!r}: "
                      f"{hint or install_hint(extra)}") from e
