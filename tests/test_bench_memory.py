"""`scrapl bench`'s peak memory counts the JTFS buffer pool (not only the
allocations a warm pool no longer makes); its SCRAPL and MSS repetitions alternate."""

from __future__ import annotations

import pytest
import torch

from scrapl import bench
from scrapl.transforms.jtfs import JTFS

CPU = torch.device("cpu")


def _step(jtfs: JTFS, x: torch.Tensor, i: int):
    def step() -> None:
        x.grad = None
        jtfs.forward_path(x, i).square().sum().backward()

    return step


@pytest.mark.parametrize("route", ["rss", "profiler"])
def test_peak_memory_includes_the_pool(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if route == "profiler":  # the fallback where /proc's peak counter is unavailable
        monkeypatch.setattr(bench, "rss_peak_bytes", lambda fn: None)
    jtfs = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
    x = torch.randn(8, 4096, generator=torch.Generator().manual_seed(0), requires_grad=True)
    step = _step(jtfs, x, jtfs.n_paths - 1)
    step()  # warm: the pool now holds the step's work buffers
    warm = jtfs.buffer_pool.nbytes
    assert warm > 1 << 20
    peak = bench.peak_memory_bytes(step, CPU, (jtfs,))
    if route == "rss" and peak is None:
        pytest.skip("the kernel's peak-RSS counter cannot be reset here")
    assert peak is not None
    # the pool was emptied and refilled by the measured step, which counts it: all of
    # it on the profiler's route (allocated bytes), on the RSS route the pages the
    # step touched (the pool rounds requests up by at most 1/8, to eight size classes
    # per octave, and a buffer's untouched tail is never resident)
    assert jtfs.buffer_pool.nbytes == warm
    assert peak >= (warm if route == "profiler" else 0.875 * warm)


def test_peak_memory_without_modules_sees_a_warm_pool_only() -> None:
    """The difference the pool makes: left warm, its buffers are not allocated again
    (what the profiler-only measurement reported before)."""
    jtfs = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
    x = torch.randn(8, 4096, generator=torch.Generator().manual_seed(0), requires_grad=True)
    step = _step(jtfs, x, jtfs.n_paths - 1)
    step()
    warm = bench._profiler_peak(step)
    cold = bench.peak_memory_bytes(step, CPU, (jtfs,))
    assert warm is not None and cold is not None
    # warm: only what the pool does not serve; cold: the pool emptied and refilled, on
    # the RSS route only the pages the step touched (at least 7/8 of the pool, see
    # test_peak_memory_includes_the_pool: 0.99-1.02 of it measured, so not always all)
    assert warm < 0.875 * jtfs.buffer_pool.nbytes <= cold


def test_run_bench_reports_the_pooled_peak() -> None:
    import scrapl

    cfg = {"transform": {"name": "jtfs", "shape": 4096, "J": 6, "Q1": 8, "Q2": 1, "J_fr": 2, "Q_fr": 1}}
    res = bench.run_bench(cfg, batch_size=8, repeats=1, methods=("scrapl", "mss"), progress=False, device="cpu")
    # the pool that the same loss step on the last path fills, from empty
    loss = scrapl.build(cfg).loss
    x_hat = torch.randn(8, 1, 4096, requires_grad=True)
    loss.path_distance(x_hat, torch.randn(8, 1, 4096), loss.transform.n_paths - 1, reduction="mean").backward()
    pool = loss.transform.buffer_pool.nbytes
    assert pool > 1 << 20
    assert res["results"]["scrapl"]["peak_mb"] * 2**20 >= pool
    assert res["results"]["mss"]["peak_mb"] > 0


def test_run_bench_alternates_scrapl_and_mss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timed steps run SCRAPL, MSS, SCRAPL, MSS, ... and the full transform last,
    so that a shared machine's slow phases hit SCRAPL and MSS alike."""
    order: list[str] = []
    monkeypatch.setattr(bench, "peak_memory_bytes", lambda fn, dev, mods: 1 << 20)

    def timed(step, dev) -> float:
        order.append(next(m for m in ("scrapl", "jtfs", "mss") if f"{m}_step" in step.__qualname__))
        step()
        return 0.001

    monkeypatch.setattr(bench, "_time_step", timed)
    cfg = {"transform": {"name": "jtfs", "shape": 4096, "J": 6, "Q1": 8, "Q2": 1, "J_fr": 2, "Q_fr": 1}}
    res = bench.run_bench(cfg, batch_size=1, repeats=3, methods=("scrapl", "jtfs", "mss"), progress=False,
                          device="cpu")
    assert order == ["scrapl", "mss"] * 3 + ["jtfs"]
    assert list(res["results"]) == ["scrapl", "jtfs", "mss"]
    assert [res["results"][m]["repeats"] for m in ("scrapl", "jtfs", "mss")] == [3, 1, 3]
