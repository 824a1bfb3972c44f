"""Elementwise ops and softmax against PyTorch, forward and backward in float64."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minseg
import minseg.functional as F
from helpers import check_op


def _any(rng, *shape):
    return rng.standard_normal(shape)


def _positive(rng, *shape):
    return rng.uniform(0.2, 3.0, shape)


def _away_from_zero(rng, *shape):
    return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


UNARY = [
    ("neg", F.neg, torch.neg, _any),
    ("exp", F.exp, torch.exp, _any),
    ("log", F.log, torch.log, _positive),
    ("sqrt", F.sqrt, torch.sqrt, _positive),
    ("abs", F.abs, torch.abs, _away_from_zero),
    ("relu", F.relu, torch.relu, _away_from_zero),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), _away_from_zero),
    ("sigmoid", F.sigmoid, torch.sigmoid, _any),
    ("tanh", F.tanh, torch.tanh, _any),
    ("clamp", lambda x: F.clamp(x, -0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7), _any),
    ("clamp_min", lambda x: F.clamp(x, min=0.1), lambda x: torch.clamp(x, min=0.1), _any),
    ("clamp_max", lambda x: F.clamp(x, max=0.1), lambda x: torch.clamp(x, max=0.1), _any),
    ("pow_scalar", lambda x: x ** 3, lambda x: x ** 3, _any),
    ("pow_fraction", lambda x: x ** 0.5, lambda x: x ** 0.5, _positive),
    ("rpow", lambda x: 2.0 ** x, lambda x: 2.0 ** x, _any),
    ("softmax_dim1", lambda x: F.softmax(x, 1), lambda x: torch.softmax(x, 1), _any),
    ("softmax_last", lambda x: F.softmax(x, -1), lambda x: torch.softmax(x, -1), _any),
    ("log_softmax_dim1", lambda x: F.log_softmax(x, 1), lambda x: torch.log_softmax(x, 1), _any),
    ("log_softmax_first", lambda x: F.log_softmax(x, 0), lambda x: torch.log_softmax(x, 0), _any),
    ("scalar_ops", lambda x: 3.0 - x * 2 / 4.0 + 1, lambda x: 3.0 - x * 2 / 4.0 + 1, _any),
]


@pytest.mark.parametrize("name,ours,theirs,sample", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", [(2, 7), (3, 5, 1), (2, 3, 4, 5)])
def test_unary_matches_torch(name, ours, theirs, sample, shape, rng, device):
    check_op(ours, theirs, sample(rng, *shape), device=device)


@pytest.mark.parametrize("name,ours,theirs,sample", UNARY, ids=[u[0] for u in UNARY])
def test_unary_on_non_contiguous_input(name, ours, theirs, sample, rng, device):
    x = sample(rng, 5, 3, 4).transpose(2, 0, 1)  # a strided view, not C-contiguous
    assert not x.flags.c_contiguous
    check_op(ours, theirs, x, device=device)


BINARY = [
    ("add", F.add, torch.add, _any, _any),
    ("sub", F.sub, torch.sub, _any, _any),
    ("mul", F.mul, torch.mul, _any, _any),
    ("div", F.div, torch.div, _any, _away_from_zero),
    ("pow", F.pow, torch.pow, _positive, _any),
    ("maximum", F.maximum, torch.maximum, _any, _any),
    ("minimum", F.minimum, torch.minimum, _any, _any),
    ("operators", lambda a, b: (a + b) * a - b / (a * a + 1), lambda a, b: (a + b) * a - b / (a * a + 1), _any, _any),
]
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((5,), ()), ((), (2, 3)),
                    ((4, 1, 3, 1), (1, 2, 1, 5))]


@pytest.mark.parametrize("name,ours,theirs,sample_a,sample_b", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_broadcasting_matches_torch(name, ours, theirs, sample_a, sample_b, shapes, rng, device):
    check_op(ours, theirs, sample_a(rng, *shapes[0]), sample_b(rng, *shapes[1]), device=device)


@settings(max_examples=25, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4))
def test_mul_on_any_broadcastable_shapes(shapes):
    rng = np.random.default_rng(0)
    a_shape, b_shape = shapes.input_shapes
    check_op(F.mul, torch.mul, rng.standard_normal(a_shape), rng.standard_normal(b_shape))


def test_where_matches_torch(rng, device):
    condition = rng.random((3, 4)) > 0.5
    check_op(lambda a, b: F.where(minseg.to_device(condition, device), a, b),
             lambda a, b: torch.where(torch.tensor(condition), a, b),
             rng.standard_normal((3, 4)), rng.standard_normal((1, 4)), device=device)


def test_softmax_is_stable_for_huge_logits(device):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1.0, 3.0]])
    outputs = check_op(lambda x: F.softmax(x, 1), lambda x: torch.softmax(x, 1), logits, device=device)
    assert np.isfinite(outputs[0].numpy()).all()
    outputs = check_op(lambda x: F.log_softmax(x, 1), lambda x: torch.log_softmax(x, 1), logits, device=device)
    assert np.isfinite(outputs[0].numpy()).all()


def test_sigmoid_saturates_without_overflow(device):
    check_op(F.sigmoid, torch.sigmoid, np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]), device=device)


def test_ties_and_kinks_follow_torch(device):
    """At kinks PyTorch picks one-sided derivatives; we pick the same ones."""
    x = np.array([-1.0, 0.0, 0.5, 1.0])
    check_op(F.relu, torch.relu, x, device=device)
    check_op(F.abs, torch.abs, x, device=device)
    check_op(lambda t: F.leaky_relu(t, 0.1), lambda t: TF.leaky_relu(t, 0.1), x, device=device)
    check_op(lambda t: F.clamp(t, 0.0, 0.5), lambda t: torch.clamp(t, 0.0, 0.5), x, device=device)
    check_op(F.maximum, torch.maximum, x, np.array([-1.0, 1.0, 0.5, 0.0]), device=device)
    check_op(F.minimum, torch.minimum, x, np.array([-1.0, 1.0, 0.5, 0.0]), device=device)


@pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")  # 0 ** negative is inf, as in torch
def test_pow_at_zero_base_and_zero_exponent(device):
    base = np.array([0.0, 2.0, 0.0, 1.5])
    check_op(F.pow, torch.pow, base, np.array([2.0, 3.0, 0.0, -1.0]), device=device)
    check_op(lambda x: x ** 0.0, lambda x: x ** 0.0, base, device=device)


def test_comparisons_return_bool_without_gradient(device):
    x = minseg.tensor([1.0, 2.0, 3.0], dtype=np.float64, device=device, requires_grad=True)
    y = minseg.tensor([3.0, 2.0, 1.0], dtype=np.float64, device=device)
    for result, expected in [(x < y, [True, False, False]), (x <= y, [True, True, False]),
                             (x > 2.0, [False, False, True]), (x >= 2.0, [False, True, True]),
                             (x == y, [False, True, False]), (x != y, [True, False, True])]:
        assert result.dtype == np.bool_ and not result.requires_grad
        assert result.numpy().tolist() == expected


def test_where_rejects_non_bool_condition():
    x = minseg.zeros(3)
    with pytest.raises(TypeError, match="condition must be a bool"):
        F.where(minseg.zeros(3), x, x)


def test_softmax_requires_valid_dim():
    with pytest.raises(ValueError, match="dim must be an int"):
        F.softmax(minseg.zeros(2, 3), 2)


def _grid(rng, *shape):
    """Values on a coarse grid, so inputs and bounds tie often (where the derivative needs a rule)."""
    return rng.integers(-2, 3, shape).astype(np.float64)


@pytest.mark.parametrize("bounds", ["both", "min", "max", "min_number", "max_number"])
def test_clamp_with_tensor_bounds_matches_torch(bounds, rng, device):
    """Tensor bounds get gradients too (also where min > max, where max wins), and broadcast against x."""
    x, low, high = _grid(rng, 4, 6), _grid(rng, 1, 6), _grid(rng, 4, 1)
    if bounds == "both":
        check_op(lambda a, b, c: F.clamp(a, min=b, max=c), lambda a, b, c: torch.clamp(a, min=b, max=c),
                 x, low, high, device=device)
        assert (low[0][None] > high).any()  # the crossing bounds case was exercised
    elif bounds in ("min", "max"):
        check_op(lambda a, b: F.clamp(a, **{bounds: b}), lambda a, b: torch.clamp(a, **{bounds: b}),
                 x, low, device=device)
    elif bounds == "min_number":
        check_op(lambda a, c: F.clamp(a, min=-0.5, max=c),  # torch wants both bounds tensors or both numbers
                 lambda a, c: torch.clamp(a, min=torch.tensor(-0.5, dtype=torch.float64), max=c), x, high,
                 device=device)
    else:
        check_op(lambda a, b: a.clamp(b, 1.0), lambda a, b: a.clamp(b, torch.tensor(1.0, dtype=torch.float64)),
                 x, low, device=device)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", [((0, 3), 1), ((3, 0), 1), ((2, 0, 4), 0), ((0,), 0)])
def test_softmax_of_an_empty_tensor_is_empty(name, shape, dim, device):
    x = np.zeros(shape)
    outputs = check_op(lambda t: getattr(F, name)(t, dim), lambda t: getattr(torch, name)(t, dim), x, device=device)
    assert outputs[0].shape == shape
