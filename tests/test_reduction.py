"""Reductions against PyTorch: dims (None, int, negative, tuple), keepdim, ties, indices."""

import numpy as np
import pytest
import torch

import minseg
import minseg.functional as F
from helpers import check_op, no_ties

DIMS = [None, 0, -1, 1, (0, 2), (-1, 1)]


@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "logsumexp"])
def test_reduction_matches_torch(op, dim, keepdim, rng, device):
    x = rng.standard_normal((3, 4, 5))
    ours, theirs = getattr(F, op), getattr(torch, op)
    torch_dim = (0, 1, 2) if dim is None else dim
    check_op(lambda t: ours(t, dim, keepdim), lambda t: theirs(t, torch_dim, keepdim), x, device=device)


def test_reduction_on_non_contiguous_input(rng, device):
    x = rng.standard_normal((5, 4, 3)).transpose(2, 1, 0)
    check_op(lambda t: F.sum(t, 1), lambda t: torch.sum(t, 1), x, device=device)
    check_op(lambda t: F.mean(t, (0, 2), True), lambda t: torch.mean(t, (0, 2), True), x, device=device)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_and_min_along_dim_return_values_and_indices(dim, keepdim, rng, device):
    x = no_ties(rng, 3, 4, 5)
    for ours, theirs in [(F.max, torch.max), (F.min, torch.min)]:
        outputs = check_op(lambda t: ours(t, dim, keepdim), lambda t: theirs(t, dim, keepdim), x, device=device)
        assert outputs[1].dtype == np.int64


def test_tied_maxima_share_the_gradient_like_torch(device):
    x = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]])
    check_op(F.amax, torch.amax, x, device=device)                              # global: 5 three times
    check_op(lambda t: F.amax(t, 1), lambda t: torch.amax(t, 1), x, device=device)
    check_op(lambda t: F.max(t), lambda t: torch.max(t), x, device=device)      # max() without dim = amax
    check_op(lambda t: F.max(t, 1), lambda t: torch.max(t, 1), x, device=device)  # one index gets it all


def test_max_with_a_tensor_is_elementwise(rng, device):
    check_op(F.max, torch.max, rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), device=device)


@pytest.mark.filterwarnings("ignore:divide by zero")  # log(0) = -inf for an all -inf row, as in torch
def test_logsumexp_is_stable_and_handles_minus_infinity(device):
    x = np.array([[1e4, 1e4, -1e4], [-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0]])
    ours = F.logsumexp(minseg.Tensor(minseg.to_device(x, device)), 1).numpy()
    np.testing.assert_allclose(ours, torch.logsumexp(torch.tensor(x), 1).numpy(), rtol=1e-12)
    check_op(lambda t: F.logsumexp(t, 1), lambda t: torch.logsumexp(t, 1), x[[0]], device=device)


def test_tensor_methods_reduce_like_torch(rng, device):
    check_op(lambda t: t.sum(1).mean() + t.amax(-1).sum(), lambda t: t.sum(1).mean() + t.amax(-1).sum(),
             rng.standard_normal((3, 4)), device=device)


@pytest.mark.parametrize("dim", [3, -4, (0, 0)])
def test_bad_dim_is_named(dim):
    with pytest.raises(ValueError, match="dim"):
        F.sum(minseg.zeros(2, 3, 4), dim)
