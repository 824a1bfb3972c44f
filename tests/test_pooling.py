"""max_pool2d / avg_pool2d / adaptive_avg_pool2d against PyTorch: forward, indices and input gradients."""

import itertools

import numpy as np
import pytest
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import check_op, no_ties

SIZES = [(5, 7), (6, 9), (7, 5), (9, 8), (5, 6), (8, 5)]  # ≥ 5: a dilated 3×3 fits, no window is all padding


def _window_grid(dilations):
    """Every kernel 1–3 × stride 1–3 × padding 0..kernel//2 × dilation × ceil_mode, each on a rotating size."""
    cases = []
    for kernel, stride, dilation, ceil_mode in itertools.product((1, 2, 3), (1, 2, 3), dilations, (False, True)):
        for padding in range(kernel // 2 + 1):
            size = SIZES[len(cases) % len(SIZES)]
            cases.append((size, kernel, stride, padding, dilation, ceil_mode))
    return cases


def _ids(case):
    (h, w), kernel, stride, padding, dilation, ceil_mode = case
    return f"{h}x{w}-k{kernel}-s{stride}-p{padding}-d{dilation}-{'ceil' if ceil_mode else 'floor'}"


@pytest.mark.parametrize("case", _window_grid(dilations=(1, 2)), ids=_ids)
def test_max_pool2d_matches_torch(case, rng, device):
    (h, w), kernel, stride, padding, dilation, ceil_mode = case
    x = no_ties(rng, 2, 3, h, w)
    return_indices = (kernel + stride) % 2 == 0  # half the grid also checks the indices

    def pool(f):
        return lambda t: f(t, kernel, stride, padding, dilation, ceil_mode, return_indices)

    check_op(pool(F.max_pool2d), pool(TF.max_pool2d), x, device=device)


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    ((2, 3), (1, 2), (1, 0), (1, 2)),
    ((3, 1), (3, 1), (1, 0), (2, 1)),
    ((1, 2), None, 0, 1),
])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool2d_with_per_axis_arguments(kernel, stride, padding, dilation, ceil_mode, rng, device):
    x = no_ties(rng, 2, 2, 7, 8)
    check_op(lambda t: F.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode, True),
             lambda t: TF.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode, True), x, device=device)


def test_max_pool2d_on_non_contiguous_and_unbatched_input(rng, device):
    x = no_ties(rng, 9, 7, 3, 2).transpose(3, 2, 1, 0)  # (2, 3, 7, 9), not C-contiguous
    check_op(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True),
             lambda t: TF.max_pool2d(t, 3, 2, 1, return_indices=True), x, device=device)
    check_op(lambda t: F.max_pool2d(t, 2, return_indices=True),
             lambda t: TF.max_pool2d(t, 2, return_indices=True), no_ties(rng, 3, 6, 5), device=device)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1), (3, 2)])
def test_max_pool2d_ties_go_to_the_first_maximum_like_torch(kernel, stride, rng, device):
    x = rng.integers(0, 3, size=(2, 2, 7, 6)).astype(np.float64)  # many tied maxima per window
    check_op(lambda t: F.max_pool2d(t, kernel, stride, 1, return_indices=True),
             lambda t: TF.max_pool2d(t, kernel, stride, 1, return_indices=True), x, device=device)


def test_max_pool2d_nan_propagates_like_torch(rng):
    """A NaN in a window is its maximum; with two NaNs PyTorch's CPU kernel points at the later one."""
    import torch

    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan          # two NaNs in one 2×2 window
    x[0, 1, 3, 3] = np.nan
    x[0, 1, 2, 2] = x[0, 1, 2, 3] = 7.0             # a tie beside a NaN window of a 3×3/1 pool
    for kernel, stride in ((2, 2), (3, 1)):
        values, indices = F.max_pool2d(minseg.tensor(x), kernel, stride, return_indices=True)
        expected_values, expected_indices = TF.max_pool2d(torch.tensor(x), kernel, stride, return_indices=True)
        np.testing.assert_array_equal(values.numpy(), expected_values.numpy())
        np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())


def test_max_pool2d_indices_are_int64_flat_positions(device):
    x = minseg.Tensor(minseg.to_device(np.arange(16.0).reshape(1, 1, 4, 4), device))
    values, indices = F.max_pool2d(x, 2, return_indices=True)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices.numpy()[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(values.numpy()[0, 0], [[5.0, 7.0], [13.0, 15.0]])


@pytest.mark.parametrize("case", _window_grid(dilations=(1,)), ids=_ids)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_torch(case, count_include_pad, rng, device):
    (h, w), kernel, stride, padding, _, ceil_mode = case
    x = rng.standard_normal((2, 3, h, w))
    check_op(lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad),
             lambda t: TF.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad), x, device=device)


def test_avg_pool2d_ceil_mode_divisor_ignores_the_overhang(device):
    # 6 wide, kernel 3, stride 2, padding 1: ceil_mode adds a 4th window covering column 5, the right
    # padding column and one column past it. torch divides by the 2 columns inside the padded input, not 3,
    # so the bottom-right output (one input pixel of value 1) is 1 / (2 · 2).
    x = np.ones((1, 1, 6, 6))
    (output,) = check_op(lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
                         lambda t: TF.avg_pool2d(t, 3, 2, 1, ceil_mode=True), x, device=device)
    assert output.shape == (1, 1, 4, 4)
    assert output.numpy()[0, 0, 3, 3] == 0.25


@pytest.mark.parametrize("divisor_override", [1, 5])
def test_avg_pool2d_divisor_override_and_unbatched_input(divisor_override, rng, device):
    x = rng.standard_normal((4, 7, 6)).transpose(0, 2, 1)  # (C, H, W), non-contiguous
    check_op(lambda t: F.avg_pool2d(t, (3, 2), (2, 1), 1, True, False, divisor_override),
             lambda t: TF.avg_pool2d(t, (3, 2), (2, 1), 1, True, False, divisor_override), x, device=device)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (8, 8), (13, 6)], ids=str)
@pytest.mark.parametrize("output_size", [1, 2, 3, (None, 2), (4, None), (5, 9), 7], ids=str)
def test_adaptive_avg_pool2d_matches_torch(size, output_size, rng, device):
    x = rng.standard_normal((2, 3) + size)
    check_op(lambda t: F.adaptive_avg_pool2d(t, output_size), lambda t: TF.adaptive_avg_pool2d(t, output_size),
             x, device=device)


def test_adaptive_avg_pool2d_to_one_pixel_is_the_plane_mean(rng, device):
    x = rng.standard_normal((3, 4, 9, 11))
    outputs = check_op(lambda t: F.adaptive_avg_pool2d(t, 1), lambda t: TF.adaptive_avg_pool2d(t, 1), x,
                       device=device)
    np.testing.assert_allclose(outputs[0].numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-13)
    unbatched = rng.standard_normal((4, 5, 3))
    check_op(lambda t: F.adaptive_avg_pool2d(t, (2, None)), lambda t: TF.adaptive_avg_pool2d(t, (2, None)),
             unbatched, device=device)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_pooling_keeps_float32(op, rng):
    x = minseg.Tensor(rng.standard_normal((1, 2, 6, 6)).astype(np.float32), requires_grad=True)
    y = op(x, 2)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert F.adaptive_avg_pool2d(x, 3).dtype == np.float32


@pytest.mark.parametrize("call, message", [
    (lambda x: F.max_pool2d(x[0, 0], 2), r"input must be 3-D \(C, H, W\) or 4-D .* got 2-D with shape \(6, 6\)"),
    (lambda x: F.avg_pool2d(x, 7), r"window spans \(7, 7\).*padded input is only \(6, 6\)"),
    (lambda x: F.max_pool2d(x, 3, padding=2),
     r"padding must be at most half the kernel size \(kernel_size // 2 = \(1, 1\)\); got padding=\(2, 2\)"),
    (lambda x: F.max_pool2d(x, (2, 2, 2)), r"kernel_size must be an int or a pair .* got kernel_size=\(2, 2, 2\)"),
    (lambda x: F.max_pool2d(x, 2, stride=0), r"stride must be positive; got stride=\(0, 0\)"),
    (lambda x: F.max_pool2d(x, 2, dilation=0), r"dilation must be positive"),
    (lambda x: F.avg_pool2d(x, 2, padding=-1), r"padding must be non-negative"),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=0), r"divisor_override must be a non-zero number; got 0"),
    (lambda x: F.adaptive_avg_pool2d(x, (2, 3, 4)), r"output_size must be .* got output_size=\(2, 3, 4\)"),
    (lambda x: F.adaptive_avg_pool2d(x, -1), r"output_size must be a non-negative int"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(minseg.zeros(1, 2, 6, 6))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16])
def test_integer_max_pool2d_with_padding_matches_torch(dtype, rng, device):
    """Padding is the dtype's smallest value, not −∞ (which no integer can hold), so negatives still win."""
    low = 0 if dtype == np.uint8 else -100
    x = rng.integers(low, low + 50, size=(2, 3, 6, 5)).astype(dtype)
    outputs = check_op(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True),
                       lambda t: TF.max_pool2d(t, 3, 2, 1, return_indices=True), x, device=device, grad=False)
    assert outputs[0].dtype == dtype
