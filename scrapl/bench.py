"""``scrapl bench``: cost of one loss + backward step for SCRAPL, full JTFS and MSS.

For a scrapl config (default :data:`DEFAULT_BENCH_CONFIG`: the demo's 8192-sample
JTFS) and a batch of random signals
``(batch, 1, N)``, it times ``loss(x_hat, x).backward()`` where ``x_hat`` requires
grad:

* ``scrapl``: the distance of one path (``loss.path_distance``), a different random
  path at every repetition; median over the repetitions (paths differ in cost:
  those with a large ``j2`` need more first-order filters); its repetitions and
  MSS's alternate, so that a shared machine's slow phases hit both alike;
* ``jtfs``: the full-tree distance over all ``P`` paths (``loss.full_distance``);
* ``mss``: ``auraloss.freq.MultiResolutionSTFTLoss()``.

Peak memory of one step, warm (FFT plans built) but with the JTFS work-buffer pools
emptied first, so that the pooled buffers the step needs count in full: on CUDA the
allocator's peak (``torch.cuda.max_memory_allocated`` above what was allocated
before); on the CPU the process's peak RSS increase (Linux: freed heap returned to
the OS with ``malloc_trim``, the kernel's peak counter reset through
``/proc/self/clear_refs``, ``VmHWM`` read after the step), which counts every
allocation of the step (torch tensors, the buffer pool, FFT work space).  Elsewhere
the peak of the tensor memory in the torch profiler's memory events (``None`` when
it cannot report it).
"""

from __future__ import annotations

import copy
import ctypes
import re
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import torch

__all__ = ["DEFAULT_BENCH_CONFIG", "default_bench_config", "run_bench", "format_bench", "peak_memory_bytes",
           "rss_peak_bytes"]

#: The configuration ``scrapl bench`` measures by default: the JTFS of ``scrapl demo``
#: (8192 samples, 72 paths; a test keeps the two equal).
DEFAULT_BENCH_CONFIG: dict[str, Any] = {
    "transform": {"name": "jtfs", "shape": 8192, "J": 10, "Q1": 8, "Q2": 1, "J_fr": 3, "Q_fr": 1, "T": 4096, "F": 8},
}


def default_bench_config() -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_BENCH_CONFIG`."""
    return copy.deepcopy(DEFAULT_BENCH_CONFIG)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clear_pools(modules: Sequence[torch.nn.Module]) -> None:
    """Empty the work-buffer pools (``buffer_pool``) of every submodule."""
    for module in modules:
        for m in module.modules():
            pool = getattr(m, "buffer_pool", None)
            if pool is not None:
                pool.clear()


def _proc_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in bytes (Linux ``/proc``)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            m = re.match(r"(VmHWM|VmRSS):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2)) * 1024
    return out


def rss_peak_bytes(fn: Callable[[], Any]) -> int | None:
    """Peak RSS increase of this process while ``fn()`` runs, or ``None`` where the
    kernel's peak counter cannot be reset (not Linux, or no permission)."""
    try:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS
        except (OSError, AttributeError):  # not glibc: the peak may undercount reuse
            pass
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _proc_status()["VmRSS"]
    except (OSError, KeyError):
        return None
    fn()
    return max(0, _proc_status()["VmHWM"] - base)


def _profiler_peak(fn: Callable[[], Any]) -> int | None:
    """Peak of the tensor memory allocated by ``fn()`` per the torch profiler."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - private profiler API: report "unknown" rather than fail
        return None
    cur = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        cur += int(e.nbytes())
        peak = max(peak, cur)
    return peak if events else None


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device,
                      modules: Sequence[torch.nn.Module] = ()) -> int | None:
    """Peak bytes ``fn()`` needs above what was in use before it, or ``None`` if it
    cannot be measured here (see the module docs for the method).

    Args:
        fn: one step (already run once, so that one-off set-up such as FFT plans is
            not counted).
        device: the step's device.
        modules: modules whose JTFS buffer pools are emptied first, so that the
            pooled work buffers count in full.
    """
    _clear_pools(modules)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    if device.type == "cpu":
        peak = rss_peak_bytes(fn)
        if peak is not None:
            return peak
    return _profiler_peak(fn)


def _time_step(step: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - t0


def run_bench(
    scrapl_cfg: Mapping[str, Any],
    *,
    batch_size: int = 4,
    repeats: int = 10,
    full_repeats: int = 1,
    methods: Sequence[str] = ("scrapl", "jtfs", "mss"),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure one loss + backward step of each method.

    Args:
        scrapl_cfg: scrapl config (only the transform and loss settings matter).
        batch_size: signals per batch.
        repeats: timed steps of ``scrapl`` (one random path each) and ``mss``.
        full_repeats: timed steps of ``jtfs`` (the full transform is slow on a CPU).
        methods: subset of ``("scrapl", "jtfs", "mss")``.
        seed: seed of the signals and of the path choice.
        device: ``None``: CUDA if available, else CPU.
        progress: show a tqdm bar.

    Returns:
        JSON-able dict: ``config``, ``batch_size``, ``n_samples``, ``n_paths``,
        ``device``, ``threads``, ``results`` (per method: ``ms_median``, ``ms_min``,
        ``ms_max``, ``repeats``, ``peak_mb``) and ``ratios``.
    """
    import scrapl
    from tqdm.auto import tqdm

    for m in methods:
        if m not in ("scrapl", "jtfs", "mss"):
            raise ValueError(f"methods must be among 'scrapl', 'jtfs', 'mss', got {m!r}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    built = scrapl.build(dict(scrapl_cfg))
    loss = built.loss.to(dev)
    n = built.transform.n_samples
    n_paths = built.transform.n_paths
    g = torch.Generator().manual_seed(seed)
    x_hat = torch.randn(batch_size, 1, n, generator=g).to(dev).requires_grad_(True)
    x = torch.randn(batch_size, 1, n, generator=g).to(dev)
    path_order = torch.randint(0, n_paths, (max(repeats, 1) + 1,), generator=g).tolist()

    def scrapl_step(path: int) -> Callable[[], None]:
        def step() -> None:
            x_hat.grad = None
            loss.path_distance(x_hat, x, path, reduction="mean").backward()

        return step

    def jtfs_step() -> None:
        x_hat.grad = None
        loss.full_distance(x_hat, x, reduction="mean").backward()

    mss_fn = None
    if "mss" in methods:
        from auraloss.freq import MultiResolutionSTFTLoss

        mss_fn = MultiResolutionSTFTLoss().to(dev)

    def mss_step() -> None:
        x_hat.grad = None
        mss_fn(x_hat, x).backward()  # type: ignore[misc]

    # SCRAPL and MSS alternate repetition by repetition, so that a shared machine's
    # slow phases (tens of seconds) hit both alike; the slow full transform runs after.
    times: dict[str, list[float]] = {m: [] for m in methods}
    total = sum({"scrapl": repeats + 1, "jtfs": full_repeats, "mss": repeats + 1}[m] for m in methods)
    bar = tqdm(total=total, desc="bench", disable=not progress, leave=False)
    if "scrapl" in methods:
        scrapl_step(path_order[repeats])()  # warm-up (not timed)
        bar.update(1)
    if "mss" in methods:
        mss_step()
        bar.update(1)
    for i in range(repeats):
        if "scrapl" in methods:
            times["scrapl"].append(_time_step(scrapl_step(path_order[i]), dev))
            bar.update(1)
        if "mss" in methods:
            times["mss"].append(_time_step(mss_step, dev))
            bar.update(1)
    if "jtfs" in methods:
        for _ in range(full_repeats):
            times["jtfs"].append(_time_step(jtfs_step, dev))
            bar.update(1)
    results: dict[str, Any] = {}
    for m in methods:
        if m == "scrapl":
            # the larger peak of the first and the last path (JTFS paths are sorted by
            # temporal scale: the two extremes of the first-order work), each warm
            peaks = []
            for path in sorted({0, n_paths - 1}):
                scrapl_step(path)()
                peaks.append(peak_memory_bytes(scrapl_step(path), dev, (loss,)))
            peak = None if None in peaks else max(peaks)  # type: ignore[type-var]
        elif m == "jtfs":
            peak = peak_memory_bytes(jtfs_step, dev, (loss,))
        else:
            peak = peak_memory_bytes(mss_step, dev, (mss_fn,))
        ms = [1000.0 * t for t in times[m]]
        results[m] = {
            "ms_median": round(statistics.median(ms), 3),
            "ms_min": round(min(ms), 3),
            "ms_max": round(max(ms), 3),
            "repeats": len(ms),
            "peak_mb": None if peak is None else round(peak / 2**20, 2),
        }
    bar.close()
    ratios: dict[str, float] = {}
    if "scrapl" in results and "jtfs" in results:
        ratios["jtfs_time_over_scrapl"] = round(results["jtfs"]["ms_median"] / results["scrapl"]["ms_median"], 2)
        if results["jtfs"]["peak_mb"] and results["scrapl"]["peak_mb"]:
            ratios["jtfs_memory_over_scrapl"] = round(results["jtfs"]["peak_mb"] / results["scrapl"]["peak_mb"], 2)
    if "scrapl" in results and "mss" in results:
        ratios["scrapl_time_over_mss"] = round(results["scrapl"]["ms_median"] / results["mss"]["ms_median"], 2)
    return {
        "config": built.config.to_dict(),
        "batch_size": batch_size,
        "n_samples": n,
        "n_paths": n_paths,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "results": results,
        "ratios": ratios,
    }


def format_bench(result: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`run_bench`'s result."""
    t = result["config"]["transform"]
    desc = ", ".join(f"{k}={t[k]}" for k in ("shape", "J", "Q1", "Q2", "J_fr", "Q_fr", "T", "F") if k in t)
    lines = [
        f"{t.get('name', 'transform')} ({desc}): {result['n_paths']} paths, batch {result['batch_size']}, "
        f"device {result['device']}, {result['threads']} threads",
    ]
    header = ("method", "median_ms", "min_ms", "max_ms", "repeats", "peak_MB")
    rows = []
    labels = {"scrapl": "scrapl (1 path)", "jtfs": "full jtfs", "mss": "mss (auraloss)"}
    for m, r in result["results"].items():
        rows.append(
            (
                labels.get(m, m),
                f"{r['ms_median']:.1f}",
                f"{r['ms_min']:.1f}",
                f"{r['ms_max']:.1f}",
                str(r["repeats"]),
                "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}",
            )
        )
    widths = [max(len(x[i]) for x in (header, *rows)) for i in range(len(header))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for k, v in result.get("ratios", {}).items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)
