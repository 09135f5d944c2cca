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


# ----------------------------------------------------------------------------------------------
# A tiny SVR without training: its topology (SynthHand's), weights, an export directory and a
# training run directory with two checkpoints. Shared by the prediction and CLI tests; nothing
# here compiles. (JAX-using modules are imported inside the fixtures: see the env set above.)


@pytest.fixture(scope="module")
def topology():
  """The mesh topology of the built-in SynthHand (built once, cached on disk)."""
  import ml_collections
  from simajax import model_setup
  return model_setup.load_topology(ml_collections.ConfigDict({"topology": None,
                                                              "hand_model": None}))


@pytest.fixture(scope="module")
def make_variables(topology):
  """seed -> recipe-scaled random weights of the tiny SVR (O(1) activations, no compiled init)."""
  from parity_recipe import he_variables
  from simajax.models import build_svr, svr_config
  from simajax.training import export_dir
  abstract = export_dir.abstract_variables(build_svr(svr_config("tiny"), topology))
  return lambda seed: he_variables(abstract, topology, seed=seed)


@pytest.fixture(scope="module")
def export_ckpt(tmp_path_factory, topology, make_variables):
  """An export directory (``simajax.convert``'s layout) of the tiny SVR with seed-0 weights."""
  from simajax.models import svr_config
  from simajax.training import export_dir
  path = tmp_path_factory.mktemp("export") / "ckpt"
  export_dir.save_checkpoint(path, make_variables(0), svr_config("tiny"), topology)
  return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, topology, make_variables):
  """A training run dir with two checkpoints: step 10 (best pa_vpe, the export's weights) and
  step 20 (latest, seed-1 weights)."""
  import numpy as np
  from simajax import config_lib
  from simajax.training import checkpointing
  run = tmp_path_factory.mktemp("run")
  config = config_lib.base_config("svr", variant="tiny")
  (run / "config.json").write_text(config.to_json())
  topology.save(run / "topology.npz")
  ckpt = checkpointing.Checkpointer(run / "checkpoints", best_metric=config.checkpoint.best_metric,
                                    best_mode=config.checkpoint.best_mode, async_save=False)
  rng = np.asarray([0, 1], np.uint32)
  for step, seed, vpe in ((10, 0, 1.0), (20, 1, 2.0)):
    variables = make_variables(seed)
    ckpt.save(step, {"params": variables["params"], "batch_stats": variables["batch_stats"],
                     "step": np.int32(step), "opt_state": {}, "rng": rng},
              {"position": step}, metrics={config.checkpoint.best_metric: vpe})
  ckpt.close()
  return run


# ----------------------------------------------------------------------------------------------
# Parallel runs (pytest-xdist, `-n 2 --dist loadgroup` in the README's test command): a costly
# module fixture is built once per worker that needs it, so the tests sharing one run in the same
# worker. Fixture -> what it costs to build (2-core machine, 2026-12-02).
SHARED_COSTLY_FIXTURES = {
    "svr_run": "an 18-step SVR training run, ~130 s",
    "mvr_run": "an MVR training run, ~90 s",
    "tiny_ckpt": "a tiny exported checkpoint, ~13 s",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items):
  """Puts the tests that share a costly module fixture in one xdist group (see above)."""
  for item in items:
    for name in SHARED_COSTLY_FIXTURES:
      if name in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{name}"))
        break
