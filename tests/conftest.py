"""Shared test setup.

Eight fake CPU devices are created before JAX is imported anywhere, so sharding tests can run on
a laptop; single-device code is unaffected. XLA's backend optimisation level 0 makes compiles 3-5x
faster on XLA:CPU (its LLVM passes dominate compile time for these deep networks) without changing
results beyond float rounding, which every tolerance here allows; subprocesses inherit it. ``shared_dir`` points at the reference material
(``../shared`` next to the checkout, or $SIMAJAX_SHARED); tests that need it skip when absent.
"""

import os
import pathlib
import tempfile

os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")

# A compilation cache shared by this session and its subprocesses, so runs that must agree bit
# for bit (kill/resume) compile once. Fresh per session: nothing stale carries over.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="simajax-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shared_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("SIMAJAX_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
  """The reference folder (docs, parity data, mesh reference); skips the test when absent."""
  path = _shared_dir()
  if not (path / "mesh_reference" / "assets.npz").exists():
    pytest.skip(f"reference data not found at {path} (set SIMAJAX_SHARED to the shared/ folder)")
  return path


@pytest.fixture(scope="session")
def reference_topology(shared_dir):
  """The official mesh topology from shared/mesh_reference/assets.npz."""
  from simajax.mesh import MeshTopology
  return MeshTopology.load(shared_dir / "mesh_reference" / "assets.npz")
