"""Tensor factories with PyTorch's names: ``tensor``, ``zeros``, ``ones``, ``full``, ``randn``, ``rand``,
``arange``, ``zeros_like``, ``ones_like`` (float32 unless a dtype is given; random ones draw from the shared
generator of ``core.random``, so ``minseg.manual_seed`` makes them repeatable)."""

from __future__ import annotations

import numpy as np

from .autograd import Tensor
from .backend import get_array_module, to_device
from .random import get_rng

def _resolve_dtype(dtype, default):
    return np.dtype(default if dtype is None else dtype)


def _make(array, device, requires_grad) -> Tensor:
    return Tensor(to_device(array, device or "cpu"), requires_grad=requires_grad)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (lists of Python floats become float32, as in PyTorch)."""
    if isinstance(data, Tensor):
        data = data.data
    xp = get_array_module(data)
    keeps_dtype = isinstance(data, xp.ndarray) or isinstance(data, np.generic)
    array = xp.array(data, copy=True)
    if dtype is not None:
        array = array.astype(dtype)
    elif not keeps_dtype and array.dtype == np.float64:
        array = array.astype(np.float32)
    if device is None:
        return Tensor(array, requires_grad=requires_grad)
    return _make(array, device, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(np.zeros(_size(size), _resolve_dtype(dtype, np.float32)), device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(np.ones(_size(size), _resolve_dtype(dtype, np.float32)), device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(np.full(_size((size,)), fill_value, _resolve_dtype(dtype, np.float32)), device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard-normal samples from the shared generator (``minseg.manual_seed``)."""
    array = get_rng().standard_normal(_size(size)).astype(_resolve_dtype(dtype, np.float32))
    return _make(array, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from the shared generator."""
    array = get_rng().random(_size(size)).astype(_resolve_dtype(dtype, np.float32))
    return _make(array, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``[start, end)`` with ``step``; integer arguments give int64, any float gives float32."""
    if end is None:
        start, end = 0, start
    integral = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    return _make(np.arange(start, end, step, dtype=_resolve_dtype(dtype, np.int64 if integral else np.float32)),
                 device, requires_grad)


def zeros_like(other: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    xp = get_array_module(other)
    return Tensor(xp.zeros(other.shape, dtype or other.dtype), requires_grad=requires_grad)


def ones_like(other: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    xp = get_array_module(other)
    return Tensor(xp.ones(other.shape, dtype or other.dtype), requires_grad=requires_grad)


def _size(size) -> tuple:
    """Accept ``zeros(2, 3)`` and ``zeros((2, 3))`` like PyTorch."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in size):
        raise ValueError(f"size must be non-negative integers; got {size}")
    return tuple(int(s) for s in size)
