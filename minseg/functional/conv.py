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

**Memory.** The columns of one image take ``C·KH·KW·OH·OW·itemsize`` bytes (KH·KW times the input for
stride 1). A batch is processed in chunks of images so that the columns never exceed
``COLUMN_BUDGET_BYTES`` (256 MiB) — a long image in a big batch costs time, not an out-of-memory error.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from .shape import pad

COLUMN_BUDGET_BYTES = 256 * 2**20


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


def _padded_extent(size, kernel, stride, padding, dilation, out):
    """How many rows past the input (bottom/right padding) the windows of ``out`` outputs reach."""
    reach = (out - 1) * stride + dilation * (kernel - 1) + 1  # rows spanned from the top of the padding
    return max(0, reach - padding - size)


def _is_pointwise(kernel_size, stride, padding, out_hw, in_hw) -> bool:
    """A 1×1 kernel at stride 1 without padding reads each pixel exactly once: columns = input, no copy."""
    return tuple(kernel_size) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0) \
        and tuple(out_hw) == tuple(in_hw)


def im2col(x, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1), out_size=None, pad_value=0.0):
    """Windows of ``x`` (N, C, H, W) as columns (N, C, KH, KW, OH, OW).

    ``out_size`` (OH, OW) overrides the usual output size (pooling's ceil_mode); the bottom/right edge is
    then padded with ``pad_value`` as far as the last window needs.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = out_size or (conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw))
    if _is_pointwise(kernel_size, stride, padding, (oh, ow), (h, w)):
        return x.reshape(n, c, 1, 1, h, w)                                   # 1×1 conv: the input is the columns
    bottom = _padded_extent(h, kh, sh, ph, dh, oh)
    right = _padded_extent(w, kw, sw, pw, dw, ow)
    if ph or pw or bottom or right:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, bottom), (pw, right)), constant_values=pad_value)
    cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)           # (N, C, KH, KW, OH, OW)
    for i in range(kh):
        rows = _window_slices(i * dh, sh, oh)
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, rows, _window_slices(j * dw, sw, ow)]
    return cols


def col2im(cols, input_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Adjoint of ``im2col``: add each column entry back onto its input pixel → (N, C, H, W)."""
    xp = get_array_module(cols)
    n, c, kh, kw, oh, ow = cols.shape                                  # (N, C, KH, KW, OH, OW)
    h, w = input_shape[-2:]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if _is_pointwise((kh, kw), stride, padding, (oh, ow), (h, w)):
        return cols.reshape(n, c, h, w)
    bottom = _padded_extent(h, kh, sh, ph, dh, oh)
    right = _padded_extent(w, kw, sw, pw, dw, ow)
    padded = xp.zeros((n, c, ph + h + bottom, pw + w + right), dtype=cols.dtype)
    for i in range(kh):
        rows = _window_slices(i * dh, sh, oh)
        for j in range(kw):
            padded[:, :, rows, _window_slices(j * dw, sw, ow)] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]                          # (N, C, H, W)


# ------------------------------------------------------------------ the three products
def _images_per_chunk(column_bytes_per_image: int) -> int:
    return max(1, COLUMN_BUDGET_BYTES // max(1, column_bytes_per_image))


def _chunks(batch: int, per_chunk: int):
    for start in range(0, batch, per_chunk):
        yield slice(start, min(batch, start + per_chunk))


def conv_forward(x, weight, stride, padding, dilation, groups, out_hw=None):
    """y = W · im2col(x) per image and group: (N, C, H, W) → (N, O, OH, OW); weight (O, C/G, KH, KW).

    ``out_hw`` fixes (OH, OW) when this conv is the backward of a transposed conv whose ``output_padding``
    added rows that no window reads.
    """
    xp = get_array_module(x, weight)
    n, c, h, w = x.shape
    o, c_per_group, kh, kw = weight.shape
    oh, ow = out_hw or (conv_output_size(h, kh, stride[0], padding[0], dilation[0]),
                        conv_output_size(w, kw, stride[1], padding[1], dilation[1]))
    w_groups = weight.reshape(groups, o // groups, c_per_group * kh * kw)           # (G, O/G, K)
    out = xp.empty((n, o, oh, ow), dtype=xp.result_type(x, weight))
    per_chunk = _images_per_chunk(c * kh * kw * oh * ow * x.itemsize)
    for part in _chunks(n, per_chunk):
        cols = im2col(x[part], (kh, kw), stride, padding, dilation, (oh, ow))     # (n, C, KH, KW, OH, OW)
        cols = cols.reshape(-1, groups, c_per_group * kh * kw, oh * ow)           # (n, G, K, L)
        out[part] = xp.matmul(w_groups, cols).reshape(-1, o, oh, ow)              # (n, G, O/G, L) → (n, O, OH, OW)
    return out


def conv_transpose_forward(x, weight, out_hw, stride, padding, dilation, groups):
    """y = col2im(Wᵀ · x): the adjoint of ``conv_forward``. x (N, C, H, W), weight (C, O/G, KH, KW) → (N, O, *out_hw)."""
    xp = get_array_module(x, weight)
    n, c, h, w = x.shape
    _, o_per_group, kh, kw = weight.shape
    o = o_per_group * groups
    w_groups_t = weight.reshape(groups, c // groups, o_per_group * kh * kw).swapaxes(1, 2)  # (G, K, C/G)
    out = xp.empty((n, o) + tuple(out_hw), dtype=xp.result_type(x, weight))
    per_chunk = _images_per_chunk(o * kh * kw * h * w * x.itemsize)
    for part in _chunks(n, per_chunk):
        x_groups = x[part].reshape(-1, groups, c // groups, h * w)                  # (n, G, C/G, L)
        cols = xp.matmul(w_groups_t, x_groups)                                      # (n, G, K, L)
        cols = cols.reshape(-1, o, kh, kw, h, w)                                   # (n, O, KH, KW, H, W)
        out[part] = col2im(cols, out_hw, stride, padding, dilation)
    return out


def conv_weight_grad(x, grad_out, weight_shape, stride, padding, dilation, groups):
    """dL/dW = Σₙ g[n] · im2col(x)[n]ᵀ for the convolution x → grad_out's shape; returns ``weight_shape``."""
    xp = get_array_module(x, grad_out)
    n, c, h, w = x.shape
    o, c_per_group, kh, kw = weight_shape
    _, _, oh, ow = grad_out.shape
    grad = xp.zeros((groups, o // groups, c_per_group * kh * kw), dtype=xp.result_type(x, grad_out))
    per_chunk = _images_per_chunk(c * kh * kw * oh * ow * x.itemsize)
    for part in _chunks(n, per_chunk):
        cols = im2col(x[part], (kh, kw), stride, padding, dilation, out_size=(oh, ow))
        cols = cols.reshape(-1, groups, c_per_group * kh * kw, oh * ow)           # (n, G, K, L)
        g = grad_out[part].reshape(-1, groups, o // groups, oh * ow)              # (n, G, O/G, L)
        grad += xp.matmul(g, cols.swapaxes(2, 3)).sum(axis=0)                     # (G, O/G, K)
    return grad.reshape(weight_shape)


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
