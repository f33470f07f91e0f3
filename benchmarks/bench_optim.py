"""Benchmark of one optimizer step of the path-aware optimizers.

About 600K weights (an MLP 512-512-512-128, six tensors), gradients filled once
with random values (only ``optimizer.step`` is timed), 2 CPU threads by default.

Compared:
* P-Adam+SAGA with P = 315 (the paper's JTFS) and P = 7: the per-step cost must not
  grow with P (running SAGA sum, one path's rows touched per step); target ratio
  <= 1.5;
* P-Adam+SAGA vs ``torch.optim.Adam`` (foreach) on the same weights; target <= 3x;
* P-Adam, P-SAGA, bfloat16 state, and plain SGD for context.

Every path is drawn once before timing (so all per-path rows exist: the steady
state, and the memory at its maximum); the first-visit cost (row allocation) is
reported separately.  Run::

    python benchmarks/bench_optim.py [--steps 60] [--threads 2] [--clock wall|cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

from scrapl.optim import PAdam, PAdamSAGA, PSAGA


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(512, 512), (512,), (512, 512), (512,), (128, 512), (128,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.05) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return params


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def time_steps(step: Callable[[int], None], paths: list[int]) -> list[float]:
    times = []
    for p in paths:
        t0 = _clock()
        step(p)
        times.append(_clock() - t0)
    return times


def bench_path_opt(cls, n_paths: int, n_steps: int, seed: int, **kw) -> dict:
    params = make_params(seed)
    opt = cls(params, n_paths, lr=1e-4, **kw)
    gen = torch.Generator().manual_seed(seed)
    first = time_steps(lambda p: opt.step(path=p), list(range(n_paths))[: max(1, n_paths)])  # visit every path
    paths = [int(i) for i in torch.randint(0, n_paths, (n_steps,), generator=gen)]
    times = time_steps(lambda p: opt.step(path=p), paths)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "first_visit_median_ms": 1e3 * statistics.median(first),
        "state_bytes": opt.state_bytes(),
        "max_state_bytes": opt.max_state_bytes(),
        "weights": opt.n_weights(),
    }


def bench_torch(factory, n_steps: int, seed: int) -> dict:
    params = make_params(seed)
    opt = factory(params)
    for _ in range(5):
        opt.step()
    times = time_steps(lambda p: opt.step(), list(range(n_steps)))
    return {"median_ms": 1e3 * statistics.median(times), "weights": sum(p.numel() for p in params)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per configuration")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "bench_optim.json"))
    ap.add_argument("--skip-extras", action="store_true", help="only the target comparisons")
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time (default); cpu: process CPU time (all threads summed), "
        "steadier on a busy machine",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCKS[args.clock]

    rows: dict[str, dict] = {}
    rows["torch.optim.Adam (foreach)"] = bench_torch(lambda ps: torch.optim.Adam(ps, lr=1e-4, foreach=True), args.steps, 0)
    rows["P-Adam+SAGA P=7"] = bench_path_opt(PAdamSAGA, 7, args.steps, 0)
    rows["P-Adam+SAGA P=315"] = bench_path_opt(PAdamSAGA, 315, args.steps, 0)
    if not args.skip_extras:
        rows["torch.optim.SGD"] = bench_torch(lambda ps: torch.optim.SGD(ps, lr=1e-4), args.steps, 0)
        rows["P-Adam P=315"] = bench_path_opt(PAdam, 315, args.steps, 0)
        rows["P-SAGA P=315"] = bench_path_opt(PSAGA, 315, args.steps, 0)
        rows["P-Adam+SAGA P=315 bf16 state"] = bench_path_opt(PAdamSAGA, 315, args.steps, 0, state_dtype="bfloat16")

    adam = rows["torch.optim.Adam (foreach)"]["median_ms"]
    p7 = rows["P-Adam+SAGA P=7"]["median_ms"]
    p315 = rows["P-Adam+SAGA P=315"]["median_ms"]
    ratios = {
        "P=315 / P=7 (target <= 1.5)": p315 / p7,
        "P-Adam+SAGA P=315 / torch Adam (target <= 3)": p315 / adam,
    }

    weights = rows["P-Adam+SAGA P=315"]["weights"]
    print(f"optimizer step, {weights:,} weights, {args.threads} threads, {args.clock} clock, median of {args.steps} steps")
    print(f"{'configuration':34s} {'step ms':>9s} {'1st visit ms':>13s} {'state MB now':>13s} {'state MB max':>13s}")
    def fmt(x: float | None, scale: float = 1.0) -> str:
        return "" if x is None else f"{x / scale:.3f}" if scale == 1.0 else f"{x / scale:.1f}"

    for name, r in rows.items():
        print(
            f"{name:34s} {r['median_ms']:9.3f} {fmt(r.get('first_visit_median_ms')):>13s} "
            f"{fmt(r.get('state_bytes'), 1e6):>13s} {fmt(r.get('max_state_bytes'), 1e6):>13s}"
        )
    for name, v in ratios.items():
        print(f"ratio {name}: {v:.2f}")

    result = {
        "benchmark": "bench_optim",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": args.threads,
        "clock": args.clock,
        "steps": args.steps,
        "weights": weights,
        "rows": rows,
        "ratios": ratios,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
