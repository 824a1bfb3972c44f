"""Convolution and transposed convolution, fast, on NumPy and CuPy (§7.2.2, §7.4.2; Dumoulin & Visin).

Read ``im2col.py`` first: it is the plain version (whole-batch im2col, ``W @ cols``, col2im), and this
file computes the same products — tested equal to it to 1e-12 — with less memory traffic:

1. **Windows** (``windows.py``): padding folded into the column build (no padded copy of the input),
   columns built in cache-sized tiles, and border regions that would read padding for some taps computed
   as smaller convolutions with just the taps that read inside (``Windows.regions``).
2. **Host threads.** On the CPU the tiles of every part are dealt out over the host threads
   (``core/threads.py``), each thread building and multiplying its own with a one-thread GEMM: NumPy
   copies on one core, so a single stream of tiles would leave the other cores idle.
3. **No col2im scatter.** A transposed convolution — and so a convolution's input gradient — is split
   into its stride_h·stride_w *phases* (sub-pixel decomposition): the outputs ``y[e_h::s_h, e_w::s_w]``
   receive only the kernel taps whose offset lands on that phase, so they are an ordinary stride-1
   convolution of the input with those taps, rotated by 180°. Each phase is im2col + GEMM written into
   its strided slice of the output; phases of equal geometry share one GEMM (a kernel equal to the
   stride, U-Net's 2×2/2 up-convolution, is one GEMM and a pixel shuffle). At stride 1 there is a single
   phase: the input gradient is the convolution of the output gradient with the rotated kernel.
   Overlapping ``+=`` scatters (col2im) read and write the output KH·KW times; this writes it once.
4. **Shared columns.** The backward of a transposed convolution needs the columns of the output
   gradient twice (input gradient = conv of g; weight gradient = g's columns times x): one tile loop
   builds them once for both products.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.autograd import Function
from ..core.backend import get_array_module
from ..core.threads import get_num_threads, rowwise, split_work
from .im2col import col2im, conv_output_size, conv_transpose_output_size, im2col  # noqa: F401 (re-exported)
from .shape import accepts_unbatched, pair, same_padding
from .windows import Windows


# ------------------------------------------------------------------ the products
class Part(NamedTuple):
    """One convolution of ``column_products``: the whole one, or one of its ``Windows.regions`` — outputs
    ``area`` (rows, cols slices; None: all) computed from kernel taps ``taps`` (rows, cols slices; None: all)."""
    windows: Windows
    area: tuple
    taps: tuple


def _parts(windows: Windows) -> tuple:
    """The parts that compute ``windows``'s outputs, and the areas whose every tap reads padding."""
    if windows.regions is None:
        return [Part(windows, None, None)], []
    parts, silent = [], []
    for rows, cols in windows.regions:
        area = (slice(rows.first, rows.last), slice(cols.first, cols.last))
        if rows.tap0 == rows.tap1 or cols.tap0 == cols.tap1:
            silent.append(area)
            continue
        taps = (slice(rows.tap0, rows.tap1), slice(cols.tap0, cols.tap1))
        everything = (rows.first, rows.last, cols.first, cols.last) == (0, windows.out_hw[0], 0, windows.out_hw[1])
        parts.append(Part(windows.region(rows, cols), None if everything else area, taps))
    return parts, silent


def _tap_shape(part: Part, kernel: tuple) -> tuple:
    """(rows, cols) of the kernel taps that ``part`` multiplies."""
    return kernel if part.taps is None else tuple(taps.stop - taps.start for taps in part.taps)


def _balanced(jobs: list, costs: list, buckets: int) -> list:
    """Deal ``jobs`` into ``buckets`` lists of about equal total cost, each job to the lightest so far."""
    lists, totals = [[] for _ in range(buckets)], [0] * buckets
    for job, cost in zip(jobs, costs):
        lightest = totals.index(min(totals))
        lists[lightest].append(job)
        totals[lightest] += cost
    return lists


def column_products(source, windows: Windows, groups: int, weight=None, other=None, bias=None):
    """One im2col pass over ``source`` (N, C, H, W) serving two products, tile by tile:

    * ``weight`` (O, C/G, KH, KW) given: out = W · cols (+ ``bias``), the convolution (N, O, OH, OW);
    * ``other`` (N, O, OH, OW) given: Σₙ other[n] · cols[n]ᵀ, the weight gradient (O, C/G, KH, KW).

    A tile's columns are laid out (G·KH·KW·C/G, n·L), its images side by side, so each product is one GEMM.
    Where border regions read padding for some taps, each region is its own part with just the taps it
    reads inside (``windows.py``, point 3); the tiles of all parts are dealt out over the host threads,
    about equal work to each.

    Returns ``(out, weight_grad)``, ``None`` for the product not asked for.
    """
    xp = get_array_module(source)
    n, c = source.shape[:2]
    (kh, kw), (oh, ow) = windows.kernel, windows.out_hw
    per_group = c // groups
    parts, silent = _parts(windows)
    out = grad = None
    if weight is not None:
        o = weight.shape[0]
        # the columns' order (G, KH, KW, C/G): one copy of the weight in that order, in which a part's taps
        # are rows of C/G contiguous numbers
        tap_major = xp.ascontiguousarray(weight.reshape(groups, o // groups, per_group, kh, kw).transpose(0, 1, 3, 4, 2))
        weights = [(tap_major if part.taps is None else tap_major[(Ellipsis,) + part.taps + (slice(None),)]).reshape(
            groups, o // groups, per_group * int(np.prod(_tap_shape(part, (kh, kw))))) for part in parts]  # (G, O/G, K)
        out = xp.empty((n, o, oh, ow), dtype=xp.result_type(source, weight))
        for area in silent:                                                       # every tap reads padding
            out[(Ellipsis,) + area] = 0 if bias is None else bias[:, None, None]
    if other is not None:
        o = other.shape[1]

    def products(jobs):                              # one host thread's share of the tiles, its own buffers
        partials = {}
        for p in sorted({p for p, _ in jobs}):
            part, tiles = parts[p], [tile for q, tile in jobs if q == p]
            top, cols = part.area or (slice(0, None), slice(None))        # the part's outputs in ``out``
            width = part.windows.out_hw[1]
            for images, first, last, columns in part.windows.column_tiles(source, tiles, groups):
                count, length = images.stop - images.start, (last - first) * width
                span = (images, slice(None), slice(top.start + first, top.start + last), cols)
                columns = columns.reshape(groups, columns.shape[0] // groups, count * length)  # (G, K, n·L): one GEMM
                if weight is not None:
                    tile = out[span]                                                        # (n, O, rows, cols)
                    if count == 1 and part.area is None:                                   # straight into the output
                        xp.matmul(weights[p], columns, out=tile.reshape(groups, o // groups, length))
                    else:                                             # (O, n·L) → the images' (n, O, …) slices
                        tile[...] = xp.matmul(weights[p], columns).reshape((o, count) + tile.shape[2:]).swapaxes(0, 1)
                    if bias is not None:                                           # while the tile is in cache
                        tile += bias[:, None, None]
                if other is not None:
                    g = other[span].swapaxes(0, 1).reshape(groups, o // groups, count * length)  # (G, O/G, n·L)
                    # the colsᵀ-side product (K × n·L)(n·L × O/G) measured ~2× faster in OpenBLAS than the other side
                    product = xp.matmul(columns, g.swapaxes(1, 2))
                    if p in partials:
                        partials[p] += product
                    else:
                        partials[p] = product
        return partials

    # the tiles are dealt out over the host threads, each building and multiplying its own: NumPy copies a
    # tile's columns on one core, so with one thread filling and BLAS multiplying, a core would sit idle
    jobs, costs = [], []
    for p, part in enumerate(parts):
        for tile in part.windows.tiles(source):
            jobs.append((p, tile))
            costs.append((tile[0].stop - tile[0].start) * (tile[2] - tile[1]) * np.prod(_tap_shape(part, (kh, kw))))
    shares = _balanced(jobs, costs, max(1, min(get_num_threads(), len(jobs))))
    results = split_work(lambda start, stop: products([job for share in shares[start:stop] for job in share]),
                         len(shares), source)
    if other is not None:
        grad = xp.zeros((groups, kh, kw, per_group, o // groups), dtype=xp.result_type(source, other))
        for partials in results:
            for p, partial in partials.items():                         # (G, K, O/G), K = (taps, C/G): a view
                partial = partial.reshape((groups,) + _tap_shape(parts[p], (kh, kw)) + (per_group, o // groups))
                if parts[p].taps is None:
                    grad += partial
                else:
                    grad[(slice(None),) + parts[p].taps] += partial
        grad = grad.transpose(0, 4, 3, 1, 2).reshape(o, per_group, kh, kw)          # (G, O/G, C/G, KH, KW)
    return out, grad


def conv_forward(x, weight, windows: Windows, groups: int, bias=None):
    """y = W · im2col(x) (+ b) per image and group: (N, C, H, W) → (N, O, OH, OW); weight (O, C/G, KH, KW)."""
    return column_products(x, windows, groups, weight=weight, bias=bias)[0]


class Phase(NamedTuple):
    """One output phase of a transposed convolution along one axis: outputs ``offset, offset + s, …``.

    They receive kernel taps ``taps`` (already reversed, so the phase is a correlation), which read the
    input ``step`` pixels apart starting ``pad_before`` pixels before the phase's first output.
    """
    offset: int
    taps: tuple
    step: int
    pad_before: int
    count: int


def transposed_phases(out_size: int, kernel: int, stride: int, padding: int, dilation: int) -> list:
    """Split one axis of a transposed convolution into its ``stride`` phases (sub-pixel decomposition).

    Output y lies on phase e = y mod s. With z = y + p, tap i reaches y from input q = (z − i·d)/s, so
    only taps with i·d ≡ z (mod s) contribute, and for y = e + t·s they read q = q₀ + t − mᵢ,
    q₀ = ⌊(e + p)/s⌋, mᵢ = (i·d − r)/s, r = (e + p) mod s. Consecutive such taps are s/gcd(s, d) apart
    in i and d/gcd(s, d) apart in m: a stride-1 convolution with that dilation, taps reversed.
    """
    phases = []
    for offset in range(min(stride, out_size)):
        remainder, q0 = (offset + padding) % stride, (offset + padding) // stride
        taps = [i for i in range(kernel) if (i * dilation - remainder) % stride == 0]
        count = len(range(offset, out_size, stride))
        if not taps:
            phases.append(Phase(offset, (), 1, 0, count))
            continue
        reach = [(i * dilation - remainder) // stride for i in taps]
        step = reach[1] - reach[0] if len(reach) > 1 else 1
        phases.append(Phase(offset, tuple(taps[::-1]), step, reach[-1] - q0, count))
    return phases


def conv_transpose_forward(x, weight, out_hw, stride, padding, dilation, groups):
    """y = Cᵀ x for the conv C with this weight and geometry: x (N, C, H, W), weight (C, O/G, KH, KW) →
    (N, O, *out_hw), phase by phase (no scatter). Equals ``im2col.conv_transpose_reference``."""
    xp = get_array_module(x, weight)
    n, c, h, w = x.shape
    _, o_per_group, kh, kw = weight.shape
    rows = transposed_phases(out_hw[0], kh, stride[0], padding[0], dilation[0])
    cols = transposed_phases(out_hw[1], kw, stride[1], padding[1], dilation[1])
    w_groups = weight.reshape(groups, c // groups, o_per_group, kh, kw)
    shared = {}                                                              # equal geometry → one GEMM
    for row in rows:
        for col in cols:
            if row.taps and col.taps:
                key = (len(row.taps), row.step, row.pad_before, row.count, len(col.taps), col.step, col.pad_before, col.count)
                shared.setdefault(key, []).append((row, col))
    silent = any(not phase.taps for phase in rows + cols)                  # phases no tap reaches stay zero
    y = None
    for members in shared.values():
        (row, col) = members[0]
        # conv weight of each phase: (G, O/G, C/G, jh, jw) = W[g, c, o, taps_h, taps_w], stacked as (G, P, O/G, …)
        sub = xp.stack([w_groups[:, :, :, list(r.taps)][:, :, :, :, list(q.taps)].transpose(0, 2, 1, 3, 4)
                        for r, q in members], axis=1)
        sub = sub.reshape(groups * len(members) * o_per_group, c // groups, len(row.taps), len(col.taps))
        windows = Windows((h, w), sub.shape[2:], (1, 1), (row.step, col.step), (row.pad_before, col.pad_before),
                          (row.count, col.count))
        out = conv_forward(x, sub, windows, groups)
        if stride == (1, 1):                               # a single phase, the whole output: no shuffle copy
            return out
        if y is None:
            y = (xp.zeros if silent else xp.empty)((n, groups * o_per_group) + tuple(out_hw), dtype=out.dtype)

        def shuffle(y_part, out_part, members=members):                      # a chunk of images
            y_groups = y_part.reshape(len(y_part), groups, o_per_group, *out_hw)
            for p, (r, q) in enumerate(members):
                y_groups[:, :, :, r.offset::stride[0], q.offset::stride[1]] = out_part[:, :, p]

        rowwise(shuffle, y, out.reshape(n, groups, len(members), o_per_group, row.count, col.count))
    if y is None:                                                            # no tap reaches any output
        y = xp.zeros((n, groups * o_per_group) + tuple(out_hw), dtype=xp.result_type(x, weight))
    return y


# ------------------------------------------------------------------ autograd Functions
class Conv2d(Function):
    """y = conv(x, W) + b. Backward: dx = conv_transpose(g, W) (by phases), dW = Σ g · colsᵀ, db = Σ g."""

    def forward(self, input, weight, bias, *, stride, padding, dilation, groups, out_hw):
        self.windows, self.groups = Windows(input.shape[2:], weight.shape[2:], stride, dilation, padding, out_hw), groups
        self.save_for_backward(input if self.needs_input_grad[1] else None,
                               weight if self.needs_input_grad[0] else None)
        return conv_forward(input, weight, self.windows, groups, bias)

    def backward(self, grad):
        input, weight = self.saved
        windows, grad_input, grad_weight, grad_bias = self.windows, None, None, None
        if self.needs_input_grad[0]:
            grad_input = conv_transpose_forward(grad, weight, windows.in_hw, windows.stride, windows.pad_before,
                                                windows.dilation, self.groups)
        if self.needs_input_grad[1]:
            grad_weight = column_products(input, windows, self.groups, other=grad)[1]
        if self.needs_input_grad[2]:
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_input, grad_weight, grad_bias


class ConvTranspose2d(Function):
    """y = conv_transpose(x, W) + b, the adjoint of conv. Backward: dx = conv(g, W) and dW = Σ x · colsᵀ(g),
    both from one pass of im2col over g."""

    def forward(self, input, weight, bias, *, stride, padding, dilation, groups, out_hw):
        self.geometry, self.input_hw = (stride, padding, dilation, groups), input.shape[2:]
        self.kernel = weight.shape[2:]
        self.save_for_backward(input if self.needs_input_grad[1] else None,
                               weight if self.needs_input_grad[0] else None)
        out = conv_transpose_forward(input, weight, out_hw, stride, padding, dilation, groups)
        if bias is not None:
            out += bias.reshape(1, -1, 1, 1)
        return out

    def backward(self, grad):
        input, weight = self.saved
        stride, padding, dilation, groups = self.geometry
        windows = Windows(grad.shape[2:], self.kernel, stride, dilation, padding, self.input_hw)
        # the transposed conv's weight is the weight of the conv g → x, so the roles of x and g swap
        grad_input, grad_weight = column_products(grad, windows, groups, weight=weight, other=input)
        grad_bias = grad.sum(axis=(0, 2, 3)) if self.needs_input_grad[2] else None
        return grad_input, grad_weight, grad_bias


# ------------------------------------------------------------------ argument checking
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
    """The top/left padding ⌊d·(k − 1)/2⌋ per axis of padding='same' (the bottom/right gets the rest)."""
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1 (as in PyTorch); got stride={stride}")
    return tuple(before for before, _ in same_padding(kernel, dilation))


# ------------------------------------------------------------------ public ops
@accepts_unbatched("conv2d")
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of NCHW ``input`` with ``weight`` (O, C/G, KH, KW).

    ``padding`` is an int, a pair, ``"valid"`` (none: U-Net's unpadded convs, §7.3.3) or ``"same"``
    (output size = input size; stride 1). ``dilation`` spaces the kernel taps (atrous conv, §7.4.2);
    ``groups`` splits channels into independent convolutions (``groups = C`` is depthwise, §7.4.5).
    """
    _check_operands("conv2d", input, weight, bias, 1, groups)
    stride = pair(stride, "stride", "conv2d", 1)
    dilation = pair(dilation, "dilation", "conv2d", 1)
    kernel, in_hw = tuple(weight.shape[2:]), tuple(input.shape[2:])
    if padding == "same":  # an odd total d·(k − 1) leaves the extra zero row/column at the bottom/right
        return Conv2d.apply(input, weight, bias, stride=stride, padding=_same_padding("conv2d", kernel, stride, dilation),
                            dilation=dilation, groups=groups, out_hw=in_hw)
    if isinstance(padding, str) and padding != "valid":
        raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid'; got {padding!r}")
    padding = (0, 0) if padding == "valid" else pair(padding, "padding", "conv2d", 0)
    out_hw = tuple(conv_output_size(*args) for args in zip(in_hw, kernel, stride, padding, dilation))
    for axis, name in ((0, "height"), (1, "width")):
        if out_hw[axis] < 1:
            raise ValueError(f"conv2d: the dilated kernel ({dilation[axis] * (kernel[axis] - 1) + 1}) is larger than "
                             f"the padded input {name} ({in_hw[axis] + 2 * padding[axis]}); input shape {input.shape}")
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                        out_hw=out_hw)


@accepts_unbatched("conv_transpose2d")
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution (§7.2.2), the adjoint of ``conv2d``; ``weight`` is (C, O/G, KH, KW) as in PyTorch.

    Each input pixel scatters a weighted copy of the kernel onto the output, ``stride`` pixels apart;
    ``output_padding`` adds rows/columns at the bottom/right to pick one of the ``stride`` output sizes that
    a strided conv maps to the same input size.
    """
    _check_operands("conv_transpose2d", input, weight, bias, 0, groups)
    stride = pair(stride, "stride", "conv_transpose2d", 1)
    padding = pair(padding, "padding", "conv_transpose2d", 0)
    output_padding = pair(output_padding, "output_padding", "conv_transpose2d", 0)
    dilation = pair(dilation, "dilation", "conv_transpose2d", 1)
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
    return ConvTranspose2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                                 out_hw=out_hw)
