"""Reference side of benchmarks/bench_warmup.py (run with the reference's venv).

    /work/refenv/bin/python benchmarks/_ref_warmup_worker.py --config '{"shape": 8096, ...}' --out ref.json \
        [--ours-curvature scrapl/samplers/curvature.py]

Times ``SCRAPLLoss.warmup_lc_hvp`` of scrapl-loss 0.1.0 on the benchmark problem and
records its curvatures (``vals_{p}.pt``), probabilities and the per-path distances at
the encoder's output (to check that our transform computes the same distance).

With ``--ours-curvature`` it also times OUR curvature estimator
(``scrapl/samplers/curvature.py``, which needs only torch, loaded by file path) on the
reference's own scattering transform: the same distance in the same interpreter, so
the ratio isolates the warmup algorithm.

This module imports only torch at module level: ``build_problem`` is shared with
bench_warmup.py (our package's side).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import torch

DEFAULTS: dict[str, Any] = {
    "shape": 8096,
    "J": 3,
    "Q1": 1,
    "Q2": 1,
    "J_fr": 2,
    "Q_fr": 1,
    "n_theta": 3,
    "batch_size": 4,
    "n_batches": 1,
    "pool": 16,
    "n_iter": 20,
    "seed": 42,
    "threads": 2,
    "n_paths": None,
    "exact": True,
}


def build_problem(cfg: dict[str, Any]):
    """The README warmup example with a smaller encoder.

    Encoder: ``AvgPool1d(pool)`` (fixed), ``Linear(shape // pool, U)``, PReLU,
    ``Linear(U, U)``, Sigmoid -- ``(shape // pool + 1) * U + 1 + U * U + U`` weights
    (1534 with the defaults); decoder as in the README (``Linear(U, U)``, PReLU,
    ``Linear(U, shape)``, Tanh).  Returns ``(encoder, theta_fn, synth_fn,
    theta_fn_kwargs, params)``.
    """
    torch.manual_seed(cfg["seed"])
    n, U = cfg["shape"], cfg["n_theta"]
    enc = torch.nn.Sequential(
        torch.nn.AvgPool1d(cfg["pool"]),
        torch.nn.Flatten(),
        torch.nn.Linear(n // cfg["pool"], U),
        torch.nn.PReLU(),
        torch.nn.Linear(U, U),
        torch.nn.Sigmoid(),
    )
    dec = torch.nn.Sequential(torch.nn.Linear(U, U), torch.nn.PReLU(), torch.nn.Linear(U, n), torch.nn.Tanh())
    batches = [torch.rand((cfg["batch_size"], 1, n)) for _ in range(cfg["n_batches"])]

    def theta_fn(x: torch.Tensor) -> torch.Tensor:
        return enc(x)

    def synth_fn(theta: torch.Tensor) -> torch.Tensor:
        return dec(theta).unsqueeze(1)

    return enc, theta_fn, synth_fn, [{"x": b} for b in batches], list(enc.parameters())


def _load_ours(path: str):
    spec = importlib.util.spec_from_file_location("scrapl_ours_curvature", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="{}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ours-curvature", default=None)
    ap.add_argument("--skip-ref", action="store_true")
    args = ap.parse_args()
    cfg = {**DEFAULTS, **json.loads(args.config)}
    torch.set_num_threads(cfg["threads"])
    logging.disable(logging.INFO)

    from scrapl import SCRAPLLoss  # the reference package (only in the reference venv)

    loss = SCRAPLLoss(shape=cfg["shape"], J=cfg["J"], Q1=cfg["Q1"], Q2=cfg["Q2"], J_fr=cfg["J_fr"], Q_fr=cfg["Q_fr"], n_theta=cfg["n_theta"])
    P = loss.n_paths if cfg["n_paths"] is None else min(cfg["n_paths"], loss.n_paths)
    enc, theta_fn, synth_fn, kws, params = build_problem(cfg)
    out: dict[str, Any] = {"n_paths_total": loss.n_paths, "n_paths": P, "n_weights": sum(p.numel() for p in params)}

    # per-path distances at the encoder output (sanity check of our transform)
    with torch.no_grad():
        x = kws[0]["x"]
        x_hat = synth_fn(theta_fn(x))
        out["dists"] = [float(loss.calc_dist(x.view(-1, 1, cfg["shape"]), x_hat.view(-1, 1, cfg["shape"]), p)[0]) for p in range(P)]

    if not args.skip_ref:
        d = tempfile.mkdtemp()
        try:
            torch.manual_seed(0)  # the reference's power iteration uses the global RNG
            t0 = time.perf_counter()
            loss.warmup_lc_hvp(theta_fn, synth_fn, kws, params, save_dir=d, n_iter=cfg["n_iter"], end_path_idx=P)
            out["ref_time_s"] = time.perf_counter() - t0
            out["ref_vals"] = [torch.load(os.path.join(d, f"vals_{p}.pt"))[0].tolist() for p in range(P)]
            out["ref_probs"] = loss.probs.tolist()
        finally:
            shutil.rmtree(d)

    if args.ours_curvature:
        ours = _load_ours(args.ours_curvature)

        def dist_fn(x: torch.Tensor, x_hat: torch.Tensor, p: int) -> torch.Tensor:
            n = cfg["shape"]
            return loss.calc_dist(x.view(-1, 1, n), x_hat.view(-1, 1, n), p)[0]

        for method in ("power", "arnoldi"):
            t0 = time.perf_counter()
            est = ours.CurvatureEstimator(theta_fn, synth_fn, kws, params, n_theta=cfg["n_theta"], n_iter=cfg["n_iter"], method=method)
            vals = [est.path_curvatures(dist_fn, p, generator=torch.Generator().manual_seed(p))[0].abs().tolist() for p in range(P)]
            est.release()
            key = "ours_reftransform" if method == "power" else "ours_reftransform_arnoldi"
            out[f"{key}_time_s"] = time.perf_counter() - t0
            out[f"{key}_vals"] = vals
            out[f"{key}_hessian_fallbacks"] = est.n_hessian_fallbacks
        if cfg["exact"]:
            # exact largest-magnitude eigenvalues from the dense operators (W x W, cheap
            # to build with our estimator for a small encoder)
            est = ours.CurvatureEstimator(theta_fn, synth_fn, kws, params, n_theta=cfg["n_theta"])
            exact = []
            for p in range(P):
                mats = est.operator_matrices(dist_fn, p).double()
                exact.append([float(torch.linalg.eigvals(m).abs().max()) for m in mats])
            est.release()
            out["exact_vals"] = exact

    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
