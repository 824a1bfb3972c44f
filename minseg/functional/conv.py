"""Convolution and transposed convolution through im2col/col2im (§7.2.2, §7.4.2; Dumoulin & Visin).

**im2col.** A convolution reads, for each output pixel, a KH×KW window of every input channel. ``im2col``
copies those windows into columns ``(N, C, KH, KW, OH, OW)``: for each kernel offset ``(i, j)`` the
slab ``cols[:, :, i, j]`` is one strided slice of the (padded) input, starting at ``(i·dh, j·dw)`` and
stepping by the stride — dilation is just the spacing between offsets (§7.4.2's ``X(i + d·m, j + d·n)``).
The convolution is then one matrix product per image:

    out[n] = W · cols[n],   W: (O, C·KH·KW),  cols[n]: (C·KH·KW, OH·OW).

**col2im** is the same loop with ``+=``: it adds every column entry back onto the input pixel it was
copied from. It is the adjoint (transpose) of im2col: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.

**Why conv's input gradient is a transposed convolution.** Write the convolution as a linear map
``y = C x`` with ``C = W ∘ im2col``. Its input gradient is ``Cᵀ g = col2im(Wᵀ g)`` — multiply by the
transposed weight matrix, then scatter the columns back: exactly the transposed convolution of ``g``
with the same weight. Conversely a transposed convolution *is* ``y = Cᵀ x``, so its input gradient is
``C g``, an ordinary convolution. Both weight gradients come from the same product ``g · colsᵀ``
(``conv_weight_grad``). This is why one im2col/col2im pair serves all four directions.

**Tiles.** Columns are never built for a whole batch. The work is cut into tiles — several small
images, or a band of output rows of one large image — whose columns take about ``TILE_BYTES`` (4 MiB):
``rows per tile = TILE_BYTES / (C·KH·KW·OW·itemsize)``. The column memory is thus bounded whatever the
image and batch size, and a tile is still in the CPU cache when the matrix product reads it, which
makes im2col far cheaper than writing one huge column matrix to main memory and reading it back.
A GPU has no such cache to fit but pays ~10 µs to launch each copy and product, so there the budget is
``GPU_TILE_BYTES`` (256 MiB): a few tiles per layer, each a large product.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from .shape import pad

TILE_BYTES = 4 * 2**20
GPU_TILE_BYTES = 256 * 2**20


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """o = ⌊(i + 2p − d·(k − 1) − 1) / s⌋ + 1  (Dumoulin & Visin, relationship 6 with dilation)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:  # the last window must start inside the input or left pad
            out -= 1
        return out
    return span // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """o = (i − 1)·s − 2p + d·(k − 1) + output_padding + 1  (Dumoulin & Visin, relationship 14)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _window_slices(offset: int, stride: int, count: int) -> slice:
    """Rows (or columns) ``offset, offset + stride, …`` — ``count`` of them — as one slice."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


class Windows:
    """The sliding windows of one convolution or pooling: where each kernel tap reads the input.

    Built from the input size (H, W), kernel, stride, padding and dilation; ``out_hw`` overrides the
    usual output size (pooling's ceil_mode, or the backward of a transposed conv). The input is padded
    by ``padding`` on every side and, at the bottom/right, as far as the last window reaches.
    """

    def __init__(self, in_hw, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1), out_hw=None):
        self.in_hw, self.kernel, self.stride = tuple(in_hw), tuple(kernel), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self.out_hw = tuple(out_hw) if out_hw else tuple(
            conv_output_size(*args) for args in zip(self.in_hw, self.kernel, self.stride, self.padding, self.dilation))
        # rows/columns past the input that the last window reaches (pooling's ceil_mode, odd strides)
        self.far_padding = tuple(
            max(0, (o - 1) * s + d * (k - 1) + 1 - p - size)
            for o, s, d, k, p, size in zip(self.out_hw, self.stride, self.dilation, self.kernel, self.padding,
                                           self.in_hw))
        # a 1×1 kernel at stride 1 without padding reads each pixel once: the input *is* the column matrix
        self.pointwise = self.kernel == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0) \
            and self.out_hw == self.in_hw

    def pad(self, x, value=0.0):
        """(N, C, H, W) → (N, C, ph + H + far, pw + W + far) filled with ``value``."""
        (ph, pw), (fh, fw) = self.padding, self.far_padding
        if not (ph or pw or fh or fw):
            return x
        return get_array_module(x).pad(x, ((0, 0), (0, 0), (ph, fh), (pw, fw)), constant_values=value)

    def crop(self, padded):
        """Undo ``pad``: the (N, C, H, W) interior of a padded array."""
        (ph, pw), (h, w) = self.padding, self.in_hw
        return padded[:, :, ph:ph + h, pw:pw + w]

    def _taps(self, first_row: int, rows: int):
        """For every kernel tap (i, j): the slices of the padded input that it reads for output rows
        ``first_row … first_row + rows − 1`` and every output column."""
        (kh, kw), (sh, sw), (dh, dw), ow = self.kernel, self.stride, self.dilation, self.out_hw[1]
        for i in range(kh):
            row_slice = _window_slices(first_row * sh + i * dh, sh, rows)
            for j in range(kw):
                yield i, j, row_slice, _window_slices(j * dw, sw, ow)

    def columns(self, padded, first_row: int = 0, last_row: int | None = None):
        """im2col of output rows [first_row, last_row): (N, C, KH, KW, rows, OW) from a padded input."""
        last_row = self.out_hw[0] if last_row is None else last_row
        rows = last_row - first_row
        n, c = padded.shape[:2]
        if self.pointwise:
            return padded[:, :, None, None, first_row:last_row]              # a view, no copy
        cols = get_array_module(padded).empty((n, c) + self.kernel + (rows, self.out_hw[1]), dtype=padded.dtype)
        for i, j, row_slice, col_slice in self._taps(first_row, rows):
            cols[:, :, i, j] = padded[:, :, row_slice, col_slice]
        return cols

    def add_columns(self, padded, cols, first_row: int = 0) -> None:
        """col2im, in place: add each column entry back onto the padded-input pixel it was read from."""
        rows = cols.shape[4]
        if self.pointwise:
            padded[:, :, first_row:first_row + rows] += cols[:, :, 0, 0]
            return
        for i, j, row_slice, col_slice in self._taps(first_row, rows):
            padded[:, :, row_slice, col_slice] += cols[:, :, i, j]

    def tiles(self, batch: int, channels: int, array):
        """Split the work into tiles ``(images, first_row, last_row)`` whose columns take about
        ``TILE_BYTES`` (``GPU_TILE_BYTES`` when ``array`` is on a GPU): several whole images when they
        are small, else bands of output rows of one image. On the CPU, small tiles stay in the cache
        between im2col and the matrix product that reads them."""
        oh, ow = self.out_hw
        if self.pointwise:                                                   # no column copy at all
            yield slice(0, batch), 0, oh
            return
        budget = TILE_BYTES if isinstance(array, np.ndarray) else GPU_TILE_BYTES
        bytes_per_row = channels * self.kernel[0] * self.kernel[1] * ow * array.itemsize
        rows_per_tile = max(1, budget // bytes_per_row)
        if rows_per_tile >= oh:
            images = rows_per_tile // oh
            for start in range(0, batch, images):
                yield slice(start, min(batch, start + images)), 0, oh
            return
        for image in range(batch):
            for first in range(0, oh, rows_per_tile):
                yield slice(image, image + 1), first, min(oh, first + rows_per_tile)


def im2col(x, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1), out_size=None, pad_value=0.0):
    """Windows of ``x`` (N, C, H, W) as columns (N, C, KH, KW, OH, OW); the whole image at once.

    ``out_size`` (OH, OW) overrides the usual output size (pooling's ceil_mode); padding is filled with
    ``pad_value`` (−inf for max pooling).
    """
    windows = Windows(x.shape[2:], kernel_size, stride, padding, dilation, out_size)
    return windows.columns(windows.pad(x, pad_value))


def col2im(cols, input_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Adjoint of ``im2col``: sum the columns (N, C, KH, KW, OH, OW) back onto an (N, C, H, W) array."""
    n, c, kh, kw, oh, ow = cols.shape
    windows = Windows(tuple(input_shape)[-2:], (kh, kw), stride, padding, dilation, (oh, ow))
    if windows.pointwise:
        return cols.reshape(n, c, oh, ow)
    h, w = windows.in_hw
    (ph, pw), (fh, fw) = windows.padding, windows.far_padding
    padded = get_array_module(cols).zeros((n, c, ph + h + fh, pw + w + fw), dtype=cols.dtype)
    windows.add_columns(padded, cols)
    return windows.crop(padded)


# ------------------------------------------------------------------ the three products
def conv_forward(x, weight, stride, padding, dilation, groups, out_hw=None):
    """y = W · im2col(x) per image and group: (N, C, H, W) → (N, O, OH, OW); weight (O, C/G, KH, KW).

    ``out_hw`` fixes (OH, OW) when this conv is the backward of a transposed conv whose ``output_padding``
    added rows that no window reads.
    """
    xp = get_array_module(x, weight)
    n, c = x.shape[:2]
    o, c_per_group, kh, kw = weight.shape
    windows = Windows(x.shape[2:], (kh, kw), stride, padding, dilation, out_hw)
    ow = windows.out_hw[1]
    w_groups = weight.reshape(groups, o // groups, c_per_group * kh * kw)           # (G, O/G, K)
    padded = windows.pad(x)
    out = xp.empty((n, o) + windows.out_hw, dtype=xp.result_type(x, weight))
    for images, first, last in windows.tiles(n, c, x):
        cols = windows.columns(padded[images], first, last)                       # (n, C, KH, KW, rows, OW)
        cols = cols.reshape(-1, groups, c_per_group * kh * kw, (last - first) * ow)  # (n, G, K, L)
        product = xp.matmul(w_groups, cols)                                       # (n, G, O/G, L)
        out[images, :, first:last] = product.reshape(-1, o, last - first, ow)
    return out


def conv_transpose_forward(x, weight, out_hw, stride, padding, dilation, groups):
    """y = col2im(Wᵀ · x): the adjoint of ``conv_forward``. x (N, C, H, W), weight (C, O/G, KH, KW) → (N, O, *out_hw).

    The windows are those of the convolution that maps the output back to ``x``.
    """
    xp = get_array_module(x, weight)
    n, c, h, w = x.shape
    _, o_per_group, kh, kw = weight.shape
    o = o_per_group * groups
    windows = Windows(out_hw, (kh, kw), stride, padding, dilation, (h, w))
    w_groups_t = weight.reshape(groups, c // groups, o_per_group * kh * kw).swapaxes(1, 2)  # (G, K, C/G)
    (ph, pw), (fh, fw) = windows.padding, windows.far_padding
    padded = xp.zeros((n, o, ph + out_hw[0] + fh, pw + out_hw[1] + fw), dtype=xp.result_type(x, weight))
    for images, first, last in windows.tiles(n, o, x):
        x_tile = x[images, :, first:last].reshape(-1, groups, c // groups, (last - first) * w)  # (n, G, C/G, L)
        cols = xp.matmul(w_groups_t, x_tile)                                      # (n, G, K, L)
        windows.add_columns(padded[images], cols.reshape(-1, o, kh, kw, last - first, w), first)
    return windows.crop(padded)


def conv_weight_grad(x, grad_out, weight_shape, stride, padding, dilation, groups):
    """dL/dW = Σₙ g[n] · im2col(x)[n]ᵀ for the convolution x → grad_out's shape; returns ``weight_shape``."""
    xp = get_array_module(x, grad_out)
    n, c = x.shape[:2]
    o, c_per_group, kh, kw = weight_shape
    windows = Windows(x.shape[2:], (kh, kw), stride, padding, dilation, grad_out.shape[2:])
    ow = windows.out_hw[1]
    padded = windows.pad(x)
    grad_t = xp.zeros((groups, c_per_group * kh * kw, o // groups), dtype=xp.result_type(x, grad_out))  # (G, K, O/G)
    for images, first, last in windows.tiles(n, c, x):
        cols = windows.columns(padded[images], first, last)
        cols = cols.reshape(-1, groups, c_per_group * kh * kw, (last - first) * ow)  # (n, G, K, L)
        g = grad_out[images, :, first:last].reshape(-1, groups, o // groups, (last - first) * ow)  # (n, G, O/G, L)
        for image in range(cols.shape[0]):
            # colsᵀ-side product (K × L)(L × O/G): measured ~2× faster in OpenBLAS than (O/G × L)(L × K)
            grad_t += xp.matmul(cols[image], g[image].swapaxes(1, 2))             # (G, K, O/G)
    return grad_t.swapaxes(1, 2).reshape(weight_shape)


# ------------------------------------------------------------------ autograd Functions
class Conv2d(Function):
    """y = conv(x, W) + b. Backward: dx = conv_transpose(g, W), dW = g · colsᵀ, db = Σ g."""

    def forward(self, input, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        self.geometry = (stride, padding, dilation, groups)
        self.input_hw = input.shape[2:]
        self.save_for_backward(input if self.needs_input_grad[1] else None,
                               weight if self.needs_input_grad[0] else None, weight.shape)
        out = conv_forward(input, weight, *self.geometry)
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)

    def backward(self, grad):
        input, weight, weight_shape = self.saved
        grad_input = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            grad_input = conv_transpose_forward(grad, weight, self.input_hw, *self.geometry)
        if self.needs_input_grad[1]:
            grad_weight = conv_weight_grad(input, grad, weight_shape, *self.geometry)
        if self.needs_input_grad[2]:
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_input, grad_weight, grad_bias


class ConvTranspose2d(Function):
    """y = conv_transpose(x, W) + b, the adjoint of conv. Backward: dx = conv(g, W), dW = x · colsᵀ(g)."""

    def forward(self, input, weight, bias, out_hw=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        self.geometry = (stride, padding, dilation, groups)
        self.input_hw = input.shape[2:]
        self.save_for_backward(input if self.needs_input_grad[1] else None,
                               weight if self.needs_input_grad[0] else None, weight.shape)
        out = conv_transpose_forward(input, weight, out_hw, *self.geometry)
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)

    def backward(self, grad):
        input, weight, weight_shape = self.saved
        grad_input = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            grad_input = conv_forward(grad, weight, *self.geometry, out_hw=self.input_hw)
        if self.needs_input_grad[1]:
            # the transposed conv's weight is the weight of the conv grad → input, so the roles swap
            grad_weight = conv_weight_grad(grad, input, weight_shape, *self.geometry)
        if self.needs_input_grad[2]:
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_input, grad_weight, grad_bias


# ------------------------------------------------------------------ argument checking
def _pair(value, name: str, op: str, minimum: int) -> tuple:
    """An int or a pair of ints (each ≥ minimum) → a pair, with an error that names the argument."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= minimum for v in pair):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints ≥ {minimum}; got {value!r}")
    return tuple(int(v) for v in pair)


def _check_operands(op, input, weight, bias, in_channels_axis, groups):
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W); got shape {input.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D; got shape {weight.shape}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int; got {groups!r}")
    channels = input.shape[1]
    if in_channels_axis == 1:   # conv2d: weight (O, C/G, KH, KW)
        expected, out_channels = weight.shape[1] * groups, weight.shape[0]
        rule = f"weight.shape[1]={weight.shape[1]} × groups={groups}"
    else:                       # conv_transpose2d: weight (C, O/G, KH, KW)
        expected, out_channels = weight.shape[0], weight.shape[1] * groups
        rule = f"weight.shape[0]={weight.shape[0]}"
    if channels % groups or out_channels % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({channels}) and the output "
                         f"channels ({out_channels})")
    if channels != expected:
        raise ValueError(f"{op}: input has {channels} channels but weight {tuple(weight.shape)} expects {expected} "
                         f"({rule})")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},); got {tuple(bias.shape)}")
    return out_channels


def _same_padding(op, kernel, stride, dilation):
    """Total padding d·(k − 1) per axis for padding='same'; odd totals put the extra pixel at the end."""
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1 (as in PyTorch); got stride={stride}")
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple(t // 2 for t in totals), tuple(t % 2 for t in totals)


# ------------------------------------------------------------------ public ops
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of NCHW ``input`` with ``weight`` (O, C/G, KH, KW).

    ``padding`` is an int, a pair, ``"valid"`` (none: U-Net's unpadded convs, §7.3.3) or ``"same"``
    (output size = input size; stride 1). ``dilation`` spaces the kernel taps (atrous conv, §7.4.2);
    ``groups`` splits channels into independent convolutions (``groups = C`` is depthwise, §7.4.5).
    """
    _check_operands("conv2d", input, weight, bias, 1, groups)
    stride = _pair(stride, "stride", "conv2d", 1)
    dilation = _pair(dilation, "dilation", "conv2d", 1)
    kernel = tuple(weight.shape[2:])
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid'; got {padding!r}")
        padding, extra = ((0, 0), (0, 0)) if padding == "valid" else _same_padding("conv2d", kernel, stride, dilation)
        if any(extra):
            input = pad(input, (0, extra[1], 0, extra[0]))
    else:
        padding = _pair(padding, "padding", "conv2d", 0)
    for axis, name in ((0, "height"), (1, "width")):
        size = input.shape[2 + axis]
        if conv_output_size(size, kernel[axis], stride[axis], padding[axis], dilation[axis]) < 1:
            raise ValueError(f"conv2d: the dilated kernel ({dilation[axis] * (kernel[axis] - 1) + 1}) is larger than "
                             f"the padded input {name} ({size + 2 * padding[axis]}); input shape {input.shape}")
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution (§7.2.2), the adjoint of ``conv2d``; ``weight`` is (C, O/G, KH, KW) as in PyTorch.

    Each input pixel scatters a weighted copy of the kernel onto the output, ``stride`` pixels apart;
    ``output_padding`` adds rows/columns at the bottom/right to pick one of the ``stride`` output sizes that
    a strided conv maps to the same input size.
    """
    _check_operands("conv_transpose2d", input, weight, bias, 0, groups)
    stride = _pair(stride, "stride", "conv_transpose2d", 1)
    padding = _pair(padding, "padding", "conv_transpose2d", 0)
    output_padding = _pair(output_padding, "output_padding", "conv_transpose2d", 0)
    dilation = _pair(dilation, "dilation", "conv_transpose2d", 1)
    for axis in (0, 1):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(f"conv_transpose2d: output_padding must be smaller than stride or dilation; got "
                             f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
    out_hw = tuple(
        conv_transpose_output_size(input.shape[2 + a], weight.shape[2 + a], stride[a], padding[a], output_padding[a],
                                   dilation[a])
        for a in (0, 1)
    )
    if min(out_hw) < 1:
        raise ValueError(f"conv_transpose2d: padding={padding} leaves no output for input shape {input.shape}")
    return ConvTranspose2d.apply(input, weight, bias, out_hw=out_hw, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups)
