"""registry: models, datasets and losses by name; the weighted-loss datasets augment like the others."""

import numpy as np
import pytest

from minseg.data import ElasticDeformation
from minseg.app.registry import build_dataset


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weight_maps_keep_the_augmentation_and_move_with_it(seed):
    """With weight maps (the weighted loss of ``minseg demo``) training samples are still elastically
    deformed and flipped exactly as without them, and the weight map goes through the same warp."""
    weighted = build_dataset("cells", "train", size=48, augment=True, weight_maps=True)
    plain = build_dataset("cells", "train", size=48, augment=True)
    assert any(isinstance(t, ElasticDeformation) for t in weighted.transform.transforms)
    image, mask, weights = weighted.sample(3, np.random.default_rng(seed))
    plain_image, plain_mask = plain.sample(3, np.random.default_rng(seed))
    np.testing.assert_array_equal(image, plain_image)
    np.testing.assert_array_equal(mask, plain_mask)
    clean_image, clean_mask, clean_weights = weighted[3]
    assert not np.array_equal(mask, clean_mask) and (mask == 255).any()  # deformed, not merely flipped
    moved = weighted.transform(clean_weights[None], None, np.random.default_rng(seed))[0][0]
    np.testing.assert_array_equal(weights, moved)


def test_validation_samples_are_not_augmented():
    val = build_dataset("cells", "val", size=32, augment=True, weight_maps=True)
    image, mask, weights = val.sample(0, np.random.default_rng(0))
    clean = val[0]
    for got, expected in zip((image, mask, weights), clean):
        np.testing.assert_array_equal(got, expected)


def test_unet_width_is_scaled_like_the_other_models_not_clamped():
    """U-Net's first layer has round(64 · width) channels (at least 1), as ``scale_channels`` gives every
    model; a width of 0 is an error, not silently 4 channels."""
    from minseg.app.registry import build_model

    for width, channels in ((0.25, 16), (0.0625, 4), (0.03, 2), (0.001, 1)):
        first = next(iter(build_model("unet", 1, 2, width).state_dict().values()))
        assert first.shape[0] == channels, width
    with pytest.raises(ValueError, match="width must be positive; got width=0"):
        build_model("unet", 1, 2, 0)
