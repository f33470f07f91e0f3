"""Benchmark of the theta-IS curvature warmup against the reference's ``warmup_lc_hvp``.

Problem: the reference README warmup example (JTFS shape=8096, J=3, Q1=1, Q2=1,
J_fr=2, Q_fr=1: P = 7 paths; n_theta = 3; one batch of 4 signals; 20 power
iterations) with a smaller encoder: a fixed ``AvgPool1d(16)`` before the README's
``Linear -> PReLU -> Linear -> Sigmoid`` (1,534 weights instead of 24k).  See
``benchmarks/_ref_warmup_worker.py`` (shared problem builder, reference side).

Measured:

* ``ref``: scrapl-loss 0.1.0 ``warmup_lc_hvp`` (subprocess, /work/refenv/bin/python);
* ``ours``: :func:`scrapl.samplers.run_warmup` with our JTFS (``forward_path(x, i,
  crop_time=False)``, the reference's distance), in this interpreter;
* ``ours_reftransform`` (and ``_arnoldi``): our curvature estimator driving the
  REFERENCE's JTFS, in the reference's interpreter -- the same distance on both sides,
  so this ratio isolates the warmup algorithm from the transform.

Printed: times, speed-up ratios, the correlation of log-probabilities and of log
curvatures with the reference (acceptance: log-prob correlation >= 0.9), of every
20-iteration estimate with the exact eigenvalues (dense ``W x W`` operators built with
our estimator: where the top two eigenvalues are close or ``+-lambda``, 20 power
iterations do not converge, on either side; ``method="arnoldi"`` does), and the
agreement of our per-path distances with the reference's.
Run::

    python benchmarks/bench_warmup.py [--threads 2] [--n-batches 1] [--n-paths 7] [--json out.json]

(the reference run takes a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _ref_warmup_worker import DEFAULTS, build_problem  # noqa: E402

REF_PYTHON = os.environ.get("SCRAPL_REF_PYTHON", "/work/refenv/bin/python")


def corr(a: list[float] | torch.Tensor, b: list[float] | torch.Tensor) -> float:
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def run_reference(cfg: dict[str, Any], with_ours: bool, skip_ref: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ref.json")
        cmd = [REF_PYTHON, os.path.join(HERE, "_ref_warmup_worker.py"), "--config", json.dumps(cfg), "--out", out]
        if with_ours:
            cmd += ["--ours-curvature", os.path.join(ROOT, "scrapl", "samplers", "curvature.py")]
        if skip_ref:
            cmd += ["--skip-ref"]
        subprocess.run(cmd, check=True, cwd=d)
        with open(out) as f:
            return json.load(f)


def make_dist_fn(cfg: dict[str, Any]):
    """Our JTFS and the reference's per-path distance: mean over the batch of the L2
    norm (over frequency and time) of the coefficient difference, uncropped time."""
    from scrapl.transforms.jtfs import JTFS

    jtfs = JTFS(shape=cfg["shape"], J=cfg["J"], Q1=cfg["Q1"], Q2=cfg["Q2"], J_fr=cfg["J_fr"], Q_fr=cfg["Q_fr"])
    n = cfg["shape"]

    def dist_fn(x: torch.Tensor, x_hat: torch.Tensor, p: int) -> torch.Tensor:
        with torch.no_grad():
            S_target = jtfs.forward_path(x.reshape(-1, n), p, crop_time=False)
        S = jtfs.forward_path(x_hat.reshape(-1, n), p, crop_time=False)
        return torch.linalg.vector_norm(S_target - S, ord=2, dim=(-2, -1)).mean()

    return jtfs, dist_fn


def run_ours(cfg: dict[str, Any], P: int) -> dict[str, Any]:
    from scrapl.samplers import run_warmup

    torch.set_num_threads(cfg["threads"])
    jtfs, dist_fn = make_dist_fn(cfg)
    _, theta_fn, synth_fn, kws, params = build_problem(cfg)
    out: dict[str, Any] = {"n_paths_total": jtfs.n_paths}
    with torch.no_grad():
        x = kws[0]["x"]
        x_hat = synth_fn(theta_fn(x))
        out["dists"] = [float(dist_fn(x, x_hat, p)) for p in range(P)]
    try:
        t0 = time.perf_counter()
        vals = run_warmup(dist_fn, jtfs.n_paths, cfg["n_theta"], theta_fn, synth_fn, kws, params, paths=range(P), n_iter=cfg["n_iter"], progress=False)
        out["time_s"] = time.perf_counter() - t0
        out["vals"] = vals[:P].tolist()
    except RuntimeError as exc:  # e.g. a transform that does not support double backward
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def probs_of(vals: list[list[float]]) -> torch.Tensor:
    from scrapl.samplers import probs_from_curvatures

    return probs_from_curvatures(torch.tensor(vals, dtype=torch.float64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=DEFAULTS["threads"])
    ap.add_argument("--n-batches", type=int, default=DEFAULTS["n_batches"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--n-iter", type=int, default=DEFAULTS["n_iter"])
    ap.add_argument("--n-paths", type=int, default=None, help="only the first N paths (quick runs)")
    ap.add_argument("--no-reftransform", action="store_true", help="skip our estimator on the reference transform")
    ap.add_argument("--no-exact", action="store_true", help="skip the exact (dense) eigenvalues")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bench_warmup.json"))
    args = ap.parse_args()
    cfg = {
        **DEFAULTS,
        "threads": args.threads,
        "n_batches": args.n_batches,
        "batch_size": args.batch_size,
        "n_iter": args.n_iter,
        "n_paths": args.n_paths,
        "exact": not (args.no_reftransform or args.no_exact),
    }

    print(f"config: {cfg}")
    ref = run_reference(cfg, with_ours=not args.no_reftransform, skip_ref=False)
    P = ref["n_paths"]
    print(f"encoder weights: {ref['n_weights']}, paths: {P} of {ref['n_paths_total']}")
    print(f"reference warmup_lc_hvp:                {ref['ref_time_s']:8.2f} s")
    result: dict[str, Any] = {
        "config": cfg,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "n_weights": ref["n_weights"],
        "n_paths": P,
        "ref_time_s": ref["ref_time_s"],
    }
    ref_probs = torch.tensor(ref["ref_probs"], dtype=torch.float64)
    ref_vals = ref["ref_vals"]
    full = P == ref["n_paths_total"]
    conv = ref.get("exact_vals")
    if conv is not None:
        c = {"ref_log_vals_corr": corr(torch.tensor(ref_vals).log(), torch.tensor(conv).log())}
        if full:
            c["ref_log_probs_corr"] = corr(ref_probs.log(), probs_of(conv).log())
        result["exact"] = {"vals": conv, **c}

    for key, label in (("ours_reftransform", "ours (power), reference JTFS"), ("ours_reftransform_arnoldi", "ours (arnoldi), reference JTFS")):
        if f"{key}_time_s" not in ref:
            continue
        t = ref[f"{key}_time_s"]
        v = ref[f"{key}_vals"]
        r = {
            "time_s": t,
            "speedup": ref["ref_time_s"] / t,
            "log_vals_corr": corr(torch.tensor(v).log(), torch.tensor(ref_vals).log()),
            "hessian_fallbacks": ref[f"{key}_hessian_fallbacks"],
        }
        if full:
            r["log_probs_corr"] = corr(probs_of(v).log(), ref_probs.log())
        if conv is not None:
            r["log_vals_corr_vs_exact"] = corr(torch.tensor(v).log(), torch.tensor(conv).log())
            if full:
                r["log_probs_corr_vs_exact"] = corr(probs_of(v).log(), probs_of(conv).log())
        result[key] = r
        print(f"{label:40s} {t:8.2f} s   speed-up {r['speedup']:5.1f}x   " + "  ".join(f"{k}={val:.4f}" for k, val in r.items() if "corr" in k))

    if conv is not None:
        print("reference vs exact (dense) eigenvalues: " + "  ".join(f"{k}={val:.4f}" for k, val in result["exact"].items() if "corr" in k))
    ours = run_ours(cfg, P)
    d_rel = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(ours["dists"], ref["dists"]))
    result["ours_vs_ref_dist_max_rel_err"] = d_rel
    print(f"our JTFS distance vs reference: max relative difference {d_rel:.2e}")
    if "error" in ours:
        result["ours"] = {"error": ours["error"]}
        print(f"ours (our JTFS): FAILED: {ours['error']}")
    else:
        t = ours["time_s"]
        r = {"time_s": t, "speedup": ref["ref_time_s"] / t, "log_vals_corr": corr(torch.tensor(ours["vals"]).log(), torch.tensor(ref_vals).log())}
        if full:
            r["log_probs_corr"] = corr(probs_of(ours["vals"]).log(), ref_probs.log())
        if conv is not None:
            r["log_vals_corr_vs_exact"] = corr(torch.tensor(ours["vals"]).log(), torch.tensor(conv).log())
        result["ours"] = r
        print(f"ours, our JTFS:                         {t:8.2f} s   speed-up {r['speedup']:5.1f}x   " + "  ".join(f"{k}={val:.4f}" for k, val in r.items() if "corr" in k))

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
