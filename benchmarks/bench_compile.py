"""A training step with the loss inside ``torch.compile``, against the same step eagerly.

For each configuration the script builds the loss with ``scrapl.build`` (uniform
paths, seeded) and runs ``loss(x, y).backward()`` (then ``loss.consume_path()``, as
the path-aware optimizers do, so each step draws a new path) in groups of
``--steps`` steps, ``--groups`` groups per side: eagerly, then as a function
compiled with ``torch.compile`` (default backend, inductor).  The first compiled group
includes the compilation; the later groups show the steady state.  A side that
raises is reported with its error.  Times are wall clock; the eager side runs first,
in the same process.

The loss, its backward and the optimizers' ``step`` run eagerly inside compiled
regions (see docs/best_practices.md); this script is how the numbers there were
measured (on the code before and after that change).

Run (nothing else on the machine)::

    python benchmarks/bench_compile.py [--steps 15] [--groups 3] [--threads 2]
        [--json benchmarks/results/bench_compile.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings

import torch

import scrapl

HERE = os.path.dirname(os.path.abspath(__file__))
#: name -> (transform config, batch shape): the demo's JTFS, a short JTFS, Scattering1D, Scattering2D.
CONFIGS: dict[str, tuple[dict, tuple[int, ...]]] = {
    "jtfs_demo": ({"name": "jtfs", "shape": 8192, "J": 10, "Q1": 8, "Q2": 1, "J_fr": 3, "Q_fr": 1, "T": 4096,
                   "F": 8}, (4, 1, 8192)),
    "jtfs_2048": ({"name": "jtfs", "shape": 2048, "J": 8, "Q1": 4, "Q2": 1, "J_fr": 2, "Q_fr": 1}, (2, 1, 2048)),
    "scattering1d": ({"name": "scattering1d", "shape": 8192, "J": 8, "Q": 8}, (4, 1, 8192)),
    "scattering2d": ({"name": "scattering2d", "shape": [64, 64], "J": 3, "L": 8}, (4, 1, 64, 64)),
}


def run_side(transform: dict, shape: tuple[int, ...], compiled: bool, steps: int, groups: int) -> dict:
    """Seconds per group of ``steps`` steps (``{"groups": [...]}``), or ``{"error": ...}``."""
    torch._dynamo.reset()
    loss = scrapl.build({"transform": transform, "seed": 1}).loss
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).requires_grad_(True)
    y = torch.randn(*shape, generator=gen)

    def step(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        value = loss(a, b)
        value.backward()
        return value

    fn = torch.compile(step) if compiled else step
    times = []
    try:
        for _ in range(groups):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn(x, y)
                loss.consume_path()
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # reported, not raised: a failing side is a result
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]}
    return {"groups": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of CONFIGS")
    ap.add_argument("--steps", type=int, default=15, help="steps per group")
    ap.add_argument("--groups", type=int, default=3, help="groups per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bench_compile.json"))
    args = ap.parse_args()
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch._logging.set_logs(dynamo=logging.CRITICAL)
    rows = {}
    print(f"{'config':<14} {'side':<9} seconds per {args.steps} steps, group by group")
    for name in names:
        transform, shape = CONFIGS[name]
        rows[name] = {}
        for side in ("eager", "compiled"):
            res = run_side(transform, shape, side == "compiled", args.steps, args.groups)
            rows[name][side] = res
            shown = res["error"] if "error" in res else "  ".join(f"{t:7.2f}" for t in res["groups"])
            print(f"{name:<14} {side:<9} {shown}", flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
            "cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__, "steps": args.steps,
            "configs": {n: {"transform": CONFIGS[n][0], "batch_shape": CONFIGS[n][1]} for n in names},
            "results": rows}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
