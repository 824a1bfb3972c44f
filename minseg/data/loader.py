"""``DataLoader``: batches from an indexable dataset, reproducible by seed, with optional prefetching.

Reproducibility is by construction rather than by shared state: the order of epoch ``e`` is a
permutation drawn from ``default_rng([seed, e])``, and a dataset that augments at random gets its own
generator per sample, ``default_rng([seed, e, index])``, through ``dataset.sample(index, rng)``. So
batch ``b`` of epoch ``e`` is the same whether it is reached by training straight through or by
resuming there (``loader.iterate(epoch, start_batch=b)``), and a prefetching thread changes nothing.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from ..core.autograd import Tensor


def default_collate(samples):
    """Stack a list of samples into a batch: tuples/lists field by field, dicts key by key, arrays with
    ``np.stack``, numbers into an array. Returns minseg tensors (uncast: images keep their float dtype,
    masks their integer dtype)."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([sample[i] for sample in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: default_collate([sample[key] for sample in samples]) for key in first}
    arrays = [s.numpy() if isinstance(s, Tensor) else np.asarray(s) for s in samples]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"collate: samples in one batch must have the same shape; got {sorted(shapes)}")
    return Tensor(np.stack(arrays))


def _to_device(batch, device):
    if device is None:
        return batch
    if isinstance(batch, tuple):
        return tuple(_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: _to_device(item, device) for key, item in batch.items()}
    return batch.to(device) if isinstance(batch, Tensor) else batch


class DataLoader:
    """Iterate over ``dataset`` in batches.

    dataset:     anything with ``__len__`` and ``__getitem__``; if it also has ``sample(index, rng)`` that is
                 called instead, with a generator private to (seed, epoch, index) for random augmentation.
    batch_size:  samples per batch; ``drop_last`` drops a final smaller batch.
    shuffle:     a new permutation each epoch, drawn from (seed, epoch).
    prefetch:    how many batches a background thread prepares ahead (0 = load in the caller's thread).
    device:      move each batch there (``"cuda"``) after collation.

    ``for batch in loader`` runs the next epoch (``loader.epoch`` counts them); ``iterate(epoch, start_batch)``
    runs a given epoch from a given batch, which is how training resumes mid-epoch.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, prefetch: int = 0, collate_fn=default_collate, device=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int; got {batch_size!r}")
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be a non-negative int; got {prefetch!r}")
        if len(dataset) == 0:
            raise ValueError("DataLoader: the dataset is empty")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.seed, self.prefetch, self.collate_fn, self.device = seed, prefetch, collate_fn, device
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in the order they are served."""
        count = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(count) if self.shuffle else np.arange(count)

    def _load(self, epoch: int, indices):
        if hasattr(self.dataset, "sample"):
            samples = [self.dataset.sample(int(i), np.random.default_rng([self.seed, epoch, int(i)])) for i in indices]
        else:
            samples = [self.dataset[int(i)] for i in indices]
        return _to_device(self.collate_fn(samples), self.device)

    def _batches(self, epoch: int, start_batch: int):
        order = self.order(epoch)
        for b in range(start_batch, len(self)):
            yield self._load(epoch, order[b * self.batch_size:(b + 1) * self.batch_size])

    def iterate(self, epoch: int, start_batch: int = 0):
        """Batches ``start_batch, start_batch + 1, …`` of ``epoch``."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"DataLoader.iterate: start_batch must be in [0, {len(self)}]; got {start_batch}")
        batches = self._batches(epoch, start_batch)
        return _prefetched(batches, self.prefetch) if self.prefetch else batches

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iterate(epoch)


_DONE = object()


def _prefetched(batches, depth: int):
    """Run the ``batches`` generator in a daemon thread, ``depth`` batches ahead; re-raise its errors here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        ready.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_DONE)
        except BaseException as error:  # hand any failure to the consumer
            ready.put(error)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
