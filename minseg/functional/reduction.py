"""Reductions: sum, mean, max/min (with and without indices), amax/amin, logsumexp.

``dim`` may be ``None`` (all axes), an int or a tuple of ints, negative allowed; ``keepdim`` keeps the
reduced axes with size 1, as in PyTorch. Backward spreads the output gradient over the reduced axes.
"""

from __future__ import annotations

import builtins
from collections import namedtuple

from ..core.autograd import Function
from ..core.backend import get_array_module
from .elementwise import maximum, minimum

MaxMin = namedtuple("MaxMin", ["values", "indices"])


def normalize_dims(dim, ndim: int, op: str = "reduction") -> tuple:
    """``dim`` (None | int | tuple) → a sorted tuple of non-negative axes, with a clear error when out of range."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    rank = builtins.max(ndim, 1)  # this module defines its own max
    for d in dims:
        if not isinstance(d, int) or not -rank <= d < rank:
            raise ValueError(f"{op}: dim must be in [{-rank}, {rank - 1}] for a {ndim}-d input; got dim={dim!r}")
    axes = tuple(sorted({d % rank for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"{op}: dim={dim!r} names the same axis twice")
    return axes if ndim else ()


def _expand_reduced(grad, axes, keepdim):
    """Re-insert the reduced axes of ``grad`` as size-1 axes so it broadcasts against the input."""
    if keepdim:
        return grad
    xp = get_array_module(grad)
    return xp.expand_dims(grad, axes) if axes else grad


class Sum(Function):
    """y = Σ x over the axes;  dy/dx = 1 for every element summed."""

    def forward(self, input, *, axes, keepdim):
        self.input_shape, self.axes, self.keepdim = input.shape, axes, keepdim
        return input.sum(axis=axes, keepdims=keepdim)

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.broadcast_to(_expand_reduced(grad, self.axes, self.keepdim), self.input_shape)


class Mean(Function):
    """y = (1/n) Σ x;  dy/dx = 1/n, n the number of elements averaged."""

    def forward(self, input, *, axes, keepdim):
        self.input_shape, self.axes, self.keepdim = input.shape, axes, keepdim
        self.count = 1
        for axis in axes:
            self.count *= input.shape[axis]
        return input.mean(axis=axes, keepdims=keepdim)

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.broadcast_to(_expand_reduced(grad, self.axes, self.keepdim) / self.count, self.input_shape)


class AMax(Function):
    """y = max (or min) over the axes; the gradient is split evenly between tied extremes (as ``torch.amax``)."""

    def forward(self, input, *, axes, keepdim, take_max):
        reduce = input.max if take_max else input.min
        extreme = reduce(axis=axes, keepdims=True)
        winners = input == extreme
        self.save_for_backward(winners / winners.sum(axis=axes, keepdims=True))
        self.axes, self.keepdim = axes, keepdim
        return extreme if keepdim else extreme.reshape([s for a, s in enumerate(input.shape) if a not in axes])

    def backward(self, grad):
        (share,) = self.saved
        return _expand_reduced(grad, self.axes, self.keepdim) * share


class MaxAlongDim(Function):
    """(values, indices) of the max (or min) along one axis; the gradient goes to the returned index only."""

    def forward(self, input, *, dim, keepdim, take_max):
        xp = get_array_module(input)
        indices = (input.argmax if take_max else input.argmin)(axis=dim)
        indices_kept = xp.expand_dims(indices, dim)
        values = xp.take_along_axis(input, indices_kept, axis=dim)
        # one-hot of the chosen index along `dim`, shaped to broadcast against the input
        positions = xp.arange(input.shape[dim]).reshape([-1 if a == dim else 1 for a in range(input.ndim)])
        self.save_for_backward(positions == indices_kept)
        self.dim, self.keepdim = dim, keepdim
        if keepdim:
            return values, indices_kept
        return values.squeeze(axis=dim), indices

    def backward(self, grad):
        (chosen,) = self.saved
        return _expand_reduced(grad, (self.dim,), self.keepdim) * chosen


class LogSumExp(Function):
    """y = m + log Σ exp(x − m), m the max (0 where m is ±inf);  dy/dx = exp(x − y) = softmax(x)."""

    def forward(self, input, *, axes, keepdim):
        xp = get_array_module(input)
        shift = input.max(axis=axes, keepdims=True)
        shift = xp.where(xp.isfinite(shift), shift, 0)
        output = shift + xp.log(xp.exp(input - shift).sum(axis=axes, keepdims=True))
        self.save_for_backward(input, output)
        self.axes, self.keepdim = axes, keepdim
        return output if keepdim else output.reshape([s for a, s in enumerate(input.shape) if a not in axes])

    def backward(self, grad):
        input, output = self.saved
        xp = get_array_module(grad)
        return _expand_reduced(grad, self.axes, self.keepdim) * xp.exp(input - output)


def sum(input, dim=None, keepdim: bool = False):
    return Sum.apply(input, axes=normalize_dims(dim, input.ndim, "sum"), keepdim=keepdim)


def mean(input, dim=None, keepdim: bool = False):
    return Mean.apply(input, axes=normalize_dims(dim, input.ndim, "mean"), keepdim=keepdim)


def amax(input, dim=None, keepdim: bool = False):
    """Max over ``dim`` (all axes by default); ties share the gradient equally."""
    return AMax.apply(input, axes=normalize_dims(dim, input.ndim, "amax"), keepdim=keepdim, take_max=True)


def amin(input, dim=None, keepdim: bool = False):
    return AMax.apply(input, axes=normalize_dims(dim, input.ndim, "amin"), keepdim=keepdim, take_max=False)


def _max_or_min(name, take_max, input, dim, keepdim):
    if dim is None:
        return AMax.apply(input, axes=normalize_dims(None, input.ndim, name), keepdim=False, take_max=take_max)
    if not isinstance(dim, int):  # torch.max(input, other): the elementwise form
        return (maximum if take_max else minimum)(input, dim)
    (axis,) = normalize_dims(dim, input.ndim, name) or (0,)
    values, indices = MaxAlongDim.apply(input, dim=axis, keepdim=keepdim, take_max=take_max)
    return MaxMin(values, indices)


def max(input, dim=None, keepdim: bool = False):
    """Like ``torch.max``: ``max(x)`` is the overall max; ``max(x, dim)`` returns ``(values, indices)``;
    ``max(x, other_tensor)`` is the elementwise maximum."""
    return _max_or_min("max", True, input, dim, keepdim)


def min(input, dim=None, keepdim: bool = False):
    """Like ``torch.min`` (see ``max``)."""
    return _max_or_min("min", False, input, dim, keepdim)


def logsumexp(input, dim, keepdim: bool = False):
    """log Σ exp(x) over ``dim``, computed without overflow."""
    return LogSumExp.apply(input, axes=normalize_dims(dim, input.ndim, "logsumexp"), keepdim=keepdim)
