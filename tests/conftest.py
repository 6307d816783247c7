"""Shared test set-up.

* ``jax_numpy_rank_promotion="raise"`` for every test (design.md).
* ``real_data_dir`` / ``mnist_dir`` / ``eie_layer_path`` fixtures: the real data that CI provides
  through ``JAXCOMP_DATA_DIR``. Locally a test that needs it is skipped when it is absent; under
  ``CI=true`` a missing folder is a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def _need(path: Path, what: str) -> Path:
    if path.exists():
        return path
    msg = (
        f"{what} not found at {path}; "
        "set JAXCOMP_DATA_DIR to the folder holding mnist/ and eie-layer/"
    )
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    env = os.environ.get("JAXCOMP_DATA_DIR")
    if not env:
        if os.environ.get("CI"):
            pytest.fail("JAXCOMP_DATA_DIR is not set under CI; .ci/run must export it")
        pytest.skip("JAXCOMP_DATA_DIR is not set")
    return _need(Path(env), "real data folder")


@pytest.fixture(scope="session")
def mnist_dir(real_data_dir: Path) -> Path:
    return _need(real_data_dir / "mnist" / "train-images-idx3-ubyte.gz", "MNIST").parent


@pytest.fixture(scope="session")
def eie_layer_path(real_data_dir: Path) -> Path:
    return _need(real_data_dir / "eie-layer" / "layer.npz", "EIE real layer")


@pytest.fixture(scope="session")
def load_example():
    """``load_example(name)``: import ``examples/<name>.py`` (not a package) as a module."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the examples' shared sibling, _any_model.py
        try:
            spec.loader.exec_module(mod)
        finally:
            sys.path.remove(str(path.parent))
        return mod

    return load
