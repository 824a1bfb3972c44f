"""Synthetic segmentation data, generated on the fly and fixed by a seed: the default data of the demos,
notebooks and CI (no download needed).

* ``TouchingCells`` — grey micrographs of crowded cells that touch, in the spirit of the U-Net paper's
  cell data (§7.3.1, §7.3.4): two classes, 0 = background *including the thin gap drawn between touching
  cells* and 1 = cell, as in U-Net's ISBI / cell-tracking setup, plus instance labels (0 = none,
  1..K = cells) from which U-Net's weight map is computed (``return_instances=True``).
* ``MultiClassShapes`` — discs, squares, triangles and crosses of varied size and rotation on a textured
  background, smaller shapes occluding larger ones: a small multi-class scene task (FCN/DeepLab, §7.2, §7.4).
* ``ImbalancedShapes`` — the same scenes with large common shapes and small, rare triangles and crosses:
  a long-tail class distribution for the weighted, Dice and Lovász losses (§7.6).

Sample ``i`` is drawn from ``default_rng([seed, i])``, so it does not depend on which other samples were
made or in what order. ``ds[i]`` gives the clean sample; ``ds.sample(i, rng)`` applies ``transform`` with
``rng`` (what the ``DataLoader`` calls). Images are float32 (C, H, W) in [0, 1]; masks int64 (H, W).
"""

from __future__ import annotations

import numpy as np


def _size(size):
    height, width = (size, size) if np.isscalar(size) else size
    if min(height, width) < 8:
        raise ValueError(f"synthetic data: size must be at least 8 pixels; got {size!r}")
    return int(height), int(width)


def _blur(array, sigma):
    """Gaussian blur of standard deviation ``sigma`` px over the last two axes."""
    from scipy import ndimage  # imported on first use: it is slow to import, and `import minseg` loads this module

    return ndimage.gaussian_filter(array, (0,) * (array.ndim - 2) + (sigma, sigma), truncate=3.0)


def _smooth_noise(rng, shape, sigma):
    """Gaussian-filtered white noise with unit standard deviation: a cheap texture."""
    field = _blur(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / (field.std() + 1e-12)


class _Synthetic:
    """Shared plumbing: length, seeding, transform application and the dataset attributes."""

    ignore_index = 255

    def __init__(self, length, size, seed, transform):
        if length < 1:
            raise ValueError(f"{type(self).__name__}: length must be positive; got {length}")
        self.length, self.size, self.seed, self.transform = int(length), _size(size), int(seed), transform

    def __len__(self):
        return self.length

    def _rng(self, index):
        if not -self.length <= index < self.length:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for length {self.length}")
        return np.random.default_rng([self.seed, index % self.length])

    def sample(self, index, rng):
        """Sample ``index`` passed through ``transform`` (if any) with the generator ``rng``."""
        image, mask = self[index]
        return (image, mask) if self.transform is None else self.transform(image, mask, rng)


class TouchingCells(_Synthetic):
    """Crowded cells with separating gaps, as grey images with blur, noise and uneven illumination.

    Each cell k is an ellipse (centre c_k, semi-axes a_k, b_k, angle φ_k) with a wavy outline: a pixel p
    has normalised distance d_k(p) = ‖p − c_k‖_ellipse / (1 + w_k(θ)), w_k a small 2nd/3rd harmonic of
    the polar angle θ. Cells are the regions min_k d_k < 1, split between cells by the nearest centre
    (argmin_k d_k), so overlapping cells touch along a curve. Pixels next to a different cell become
    background, leaving a gap about two pixels wide: the border class U-Net learns with its weight map.

    Image: background level, a brighter level per cell with a fine texture, Gaussian blur (``blur`` px),
    a smooth multiplicative illumination field 1 + illumination·(linear + quadratic ramp), and additive
    Gaussian ``noise``.

    Returns ``(image (1, H, W) float32, mask (H, W) int64)``, and ``instances (H, W) int64`` as a third
    element when ``return_instances``; instances > 0 exactly where mask == 1.
    """

    num_classes = 2
    class_names = ("background", "cell")
    palette = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)

    def __init__(self, length=64, size=128, num_cells=(8, 16), radius=(0.08, 0.14), noise=0.04, blur=1.0,
                 illumination=0.3, return_instances=False, seed=0, transform=None):
        super().__init__(length, size, seed, transform)
        self.num_cells, self.radius = tuple(num_cells), tuple(radius)
        self.noise, self.blur, self.illumination = noise, blur, illumination
        self.return_instances = return_instances

    def _centres(self, rng, count, spacing):
        """Up to ``count`` centres at least ``spacing`` apart, greedily from uniform candidates."""
        height, width = self.size
        candidates = rng.uniform(0, 1, size=(8 * count, 2)) * [height, width]
        kept = []
        for point in candidates:
            if all(np.hypot(*(point - other)) >= spacing for other in kept):
                kept.append(point)
                if len(kept) == count:
                    break
        return np.array(kept)

    def _instances(self, index):
        """The instance map (H, W) of sample ``index`` and its generator, advanced past the layout draws."""
        rng = self._rng(index)
        height, width = self.size
        scale = min(height, width)
        count = int(rng.integers(self.num_cells[0], self.num_cells[1] + 1))
        mean_radius = scale * np.mean(self.radius)
        centres = self._centres(rng, count, 1.3 * mean_radius)
        k = len(centres)
        semi = (rng.uniform(*self.radius, size=(k, 2)) * scale).astype(np.float32)
        angle = rng.uniform(0, np.pi, size=k)
        cos, sin = (np.cos(angle).astype(np.float32)[:, None, None], np.sin(angle).astype(np.float32)[:, None, None])
        wave = rng.uniform(-0.08, 0.08, size=(4, k, 1, 1)).astype(np.float32)
        # Each cell lies within 1.35 semi-axes of its centre (|w| <= 0.32): measure d_k on a window there only.
        half = int(np.ceil(1.35 * semi.max()))
        corner = np.floor(centres).astype(np.int64)
        offsets = np.arange(-half, half + 1, dtype=np.float32)
        fraction = (corner - centres).astype(np.float32)
        dy = offsets[None, :, None] + fraction[:, 0, None, None]
        dx = offsets[None, None, :] + fraction[:, 1, None, None]
        u = (dx * cos + dy * sin) / semi[:, 0, None, None]
        v = (dy * cos - dx * sin) / semi[:, 1, None, None]
        rho2 = u * u + v * v + np.float32(1e-12)
        rho = np.sqrt(rho2)
        # w = a cos 2θ + b sin 2θ + c cos 3θ + d sin 3θ, written with u = ρ cos θ, v = ρ sin θ (no trig calls).
        wobble = (wave[0] * (u * u - v * v) + wave[1] * 2 * u * v) / rho2 \
            + (wave[2] * (u * u - 3 * v * v) * u + wave[3] * (3 * u * u - v * v) * v) / (rho2 * rho)
        distance = rho / (1 + wobble)
        # Nearest cell per pixel (argmin_k d_k), on a canvas padded by `half` so windows never leave it.
        best = np.full((height + 2 * half, width + 2 * half), np.inf, dtype=np.float32)
        owner = np.zeros(best.shape, dtype=np.int64)
        for i, (top, left) in enumerate(corner):
            window = (slice(top, top + 2 * half + 1), slice(left, left + 2 * half + 1))
            closer = distance[i] < best[window]
            best[window][closer] = distance[i][closer]
            owner[window][closer] = i + 1
        inner = (slice(half, half + height), slice(half, half + width))
        labels = np.where(best[inner] < 1, owner[inner], 0)
        gap = np.zeros(self.size, dtype=bool)
        for axis in (0, 1):  # a pixel whose 4-neighbour belongs to another cell joins the gap
            a, b = np.moveaxis(labels, axis, 0)[1:], np.moveaxis(labels, axis, 0)[:-1]
            differ = (a > 0) & (b > 0) & (a != b)
            np.moveaxis(gap, axis, 0)[1:] |= differ
            np.moveaxis(gap, axis, 0)[:-1] |= differ
        labels[gap] = 0
        present = np.unique(labels)
        present = present[present > 0]
        relabel = np.zeros(k + 1, dtype=np.int64)
        relabel[present] = np.arange(1, len(present) + 1)
        return relabel[labels], rng

    def _generate(self, index):
        instances, rng = self._instances(index)
        height, width = self.size
        count = int(instances.max())
        levels = np.concatenate([[rng.uniform(0.15, 0.3)], rng.uniform(0.55, 0.8, size=count)]).astype(np.float32)
        clean = levels[instances] + 0.04 * _smooth_noise(rng, self.size, 1.0) * (instances > 0)
        blurred = _blur(clean, self.blur) if self.blur else clean
        ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
        xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
        tilt = (self.illumination * rng.uniform(-1, 1, size=3)).astype(np.float32)
        field = 1 + 0.5 * tilt[0] * ys + 0.5 * tilt[1] * xs + 0.3 * tilt[2] * (ys * ys + xs * xs - 0.5)
        image = blurred * field + np.float32(self.noise) * rng.standard_normal(self.size, dtype=np.float32)
        return np.clip(image, 0, 1)[None], (instances > 0).astype(np.int64), instances

    def __getitem__(self, index):
        image, mask, instances = self._generate(index)
        return (image, mask, instances) if self.return_instances else (image, mask)

    def sample(self, index, rng):
        """Sample ``index`` through ``transform``; the instance map moves with the mask (as a second label
        plane) and gets 0 where the transform brought in ignored pixels."""
        image, mask, instances = self._generate(index)
        if self.transform is not None:
            image, planes = self.transform(image, np.stack([mask, instances]), rng)
            mask, instances = planes
            instances[mask == self.ignore_index] = 0
        return (image, mask, instances) if self.return_instances else (image, mask)


# Inside tests for unit-size shapes in local coordinates (u, v): each has an area near that of the unit disc.
_SQRT3 = np.sqrt(3.0)
_SHAPES = {
    "disc": lambda u, v: u * u + v * v <= 1,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.85,
    "triangle": lambda u, v: (v >= -0.65) & (_SQRT3 * u + v <= 1.3) & (-_SQRT3 * u + v <= 1.3),
    "cross": lambda u, v: ((np.abs(u) <= 0.35) | (np.abs(v) <= 0.35)) & (np.maximum(np.abs(u), np.abs(v)) <= 1.1),
}
_SHAPE_COLOURS = np.array([[0.85, 0.25, 0.2], [0.2, 0.7, 0.3], [0.25, 0.35, 0.9], [0.9, 0.8, 0.2]])


class MultiClassShapes(_Synthetic):
    """Shapes on a textured background; class c > 0 is the shape ``class_names[c]``.

    Each image has ``num_objects`` shapes. A shape's class is drawn with ``class_weights`` (one per shape
    class, normalised), its radius as a fraction of the image size from U(``scale``) (one (low, high)
    pair, or one per shape class), its rotation and centre uniformly. Shapes are painted largest first, so
    later, smaller ones occlude larger ones and the mask records what is visible. With ``class_colors``
    each class has its own hue (± ``color_jitter``); otherwise colours are random and only the shape
    tells the class. The background is a random colour plus smooth noise and stripes; the whole image is
    blurred by ``blur`` px and gets Gaussian ``noise``.

    Returns ``(image (3, H, W) float32, mask (H, W) int64)`` with labels in 0..4.
    """

    num_classes = 1 + len(_SHAPES)
    class_names = ("background",) + tuple(_SHAPES)
    palette = np.array([[0, 0, 0], [220, 60, 50], [50, 180, 80], [60, 90, 230], [230, 200, 50]], dtype=np.uint8)

    def __init__(self, length=64, size=128, num_objects=(3, 7), scale=(0.08, 0.25), class_weights=None,
                 class_colors=True, color_jitter=0.15, noise=0.03, blur=0.7, seed=0, transform=None):
        super().__init__(length, size, seed, transform)
        shapes = len(_SHAPES)
        weights = np.ones(shapes) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
        if weights.shape != (shapes,) or weights.min() < 0 or weights.sum() <= 0:
            raise ValueError(f"{type(self).__name__}: class_weights needs {shapes} non-negative weights; "
                             f"got {class_weights!r}")
        self.class_weights = weights / weights.sum()
        self.scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (shapes, 2)).copy()
        self.num_objects = tuple(num_objects)
        self.class_colors, self.color_jitter, self.noise, self.blur = class_colors, color_jitter, noise, blur

    def _background(self, rng):
        height, width = self.size
        base = rng.uniform(0.3, 0.6, size=(3, 1, 1)).astype(np.float32)
        texture = rng.uniform(0.04, 0.1, size=(3, 1, 1)).astype(np.float32) * _smooth_noise(rng, self.size, 3.0)
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(4, 12)
        phase = 2 * np.pi * frequency / max(height, width)
        ys = np.arange(height, dtype=np.float32)[:, None] * np.float32(phase * np.cos(angle))
        xs = np.arange(width, dtype=np.float32)[None, :] * np.float32(phase * np.sin(angle))
        return base + texture + 0.05 * np.sin(ys + xs)

    def __getitem__(self, index):
        rng = self._rng(index)
        height, width = self.size
        image, mask = self._background(rng), np.zeros(self.size, dtype=np.int64)
        count = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        classes = rng.choice(len(_SHAPES), size=count, p=self.class_weights)
        low, high = self.scale[classes].T
        radii = rng.uniform(low, high) * min(height, width)
        centres = rng.uniform(0, 1, size=(count, 2)) * [height, width]
        angles = rng.uniform(0, 2 * np.pi, size=count)
        jitter = rng.uniform(-self.color_jitter, self.color_jitter, size=(count, 3))
        random_colours = rng.uniform(0, 1, (count, 3))  # drawn either way: the layout ignores class_colors
        colours = np.clip(_SHAPE_COLOURS[classes] + jitter, 0, 1) if self.class_colors else random_colours
        for k in np.argsort(-radii, kind="stable"):
            # Every shape fits in a disc of radius 1.6 (local units) about its centre: work on that window.
            top, left = np.maximum(np.floor(centres[k] - 1.6 * radii[k]), 0).astype(np.int64)
            bottom, right = np.ceil(centres[k] + 1.6 * radii[k]).astype(np.int64) + 1
            dy = (np.arange(top, min(bottom, height), dtype=np.float32)[:, None] - centres[k, 0]) / radii[k]
            dx = (np.arange(left, min(right, width), dtype=np.float32)[None, :] - centres[k, 1]) / radii[k]
            u = dx * np.cos(angles[k]) + dy * np.sin(angles[k])
            v = dy * np.cos(angles[k]) - dx * np.sin(angles[k])
            inside = _SHAPES[self.class_names[classes[k] + 1]](u, v)
            window = (slice(top, bottom), slice(left, right))
            mask[window][inside] = classes[k] + 1
            image[(slice(None),) + window][:, inside] = colours[k][:, None]
        if self.blur:
            image = _blur(image, self.blur)
        image += np.float32(self.noise) * rng.standard_normal(image.shape, dtype=np.float32)
        return np.clip(image, 0, 1), mask


class ImbalancedShapes(MultiClassShapes):
    """``MultiClassShapes`` with a long tail: large discs and squares are common, triangles (weight 0.06)
    and crosses (0.03) are rare and small (radius 2–5 % of the image), so they cover well under 1 % of
    the pixels. Other arguments as in ``MultiClassShapes``."""

    def __init__(self, length=64, size=128, num_objects=(3, 7),
                 scale=((0.12, 0.3), (0.12, 0.3), (0.02, 0.05), (0.02, 0.05)),
                 class_weights=(0.455, 0.455, 0.06, 0.03), **kwargs):
        super().__init__(length, size, num_objects, scale, class_weights, **kwargs)
