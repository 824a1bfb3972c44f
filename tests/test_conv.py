"""conv2d / conv_transpose2d / im2col against PyTorch and against their defining identities."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from minseg.functional import conv as conv_module
from minseg.functional import windows as windows_module
from minseg.functional import im2col as teaching
from minseg.functional.conv import col2im, conv_output_size, conv_transpose_output_size, im2col
from helpers import check_directional_derivative, check_twin


def _conv_cases(count, seed=0):
    """Random but valid conv configurations: odd sizes, stride 1–3, padding 0–3, dilation 1–3, groups 1/2/depthwise."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups_kind = rng.choice(["1", "2", "depthwise"])
        c_in = int(rng.choice([2, 4, 6])) if groups_kind != "1" else int(rng.integers(1, 5))
        groups = {"1": 1, "2": 2, "depthwise": c_in}[groups_kind]
        c_out = groups * int(rng.integers(1, 3))
        kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
        dilation = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        size = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
        if any(conv_output_size(size[a], kernel[a], stride[a], padding[a], dilation[a]) < 1 for a in (0, 1)):
            continue
        cases.append(dict(n=int(rng.integers(1, 3)), c_in=c_in, c_out=c_out, groups=groups, kernel=kernel,
                          stride=stride, padding=padding, dilation=dilation, size=size, bias=bool(rng.random() < 0.7)))
    return cases


def _case_id(case):
    return "n{n}-c{c_in}>{c_out}-g{groups}-k{kernel}-s{stride}-p{padding}-d{dilation}-{size}-bias{bias}".format(**case)


CONV_CASES = _conv_cases(48)


@pytest.fixture(params=["whole-images", "one-row-tiles", "every-region"])
def tiling(request, monkeypatch):
    """Run a test with the default tile size, again with one output row per tile, and again with every
    border region that reads padding split off as its own part (``Windows.regions``), however thin."""
    if request.param == "one-row-tiles":
        monkeypatch.setattr(windows_module, "TILE_BYTES", 1)
        monkeypatch.setattr(windows_module, "GPU_TILE_BYTES", 1)
        monkeypatch.setattr(windows_module, "MIN_TILE_COLUMNS", 1)
    if request.param == "every-region":
        monkeypatch.setattr(windows_module, "RUN_OVERHEAD", 0)
    return request.param


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_conv2d_matches_torch(case, tiling, rng, device):
    x = rng.standard_normal((case["n"], case["c_in"]) + case["size"])
    w = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["kernel"])
    b = rng.standard_normal(case["c_out"]) if case["bias"] else None
    kwargs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    check_twin(lambda F, x, w, b: F.conv2d(x, w, b, **kwargs), x, w, b, device=device)


def _transpose_cases(count, seed=1):
    rng = np.random.default_rng(seed)
    cases = []
    for case in _conv_cases(4 * count, seed):
        stride, dilation = case["stride"], case["dilation"]
        case["output_padding"] = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        out = [conv_transpose_output_size(case["size"][a], case["kernel"][a], stride[a], case["padding"][a],
                                          case["output_padding"][a], dilation[a]) for a in (0, 1)]
        if min(out) >= 1:
            cases.append(case)
        if len(cases) == count:
            break
    return cases


TRANSPOSE_CASES = _transpose_cases(40)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: _case_id(c) + f"-op{c['output_padding']}")
def test_conv_transpose2d_matches_torch(case, tiling, rng, device):
    x = rng.standard_normal((case["n"], case["c_in"]) + case["size"])
    w = rng.standard_normal((case["c_in"], case["c_out"] // case["groups"]) + case["kernel"])
    b = rng.standard_normal(case["c_out"]) if case["bias"] else None
    kwargs = dict(stride=case["stride"], padding=case["padding"], output_padding=case["output_padding"],
                  groups=case["groups"], dilation=case["dilation"])
    check_twin(lambda F, x, w, b: F.conv_transpose2d(x, w, b, **kwargs), x, w, b, device=device)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note about its own copy
@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((4, 2), 1), ((3, 3), 2), ((2, 5), (3, 1)), ((1, 1), 1)])
def test_same_and_valid_padding_match_torch(kernel, dilation, rng, device):
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3) + kernel)
    for padding in ("same", "valid"):
        out = check_twin(lambda F, x, w: F.conv2d(x, w, padding=padding, dilation=dilation), x, w, device=device)
        if padding == "same":
            assert out[0].shape[2:] == x.shape[2:]


def test_conv_and_transposed_conv_are_adjoint(rng, device):
    """⟨conv2d(x, W), y⟩ = ⟨x, conv_transpose2d(y, W)⟩ for the same W (output_padding restores x's size)."""
    for stride, padding, dilation, groups in itertools.product((1, 2, 3), (0, 2), (1, 2), (1, 2)):
        x = rng.standard_normal((2, 4, 11, 10))
        w = rng.standard_normal((6, 4 // groups, 3, 3))
        conv = F.conv2d(minseg.Tensor(minseg.to_device(x, device)), minseg.Tensor(minseg.to_device(w, device)),
                        stride=stride, padding=padding, dilation=dilation, groups=groups)
        y = rng.standard_normal(conv.shape)
        output_padding = tuple(
            x.shape[2 + a] - conv_transpose_output_size(conv.shape[2 + a], 3, stride, padding, 0, dilation)
            for a in (0, 1))
        back = F.conv_transpose2d(minseg.Tensor(minseg.to_device(y, device)), minseg.Tensor(minseg.to_device(w, device)),
                                  stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                                  dilation=dilation)
        assert back.shape == x.shape
        np.testing.assert_allclose(np.vdot(conv.numpy(), y), np.vdot(x, back.numpy()), rtol=1e-11)


def test_dilated_conv_equals_conv_with_zero_inserted_kernel(rng, device):
    """§7.4.2: dilation d is a (d·(k−1)+1)-wide kernel with d−1 zeros between the taps."""
    x, w = rng.standard_normal((2, 3, 17, 15)), rng.standard_normal((5, 3, 3, 3))
    for dilation in (2, 3, (2, 4)):
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        spread = np.zeros((5, 3, 2 * dh + 1, 2 * dw + 1))
        spread[:, :, ::dh, ::dw] = w
        dilated = F.conv2d(minseg.tensor(x, device=device), minseg.tensor(w, device=device), dilation=dilation, padding=1)
        plain = F.conv2d(minseg.tensor(x, device=device), minseg.tensor(spread, device=device), padding=1)
        np.testing.assert_allclose(dilated.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation", [((1, 1), (0, 0), (1, 1)), ((2, 3), (1, 2), (2, 1)),
                                                     ((3, 1), (3, 0), (1, 3))])
def test_col2im_is_the_adjoint_of_im2col(stride, padding, dilation, rng):
    x = rng.standard_normal((2, 3, 10, 9))
    cols = im2col(x, (3, 2), stride, padding, dilation)
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, col2im(c, x.shape, stride, padding, dilation)), rtol=1e-12)


def test_tiling_gives_the_same_result(monkeypatch, rng, device):
    """With a tiny tile budget every tile is one output row of one image; results and gradients must not change."""
    x, w, b = rng.standard_normal((5, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    monkeypatch.setattr(windows_module, "TILE_BYTES", 1)
    monkeypatch.setattr(windows_module, "GPU_TILE_BYTES", 1)
    check_twin(lambda F, x, w, b: F.conv2d(x, w, b, padding=1), x, w, b, device=device)
    check_twin(lambda F, x, w: F.conv_transpose2d(x, w, stride=2), x, rng.standard_normal((3, 2, 4, 4)), device=device)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_gradients_match_finite_differences(transposed, rng, device):
    """No twin needed: ⟨∇f, u⟩ equals the central difference along u for input and weight at once
    (stride 2, dilation 2, two groups), with f a fixed random projection of the output."""
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((4, 2, 3, 2))
    op = F.conv_transpose2d if transposed else F.conv2d
    size = x.size
    out = op(minseg.Tensor(x), minseg.Tensor(w), stride=2, padding=1, dilation=2, groups=2)
    projection = minseg.to_device(rng.standard_normal(out.shape), device)

    def f(both):  # both = x and w, flattened into one vector
        result = op(both[:size].reshape(x.shape), both[size:].reshape(w.shape), stride=2, padding=1, dilation=2,
                    groups=2)
        return (result * projection).sum()

    check_directional_derivative(f, np.concatenate([x.ravel(), w.ravel()]), device=device)


def test_output_size_helpers_agree_with_torch():
    for size, kernel, stride, padding, dilation in itertools.product((5, 8, 13), (1, 2, 3), (1, 2, 3), (0, 1), (1, 2)):
        if conv_output_size(size, kernel, stride, padding, dilation) < 1:
            continue
        expected = TF.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel, 1), stride=(stride, 1),
                             padding=(padding, 0), dilation=(dilation, 1)).shape[2]
        assert conv_output_size(size, kernel, stride, padding, dilation) == expected
        for output_padding in range(max(stride, dilation)):
            expected = TF.conv_transpose2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel, 1), stride=(stride, 1),
                                           padding=(padding, 0), output_padding=(output_padding, 0),
                                           dilation=(dilation, 1)).shape[2]
            assert conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation) == expected


def test_float32_stays_float32():
    out = F.conv2d(minseg.randn(1, 2, 5, 5), minseg.randn(3, 2, 3, 3), minseg.zeros(3))
    assert out.dtype == np.float32


ERRORS = [
    (lambda: F.conv2d(minseg.zeros(5, 5), minseg.zeros(2, 3, 3, 3)), r"input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\); got 2-D"),
    (lambda: F.conv_transpose2d(minseg.zeros(1, 1, 1, 5, 5), minseg.zeros(1, 2, 3, 3)), r"input must be 3-D \(C, H, W\) or 4-D"),
    (lambda: F.conv2d(minseg.zeros(1, 3, 5, 5), minseg.zeros(2, 4, 3, 3)), r"input has 3 channels but weight \(2, 4, 3, 3\) expects 4"),
    (lambda: F.conv2d(minseg.zeros(1, 3, 5, 5), minseg.zeros(2, 1, 3, 3), groups=2), "groups=2 must divide the input channels"),
    (lambda: F.conv2d(minseg.zeros(1, 2, 5, 5), minseg.zeros(2, 2, 3, 3), minseg.zeros(3)), r"bias must have shape \(2,\)"),
    (lambda: F.conv2d(minseg.zeros(1, 2, 5, 5), minseg.zeros(2, 2, 3, 3), stride=0), "stride must be an int or a pair of ints ≥ 1"),
    (lambda: F.conv2d(minseg.zeros(1, 2, 2, 5), minseg.zeros(2, 2, 3, 3)), "kernel .* is larger than the padded input height"),
    (lambda: F.conv2d(minseg.zeros(1, 2, 5, 5), minseg.zeros(2, 2, 3, 3), stride=2, padding="same"), "'same' needs stride 1"),
    (lambda: F.conv2d(minseg.zeros(1, 2, 5, 5), minseg.zeros(2, 2, 3, 3), padding="full"), "padding must be"),
    (lambda: F.conv_transpose2d(minseg.zeros(1, 2, 5, 5), minseg.zeros(2, 2, 3, 3), stride=2, output_padding=2),
     "output_padding must be smaller than stride or dilation"),
    (lambda: F.conv_transpose2d(minseg.zeros(1, 3, 5, 5), minseg.zeros(2, 2, 3, 3)), "input has 3 channels but weight"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("groups", [1, 2])
def test_pointwise_convs_skip_im2col_and_match_torch(groups, rng, device):
    """1×1 convs (FCN score layers, ASPP's 1×1 branch) use the input itself as the column matrix."""
    x, w, b = rng.standard_normal((2, 4, 7, 5)), rng.standard_normal((6, 4 // groups, 1, 1)), rng.standard_normal(6)
    check_twin(lambda F, x, w, b: F.conv2d(x, w, b, groups=groups), x, w, b, device=device)
    wt = rng.standard_normal((4, 6 // groups, 1, 1))
    check_twin(lambda F, x, w: F.conv_transpose2d(x, w, groups=groups), x, wt, device=device)
    windows = windows_module.Windows(x.shape[2:], (1, 1), (1, 1), (1, 1), (0, 0), x.shape[2:])
    tiles = list(windows.column_tiles(x))
    assert len(tiles) == x.shape[0] and all(np.shares_memory(cols, x) for *_, cols in tiles)  # x itself, no copy


# ------------------------------------------------------------------ regions that read padding
def test_tap_runs_of_aspp_geometries():
    """3×3, dilation 12 on 33 outputs: the first 12 read inside with taps 1–2 only, the last 12 with taps 0–1."""
    Run = windows_module.Run
    windows = windows_module.Windows((33, 33), (3, 3), (1, 1), (12, 12), (12, 12), (33, 33))
    runs = [Run(0, 12, 1, 3), Run(12, 21, 0, 3), Run(21, 33, 0, 2)]
    assert windows_module.tap_runs(windows.row_reads, 33) == runs
    assert windows.regions == [(rows, cols) for rows in runs for cols in runs]
    # dilation 18 on a 16×16 map: the outer taps never read inside, so only the centre tap is left
    windows = windows_module.Windows((16, 16), (3, 3), (1, 1), (18, 18), (18, 18), (16, 16))
    assert windows.regions == [(Run(0, 16, 1, 2), Run(0, 16, 1, 2))]
    # 3×3 with padding 1 on 128: the border rows save 0.5 % of the columns, not worth a split
    assert windows_module.Windows((128, 128), (3, 3), (1, 1), (1, 1), (1, 1), (128, 128)).regions is None
    # DeepLab v3+ at output stride 16: rate 12 on a 16×16 map reads padding with 3/4 of its products (split);
    # rate 6 would split into runs of 6, 4 and 6 outputs saving a quarter, less than the overhead (measured)
    rate12 = windows_module.Windows((16, 16), (3, 3), (1, 1), (12, 12), (12, 12), (16, 16)).row_reads
    assert windows_module.tap_runs(rate12, 16) == [Run(0, 4, 1, 3), Run(4, 12, 1, 2), Run(12, 16, 0, 2)]
    assert windows_module.Windows((16, 16), (3, 3), (1, 1), (6, 6), (6, 6), (16, 16)).regions is None
    # runs of 1, 4 and 1 (padding 1 on 6 outputs) would save 2 entries for 2 × RUN_OVERHEAD: one run
    assert windows_module.tap_runs(windows_module.Windows((6, 6), (3, 3), (1, 1), (1, 1), (1, 1), (6, 6)).row_reads, 6) \
        == [Run(0, 6, 0, 3)]


def test_a_dilation_wider_than_the_map_reads_no_padding(monkeypatch, rng):
    """ASPP's rate-18 branch on a 16×16 map is a 1×1 conv with the centre tap: no columns are built, forward
    or backward, and the result (with its gradients) still equals PyTorch's."""
    fills = []
    real = windows_module.Windows.fill_columns
    monkeypatch.setattr(windows_module.Windows, "fill_columns", lambda self, *a: fills.append(self.kernel) or real(self, *a))
    x, w, b = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    check_twin(lambda F, x, w, b: F.conv2d(x, w, b, padding=18, dilation=18), x, w, b)
    assert fills == []


def test_output_rows_that_read_only_padding_are_the_bias(rng):
    """Padding 4 with a 3×3 kernel: the outer output rings read nothing but zeros and equal the bias."""
    x, w, b = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    check_twin(lambda F, x, w, b: F.conv2d(x, w, b, padding=4), x, w, b)
    out = F.conv2d(minseg.tensor(x), minseg.tensor(w), minseg.tensor(b), padding=4).numpy()
    np.testing.assert_array_equal(out[0, :, 0, :], np.broadcast_to(b[:, None], (3, 11)))


# ------------------------------------------------------------------ the fast path equals the teaching path
def _geometry(case):
    return case["stride"], case["padding"], case["dilation"], case["groups"]


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_fast_conv_equals_the_teaching_path(case, tiling, rng):
    """conv.py's folded padding, tiles and phase-wise input gradient give im2col.py's numbers (float64, 1e-12)."""
    x = rng.standard_normal((case["n"], case["c_in"]) + case["size"])
    w = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["kernel"])
    stride, padding, dilation, groups = _geometry(case)
    y = minseg.Tensor(x, requires_grad=True), minseg.Tensor(w, requires_grad=True)
    out = F.conv2d(*y, stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    np.testing.assert_allclose(out.numpy(), teaching.conv_reference(x, w, *_geometry(case)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y[0].grad.numpy(), teaching.conv_transpose_reference(g, w, x.shape[2:], *_geometry(case)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y[1].grad.numpy(),
                               teaching.conv_weight_grad_reference(x, g, case["kernel"], *_geometry(case)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: _case_id(c) + f"-op{c['output_padding']}")
def test_fast_transposed_conv_equals_the_teaching_path(case, tiling, rng):
    """Phase by phase (no scatter) equals col2im(Wᵀ x); its backward's shared columns equal the plain conv."""
    x = rng.standard_normal((case["n"], case["c_in"]) + case["size"])
    w = rng.standard_normal((case["c_in"], case["c_out"] // case["groups"]) + case["kernel"])
    stride, padding, dilation, groups = _geometry(case)
    y = minseg.Tensor(x, requires_grad=True), minseg.Tensor(w, requires_grad=True)
    out = F.conv_transpose2d(*y, stride=stride, padding=padding, output_padding=case["output_padding"],
                             groups=groups, dilation=dilation)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    expected = teaching.conv_transpose_reference(x, w, out.shape[2:], *_geometry(case))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    # the conv g → x: its output is x's size, read from the windows that land inside g
    grad_x = teaching.conv_reference(g, w, *_geometry(case))[:, :, :x.shape[2], :x.shape[3]]
    np.testing.assert_allclose(y[0].grad.numpy(), grad_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y[1].grad.numpy(),
                               teaching.conv_weight_grad_reference(g, x, case["kernel"], *_geometry(case)),
                               rtol=1e-12, atol=1e-12)


def test_kernel_equal_to_stride_is_one_product(monkeypatch, rng):
    """U-Net's 2×2/2 up-convolution: its four phases share one geometry, so one GEMM serves them all."""
    calls = []
    real = conv_module.conv_forward
    monkeypatch.setattr(conv_module, "conv_forward", lambda *args: calls.append(args[1].shape) or real(*args))
    x, w = rng.standard_normal((2, 6, 5, 7)), rng.standard_normal((6, 4, 2, 2))
    out = F.conv_transpose2d(minseg.Tensor(x), minseg.Tensor(w), stride=2)
    assert calls == [(16, 6, 1, 1)]                       # 4 phases × 4 output channels, 1×1 kernels
    np.testing.assert_allclose(out.numpy(), TF.conv_transpose2d(torch.tensor(x), torch.tensor(w), stride=2).numpy(),
                               rtol=1e-12)


def test_transposed_phases_split_the_taps():
    """Every kernel tap lands on exactly one phase, and taps step by d/gcd(s, d) inside a phase."""
    for kernel, stride, padding, dilation in itertools.product((1, 2, 3, 4, 7), (1, 2, 3), (0, 1, 3), (1, 2, 3)):
        phases = conv_module.transposed_phases(40, kernel, stride, padding, dilation)
        taps = sorted(i for phase in phases for i in phase.taps)
        assert taps == list(range(kernel)), (kernel, stride, padding, dilation)
        assert sum(phase.count for phase in phases) == 40


def test_unbatched_inputs_match_torch(rng, device):
    """(C, H, W) without a batch axis, as PyTorch accepts."""
    x, w, wt = rng.standard_normal((3, 9, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((3, 2, 3, 3))
    check_twin(lambda F, x, w: F.conv2d(x, w, padding=1, stride=2), x, w, device=device)
    check_twin(lambda F, x, w: F.conv_transpose2d(x, w, stride=2), x, wt, device=device)


def test_zero_input_channels_give_the_bias(rng):
    """An empty sum is zero: a conv over 0 input channels returns the bias everywhere, with empty gradients
    (PyTorch returns a (N, 0, H, W) tensor here instead, which we do not copy)."""
    x = minseg.Tensor(np.zeros((2, 0, 5, 5)), requires_grad=True)
    w = minseg.Tensor(np.zeros((3, 0, 3, 3)), requires_grad=True)
    b = minseg.Tensor(rng.standard_normal(3), requires_grad=True)
    out = F.conv2d(x, w, b, padding=1)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(b.numpy()[:, None, None], (2, 3, 5, 5)))
    out.sum().backward()
    assert x.grad.shape == (2, 0, 5, 5) and w.grad.shape == (3, 0, 3, 3)
    np.testing.assert_array_equal(b.grad.numpy(), [50.0, 50.0, 50.0])
    empty = F.conv_transpose2d(minseg.zeros(0, 3, 4, 4), minseg.zeros(3, 2, 3, 3), stride=2)
    assert empty.shape == (0, 2, 9, 9)
