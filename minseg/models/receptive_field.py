"""Receptive fields: which input pixels can influence one output pixel — computed, and measured.

**Analytic (per layer).** Follow a chain of layers from the input, keeping three numbers per axis, all in
input pixels (pixel i of the input sits at coordinate i):

* ``rf`` — the receptive field's size; ``jump`` — the distance between neighbouring pixels of the layer's
  output (the effective stride); ``start`` — the centre of output pixel 0's receptive field.
* A convolution or pool with kernel k, stride s, padding p (top/left) and dilation d spans
  k_eff = d·(k − 1) + 1 of its input's pixels, so::

      rf ← rf + (k_eff − 1)·jump      start ← start + ((k_eff − 1)/2 − p)·jump      jump ← jump·s

* A transposed convolution runs the map backwards: output pixel y is centred on input (y + p − (k_eff − 1)/2)/s,
  so ``start ← start + (p − (k_eff − 1)/2)/s · jump`` and ``jump ← jump / s``, and rf grows by
  (n − 1)·jump, n being the most input pixels that reach one output pixel. How many do depends on the
  output pixel's phase (y mod s); the row gives the largest field and the centre averaged over phases,
  so after a transposed convolution the row describes the field only approximately (it can sit up to a
  jump off); ``receptive_field_support`` maps one output pixel back through the chain and is exact.
* ReLU, batch norm, dropout and other pixel-wise layers leave all three unchanged and get no row.

Output pixel (i, j) of a row then sees the input box centred on (start + i·jump, start + j·jump), ``rf``
wide (``receptive_field_box``), clipped by the image where the layers pad. The chain is the order in
which a model registers its leaf layers, which is the order of computation for ``Sequential`` stacks
such as VGG's features or ``UNet.contracting_path()``; for a model that branches, pass the chain of
layers along the path you care about (a list of modules or of (name, module) pairs). FCN's crop
offsets (§7.2.2) are the ``start`` values of such chains.

**Empirical.** Back-propagate a one-hot gradient from one output pixel (the centre by default) to the
input and look where the gradient is non-zero — this works for any model (FCN, U-Net, DeepLab), branches
and crops included. Two things can hide pixels that do influence the output: a ReLU that is off passes no
gradient (use positive weights and inputs to measure the structural field), and a max pool passes the
gradient to one winner per window. The second is handled by running max pools as average pools over the
same windows while measuring (``replace_max_pool=True``, the default), so that every pixel of a window
gets gradient. Batch norm is put in eval mode, since batch statistics would couple every pixel.
"""

from __future__ import annotations

import contextlib
import math
from collections import namedtuple
from fractions import Fraction

import numpy as np

from .. import functional as F
from .. import nn
from ..core.autograd import Tensor, enable_grad
from ..core.backend import to_device
from ..functional.conv import conv_output_size, conv_transpose_output_size
from ..functional.shape import pair, same_padding

RFRow = namedtuple("RFRow", "name layer kernel stride padding dilation rf jump start")
RFRow.__doc__ = """One layer of the analytic table. ``kernel``/``stride``/``padding``/``dilation`` are the layer's
(height, width) settings; ``rf``, ``jump`` and ``start`` are (height, width) floats in input pixels, for the
layer's output."""

EmpiricalRF = namedtuple("EmpiricalRF", "grad box output_index")
EmpiricalRF.__doc__ = """The measured receptive field: ``grad`` is |∂ output pixel / ∂ input| summed over the input
channels, an (H, W) NumPy array; ``box`` the (top, left, bottom, right) bounds, inclusive, of its non-zero
support (None if the gradient is zero everywhere); ``output_index`` the (row, column) of the output pixel."""

PASS_THROUGH = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d,
                nn.Identity)


def _geometry(layer):
    """(kernel, stride, top/left padding, dilation, transposed) of a sliding-window layer, per axis."""
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        kernel, dilation = layer.kernel_size, layer.dilation
        if layer.padding == "valid":
            padding = (0, 0)
        elif layer.padding == "same":
            padding = tuple(before for before, _ in same_padding(kernel, dilation))
        else:
            padding = layer.padding
        return kernel, layer.stride, padding, dilation, isinstance(layer, nn.ConvTranspose2d)
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        dilation = layer.dilation if isinstance(layer, nn.MaxPool2d) else 1
        kernel, stride, padding = (pair(getattr(layer, name), name, "receptive_field")
                                   for name in ("kernel_size", "stride", "padding"))
        return kernel, stride, padding, pair(dilation, "dilation", "receptive_field"), False
    raise TypeError(f"receptive_field: {type(layer).__name__} has no fixed window (supported: Conv2d, "
                    f"ConvTranspose2d, MaxPool2d, AvgPool2d, and pixel-wise layers); pass the chain of layers "
                    f"that leads up to it")


def _transposed_span(kernel: int, stride: int, padding: int, dilation: int) -> int:
    """The most input pixels that reach one output pixel of a transposed conv (over the output phases)."""
    spans = []
    for phase in range(stride):
        taps = [m for m in range(kernel) if (phase + padding - m * dilation) % stride == 0]
        if taps:
            spans.append((taps[-1] - taps[0]) * dilation // stride + 1)
    return max(spans, default=1)


def _leaves(module, prefix: str = ""):
    """(dotted name, layer) of every leaf in order of registration — a layer used twice is listed twice."""
    children = list(module.named_children())
    if not children:
        yield prefix or type(module).__name__, module
    for name, child in children:
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def _named_layers(model):
    if isinstance(model, nn.Module):
        return list(_leaves(model))
    return [item if isinstance(item, tuple) else (f"{index}:{type(item).__name__}", item)
            for index, item in enumerate(model)]


def receptive_field(model) -> list:
    """The analytic table (one ``RFRow`` per sliding-window layer) for a chain of layers: a module (its
    leaf layers in registration order) or a list of modules or of (name, module) pairs."""
    rf, jump, start = [Fraction(1)] * 2, [Fraction(1)] * 2, [Fraction(0)] * 2
    rows = []
    for name, layer in _named_layers(model):
        if isinstance(layer, PASS_THROUGH):
            continue
        kernel, stride, padding, dilation, transposed = _geometry(layer)
        for axis in (0, 1):
            k, s, p, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
            span = d * (k - 1) + 1
            if transposed:
                rf[axis] += (_transposed_span(k, s, p, d) - 1) * jump[axis]
                start[axis] += Fraction(2 * p - (span - 1), 2 * s) * jump[axis]
                jump[axis] /= s
            else:
                rf[axis] += (span - 1) * jump[axis]
                start[axis] += Fraction(span - 1 - 2 * p, 2) * jump[axis]
                jump[axis] *= s
        rows.append(RFRow(name, type(layer).__name__, tuple(kernel), tuple(stride), tuple(padding), tuple(dilation),
                          *(tuple(float(v) for v in values) for values in (rf, jump, start))))
    return rows


def receptive_field_box(row: RFRow, output_index, input_size=None) -> tuple:
    """(top, left, bottom, right), inclusive, of the input pixels that output pixel ``output_index`` = (i, j)
    of ``row``'s layer sees, rounded outwards; clipped to ``input_size`` = (H, W) if given."""
    bounds = []
    for axis in (0, 1):
        centre = row.start[axis] + output_index[axis] * row.jump[axis]
        low, high = math.floor(centre - (row.rf[axis] - 1) / 2), math.ceil(centre + (row.rf[axis] - 1) / 2)
        if input_size is not None:
            low, high = max(low, 0), min(high, input_size[axis] - 1)
        bounds.append((low, high))
    (top, bottom), (left, right) = bounds
    return top, left, bottom, right


def receptive_field_support(model, output_index, input_size=None) -> tuple:
    """(top, left, bottom, right), inclusive, of the input pixels that can reach output pixel (i, j) of the
    chain's last layer — exact, also after transposed convolutions, by mapping the index interval back
    through every layer: a conv/pool output y reads inputs y·s − p … y·s − p + d·(k − 1); a transposed
    conv output y receives input x for every tap m with x·s = y + p − m·d. With ``input_size`` = (H, W)
    the sizes are followed through the chain and each interval is clipped to its layer's input."""
    layers = [(name, layer) for name, layer in _named_layers(model) if not isinstance(layer, PASS_THROUGH)]
    geometries = [_geometry(layer) + (getattr(layer, "ceil_mode", False),) for _, layer in layers]
    bounds = []
    for axis in (0, 1):
        sizes = None
        if input_size is not None:  # the input size of every layer, and of the output at the end
            sizes = [input_size[axis]]
            for kernel, stride, padding, dilation, transposed, ceil_mode in geometries:
                k, s_, p_, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
                sizes.append(conv_transpose_output_size(sizes[-1], k, s_, p_, 0, d) if transposed
                             else conv_output_size(sizes[-1], k, s_, p_, d, ceil_mode))
        low = high = output_index[axis]
        for position in reversed(range(len(geometries))):
            kernel, stride, padding, dilation, transposed, _ = geometries[position]
            k, s_, p_, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
            if transposed:
                sources = [(y + p_ - m * d) // s_ for y in range(low, high + 1) for m in range(k)
                           if (y + p_ - m * d) % s_ == 0]
                low, high = min(sources), max(sources)
            else:
                low, high = low * s_ - p_, high * s_ - p_ + d * (k - 1)
            if sizes is not None:
                low, high = max(low, 0), min(high, sizes[position] - 1)
        bounds.append((low, high))
    (top, bottom), (left, right) = bounds
    return top, left, bottom, right


def format_receptive_field(rows) -> str:
    """The table as text, one line per layer; a setting shows once when both axes agree (else ``h×w``)."""
    def show(pair):
        text = [f"{v:g}" if isinstance(v, float) else str(v) for v in pair]
        return text[0] if text[0] == text[1] else "×".join(text)

    header = ("layer", "type", "kernel", "stride", "padding", "dilation", "RF", "jump", "start")
    table = [header] + [(row.name, row.layer) + tuple(show(value) for value in row[2:]) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


@contextlib.contextmanager
def _measuring(model, replace_max_pool: bool):
    """Eval mode, parameters frozen and (optionally) max pools averaging — undone on exit."""
    modules = list(model.modules())
    training = [module.training for module in modules]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    pools = [m for m in modules if isinstance(m, nn.MaxPool2d)] if replace_max_pool else []
    for pool in pools:
        if pair(pool.dilation, "dilation", "receptive_field") != (1, 1):
            raise ValueError("empirical_receptive_field: a dilated max pool has no average-pool twin; "
                             "pass replace_max_pool=False")
        pool.forward = (lambda p: lambda x: F.avg_pool2d(x, p.kernel_size, p.stride, p.padding, p.ceil_mode))(pool)
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for pool in pools:
            del pool.__dict__["forward"]
        for module, mode in zip(modules, training):
            object.__setattr__(module, "training", mode)
        for param, flag in flags:
            param.requires_grad_(flag)


def _model_placement(model):
    param = next(iter(model.parameters()), None)
    return ("cpu", np.float32) if param is None else (param.device, param.dtype)


def empirical_receptive_field(model, input, output_index=None, channel: int = 0,
                              replace_max_pool: bool = True) -> EmpiricalRF:
    """Measure the receptive field of one output pixel by back-propagation.

    ``input`` is one image — a Tensor or array of shape (1, C, H, W) — or just its shape (C, H, W) or
    (1, C, H, W), which means an image of ones on the model's device and in its dtype. The gradient of
    ``model(input)[0, channel, i, j]`` with ``(i, j) = output_index`` (default: the centre pixel,
    (OH // 2, OW // 2)) is computed with a one-hot upstream gradient; the model's modes, parameters'
    ``requires_grad`` and max pools are restored afterwards and no parameter gradient is touched.
    """
    device, dtype = _model_placement(model)
    if isinstance(input, (tuple, list)):
        data = np.ones((1,) * (4 - len(input)) + tuple(input), dtype=dtype)
    else:
        data = input.data if isinstance(input, Tensor) else input
    if data.ndim != 4 or data.shape[0] != 1:
        raise ValueError(f"empirical_receptive_field: expected one image (1, C, H, W); got shape {tuple(data.shape)}")
    x = Tensor(to_device(data, device), requires_grad=True)
    with _measuring(model, replace_max_pool), enable_grad():
        out = model(x)
        if out.ndim != 4:
            raise ValueError(f"empirical_receptive_field: the model must return (N, K, H, W); got shape {out.shape}")
        index = (out.shape[2] // 2, out.shape[3] // 2) if output_index is None else tuple(output_index)
        upstream = np.zeros(out.shape, dtype=out.dtype)
        upstream[0, channel, index[0], index[1]] = 1
        out.backward(to_device(upstream, out.device))
    grad = np.abs(x.grad.numpy()[0]).sum(axis=0)
    rows, columns = np.nonzero(grad)
    box = None if rows.size == 0 else (int(rows.min()), int(columns.min()), int(rows.max()), int(columns.max()))
    return EmpiricalRF(grad, box, index)
