"""Batched vs looped products of the theta-IS curvature estimator.

Problem: the README warmup example (as ``bench_warmup.py``: JTFS shape=8096, J=3,
Q1=1, Q2=1, J_fr=2, Q_fr=1, P = 7 paths, n_theta = 3, one batch of 4, 20 power
iterations, 1,534 encoder weights).  Measured, interleaved over ``--repeats`` rounds
(``time.perf_counter``, all 7 paths per round):

* ``default`` (``vectorize=True``): the Hessian-vector products through the JTFS run in
  a loop (its fused backward kernels have no vmap batching rule), the encoder's
  products batched;
* ``loop`` (``vectorize=False``): every product in a loop -- what every warmup ran
  before, after warning "batched Hessian-vector products failed".

Run::

    python benchmarks/bench_hvp.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ref_warmup_worker import DEFAULTS, build_problem  # noqa: E402

from scrapl.samplers.curvature import CurvatureEstimator  # noqa: E402
from scrapl.transforms.jtfs import JTFS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(DEFAULTS)
    _, theta_fn, synth_fn, kwargs, params = build_problem(cfg)
    jtfs = JTFS(shape=cfg["shape"], J=cfg["J"], Q1=cfg["Q1"], Q2=cfg["Q2"], J_fr=cfg["J_fr"], Q_fr=cfg["Q_fr"])

    def dist(x: torch.Tensor, x_hat: torch.Tensor, i: int) -> torch.Tensor:
        d = jtfs.forward_path(x_hat, i, crop_time=False) - jtfs.forward_path(x, i, crop_time=False)
        return d.flatten(1).norm(dim=1).mean()

    times: dict[str, list[float]] = {"default": [], "loop": []}
    results: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, vec in (("default", True), ("loop", False)):
            est = CurvatureEstimator(theta_fn, synth_fn, kwargs, params, n_theta=cfg["n_theta"], n_iter=cfg["n_iter"],
                                     vectorize=vec)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                out = torch.stack([est.path_curvatures(dist, p, generator=torch.Generator().manual_seed(p))
                                   for p in range(jtfs.n_paths)])
                times[name].append(time.perf_counter() - t0)
            if caught:
                print(f"{name}: warnings {[str(w.message)[:80] for w in caught]}")
            results[name] = out
            if vec:
                print(f"default: hvp_loop_reason = {est.hvp_loop_reason!r}")
    for name, ts in times.items():
        print(f"{name:8s} median {statistics.median(ts):.2f} s  (min {min(ts):.2f}, max {max(ts):.2f}, n={len(ts)})")
    print(f"loop / default = {statistics.median(times['loop']) / statistics.median(times['default']):.2f}")
    rel = float((results["default"] - results["loop"]).norm() / results["loop"].norm())
    print(f"relative difference of the curvatures: {rel:.2e}")


if __name__ == "__main__":
    main()
