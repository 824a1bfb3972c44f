"""Synthetic data: fixed by a seed, valid labels, instances that agree with the mask, a real long tail."""

import time

import numpy as np
import pytest

from minseg.data import (Compose, DataLoader, ElasticDeformation, ImbalancedShapes, MultiClassShapes, RandomAffine,
                         RandomCrop, RandomHorizontalFlip, TouchingCells)

DATASETS = [TouchingCells, MultiClassShapes, ImbalancedShapes]


@pytest.mark.parametrize("cls", DATASETS)
def test_deterministic_by_seed_and_independent_of_access_order(cls):
    a, b = cls(length=6, size=48, seed=3), cls(length=20, size=48, seed=3)
    backwards = [b[i] for i in reversed(range(6))][::-1]
    for i in range(6):
        for x, y in zip(a[i], backwards[i]):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0][0], cls(length=6, size=48, seed=4)[0][0])
    assert not np.array_equal(a[0][0], a[1][0])
    np.testing.assert_array_equal(a[-1][1], a[5][1])


@pytest.mark.parametrize("cls", DATASETS)
def test_types_shapes_and_label_set(cls):
    ds = cls(length=8, size=(40, 56))
    channels = 1 if cls is TouchingCells else 3
    assert len(ds) == 8 and ds.num_classes == len(ds.class_names) == len(ds.palette)
    for i in range(len(ds)):
        image, mask = ds[i]
        assert image.shape == (channels, 40, 56) and image.dtype == np.float32
        assert mask.shape == (40, 56) and mask.dtype == np.int64
        assert 0 <= image.min() and image.max() <= 1
        assert set(np.unique(mask)) <= set(range(ds.num_classes))


@pytest.mark.parametrize("cls", DATASETS)
def test_fast_enough(cls):
    ds = cls(length=64, size=128)
    ds[0]
    start = time.perf_counter()
    for i in range(64):
        ds[i]
    assert time.perf_counter() - start < 1.0


def test_cells_instances_agree_with_the_mask_and_are_separated():
    ds = TouchingCells(length=6, size=96, return_instances=True, seed=1)
    touching = 0
    for i in range(len(ds)):
        image, mask, instances = ds[i]
        assert instances.dtype == np.int64 and instances.shape == mask.shape
        np.testing.assert_array_equal(instances > 0, mask == 1)
        ids = np.unique(instances)
        np.testing.assert_array_equal(ids, np.arange(ids.max() + 1))  # consecutive 0..K, none empty
        assert ids.max() >= 5
        for a, b in ((instances[1:], instances[:-1]), (instances[:, 1:], instances[:, :-1])):
            assert not np.any((a > 0) & (b > 0) & (a != b)), "two cells share an edge: no gap between them"
        # gap pixels: background with two different cells within two pixels (what U-Net's weight map emphasises)
        padded = np.pad(instances, 2)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5)).reshape(mask.shape + (25,))
        highest = windows.max(-1)
        lowest = np.where(windows > 0, windows, highest.max() + 1).min(-1)
        touching += int(np.sum((mask == 0) & (highest > 0) & (lowest < highest)))
        assert image[0][mask == 1].mean() > image[0][mask == 0].mean() + 0.15
    assert touching > 100


def test_cells_image_has_uneven_illumination_and_noise():
    clean = TouchingCells(length=1, size=64, noise=0, illumination=0, blur=0)[0]
    noisy = TouchingCells(length=1, size=64)[0]
    np.testing.assert_array_equal(clean[1], noisy[1])
    background = clean[0][0][clean[1] == 0]
    assert background.std() < 1e-6  # one flat level without noise or illumination
    assert noisy[0][0][noisy[1] == 0].std() > 0.02


def test_shapes_every_class_appears_with_varied_sizes():
    ds = MultiClassShapes(length=16, size=96)
    masks = np.stack([ds[i][1] for i in range(len(ds))])
    counts = np.bincount(masks.ravel(), minlength=ds.num_classes)
    assert np.all(counts > 0) and counts[0] / masks.size > 0.3
    areas = [np.sum(m == c) for m in masks for c in range(1, 5) if np.any(m == c)]
    assert max(areas) > 8 * min(areas)


def test_shapes_colour_tells_the_class_only_when_asked():
    coloured = MultiClassShapes(length=4, size=64, noise=0, blur=0)
    for i in range(4):
        image, mask = coloured[i]
        for c in np.unique(mask)[1:]:
            mean = image[:, mask == c].mean(1)
            assert np.abs(mean - coloured.palette[c] / 255).max() < 0.3
    plain = MultiClassShapes(length=4, size=64, class_colors=False)
    np.testing.assert_array_equal(plain[2][1], coloured[2][1])  # same layout, other colours


def test_imbalanced_variant_is_imbalanced():
    ds = ImbalancedShapes(length=64, size=96)
    masks = np.stack([ds[i][1] for i in range(len(ds))])
    frequency = np.bincount(masks.ravel(), minlength=5) / masks.size
    assert frequency[1] > 0.1 and frequency[2] > 0.1
    assert 0 < frequency[3] < 0.01 and 0 < frequency[4] < 0.01
    assert frequency[1:].max() / frequency[1:].min() > 50
    images_with_rare = np.mean([np.any(m >= 3) for m in masks])
    assert 0.05 < images_with_rare < 0.8
    balanced = MultiClassShapes(length=64, size=96)
    counts = np.bincount(np.stack([balanced[i][1] for i in range(64)]).ravel())
    assert counts[1:].max() / counts[1:].min() < 3


def test_sample_applies_the_transform_and_moves_instances_with_the_mask():
    transform = Compose([ElasticDeformation(sigma=8), RandomAffine(30, 0.1, (0.8, 1.2)), RandomHorizontalFlip()])
    ds = TouchingCells(length=4, size=64, return_instances=True, transform=transform)
    image, mask, instances = ds.sample(1, np.random.default_rng(5))
    again = ds.sample(1, np.random.default_rng(5))
    for x, y in zip((image, mask, instances), again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(mask, ds[1][1])
    assert set(np.unique(mask)) <= {0, 1, 255} and np.any(mask == 255)
    np.testing.assert_array_equal(instances > 0, mask == 1)
    assert set(np.unique(instances[mask == 1])) <= set(np.unique(ds[1][2])) - {0}
    plain = TouchingCells(length=4, size=64)
    for x, y in zip(plain.sample(2, np.random.default_rng(0)), plain[2]):
        np.testing.assert_array_equal(x, y)


def test_through_the_data_loader():
    ds = MultiClassShapes(length=10, size=32, transform=Compose([RandomCrop(24), RandomHorizontalFlip()]))
    first = [(x.numpy(), y.numpy()) for x, y in DataLoader(ds, batch_size=4, shuffle=True, seed=1)]
    second = [(x.numpy(), y.numpy()) for x, y in DataLoader(ds, batch_size=4, shuffle=True, seed=1)]
    assert first[0][0].shape == (4, 3, 24, 24) and first[0][1].dtype == np.int64
    for (a, b), (c, d) in zip(first, second):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    cells = DataLoader(TouchingCells(length=4, size=32, return_instances=True), batch_size=2)
    image, mask, instances = next(iter(cells))
    assert image.shape == (2, 1, 32, 32) and instances.shape == mask.shape == (2, 32, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        TouchingCells(length=0)
    with pytest.raises(ValueError, match="size"):
        MultiClassShapes(size=4)
    with pytest.raises(ValueError, match="class_weights"):
        MultiClassShapes(class_weights=(1, 2))
    with pytest.raises(IndexError):
        TouchingCells(length=3)[3]
