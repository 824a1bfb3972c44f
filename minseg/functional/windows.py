"""The sliding windows of a convolution, and their columns (im2col) built tile by tile (§7.2.2, §7.4.2).

``conv.py`` multiplies these columns; this file decides what they hold:

1. **Padding folded into the column build.** Tap (i, j) of output pixel (r, c) reads input pixel
   (r·sh + i·dh − ph, c·sw + j·dw − pw). ``Windows`` knows, per tap, which output rows and columns read
   inside the input; it copies those straight from the unpadded input and writes zeros into the thin
   strips that would read padding. No padded copy of the input is made, and the offset may be negative
   or leave unequal bottom/right padding — which the backward passes in ``conv.py`` need.
2. **Tiles.** Columns are built for a tile — several small images, or a band of output rows of one
   large image — of about ``TILE_BYTES`` (4 MiB), in one buffer reused for every tile. The columns are
   still in the CPU cache when the GEMM reads them, and memory stays bounded for any image size. A GPU
   pays ~10 µs per launch instead and has no cache to fit, so there the budget is ``GPU_TILE_BYTES``.
3. **No products with padding.** A dilated convolution reads mostly padding near the border: ASPP's
   3×3 dilation-12 conv on a 33×33 map has 43 % zeros in its columns, and on a 16×16 map (DeepLab v3+
   at output stride 16) its dilation-18 branch reads nothing but padding outside the centre tap. Along
   each axis the outputs fall into runs that read inside with the same contiguous range of taps; a
   run × run *region* is a smaller convolution with just those taps (``Windows.regions``), so zeros are
   neither copied nor multiplied. Each extra run along an axis is charged ``RUN_OVERHEAD`` column
   entries (small parts copy and multiply less efficiently), so a split is made only where it saves
   more; taps that no output reads inside are always dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.backend import get_array_module

TILE_BYTES = 4 * 2**20
GPU_TILE_BYTES = 256 * 2**20
MIN_TILE_COLUMNS = 512
RUN_OVERHEAD = 8


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

    Tap i reads inside for outputs [first_i, last_i), so the taps an output reads inside form one
    contiguous range, which changes only at those ends: the elementary runs. Adjacent runs may merge,
    reading padding for the taps one of them gains. A run of length L with T taps costs L·T column
    entries, and every run after the first ``RUN_OVERHEAD`` more (a smaller part means smaller copies and
    GEMMs); the cheapest grouping is found by dynamic programming over the run boundaries. Taps that no
    output reads inside are never in a run.
    """
    ends = sorted({0, count} | {e for first, last, _ in reads for e in (first, last) if 0 < e < count})
    runs = []
    for a, b in zip(ends, ends[1:]):
        taps = [i for i, (first, last, _) in enumerate(reads) if first <= a and b <= last]
        runs.append(Run(a, b, taps[0], taps[-1] + 1) if taps else Run(a, b, 0, 0))

    def merged(group):                            # one run over ``group``: the hull of its tap ranges
        spans = [(r.tap0, r.tap1) for r in group if r.tap1 > r.tap0]
        taps = (min(t0 for t0, _ in spans), max(t1 for _, t1 in spans)) if spans else (0, 0)
        return Run(group[0].first, group[-1].last, *taps)

    def cost(run):
        return (run.last - run.first) * (run.tap1 - run.tap0)

    # best[j]: the cheapest grouping of runs[:j], as (cost, runs); the shortest last group wins ties
    best = [(0, [])]
    for j in range(1, len(runs) + 1):
        options = []
        for i in range(j - 1, -1, -1):
            run = merged(runs[i:j])
            options.append((best[i][0] + cost(run) + (RUN_OVERHEAD if i else 0), best[i][1] + [run]))
        best.append(min(options, key=lambda option: option[0]))
    return best[-1][1]


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
