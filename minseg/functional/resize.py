"""Resizing feature maps: ``interpolate`` (nearest, bilinear; linear for 1-D signals) as two small matrix products.

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

from ..core.autograd import Function
from ..core.backend import get_array_module
from ..core.threads import rowwise
from .shape import squeeze, unsqueeze

MODES = ("nearest", "linear", "bilinear")


def _mix(product, matrix, zero_reads, x):
    """``product(matrix, x)``, a matrix product that mixes one axis of x, as PyTorch's stencil kernels compute it.

    A plain product multiplies every weight by every value, so one NaN or ∞ in x would spoil a whole row
    of the output (0 · NaN is NaN). PyTorch reads only each output's stencil: the inputs with a non-zero
    weight, and ``zero_reads`` (bool, the matrix's shape), those it multiplies by a weight of 0. So the
    finite values go through one product, and a non-finite value reaches just the outputs that read it:
    NaN stays NaN, w · ±∞ is ±∞ (NaN when w = 0, or where +∞ and −∞ meet).
    """
    xp = get_array_module(x)
    finite = xp.isfinite(x)
    if bool(finite.all()):
        return product(matrix, x)
    output = product(matrix, xp.where(finite, x, 0))
    up, down = (x == xp.inf).astype(x.dtype), (x == -xp.inf).astype(x.dtype)
    positive, negative = (matrix > 0).astype(x.dtype), (matrix < 0).astype(x.dtype)
    reads, zero = ((matrix != 0) | zero_reads).astype(x.dtype), zero_reads.astype(x.dtype)
    to_plus = (product(positive, up) + product(negative, down)) > 0
    to_minus = (product(positive, down) + product(negative, up)) > 0
    to_nan = (product(reads, xp.isnan(x).astype(x.dtype)) + product(zero, up + down)) > 0
    to_nan |= to_plus & to_minus
    return xp.where(to_nan, xp.nan, xp.where(to_plus, xp.inf, xp.where(to_minus, -xp.inf, output)))


def _separable_product(x, rows, cols):
    """rows · x[n, c] · colsᵀ for every plane of x (N, C, H, W) → (N, C, OH, OW); ``rows`` and ``cols`` are
    (matrix, zero reads) pairs. Columns are mixed first, then rows: the order of PyTorch's sums, which
    decides where NaN and ∞ end up."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (row_matrix, row_zeros), (col_matrix, col_zeros) = rows, cols

    def planes(out, part):                      # a chunk of images, on one host thread (one-thread GEMMs)
        along_width = _mix(lambda m, v: v @ m.T, col_matrix, col_zeros, part.reshape(-1, w))   # one GEMM
        along_width = along_width.reshape(len(part), c, h, col_matrix.shape[0])
        out[...] = _mix(lambda m, v: m @ v, row_matrix, row_zeros, along_width)        # (n, C, OH, OW)

    out = xp.empty((n, c, row_matrix.shape[0], col_matrix.shape[0]), dtype=xp.result_type(x, row_matrix, col_matrix))
    return rowwise(planes, out, x)


class Resample(Function):
    """y = A_h · x · A_wᵀ per (n, c) plane;  ∂L/∂x = A_hᵀ · g · A_w (a NaN or ∞ stays in its stencil)."""

    def forward(self, input, *, rows, cols, row_zero_reads, col_zero_reads):
        self.save_for_backward(rows, cols, row_zero_reads, col_zero_reads)
        return _separable_product(input, (rows, row_zero_reads), (cols, col_zero_reads))

    def backward(self, grad):
        rows, cols, row_zeros, col_zeros = self.saved
        return _separable_product(grad, (rows.T, row_zeros.T), (cols.T, col_zeros.T))


def resample(input, rows, cols, row_zero_reads=None, col_zero_reads=None):
    """Apply the separable linear map ``rows · x · colsᵀ`` to every (n, c) plane of a 4-D input.

    ``rows`` (OH×H) and ``cols`` (OW×W) are constant arrays on the input's device and dtype. The zero
    reads (bool, same shapes; default none) mark inputs an output multiplies by a weight of 0, which
    matters only for NaN and ∞ (``_mix``).
    """
    xp = get_array_module(rows)
    row_zero_reads = xp.zeros(rows.shape, bool) if row_zero_reads is None else row_zero_reads
    col_zero_reads = xp.zeros(cols.shape, bool) if col_zero_reads is None else col_zero_reads
    return Resample.apply(input, rows=rows, cols=cols, row_zero_reads=row_zero_reads, col_zero_reads=col_zero_reads)


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


def _fused_multiply_add(a, b, c):
    """a · b + c with one rounding, as the FMA instruction in PyTorch's compiled kernel computes it (it
    decides whether a weight is exactly 0 or 3e-17, which matters for ∞). float32 products are exact in
    float64; a float64 product's rounding error is recovered exactly with Dekker's split."""
    if a.dtype == "float32":
        return (a.astype("float64") * b.astype("float64") + c).astype("float32")
    split = 134217729.0  # 2^27 + 1 cuts a float64 mantissa into two halves whose products are exact

    def halves(v):
        t = split * v
        high = t - (t - v)
        return high, v - high

    product = a * b
    (a_high, a_low), (b_high, b_low) = halves(a), halves(b)
    error = ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low
    return (product + c) + error


def _linear_sources(in_size, out_size, align_corners, scale_factor, xp, dtype):
    """For each output o: the input rows ⌊s⌋ and ⌊s⌋ + 1 it reads (clamped to the last row) and the weight λ
    of the upper one (see ``linear_matrix``)."""
    real = xp.float64 if dtype == xp.float64 else xp.float32
    out = xp.arange(out_size).astype(real)
    if align_corners:
        step = real(in_size - 1) / real(out_size - 1) if out_size > 1 else real(0)
        source = out * step
    else:
        step = real(1.0 / scale_factor) if scale_factor else real(in_size) / real(out_size)
        step = xp.full(out_size, step, dtype=real)
        source = xp.maximum(_fused_multiply_add(step, out + real(0.5), real(-0.5)), real(0))
    lower = xp.minimum(xp.floor(source.astype(xp.float32)).astype(xp.int64), in_size - 1)  # floorf, as PyTorch
    upper = xp.minimum(lower + 1, in_size - 1)
    return lower, upper, xp.clip(source - lower.astype(real), 0, 1)


def linear_matrix(in_size, out_size, align_corners, scale_factor, xp, dtype):
    """(out×in) linear weights: output o reads source s(o) between input rows ⌊s⌋ and ⌊s⌋ + 1.

    align_corners=True:  s = o · (in − 1)/(out − 1)  (the corner pixels' centres coincide);
    align_corners=False: s = max(step · (o + ½) − ½, 0), step = 1/scale or in/out  (pixel areas align).
    Weights: 1 − λ on ⌊s⌋ and λ = s − ⌊s⌋ on ⌊s⌋ + 1, both clamped to the last row. Coordinates are
    computed as PyTorch's CPU kernel does: in float64 for float64 inputs and in float32 otherwise, with a
    fused multiply-add, and ⌊s⌋ taken of s rounded to float32 (λ is clipped to [0, 1]).
    """
    if out_size == in_size:
        return xp.eye(in_size, dtype=dtype)
    lower, upper, weight_upper = _linear_sources(in_size, out_size, align_corners, scale_factor, xp, dtype)
    positions = xp.arange(in_size)[None, :]
    return ((positions == lower[:, None]) * (1 - weight_upper)[:, None]
            + (positions == upper[:, None]) * weight_upper[:, None]).astype(dtype)


def linear_zero_reads(in_size, out_size, align_corners, scale_factor, xp, dtype):
    """(out×in) bool: the input row an output multiplies by a weight of 0 — ⌊s⌋ + 1 where λ = 0, ⌊s⌋ where
    λ = 1 — which PyTorch reads all the same, so a NaN or ∞ there still makes that output NaN. At a kept
    size PyTorch reads each row twice, with weights 1 and 0."""
    if out_size == in_size:
        return xp.eye(in_size, dtype=bool)
    lower, upper, weight_upper = _linear_sources(in_size, out_size, align_corners, scale_factor, xp, dtype)
    positions = xp.arange(in_size)[None, :]
    return (((positions == upper[:, None]) & (weight_upper == 0)[:, None])
            | ((positions == lower[:, None]) & (weight_upper == 1)[:, None]))


def _as_tuple(value, count, name, kind, described, axes):
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * count
    if len(values) != count or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise ValueError(f"interpolate: {name} must be {described} for {axes}; got {name}={value!r}")
    return values


def _output_size(input_sizes, size, scale_factor, recompute_scale_factor, axes):
    """(output size, scales used for the coordinate mapping, or Nones to use in/out), one per spatial axis."""
    if (size is None) == (scale_factor is None):
        which = "both were given" if size is not None else "neither was given"
        raise ValueError(f"interpolate: give exactly one of size and scale_factor; {which}")
    count = len(input_sizes)
    pair = "a pair of " if count == 2 else "a 1-tuple of "
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor=True is only meaningful with scale_factor, "
                             f"not with an explicit size={size!r}")
        return _as_tuple(size, count, "size", Integral, f"an int or {pair}ints", axes), (None,) * count
    scales = _as_tuple(scale_factor, count, "scale_factor", Real, f"a number or {pair}numbers", axes)
    out = tuple(int(length * scale) for length, scale in zip(input_sizes, scales))  # ⌊in · scale⌋ as torch
    return out, (None,) * count if recompute_scale_factor else scales


def _check_rank(input, mode):
    """PyTorch's rule: 3-D inputs are (N, C, L) signals (nearest, linear), 4-D ones (N, C, H, W) images
    (nearest, bilinear)."""
    ranks = {"nearest": (3, 4), "linear": (3,), "bilinear": (4,)}[mode]
    if input.ndim in ranks:
        return
    layouts = {3: "3-D (N, C, L)", 4: "4-D (N, C, H, W)"}
    hint = ("; a 3-D input is a batch of 1-D signals, as in PyTorch: add a batch axis (unsqueeze(0)) to resize "
            "one (C, H, W) image" if input.ndim == 3 and mode == "bilinear" else "")
    raise ValueError(f"interpolate: mode={mode!r} needs a {' or '.join(layouts[r] for r in ranks)} input; got "
                     f"{input.ndim}-D with shape {tuple(input.shape)}{hint}")


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize like ``torch.nn.functional.interpolate``: (N, C, H, W) images with "nearest" or "bilinear",
    (N, C, L) signals with "nearest" or "linear".

    Give ``size`` (int or one per spatial axis) or ``scale_factor`` (number or one per axis; output
    ⌊H · scale⌋). With ``scale_factor`` the coordinate mapping uses 1/scale_factor, not H/OH — they differ
    when H · scale is not an integer — unless ``recompute_scale_factor=True``. ``align_corners`` (linear
    modes only, default False) maps corner pixel centres onto each other. A NaN or ∞ reaches only the
    outputs that read it (``_mix``). See ``linear_matrix`` and ``nearest_matrix``.
    Used for FCN's upsampling (§7.2.2), resize-then-convolve decoders (§7.7.3) and full-image inference (§7.7.1).
    """
    if mode not in MODES:
        raise ValueError(f"interpolate: mode must be one of {MODES}; got mode={mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners can only be set with mode='linear' or 'bilinear'; "
                         f"got align_corners={align_corners!r} with mode='nearest'")
    _check_rank(input, mode)
    in_sizes = tuple(input.shape[2:])
    out_sizes, scales = _output_size(in_sizes, size, scale_factor, recompute_scale_factor,
                                     "(L,)" if input.ndim == 3 else "(H, W)")
    if min(out_sizes) <= 0:
        raise ValueError(f"interpolate: output size must be positive; got {out_sizes} for input size {in_sizes}")
    signals = input.ndim == 3
    if signals:  # a signal is an image one row high
        input, in_sizes, out_sizes, scales = unsqueeze(input, 2), (1,) + in_sizes, (1,) + out_sizes, (None,) + scales
    xp = get_array_module(input)
    axes = list(zip(in_sizes, out_sizes, scales))
    if mode == "nearest":
        (rows, cols), zero_reads = (nearest_matrix(i, o, s, xp, input.dtype) for i, o, s in axes), (None, None)
    else:
        corners = bool(align_corners)
        rows, cols = (linear_matrix(i, o, corners, s, xp, input.dtype) for i, o, s in axes)
        zero_reads = tuple(linear_zero_reads(i, o, corners, s, xp, input.dtype) for i, o, s in axes)
    output = resample(input, rows, cols, *zero_reads)
    return squeeze(output, 2) if signals else output


def bilinear_resize(input, size):
    """``interpolate(input, size, mode="bilinear", align_corners=False)``: how DeepLab brings its logits to
    the image size (§7.4) and how full-image inference resizes (§7.7.1)."""
    return interpolate(input, size=tuple(size), mode="bilinear", align_corners=False)
