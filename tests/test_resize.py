"""interpolate (nearest, bilinear with both align_corners) against PyTorch: sizes, scale factors, gradients."""

import numpy as np
import pytest
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import check_op

MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]
MODE_IDS = ["nearest", "bilinear", "bilinear-corners"]

# (input H, W) → (output H, W): up, down, mixed, odd, to and from 1 pixel, kept, exactly doubled
SIZE_PAIRS = [((5, 7), (11, 13)), ((9, 8), (4, 3)), ((6, 5), (6, 12)), ((7, 9), (13, 4)), ((1, 3), (4, 1)),
              ((4, 4), (8, 8)), ((3, 2), (3, 2)), ((10, 6), (7, 17))]


@pytest.mark.parametrize("mode, align_corners", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("sizes", SIZE_PAIRS, ids=lambda s: f"{s[0][0]}x{s[0][1]}-to-{s[1][0]}x{s[1][1]}")
def test_interpolate_to_a_size_matches_torch(sizes, mode, align_corners, rng, device):
    (h, w), size = sizes
    x = rng.standard_normal((2, 3, h, w))
    check_op(lambda t: F.interpolate(t, size=size, mode=mode, align_corners=align_corners),
             lambda t: TF.interpolate(t, size=size, mode=mode, align_corners=align_corners), x, device=device)


SCALES = [2, 0.5, 1.7, 0.3, (2.5, 1.25), (1 / 3, 3), 2.1, 1.1]


@pytest.mark.parametrize("mode, align_corners", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("scale_factor", SCALES, ids=str)
@pytest.mark.parametrize("recompute_scale_factor", [None, True])
def test_interpolate_by_a_scale_factor_matches_torch(scale_factor, recompute_scale_factor, mode, align_corners,
                                                     rng, device):
    x = rng.standard_normal((2, 3, 5, 7))
    kwargs = dict(scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                  recompute_scale_factor=recompute_scale_factor)
    check_op(lambda t: F.interpolate(t, **kwargs), lambda t: TF.interpolate(t, **kwargs), x, device=device)


def test_scale_factor_maps_coordinates_with_one_over_the_factor(rng, device):
    # 5 · 1.7 → 8 rows either way, but scale_factor samples at (o + ½)/1.7 − ½ and size at (o + ½)·5/8 − ½.
    x = rng.standard_normal((1, 2, 5, 5))
    by_scale = check_op(lambda t: F.interpolate(t, scale_factor=1.7, mode="bilinear"),
                        lambda t: TF.interpolate(t, scale_factor=1.7, mode="bilinear"), x, device=device)[0]
    by_size = check_op(lambda t: F.interpolate(t, size=8, mode="bilinear"),
                       lambda t: TF.interpolate(t, size=8, mode="bilinear"), x, device=device)[0]
    assert by_scale.shape == by_size.shape == (1, 2, 8, 8)
    assert not np.allclose(by_scale.numpy(), by_size.numpy())


@pytest.mark.parametrize("mode, align_corners", MODES, ids=MODE_IDS)
def test_interpolate_non_contiguous_input(mode, align_corners, rng, device):
    x = rng.standard_normal((7, 6, 3, 2)).transpose(3, 2, 0, 1)  # (2, 3, 7, 6), not C-contiguous
    check_op(lambda t: F.interpolate(t, size=(9, 4), mode=mode, align_corners=align_corners),
             lambda t: TF.interpolate(t, size=(9, 4), mode=mode, align_corners=align_corners), x, device=device)


def test_bilinear_align_corners_keeps_the_corner_pixels(rng, device):
    x = rng.standard_normal((1, 1, 4, 6))
    y = F.interpolate(minseg.Tensor(minseg.to_device(x, device)), size=(7, 11), mode="bilinear",
                      align_corners=True).numpy()
    np.testing.assert_array_equal(y[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]], x[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]])


def test_interpolate_keeps_float32(rng):
    x = minseg.Tensor(rng.standard_normal((1, 2, 5, 5)).astype(np.float32), requires_grad=True)
    y = F.interpolate(x, scale_factor=2, mode="bilinear")
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=4, scale_factor=2), r"exactly one of size and scale_factor; both were given"),
    (dict(), r"exactly one of size and scale_factor; neither was given"),
    (dict(size=4, align_corners=True), r"align_corners can only be set with mode='bilinear'; got align_corners=True"),
    (dict(size=4, mode="bicubic"), r"mode must be one of \('nearest', 'bilinear'\); got mode='bicubic'"),
    (dict(size=(4, 4, 4)), r"size must be an int or a pair of ints for \(H, W\); got size=\(4, 4, 4\)"),
    (dict(size=2.5), r"size must be an int or a pair of ints .* got size=2.5"),
    (dict(scale_factor="2"), r"scale_factor must be a number or a pair of numbers .* got scale_factor='2'"),
    (dict(scale_factor=0.1), r"output size must be positive; got \(0, 0\) for input size \(6, 6\)"),
    (dict(size=4, recompute_scale_factor=True), r"recompute_scale_factor=True is only meaningful with scale_factor"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.interpolate(minseg.zeros(1, 2, 6, 6), **kwargs)


def test_interpolate_needs_a_4d_input():
    with pytest.raises(ValueError, match=r"input must be 4-D \(N, C, H, W\); got 3-D with shape \(2, 6, 6\)"):
        F.interpolate(minseg.zeros(2, 6, 6), size=3)
