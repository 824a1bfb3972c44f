"""Inference strategies (§7.7, §7.3.4): each one against a single forward pass it must reproduce."""

import math

import numpy as np
import pytest

import minseg
import minseg.nn as nn
from minseg.core.backend import device_of
from minseg.inference import (Prediction, gaussian_importance_map, overlap_tile, predict_image, predict_resized,
                              sliding_window, tta)
from minseg.models import UNet, unet_output_size


def to_numpy(array):
    return minseg.Tensor(array).numpy()


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def plain(model, x):
    """softmax(model(x)) in one forward pass, as a NumPy array."""
    with minseg.no_grad():
        return softmax(model(minseg.Tensor(x)).numpy())


def build(device, *layers):
    minseg.manual_seed(0)
    return nn.Sequential(*layers).to(device, dtype=np.float64)


def image(rng, device, *shape):
    return minseg.to_device(rng.standard_normal(shape), device)


# ---------------------------------------------------------------- Gaussian importance map
@pytest.mark.parametrize("window", [7, 8, (5, 6), (16, 9), 1, 2])
def test_gaussian_map_is_symmetric_and_peaks_at_the_centre(window, device):
    w = to_numpy(gaussian_importance_map(window, device=device))
    h, wd = (window, window) if isinstance(window, int) else window
    assert w.shape == (h, wd) and w.dtype == np.float32
    np.testing.assert_array_equal(w, w[::-1, :])      # centred: a flip maps the map onto itself
    np.testing.assert_array_equal(w, w[:, ::-1])
    peak = np.argwhere(w == w.max())
    rows, cols = sorted({(h - 1) // 2, h // 2}), sorted({(wd - 1) // 2, wd // 2})  # 1 or 2 middle pixels
    assert sorted(map(tuple, peak)) == [(r, c) for r in rows for c in cols]
    assert w.max() == 1.0 and w.min() >= 1e-3


def test_gaussian_map_values_follow_the_formula():
    w = gaussian_importance_map((6, 10), sigma_scale=0.25, dtype=np.float64)
    t_h, t_w = np.arange(6) - 2.5, np.arange(10) - 4.5          # centre between the two middle pixels
    expected = np.exp(-t_h[:, None] ** 2 / (2 * 1.5**2) - t_w[None, :] ** 2 / (2 * 2.5**2))
    np.testing.assert_allclose(w, np.maximum(expected / expected.max(), 1e-3), rtol=1e-12)
    assert gaussian_importance_map(64, sigma_scale=0.05).min() == np.float32(1e-3)  # the floor


# ---------------------------------------------------------------- sliding window
def pointwise_model(device):
    return build(device, nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("size, window, overlap", [((37, 50), 16, 0.25), ((30, 30), (12, 20), 0.5),
                                                   ((9, 13), 16, 0.25), ((20, 41), 20, 0.0)])
def test_sliding_window_of_a_pointwise_model_equals_the_full_image_pass(size, window, overlap, blend, rng, device):
    model = pointwise_model(device)
    x = image(rng, device, 2, 3, *size)
    result = sliding_window(model, x, window, overlap=overlap, batch_size=3, blend=blend)
    assert isinstance(result, Prediction) and device_of(result.probabilities) == device
    np.testing.assert_allclose(to_numpy(result.probabilities), plain(model, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(to_numpy(result.labels), plain(model, x).argmax(1))


def test_sliding_window_away_from_every_border_reproduces_a_same_padded_stack(rng, device):
    """A 3×3 same-padded stack (receptive radius 2): windows of 20 at stride 10 share the pixels of each
    10×10 cell, and in the cells' inner parts no window sees its zero padding, so those pixels are exact."""
    model = build(device, nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1))
    x = image(rng, device, 1, 3, 40, 40)
    result = to_numpy(sliding_window(model, x, 20, overlap=0.5).probabilities)
    inner = np.zeros((40, 40), dtype=bool)
    for start in range(0, 40, 10):
        inner[start + 2:start + 8] = True
    inner &= inner.T
    np.testing.assert_allclose(result[..., inner], plain(model, x)[..., inner], rtol=1e-12, atol=1e-12)
    assert not np.allclose(result, plain(model, x))  # elsewhere the window borders do show


def test_gaussian_blending_is_closer_to_the_full_pass_than_uniform_averaging(rng, device):
    model = build(device, nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                  nn.Conv2d(8, 3, 3, padding=1))
    x = image(rng, device, 1, 3, 48, 48)
    full = plain(model, x)
    errors = {blend: np.abs(to_numpy(sliding_window(model, x, 16, overlap=0.5, blend=blend).probabilities)
                            - full).mean() for blend in ("gaussian", "constant")}
    assert errors["gaussian"] < 0.8 * errors["constant"]


def test_sliding_window_checks_its_arguments(rng, device):
    model, x = pointwise_model(device), image(rng, device, 3, 20, 20)
    result = sliding_window(model, x, 8, num_classes=4)       # an unbatched image stays unbatched
    assert result.probabilities.shape == (4, 20, 20) and result.labels.shape == (20, 20)
    small = image(rng, device, 3, 5, 7)                        # smaller than the window: padded, then cropped
    np.testing.assert_allclose(to_numpy(sliding_window(model, small, 8, pad_mode="reflect").probabilities),
                               plain(model, small[None])[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="num_classes=5"):
        sliding_window(model, x, 8, num_classes=5)
    with pytest.raises(ValueError, match="blend"):
        sliding_window(model, x, 8, blend="mean")
    with pytest.raises(ValueError, match="overlap_tile"):
        sliding_window(build(device, nn.Conv2d(3, 2, 3)), x, 8)


# ---------------------------------------------------------------- full-image resize
def test_predict_resized_commutes_with_a_pointwise_affine_model(rng, device):
    """For an affine 1×1 model, resize → model → resize back equals model(resize back(resize(x)))."""
    model = build(device, nn.Conv2d(3, 4, 1))
    x = image(rng, device, 2, 3, 21, 30)
    result = predict_resized(model, x, (14, 17))
    down_up = minseg.functional.interpolate(minseg.functional.interpolate(minseg.Tensor(x), size=(14, 17),
                                                                          mode="bilinear"), size=(21, 30),
                                            mode="bilinear").data
    assert result.probabilities.shape == (2, 4, 21, 30)
    np.testing.assert_allclose(to_numpy(result.probabilities), plain(model, down_up), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(predict_resized(model, x, (21, 30)).probabilities), plain(model, x))


def test_inference_builds_no_graph(rng, device):
    seen = []
    inner = pointwise_model(device)

    def model(t):
        seen.append(minseg.is_grad_enabled())
        return inner(t)

    x = image(rng, device, 1, 3, 12, 12)
    predict_resized(model, x, 8)
    sliding_window(model, x, 8)
    tta(model, x)
    assert seen and not any(seen)


# ---------------------------------------------------------------- overlap-tile
def mirror_padded_pass(model, x, margin, covered):
    """One forward pass over the whole image mirror-padded by the margin (and on the bottom/right up to
    ``covered`` pixels of output), cropped to the image: what overlap-tile must reproduce."""
    h, w = x.shape[-2:]
    padded = np.pad(to_numpy(x), ((0, 0), (0, 0), (margin, margin + covered[0] - h), (margin, margin + covered[1] - w)),
                    mode="reflect")
    return plain(model, minseg.to_device(padded, device_of(x)))[..., :h, :w]


@pytest.mark.parametrize("size, tile", [((30, 23), 7), ((14, 14), 7), ((5, 40), (4, 9))])
def test_overlap_tile_of_a_valid_conv_stack_equals_one_pass_over_the_mirrored_image(size, tile, rng, device):
    model = build(device, nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Conv2d(6, 6, 3), nn.ReLU(), nn.Conv2d(6, 3, 1))
    x = image(rng, device, 2, 2, *size)
    result = overlap_tile(model, x, tile, margin=2, batch_size=5)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    covered = (math.ceil(size[0] / th) * th, math.ceil(size[1] / tw) * tw)
    expected = mirror_padded_pass(model, x, 2, covered)
    np.testing.assert_allclose(to_numpy(result.probabilities), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(to_numpy(result.labels), expected.argmax(1))


def valid_unet(depth, device, seed=0):
    """A small valid-padding U-Net with He-normal weights, so that every level shapes the output."""
    model = UNet(in_channels=1, num_classes=3, base_channels=2, depth=depth, padding="valid")
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 1
        p.data[...] = rng.standard_normal(p.shape) * (np.sqrt(2 / fan_in) if p.ndim > 1 else 0.1)
    return model.to(device, dtype=np.float64), (12 * 2**depth - 8) // 2  # the margin: 92 px at depth 4


def unet_tiles(depth, output_tile, size, alignment, rng, device):
    model, margin = valid_unet(depth, device)
    assert unet_output_size(output_tile + 2 * margin, depth) == output_tile
    x = image(rng, device, 1, 1, *size)
    result = overlap_tile(model, x, output_tile, input_tile=output_tile + 2 * margin, alignment=alignment)
    step = output_tile // alignment * alignment
    covered = tuple(math.ceil((s - output_tile) / step) * step + output_tile for s in size)
    return to_numpy(result.probabilities), mirror_padded_pass(model, x, margin, covered)


@pytest.mark.parametrize("depth, output_tile, size", [(2, 28, (60, 47)), (3, 12, (30, 19))])
def test_overlap_tile_of_a_valid_unet_is_seamless(depth, output_tile, size, rng, device):
    """Tiles at multiples of 2^depth see the pooling grid of the whole-image pass, so the stitched
    prediction equals it (at depth 3 the 12-pixel tiles step by 8 and overlap)."""
    tiled, whole = unet_tiles(depth, output_tile, size, 2**depth, rng, device)
    assert whole.std() > 0.01
    np.testing.assert_allclose(tiled, whole, rtol=1e-10, atol=1e-12)


def test_overlap_tile_needs_tiles_aligned_with_the_pooling_grid(rng, device):
    """20-pixel tiles of a depth-3 U-Net at offsets 0, 20, 40 (not multiples of 8) pool on other grids."""
    tiled, whole = unet_tiles(3, 20, (45, 45), 1, rng, device)
    assert np.abs(tiled - whole).max() > 0.01


def test_overlap_tile_reports_a_wrong_margin(rng, device):
    model = build(device, nn.Conv2d(1, 2, 5))
    with pytest.raises(ValueError, match="check input_tile/margin"):
        overlap_tile(model, image(rng, device, 1, 10, 10), 4, margin=1)
    with pytest.raises(ValueError, match="exactly one"):
        overlap_tile(model, image(rng, device, 1, 10, 10), 4)


# ---------------------------------------------------------------- test-time augmentation
def flip_equivariant_model(device):
    """3×3 kernels symmetric under both flips and zero padding: model(flip(x)) = flip(model(x))."""
    model = build(device, nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1))
    for layer in (model[0], model[2]):
        w = layer.weight.data
        layer.weight.data[...] = (w + w[..., ::-1, :] + w[..., :, ::-1] + w[..., ::-1, ::-1]) / 4
    return model


def test_tta_with_flips_of_a_flip_equivariant_model_is_the_plain_prediction(rng, device):
    model = flip_equivariant_model(device)
    x = image(rng, device, 2, 3, 19, 26)
    result = tta(model, x, flips=("h", "v", "hv"))
    np.testing.assert_allclose(to_numpy(result.probabilities), plain(model, x), rtol=1e-12, atol=1e-12)


def test_tta_composes_with_the_sliding_window(rng, device):
    model = flip_equivariant_model(device)
    x = image(rng, device, 1, 3, 40, 40)  # windows 0, 12, 24: the window grid is symmetric under flips

    def windows(t):
        return sliding_window(model, t, 16, overlap=0.25)

    expected = to_numpy(windows(x).probabilities)
    np.testing.assert_allclose(to_numpy(tta(windows, x).probabilities), expected, rtol=1e-12, atol=1e-12)


def test_multi_scale_tta_returns_the_input_size(rng, device):
    model = flip_equivariant_model(device)
    x = image(rng, device, 3, 23, 31)
    result = tta(model, x, flips=("h",), scales=(0.5, 0.75, 1.0, 1.5))
    assert result.probabilities.shape == (4, 23, 31) and result.labels.shape == (23, 31)
    np.testing.assert_allclose(to_numpy(result.probabilities).sum(0), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="flips"):
        tta(model, x, flips=("d",))


# ---------------------------------------------------------------- predict_image (the pipeline of the CLI)
def test_predict_image_pads_to_the_multiple_and_crops_back(rng, device):
    """A model that refuses sides not divisible by 8 still gets a 21×30 image: reflect-padded to 24×32, and
    its logits cropped back. A pointwise model does not see the padding, so the result is the plain pass."""
    inner = pointwise_model(device)

    def model(t):
        assert t.shape[-2] % 8 == 0 and t.shape[-1] % 8 == 0, t.shape
        return inner(t)

    x = image(rng, device, 3, 21, 30)
    result = predict_image(model, x, multiple=8)
    assert result.probabilities.shape == (4, 21, 30) and device_of(result.probabilities) == device
    np.testing.assert_allclose(to_numpy(result.probabilities), plain(inner, x[None])[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(to_numpy(result.labels), plain(inner, x[None])[0].argmax(0))


def test_predict_image_composes_window_flips_and_crf(rng, device):
    from minseg.inference import dense_crf

    model, x = flip_equivariant_model(device), image(rng, device, 3, 40, 40)
    windows = to_numpy(sliding_window(model, x, 16, overlap=0.25).probabilities)
    both = predict_image(model, x, window=16, flips=("h",))
    np.testing.assert_allclose(to_numpy(both.probabilities), windows, rtol=1e-12, atol=1e-12)
    refined = predict_image(model, x, crf=True)
    expected = dense_crf(plain(model, to_numpy(x)[None])[0], np.clip(to_numpy(x) * 255, 0, 255))
    np.testing.assert_allclose(to_numpy(refined.probabilities), expected, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="predict_image: image must be"):
        predict_image(model, x[None])
