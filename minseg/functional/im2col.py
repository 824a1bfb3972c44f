"""Convolution as a matrix product: im2col, col2im and the plain convolution built on them (§7.2.2, §7.4.2).

This is the teaching path — read it first. ``conv.py`` computes the same numbers faster and is tested
equal to the three ``*_reference`` functions below to 1e-12.

**im2col.** A convolution reads, for each output pixel, a KH×KW window of every input channel. ``im2col``
copies those windows into columns ``(N, C, KH, KW, OH, OW)``: for each kernel offset ``(i, j)`` the
slab ``cols[:, :, i, j]`` is one strided slice of the zero-padded input, starting at ``(i·dh, j·dw)``
and stepping by the stride — dilation is just the spacing between offsets (§7.4.2's ``X(i + d·m, j + d·n)``).
The convolution is then one matrix product per image and group:

    y[n] = W · cols[n],   W: (O, C·KH·KW),  cols[n]: (C·KH·KW, OH·OW).

**col2im** is the same loop with ``+=``: it adds every column entry back onto the input pixel it was
copied from. It is the adjoint (transpose) of im2col: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.

**The backward pass uses the same two primitives.** Write the convolution as a linear map ``y = C x``
with ``C = W ∘ im2col``. Its input gradient is ``Cᵀ g = col2im(Wᵀ g)``: multiply by the transposed
weight matrix, then scatter the columns back — which is exactly the transposed convolution of ``g``
(``conv_transpose_reference``). Conversely a transposed convolution *is* ``y = Cᵀ x``, so its input
gradient is ``C g``, an ordinary convolution. The weight gradient of both is ``Σₙ g[n] · cols[n]ᵀ``.
"""

from __future__ import annotations

from ..core.backend import get_array_module


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


def padded_shape(input_hw, kernel, stride, padding, dilation, out_hw):
    """(H + 2p + extra) per axis: the extra bottom/right rows that the last window reaches (ceil_mode)."""
    return tuple(max(size + 2 * p, (o - 1) * s + d * (k - 1) + 1)
                 for size, k, s, p, d, o in zip(input_hw, kernel, stride, padding, dilation, out_hw))


def im2col(x, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1), out_size=None, pad_value=0.0):
    """Windows of ``x`` (N, C, H, W) as columns (N, C, KH, KW, OH, OW), the whole batch at once.

    ``out_size`` (OH, OW) overrides the usual output size (pooling's ceil_mode); the padding is filled
    with ``pad_value`` (−inf for max pooling).
    """
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    out_size = out_size or tuple(conv_output_size(*a) for a in zip(x.shape[2:], kernel_size, stride, padding, dilation))
    (oh, ow), (hp, wp) = out_size, padded_shape(x.shape[2:], kernel_size, stride, padding, dilation, out_size)
    padded = xp.full(x.shape[:2] + (hp, wp), pad_value, dtype=x.dtype)
    padded[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]] = x
    cols = xp.empty(x.shape[:2] + (kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
    return cols


def col2im(cols, input_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Adjoint of ``im2col``: sum the columns (N, C, KH, KW, OH, OW) back onto an (N, C, H, W) array."""
    xp = get_array_module(cols)
    n, c, kh, kw, oh, ow = cols.shape
    (h, w), (sh, sw), (ph, pw), (dh, dw) = tuple(input_shape)[-2:], stride, padding, dilation
    hp, wp = padded_shape((h, w), (kh, kw), stride, padding, dilation, (oh, ow))
    padded = xp.zeros((n, c, hp, wp), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]


# ------------------------------------------------------------------ the plain convolution, both directions
def conv_reference(x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """y[n, g] = W[g] · im2col(x)[n, g]: x (N, C, H, W), weight (O, C/G, KH, KW) → (N, O, OH, OW)."""
    xp = get_array_module(x, weight)
    cols = im2col(x, weight.shape[2:], stride, padding, dilation)             # (N, C, KH, KW, OH, OW)
    n, (oh, ow), o = x.shape[0], cols.shape[4:], weight.shape[0]
    w = weight.reshape(groups, o // groups, -1)                              # (G, O/G, C/G·KH·KW)
    return xp.matmul(w, cols.reshape(n, groups, w.shape[2], oh * ow)).reshape(n, o, oh, ow)


def conv_transpose_reference(x, weight, out_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """y = col2im(Wᵀ · x): the adjoint of ``conv_reference``, mapping (N, C, H, W) to (N, O, *out_hw)
    with weight (C, O/G, KH, KW) — PyTorch's transposed convolution, and conv's input gradient."""
    xp = get_array_module(x, weight)
    (n, c, h, w), (kh, kw) = x.shape, weight.shape[2:]
    w_t = weight.reshape(groups, c // groups, -1).swapaxes(1, 2)             # (G, O/G·KH·KW, C/G)
    cols = xp.matmul(w_t, x.reshape(n, groups, c // groups, h * w))           # (N, G, O/G·KH·KW, H·W)
    return col2im(cols.reshape(n, -1, kh, kw, h, w), (n, -1) + tuple(out_hw), stride, padding, dilation)


def conv_weight_grad_reference(x, grad, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """dL/dW[g] = Σₙ grad[n, g] · im2col(x)[n, g]ᵀ for the conv x → grad: (O, C/G, KH, KW)."""
    xp = get_array_module(x, grad)
    cols = im2col(x, kernel, stride, padding, dilation, out_size=grad.shape[2:])
    n, o = grad.shape[:2]
    cols = cols.reshape(n, groups, -1, grad.shape[2] * grad.shape[3])         # (N, G, C/G·KH·KW, L)
    g = grad.reshape(n, groups, o // groups, -1)                             # (N, G, O/G, L)
    return xp.matmul(g, cols.swapaxes(2, 3)).sum(axis=0).reshape((o, -1) + tuple(kernel))
