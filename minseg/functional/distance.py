"""Exact Euclidean distance transforms, and the distance maps the losses of §7.3.4 and §7.6.3 are built from.

``distance_transform_edt(mask)`` gives every non-zero element of ``mask`` its Euclidean distance to the
nearest zero element, as ``scipy.ndimage.distance_transform_edt`` does, with our own code on NumPy or CuPy.

Algorithm (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions", 2012). The squared
distance is separable: with f = 0 on zero elements and +∞ elsewhere,

    D²(x) = min_y Σ_a h_a² (x_a − y_a)² + f(y)

is computed one axis at a time, each pass replacing every 1-D line g of the array by
``g'(q) = min_p h² (q − p)² + g(p)``, the lower envelope of parabolas rooted at (p, g(p)). A pass
builds that envelope left to right (a parabola that is lower than the envelope's last one from their
crossing on hides it), then reads the lowest parabola at every q. Both steps run on all lines of the
array at once: the only Python loop is over the positions of one axis (plus the pops a step needs).

Conventions:

* A mask (or, with ``axes``, an image of it) with no zero element follows SciPy, whose result is then
  the distance to a virtual zero element one step before the first element along the first
  transformed axis, at index (−1, 0, …, 0).
* ``sampling`` gives the grid spacing along each transformed axis (a number for all of them).
* ``axes`` picks the axes to measure along; the others index independent images, so a batch
  (N, H, W) uses ``axes=(-2, -1)``. The default, every axis, is SciPy's N-D transform.
"""

from __future__ import annotations

import numpy as np

from ..core.autograd import raw
from ..core.backend import get_array_module



def _normalise_axes(axes, ndim: int) -> tuple:
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    normalised = tuple(int(axis) % ndim if -ndim <= axis < ndim else None for axis in axes)
    if None in normalised or len(set(normalised)) != len(normalised) or not normalised:
        raise ValueError(f"axes must be distinct axes of a {ndim}-d mask; got {axes!r}")
    return normalised


def _normalise_sampling(sampling, count: int) -> tuple:
    if sampling is None:
        return (1.0,) * count
    spacing = np.asarray(sampling, dtype=np.float64)
    spacing = np.full(count, spacing) if spacing.ndim == 0 else spacing
    if spacing.shape != (count,) or not np.all(spacing > 0):
        raise ValueError(f"sampling must be one positive spacing or one per transformed axis ({count}); "
                         f"got {sampling!r}")
    return tuple(float(h) for h in spacing)


def _lower_envelope(f, spacing: float):
    """``g[q, l] = min_p spacing² (q − p)² + f[p, l]`` for every line l of the (n, lines) float64 array ``f``.

    Positions run along axis 0, so the values of all lines at one position are contiguous. ``f`` may hold
    +∞ (no parabola there); a line that is +∞ everywhere stays +∞. ``vertex[k, l]`` is the root of the
    k-th parabola of line l's envelope, ``start[k, l]`` where it becomes the lowest one, and ``last[l]``
    the index of the envelope's last parabola (−1: none yet).
    """
    xp = get_array_module(f)
    n, lines = f.shape
    line = xp.arange(lines)
    h2 = spacing * spacing
    rooted_at = xp.isfinite(f)
    # parabolas rooted at p and s cross where h²(x − p)² + f(p) = h²(x − s)² + f(s), i.e. at
    # x = (key(s) − key(p)) / (2h²(s − p)) with key(p) = f(p) + h²p²
    # (0 instead of +∞ where there is no parabola: those keys are never read, and stay finite)
    key = xp.where(rooted_at, f + h2 * xp.arange(n, dtype=f.dtype)[:, None] ** 2, 0.0).ravel()
    vertex = xp.zeros(n * lines, dtype=xp.int64)  # flat (n, lines) arrays, read at k·lines + l
    start = xp.full(n * lines, xp.inf, dtype=f.dtype)
    last = xp.full(lines, -1, dtype=xp.int64)

    def crossing_with(q, which, top):
        """Where the parabola rooted at q crosses parabola ``top`` of the envelopes of lines ``which``."""
        root = vertex[top * lines + which]
        return (key[q * lines + which] - key[root * lines + which]) / (2 * h2 * xp.maximum(q - root, 1))

    for q in range(n):
        rooted = rooted_at[q]
        has_top = last >= 0
        top = xp.maximum(last, 0)
        # (an empty envelope has no parabola to cross: the first one is the lowest from −∞ on)
        crossing = xp.where(has_top, crossing_with(q, line, top), -xp.inf)
        popping = xp.nonzero(rooted & has_top & (crossing <= start[top * lines + line]))[0]
        while popping.size:  # the new parabola hides the last one from its start on: drop it
            last[popping] -= 1  # never below 0: the first parabola starts at −∞
            crossing[popping] = crossing_with(q, popping, last[popping])
            popping = popping[crossing[popping] <= start[last[popping] * lines + popping]]
        last += rooted
        chosen = xp.nonzero(rooted)[0]
        slot = last[chosen] * lines + chosen
        vertex[slot] = q
        start[slot] = crossing[chosen]
    # Read the envelope: the parabola lowest at q is the last k with start[k] < q, i.e. lowest(q) =
    # #{k : start[k] < q} − 1. For an integer q, start < q exactly when q ≥ floor(start) + 1, so counting
    # each parabola at position floor(start) + 1 (one bincount for all lines) and summing up gives it.
    positions = xp.arange(n)
    start = xp.where(positions[:, None] > last[None, :], xp.inf, start.reshape(n, lines))  # drop popped ones
    first_position = xp.floor(xp.clip(start, -1, n)).astype(xp.int64) + 1  # n + 1: never lowest
    counts = xp.bincount((xp.minimum(first_position, n) * lines + line).ravel(), minlength=(n + 1) * lines)
    lowest = xp.maximum(xp.cumsum(counts.reshape(n + 1, lines)[:n], axis=0) - 1, 0)  # −1: no parabola
    root = xp.take_along_axis(vertex.reshape(n, lines), lowest, axis=0)
    distance = h2 * (positions[:, None] - root) ** 2 + xp.take_along_axis(f, root, axis=0)
    return xp.where(last[None, :] >= 0, distance, xp.inf)


def squared_distance_to_zero(mask, sampling=None, axes=None):
    """Squared Euclidean distance of every element of ``mask`` to its nearest zero, +∞ in an image
    without any zero (the building block of ``distance_transform_edt``; see the module docstring)."""
    mask = raw(mask)
    xp = get_array_module(mask)
    if mask.ndim == 0:
        raise ValueError("distance transform: mask must have at least one axis; got a 0-d array")
    axes = _normalise_axes(axes, mask.ndim)
    sampling = _normalise_sampling(sampling, len(axes))
    squared = xp.where(mask == 0, 0.0, xp.inf)
    for axis, spacing in zip(axes, sampling):
        lines = xp.moveaxis(squared, axis, 0)
        shape = lines.shape
        lines = _lower_envelope(xp.ascontiguousarray(lines).reshape(shape[0], -1), spacing)
        squared = xp.moveaxis(lines.reshape(shape), 0, axis)
    return squared


def distance_transform_edt(mask, sampling=None, axes=None):
    """Euclidean distance of every non-zero element of ``mask`` to the nearest zero element (0 on zeros).

    Same result as ``scipy.ndimage.distance_transform_edt(mask, sampling)`` (float64, same array
    module as ``mask``), including SciPy's answer for an image with no zero element: the distance to
    the virtual zero at index (−1, 0, …, 0) of the transformed axes. ``axes`` (default: all) chooses
    the axes measured along; the remaining axes index separate images.
    """
    mask = raw(mask)
    xp = get_array_module(mask)
    squared = squared_distance_to_zero(mask, sampling, axes)
    axes = _normalise_axes(axes, mask.ndim)
    spacing = _normalise_sampling(sampling, len(axes))
    if bool(xp.isinf(squared).any()):  # some image has no zero element: SciPy's virtual zero
        virtual = xp.zeros((), dtype=xp.float64)
        for order, (axis, h) in enumerate(zip(axes, spacing)):
            index = xp.arange(mask.shape[axis], dtype=xp.float64) + (order == 0)
            virtual = virtual + (h * index.reshape([-1 if a == axis else 1 for a in range(mask.ndim)])) ** 2
        squared = xp.where(xp.isinf(squared), virtual, squared)
    return xp.sqrt(squared)


def signed_distance_map(mask, sampling=None, axes=(-2, -1)):
    """Signed distance to the object boundary, negative inside, as in Kervadec et al.'s boundary loss (§7.6.3).

    For object pixels (``mask`` non-zero) and background pixels (zero), with d_bg(x) the distance to the
    nearest background pixel and d_obj(x) the distance to the nearest object pixel:

        φ(x) = −(d_bg(x) − 1)  inside the object,     φ(x) = d_obj(x)  outside it.

    This is the convention of Kervadec's ``one_hot2dist``: object pixels touching the background get 0,
    deeper ones −1, −2, …; the background pixels next to the object get 1 (the constant 1 is not scaled
    by ``sampling``, as there). An image with no object gets φ = 0 everywhere, as in their code ("another
    class supervises those pixels"); an image that is all object has no boundary and also gets 0 (their
    code would inherit SciPy's virtual zero there). ``axes`` are the image axes (default the last two);
    the others index images or one-hot channels, e.g. an (N, C, H, W) one-hot target.
    """
    mask = raw(mask)
    xp = get_array_module(mask)
    inside = mask != 0
    axes = _normalise_axes(axes, mask.ndim)
    to_background = xp.sqrt(squared_distance_to_zero(inside, sampling, axes))
    to_object = xp.sqrt(squared_distance_to_zero(~inside, sampling, axes))
    phi = xp.where(inside, 1.0 - to_background, to_object)
    return xp.where(xp.isinf(phi), 0.0, phi)  # no object or no background in that image: no boundary


def nearest_instance_distances(instance_labels, count: int = 2, sampling=None, chunk_elements: int = 1 << 22):
    """Distances of every pixel to its ``count`` nearest instances, as an array (count, *labels.shape).

    ``instance_labels`` (H, W) or (N, H, W) holds 0 for background and a positive id per instance; the
    distance to instance i is the distance to its nearest pixel (0 on the instance itself), measured in
    each image separately. Fewer than ``count`` instances in an image leave +∞ in the missing slots.
    This is d1 (nearest) and d2 (second nearest) of the U-Net weight map (§7.3.4). Instances are
    transformed together, as a batch of at most ``chunk_elements`` elements at a time.
    """
    labels = raw(instance_labels)
    xp = get_array_module(labels)
    if labels.ndim < 2:
        raise ValueError(f"instance_labels must be (H, W) or (N, H, W); got shape {labels.shape}")
    ids = xp.unique(labels)
    ids = ids[ids > 0]
    nearest = xp.full((count,) + labels.shape, xp.inf)
    per_chunk = max(1, chunk_elements // max(labels.size, 1))
    for first in range(0, int(ids.size), per_chunk):
        chosen = ids[first:first + per_chunk].reshape((-1,) + (1,) * labels.ndim)
        squared = squared_distance_to_zero(labels[None] != chosen, sampling, axes=(-2, -1))
        candidates = xp.concatenate([nearest, xp.sqrt(squared)], axis=0)
        nearest = xp.sort(candidates, axis=0)[:count]
    return nearest
