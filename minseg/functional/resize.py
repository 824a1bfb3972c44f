"""Resizing feature maps: ``interpolate`` (nearest, bilinear) as two small matrix products.

Nearest and bilinear resizing are *separable*: every output row mixes input rows with fixed weights,
and independently every output column mixes input columns. Writing those weights as matrices
A_h (OH×H) and A_w (OW×W), each (n, c) plane is resized by

    y = A_h · x · A_wᵀ,        and the gradient is the transpose:  ∂L/∂x = A_hᵀ · g · A_w.

A row of A holds one 1 (nearest) or two weights 1 − λ and λ (linear). Building A with the same index
arithmetic as PyTorch reproduces ``torch.nn.functional.interpolate`` exactly, on NumPy and CuPy alike,
and its backward needs no scatter. ``adaptive_avg_pool2d`` (pooling.py) uses the same product.

Where the chapter uses it: FCN's in-network upsampling of coarse scores back to the image (§7.2.2);
"resize, then convolve" instead of transposed convolutions to avoid checkerboard artifacts (§7.7.3);
full-image inference, which resizes the input down and the prediction back up (§7.7.1).
"""

from __future__ import annotations

from numbers import Integral, Real

from ..autograd import Function
from ..backend import get_array_module

MODES = ("nearest", "bilinear")


def _separable_product(x, rows, cols):
    """rows · x[n, c] · colsᵀ for every plane of x (N, C, H, W) → (N, C, OH, OW)."""
    n, c, h, w = x.shape
    along_width = (x.reshape(n * c * h, w) @ cols.T).reshape(n, c, h, cols.shape[0])  # one GEMM
    return rows @ along_width                                                         # (N, C, OH, OW)


class Resample(Function):
    """y = A_h · x · A_wᵀ per (n, c) plane;  ∂L/∂x = A_hᵀ · g · A_w."""

    def forward(self, input, rows=None, cols=None):
        self.save_for_backward(rows, cols)
        return _separable_product(input, rows, cols)

    def backward(self, grad):
        rows, cols = self.saved
        return _separable_product(grad, rows.T, cols.T)


def resample(input, rows, cols):
    """Apply the separable linear map ``rows · x · colsᵀ`` to every (n, c) plane of a 4-D input.

    ``rows`` (OH×H) and ``cols`` (OW×W) are constant arrays on the input's device and dtype.
    """
    return Resample.apply(input, rows=rows, cols=cols)


def _one_hot_rows(source, in_size, xp, dtype):
    """Matrix with a 1 at (o, source[o]): output o copies input ``source[o]``."""
    return (source[:, None] == xp.arange(in_size)[None, :]).astype(dtype)


def nearest_matrix(in_size, out_size, scale_factor, xp, dtype):
    """(out×in) nearest-neighbour weights: source = min(⌊o · step⌋, in − 1), step = 1/scale or in/out.

    As in PyTorch's CPU kernel, step and product are float32 whatever the input dtype, and a kept or
    doubled size short-cuts to o or ⌊o/2⌋ even when a scale_factor such as 2.1 produced that size.
    """
    out = xp.arange(out_size)
    if out_size == in_size:
        return _one_hot_rows(out, in_size, xp, dtype)
    if out_size == 2 * in_size:
        return _one_hot_rows(out // 2, in_size, xp, dtype)
    if scale_factor:
        step = xp.float32(1.0 / scale_factor)
    else:
        step = xp.float32(in_size) / xp.float32(out_size)
    source = xp.floor(out.astype(xp.float32) * step).astype(xp.int64)
    return _one_hot_rows(xp.minimum(source, in_size - 1), in_size, xp, dtype)


def linear_matrix(in_size, out_size, align_corners, scale_factor, xp, dtype):
    """(out×in) linear weights: output o reads source s(o) between input rows ⌊s⌋ and ⌊s⌋ + 1.

    align_corners=True:  s = o · (in − 1)/(out − 1)  (the corner pixels' centres coincide);
    align_corners=False: s = max(step · (o + ½) − ½, 0), step = 1/scale or in/out  (pixel areas align).
    Weights: 1 − λ on ⌊s⌋ and λ = s − ⌊s⌋ on ⌊s⌋ + 1, both clamped to the last row. Coordinates are
    computed in float64 for float64 inputs and in float32 otherwise, as PyTorch's CPU kernel does.
    """
    real = xp.float64 if dtype == xp.float64 else xp.float32
    if out_size == in_size:
        return xp.eye(in_size, dtype=dtype)
    out = xp.arange(out_size).astype(real)
    if align_corners:
        step = real(in_size - 1) / real(out_size - 1) if out_size > 1 else real(0)
        source = out * step
    else:
        step = real(1.0 / scale_factor) if scale_factor else real(in_size) / real(out_size)
        source = xp.maximum(step * (out + real(0.5)) - real(0.5), real(0))
    lower = xp.minimum(xp.floor(source).astype(xp.int64), in_size - 1)
    upper = xp.minimum(lower + 1, in_size - 1)
    weight_upper = xp.clip(source - lower.astype(real), 0, 1)
    positions = xp.arange(in_size)[None, :]
    return ((positions == lower[:, None]) * (1 - weight_upper)[:, None]
            + (positions == upper[:, None]) * weight_upper[:, None]).astype(dtype)


def _as_pair(value, name, kind, described):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, kind) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"interpolate: {name} must be {described} for (H, W); got {name}={value!r}")
    return pair


def _output_size(input_hw, size, scale_factor, recompute_scale_factor):
    """(output size, scales used for the coordinate mapping, or (None, None) to use in/out)."""
    if (size is None) == (scale_factor is None):
        which = "both were given" if size is not None else "neither was given"
        raise ValueError(f"interpolate: give exactly one of size and scale_factor; {which}")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor=True is only meaningful with scale_factor, "
                             f"not with an explicit size={size!r}")
        return _as_pair(size, "size", Integral, "an int or a pair of ints"), (None, None)
    scales = _as_pair(scale_factor, "scale_factor", Real, "a number or a pair of numbers")
    out = tuple(int(length * scale) for length, scale in zip(input_hw, scales))  # ⌊in · scale⌋ as torch
    return out, (None, None) if recompute_scale_factor else scales


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize a 4-D (N, C, H, W) input like ``torch.nn.functional.interpolate`` (modes nearest, bilinear).

    Give ``size`` (int or (OH, OW)) or ``scale_factor`` (number or pair; output ⌊H · scale⌋). With
    ``scale_factor`` the coordinate mapping uses 1/scale_factor, not H/OH — they differ when H · scale is
    not an integer — unless ``recompute_scale_factor=True``. ``align_corners`` (bilinear only, default
    False) maps corner pixel centres onto each other. See ``linear_matrix`` and ``nearest_matrix``.
    Used for FCN's upsampling (§7.2.2), resize-then-convolve decoders (§7.7.3) and full-image inference (§7.7.1).
    """
    if mode not in MODES:
        raise ValueError(f"interpolate: mode must be one of {MODES}; got mode={mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners can only be set with mode='bilinear'; "
                         f"got align_corners={align_corners!r} with mode='nearest'")
    if input.ndim != 4:
        raise ValueError(f"interpolate: input must be 4-D (N, C, H, W); got {input.ndim}-D with shape "
                         f"{tuple(input.shape)}")
    in_hw = tuple(input.shape[2:])
    out_hw, scales = _output_size(in_hw, size, scale_factor, recompute_scale_factor)
    if min(out_hw) <= 0:
        raise ValueError(f"interpolate: output size must be positive; got {out_hw} for input size {in_hw}")
    xp = get_array_module(input)
    if mode == "nearest":
        rows, cols = (nearest_matrix(i, o, s, xp, input.dtype) for i, o, s in zip(in_hw, out_hw, scales))
    else:
        rows, cols = (linear_matrix(i, o, bool(align_corners), s, xp, input.dtype)
                      for i, o, s in zip(in_hw, out_hw, scales))
    return resample(input, rows, cols)
