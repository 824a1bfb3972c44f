"""Datasets made from other datasets: a subset of indices, and U-Net's weight maps added to every sample.

Both keep the wrapped dataset's ``num_classes``, ``class_names``, ``palette`` and ``ignore_index`` and
offer ``sample(index, rng)``, the augmented read that ``DataLoader`` calls.
"""

from __future__ import annotations

import numpy as np

_ATTRIBUTES = ("num_classes", "class_names", "palette", "ignore_index")


class Subset:
    """Samples ``indices`` of a dataset (ISBI 2012's 30 slices split 25 / 5 into train / val)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)
        for attribute in _ATTRIBUTES:
            setattr(self, attribute, getattr(dataset, attribute))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def sample(self, index, rng):
        return self.dataset.sample(self.indices[index], rng)


class WithWeightMaps:
    """Adds U-Net's per-pixel weight map (§7.3.4) to each sample of a dataset: (image, mask, weights).

    With instance labels (synthetic cells) it is ``unet_weight_map``; otherwise ``boundary_weight_map`` of
    the semantic mask. Maps are computed once per clean sample and cached; ``sample`` then passes image,
    mask and map through ``transform`` together (``transform(image, mask, rng, weights)``), so an elastic
    deformation or a crop moves the weights with the pixels they belong to.
    """

    def __init__(self, dataset, transform=None):
        self.dataset, self.transform, self._cache = dataset, transform, {}
        for attribute in _ATTRIBUTES:
            setattr(self, attribute, getattr(dataset, attribute))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if index not in self._cache:
            from .. import losses  # not imported by ``import minseg``

            sample = self.dataset[index]
            image, mask = sample[0], sample[1]
            if len(sample) > 2:
                weights = losses.unet_weight_map(sample[2])
            else:
                weights = losses.boundary_weight_map(np.where(mask == self.ignore_index, 0, mask))
            self._cache[index] = (image, mask, np.asarray(weights, dtype=np.float32))
        return self._cache[index]

    def sample(self, index, rng):
        image, mask, weights = self[index]
        if self.transform is not None:
            image, mask, weights = self.transform(image, mask, rng, weights)
        return image.copy(), mask.copy(), weights.copy()
