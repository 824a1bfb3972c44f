"""Host threads for the memory-bound passes: column builds, elementwise ops, reductions.

BLAS runs a GEMM on every core, but NumPy runs a copy or a ufunc on one; on a 2-core machine that
leaves half the machine idle for a third of a training step. NumPy releases the GIL inside its copy
and ufunc loops, so splitting such a pass into contiguous chunks, one per thread, runs them at once.
On a GPU the device is already parallel: ``split_work`` then makes a single call.

The thread count follows the same settings as BLAS and PyTorch: ``set_num_threads(n)``, else the
first of ``MINSEG_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` that is set, else the
cores this process may run on.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from .backend import get_array_module

ROWWISE_BYTES = 2**20

_threads = None
_pool = None
_blas = None
_splitting = threading.Lock()


def _from_environment() -> int:
    for name in ("MINSEG_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def get_num_threads() -> int:
    """How many host threads ``split_work`` uses (like ``torch.get_num_threads``)."""
    global _threads
    if _threads is None:
        _threads = _from_environment()
    return _threads


def set_num_threads(count: int) -> None:
    """Use ``count`` host threads from now on (like ``torch.set_num_threads``; BLAS keeps its own setting)."""
    global _threads, _pool
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"set_num_threads: count must be a positive int; got {count!r}")
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = int(count)


def split_work(task, count: int, array, grain: int = 1) -> list:
    """Run ``task(start, stop)`` over ``[0, count)`` in contiguous chunks of at least ``grain`` items, one
    chunk per host thread, when ``array`` is a NumPy array (else one call: a GPU needs no host threads).
    Returns the chunks' results in order.

    The chunks must write disjoint memory; the calling thread runs the first one itself. While they run,
    BLAS is held to one thread: the chunks already fill the cores, and a GEMM inside one that woke BLAS's
    own threads would fight them for the same cores. So it is for work too small to share."""
    global _pool
    host = isinstance(array, np.ndarray) and get_num_threads() > 1
    chunks = min(get_num_threads(), count // max(1, grain)) if host else 1
    # one split at a time: a call from inside a chunk, or from another thread meanwhile, runs as one chunk
    if not _splitting.acquire(blocking=False):
        return [task(0, count)]
    if chunks <= 1:
        # too little work to share, and too little for BLAS's threads too: woken for a small GEMM, they
        # spin on for a while afterwards and slow the host threads of the next split (a DeepLab v3+ step
        # ran about a tenth faster once these GEMMs stopped waking them)
        try:
            if not host:
                return [task(0, count)]
            with _one_blas_thread():
                return [task(0, count)]
        finally:
            _splitting.release()
    try:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=get_num_threads() - 1, thread_name_prefix="minseg")
        bounds = [count * k // chunks for k in range(chunks + 1)]
        with _one_blas_thread():
            futures = [_pool.submit(task, bounds[k], bounds[k + 1]) for k in range(1, chunks)]
            results = [task(bounds[0], bounds[1])]
            results += [future.result() for future in futures]
        return results
    finally:
        _splitting.release()


def rowwise(compute, out, *arrays, block_bytes=None):
    """``compute(out[a:b], *(x[a:b] for x in arrays))`` over chunks of the first axis, one per host thread
    (one call for arrays under ``ROWWISE_BYTES``, 0-d ones, and GPU arrays). ``compute`` writes its chunk
    of ``out``, in as many in-place passes as it needs. With ``block_bytes`` a NumPy chunk is cut further
    into blocks of about that many bytes of ``out``, one call each, so that those passes run in cache."""
    step = None
    if block_bytes is not None and isinstance(out, np.ndarray) and out.ndim and len(out):
        step = max(1, block_bytes // max(1, out[0].nbytes))

    def chunk(a, b):
        for start in range(a, b, step or max(1, b - a)):
            stop = min(b, start + (step or b))
            compute(out[start:stop], *(x[start:stop] for x in arrays))

    if out.ndim == 0:
        compute(out, *arrays)
    elif out.nbytes < ROWWISE_BYTES:
        chunk(0, out.shape[0])
    else:
        split_work(chunk, out.shape[0], out)
    return out


def elementwise(ufunc, a, b):
    """``ufunc(a, b)`` into a new array, chunked over the first axis by ``rowwise`` when both are float
    arrays of one shape and dtype (then the result has that dtype too); else a plain call."""
    same = getattr(a, "shape", None) == getattr(b, "shape", None) and getattr(a, "dtype", None) == getattr(b, "dtype", 0)
    if not same or a.dtype.kind != "f" or a.ndim == 0:
        return ufunc(a, b)
    out = get_array_module(a).empty(a.shape, dtype=a.dtype)
    return rowwise(lambda o, x, y: ufunc(x, y, out=o), out, a, b)


def _one_blas_thread():
    """A context in which the BLAS libraries NumPy and SciPy loaded run each call on one thread."""
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")
