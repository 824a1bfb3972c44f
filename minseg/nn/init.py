"""Weight initialisation, with ``torch.nn.init``'s names and formulas: ``import minseg.nn as nn; nn.init.…``.

Every function fills a tensor in place and returns it. Random values are drawn on the host from the
shared generator (``minseg.core.random.get_rng()``, seeded by ``minseg.manual_seed``) and then copied onto the
tensor's device, so a seed gives the same weights on the CPU and on a GPU. Nothing is recorded in the
autograd graph: the functions write ``tensor.data`` directly.

**Why the scales.** A layer with fan-in n sums n products w·x; with independent zero-mean weights of
variance σ² the output variance is n·σ²·E[x²]. Keeping it equal to the input's (so that deep stacks
neither explode nor vanish) gives σ² = 1/n for a linear layer; a ReLU zeroes half its inputs, halving
E[x²], hence He/Kaiming's σ = gain/√n with gain √2 (``calculate_gain``). Glorot/Xavier compromises between
the forward (fan_in) and backward (fan_out) passes: σ = gain·√(2/(fan_in + fan_out)). A uniform
distribution on [−b, b] has standard deviation b/√3, so the uniform variants use b = √3·σ.

``bilinear_upsampling_`` is FCN's initialisation of its transposed convolutions (§7.2.2): the learnable
upsampling starts out as plain bilinear interpolation.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.backend import to_device
from ..core.random import get_rng

_LINEAR_OPS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The factor that keeps activations' variance steady through ``nonlinearity`` (as ``torch.nn.init``):
    1 for linear/conv/sigmoid, 5/3 for tanh, √2 for relu, √(2/(1 + slope²)) for leaky_relu (``param`` is
    the slope, default 0.01), 3/4 for selu."""
    if nonlinearity in _LINEAR_OPS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
                     f"{_LINEAR_OPS + ('sigmoid', 'tanh', 'relu', 'leaky_relu', 'selu')}")


def fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight laid out (out, in, *kernel): in·∏kernel and out·∏kernel.

    This is PyTorch's ``_calculate_fan_in_and_fan_out``; it reads axes 0 and 1 whatever the layer, so for a
    transposed conv, whose weight is (in, out/groups, kh, kw), "fan_in" is out/groups·kh·kw — as in torch.
    """
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions; got shape {tensor.shape}")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _fan(tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out'; got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor, values):
    """Write host ``values`` into ``tensor.data`` in place (on its device, in its dtype); return the tensor."""
    tensor.data[...] = to_device(np.asarray(values, dtype=tensor.dtype), tensor.device)
    return tensor


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with samples from U(a, b)."""
    return _fill(tensor, get_rng().uniform(a, b, tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """Fill with samples from N(mean, std²)."""
    return _fill(tensor, get_rng().normal(mean, std, tensor.shape))


def constant_(tensor, val: float):
    """Fill with ``val``."""
    return _fill(tensor, np.full(tensor.shape, val))


def zeros_(tensor):
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with 1."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot: U(−b, b) with b = gain·√(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot: N(0, σ²) with σ = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He: U(−b, b) with b = √3 · gain / √fan, gain = ``calculate_gain(nonlinearity, a)``.

    ``a`` is the negative slope of the leaky ReLU that follows. PyTorch's default layer init is this with
    a = √5, i.e. b = 1/√fan_in (a legacy choice kept for compatibility, and matched here).
    """
    if 0 in tensor.shape:
        return tensor
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He: N(0, σ²) with σ = gain / √fan, gain = ``calculate_gain(nonlinearity, a)``."""
    if 0 in tensor.shape:
        return tensor
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)))


def pytorch_default_(weight, bias=None) -> None:
    """The default initialisation of PyTorch's Linear and conv layers: kaiming_uniform_(a=√5) on the
    weight, which is U(±1/√fan_in), and U(±1/√fan_in) on the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    fan_in, _ = fan_in_and_fan_out(weight)
    if bias is not None and fan_in > 0:
        bound = 1 / math.sqrt(fan_in)
        uniform_(bias, -bound, bound)


def bilinear_kernel(size: int) -> np.ndarray:
    """The (size, size) kernel that makes a stride-f transposed conv (size = 2f) interpolate bilinearly.

    1-D weights fall off linearly from the kernel's centre, 1 − |i − centre| / f with f = ⌈size/2⌉ (the
    centre is a pixel for odd sizes and between two pixels for even ones); the 2-D kernel is the outer
    product. Each output pixel then receives weights summing to 1 from its nearest inputs (FCN's
    ``upsample_filt``).
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"bilinear_kernel: size must be a positive int; got {size!r}")
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    weights = 1 - np.abs(np.arange(size) - center) / factor
    return np.outer(weights, weights)


def bilinear_upsampling_(weight):
    """FCN's init of a transposed conv (§7.2.2): channel c → c gets ``bilinear_kernel``, all else 0.

    ``weight`` is a ConvTranspose2d weight (C, C, k, k) (groups=1, as many outputs as inputs). With
    kernel 2f, stride f and padding f/2 (e.g. k=4, s=2, p=1) the layer upsamples by f by bilinear
    interpolation until training changes it.
    """
    shape = tuple(weight.shape)
    if len(shape) != 4 or shape[0] != shape[1] or shape[2] != shape[3]:
        raise ValueError("bilinear_upsampling_: weight must be (C, C, k, k): a ConvTranspose2d mapping C channels "
                         f"to C with a square kernel; got shape {shape}")
    values = np.zeros(shape)
    values[np.arange(shape[0]), np.arange(shape[0])] = bilinear_kernel(shape[2])
    return _fill(weight, values)
