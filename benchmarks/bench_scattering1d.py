"""Benchmark of the ``scattering1d`` transform (scrapl's ``TimeScattering``).

Measured per configuration (batch of 2 float32 signals, CPU):

* ``full``: :meth:`TimeScattering.forward_full` (orders 0-2, what Kymatio computes);
* ``forward``: all second-order paths (:meth:`TimeScattering.forward`);
* ``path``: one :meth:`TimeScattering.forward_path` call, the median over a spread of
  paths (what one SCRAPL training step computes per signal);
* with ``--kymatio-python`` (a Python that has Kymatio 0.3.0, e.g.
  ``/work/kymenv/bin/python``), Kymatio's ``Scattering1D`` forward on the same
  configuration, run in that interpreter, and the ratios.

Run::

    python benchmarks/bench_scattering1d.py [--threads 2] [--repeat 5] \\
        [--kymatio-python /work/kymenv/bin/python] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

CONFIGS: list[dict] = [
    dict(shape=4096, J=6, Q=8),
    dict(shape=8192, J=8, Q=(12, 2)),
    dict(shape=32768, J=12, Q=(8, 2)),
]

_KYMATIO_SNIPPET = r"""
import json, sys, time, statistics, torch
from kymatio.torch import Scattering1D
cfg, threads, repeat = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
cfg["Q"] = tuple(cfg["Q"]) if isinstance(cfg["Q"], list) else cfg["Q"]
S = Scattering1D(**cfg)
x = torch.randn(2, cfg["shape"], generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    S(x)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter(); S(x); ts.append(time.perf_counter() - t)
print(json.dumps({"full": statistics.median(ts)}))
"""


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench(cfg: dict, repeat: int, threads: int, kymatio_python: str | None) -> dict:
    from scrapl.transforms.scattering1d import TimeScattering

    t0 = time.perf_counter()
    S = TimeScattering(**cfg)
    build_s = time.perf_counter() - t0
    x = torch.randn(2, cfg["shape"], generator=torch.Generator().manual_seed(0))
    res: dict = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                 "n_paths": S.n_paths, "build_s": build_s}
    with torch.no_grad():
        res["full_s"] = median_time(lambda: S.forward_full(x), repeat)
        res["forward_s"] = median_time(lambda: S(x), repeat)
        idx = sorted({0, S.n_paths // 4, S.n_paths // 2, 3 * S.n_paths // 4, S.n_paths - 1})
        res["path_s"] = statistics.median(median_time(lambda i=i: S.forward_path(x, i), repeat) for i in idx)
    res["path_over_full"] = res["path_s"] / res["full_s"]
    if kymatio_python:
        out = subprocess.run(
            [kymatio_python, "-c", _KYMATIO_SNIPPET, json.dumps(res["config"]), str(threads), str(repeat)],
            check=True, capture_output=True, text=True,
        )
        res["kymatio_full_s"] = json.loads(out.stdout.strip().splitlines()[-1])["full"]
        res["full_speedup_vs_kymatio"] = res["kymatio_full_s"] / res["full_s"]
        res["path_speedup_vs_kymatio_full"] = res["kymatio_full_s"] / res["path_s"]
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kymatio-python", default=None, help="interpreter with kymatio 0.3.0 for the comparison")
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--configs", type=int, nargs="*", default=None, help="indices into CONFIGS")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = CONFIGS if args.configs is None else [CONFIGS[i] for i in args.configs]
    results = []
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}")
    for cfg in chosen:
        r = bench(cfg, args.repeat, args.threads, args.kymatio_python)
        results.append(r)
        line = (f"{r['config']}: P={r['n_paths']} build {r['build_s']:.2f}s | full {r['full_s'] * 1e3:.1f} ms, "
                f"forward {r['forward_s'] * 1e3:.1f} ms, one path {r['path_s'] * 1e3:.2f} ms "
                f"(path/full {r['path_over_full']:.4f})")
        if "kymatio_full_s" in r:
            line += (f" | kymatio full {r['kymatio_full_s'] * 1e3:.1f} ms: full x{r['full_speedup_vs_kymatio']:.1f}, "
                     f"path x{r['path_speedup_vs_kymatio_full']:.0f}")
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "results": results}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
