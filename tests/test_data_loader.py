"""DataLoader: batching, seeded order, per-sample RNG, resume mid-epoch, prefetching."""

import numpy as np
import pytest

from minseg.data import DataLoader


class Pairs:
    """(image, mask) pairs whose values reveal their index."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return np.full((1, 2, 3), index, np.float32), np.full((2, 3), index, np.int64)


class Augmented(Pairs):
    def sample(self, index, rng):
        image, mask = self[index]
        return image + rng.standard_normal(image.shape).astype(np.float32), mask


def _indices(batches):
    return [batch[1].numpy()[:, 0, 0].tolist() for batch in batches]


def test_batches_stack_images_and_masks():
    batches = list(DataLoader(Pairs(), batch_size=4))
    assert len(batches) == 3
    image, mask = batches[0]
    assert image.shape == (4, 1, 2, 3) and image.dtype == np.float32
    assert mask.shape == (4, 2, 3) and mask.dtype == np.int64
    assert _indices(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_drop_last_and_len():
    loader = DataLoader(Pairs(), batch_size=4, drop_last=True)
    assert len(loader) == 2 and len(list(loader)) == 2


def test_shuffle_is_seeded_and_changes_every_epoch():
    a = DataLoader(Pairs(), batch_size=5, shuffle=True, seed=3)
    b = DataLoader(Pairs(), batch_size=5, shuffle=True, seed=3)
    first, second = _indices(a), _indices(a)
    assert first == _indices(b) and second == _indices(b)
    assert first != second
    assert sorted(sum(first, [])) == list(range(10))
    assert first != _indices(DataLoader(Pairs(), batch_size=5, shuffle=True, seed=4))


def test_resuming_mid_epoch_gives_the_same_batches():
    loader = DataLoader(Augmented(), batch_size=3, shuffle=True, seed=1)
    straight = [batch[0].numpy() for batch in loader.iterate(epoch=2)]
    resumed = [batch[0].numpy() for batch in loader.iterate(epoch=2, start_batch=2)]
    for expected, got in zip(straight[2:], resumed):
        np.testing.assert_array_equal(expected, got)


def test_prefetching_changes_nothing():
    plain = DataLoader(Augmented(), batch_size=3, shuffle=True, seed=5)
    ahead = DataLoader(Augmented(), batch_size=3, shuffle=True, seed=5, prefetch=2)
    for epoch in range(2):
        for x, y in zip(plain.iterate(epoch), ahead.iterate(epoch)):
            np.testing.assert_array_equal(x[0].numpy(), y[0].numpy())


def test_errors_in_a_prefetching_thread_reach_the_caller():
    class Broken(Pairs):
        def __getitem__(self, index):
            if index == 5:
                raise OSError("corrupt file sample_5.png")
            return super().__getitem__(index)

    with pytest.raises(OSError, match="sample_5.png"):
        list(DataLoader(Broken(), batch_size=2, prefetch=2))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size must be a positive int; got 0"):
        DataLoader(Pairs(), batch_size=0)
    with pytest.raises(ValueError, match="same shape"):
        list(DataLoader([np.zeros(2), np.zeros(3)], batch_size=2))
    with pytest.raises(ValueError, match="start_batch"):
        DataLoader(Pairs(), batch_size=4).iterate(0, start_batch=9)
