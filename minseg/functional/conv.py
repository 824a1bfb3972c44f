"""Convolution and transposed convolution, fast, on NumPy and CuPy (§7.2.2, §7.4.2; Dumoulin & Visin).

Read ``im2col.py`` first: it is the plain version (whole-batch im2col, ``W @ cols``, col2im), and this
file computes the same products — tested equal to it to 1e-12 — with less memory traffic:

1. **Padding folded into the column build.** Tap (i, j) of output pixel (r, c) reads input pixel
   (r·sh + i·dh − ph, c·sw + j·dw − pw). ``Windows`` knows, per tap, which output rows and columns read
   inside the input; it copies those straight from the unpadded input and writes zeros into the thin
   strips that would read padding. No padded copy of the input is made, and the offset may be negative
   or leave unequal bottom/right padding — which the backward passes below need.
2. **Tiles.** Columns are built for a tile — several small images, or a band of output rows of one
   large image — of about ``TILE_BYTES`` (4 MiB), in one buffer reused for every tile, and the product
   writes straight into its slice of the output. The columns are still in the CPU cache when the GEMM
   reads them, and memory stays bounded for any image size. A GPU pays ~10 µs per launch instead and
   has no cache to fit, so there the budget is ``GPU_TILE_BYTES`` (256 MiB). On the CPU the tiles are
   shared out over the host threads (``core/threads.py``), each thread building and multiplying its
   own with a one-thread GEMM: NumPy copies on one core, so a single stream of tiles would leave the
   other cores idle while the columns are built.
3. **No col2im scatter.** A transposed convolution — and so a convolution's input gradient — is split
   into its stride_h·stride_w *phases* (sub-pixel decomposition): the outputs ``y[e_h::s_h, e_w::s_w]``
   receive only the kernel taps whose offset lands on that phase, so they are an ordinary stride-1
   convolution of the input with those taps, rotated by 180°. Each phase is im2col + GEMM written into
   its strided slice of the output; phases of equal geometry share one GEMM (a kernel equal to the
   stride, U-Net's 2×2/2 up-convolution, is one GEMM and a pixel shuffle). At stride 1 there is a single
   phase: the input gradient is the convolution of the output gradient with the rotated kernel.
   Overlapping ``+=`` scatters (col2im) read and write the output KH·KW times; this writes it once.
4. **No products with padding.** A dilated convolution reads mostly padding near the border: ASPP's
   3×3 dilation-12 conv on a 33×33 map has 43 % zeros in its columns, and on a 16×16 map its dilation-24
   and -36 branches read nothing but padding outside the centre tap. Along each axis the outputs fall
   into runs that read inside with the same contiguous range of taps; a run × run *region* is a smaller
   convolution with just those taps (``Windows.regions``), so zeros are neither copied nor multiplied.
   An axis is split only where that saves at least ``SPLIT_SAVING`` of its column entries and each run
   is ``MIN_RUN`` or more outputs long (thin runs would make thin GEMMs); taps that no output reads inside
   are always dropped.
5. **Shared columns.** The backward of a transposed convolution needs the columns of the output
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

TILE_BYTES = 4 * 2**20
GPU_TILE_BYTES = 256 * 2**20
MIN_TILE_COLUMNS = 512
SPLIT_SAVING = 0.1
MIN_RUN = 4


def _reads_inside(offset: int, stride: int, count: int, size: int) -> tuple:
    """Outputs o ∈ [first, last) whose read o·stride + offset falls in [0, size), and that read for ``first``."""
    first = min(count, max(0, (stride - 1 - offset) // stride))
    last = max(first, min(count, (size - 1 - offset) // stride + 1))
    return first, last, first * stride + offset


class Run(NamedTuple):
    """Outputs [first, last) along one axis that read inside the input with taps [tap0, tap1) (none: tap0 = tap1)."""
    first: int
    last: int
    tap0: int
    tap1: int


def tap_runs(reads: list, count: int) -> list:
    """Split one axis's ``count`` outputs into ``Run``s, given each tap's ``_reads_inside`` range.

    Tap i reads inside for outputs [first_i, last_i), so the taps an output reads inside with form one
    contiguous range, which changes only at those ends. Runs shorter than ``MIN_RUN`` merge into a
    neighbour (reading padding for the taps they gain); if splitting saves less than ``SPLIT_SAVING`` of
    the axis's column entries, one run covers the axis with every tap that any output reads inside.
    """
    ends = sorted({0, count} | {e for first, last, _ in reads for e in (first, last) if 0 < e < count})
    runs = []
    for a, b in zip(ends, ends[1:]):
        taps = [i for i, (first, last, _) in enumerate(reads) if first <= a and b <= last]
        runs.append(Run(a, b, taps[0], taps[-1] + 1) if taps else Run(a, b, 0, 0))

    def merged(left, right):                                 # the hull of both tap ranges (an empty one adds none)
        spans = [(r.tap0, r.tap1) for r in (left, right) if r.tap1 > r.tap0]
        taps = (min(t0 for t0, _ in spans), max(t1 for _, t1 in spans)) if spans else (0, 0)
        return Run(left.first, right.last, *taps)

    while len(runs) > 1 and min(r.last - r.first for r in runs) < MIN_RUN:
        k = min(range(len(runs)), key=lambda i: runs[i].last - runs[i].first)
        j = k + 1 if k == 0 or (k + 1 < len(runs) and runs[k + 1].last - runs[k + 1].first
                                < runs[k - 1].last - runs[k - 1].first) else k - 1
        runs[min(j, k):max(j, k) + 1] = [merged(runs[min(j, k)], runs[max(j, k)])]
    read = sum((r.last - r.first) * (r.tap1 - r.tap0) for r in runs)
    if len(runs) > 1 and read > (1 - SPLIT_SAVING) * count * len(reads):
        whole = runs[0]
        for run in runs[1:]:
            whole = merged(whole, run)
        runs = [whole]
    return runs


class Windows:
    """The sliding windows of one convolution: which input pixel each kernel tap reads.

    Output pixel (r, c), tap (i, j) reads input (r·sh + i·dh − ph, c·sw + j·dw − pw), where (ph, pw) is
    ``pad_before``; reads outside the (H, W) input are zeros. ``out_hw`` is given, not derived, so the
    bottom/right padding is whatever it implies (odd 'same' padding, output_padding, transposed phases).
    """

    def __init__(self, in_hw, kernel, stride, dilation, pad_before, out_hw):
        self.in_hw, self.kernel, self.stride = tuple(in_hw), tuple(kernel), tuple(stride)
        self.dilation, self.pad_before, self.out_hw = tuple(dilation), tuple(pad_before), tuple(out_hw)
        (kh, kw), (sh, sw), (dh, dw), (ph, pw), (oh, ow), (h, w) = (
            self.kernel, self.stride, self.dilation, self.pad_before, self.out_hw, self.in_hw)
        self.row_reads = [_reads_inside(i * dh - ph, sh, oh, h) for i in range(kh)]
        self.col_reads = [_reads_inside(j * dw - pw, sw, ow, w) for j in range(kw)]
        # a 1×1 kernel at stride 1 without padding reads each pixel once: the input *is* the column matrix
        self.pointwise = self.kernel == (1, 1) and self.stride == (1, 1) and self.pad_before == (0, 0) \
            and self.out_hw == self.in_hw
        row_runs, col_runs = tap_runs(self.row_reads, oh), tap_runs(self.col_reads, ow)
        whole = len(row_runs) == len(col_runs) == 1 and row_runs[0][2:] == (0, kh) and col_runs[0][2:] == (0, kw)
        self.regions = None if whole else [(rows, cols) for rows in row_runs for cols in col_runs]

    def region(self, rows: Run, cols: Run) -> "Windows":
        """The convolution that computes outputs rows × cols with taps [rows.tap0, rows.tap1) × [cols.tap0, cols.tap1):
        output (r, c) of it is output (rows.first + r, cols.first + c) here, its tap (i, j) is tap (tap0 + i, …)."""
        (sh, sw), (dh, dw), (ph, pw) = self.stride, self.dilation, self.pad_before
        return Windows(self.in_hw, (rows.tap1 - rows.tap0, cols.tap1 - cols.tap0), self.stride, self.dilation,
                       (ph - rows.first * sh - rows.tap0 * dh, pw - cols.first * sw - cols.tap0 * dw),
                       (rows.last - rows.first, cols.last - cols.first))

    def fill_columns(self, x, cols, first: int, last: int) -> None:
        """im2col of output rows [first, last) of the images ``x`` (n, C, H, W) into ``cols`` (G, KH, KW, C/G, n,
        rows, OW): group, then tap, then channel — so that the weight of some of the taps is whole rows of C/G."""
        (sh, sw), ow = self.stride, self.out_hw[1]
        groups = cols.shape[0]
        for i, (row0, row1, y0) in enumerate(self.row_reads):
            a, b = max(row0, first), min(row1, last)                      # rows of this tile that read inside
            for j, (c0, c1, x0) in enumerate(self.col_reads):
                slab = cols[:, i, j]                                       # (G, C/G, n, rows, OW)
                if a >= b or c0 >= c1:
                    slab[...] = 0
                    continue
                ys = y0 + (a - row0) * sh
                window = x[:, :, ys:ys + (b - a - 1) * sh + 1:sh, x0:x0 + (c1 - c0 - 1) * sw + 1:sw].swapaxes(0, 1)
                slab[..., a - first:b - first, c0:c1] = window.reshape((groups, -1) + window.shape[1:])
                if a > first:                                              # the strips that read padding
                    slab[..., :a - first, :] = 0
                if b < last:
                    slab[..., b - first:, :] = 0
                if c0 > 0:
                    slab[..., a - first:b - first, :c0] = 0
                if c1 < ow:
                    slab[..., a - first:b - first, c1:] = 0

    def tiles(self, x) -> list:
        """The tiles ``(images, first, last)`` of ``x``'s columns: output rows [first, last) of ``x[images]``,
        each of about ``TILE_BYTES`` (``GPU_TILE_BYTES`` on a GPU) — several whole images when they are
        small, else equal bands of rows — but at least ``MIN_TILE_COLUMNS`` wide, so that a deep layer's
        GEMM is not cut into thin slices that each re-read the whole weight."""
        n, c = x.shape[:2]
        (kh, kw), (oh, ow) = self.kernel, self.out_hw
        if self.pointwise:                              # image by image, so that the host threads share them
            return [(slice(image, image + 1), 0, oh) for image in range(n)]
        if n == 0:
            return []
        budget = TILE_BYTES if isinstance(x, np.ndarray) else GPU_TILE_BYTES
        rows = max(budget // max(1, c * kh * kw * ow * x.itemsize), -(-MIN_TILE_COLUMNS // ow), 1)
        if rows >= oh:
            per_tile = min(n, rows // oh)
            per_tile = -(-n // -(-n // per_tile))                                  # equal shares
            return [(slice(start, min(n, start + per_tile)), 0, oh) for start in range(0, n, per_tile)]
        rows = -(-oh // -(-oh // rows))                                            # equal bands
        return [(slice(image, image + 1), first, min(oh, first + rows)) for image in range(n) for first in range(0, oh, rows)]

    def column_tiles(self, x, tiles=None, groups: int = 1):
        """Yield ``(images, first, last, cols)`` for each of ``tiles`` (default: all of ``self.tiles(x)``):
        the columns (G·KH·KW·C/G, n·rows·OW) of output rows [first, last) of ``x[images]``, rows ordered group,
        tap, channel (the teaching path's im2col orders them channel, tap), built in one buffer reused for
        every tile."""
        xp = get_array_module(x)
        tiles = self.tiles(x) if tiles is None else tiles
        c = x.shape[1]
        (kh, kw), ow = self.kernel, self.out_hw[1]
        if self.pointwise:                                                 # no copy: one image is (C, H·W)
            for images, first, last in tiles:
                yield images, first, last, x[images].swapaxes(0, 1).reshape(c, -1)
            return
        if not tiles:
            return
        largest = max((t[0].stop - t[0].start) * (t[2] - t[1]) for t in tiles)
        buffer = xp.empty(largest * c * kh * kw * ow, dtype=x.dtype)
        for images, first, last in tiles:
            count = images.stop - images.start
            cols = buffer[:count * c * kh * kw * (last - first) * ow].reshape(groups, kh, kw, c // groups, count,
                                                                              last - first, ow)
            self.fill_columns(x[images], cols, first, last)
            yield images, first, last, cols.reshape(c * kh * kw, count * (last - first) * ow)


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

    A tile's columns are laid out (C·KH·KW, n·L), its images side by side, so each product is one GEMM.
    Where border regions read padding for some taps, each region is its own part with just the taps it
    reads inside (see the module's point 4); the tiles of all parts are dealt out over the host threads.

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
