"""Host threads (minseg.core.threads): chunks cover the work once, in order, with BLAS on one thread."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import minseg
import minseg.functional as F
from minseg.core import threads


@pytest.fixture
def two_threads():
    before = threads.get_num_threads()
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(before)


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_chunks_cover_the_range_once_in_order_on_two_threads(two_threads):
    seen, workers = [], set()

    def task(start, stop):
        seen.append((start, stop))
        workers.add(threading.get_ident())
        return list(range(start, stop)), _blas_threads()

    results = threads.split_work(task, 11, np.zeros(1))
    assert [r[0] for r in results] == [list(range(0, 5)), list(range(5, 11))]
    assert sorted(seen) == [(0, 5), (5, 11)] and len(workers) == 2
    assert all(set(r[1]) == {1} for r in results)        # BLAS held to one thread inside the chunks


def test_one_call_when_there_is_too_little_work_or_no_host_array(two_threads):
    calls = []
    threads.split_work(lambda a, b: calls.append((a, b)), 3, np.zeros(1), grain=2)
    threads.split_work(lambda a, b: calls.append((a, b)), 8, [0.0])   # not a NumPy array: a GPU's, say
    threads.split_work(lambda a, b: calls.append((a, b)), 0, np.zeros(1))
    assert calls == [(0, 3), (0, 8), (0, 0)]


def test_work_too_small_to_share_still_runs_blas_on_one_thread(two_threads):
    """A one-chunk split on the host (a conv with a single tile) keeps BLAS's own threads asleep: woken for
    a small GEMM they would spin on and slow the next split's host threads."""
    (inside,) = threads.split_work(lambda a, b: _blas_threads(), 1, np.zeros(1))
    assert set(inside) == {1}
    before = _blas_threads()
    (elsewhere,) = threads.split_work(lambda a, b: _blas_threads(), 1, [0.0])   # not a host array
    assert elsewhere == before


def test_rowwise_blocks_cover_each_chunk_in_cache_sized_pieces(two_threads, monkeypatch):
    """block_bytes cuts each thread's chunk into pieces of at most that many bytes of ``out``, in order."""
    monkeypatch.setattr(threads, "ROWWISE_BYTES", 1)
    out, source = np.zeros((10, 4)), np.arange(40.0).reshape(10, 4)
    pieces = []

    def double(o, x):
        pieces.append(len(o))
        o[...] = 2 * x

    threads.rowwise(double, out, source, block_bytes=3 * out[0].nbytes)
    np.testing.assert_array_equal(out, 2 * source)
    assert sorted(pieces) == [2, 2, 3, 3] and max(pieces) * out[0].nbytes <= 3 * out[0].nbytes


def test_a_split_inside_a_chunk_runs_as_one_chunk(two_threads):
    """No deadlock and no second BLAS limit: the nested call does its whole range itself."""
    inner = []

    def outer(start, stop):
        return threads.split_work(lambda a, b: inner.append((a, b)) or (a, b), 6, np.zeros(1))

    assert threads.split_work(outer, 2, np.zeros(1)) == [[(0, 6)], [(0, 6)]]
    assert sorted(inner) == [(0, 6), (0, 6)]


def test_thread_count_from_the_environment(monkeypatch):
    before = threads.get_num_threads()
    try:
        monkeypatch.setenv("MINSEG_NUM_THREADS", "3")
        monkeypatch.setattr(threads, "_threads", None)
        assert threads.get_num_threads() == 3
        monkeypatch.delenv("MINSEG_NUM_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        monkeypatch.setattr(threads, "_threads", None)
        assert threads.get_num_threads() == 1
    finally:
        threads.set_num_threads(before)


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_set_num_threads_names_a_bad_count(count):
    with pytest.raises(ValueError, match="set_num_threads: count must be a positive int"):
        threads.set_num_threads(count)


def test_a_conv_gives_the_same_numbers_on_one_thread_and_on_two(monkeypatch, rng):
    """The tiles are shared out over the threads; only the order of the weight gradient's sum changes."""
    import minseg.functional.windows as windows_module

    monkeypatch.setattr(windows_module, "TILE_BYTES", 1)
    monkeypatch.setattr(windows_module, "MIN_TILE_COLUMNS", 1)
    x, w = rng.standard_normal((3, 4, 9, 8)), rng.standard_normal((5, 4, 3, 3))
    g = rng.standard_normal((3, 5, 9, 8))
    results = []
    before = threads.get_num_threads()
    try:
        for count in (1, 2):
            threads.set_num_threads(count)
            xt, wt = minseg.tensor(x, requires_grad=True), minseg.tensor(w, requires_grad=True)
            y = F.conv2d(xt, wt, padding=1)
            y.backward(minseg.tensor(g))
            results.append((y.numpy(), xt.grad.numpy(), wt.grad.numpy()))
    finally:
        threads.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-12)
