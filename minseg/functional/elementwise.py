"""Elementwise ops and the softmax family, each a ``Function`` with its derivative written out.

Binary ops broadcast like NumPy/PyTorch; their backward returns the gradient at the broadcast shape
and the engine sums it back to each input's shape (``autograd.sum_to``). Comparison ops return
boolean tensors that carry no gradient.
"""

from __future__ import annotations

from ..core.autograd import Function, Tensor, check_same_device
from ..core.backend import get_array_module
from ..core.threads import elementwise, rowwise


# ------------------------------------------------------------------ arithmetic
class Add(Function):
    """y = a + b;  dy/da = dy/db = 1."""

    def forward(self, input, other):
        return elementwise(get_array_module(input, other).add, input, other)

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """y = a − b;  dy/da = 1, dy/db = −1."""

    def forward(self, input, other):
        return elementwise(get_array_module(input, other).subtract, input, other)

    def backward(self, grad):
        return grad, -grad if self.needs_input_grad[1] else None


class Mul(Function):
    """y = a · b;  dy/da = b, dy/db = a."""

    def forward(self, input, other):
        self.save_for_backward(other if self.needs_input_grad[0] else None,
                               input if self.needs_input_grad[1] else None)
        return elementwise(get_array_module(input, other).multiply, input, other)

    def backward(self, grad):
        other, input = self.saved
        xp = get_array_module(grad)
        return (elementwise(xp.multiply, grad, other) if other is not None else None,
                elementwise(xp.multiply, grad, input) if input is not None else None)


class Div(Function):
    """y = a / b;  dy/da = 1/b, dy/db = −a/b²."""

    def forward(self, input, other):
        self.save_for_backward(input if self.needs_input_grad[1] else None, other)
        return input / other

    def backward(self, grad):
        input, other = self.saved
        grad_input = grad / other if self.needs_input_grad[0] else None
        grad_other = -grad * input / (other * other) if self.needs_input_grad[1] else None
        return grad_input, grad_other


class Neg(Function):
    """y = −x."""

    def forward(self, input):
        return -input

    def backward(self, grad):
        return -grad


class Pow(Function):
    """y = xᵉ;  dy/dx = e·xᵉ⁻¹,  dy/de = xᵉ·ln x (taken as 0 where x = 0, as PyTorch does)."""

    def forward(self, input, exponent):
        output = input ** exponent
        self.save_for_backward(input, exponent, output)
        return output

    def backward(self, grad):
        input, exponent, output = self.saved
        xp = get_array_module(grad)
        grad_input = grad_exponent = None
        if self.needs_input_grad[0]:
            # e·x^(e−1); an exponent of exactly 0 has derivative 0 everywhere (avoids 0·inf at x = 0)
            grad_input = xp.where(exponent == 0, 0, grad * exponent * input ** (exponent - 1))
        if self.needs_input_grad[1]:
            safe_log = xp.log(xp.where(input == 0, 1, input))
            grad_exponent = xp.where(input == 0, 0, grad * output * safe_log)
        return grad_input, grad_exponent


def add(input, other):
    return Add.apply(input, other)


def sub(input, other):
    return Sub.apply(input, other)


def mul(input, other):
    return Mul.apply(input, other)


def div(input, other):
    return Div.apply(input, other)


def neg(input):
    return Neg.apply(input)


def pow(input, exponent):
    return Pow.apply(input, exponent)


# ------------------------------------------------------------------ unary maths
class Exp(Function):
    """y = eˣ;  dy/dx = y."""

    def forward(self, input):
        output = get_array_module(input).exp(input)
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        return grad * output


class Log(Function):
    """y = ln x;  dy/dx = 1/x."""

    def forward(self, input):
        self.save_for_backward(input)
        return get_array_module(input).log(input)

    def backward(self, grad):
        (input,) = self.saved
        return grad / input


class Sqrt(Function):
    """y = √x;  dy/dx = 1/(2y)."""

    def forward(self, input):
        output = get_array_module(input).sqrt(input)
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        return grad / (2 * output)


class Abs(Function):
    """y = |x|;  dy/dx = sign(x) (0 at x = 0)."""

    def forward(self, input):
        xp = get_array_module(input)
        self.save_for_backward(xp.sign(input))
        return xp.abs(input)

    def backward(self, grad):
        (sign,) = self.saved
        return grad * sign


class Clamp(Function):
    """y = min(max(x, lo), hi);  dy/dx = 1 where lo ≤ x ≤ hi (ends included, as PyTorch), else 0.

    Tensor bounds get the rest of the gradient, as in PyTorch: lo where x < lo < hi, hi where x > hi or
    hi < lo (then hi wins everywhere).
    """

    def forward(self, input, min, max):
        xp = get_array_module(input)
        inside = xp.ones(input.shape, dtype=bool)
        output = input
        if min is not None:
            inside = inside & (input >= min)
            output = xp.maximum(output, min)
        if max is not None:
            inside = inside & (input <= max)
            output = xp.minimum(output, max)
        self.save_for_backward(inside, input, min, max)
        return output

    def backward(self, grad):
        inside, input, min, max = self.saved
        grads = [grad * inside, None, None]
        if self.needs_input_grad[1]:
            grads[1] = grad * ((input < min) & (min < max) if max is not None else input < min)
        if self.needs_input_grad[2]:
            grads[2] = grad * ((input > max) | (max < min) if min is not None else input > max)
        return tuple(grads)


class Extremum(Function):
    """y = max(a, b) or min(a, b) elementwise; on ties each side gets half the gradient (as PyTorch)."""

    def forward(self, input, other, *, take_max):
        xp = get_array_module(input, other)
        output = xp.maximum(input, other) if take_max else xp.minimum(input, other)
        winner = input > other if take_max else input < other
        share = xp.where(input == other, 0.5, winner.astype(output.dtype)).astype(output.dtype)
        self.save_for_backward(share)
        return output

    def backward(self, grad):
        (share,) = self.saved
        return grad * share, grad * (1 - share)


class Where(Function):
    """y = a where condition else b; the gradient follows the branch each element came from."""

    def forward(self, condition, input, other):
        xp = get_array_module(input, other)
        self.save_for_backward(condition)
        return xp.where(condition, input, other)

    def backward(self, grad):
        (condition,) = self.saved
        return None, grad * condition, grad * ~condition


def exp(input):
    return Exp.apply(input)


def log(input):
    return Log.apply(input)


def sqrt(input):
    return Sqrt.apply(input)


def abs(input):
    return Abs.apply(input)


def clamp(input, min=None, max=None):
    """Clip values to ``[min, max]``: either bound may be ``None``, a number or a tensor (broadcast)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return Clamp.apply(input, min, max)


def maximum(input, other):
    return Extremum.apply(input, other, take_max=True)


def minimum(input, other):
    return Extremum.apply(input, other, take_max=False)


def where(condition, input, other):
    """``input`` where ``condition`` is true, else ``other`` (``condition`` is a bool tensor/array)."""
    condition = condition.data if isinstance(condition, Tensor) else condition
    if condition.dtype != bool:
        raise TypeError(f"where: condition must be a bool tensor; got dtype {condition.dtype}")
    return Where.apply(condition, input, other)


# ------------------------------------------------------------------ activations
class ReLU(Function):
    """y = max(x, 0);  dy/dx = 1 where x > 0 (0 at x = 0).

    Backward keeps the output, not the input: y > 0 exactly where x > 0, and y is usually kept alive
    anyway as the next layer's input, so the rule costs no memory of its own (PyTorch does the same).
    """

    def forward(self, input):
        xp = get_array_module(input)
        output = rowwise(lambda out, x: xp.maximum(x, 0, out=out), xp.empty_like(input), input)  # NaN stays NaN
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        xp = get_array_module(grad)
        # not "output > 0": at NaN the gradient passes, as in PyTorch
        return rowwise(lambda out, g, y: xp.multiply(g, ~(y <= 0), out=out), xp.empty_like(grad), grad, output)


class LeakyReLU(Function):
    """y = x for x > 0, else s·x;  dy/dx = 1 or s (s at x = 0, as PyTorch)."""

    def forward(self, input, *, negative_slope):
        xp = get_array_module(input)
        slope = xp.where(input > 0, 1, negative_slope).astype(input.dtype)
        self.save_for_backward(slope)
        return input * slope

    def backward(self, grad):
        (slope,) = self.saved
        return grad * slope


class Sigmoid(Function):
    """σ(x) = 1/(1 + e⁻ˣ), computed as exp(−log(1 + e⁻ˣ)) to stay finite;  dσ/dx = σ(1 − σ)."""

    def forward(self, input):
        xp = get_array_module(input)
        output = xp.exp(-xp.logaddexp(0, -input))
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        return grad * output * (1 - output)


class Tanh(Function):
    """y = tanh x;  dy/dx = 1 − y²."""

    def forward(self, input):
        output = get_array_module(input).tanh(input)
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        return grad * (1 - output * output)


def relu(input):
    return ReLU.apply(input)


def leaky_relu(input, negative_slope: float = 0.01):
    return LeakyReLU.apply(input, negative_slope=negative_slope)


def sigmoid(input):
    return Sigmoid.apply(input)


def tanh(input):
    return Tanh.apply(input)


# ------------------------------------------------------------------ softmax family
class Softmax(Function):
    """pᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m), m = maxⱼ xⱼ (shifting by m keeps exp finite for ±1e4 logits).

    Backward: dL/dxᵢ = pᵢ · (gᵢ − Σⱼ gⱼ pⱼ).
    """

    def forward(self, input, *, dim):
        xp = get_array_module(input)
        self.dim = dim
        if input.size == 0:  # an empty input has an empty softmax (and no max to shift by)
            self.save_for_backward(input)
            return input.copy()
        shifted = input - input.max(axis=dim, keepdims=True)
        exps = xp.exp(shifted)
        output = exps / exps.sum(axis=dim, keepdims=True)
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        return output * (grad - (grad * output).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    """log pᵢ = (xᵢ − m) − log Σⱼ exp(xⱼ − m);  dL/dxᵢ = gᵢ − pᵢ Σⱼ gⱼ."""

    def forward(self, input, *, dim):
        xp = get_array_module(input)
        self.dim = dim
        if input.size == 0:
            self.save_for_backward(input)
            return input.copy()

        def log_softmax(out, x):                      # a chunk along another axis than dim
            xp.subtract(x, x.max(axis=dim, keepdims=True), out=out)
            out -= xp.log(xp.exp(out).sum(axis=dim, keepdims=True))

        output = xp.empty(input.shape, dtype=xp.result_type(input, xp.float16))
        if dim % input.ndim:
            rowwise(log_softmax, output, input)
        else:
            log_softmax(output, input)
        self.save_for_backward(output)
        return output

    def backward(self, grad):
        (output,) = self.saved
        xp = get_array_module(grad)
        dim = self.dim

        def input_grad(out, g, y):                    # g − exp(y) · Σ g
            xp.multiply(xp.exp(y), g.sum(axis=dim, keepdims=True), out=out)
            xp.subtract(g, out, out=out)

        grad_input = xp.empty(grad.shape, dtype=xp.result_type(grad, output))
        if dim % grad.ndim:
            rowwise(input_grad, grad_input, grad, output)
        else:
            input_grad(grad_input, grad, output)
        return grad_input


def _softmax_dim(name, input, dim):
    ndim = getattr(input, "ndim", 0)
    if not isinstance(dim, int) or not -ndim <= dim < max(ndim, 1):
        raise ValueError(f"{name}: dim must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-d input; got {dim!r}")
    return dim


def softmax(input, dim: int):
    """Softmax along ``dim`` (required, as in PyTorch)."""
    return Softmax.apply(input, dim=_softmax_dim("softmax", input, dim))


def log_softmax(input, dim: int):
    """Log-softmax along ``dim``; stable for logits of any magnitude."""
    return LogSoftmax.apply(input, dim=_softmax_dim("log_softmax", input, dim))


# ------------------------------------------------------------------ comparisons
def _compare(name, ufunc_name, input, other):
    check_same_device(name, [("input", input), ("other", other)])
    a = input.data if isinstance(input, Tensor) else input
    b = other.data if isinstance(other, Tensor) else other
    xp = get_array_module(a, b)
    return Tensor(getattr(xp, ufunc_name)(a, b))


def eq(input, other):
    return _compare("eq", "equal", input, other)


def ne(input, other):
    return _compare("ne", "not_equal", input, other)


def lt(input, other):
    return _compare("lt", "less", input, other)


def le(input, other):
    return _compare("le", "less_equal", input, other)


def gt(input, other):
    return _compare("gt", "greater", input, other)


def ge(input, other):
    return _compare("ge", "greater_equal", input, other)
