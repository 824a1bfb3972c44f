"""Pooling: ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d`` with PyTorch's arguments and results.

**Windows.** A pooling window reads the same pixels as a convolution's, but nothing needs the window
as a column: tap (i, j) of every window at once is one strided view of the (padded) input,
``x[i·dh :: sh, j·dw :: sw]`` cut to (OH, OW). Max pooling keeps a running maximum over the KH·KW views
and then finds which tap won, for the backward; average pooling keeps a running sum. No (N, C, KH·KW,
OH, OW) array is built, and the passes go over blocks of planes small enough to stay in cache. The
backward of average pooling adds the output gradient back onto each view — the adjoint of reading it;
that of max pooling sums it onto the winning pixels with one ``bincount``.

* max:      y = max over the window;  ∂y/∂x = 1 at the window's (first) maximum, 0 elsewhere.
* average:  y = Σ window / divisor;   ∂y/∂x = 1/divisor for every pixel of the window.

**Output size** (per axis, as PyTorch): o = ⌊(i + 2p − d·(k − 1) − 1)/s⌋ + 1, or ⌈·⌉ + 1 with
``ceil_mode``, dropping a last window that would start in the right padding (``conv_output_size``).
Padding may be at most half the kernel (``kernel_size // 2``, whatever the dilation), as in PyTorch.

**Adaptive average pooling** fixes the output size instead of the window: output bin i along an axis of
length L averages input rows ⌊i·L/o⌋ … ⌈(i+1)·L/o⌉ − 1. That is a constant (o×L) averaging matrix P per
axis, so y = P_h · x · P_wᵀ (``resize.resample``) and the backward is the transpose.

Where the chapter uses them: U-Net's contracting path halves the resolution with 2×2 max pooling
(§7.3.3); ASPP's image-level branch averages the whole feature map to 1×1 (§7.4.3).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..core.autograd import Function
from ..core.backend import get_array_module
from ..core.threads import rowwise
from .im2col import conv_output_size, padded_shape
from .resize import resample
from .shape import accepts_unbatched, pair


def _window_geometry(op, input_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate the window arguments like PyTorch and return them as pairs with the output size."""
    kernel = pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None or stride in ((), []) else pair(stride, "stride", op)
    padding, dilation = pair(padding, "padding", op), pair(dilation, "dilation", op)
    for name, values, least in (("kernel_size", kernel, 1), ("stride", stride, 1),
                                ("padding", padding, 0), ("dilation", dilation, 1)):
        if min(values) < least:
            raise ValueError(f"{op}: {name} must be {'positive' if least else 'non-negative'}; got {name}={values}")
    half = tuple(k // 2 for k in kernel)
    if any(p > h for p, h in zip(padding, half)):
        raise ValueError(f"{op}: padding must be at most half the kernel size (kernel_size // 2 = {half}); "
                         f"got padding={padding} with kernel_size={kernel}")
    size = tuple(input_shape[-2:])
    out = tuple(conv_output_size(*args, ceil_mode=ceil_mode) for args in zip(size, kernel, stride, padding, dilation))
    if min(out) < 1:
        padded = tuple(s + 2 * p for s, p in zip(size, padding))
        span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
        raise ValueError(f"{op}: the window spans {span} (kernel_size={kernel}, dilation={dilation}) but the padded "
                         f"input is only {padded} (input {size}, padding={padding}); the output would be {out}")
    return kernel, stride, padding, dilation, out


# --------------------------------------------------------------------------------- max pooling
def _lowest(dtype):
    """The padding that never wins a max: −∞ for floats, the smallest integer for integer dtypes."""
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    return False if dtype == bool else np.iinfo(dtype).min


def _padded(x, kernel, stride, padding, dilation, out_size, fill):
    """``x`` inside a border of ``fill`` wide enough for every window (``x`` itself when none is needed)."""
    xp = get_array_module(x)
    (h, w), (ph, pw) = x.shape[2:], padding
    hp, wp = padded_shape((h, w), kernel, stride, padding, dilation, out_size)
    if (hp, wp) == (h, w) and padding == (0, 0):
        return x
    padded = xp.full(x.shape[:2] + (hp, wp), fill, dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    return padded


BLOCK_BYTES = 64 * 2**10


def _planes(array):
    """(N, C, H, W) → (N·C, H, W): the pooling of one plane is independent of every other."""
    return array.reshape((-1,) + array.shape[2:])


def _taps(padded, kernel, stride, dilation, out_size):
    """Yield ``(t, view)``: the pixel that tap t = i·KW + j of every window reads, as one (…, OH, OW) view."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_size
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, padded[..., i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]


def _add_onto_taps(grad, input_shape, kernel, stride, padding, dilation):
    """The input gradient of average pooling: for every tap, ``grad`` (N, C, OH, OW) added onto the pixels
    that tap read."""
    xp = get_array_module(grad)
    (h, w), (ph, pw), out_size = input_shape[2:], padding, grad.shape[2:]

    def add(total, g):                         # a block of planes, in cache; one tap's pixels are distinct
        for _, view in _taps(total, kernel, stride, dilation, out_size):
            view += g

    hp, wp = padded_shape((h, w), kernel, stride, padding, dilation, out_size)
    total = xp.zeros(tuple(input_shape[:2]) + (hp, wp), dtype=grad.dtype)
    rowwise(add, _planes(total), _planes(grad), block_bytes=BLOCK_BYTES)
    return total[:, :, ph:ph + h, pw:pw + w]


class MaxPool2d(Function):
    """y = max of each window, a running maximum over the KH·KW tap views; ``winner`` records the tap.

    The winner is the first tap equal to the maximum (ties keep the first, as a running "strictly larger"
    test would) or, where the window holds a NaN, the last NaN tap (NaN propagates), as in PyTorch's CPU
    kernel. Backward sends g to the winning tap. Both passes go over blocks of planes that fit in cache.
    """

    def forward(self, input, *, kernel_size, stride, padding, dilation, out_size, return_indices):
        xp = get_array_module(input)
        padded = _padded(input, kernel_size, stride, padding, dilation, out_size, _lowest(input.dtype))
        floating = np.issubdtype(input.dtype, np.floating)

        def running_max(output, x, winner):       # a block of planes, in cache
            taps = list(_taps(x, kernel_size, stride, dilation, out_size))
            output[...] = taps[0][1]
            for _, view in taps[1:]:
                xp.maximum(output, view, out=output)                              # NaN propagates
            for t, view in reversed(taps):                                        # the first equal tap wins
                xp.copyto(winner, t, where=view == output)
            if floating and xp.isnan(output).any():                               # the last NaN tap wins
                for t, view in taps:
                    xp.copyto(winner, t, where=xp.isnan(view))

        shape = input.shape[:2] + tuple(out_size)
        winner = xp.empty(shape, dtype=np.min_scalar_type(kernel_size[0] * kernel_size[1] - 1))
        output = xp.empty(shape, dtype=input.dtype)
        rowwise(running_max, _planes(output), _planes(padded), _planes(winner), block_bytes=BLOCK_BYTES)
        self.save_for_backward(winner)
        self.geometry = (input.shape, kernel_size, stride, padding, dilation)
        if return_indices:
            return output, self._flat_indices(winner, xp)
        return output

    def _flat_indices(self, winner, xp, plane_size=0):
        """Position of each maximum as row·W + column of the unpadded input plane (``return_indices``), plus
        ``plane_size`` × the plane's number: the window's first pixel plus the winning tap's offset."""
        (n, c, _, width), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.geometry
        oh, ow = winner.shape[-2:]
        corners = (xp.arange(oh)[:, None] * sh - ph) * width + xp.arange(ow) * sw - pw          # (OH, OW)
        tap_offsets = (xp.arange(kh)[:, None] * dh * width + xp.arange(kw) * dw).ravel()       # (KH·KW,)
        planes = (xp.arange(n * c, dtype=xp.int64) * plane_size).reshape(n, c, 1, 1)
        return tap_offsets[winner] + (corners + planes)

    def backward(self, grad):
        """g summed onto the winning input pixels: one ``bincount`` of the maxima's flat indices (windows
        overlap when the stride is smaller than the kernel, so a pixel may win several)."""
        (winner,) = self.saved
        xp = get_array_module(grad)
        input_shape = self.geometry[0]
        n, c, h, w = input_shape
        flat = self._flat_indices(winner, xp, plane_size=h * w)
        total = xp.bincount(flat.ravel(), weights=grad.ravel(), minlength=n * c * h * w)
        return total.astype(grad.dtype, copy=False).reshape(input_shape)


@accepts_unbatched("max_pool2d")
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """y = max over each KH×KW window, as ``torch.nn.functional.max_pool2d`` (U-Net's 2×2 downsampling, §7.3.3).

    ``stride`` defaults to ``kernel_size``; padding counts as −∞ (the smallest integer for integer inputs).
    With ``return_indices=True`` also returns the flat index (row·W + column) of each maximum within its
    input plane, as PyTorch does.
    """
    kernel, stride, padding, dilation, out_size = _window_geometry(
        "max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return MaxPool2d.apply(input, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                           out_size=out_size, return_indices=return_indices)


# ----------------------------------------------------------------------------- average pooling
def _window_counts(size, kernel, stride, padding, out, count_include_pad, xp):
    """How many positions each window covers along one axis: clipped to the padded input, or to the
    input itself when padding is not counted (PyTorch's divisor; ceil_mode's overhang never counts)."""
    start = xp.arange(out) * stride - padding
    end = xp.minimum(start + kernel, size + padding)
    if not count_include_pad:
        start, end = xp.maximum(start, 0), xp.minimum(end, size)
    return end - start


class AvgPool2d(Function):
    """y = Σ window / divisor, a running sum over the KH·KW tap views;  ∂L/∂x: g/divisor added onto every tap."""

    def forward(self, input, *, kernel_size, stride, padding, out_size, count_include_pad, divisor_override):
        xp = get_array_module(input)
        no_dilation = (1, 1)
        padded = _padded(input, kernel_size, stride, padding, no_dilation, out_size, 0)   # zeros outside the input
        taps = _taps(padded, kernel_size, stride, no_dilation, out_size)
        total = next(taps)[1].copy()
        for _, view in taps:
            total += view
        if divisor_override:
            divisor = xp.asarray(divisor_override, dtype=input.dtype)
        else:
            rows, columns = (_window_counts(size, k, s, p, o, count_include_pad, xp)
                             for size, k, s, p, o in zip(input.shape[-2:], kernel_size, stride, padding, out_size))
            divisor = (rows[:, None] * columns[None, :]).astype(input.dtype)        # (OH, OW)
        self.divisor = divisor
        self.geometry = (input.shape, kernel_size, stride, padding, no_dilation)
        total /= divisor
        return total

    def backward(self, grad):
        return _add_onto_taps(grad / self.divisor, *self.geometry)


@accepts_unbatched("avg_pool2d")
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """y = Σ window / divisor over each KH×KW window, as ``torch.nn.functional.avg_pool2d`` (§7.3.3).

    The divisor is the window clipped to the padded input (``count_include_pad=True``) or to the input
    itself (False); windows that ``ceil_mode`` lets hang past the padding never count the overhang.
    ``divisor_override`` replaces the divisor everywhere.
    """
    if divisor_override is not None and divisor_override == 0:
        raise ValueError(f"avg_pool2d: divisor_override must be a non-zero number; got {divisor_override!r}")
    kernel, stride, padding, _, out_size = _window_geometry(
        "avg_pool2d", input.shape, kernel_size, stride, padding, 1, ceil_mode)
    return AvgPool2d.apply(input, kernel_size=kernel, stride=stride, padding=padding, out_size=out_size,
                           count_include_pad=count_include_pad, divisor_override=divisor_override)


# -------------------------------------------------------------------- adaptive average pooling
def adaptive_bins(size, out, xp, dtype):
    """(out×size) averaging matrix: row i averages positions ⌊i·size/out⌋ … ⌈(i+1)·size/out⌉ − 1."""
    bins = xp.arange(out)[:, None]
    start = (bins * size) // out
    end = -((-(bins + 1) * size) // out)                       # ceiling division
    positions = xp.arange(size)[None, :]
    inside = (positions >= start) & (positions < end)
    return (inside / (end - start)).astype(dtype)


@accepts_unbatched("adaptive_avg_pool2d")
def adaptive_avg_pool2d(input, output_size):
    """Average into a fixed (OH, OW) grid of bins, as ``torch.nn.functional.adaptive_avg_pool2d``.

    ``output_size`` is an int or a pair; ``None`` keeps that axis. Computed as P_h · x · P_wᵀ with the
    bin-averaging matrices of ``adaptive_bins``; ``output_size=1`` is ASPP's image pooling (§7.4.3).
    """
    size = tuple(input.shape[-2:])
    requested = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(requested) != 2 or not all(o is None or (isinstance(o, Integral) and o >= 0) for o in requested):
        raise ValueError("adaptive_avg_pool2d: output_size must be a non-negative int or a pair of them (None keeps "
                         f"that axis); got output_size={output_size!r}")
    out = tuple(s if o is None else int(o) for s, o in zip(size, requested))
    xp = get_array_module(input)
    rows, columns = (adaptive_bins(s, o, xp, input.dtype) for s, o in zip(size, out))
    return resample(input, rows, columns)
