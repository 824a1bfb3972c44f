"""minseg.functional.distance against scipy.ndimage.distance_transform_edt, and the distance maps built on it."""

import numpy as np
import pytest
from scipy import ndimage

import minseg
from minseg.functional.distance import (distance_transform_edt, nearest_instance_distances, signed_distance_map,
                             squared_distance_to_zero)


def _on(device, array):
    return minseg.to_device(array, device)


def _back(array):
    return minseg.to_device(array, "cpu")


def _random_masks(count, seed=0):
    """Masks of 1 to 3 axes with densities from empty to full, half of them with anisotropic sampling."""
    rng = np.random.default_rng(seed)
    cases = [(np.zeros((4, 5), bool), None), (np.ones((4, 5), bool), None), (np.ones((3, 2, 4), bool), (2.0, 0.5, 1.5)),
             (np.ones(6, bool), None), (np.zeros((1, 1), bool), None)]
    while len(cases) < count:
        shape = tuple(rng.integers(1, 12, rng.integers(1, 4)))
        mask = rng.random(shape) < rng.choice([0.5, 0.9, 0.99, 1.0])
        sampling = tuple(rng.uniform(0.25, 3.0, len(shape))) if len(cases) % 2 else None
        cases.append((mask, sampling))
    return cases


def test_matches_scipy_on_random_masks(device):
    for mask, sampling in _random_masks(80):
        ours = _back(distance_transform_edt(_on(device, mask), sampling=sampling))
        np.testing.assert_allclose(ours, ndimage.distance_transform_edt(mask, sampling=sampling), rtol=1e-12,
                                   atol=1e-12, err_msg=f"shape {mask.shape}, sampling {sampling}")


def test_larger_sparse_and_dense_images(device):
    rng = np.random.default_rng(3)
    for density in (0.999, 0.5, 0.02):
        mask = rng.random((70, 90)) < density
        ours = _back(distance_transform_edt(_on(device, mask), sampling=(1.0, 1.7)))
        np.testing.assert_allclose(ours, ndimage.distance_transform_edt(mask, sampling=(1.0, 1.7)), rtol=1e-12)


def test_axes_transform_each_image_of_a_batch(device):
    rng = np.random.default_rng(1)
    batch = rng.random((4, 7, 9)) < 0.9
    batch[2] = True  # an image without background: SciPy's virtual zero, per image
    ours = _back(distance_transform_edt(_on(device, batch), sampling=(0.5, 2.0), axes=(-2, -1)))
    for image, expected in zip(batch, ours):
        np.testing.assert_allclose(expected, ndimage.distance_transform_edt(image, sampling=(0.5, 2.0)), rtol=1e-12)


def test_mask_without_zero_measures_to_the_virtual_zero_before_index_0():
    ones = np.ones((3, 4), bool)
    rows, cols = np.indices(ones.shape)
    np.testing.assert_allclose(distance_transform_edt(ones), np.hypot(rows + 1, cols))


def test_squared_distance_is_infinite_without_zero_and_accepts_tensors():
    squared = squared_distance_to_zero(minseg.Tensor(np.array([[1, 1], [1, 0]])))
    np.testing.assert_array_equal(squared, [[2.0, 1.0], [1.0, 0.0]])
    assert np.all(np.isinf(squared_distance_to_zero(np.ones((2, 3)))))


def _kervadec_signed_distance(mask):
    """Kervadec's one_hot2dist formula for one image with SciPy (our convention: no boundary gives 0)."""
    inside = mask.astype(bool)
    if not inside.any() or inside.all():
        return np.zeros(mask.shape)
    outside = ~inside
    return ndimage.distance_transform_edt(outside) * outside - (ndimage.distance_transform_edt(inside) - 1) * inside


def test_signed_distance_map_follows_kervadec(device):
    rng = np.random.default_rng(2)
    masks = rng.random((6, 8, 9)) < 0.4
    masks[0] = False
    masks[1] = True
    ours = _back(signed_distance_map(_on(device, masks)))
    for mask, phi in zip(masks, ours):
        np.testing.assert_allclose(phi, _kervadec_signed_distance(mask), rtol=1e-12, atol=1e-12)


def test_signed_distance_map_signs_on_a_square():
    square = np.zeros((7, 7), bool)
    square[1:6, 1:6] = True
    phi = signed_distance_map(square)
    assert phi[3, 3] == -2 and phi[2, 2] == -1 and phi[1, 3] == 0 and phi[0, 3] == 1 and phi[0, 0] == np.sqrt(2)


def test_nearest_instance_distances_match_a_per_instance_loop(device):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, (3, 9, 8)) * (rng.random((3, 9, 8)) < 0.2)
    labels[1] = 0
    labels[1, 4, 4] = 7  # one instance only: the second distance is infinite
    ours = _back(nearest_instance_distances(_on(device, labels), count=2, chunk_elements=300))
    for image, d1, d2 in zip(labels, ours[0], ours[1]):
        per_instance = [ndimage.distance_transform_edt(image != i) for i in np.unique(image) if i > 0]
        per_instance += [np.full(image.shape, np.inf)] * 2
        nearest = np.sort(np.stack(per_instance), axis=0)
        np.testing.assert_allclose(d1, nearest[0], rtol=1e-12)
        np.testing.assert_allclose(d2, nearest[1], rtol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: distance_transform_edt(np.ones((2, 2)), axes=(0, 0)), "axes"),
    (lambda: distance_transform_edt(np.ones((2, 2)), axes=(2,)), "axes"),
    (lambda: distance_transform_edt(np.ones((2, 2)), sampling=(1.0, 0.0)), "sampling"),
    (lambda: distance_transform_edt(np.ones((2, 2)), sampling=(1.0, 2.0, 3.0)), "sampling"),
    (lambda: distance_transform_edt(np.array(1)), "0-d"),
    (lambda: nearest_instance_distances(np.ones(4, int)), "instance_labels"),
])
def test_invalid_arguments_are_reported(call, message):
    with pytest.raises(ValueError, match=message):
        call()
