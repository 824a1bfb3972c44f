"""Batch normalisation and dropout, with PyTorch's functional signatures.

``batch_norm`` normalises every channel of an (N, C), (N, C, L) or (N, C, H, W) input to zero mean and
unit variance — over the batch while training, with running averages at evaluation — then scales and
shifts it by the learned per-channel ``weight`` (γ) and ``bias`` (β). ``dropout`` zeroes random elements
and ``dropout2d`` random whole channels while training; both are the identity at evaluation.
"""

from __future__ import annotations

from ..core.autograd import Function, Tensor, raw
from ..core.backend import device_of, get_array_module, to_device
from ..core.random import get_rng
from ..core.threads import rowwise, split_work
from .elementwise import mul


def _channel_sums(flat, mean=None, other=None):
    """Σ x per channel of ``flat`` (N, C, L); with ``mean``, Σ (x − μ) · y instead, y = ``other`` or x − μ.

    The images are shared out over the host threads, and each takes its images one at a time: the
    temporary x − μ stays an image's size (cache- and allocator-friendly) and no large x̂ is ever made."""
    xp = get_array_module(flat)

    def sums(start, stop):
        total = xp.zeros(flat.shape[1], dtype=flat.dtype)
        for n in range(start, stop):
            if mean is None:
                total += flat[n].sum(axis=1)
                continue
            centered = flat[n] - mean[:, None]                           # (C, L)
            total += xp.einsum("cl,cl->c", centered, centered if other is None else other[n])
        return total

    partials = split_work(sums, flat.shape[0], flat)
    for partial in partials[1:]:
        partials[0] += partial
    return partials[0]


class BatchNorm(Function):
    """y = γ · x̂ + β with x̂ = (x − μ) / σ, σ = √(var + eps), per channel (axis 1).

    Training takes μ and var (biased) from the batch, over every axis but the channel one; n values
    per channel. The input gradient then has to account for μ and σ depending on x:
        dx = (γ/σ) · (g − mean(g) − x̂ · mean(g · x̂)).
    At evaluation μ and var are fixed (the running statistics) and dx = (γ/σ) · g.
    In both cases dγ = Σ g · x̂ and dβ = Σ g over the n values.

    As in PyTorch, backward keeps the input x (the conv output before it, alive anyway) and σ, not x̂:
    forward is two reductions (μ; Σ (x − μ)², image by image) and one pass y = x · γ/σ + (β − μ · γ/σ);
    backward is two reductions (Σ g; Σ g · (x − μ)) and dx = ((x − μ) · (−Σ g·x̂/(nσ)) + g) · γ/σ − γ/σ ·
    mean(g), in place on one new array. Forward also returns the batch mean and biased variance so the
    caller can update the running buffers.
    """

    def forward(self, input, running_mean, running_var, weight, bias, *, training, eps):
        xp = get_array_module(input)
        n, c = input.shape[:2]
        flat = input.reshape(n, c, -1)                                   # (N, C, L)
        count = flat.shape[0] * flat.shape[2]
        mean = _channel_sums(flat) / count if training else running_mean
        var = _channel_sums(flat, mean) / count if training else running_var
        inv_std = 1 / xp.sqrt(var + eps)
        scale = inv_std if weight is None else inv_std * weight
        shift = -mean * scale if bias is None else bias - mean * scale

        def normalise(out, x):                                           # y = x · γ/σ + (β − μ · γ/σ)
            xp.multiply(x, scale.reshape(1, c, 1), out=out)
            out += shift.reshape(1, c, 1)

        output = rowwise(normalise, xp.empty(flat.shape, dtype=xp.result_type(flat, scale, shift)), flat)
        self.training = training
        self.save_for_backward(flat, mean, inv_std, scale)
        return output.reshape(input.shape), mean, var

    def backward(self, grad):
        flat, mean, inv_std, scale = self.saved
        n, c, length = flat.shape
        g = grad.reshape(n, c, length)
        sum_g = _channel_sums(g)
        needs_gc = self.needs_input_grad[3] or (self.training and self.needs_input_grad[0])
        sum_gx = _channel_sums(flat, mean, g) * inv_std if needs_gc else None         # Σ g · x̂
        grad_input = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            xp = get_array_module(grad)
            if self.training:
                count = n * length

                def input_grad(out, x, gg):     # ((x − μ) · (−Σ g·x̂ / (nσ)) + g) · γ/σ − γ/σ · mean(g)
                    xp.subtract(x, mean.reshape(1, c, 1), out=out)
                    out *= (-sum_gx * inv_std / count).reshape(1, c, 1)
                    out += gg
                    out *= scale.reshape(1, c, 1)
                    out -= (scale * sum_g / count).reshape(1, c, 1)
            else:
                def input_grad(out, x, gg):
                    xp.multiply(gg, scale.reshape(1, c, 1), out=out)
            grad_input = rowwise(input_grad, xp.empty(g.shape, dtype=xp.result_type(flat, g, scale)), flat, g)
            grad_input = grad_input.reshape(grad.shape)
        if self.needs_input_grad[3]:
            grad_weight = sum_gx
        if self.needs_input_grad[4]:
            grad_bias = sum_g
        return grad_input, None, None, grad_weight, grad_bias


def _update_running(buffer, batch_statistic, momentum) -> None:
    """buffer ← (1 − momentum) · buffer + momentum · batch_statistic, in place (a module's buffer aliases it)."""
    data = raw(buffer)
    data *= 1 - momentum
    data += momentum * batch_statistic


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5):
    """Like ``torch.nn.functional.batch_norm`` for (N, C), (N, C, L) and (N, C, H, W) inputs.

    Training normalises with the batch statistics and, when the buffers are given, updates them in
    place: ``running = (1 − momentum) · running + momentum · batch``, where the variance stored is the
    unbiased one (n/(n − 1) times the biased variance used to normalise). Evaluation normalises with
    ``running_mean`` and ``running_var``. ``weight`` (γ) and ``bias`` (β) are optional (C,) tensors.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C, ...) with at least 2 dims; got shape {input.shape}")
    channels = input.shape[1]
    named = {"running_mean": running_mean, "running_var": running_var, "weight": weight, "bias": bias}
    for name, value in named.items():
        if value is not None and tuple(value.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},) for input of shape {input.shape} "
                             f"(C = {channels}); got {tuple(value.shape)}")
    if training and input.numel() // max(channels, 1) <= 1:
        raise ValueError(f"batch_norm: training needs more than 1 value per channel to compute a variance; "
                         f"got input shape {input.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are required when training=False")
    output, mean, var = BatchNorm.apply(input, running_mean, running_var, weight, bias, training=training, eps=eps)
    if training:
        count = input.numel() // channels
        if running_mean is not None:
            _update_running(running_mean, mean.data, momentum)
        if running_var is not None:
            _update_running(running_var, var.data * (count / (count - 1)), momentum)
    return output


def _check_probability(op, p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"{op}: p (the probability of zeroing) must be a number in [0, 1]; got p={p!r}")


def _dropout(input, p, mask_shape):
    """input · mask, the mask keeping each entry with probability 1 − p and scaling kept ones by 1/(1 − p).

    The mask is drawn on the host from the shared generator and then moved to the input's device, so a
    seed gives the same mask on the CPU and on a GPU.
    """
    if p == 1:
        return mul(input, 0.0)
    keep = get_rng().random(mask_shape) >= p
    mask = (keep * (1 / (1 - p))).astype(input.dtype)
    return mul(input, Tensor(to_device(mask, device_of(raw(input)))))


def dropout(input, p: float = 0.5, training: bool = True):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1 − p), so the
    expected value is unchanged and evaluation (``training=False``) is the identity."""
    _check_probability("dropout", p)
    if not training or p == 0:
        return input
    return _dropout(input, p, input.shape)


def dropout2d(input, p: float = 0.5, training: bool = True):
    """Channel dropout for (N, C, H, W): zero whole feature maps with probability ``p`` and scale the
    rest by 1/(1 − p). Neighbouring pixels are strongly correlated, so dropping single pixels would hardly
    regularise a convolutional layer; dropping a channel removes the feature everywhere."""
    _check_probability("dropout2d", p)
    if input.ndim != 4:
        raise ValueError(f"dropout2d: input must be (N, C, H, W); got shape {input.shape}")
    if not training or p == 0:
        return input
    return _dropout(input, p, input.shape[:2] + (1, 1))
