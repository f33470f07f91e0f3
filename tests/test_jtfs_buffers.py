"""The JTFS work-buffer pool: reuse only once nothing shares a buffer (views, autograd
saves, retain_graph), best fit, thread safety, copies, and the transform with it."""

from __future__ import annotations

import copy
import pickle
import threading

import pytest
import torch

from scrapl.transforms.jtfs import JTFS
from scrapl.transforms.jtfs.buffers import MIN_POOLED_BYTES, BufferPool, _size_class

BIG = MIN_POOLED_BYTES  # floats: four times the pooling threshold in bytes


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_size_classes_are_eight_per_octave() -> None:
    assert [_size_class(n) for n in (1, 16, 17, 100, 1024, 1025, 65537)] == [16, 16, 18, 104, 1024, 1152, 73728]
    for n in range(1, 5000, 7):
        c = _size_class(n)
        assert n <= c <= n * 1.125 + 16


def test_a_released_buffer_is_reused_and_a_used_one_is_not() -> None:
    pool, like = BufferPool(), torch.empty(0)
    a = pool.empty((4, BIG // 4), like)
    ptr = _ptr(a)
    b = pool.empty((4, BIG // 4), like)
    assert _ptr(b) != ptr  # a still in use
    del a
    c = pool.empty((BIG,), like)
    assert _ptr(c) == ptr and c.shape == (BIG,) and c.is_contiguous()
    assert pool.nbytes == 2 * _size_class(BIG) * 4


def test_views_keep_a_buffer_in_use() -> None:
    pool, like = BufferPool(), torch.empty(0)
    a = pool.empty((BIG,), like)
    view = torch.view_as_complex(a.view(-1, 2))[3:]
    ptr = _ptr(a)
    del a
    assert _ptr(pool.empty((BIG,), like)) != ptr
    del view
    assert _ptr(pool.empty((BIG,), like)) == ptr


def test_best_fit_takes_a_free_buffer_up_to_twice_the_size() -> None:
    pool, like = BufferPool(), torch.empty(0)
    big = pool.empty((3 * BIG,), like)
    ptr = _ptr(big)
    del big
    assert _ptr(pool.empty((2 * BIG,), like)) == ptr  # 1.5x: reused (temporary dropped at once)
    assert _ptr(pool.empty((BIG,), like)) != ptr  # 3x: too wasteful, a new one


def test_dtypes_small_sizes_and_accelerators_are_kept_apart() -> None:
    pool = BufferPool()
    f = pool.empty((BIG,), torch.empty(0))
    ptr = _ptr(f)
    del f
    c = pool.empty((BIG,), torch.empty(0), torch.complex64)
    assert c.dtype == torch.complex64 and _ptr(c) != ptr
    small = pool.empty((3,), torch.empty(0))
    assert small.shape == (3,)
    meta = pool.empty((BIG,), torch.empty(0, device="meta"))
    assert meta.device.type == "meta"
    assert pool.nbytes == _size_class(BIG) * 4 + _size_class(BIG) * 8  # neither small nor meta pooled


def test_threads_never_share_a_buffer() -> None:
    pool, like = BufferPool(), torch.empty(0)
    held: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(k: int) -> None:
        try:
            barrier.wait()
            keep = []
            for _ in range(50):
                t = pool.empty((BIG,), like)
                t.fill_(k)
                keep.append(t)
            assert all(bool((t == k).all()) for t in keep)
            held[k] = [_ptr(t) for t in keep]
            barrier.wait()  # keep them until every thread has taken its own
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ptrs = [p for h in held for p in h]
    assert len(ptrs) == len(set(ptrs)) == 200


def test_copies_get_an_empty_pool_and_clear_releases() -> None:
    pool = BufferPool()
    keep = pool.empty((BIG,), torch.empty(0))
    assert copy.deepcopy(pool).nbytes == 0
    assert pickle.loads(pickle.dumps(pool)).nbytes == 0
    pool.clear()
    assert pool.nbytes == 0 and keep.shape == (BIG,)
    assert "MiB" in repr(pool)


@pytest.fixture(scope="module")
def jtfs() -> JTFS:
    return JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)


def test_saved_buffers_survive_other_calls_and_retain_graph(jtfs: JTFS) -> None:
    """Autograd keeps pooled phasors and rows for the backward pass; other calls in
    between (which take buffers) must not overwrite them, also with retain_graph."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4096, generator=g)
    other = torch.randn(2, 4096, generator=g)
    i = jtfs.n_paths // 2
    fresh = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)  # its own pool
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(fresh.forward_path(xr, i).square().sum(), xr)

    xb = x.clone().requires_grad_(True)
    loss = jtfs.forward_path(xb, i).square().sum()
    for j in range(jtfs.n_paths):  # churn the pool while the graph is alive
        o = other.clone().requires_grad_(True)
        jtfs.forward_path(o, j).sum().backward()
    loss.backward(retain_graph=True)
    first = xb.grad.clone()
    for j in range(0, jtfs.n_paths, 3):
        jtfs.forward_path(other, j)
    xb.grad = None
    loss.backward()
    torch.testing.assert_close(first, ref, rtol=0, atol=0)
    torch.testing.assert_close(xb.grad, ref, rtol=0, atol=0)


def test_pool_is_bounded_and_not_part_of_the_state(jtfs: JTFS) -> None:
    x = torch.randn(2, 4096)
    for _ in range(3):
        for j in range(jtfs.n_paths):
            xb = x.clone().requires_grad_(True)
            jtfs.forward_path(xb, j).sum().backward()
    held = jtfs.buffer_pool.nbytes
    for j in range(jtfs.n_paths):  # steady state: nothing new
        xb = x.clone().requires_grad_(True)
        jtfs.forward_path(xb, j).sum().backward()
    assert jtfs.buffer_pool.nbytes == held > 0
    assert "buffer_pool" not in str(list(jtfs.state_dict()))
    clone = copy.deepcopy(jtfs)
    assert clone.buffer_pool.nbytes == 0
    torch.testing.assert_close(clone.forward_path(x, 3), jtfs.forward_path(x, 3), rtol=0, atol=0)


def test_one_module_used_from_several_threads(jtfs: JTFS) -> None:
    """Shared module, concurrent calls (pool, native kernels and per-thread FFT plans):
    every thread gets what a sequential call gives."""
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(2, 4096, generator=g) for _ in range(3)]
    paths = list(range(0, jtfs.n_paths, 4))
    want = {}
    for k, x in enumerate(xs):
        for i in paths:
            xb = x.clone().requires_grad_(True)
            out = jtfs.forward_path(xb, i)
            (gr,) = torch.autograd.grad(out.square().sum(), xb)
            want[k, i] = (out.detach(), gr)
    got: dict = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(xs))

    def work(k: int) -> None:
        try:
            barrier.wait()
            for _ in range(2):
                for i in paths:
                    xb = xs[k].clone().requires_grad_(True)
                    out = jtfs.forward_path(xb, i)
                    (gr,) = torch.autograd.grad(out.square().sum(), xb)
                    got[k, i] = (out.detach(), gr)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for key, (out, gr) in want.items():
        torch.testing.assert_close(got[key][0], out, rtol=0, atol=0)
        torch.testing.assert_close(got[key][1], gr, rtol=0, atol=0)
