"""Batch normalisation and dropout, with PyTorch's functional signatures.

``batch_norm`` normalises every channel of an (N, C), (N, C, L) or (N, C, H, W) input to zero mean and
unit variance — over the batch while training, with running averages at evaluation — then scales and
shifts it by the learned per-channel ``weight`` (γ) and ``bias`` (β). ``dropout`` zeroes random elements
and ``dropout2d`` random whole channels while training; both are the identity at evaluation.
"""

from __future__ import annotations

from ..autograd import Function, Tensor, raw
from ..backend import device_of, get_array_module, to_device
from ..random import get_rng
from .elementwise import mul


class BatchNorm(Function):
    """y = γ · x̂ + β with x̂ = (x − μ) / σ, σ = √(var + eps), per channel (axis 1).

    Training takes μ and var (biased) from the batch, over every axis but the channel one; n values
    per channel. The input gradient then has to account for μ and σ depending on x:
        dx = (1/σ) · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)),   ĝ = g · γ, means over the n values.
    At evaluation μ and var are fixed (the running statistics) and dx = ĝ / σ.
    In both cases dγ = Σ g · x̂ and dβ = Σ g over the n values.

    Forward also returns the batch mean and biased variance so the caller can update running buffers.
    """

    def forward(self, input, running_mean, running_var, weight, bias, training=False, eps=1e-5):
        xp = get_array_module(input)
        self.axes = (0,) + tuple(range(2, input.ndim))
        self.channel_shape = (1, -1) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over the input
        if training:
            mean, var = input.mean(axis=self.axes), input.var(axis=self.axes)
        else:
            mean, var = running_mean, running_var
        inv_std = 1 / xp.sqrt(var + eps)
        normalized = (input - mean.reshape(self.channel_shape)) * inv_std.reshape(self.channel_shape)
        output = normalized if weight is None else normalized * weight.reshape(self.channel_shape)
        if bias is not None:
            output = output + bias.reshape(self.channel_shape)
        self.training = training
        self.save_for_backward(normalized, inv_std, weight)
        return output, mean, var

    def backward(self, grad):
        normalized, inv_std, weight = self.saved
        grad_input = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            scaled = grad if weight is None else grad * weight.reshape(self.channel_shape)
            if self.training:
                scaled = (scaled - scaled.mean(axis=self.axes, keepdims=True)
                          - normalized * (scaled * normalized).mean(axis=self.axes, keepdims=True))
            grad_input = scaled * inv_std.reshape(self.channel_shape)
        if self.needs_input_grad[3]:
            grad_weight = (grad * normalized).sum(axis=self.axes)
        if self.needs_input_grad[4]:
            grad_bias = grad.sum(axis=self.axes)
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
