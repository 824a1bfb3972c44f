"""Inference on whole images (§7.7.1, §7.7.2, §7.3.4): resize, sliding window, overlap-tile and TTA.

Every function takes a ``model`` — any callable mapping an (N, C_in, h, w) Tensor to (N, C, h', w')
logits, on the device the image lives on — and an image (C_in, H, W) or batch (N, C_in, H, W), as a NumPy
or CuPy array or a Tensor. It runs under ``no_grad`` and returns a ``Prediction``: class probabilities
(softmax over C) and labels (their argmax), both arrays on the image's device, with the batch axis only
when the input had one.

* ``predict_resized`` — full-image inference: resize to the network's size, one forward pass, resize the
  logits back (bilinear, ``align_corners=False``), softmax. Fast; small objects suffer.
* ``sliding_window`` — windows of the training size at stride s = ⌊window·(1 − overlap)⌋ (the last one
  flush with the border), run in batches; each window's softmax is blended with an importance map w:

      P(x) = Σ_k w(x − o_k) p_k(x − o_k) / Σ_k w(x − o_k),

  the sum over windows k at offsets o_k that cover pixel x. ``blend="constant"`` (w ≡ 1) is plain
  averaging; ``"gaussian"`` down-weights window borders, where context is missing — the fix for
  mmseg #2214, where uniform averaging made "slide" worse than "whole". Images smaller than the window
  are padded (``pad_mode``) and the result cropped back.
* ``overlap_tile`` — U-Net's strategy for valid-convolution networks (§7.3.4): the image is mirrored
  (reflect padding) by the network's margin, and each output tile is predicted from an input tile that
  carries that margin of real or mirrored context, so tiles join seamlessly — exactly so, equal to one
  pass over the whole mirrored image, when tile offsets respect the network's pooling grid (``alignment``).
* ``tta`` — test-time augmentation (§7.7.2): average the probabilities over flips and scales, each mapped
  back to the input's frame; it takes a prediction function, so it wraps ``sliding_window`` as well as a model.
* ``predict_image`` — the pipeline ``minseg evaluate`` and ``predict`` run: pad to the model's size multiple,
  optionally slide a window, average flips, refine with the dense CRF (§7.4.4).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import functional as F
from ..core.autograd import Tensor, no_grad
from ..core.backend import device_of, get_array_module, to_device
from ..functional.resize import bilinear_resize
from ..functional.shape import pair
from .crf import dense_crf

BLENDS = ("gaussian", "constant")
FLIPS = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}


class Prediction(NamedTuple):
    """``probabilities`` (N, C, H, W) or (C, H, W) float; ``labels`` (N, H, W) or (H, W) int64 (argmax over C)."""

    probabilities: object
    labels: object


def _batch(image, caller):
    """The image as a float (N, C, H, W) array, and whether a batch axis was added."""
    array = image.data if isinstance(image, Tensor) else image
    if array.ndim not in (3, 4):
        raise ValueError(f"{caller}: image must be (C, H, W) or (N, C, H, W); got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return (array[None], True) if array.ndim == 3 else (array, False)


def _logits(model, batch):
    output = model(Tensor(batch))
    return output.data if isinstance(output, Tensor) else output


def _softmax(logits):
    return F.softmax(Tensor(logits), 1).data


def _resize(array, size):
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    return bilinear_resize(Tensor(array), size).data


def _flip(array, axes):
    """``array`` reversed along ``axes`` (none: unchanged), as a contiguous copy."""
    return get_array_module(array).ascontiguousarray(F.flip(Tensor(array), axes).data) if axes else array


def _mirror_pad(batch, padding):
    """Reflect-pad the last two axes by ``padding = ((top, bottom), (left, right))``, mirroring again and
    again when a pad exceeds the image (``numpy.pad``'s "reflect"): padded index i reads pixel m(i) with
    m(i) = |i| mod 2(L − 1), folded back as 2(L − 1) − m(i) when it is ≥ L."""
    xp = get_array_module(batch)
    for axis, (before, after) in zip((2, 3), padding):
        length = batch.shape[axis]
        i = xp.abs(xp.arange(-before, length + after))
        period = max(2 * (length - 1), 1)
        folded = i % period
        batch = batch.take(xp.where(folded < length, folded, period - folded), axis=axis)
    return batch


def _result(probabilities, added_batch):
    labels = probabilities.argmax(axis=1)
    return Prediction(probabilities[0], labels[0]) if added_batch else Prediction(probabilities, labels)


@no_grad()
def predict_resized(model, image, size):
    """Full-image inference (§7.7.1): resize to ``size``, predict, resize the logits back, softmax.

    Both resizes are bilinear with ``align_corners=False``; a model whose output is smaller than its input
    (an output stride) is handled by the same final resize to (H, W).
    """
    batch, added = _batch(image, "predict_resized")
    logits = _logits(model, _resize(batch, pair(size, "size", "predict_resized", 1)))
    return _result(_softmax(_resize(logits, batch.shape[-2:])), added)


def gaussian_importance_map(window, sigma_scale=0.125, floor=1e-3, device="cpu", dtype=np.float32):
    """w(i, j) = max(g_h(i)·g_w(j), floor) with g(t) = exp(−(t − c)² / (2σ²)), c = (L − 1)/2, σ = sigma_scale·L.

    c is the geometric centre of a window of L pixels — between the two middle pixels when L is even
    (the half-pixel shift of MONAI #5302 comes from taking c = L/2) — so the map is symmetric under
    flips. It is scaled to a peak of 1 and floored at 1e-3, MONAI's defaults, so that border pixels of a
    window still count where no other window covers them.
    """
    height, width = pair(window, "window", "gaussian_importance_map", 1)
    if sigma_scale <= 0:
        raise ValueError(f"gaussian_importance_map: sigma_scale must be positive; got {sigma_scale!r}")
    profiles = []
    for length in (height, width):
        t = np.arange(length, dtype=np.float64) - (length - 1) / 2
        profiles.append(np.exp(-(t**2) / (2 * (sigma_scale * length) ** 2)))
    weights = np.outer(*profiles)
    return to_device(np.maximum(weights / weights.max(), floor).astype(dtype), device)


def _starts(size, window, step):
    """Window offsets along one axis: 0, s, 2s, … and a last one flush with the end (deduplicated)."""
    if size <= window:
        return [0]
    count = math.ceil((size - window) / step) + 1
    return sorted({min(i * step, size - window) for i in range(count)})


@no_grad()
def sliding_window(model, image, window, overlap=0.25, batch_size=4, blend="gaussian", sigma_scale=0.125,
                   num_classes=None, pad_mode="constant"):
    """Sliding-window inference with importance-weighted blending (§7.7.1; formula in the module docstring).

    ``window`` (int or (h, w)) is the model's input size, which the model must return as its output size
    (same-padded networks; see ``overlap_tile`` for valid-padded ones). Windows step by
    ⌊window·(1 − overlap)⌋ ≥ 1 pixels, the last one placed flush with the border, and are run
    ``batch_size`` at a time (across the images of a batch too). An image smaller than the window is padded
    symmetrically with ``pad_mode`` (an ``xp.pad`` mode: "constant" zeros, "reflect", "edge"). Blending is
    done on probabilities, so the result is a convex combination of the windows' softmax outputs.
    ``num_classes``, when given, is checked against the model's output.
    """
    if blend not in BLENDS:
        raise ValueError(f"sliding_window: blend must be one of {BLENDS}; got {blend!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"sliding_window: overlap must be in [0, 1); got {overlap!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"sliding_window: batch_size must be a positive int; got {batch_size!r}")
    batch, added = _batch(image, "sliding_window")
    xp = get_array_module(batch)
    window = pair(window, "window", "sliding_window", 1)
    height, width = batch.shape[-2:]
    extra = [max(w - s, 0) for w, s in zip(window, (height, width))]
    padding = [(0, 0), (0, 0)] + [(e // 2, e - e // 2) for e in extra]
    padded = xp.pad(batch, padding, mode=pad_mode) if any(extra) else batch
    steps = [max(int(w * (1 - overlap)), 1) for w in window]
    offsets = [(n, y, x) for n in range(batch.shape[0])
               for y in _starts(padded.shape[2], window[0], steps[0])
               for x in _starts(padded.shape[3], window[1], steps[1])]
    if blend == "gaussian":
        weight = gaussian_importance_map(window, sigma_scale, device=device_of(batch), dtype=batch.dtype)
    else:
        weight = xp.ones(window, dtype=batch.dtype)
    total, norm = None, xp.zeros(padded.shape[2:], dtype=batch.dtype)
    for first in range(0, len(offsets), batch_size):
        chunk = offsets[first:first + batch_size]
        windows = xp.stack([padded[n, :, y:y + window[0], x:x + window[1]] for n, y, x in chunk])
        probabilities = _softmax(_logits(model, windows))
        if probabilities.shape[2:] != window:
            raise ValueError(f"sliding_window: the model maps a {window} window to a "
                             f"{tuple(probabilities.shape[2:])} output; it needs an output the size of its input "
                             "(use overlap_tile for valid-padding networks)")
        if num_classes is not None and probabilities.shape[1] != num_classes:
            raise ValueError(f"sliding_window: num_classes={num_classes} but the model returns "
                             f"{probabilities.shape[1]} channels")
        if total is None:
            total = xp.zeros((batch.shape[0], probabilities.shape[1]) + padded.shape[2:], dtype=probabilities.dtype)
        for (n, y, x), p in zip(chunk, probabilities):
            total[n, :, y:y + window[0], x:x + window[1]] += weight * p
            if n == 0:
                norm[y:y + window[0], x:x + window[1]] += weight
    top, left = padding[2][0], padding[3][0]
    blended = total[:, :, top:top + height, left:left + width] / norm[top:top + height, left:left + width]
    return _result(blended, added)


@no_grad()
def overlap_tile(model, image, output_tile, input_tile=None, margin=None, alignment=1, batch_size=4):
    """U-Net's overlap-tile prediction (§7.3.4) for a network that maps ``output_tile + 2·margin`` input
    pixels to ``output_tile`` outputs (valid convolutions: output pixel (i, j) sees input (i, j) … (i + 2m, j + 2m)).

    Give ``input_tile`` (then margin = (input_tile − output_tile)/2 per axis) or ``margin``. The image is
    reflect-padded by the margin on the top/left and by the margin plus whatever completes the last tile on
    the bottom/right (mirroring again when a margin exceeds the image, as ``numpy.pad`` does). Tiles start at
    multiples of the step, ``output_tile`` rounded down to a multiple of ``alignment``; with
    ``alignment = 2**depth`` for a U-Net of that depth every tile's pooling grid matches the one of a single
    pass over the whole padded image, so the stitched output equals that pass exactly (overlapping tiles,
    if the rounding made any, then agree and are simply overwritten). The result is cropped to (H, W).
    """
    if (input_tile is None) == (margin is None):
        raise ValueError("overlap_tile: give exactly one of input_tile and margin")
    batch, added = _batch(image, "overlap_tile")
    xp = get_array_module(batch)
    out = pair(output_tile, "output_tile", "overlap_tile", 1)
    if input_tile is not None:
        inner = pair(input_tile, "input_tile", "overlap_tile", 1)
        if any(i < o or (i - o) % 2 for i, o in zip(inner, out)):
            raise ValueError(f"overlap_tile: input_tile {inner} must exceed output_tile {out} by an even number of "
                             "pixels (twice the margin) on each axis")
        margins = tuple((i - o) // 2 for i, o in zip(inner, out))
    else:
        margins = pair(margin, "margin", "overlap_tile", 0)
    steps = tuple((o // alignment) * alignment for o in out)
    if min(steps) < 1:
        raise ValueError(f"overlap_tile: output_tile {out} is smaller than alignment={alignment}")
    size = batch.shape[-2:]
    starts = [[i * step for i in range(max(math.ceil((s - o) / step), 0) + 1)] for s, o, step in zip(size, out, steps)]
    covered = [st[-1] + o for st, o in zip(starts, out)]
    padded = _mirror_pad(batch, [(m, m + c - s) for m, c, s in zip(margins, covered, size)])
    tiles = [(n, y, x) for n in range(batch.shape[0]) for y in starts[0] for x in starts[1]]
    logits = None
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first:first + batch_size]
        inputs = xp.stack([padded[n, :, y:y + out[0] + 2 * margins[0], x:x + out[1] + 2 * margins[1]]
                           for n, y, x in chunk])
        result = _logits(model, inputs)
        if result.shape[2:] != out:
            raise ValueError(f"overlap_tile: the model maps a {tuple(inputs.shape[2:])} input tile to "
                             f"{tuple(result.shape[2:])}, not to output_tile {out}; check input_tile/margin")
        if logits is None:
            logits = xp.zeros((batch.shape[0], result.shape[1], covered[0], covered[1]), dtype=result.dtype)
        for (n, y, x), tile in zip(chunk, result):
            logits[n, :, y:y + out[0], x:x + out[1]] = tile
    return _result(_softmax(logits[:, :, :size[0], :size[1]]), added)


@no_grad()
def tta(predict_fn, image, flips=("h", "v"), scales=(1.0,)):
    """Test-time augmentation (§7.7.2): the mean of the probabilities over every scale × {identity, *flips}.

    For each scale s the (N, C_in, H, W) batch is resized (bilinear) to round(s·H) × round(s·W); for each
    flip ("h" = left-right, "v" = up-down, "hv" = both) it is flipped, passed to ``predict_fn``, flipped back
    and resized to (H, W). ``predict_fn`` receives an NCHW Tensor and returns a ``Prediction`` (e.g.
    ``lambda x: sliding_window(model, x, 128)``) or logits (a plain model, followed by softmax).
    Averaging probabilities (not labels) keeps the result a distribution over the classes.
    """
    unknown = [f for f in flips if f not in FLIPS]
    if unknown or not scales or min(scales) <= 0:
        raise ValueError(f"tta: flips must come from {tuple(FLIPS)} and scales be positive; got flips={flips!r}, "
                         f"scales={scales!r}")
    batch, added = _batch(image, "tta")
    size = batch.shape[-2:]
    total, count = None, 0
    for scale in scales:
        scaled = _resize(batch, tuple(max(round(scale * s), 1) for s in size))
        for axes in [()] + [FLIPS[f] for f in flips]:
            result = predict_fn(Tensor(_flip(scaled, axes)))
            if isinstance(result, Prediction):
                probabilities = result.probabilities
            else:
                probabilities = _softmax(result.data if isinstance(result, Tensor) else result)
            probabilities = _resize(_flip(probabilities, axes), size)
            total = probabilities if total is None else total + probabilities
            count += 1
    return _result(total / count, added)


@no_grad()
def predict_image(model, image, *, multiple=1, window=None, flips=(), crf=False):
    """Class probabilities and labels for one image (C_in, H, W) of any size, as ``minseg evaluate`` and
    ``minseg predict`` compute them (§7.7): a ``Prediction`` of (C, H, W) and (H, W) on the image's device.

    1. The model sees the image reflect-padded on the bottom/right to sides that are a multiple of
       ``multiple`` (a U-Net of depth d needs 2^d), and its logits are cropped back to (H, W).
    2. ``window`` (int or (h, w)): that padded model runs on ``sliding_window`` tiles instead of the whole image.
    3. ``flips`` (e.g. ``("h",)``): ``tta`` averages the probabilities over the identity and those flips.
    4. ``crf``: ``dense_crf`` refines the probabilities, with the image (scaled to 0–255) as the appearance.
    """
    array = image.data if isinstance(image, Tensor) else image
    if array.ndim != 3:
        raise ValueError(f"predict_image: image must be (C, H, W); got shape {tuple(array.shape)}")
    multiple = pair(multiple, "multiple", "predict_image", 1)

    def padded_model(batch):  # NCHW Tensor → logits of its own size
        h, w = batch.shape[-2:]
        pad_h, pad_w = -h % multiple[0], -w % multiple[1]
        padded = F.pad(batch, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else batch
        return model(padded)[..., :h, :w]

    predict_fn = padded_model
    if window is not None:
        predict_fn = lambda batch: sliding_window(padded_model, batch, window)  # noqa: E731
    if flips:
        probabilities = tta(predict_fn, array, flips=flips).probabilities
    else:
        result = predict_fn(Tensor(array[None]))
        probabilities = result.probabilities[0] if isinstance(result, Prediction) else _softmax(result.data)[0]
    if crf:
        xp = get_array_module(array)
        probabilities = dense_crf(probabilities, xp.clip(array * 255, 0, 255))
    return Prediction(probabilities, probabilities.argmax(axis=0))
