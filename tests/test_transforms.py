"""Joint image/mask transforms (§7.3.4): labels stay labels, geometry stays aligned, a seed fixes everything."""

import numpy as np
import pytest

from minseg.data import (Compose, ElasticDeformation, PhotometricJitter, RandomAffine, RandomCrop, RandomFlip,
                         RandomHorizontalFlip, RandomVerticalFlip)

H, W = 40, 52
LABELS = set(range(5))


def _blocks(height=H, width=W, block=6, seed=0):
    """A mask of random labels 0..4 in block × block squares (so shifts and warps are visible)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 5, size=(height // block + 1, width // block + 1))
    return np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width]


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(3, H, W)).astype(np.float32), _blocks(seed=seed)


TRANSFORMS = {
    "elastic": lambda: ElasticDeformation(sigma=10),
    "elastic_mirror": lambda: ElasticDeformation(sigma=6, grid=4, mode="mirror"),
    "affine": lambda: RandomAffine(degrees=30, translate=0.1, scale=(0.8, 1.25)),
    "affine_reflect": lambda: RandomAffine(degrees=15, scale=(0.7, 1.0), mode="reflect"),
    "hflip": lambda: RandomHorizontalFlip(),
    "vflip": lambda: RandomVerticalFlip(),
    "crop": lambda: RandomCrop((24, 30)),
    "crop_padded": lambda: RandomCrop((48, 40)),
    "jitter": lambda: PhotometricJitter(0.2, 0.3, 0.3, 0.05),
    "compose": lambda: Compose([ElasticDeformation(), RandomAffine(20, 0.05, (0.9, 1.1)), RandomHorizontalFlip(),
                                RandomCrop(32)]),
    "compose_jitter": lambda: Compose([RandomAffine(10), RandomVerticalFlip(), PhotometricJitter()]),
}
GEOMETRIC = [name for name in TRANSFORMS if "jitter" not in name]


@pytest.mark.parametrize("name", TRANSFORMS)
def test_deterministic_by_seed(name):
    image, mask = _pair()
    transform = TRANSFORMS[name]()
    a = transform(image, mask, np.random.default_rng(7))
    b = TRANSFORMS[name]()(image, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    outputs = [transform(image, mask, np.random.default_rng(seed)) for seed in range(6)]
    assert any(not np.array_equal(outputs[0][0], other[0]) for other in outputs[1:])


@pytest.mark.parametrize("name", TRANSFORMS)
def test_masks_stay_labels_and_images_keep_their_dtype(name):
    image, mask = _pair()
    for seed in range(3):
        out_image, out_mask = TRANSFORMS[name]()(image, mask, np.random.default_rng(seed))
        assert out_image.dtype == np.float32 and out_mask.dtype == np.int64
        assert out_image.shape[-2:] == out_mask.shape and out_image.shape[0] == 3
        assert set(np.unique(out_mask)) <= LABELS | {255}


@pytest.mark.parametrize("name", GEOMETRIC)
def test_image_and_mask_stay_aligned(name):
    """An image equal to its mask, resampled by nearest neighbour, must still equal the mask; pixels brought
    in from outside are fill (0, shifted here to −1) in the image and 255 in the mask."""
    _, mask = _pair()
    image = mask[None].astype(np.float32)
    transform = TRANSFORMS[name]()
    for attribute, value in (("order", 0), ("fill", -1.0)):
        for part in getattr(transform, "transforms", [transform]):
            if hasattr(part, attribute):
                setattr(part, attribute, value)
    for seed in range(3):
        out_image, out_mask = transform(image, mask, np.random.default_rng(seed))
        inside = out_mask != 255
        np.testing.assert_array_equal(out_image[0][inside], out_mask[inside])
        assert np.all(out_image[0][~inside] == -1)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_label_planes_move_together(name):
    """A (K, H, W) stack of label maps is transformed exactly as each map on its own."""
    image, mask = _pair()
    other = _blocks(seed=5)
    _, stacked = TRANSFORMS[name]()(image, np.stack([mask, other]), np.random.default_rng(3))
    _, alone = TRANSFORMS[name]()(image, other, np.random.default_rng(3))
    np.testing.assert_array_equal(stacked[1], alone)


@pytest.mark.parametrize("mode", ["constant", "reflect", "mirror", "nearest"])
def test_zero_displacement_elastic_is_identity(mode):
    image, mask = _pair()
    out_image, out_mask = ElasticDeformation(sigma=0, mode=mode)(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_mask, mask)


def test_elastic_field_is_a_smooth_interpolation_of_the_coarse_grid():
    """Bicubic upsampling passes through the 3×3 grid's nodes (corners, edge midpoints, centre) and varies slowly."""
    sigma, shape = 10.0, (41, 61)
    field = ElasticDeformation(sigma=sigma).displacement(shape, np.random.default_rng(4))
    coarse = np.random.default_rng(4).normal(0.0, sigma, size=(2, 3, 3))
    nodes = field[:, ::20, ::30]
    np.testing.assert_allclose(nodes, coarse, atol=1e-9)
    assert np.abs(np.diff(field, axis=1)).max() < sigma / 3 and np.abs(np.diff(field, axis=2)).max() < sigma / 3
    stds = [ElasticDeformation(sigma).displacement((9, 9), np.random.default_rng(s))[:, ::4, ::4].std()
            for s in range(200)]
    assert abs(np.sqrt(np.mean(np.square(stds))) - sigma) < 1.5


def test_elastic_actually_deforms():
    image, mask = _pair()
    out_image, out_mask = ElasticDeformation(sigma=10)(image, mask, np.random.default_rng(1))
    assert (out_mask != mask).mean() > 0.05


def test_identity_affine_and_quarter_turn():
    image, mask = _pair()
    same = RandomAffine()(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(same[0], image)
    np.testing.assert_array_equal(same[1], mask)
    square = _blocks(30, 30)
    turned_image, turned = RandomAffine(degrees=(90, 90), order=0)(square[None].astype(np.float32), square,
                                                                    np.random.default_rng(0))
    np.testing.assert_array_equal(turned, np.rot90(square))  # counter-clockwise as displayed
    np.testing.assert_array_equal(turned_image[0], np.rot90(square))


def test_affine_scale_and_shift_move_content_as_stated():
    """Scale 2 about the centre c: output p shows input c + (p − c)/2. A shift by t: output p shows p − t."""
    mask = _blocks(31, 31, block=3)
    image = mask[None].astype(np.float32)
    rows, cols = np.indices(mask.shape)
    _, zoomed = RandomAffine(scale=(2, 2), order=0)(image, mask, np.random.default_rng(0))
    exact = ((rows - 15) % 2 == 0) & ((cols - 15) % 2 == 0)  # source on the pixel grid, no rounding tie
    np.testing.assert_array_equal(zoomed[exact], mask[15 + (rows[exact] - 15) // 2, 15 + (cols[exact] - 15) // 2])
    replay = np.random.default_rng(2)
    replay.uniform(), replay.uniform()  # the angle and scale draws
    shift = replay.uniform(-1, 1, 2) * [0.1 * 31, 0.2 * 31]
    _, moved = RandomAffine(translate=(0.1, 0.2), order=0)(image, mask, np.random.default_rng(2))
    source_r, source_c = rows - shift[0], cols - shift[1]
    inside = (source_r >= 0) & (source_r <= 30) & (source_c >= 0) & (source_c <= 30)
    expected = mask[np.rint(source_r[inside]).astype(int), np.rint(source_c[inside]).astype(int)]
    np.testing.assert_array_equal(moved[inside], expected)
    assert np.all(moved[~inside] == 255) and 0 < inside.mean() < 1


@pytest.mark.parametrize("flip", [RandomHorizontalFlip, RandomVerticalFlip])
def test_flip_twice_is_identity(flip):
    image, mask = _pair()
    once = flip(p=1.0)(image, mask, np.random.default_rng(0))
    axis = -1 if flip is RandomHorizontalFlip else -2
    np.testing.assert_array_equal(once[0], np.flip(image, axis))
    np.testing.assert_array_equal(once[1], np.flip(mask, axis))
    twice = flip(p=1.0)(*once, np.random.default_rng(1))
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_array_equal(twice[1], mask)
    never = flip(p=0.0)(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(never[1], mask)


def test_flip_probability():
    mask = _blocks()
    flips = [not np.array_equal(RandomFlip("vertical", 0.3)(mask, mask, np.random.default_rng(s))[1], mask)
             for s in range(400)]
    assert 0.22 < np.mean(flips) < 0.38


def test_random_crop_is_a_window_and_pads_with_ignore():
    image = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    mask = np.arange(10 * 12).reshape(10, 12) % 5
    windows = set()
    for seed in range(20):
        out_image, out_mask = RandomCrop((4, 5))(image, mask, np.random.default_rng(seed))
        top, left = divmod(int(out_image[0, 0, 0]), 12)
        np.testing.assert_array_equal(out_image, image[:, top:top + 4, left:left + 5])
        np.testing.assert_array_equal(out_mask, mask[top:top + 4, left:left + 5])
        windows.add((top, left))
    assert len(windows) > 5
    big_image, big_mask = RandomCrop(16, fill=-1.0)(image, mask, np.random.default_rng(0))
    assert big_image.shape == (2, 16, 16) and big_mask.shape == (16, 16)
    valid = big_mask != 255
    assert valid.sum() == mask.size and np.all(big_image[:, ~valid] == -1)
    np.testing.assert_array_equal(np.sort(big_mask[valid]), np.sort(mask.ravel()))


def test_photometric_jitter_changes_intensity_only():
    image, mask = _pair()
    out_image, out_mask = PhotometricJitter(0.2, 0.3, 0.3, 0.05)(image, mask, np.random.default_rng(0))
    assert out_mask is mask
    assert out_image.min() >= 0 and out_image.max() <= 1 and not np.allclose(out_image, image)
    same, _ = PhotometricJitter(0, 0, 0, 0)(image, mask, np.random.default_rng(0))
    np.testing.assert_allclose(same, image, atol=1e-6)
    half = 0.25 + image * 0.5
    brighter, _ = PhotometricJitter(brightness=0.2, contrast=0, gamma=0, noise=0)(half, None, np.random.default_rng(0))
    offset = brighter - half
    assert np.ptp(offset) < 1e-6 and 0 < abs(offset.flat[0]) <= 0.2


def test_mask_may_be_omitted():
    image, _ = _pair()
    for name in TRANSFORMS:
        out_image, out_mask = TRANSFORMS[name]()(image, None, np.random.default_rng(0))
        assert out_mask is None and out_image.ndim == 3


def test_rng_is_explicit_and_global_state_untouched():
    image, mask = _pair()
    state = np.random.get_state()[1].copy()
    TRANSFORMS["compose"]()(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    with pytest.raises(TypeError, match="Generator"):
        ElasticDeformation()(image, mask, 0)
    with pytest.raises(TypeError, match="Generator"):
        RandomHorizontalFlip()(image, mask, None)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        RandomAffine(mode="wrap")
    with pytest.raises(ValueError, match="grid"):
        ElasticDeformation(grid=1)
    with pytest.raises(ValueError, match="low <= high"):
        RandomAffine(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="axis"):
        RandomFlip("diagonal")
    with pytest.raises(ValueError, match="size"):
        RandomCrop((0, 4))


@pytest.mark.parametrize("name", TRANSFORMS)
def test_per_pixel_maps_move_like_the_image(name):
    """Extra float maps (U-Net's weights) get the image's geometry — the same draws, interpolation and
    0 fill — and are left alone by photometric changes; the image and mask are as without maps."""
    image, mask = _pair()
    weights = np.random.default_rng(5).uniform(1, 10, size=(H, W)).astype(np.float32)
    stack = np.stack([weights, weights * 2])
    for seed in range(3):
        out_image, out_mask, out_weights, out_stack = TRANSFORMS[name]()(image, mask, np.random.default_rng(seed),
                                                                         weights, stack)
        plain_image, plain_mask = TRANSFORMS[name]()(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_image, plain_image)
        np.testing.assert_array_equal(out_mask, plain_mask)
        assert out_weights.shape == out_mask.shape and out_weights.dtype == np.float32
        np.testing.assert_allclose(out_stack, np.stack([out_weights, out_weights * 2]), rtol=1e-6)
        if name in GEOMETRIC:
            moved = TRANSFORMS[name]()(np.stack([weights] * 3), None, np.random.default_rng(seed))[0][0]
            np.testing.assert_array_equal(out_weights, moved)
        elif name == "jitter":
            np.testing.assert_array_equal(out_weights, weights)
