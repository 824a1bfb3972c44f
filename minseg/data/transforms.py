"""Joint augmentation of an image and its label map (§7.3.4, "Heavy Data Augmentation").

Every transform is called as ``transform(image, mask, rng, *maps)`` and returns ``(image, mask, *maps)``:

* ``image``: float array, spatial size on the last two axes (``(C, H, W)`` or ``(H, W)``);
* ``mask``: integer label map ``(H, W)``, a stack of label maps ``(K, H, W)`` moved together (e.g. a
  semantic mask and an instance map), or ``None`` for an image alone;
* ``rng``: a ``numpy.random.Generator``. All randomness is drawn from it, so a seed fixes the result;
  the global NumPy generator is never touched. The ``DataLoader`` hands each sample its own generator;
* ``maps`` (optional): float per-pixel maps ``(H, W)`` or ``(K, H, W)`` — U-Net's loss weights (§7.3.4) —
  that go through the same geometric change as the image, interpolated like it (0 where ``"constant"``
  mode invents pixels); photometric changes leave them alone. Without maps a transform returns the pair.

Geometric transforms compute, for every output pixel, the input position it is read from, then
resample: the image with spline interpolation of ``order`` (1 = bilinear), the labels by nearest
neighbour (labels are never averaged). Positions outside the input follow ``mode``: ``"constant"``
gives the image ``fill`` and the labels ``ignore_index`` (255), so the loss skips pixels that were
invented; ``"reflect"``/``"mirror"``/``"nearest"`` extend both by symmetry or by the edge value, as
U-Net extends its tiles by mirroring.
"""

from __future__ import annotations

import numpy as np

_MODES = ("constant", "reflect", "mirror", "nearest")


def _check_rng(rng, name):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: pass a numpy.random.Generator as rng (e.g. np.random.default_rng(seed)); "
                        f"got {type(rng).__name__}")


def _check_mode(mode, name):
    if mode not in _MODES:
        raise ValueError(f"{name}: mode must be one of {_MODES}; got {mode!r}")


def _planes(array):
    """View the leading axes of ``array`` as one axis of 2-D planes."""
    return array.reshape((-1,) + array.shape[-2:])


def _range(value, name, centre=0.0):
    """A (low, high) sampling range: a number v means (centre − v, centre + v)."""
    low, high = (centre - value, centre + value) if np.isscalar(value) else value
    if low > high:
        raise ValueError(f"{name}: range must have low <= high; got ({low}, {high})")
    return float(low), float(high)


def _resample(array, coords, order, mode, fill):
    """Every plane of ``array`` interpolated at ``coords`` (2, H', W') → the array with spatial size (H', W')."""
    from scipy import ndimage  # imported on first use: it is slow to import, and `import minseg` loads this module

    planes = [ndimage.map_coordinates(plane, coords, order=order, mode=mode, cval=fill) for plane in _planes(array)]
    return np.stack(planes).reshape(array.shape[:-2] + coords.shape[1:]).astype(array.dtype, copy=False)


def warp(image, mask, rows, cols, order=1, mode="constant", fill=0.0, ignore_index=255, maps=()):
    """Resample ``image``, ``mask`` and ``maps`` at input positions ``(rows[i, j], cols[i, j])`` for every
    output pixel; returns ``(image, mask, *maps)``.

    The image and the maps are interpolated with splines of ``order``; the mask takes the label of the
    nearest input pixel. All use ``scipy.ndimage.map_coordinates`` with the same positions and ``mode``, so
    they stay aligned; outside positions get ``fill`` / ``ignore_index`` / 0 in ``"constant"`` mode.
    """
    _check_mode(mode, "warp")
    coords = np.stack([rows, cols])
    image = _resample(image, coords, order, mode, fill)
    if mask is not None:
        labels = _resample(mask.astype(np.float64), coords, 0, mode, ignore_index)
        mask = np.rint(labels).astype(mask.dtype)
    return (image, mask, *(_resample(m, coords, order, mode, 0.0) for m in maps))


class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, mask, rng, *maps):
        _check_rng(rng, "Compose")
        for transform in self.transforms:
            image, mask, *maps = transform(image, mask, rng, *maps)
        return (image, mask, *maps)

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class ElasticDeformation:
    """U-Net's elastic deformation (Ronneberger et al. 2015; §7.3.4).

    Displacement vectors are drawn on a coarse ``grid × grid`` lattice (3 × 3 in the paper) from
    N(0, sigma²) pixels (sigma = 10), one per axis, and spread smoothly over the image by bicubic spline
    interpolation, the lattice's corner nodes sitting on the image corners. Output pixel p reads the input
    at p + d(p). With ``sigma = 0`` the field is zero and the transform is the identity.
    """

    def __init__(self, sigma=10.0, grid=3, order=1, mode="constant", fill=0.0, ignore_index=255):
        if sigma < 0 or grid < 2:
            raise ValueError(f"ElasticDeformation: need sigma >= 0 and grid >= 2; got sigma={sigma}, grid={grid}")
        _check_mode(mode, "ElasticDeformation")
        self.sigma, self.grid, self.order, self.mode = float(sigma), int(grid), order, mode
        self.fill, self.ignore_index = fill, ignore_index

    def displacement(self, shape, rng):
        """The (2, H, W) field (row and column displacements in pixels) for an image of ``shape`` = (H, W)."""
        from scipy import ndimage

        height, width = shape
        coarse = rng.normal(0.0, self.sigma, size=(2, self.grid, self.grid))
        # Output pixel (r, c) sits at lattice coordinate (r (g−1)/(H−1), c (g−1)/(W−1)).
        rows = np.linspace(0, self.grid - 1, height)[:, None].repeat(width, 1)
        cols = np.linspace(0, self.grid - 1, width)[None, :].repeat(height, 0)
        return np.stack([ndimage.map_coordinates(c, [rows, cols], order=3, mode="nearest") for c in coarse])

    def __call__(self, image, mask, rng, *maps):
        _check_rng(rng, "ElasticDeformation")
        shape = image.shape[-2:]
        field = self.displacement(shape, rng)
        rows, cols = np.indices(shape, dtype=np.float64)
        return warp(image, mask, rows + field[0], cols + field[1], self.order, self.mode, self.fill,
                    self.ignore_index, maps)

    def __repr__(self):
        return f"ElasticDeformation(sigma={self.sigma}, grid={self.grid}, mode={self.mode!r})"


class RandomAffine:
    """Rotation, scaling and shift in one resampling (§7.3.4).

    Draws an angle θ ~ U(degrees) (counter-clockwise as displayed), a scale s ~ U(scale) and a shift
    t ~ U(±translate · (H, W)) pixels. With centre c = ((H−1)/2, (W−1)/2) and A = s·R(θ), output pixel p
    shows input position  c + A⁻¹ (p − c − t).  A number for ``degrees`` means ±degrees; ``translate``
    is a fraction of the size, one number or one per axis (rows, cols).
    """

    def __init__(self, degrees=0.0, translate=0.0, scale=(1.0, 1.0), order=1, mode="constant", fill=0.0,
                 ignore_index=255):
        self.degrees = _range(degrees, "RandomAffine degrees")
        self.translate = np.broadcast_to(np.asarray(translate, dtype=np.float64), (2,)).copy()
        self.scale = _range(scale, "RandomAffine scale")
        if self.scale[0] <= 0 or np.any(self.translate < 0):
            raise ValueError("RandomAffine: scale must be positive and translate non-negative")
        _check_mode(mode, "RandomAffine")
        self.order, self.mode, self.fill, self.ignore_index = order, mode, fill, ignore_index

    def __call__(self, image, mask, rng, *maps):
        _check_rng(rng, "RandomAffine")
        shape = np.array(image.shape[-2:], dtype=np.float64)
        theta = np.deg2rad(rng.uniform(*self.degrees))
        s = rng.uniform(*self.scale)
        shift = rng.uniform(-1.0, 1.0, size=2) * self.translate * shape
        # With rows pointing down, a counter-clockwise turn on screen maps (row, col) by [[cos, −sin], [sin, cos]];
        # the lookup needs its inverse (the transpose), divided by the scale.
        cos, sin = np.cos(theta), np.sin(theta)
        inverse = np.array([[cos, sin], [-sin, cos]]) / s
        centre = (shape - 1) / 2
        rows, cols = np.indices(image.shape[-2:], dtype=np.float64)
        offset = np.stack([rows - centre[0] - shift[0], cols - centre[1] - shift[1]])
        source = np.tensordot(inverse, offset, axes=1) + centre[:, None, None]
        return warp(image, mask, source[0], source[1], self.order, self.mode, self.fill, self.ignore_index, maps)

    def __repr__(self):
        return f"RandomAffine(degrees={self.degrees}, translate={tuple(self.translate)}, scale={self.scale})"


class RandomFlip:
    """Mirror image and mask along ``axis`` ("horizontal": columns, "vertical": rows) with probability p."""

    def __init__(self, axis="horizontal", p=0.5):
        if axis not in ("horizontal", "vertical"):
            raise ValueError(f"RandomFlip: axis must be 'horizontal' or 'vertical'; got {axis!r}")
        self.axis, self.p = axis, float(p)

    def __call__(self, image, mask, rng, *maps):
        _check_rng(rng, "RandomFlip")
        if rng.random() >= self.p:
            return (image, mask, *maps)
        axis = -1 if self.axis == "horizontal" else -2
        return tuple(None if a is None else np.ascontiguousarray(np.flip(a, axis)) for a in (image, mask, *maps))

    def __repr__(self):
        return f"RandomFlip({self.axis!r}, p={self.p})"


def RandomHorizontalFlip(p=0.5):
    """Left–right mirror with probability ``p``."""
    return RandomFlip("horizontal", p)


def RandomVerticalFlip(p=0.5):
    """Top–bottom mirror with probability ``p``."""
    return RandomFlip("vertical", p)


class RandomCrop:
    """A random ``size = (h, w)`` window. An image smaller than the window is first padded at the bottom and
    right, with ``fill`` in the image and ``ignore_index`` in the mask, so padded pixels are not trained on."""

    def __init__(self, size, fill=0.0, ignore_index=255):
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(v) for v in size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be a positive int or (h, w); got {size!r}")
        self.fill, self.ignore_index = fill, ignore_index

    def __call__(self, image, mask, rng, *maps):
        _check_rng(rng, "RandomCrop")
        (h, w), (height, width) = self.size, image.shape[-2:]
        spatial = [(0, max(h - height, 0)), (0, max(w - width, 0))]

        def padded(array, value):
            return None if array is None else np.pad(array, [(0, 0)] * (array.ndim - 2) + spatial,
                                                     constant_values=value)

        image, mask, maps = padded(image, self.fill), padded(mask, self.ignore_index), [padded(m, 0) for m in maps]
        top = rng.integers(0, image.shape[-2] - h + 1)
        left = rng.integers(0, image.shape[-1] - w + 1)
        window = (..., slice(top, top + h), slice(left, left + w))
        return tuple(None if a is None else np.ascontiguousarray(a[window]) for a in (image, mask, *maps))

    def __repr__(self):
        return f"RandomCrop({self.size})"


class PhotometricJitter:
    """Intensity changes; the mask is untouched. In order, with one draw each:

    gamma    x ← clip(x, 0, 1)^γ,          log γ ~ U(±gamma)
    contrast x ← m + c (x − m),            c ~ U(1 ± contrast), m the image mean
    brightness x ← x + b,                  b ~ U(±brightness)
    noise    x ← x + ε,                    ε ~ N(0, noise²) per pixel
    and finally ``clip`` to [0, 1]. All zero leaves an image in [0, 1] unchanged.
    """

    def __init__(self, brightness=0.1, contrast=0.1, gamma=0.1, noise=0.02, clip=True):
        if min(brightness, contrast, gamma, noise) < 0:
            raise ValueError("PhotometricJitter: strengths must be non-negative")
        self.brightness, self.contrast, self.gamma, self.noise, self.clip = brightness, contrast, gamma, noise, clip

    def __call__(self, image, mask, rng, *maps):
        _check_rng(rng, "PhotometricJitter")
        dtype = image.dtype
        x = np.clip(image, 0.0, 1.0) ** np.exp(rng.uniform(-self.gamma, self.gamma))
        mean = x.mean()
        x = mean + rng.uniform(1 - self.contrast, 1 + self.contrast) * (x - mean)
        x = x + rng.uniform(-self.brightness, self.brightness)
        x = x + rng.normal(0.0, self.noise, size=x.shape) if self.noise else x
        return ((np.clip(x, 0.0, 1.0) if self.clip else x).astype(dtype, copy=False), mask, *maps)

    def __repr__(self):
        return (f"PhotometricJitter(brightness={self.brightness}, contrast={self.contrast}, gamma={self.gamma}, "
                f"noise={self.noise})")
