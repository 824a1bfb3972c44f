"""Shared fixtures. ``pytest --backend cupy`` runs every device-aware test on the GPU through CuPy."""

import numpy as np
import pytest

import minseg


def pytest_addoption(parser):
    parser.addoption("--backend", choices=["numpy", "cupy"], default="numpy",
                     help="array backend for device-aware tests: numpy (CPU) or cupy (GPU)")


def _gpu_skip_reason():
    from minseg.core.backend import _cupy

    if _cupy() is None:
        return "needs a CUDA GPU: CuPy is not installed (pip install 'minseg[gpu]')"
    if not minseg.cuda_available():
        return "needs a CUDA GPU: CuPy is installed but sees no CUDA device"
    return None


@pytest.fixture
def device(request):
    """The device tests run on: 'cpu' by default, 'cuda:0' under --backend cupy (skipped without a GPU)."""
    if request.config.getoption("--backend") == "cupy":
        reason = _gpu_skip_reason()
        if reason:
            pytest.skip(reason)
        return "cuda:0"
    return "cpu"


@pytest.fixture
def gpu():
    """For tests that need a GPU whatever the backend (e.g. CPU↔GPU copies)."""
    reason = _gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    return "cuda:0"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
