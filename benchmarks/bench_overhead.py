"""Fixed per-call cost of the one-path SCRAPL step, against auraloss's MSS.

A step's time at batch ``B`` is close to affine, ``t(B) = a + b * B``: ``a`` is what a
call costs whatever its data (Python, dispatch, autograd bookkeeping, validation,
buffer and plan lookups), ``b`` the work per example (FFTs, products).  For each
configuration this script times ``SCRAPLLoss(...)(x, x_target, path_idx=i)
.backward()`` and ``auraloss.freq.MultiResolutionSTFTLoss()`` forward + backward at
batches 1, 2, 4 and 8, on the same paths as ``bench_matrix.py`` (one seeded path
per ``n2`` stratum, weighted by the stratum's size: the expectation over uniform
paths), alternating sides and batches repetition by repetition and keeping the
fastest repetition; then fits ``a`` and ``b`` by least squares per path and reports
their expectations, and ``a / t(1)``, the share of a batch-1 step that is fixed cost.

It also counts, per step on the middle one of these paths at batch 1 (deterministic, unlike the
times): the torch operator calls (``torch.profiler``, every ``aten::`` op and
autograd Function), and the Python function calls (``cProfile``).

Configurations: ``small`` (1024 samples, J=6, Q=(8, 1), J_fr=3, Q_fr=1: almost all
fixed cost), ``demo`` (``configs/demo.yaml``) and ``paper`` (32768 samples).  MSS
has auraloss's default resolutions (FFT sizes 1024, 2048, 512), a quarter of them on
``small`` (256, 512, 128, hops and windows scaled alike: its reflection padding needs
signals longer than half the largest FFT).

Run (nothing else on the machine)::

    python benchmarks/bench_overhead.py [--configs small,demo,paper] [--repeat 7]
        [--threads 2] [--json benchmarks/results/bench_overhead.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from typing import Callable

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_jtfs import _inputs  # noqa: E402
from bench_matrix import _summary, configurations, stratified_paths  # noqa: E402

SMALL = {"shape": 1024, "J": 6, "Q1": 8, "Q2": 1, "J_fr": 3, "Q_fr": 1, "T": None, "F": None}
#: auraloss's default resolutions, and a quarter of them for signals under 2048 samples.
MSS_DEFAULT = {"fft_sizes": [1024, 2048, 512], "hop_sizes": [120, 240, 50], "win_lengths": [600, 1200, 240]}
MSS_QUARTER = {"fft_sizes": [256, 512, 128], "hop_sizes": [30, 60, 12], "win_lengths": [150, 300, 60]}
BATCHES = (1, 2, 3, 4)


def _fit(batches: tuple[int, ...], times: list[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``t = a + b * B``."""
    n = len(batches)
    mb, mt = sum(batches) / n, sum(times) / n
    b = sum((x - mb) * (t - mt) for x, t in zip(batches, times)) / sum((x - mb) ** 2 for x in batches)
    return mt - b * mb, b


def _counts(step: Callable[[], None]) -> dict[str, int]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = sum(e.count for e in prof.key_averages())
    pr = cProfile.Profile()
    pr.enable()
    step()
    pr.disable()
    calls = sum(v[1] for v in pstats.Stats(pr).stats.values())  # type: ignore[attr-defined]
    return {"torch_ops": ops, "python_calls": calls}


def run_config(name: str, tcfg: dict, lcfg: dict, args: argparse.Namespace) -> dict:
    from auraloss.freq import MultiResolutionSTFTLoss

    from scrapl import SCRAPLLoss

    mss_kw = MSS_DEFAULT if tcfg["shape"] >= 2048 else MSS_QUARTER
    mss = MultiResolutionSTFTLoss(**mss_kw)
    loss = SCRAPLLoss(**tcfg, **lcfg)
    paths, weights = stratified_paths([tuple(k) for k in loss.paths], args.strata, args.seed)
    inputs = {b: _inputs(b, tcfg["shape"], args.seed + 1) for b in BATCHES}

    def ours(i: int, b: int) -> Callable[[], None]:
        x0, xt = inputs[b]

        def run() -> None:
            loss(x0.clone().requires_grad_(True), xt, path_idx=i).backward()

        return run

    def peer(b: int) -> Callable[[], None]:
        x0, xt = inputs[b]

        def run() -> None:
            mss(x0.clone().requires_grad_(True), xt).backward()

        return run

    def timed(fn: Callable[[], None]) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    best: dict[tuple[str, int, int], float] = {}
    for b in BATCHES:  # warm-up: plans, pools
        peer(b)()
        for i in paths:
            ours(i, b)()
    for _ in range(args.repeat):
        for b in BATCHES:
            key = ("mss", -1, b)
            best[key] = min(best.get(key, float("inf")), timed(peer(b)))
            for i in paths:
                key = ("ours", i, b)
                best[key] = min(best.get(key, float("inf")), timed(ours(i, b)))
    fits = [_fit(BATCHES, [best[("ours", i, b)] for b in BATCHES]) for i in paths]
    t1 = [best[("ours", i, 1)] for i in paths]
    a_mss, b_mss = _fit(BATCHES, [best[("mss", -1, b)] for b in BATCHES])
    med = len(paths) // 2  # a fixed path: the counts do not depend on timing noise
    out = {
        "config": name, "transform": tcfg, "mss": mss_kw, "paths": paths, "weights": weights,
        "times": {f"{side}/{i}/{b}": v for (side, i, b), v in best.items()},
        "ours": {"fixed": _summary([a for a, _ in fits], weights)["expected"],
                 "per_example": _summary([b for _, b in fits], weights)["expected"],
                 "batch1": _summary(t1, weights)["expected"]},
        "mss": {"fixed": a_mss, "per_example": b_mss, "batch1": best[("mss", -1, 1)]},
        "counts_path": paths[med],
        "counts": _counts(ours(paths[med], 1)),
    }
    out["ours"]["fixed_share"] = out["ours"]["fixed"] / out["ours"]["batch1"]
    out["mss"]["fixed_share"] = a_mss / out["mss"]["batch1"]
    return out


def _table(rows: list[dict]) -> str:
    lines = ["| config | SCRAPL fixed (ms) | SCRAPL per example (ms) | fixed share at batch 1 | MSS fixed (ms) "
             "| MSS per example (ms) | torch ops / step | Python calls / step |", "|" + "---|" * 8]
    for r in rows:
        o, m = r["ours"], r["mss"]
        lines.append(f"| {r['config']} | {o['fixed'] * 1e3:.2f} | {o['per_example'] * 1e3:.2f} | "
                     f"{o['fixed_share']:.0%} | {m['fixed'] * 1e3:.2f} | {m['per_example'] * 1e3:.2f} | "
                     f"{r['counts']['torch_ops']} | {r['counts']['python_calls']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="small,demo,paper")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--strata", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bench_overhead.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    confs = {"small": (dict(SMALL), {}), **configurations()}
    rows = []
    for name in args.configs.split(","):
        if name not in confs:
            raise SystemExit(f"unknown configuration {name!r}; choose from {sorted(confs)}")
        tcfg, lcfg = confs[name]
        rows.append(run_config(name, tcfg, lcfg, args))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(_table(rows))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
            "cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
            "load_average": list(os.getloadavg()), "repeat": args.repeat, "configs": rows}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
