"""F.pad against torch.nn.functional.pad: constant (with crops), reflect and replicate, forward and backward."""

import numpy as np
import pytest
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import check_op

CONSTANT_CASES = [
    ((2, 3, 5), (1, 2)),
    ((2, 3, 5), (0, 3, 2, 0)),
    ((2, 3, 5), (1, 1, 1, 1, 1, 1)),         # every axis
    ((2, 3, 4, 5), (-1, 2, 3, -2)),          # crop one side, pad the other
    ((2, 3, 4, 5), (-2, -3, 0, 0, 1, -1)),   # crop the width to 0
    ((3, 7), (-3, -4)),
    ((1, 2, 3, 5), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("shape,amounts", CONSTANT_CASES, ids=str)
@pytest.mark.parametrize("value", [0.0, -1.5])
def test_constant_pad_matches_torch(shape, amounts, value, rng, device):
    check_op(lambda t: F.pad(t, amounts, value=value), lambda t: TF.pad(t, amounts, value=value),
             rng.standard_normal(shape), device=device)


MIRROR_CASES = [
    ((2, 3, 7), (3, 1)),
    ((2, 3, 7), (0, 6)),                     # the largest amount reflect allows
    ((1, 2, 5, 6), (1, 2, 3, 4)),            # every side a different amount
    ((2, 1, 6, 5), (4, 0, 0, 5)),
    ((2, 3, 4, 3), (2, 2, 1, 1)),
    ((2, 2, 5, 6), (-2, 3, 4, -1)),          # crop and mirror on the same axis
    ((1, 2, 3, 4, 5), (1, 2, 2, 1, 1, 2)),   # three axes (volumetric)
]


@pytest.mark.parametrize("shape,amounts", MIRROR_CASES, ids=str)
@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_mirror_pads_match_torch(shape, amounts, mode, rng, device):
    check_op(lambda t: F.pad(t, amounts, mode=mode), lambda t: TF.pad(t, amounts, mode=mode),
             rng.standard_normal(shape), device=device)


def test_replicate_allows_amounts_larger_than_the_input(rng, device):
    check_op(lambda t: F.pad(t, (5, 7, 0, 4), mode="replicate"), lambda t: TF.pad(t, (5, 7, 0, 4), mode="replicate"),
             rng.standard_normal((1, 2, 2, 3)), device=device)


def test_backward_leaves_a_shared_upstream_gradient_alone(rng, device):
    """``a + b`` hands the same gradient array to both pads; the first must not change it for the second."""
    def both(pad_fn):
        return lambda t, u: pad_fn(t, (2, 1, 1, 2), mode="reflect") + pad_fn(u, (2, 1, 1, 2), mode="replicate")
    check_op(both(F.pad), both(TF.pad), rng.standard_normal((1, 2, 4, 5)), rng.standard_normal((1, 2, 4, 5)),
             device=device)


def test_reflect_values_by_hand(device):
    row = minseg.Tensor(minseg.to_device(np.array([[[1.0, 2.0, 3.0, 4.0]]]), device))
    np.testing.assert_array_equal(F.pad(row, (2, 3), mode="reflect").numpy(), [[[3, 2, 1, 2, 3, 4, 3, 2, 1]]])
    np.testing.assert_array_equal(F.pad(row, (2, 1), mode="replicate").numpy(), [[[1, 1, 1, 2, 3, 4, 4]]])


def test_mirror_padding_gradient_is_a_sum_over_copies(device):
    """Every output pixel contributes once to the pixel it came from, so an all-ones upstream gradient
    counts the copies of each input pixel."""
    x = minseg.Tensor(minseg.to_device(np.zeros((1, 1, 4)), device), requires_grad=True)
    F.pad(x, (3, 2), mode="reflect").sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[1, 3, 3, 2]]])  # [a b c d] → d c b a b c d c b


def test_integer_input_pads_without_grad(device):
    labels = minseg.Tensor(minseg.to_device(np.arange(6).reshape(2, 3), device))
    out = F.pad(labels, (1, 0), value=255)
    assert out.dtype == labels.dtype
    np.testing.assert_array_equal(out.numpy(), [[255, 0, 1, 2], [255, 3, 4, 5]])


@pytest.mark.parametrize("amounts,mode,match", [
    ((4, 1), "reflect", r"reflect padding.*pad=\(4, 1\).*asks for 4 on dim 2 of size 4"),
    ((0, 0, 1, 3), "reflect", r"asks for 3 on dim 1 of size 3"),
    ((1, 1, 1), "constant", "even-length"),
    ((1.5, 1), "constant", "sequence of ints"),
    (2, "constant", "even-length sequence"),
    ((1, 1) * 4, "constant", "pads 4 axes but the input has only 3"),
    ((-3, -2), "constant", "crops more than the 4 elements of dim 2"),
    ((1, 1), "circular", "mode must be one of"),
])
def test_bad_arguments_are_named(amounts, mode, match):
    with pytest.raises(ValueError, match=match):
        F.pad(minseg.zeros(2, 3, 4), amounts, mode=mode)


def test_fill_value_only_with_constant_mode():
    with pytest.raises(ValueError, match="takes no fill value"):
        F.pad(minseg.zeros(2, 3, 4), (1, 1), mode="reflect", value=2.0)


def test_replicate_needs_a_non_empty_axis():
    with pytest.raises(ValueError, match="empty dim 2"):
        F.pad(minseg.zeros(2, 3, 0), (1, 1), mode="replicate")
