"""interpolate (nearest, bilinear with both align_corners; 1-D signals) against PyTorch: sizes, scale factors,
gradients, NaN and ∞."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import assert_close, check_op

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
    (dict(size=4, align_corners=True),
     r"align_corners can only be set with mode='linear' or 'bilinear'; got align_corners=True"),
    (dict(size=4, mode="bicubic"), r"mode must be one of \('nearest', 'linear', 'bilinear'\); got mode='bicubic'"),
    (dict(size=(4, 4, 4)), r"size must be an int or a pair of ints for \(H, W\); got size=\(4, 4, 4\)"),
    (dict(size=2.5), r"size must be an int or a pair of ints .* got size=2.5"),
    (dict(scale_factor="2"), r"scale_factor must be a number or a pair of numbers .* got scale_factor='2'"),
    (dict(scale_factor=0.1), r"output size must be positive; got \(0, 0\) for input size \(6, 6\)"),
    (dict(size=4, recompute_scale_factor=True), r"recompute_scale_factor=True is only meaningful with scale_factor"),
    (dict(size=4, mode="linear"), r"mode='linear' needs a 3-D \(N, C, L\) input; got 4-D with shape \(1, 2, 6, 6\)"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.interpolate(minseg.zeros(1, 2, 6, 6), **kwargs)


def test_interpolate_rank_errors_say_how_torch_reads_each_rank():
    with pytest.raises(ValueError, match=r"mode='bilinear' needs a 4-D \(N, C, H, W\) input; got 3-D with shape "
                                         r"\(2, 6, 6\); a 3-D input is a batch of 1-D signals.*unsqueeze\(0\)"):
        F.interpolate(minseg.zeros(2, 6, 6), size=3, mode="bilinear")
    with pytest.raises(ValueError, match=r"mode='nearest' needs a 3-D \(N, C, L\) or 4-D \(N, C, H, W\) input; "
                                         r"got 2-D"):
        F.interpolate(minseg.zeros(6, 6), size=3)
    with pytest.raises(ValueError, match=r"size must be an int or a 1-tuple of ints for \(L,\); got size=\(3, 3\)"):
        F.interpolate(minseg.zeros(2, 6, 6), size=(3, 3))


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("linear", False), ("linear", True)],
                         ids=["nearest", "linear", "linear-corners"])
@pytest.mark.parametrize("resize", [dict(size=11), dict(size=(3,)), dict(size=7), dict(scale_factor=1.7),
                                    dict(scale_factor=(0.5,))], ids=str)
def test_interpolate_a_3d_input_resizes_signals_like_torch(mode, align_corners, resize, rng, device):
    """PyTorch reads a 3-D input as (N, C, L): 1-D nearest or linear resizing along the last axis."""
    x = rng.standard_normal((2, 3, 7))
    check_op(lambda t: F.interpolate(t, mode=mode, align_corners=align_corners, **resize),
             lambda t: TF.interpolate(t, mode=mode, align_corners=align_corners, **resize), x, device=device)


NON_FINITE_CASES = [((4, 4), dict(size=(8, 8))), ((4, 4), dict(size=(4, 4))), ((5, 7), dict(size=(3, 4))),
                    ((4, 5), dict(size=(9, 13), align_corners=True)), ((3, 6), dict(scale_factor=(2.5, 0.5))),
                    ((1, 4), dict(size=(3, 7)))]


def _with_non_finite(rng, shape, values=(np.nan, np.inf, -np.inf)):
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    for value, position in zip(values, rng.choice(flat.size, size=len(values), replace=False)):
        flat[position] = value
    return x


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("case", NON_FINITE_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_nan_and_inf_stay_within_their_stencil_like_torch(case, mode, rng, device):
    """One NaN or ±∞ pixel spoils only the outputs that read it (not its whole row, as 0 · NaN in a plain
    matrix product would), forward and backward — the upstream gradient carries NaN and ±∞ too."""
    (h, w), resize = case
    if mode == "nearest":
        resize = {k: v for k, v in resize.items() if k != "align_corners"}
    x = _with_non_finite(rng, (2, 2, h, w))
    ours = minseg.Tensor(minseg.to_device(x, device), requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, expected = F.interpolate(ours, mode=mode, **resize), TF.interpolate(theirs, mode=mode, **resize)
    assert_close(y, expected, what="forward")
    assert 0 < np.isnan(expected.detach().numpy()).mean() < 0.5
    upstream = _with_non_finite(rng, tuple(expected.shape))
    y.backward(minseg.to_device(upstream, device))
    expected.backward(torch.tensor(upstream))
    assert_close(ours.grad, theirs.grad, what="gradient")
    assert np.isfinite(theirs.grad.numpy()).any()


def test_inf_meeting_minus_inf_or_a_zero_weight_is_nan_like_torch(device):
    """+∞ and −∞ read by one output make NaN; a zero weight on ∞ (bilinear's λ = 0 at the edges) makes NaN."""
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 0, 1], x[0, 0, 0, 2] = np.inf, -np.inf
    for resize in (dict(size=(2, 6)), dict(size=(4, 8)), dict(size=(1, 2))):
        check_op(lambda t: F.interpolate(t, mode="bilinear", **resize),
                 lambda t: TF.interpolate(t, mode="bilinear", **resize), x, device=device, grad=False)


@pytest.mark.parametrize("align_corners", [False, True])
def test_linear_weights_are_torchs_bit_for_bit(align_corners):
    """PyTorch computes the source row with a fused multiply-add and floors it in float32: the same weights,
    to the last bit, decide whether a weight is 0 (so whether ∞ there gives ∞ or NaN)."""
    from minseg.functional.resize import linear_matrix

    for in_size, out_size in itertools.product(range(1, 9), range(1, 15)):
        rows = []
        for k in range(in_size):  # torch's weights, read off by resizing each indicator row
            indicator = torch.zeros(1, 1, 1, in_size, dtype=torch.float64)
            indicator[..., k] = 1
            rows.append(TF.interpolate(indicator, size=(1, out_size), mode="bilinear",
                                       align_corners=align_corners).numpy().ravel())
        theirs = np.array(rows).T
        ours = linear_matrix(in_size, out_size, align_corners, None, np, np.float64)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{in_size} → {out_size}")


def test_random_nan_and_inf_placements_match_torch(device):
    """A seeded sweep: sizes 1–7 to 1–13, both modes, NaN/±∞ in the input and in the upstream gradient."""
    rng = np.random.default_rng(3)
    for trial in range(80):
        (h, w), size = rng.integers(1, 8, 2), tuple(int(v) for v in rng.integers(1, 14, 2))
        mode = ("nearest", "bilinear")[trial % 2]
        resize = dict(size=size, mode=mode, align_corners=None if mode == "nearest" else bool(rng.integers(2)))
        x = _with_non_finite(rng, (1, 2, h, w), rng.choice([np.nan, np.inf, -np.inf], min(3, 2 * h * w)))
        ours = minseg.Tensor(minseg.to_device(x, device), requires_grad=True)
        theirs = torch.tensor(x, requires_grad=True)
        y, expected = F.interpolate(ours, **resize), TF.interpolate(theirs, **resize)
        assert_close(y, expected, what=f"forward {x.shape} {resize}")
        upstream = _with_non_finite(rng, tuple(expected.shape), rng.choice([np.nan, np.inf, -np.inf], 1))
        y.backward(minseg.to_device(upstream, device))
        expected.backward(torch.tensor(upstream))
        assert_close(ours.grad, theirs.grad, what=f"gradient {x.shape} {resize}")
