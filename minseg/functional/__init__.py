"""Differentiable ops with PyTorch's names and semantics: ``import minseg.functional as F``.

This module also gives ``Tensor`` its operators and methods (``x + y``, ``x @ w``, ``x.sum(1)``,
``x[idx]``…): each is a thin call into the functions below, attached here so that ``autograd`` does
not need to import the ops built on top of it.
"""

from ..core.autograd import Tensor
from .elementwise import (abs, add, clamp, div, eq, exp, ge, gt, le, leaky_relu, log, log_softmax, lt,
                          maximum, minimum, mul, ne, neg, pow, relu, sigmoid, softmax, sqrt, sub, tanh, where)
from .conv import conv2d, conv_transpose2d
from .linear import linear, matmul
from .loss import cross_entropy, nll_loss
from .normalization import batch_norm, dropout, dropout2d
from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .reduction import amax, amin, logsumexp, max, mean, min, sum
from .resize import interpolate
from .shape import (cat, center_crop, flatten, flip, getitem, pad, permute, reshape, squeeze, stack, transpose,
                    unsqueeze, view)


def _swap(function):
    """``other <op> tensor`` → ``function(other, tensor)`` for the reflected operators."""
    return lambda self, other: function(other, self)


_TENSOR_METHODS = {
    "__add__": add, "__radd__": _swap(add), "__sub__": sub, "__rsub__": _swap(sub),
    "__mul__": mul, "__rmul__": _swap(mul), "__truediv__": div, "__rtruediv__": _swap(div),
    "__pow__": pow, "__rpow__": _swap(pow), "__matmul__": matmul, "__rmatmul__": _swap(matmul),
    "__neg__": neg, "__getitem__": getitem,
    "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "neg": neg, "matmul": matmul,
    "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "clamp": clamp, "relu": relu,
    "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax, "log_softmax": log_softmax,
    "sum": sum, "mean": mean, "max": max, "min": min, "amax": amax, "amin": amin, "logsumexp": logsumexp,
    "reshape": reshape, "view": view, "flatten": flatten, "squeeze": squeeze, "unsqueeze": unsqueeze,
    "transpose": transpose, "permute": permute, "flip": flip,
}
for _name, _function in _TENSOR_METHODS.items():
    setattr(Tensor, _name, _function)
Tensor.T = property(lambda self: permute(self, tuple(reversed(range(self.ndim)))))

__all__ = sorted(name for name in dir() if not name.startswith("_") and name != "Tensor")
