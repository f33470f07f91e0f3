"""Benchmark of the ``scattering2d`` transform (scrapl's ``ImageScattering``).

Setting: batch 8 of one-channel float32 128 x 128 images, J=3, L=8 (192 paths), the
loss built by ``scrapl.build`` (L2 distance per path).  Measured in one run,
interleaved round by round (the machine may be shared):

* ``path``: one SCRAPL step, ``loss(x, x_target, path_idx=i)`` + backward, the mean
  over 12 evenly spaced paths of the per-path median (the expected cost of a step
  under uniform sampling);
* ``full``: the full-tree distance ``loss.full_distance(x, x_target)`` (every path
  through :meth:`ImageScattering.forward`) + backward;
* ``ours_kymatio_op``: what Kymatio computes, orders 0-2
  (:meth:`ImageScattering.forward_full`), forward + backward of
  ``mean ||S(x) - S(x_target)||_2`` over channels (``S(x_target)`` precomputed);
* with ``--kymatio-python`` (an interpreter with Kymatio 0.3.0, e.g.
  ``/tmp/ref_s2d/bin/python``): the same operation with Kymatio's ``Scattering2D``
  in a worker process (``_s2d_ref_worker.py``) on the same inputs.

Ratios: ``full / path`` and ``kymatio / ours_kymatio_op`` per round; the summary
gives their median and range over rounds.

Run::

    python benchmarks/bench_scattering2d.py [--threads 2] [--repeat 3] [--rounds 3] \\
        [--kymatio-python /tmp/ref_s2d/bin/python] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

WORKER = str(Path(__file__).with_name("_s2d_ref_worker.py"))
SETTING = {"J": 3, "L": 8, "shape": [128, 128], "batch": 8, "seed": 0}


def times(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> list[float]:
    ts = []
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return ts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per measurement (median taken)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--n-paths", type=int, default=12, help="paths timed for the one-path step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kymatio-python", default=None, help="interpreter with kymatio 0.3.0 for the comparison")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args(argv)

    import scrapl

    torch.set_num_threads(args.threads)
    dev = args.device
    cuda = dev.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    c = SETTING
    M, N = c["shape"]
    t0 = time.perf_counter()
    built = scrapl.build({"transform": {"name": "scattering2d", "shape": c["shape"], "J": c["J"], "L": c["L"]},
                          "sampler": "uniform"})
    build_s = time.perf_counter() - t0
    loss, S = built.loss.to(dev), built.transform.to(dev)
    g = torch.Generator().manual_seed(c["seed"])
    xt = torch.randn(c["batch"], 1, M, N, generator=g).to(dev)
    x0 = torch.randn(c["batch"], 1, M, N, generator=g).to(dev)
    P = S.n_paths
    sel = sorted({round(k * (P - 1) / (args.n_paths - 1)) for k in range(args.n_paths)})
    with torch.no_grad():
        st_full = S.forward_full(xt)

    def path_step(i: int) -> None:
        x = x0.clone().requires_grad_(True)
        loss(x, xt, path_idx=i).backward()

    def full_step() -> None:
        x = x0.clone().requires_grad_(True)
        loss.full_distance(x, xt).backward()

    def kym_op() -> None:
        x = x0.clone().requires_grad_(True)
        torch.linalg.vector_norm(S.forward_full(x) - st_full, dim=(-2, -1)).mean().backward()

    server = None
    if args.kymatio_python:
        spec = {**c, "threads": args.threads, "repeat": args.repeat, "device": dev}
        server = subprocess.Popen([args.kymatio_python, WORKER, json.dumps(spec)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        hello = json.loads(server.stdout.readline())
        if hello.get("ready") is not True or hello["out_shape"] != list(st_full.shape):  # pragma: no cover
            raise RuntimeError(f"kymatio worker did not start as expected: {hello}")

    path_step(sel[0]), full_step(), kym_op()  # warm-up
    rounds = []
    for r in range(args.rounds):
        row: dict = {}
        row["path_s"] = statistics.mean(statistics.median(times(lambda i=i: path_step(i), args.repeat, sync))
                                        for i in sel)
        row["full_s"] = statistics.median(times(full_step, args.repeat, sync))
        row["ours_kymatio_op_s"] = statistics.median(times(kym_op, args.repeat, sync))
        if server is not None:
            server.stdin.write(json.dumps({"op": "fwd_bwd"}) + "\n")
            server.stdin.flush()
            row["kymatio_s"] = statistics.median(json.loads(server.stdout.readline())["times"])
            row["kymatio_over_ours"] = row["kymatio_s"] / row["ours_kymatio_op_s"]
        row["full_over_path"] = row["full_s"] / row["path_s"]
        rounds.append(row)
        line = (f"round {r}: one path {row['path_s'] * 1e3:.1f} ms, full {row['full_s'] * 1e3:.0f} ms "
                f"(x{row['full_over_path']:.1f}), orders 0-2 {row['ours_kymatio_op_s'] * 1e3:.0f} ms")
        if "kymatio_s" in row:
            line += f", kymatio {row['kymatio_s'] * 1e3:.0f} ms (ours x{row['kymatio_over_ours']:.2f} faster)"
        print(line, flush=True)
    if server is not None:
        server.stdin.write("\n")
        server.stdin.flush()
        server.wait(timeout=60)

    def summary(key: str) -> dict:
        vals = [row[key] for row in rounds]
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}

    res = {
        "setting": c, "n_paths": P, "paths_timed": sel, "threads": args.threads, "device": dev,
        "repeat": args.repeat, "torch": str(torch.__version__), "machine": platform.machine(),
        "processor": platform.processor(), "build_s": build_s, "rounds": rounds,
        "full_over_path": summary("full_over_path"),
    }
    if server is not None:
        res["kymatio_over_ours"] = summary("kymatio_over_ours")
    f = res["full_over_path"]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}, "
          f"device={dev}: one-path step is x{f['median']:.1f} cheaper than the full distance "
          f"(range {f['min']:.1f}-{f['max']:.1f} over {args.rounds} rounds)")
    if server is not None:
        k = res["kymatio_over_ours"]
        print(f"orders 0-2 forward+backward: Kymatio 0.3.0 / scrapl = x{k['median']:.2f} "
              f"(range {k['min']:.2f}-{k['max']:.2f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
