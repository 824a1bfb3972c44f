"""Matrix products: ``matmul`` (NumPy/PyTorch semantics, batched and broadcast) and ``linear``."""

from __future__ import annotations

from ..core.autograd import Function, sum_to
from ..core.backend import get_array_module
from .shape import transpose


class MatMul(Function):
    """Y = A B on the last two axes, leading axes broadcast.

    dL/dA = G Bᵀ and dL/dB = Aᵀ G (per batch element); the engine sums broadcast batch axes back.
    1-d operands are promoted to a row (A) or a column (B) for the product and the added axis is dropped.
    """

    def forward(self, input, other):
        xp = get_array_module(input, other)
        self.input_1d, self.other_1d = input.ndim == 1, other.ndim == 1
        a = input[None, :] if self.input_1d else input      # (..., n, k)
        b = other[:, None] if self.other_1d else other      # (..., k, m)
        self.save_for_backward(a if self.needs_input_grad[1] else None,
                               b if self.needs_input_grad[0] else None)
        self.a_shape, self.b_shape = a.shape, b.shape
        out = xp.matmul(a, b)                               # (..., n, m)
        return self._drop_promoted(out)

    def _drop_promoted(self, out):
        if self.other_1d:
            out = out[..., 0]
        if self.input_1d:
            out = out[..., 0, :] if not self.other_1d else out[..., 0]
        return out

    def backward(self, grad):
        a, b = self.saved
        if self.other_1d:
            grad = grad[..., None]
        if self.input_1d:
            grad = grad[..., None, :]                       # back to (..., n, m)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = grad @ b.swapaxes(-1, -2)              # (..., n, k)
            grad_a = sum_to(grad_a, self.a_shape).reshape(self.a_shape)
            grad_a = grad_a[0] if self.input_1d else grad_a
        if self.needs_input_grad[1]:
            grad_b = a.swapaxes(-1, -2) @ grad              # (..., k, m)
            grad_b = sum_to(grad_b, self.b_shape).reshape(self.b_shape)
            grad_b = grad_b[:, 0] if self.other_1d else grad_b
        return grad_a, grad_b


def matmul(input, other):
    """Matrix product with NumPy broadcasting rules; shapes must agree on the contracted axis."""
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension; got input shape {input.shape} "
                         f"and other shape {other.shape}")
    k_input = input.shape[-1]
    k_other = other.shape[0] if other.ndim == 1 else other.shape[-2]
    if k_input != k_other:
        raise ValueError(f"matmul: input has shape {input.shape} and other has shape {other.shape}; input's last "
                         f"dimension ({k_input}) must equal other's {'only' if other.ndim == 1 else 'second-to-last'} "
                         f"dimension ({k_other})")
    return MatMul.apply(input, other)


def linear(input, weight, bias=None):
    """y = x Wᵀ + b with ``weight`` of shape (out_features, in_features), as ``torch.nn.functional.linear``."""
    out = matmul(input, transpose(weight, 0, 1))
    return out if bias is None else out + bias
