"""NumPy/CuPy switching and device names."""

import numpy as np
import pytest

import minseg
from minseg.core.backend import canonical_device, device_of, get_array_module, parse_device, to_device


def test_numpy_arrays_and_tensors_use_numpy():
    assert get_array_module(np.zeros(2), minseg.zeros(2), 3.0, None) is np


def test_device_names_parse_like_torch():
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("CUDA:1") == ("cuda", 1)
    assert canonical_device("CPU") == "cpu"
    for bad in ["gpu", "cuda:x", "cuda:", 3]:
        with pytest.raises((ValueError, TypeError), match="device"):
            parse_device(bad)


def test_to_cpu_is_a_no_op_for_numpy():
    a = np.arange(3)
    assert to_device(a, "cpu") is a and device_of(a) == "cpu"


def test_without_a_gpu_cuda_raises_a_helpful_error():
    if minseg.cuda_available():
        pytest.skip("this machine has a GPU; the error path is for machines without one")
    assert minseg.cuda_available() is False
    with pytest.raises(RuntimeError, match=r"device 'cuda' is unavailable: .*pip install 'minseg\[gpu\]'"):
        minseg.ones(2).to("cuda")
    with pytest.raises(RuntimeError, match="unavailable"):
        minseg.zeros(2, device="cuda:0")


def test_round_trip_through_the_gpu(gpu):
    x = minseg.arange(6).reshape(2, 3)
    on_gpu = x.to(gpu)
    assert on_gpu.device == gpu and get_array_module(on_gpu) is not np
    assert on_gpu.cpu().tolist() == x.tolist()
    assert minseg.get_array_module(on_gpu).__name__ == "cupy"


def test_reuse_freed_memory_applies_on_glibc():
    """glibc's mallopt accepts both thresholds (True); elsewhere the call is a harmless False."""
    import platform

    applied = minseg.reuse_freed_memory()
    assert isinstance(applied, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied
    big = np.ones((64, 2**16), np.float32)  # allocating and freeing large arrays still works afterwards
    del big
    assert np.ones((64, 2**16), np.float32).sum() == 64 * 2**16
