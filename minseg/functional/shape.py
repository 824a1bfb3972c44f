"""Shape ops: reshape/view, flatten, (un)squeeze, ``accepts_unbatched``, transpose, permute, cat, stack,
indexing, flip, center_crop, pad — and ``pair`` / ``same_padding``, the argument helpers of the 2-D ops.

None of these change values, so each backward only undoes the rearrangement: reshape back, permute
back, split the gradient of a concatenation, scatter the gradient of an indexing.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from ..core.autograd import Function, Tensor
from ..core.backend import get_array_module, scatter_add
from ..core.threads import rowwise
from .reduction import normalize_dims


def _shape_args(shape) -> tuple:
    """Accept ``f(x, 2, 3)`` and ``f(x, (2, 3))`` like PyTorch."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


class Reshape(Function):
    def forward(self, input, *, shape):
        self.input_shape = input.shape
        return input.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.input_shape)


def reshape(input, *shape):
    """Same elements in a new shape (one entry may be -1)."""
    shape = _shape_args(shape)
    numel = input.numel()
    known = math.prod(s for s in shape if s != -1)
    wildcards = sum(s == -1 for s in shape)
    valid = all(isinstance(s, int) and s >= -1 for s in shape) and (
        known == numel if wildcards == 0 else wildcards == 1 and known > 0 and numel % known == 0)
    if not valid:
        raise ValueError(f"reshape: shape {shape} is invalid for input of shape {input.shape} ({numel} elements)")
    return Reshape.apply(input, shape=shape)


view = reshape


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """Merge axes ``start_dim..end_dim`` into one."""
    if input.ndim == 0:
        return reshape(input, 1)
    (start,) = normalize_dims(start_dim, input.ndim, "flatten")
    (end,) = normalize_dims(end_dim, input.ndim, "flatten")
    merged = 1
    for size in input.shape[start:end + 1]:
        merged *= size
    return reshape(input, input.shape[:start] + (merged,) + input.shape[end + 1:])


def unsqueeze(input, dim: int):
    """Insert a size-1 axis at ``dim``."""
    (axis,) = normalize_dims(dim, input.ndim + 1, "unsqueeze")
    return reshape(input, input.shape[:axis] + (1,) + input.shape[axis:])


def squeeze(input, dim=None):
    """Drop size-1 axes (all of them, or those in ``dim`` that have size 1)."""
    axes = normalize_dims(dim, input.ndim, "squeeze")
    return reshape(input, tuple(s for a, s in enumerate(input.shape) if not (a in axes and s == 1)))


def accepts_unbatched(op: str):
    """Decorator: let a 2-D op written for (N, C, H, W) batches also take one (C, H, W) image, as PyTorch's
    conv, pooling and padding ops do. The image gets a batch axis of 1 for the call, and every tensor the op
    returns loses it again; any other rank is a ValueError naming ``op`` and the shape."""
    def decorate(function):
        @functools.wraps(function)
        def wrapper(input, *args, **kwargs):
            if input.ndim == 4:
                return function(input, *args, **kwargs)
            if input.ndim != 3:
                raise ValueError(f"{op}: input must be 3-D (C, H, W) or 4-D (N, C, H, W); got {input.ndim}-D "
                                 f"with shape {tuple(input.shape)}")
            result = function(unsqueeze(input, 0), *args, **kwargs)
            return tuple(squeeze(r, 0) for r in result) if isinstance(result, tuple) else squeeze(result, 0)
        return wrapper
    return decorate


class Permute(Function):
    def forward(self, input, *, dims):
        self.dims = dims
        return input.transpose(dims)

    def backward(self, grad):
        inverse = [0] * len(self.dims)
        for position, axis in enumerate(self.dims):
            inverse[axis] = position
        return grad.transpose(inverse)


def permute(input, *dims):
    """Reorder axes: output axis i is input axis ``dims[i]``."""
    dims = _shape_args(dims)
    if len(dims) != input.ndim or sorted(d % max(input.ndim, 1) for d in dims) != list(range(input.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of the {input.ndim} axes of shape {input.shape}")
    return Permute.apply(input, dims=tuple(d % input.ndim for d in dims))


def transpose(input, dim0: int, dim1: int):
    """Swap two axes."""
    a, b = (normalize_dims(d, input.ndim, "transpose")[0] for d in (dim0, dim1))
    dims = list(range(input.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(input, dims=tuple(dims))


class Cat(Function):
    def forward(self, *tensors, dim):
        xp = get_array_module(*tensors)
        self.dim = dim
        self.sizes = [t.shape[dim] for t in tensors]
        if dim == 0 or len({t.dtype for t in tensors}) > 1:
            return xp.concatenate(tensors, axis=dim)
        shape = list(tensors[0].shape)
        shape[dim] = sum(self.sizes)                # U-Net's skips: copied image by image on the host threads
        return rowwise(lambda out, *parts: xp.concatenate(parts, axis=dim, out=out),
                       xp.empty(shape, dtype=tensors[0].dtype), *tensors)

    def backward(self, grad):
        pieces, start = [], 0
        for size in self.sizes:
            index = [slice(None)] * grad.ndim
            index[self.dim] = slice(start, start + size)
            pieces.append(grad[tuple(index)])
            start += size
        return tuple(pieces)


def _check_cat_shapes(op, tensors, dim, same_everywhere):
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    first = tensors[0].shape
    for i, t in enumerate(tensors[1:], start=1):
        other = t.shape
        mismatch = len(other) != len(first) or any(
            a != b for axis, (a, b) in enumerate(zip(first, other)) if same_everywhere or axis != dim
        )
        if mismatch:
            rule = "the same shape" if same_everywhere else f"the same shape except in dim {dim}"
            raise ValueError(f"{op}: tensors[{i}] has shape {other} but tensors[0] has shape {first}; "
                             f"all need {rule}")


def cat(tensors, dim: int = 0):
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    (axis,) = normalize_dims(dim, tensors[0].ndim, "cat")
    _check_cat_shapes("cat", tensors, axis, same_everywhere=False)
    return Cat.apply(*tensors, dim=axis)


def stack(tensors, dim: int = 0):
    """Join same-shaped tensors along a new axis."""
    tensors = list(tensors)
    _check_cat_shapes("stack", tensors, None, same_everywhere=True)
    (axis,) = normalize_dims(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, axis) for t in tensors], axis)


class GetItem(Function):
    """y = x[index]. Backward writes the gradient back into a zero array at the same places; integer-array
    indices may repeat, so those are accumulated with ``scatter_add``."""

    def forward(self, input, *, index):
        self.input_shape, self.dtype, self.index = input.shape, input.dtype, index
        return input[index]

    def backward(self, grad):
        xp = get_array_module(grad)
        grad_input = xp.zeros(self.input_shape, dtype=self.dtype)
        if _is_basic(self.index):
            grad_input[self.index] = grad
        else:
            scatter_add(grad_input, self.index, grad)
        return grad_input


def _is_basic(index) -> bool:
    """True for indices made only of ints, slices, None and Ellipsis (each element picked at most once)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice)) or p is None or p is Ellipsis for p in parts)


def _raw_index(index, xp):
    """Tensors and lists inside an index become arrays of the input's array module."""
    if isinstance(index, tuple):
        return tuple(_raw_index(part, xp) for part in index)
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, (list, np.ndarray)):
        return xp.asarray(index)
    return index


def getitem(input, index):
    """``input[index]`` with ints, slices, None, Ellipsis, integer arrays/tensors or boolean masks."""
    return GetItem.apply(input, index=_raw_index(index, get_array_module(input)))


def center_crop(input, size):
    """The central ``size = (h, w)`` window of the last two axes (U-Net's skip-connection crop, §7.3.3).

    The window starts at ``((H − h) // 2, (W − w) // 2)``: when the margin is odd, the extra pixel is cut
    from the bottom/right.
    """
    h, w = pair(size, "size", "center_crop")
    height, width = input.shape[-2:]
    if not (0 < h <= height and 0 < w <= width):
        raise ValueError(f"center_crop: size ({h}, {w}) must be positive and fit inside the input's last two "
                         f"axes ({height}, {width}); input shape {input.shape}")
    top, left = (height - h) // 2, (width - w) // 2
    return getitem(input, (Ellipsis, slice(top, top + h), slice(left, left + w)))


class Flip(Function):
    def forward(self, input, *, dims):
        self.dims = dims
        return get_array_module(input).flip(input, axis=dims)

    def backward(self, grad):
        return get_array_module(grad).flip(grad, axis=self.dims)


def flip(input, dims):
    """Reverse the order of elements along ``dims``."""
    return Flip.apply(input, dims=normalize_dims(dims, input.ndim, "flip"))


# ------------------------------------------------------------------ padding
def pair(value, name: str, op: str, minimum: int | None = None) -> tuple:
    """An int, or a pair (or 1-element sequence) of ints, → an (h, w) tuple of ints, each ≥ ``minimum``
    when one is given: the kernel/stride/padding/window arguments of every 2-D op. Anything else raises a
    ValueError that names the op and the argument."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    values *= 2 if len(values) == 1 else 1
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                   and (minimum is None or v >= minimum) for v in values):
        bound = "" if minimum is None else f" ≥ {minimum}"
        raise ValueError(f"{op}: {name} must be an int or a pair of ints{bound}; got {name}={value!r}")
    return tuple(int(v) for v in values)


def same_padding(kernel, dilation=(1, 1)) -> tuple:
    """The ((top, bottom), (left, right)) padding of ``padding="same"`` at stride 1: d·(k − 1) in all per
    axis, ⌊d·(k − 1)/2⌋ before and the rest (one more when it is odd) after, as PyTorch splits it."""
    totals = [d * (k - 1) for k, d in zip(pair(kernel, "kernel_size", "same_padding", 1),
                                          pair(dilation, "dilation", "same_padding", 1))]
    return tuple((total // 2, total - total // 2) for total in totals)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}  # torch name -> xp.pad name


def _along(axis, start, stop):
    """An index that slices ``start:stop`` on ``axis`` and keeps every axis before it whole."""
    return (slice(None),) * axis + (slice(start, stop),)


class Pad(Function):
    """Pad each axis by ``widths[axis] = (before, after)``; negative widths crop instead.

    Forward grows the input by the positive widths with ``xp.pad`` and then cuts the negative ones off,
    so a crop never changes which pixels a reflection copies (as in PyTorch). Backward undoes it axis by
    axis: a constant border's gradient is simply dropped, while a reflected or replicated border pixel
    is a copy of one source pixel, so its gradient is added back onto that pixel.
    """

    def forward(self, input, *, widths, mode, value):
        xp = get_array_module(input)
        self.input_shape, self.mode = input.shape, mode
        self.grow = tuple((max(before, 0), max(after, 0)) for before, after in widths)
        extra = {"constant_values": value} if mode == "constant" else {}
        padded = xp.pad(input, self.grow, mode=_PAD_MODES[mode], **extra)
        self.padded_shape = padded.shape
        self.crop = tuple(slice(-min(before, 0), size + min(after, 0))
                          for (before, after), size in zip(widths, padded.shape))
        return padded[self.crop]

    def backward(self, grad):
        xp = get_array_module(grad)
        if grad.shape != self.padded_shape:  # some width was negative: the cropped pixels got no gradient
            uncropped = xp.zeros(self.padded_shape, dtype=grad.dtype)
            uncropped[self.crop] = grad
            grad = uncropped
        for axis, ((before, after), size) in enumerate(zip(self.grow, self.input_shape)):
            if before == after == 0:
                continue
            if self.mode == "constant":
                grad = grad[_along(axis, before, before + size)]
                continue
            source = grad[_along(axis, before, before + size)].copy()  # copied: grad may be shared
            left, right = grad[_along(axis, 0, before)], grad[_along(axis, before + size, None)]
            if self.mode == "reflect":
                # border pixel `before − k` mirrors source pixel k (k = 1..before); on the right,
                # border pixel `size − 1 + k` mirrors source pixel `size − 1 − k`
                source[_along(axis, 1, before + 1)] += xp.flip(left, axis=axis)
                source[_along(axis, size - 1 - after, size - 1)] += xp.flip(right, axis=axis)
            else:  # replicate: every border pixel copies the edge pixel
                source[_along(axis, 0, 1)] += left.sum(axis=axis, keepdims=True)
                source[_along(axis, size - 1, size)] += right.sum(axis=axis, keepdims=True)
            grad = source
        return grad


def pad(input, pad, mode: str = "constant", value: float = 0.0):
    """Pad the trailing axes like ``torch.nn.functional.pad``.

    ``pad`` lists (before, after) amounts starting from the LAST axis: ``(left, right)`` pads the width,
    ``(left, right, top, bottom)`` the height too, and so on. Modes:

    * ``"constant"`` fills with ``value``; any number of trailing axes; negative amounts crop.
    * ``"reflect"`` mirrors the input about its edge pixel without repeating it (``[a, b, c]`` padded by 2
      on the left gives ``[c, b, a, b, c]``): the mirror padding U-Net uses at image borders (§7.3.3).
      Each amount must be smaller than the size of the axis it mirrors, as in PyTorch.
    * ``"replicate"`` repeats the edge pixel.

    Unlike PyTorch, reflect and replicate are not limited to the last one to three axes.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {sorted(_PAD_MODES)}; got {mode!r}")
    if mode != "constant" and value != 0:
        raise ValueError(f"pad: mode {mode!r} takes no fill value; got value={value!r}")
    amounts = tuple(pad) if isinstance(pad, (tuple, list)) else (pad,)
    if not all(isinstance(p, (int, np.integer)) for p in amounts) or len(amounts) % 2:
        raise ValueError(f"pad: pad must be an even-length sequence of ints (left, right, top, bottom, …); "
                         f"got {pad!r}")
    if len(amounts) // 2 > input.ndim:
        raise ValueError(f"pad: pad={amounts} pads {len(amounts) // 2} axes but the input has only {input.ndim} "
                         f"(shape {input.shape})")
    widths = [(0, 0)] * input.ndim
    for k in range(len(amounts) // 2):
        widths[input.ndim - 1 - k] = (int(amounts[2 * k]), int(amounts[2 * k + 1]))
    for axis, ((before, after), size) in enumerate(zip(widths, input.shape)):
        if size + min(before, 0) + min(after, 0) < 0:
            raise ValueError(f"pad: pad={amounts} crops more than the {size} elements of dim {axis} "
                             f"(input shape {input.shape})")
        if mode == "reflect" and (before, after) != (0, 0) and max(before, after) >= size:
            raise ValueError(f"pad: reflect padding needs each amount smaller than the size it mirrors; pad="
                             f"{amounts} asks for {max(before, after)} on dim {axis} of size {size} "
                             f"(input shape {input.shape})")
        if mode == "replicate" and max(before, after) > 0 and size == 0:
            raise ValueError(f"pad: replicate padding has no edge to copy on the empty dim {axis} "
                             f"(input shape {input.shape}, pad={amounts})")
    return Pad.apply(input, widths=tuple(widths), mode=mode, value=value)
