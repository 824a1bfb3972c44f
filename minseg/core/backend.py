"""NumPy/CuPy switching: one code path, the array module chosen by where the data lives.

Every op asks ``get_array_module`` for ``xp`` (``numpy`` or ``cupy``) and then only calls ``xp.*``,
so the same line runs on the CPU and on a GPU. CuPy is optional and imported lazily: ``import minseg``
never needs it, and asking for ``"cuda"`` without it raises an error that says how to get it.

Device names follow PyTorch: ``"cpu"``, ``"cuda"`` (the current GPU) and ``"cuda:N"``.
"""

from __future__ import annotations

import numpy as np

_GPU_HINT = "install the GPU extra with `pip install 'minseg[gpu]'` (CuPy for CUDA 12) on a machine with an NVIDIA GPU"

_cupy_module = None
_cupy_checked = False


def _cupy():
    """Return the ``cupy`` module, or ``None`` when CuPy is not installed (imported at most once)."""
    global _cupy_module, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy

            _cupy_module = cupy
        except Exception:  # ImportError, or a CuPy whose CUDA libraries fail to load
            _cupy_module = None
    return _cupy_module


def cuda_available() -> bool:
    """True when CuPy imports and at least one CUDA device is visible."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _is_cupy_array(array) -> bool:
    cp = _cupy_module  # only arrays made by an already-imported CuPy can be CuPy arrays
    return cp is not None and isinstance(array, cp.ndarray)


def get_array_module(*arrays_or_tensors):
    """Return ``cupy`` if any argument lives on a GPU, else ``numpy``.

    Accepts raw arrays, minseg Tensors (anything with a ``.data`` array), scalars and ``None``.
    """
    for item in arrays_or_tensors:
        if _is_cupy_array(item) or _is_cupy_array(getattr(item, "data", None)):
            return _cupy_module
    return np


def parse_device(device) -> tuple[str, int]:
    """Split a device name into ``(kind, index)``: ``"cpu"`` → ``("cpu", 0)``, ``"cuda:1"`` → ``("cuda", 1)``."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'cuda:0'; got {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu", 0
    if name == "cuda":
        cp = _require_cupy(device)
        return "cuda", int(cp.cuda.runtime.getDevice())
    if name.startswith("cuda:") and name[5:].isdigit():
        return "cuda", int(name[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")


def canonical_device(device) -> str:
    """``"cuda"`` → ``"cuda:0"`` (the current GPU), ``"CPU"`` → ``"cpu"``: the form ``Tensor.device`` reports."""
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"


def _require_cupy(device):
    cp = _cupy()
    if cp is None or not cuda_available():
        reason = "CuPy is not installed" if cp is None else "CuPy found no CUDA device"
        raise RuntimeError(f"device {device!r} is unavailable: {reason}; {_GPU_HINT}")
    return cp


def device_of(array) -> str:
    """The device name of a raw array: ``"cpu"`` for NumPy, ``"cuda:N"`` for CuPy."""
    if _is_cupy_array(array):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_device(array, device):
    """Copy ``array`` to ``device`` (returns it unchanged when it is already there)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return _cupy_module.asnumpy(array) if _is_cupy_array(array) else np.asarray(array)
    cp = _require_cupy(device)
    if _is_cupy_array(array) and array.device.id == index:
        return array
    with cp.cuda.Device(index):
        return cp.asarray(array)


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` in place, adding repeated indices up (``np.add.at`` / ``cupyx.scatter_add``).

    Only for gather-style indexing with integer arrays; convolution and pooling never need it.
    """
    if _is_cupy_array(target):
        import cupyx

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


def reuse_freed_memory() -> bool:
    """Let glibc keep freed large blocks for reuse instead of handing them back to the system.

    By default glibc unmaps every freed block above its mmap threshold (at most 32 MiB), so the next array
    of that size — a training step makes the same large activations and gradients again and again —
    page-faults its memory in afresh, which on this kind of VM costs 2–3× the arithmetic of an elementwise
    op. Raising the mmap and trim thresholds (glibc's ``mallopt``) keeps that memory in the process. It is
    a process-wide setting, so the library never applies it by itself: ``minseg train``/``demo`` call it,
    and so may a script or notebook (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set in the
    environment do the same for any program). Returns False where there is no glibc (nothing changes).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 2**30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
