"""Regenerate tests/fixtures/sampler_golden.pt with the REFERENCE package.

Run with the reference's virtual environment (scrapl-loss 0.1.0), from the repo root:

    /work/refenv/bin/python scripts/make_sampler_golden.py

What it records (everything small, loadable with ``torch.load(weights_only=True)``):

* ``draws``: path draws of the reference's ``SCRAPLLoss.sample_path(seed)`` (uniform
  and non-uniform float64 probabilities), with ``sample_all_paths_first``, and a
  continuing sequence ``g.manual_seed(s)`` then repeated
  ``torch.multinomial(probs, 1, generator=g)`` (what the reference's private
  generator does between re-seedings).
* ``probs``: the reference's probabilities after ``update_prob`` over all paths and
  over a subset of paths (partial warmup), for several ``min_prob_frac``, and after
  ``load_probs_from_warmup_dir`` on reference-format ``vals_{p}.pt`` files.
* ``warmup``: curvatures of ``warmup_lc_hvp`` for a tiny encoder/decoder whose
  per-path distance is a pure-torch toy (the reference loss's ``calc_dist`` is
  overridden), so the tests can rebuild the same problem without the reference
  scattering transform: single batch, two batches (multibatch mode) and
  ``agg="mean"``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import torch

from scrapl import SCRAPLLoss  # the reference package (only in the reference venv)

logging.disable(logging.INFO)

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "sampler_golden.pt")

# JTFS config of the reference README example (P = 7 paths); only n_paths matters here.
JTFS_KW = dict(shape=256, J=3, Q1=1, Q2=1, J_fr=2, Q_fr=1)
N_SAMPLES = 256
BAND = 12


def toy_dist(x: torch.Tensor, x_hat: torch.Tensor, path_idx: int) -> torch.Tensor:
    """Per-path toy distance: L2 distance of one band of |rfft|, mean over the batch.

    Duplicated verbatim in tests/test_curvature_reference.py.
    """
    X = torch.fft.rfft(x.reshape(-1, x.shape[-1])).abs()[:, 1 + BAND * path_idx : 1 + BAND * (path_idx + 1)]
    Xh = torch.fft.rfft(x_hat.reshape(-1, x_hat.shape[-1])).abs()[:, 1 + BAND * path_idx : 1 + BAND * (path_idx + 1)]
    return torch.linalg.vector_norm(X - Xh, ord=2, dim=-1).mean()


class ToyRefLoss(SCRAPLLoss):
    def calc_dist(self, x, x_target, path_idx):  # type: ignore[override]
        return toy_dist(x, x_target, path_idx), None, None


def make_models(n_theta: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(123)
    enc = torch.nn.Sequential(
        torch.nn.AvgPool1d(8), torch.nn.Flatten(), torch.nn.Linear(N_SAMPLES // 8, 6), torch.nn.Tanh(), torch.nn.Linear(6, n_theta), torch.nn.Sigmoid()
    )
    dec = torch.nn.Sequential(torch.nn.Linear(n_theta, 8), torch.nn.Tanh(), torch.nn.Linear(8, N_SAMPLES), torch.nn.Tanh())
    return enc, dec


def draws() -> dict:
    out: dict = {}
    loss = SCRAPLLoss(**JTFS_KW)
    P = loss.n_paths
    seeds = list(range(40)) + [12345, 2**31 - 1, 987654321]
    out["seeds"] = torch.tensor(seeds, dtype=torch.int64)
    out["uniform"] = torch.tensor([loss.sample_path(s) for s in seeds])
    g = torch.Generator().manual_seed(7)
    probs = torch.rand(P, generator=g, dtype=torch.float64) ** 3
    probs = probs / probs.sum()
    loss.probs = probs
    out["probs"] = probs
    out["nonuniform"] = torch.tensor([loss.sample_path(s) for s in seeds])
    # sample_all_paths_first: 2P seeded calls on a fresh loss
    loss2 = SCRAPLLoss(**JTFS_KW, sample_all_paths_first=True)
    loss2.probs = probs
    seq = []
    for i in range(2 * P):
        pi = loss2.sample_path(100 + i)
        loss2.path_counts[pi] += 1  # what a training forward does
        seq.append(pi)
    out["all_first_seeds"] = torch.arange(100, 100 + 2 * P)
    out["all_first"] = torch.tensor(seq)
    # continuing sequence of the private generator after one seeding
    rg = torch.Generator(device="cpu")
    rg.manual_seed(2024)
    out["continuing_seed"] = 2024
    out["continuing"] = torch.tensor([torch.multinomial(probs, num_samples=1, generator=rg).item() for _ in range(50)])
    out["n_paths"] = P
    return out


def prob_math() -> dict:
    out: dict = {"cases": []}
    g = torch.Generator().manual_seed(11)
    P = SCRAPLLoss(**JTFS_KW).n_paths
    # min_prob_frac = 0 only: with a positive floor the reference's update_prob trips
    # its own sum-to-one assertions (each theta row sums to 1 - min_prob_frac).
    for n_theta, mpf, subset in [(3, 0.0, None), (1, 0.0, None), (1, 0.0, [5, 1, 3]), (2, 0.0, [1, 4, 5, 2]), (3, 0.0, [6, 0, 3])]:
        vals = torch.rand(P, n_theta, generator=g, dtype=torch.float64) ** 4
        vals[0, 0] = 0.0  # exercises the eps clamp
        loss = SCRAPLLoss(**JTFS_KW, n_theta=n_theta, min_prob_frac=mpf)
        order = list(range(P)) if subset is None else subset
        for p in order:
            for u in range(n_theta):
                loss.update_prob(p, vals[p, u], u)
        out["cases"].append(
            {
                "n_theta": n_theta,
                "min_prob_frac": mpf,
                "paths": torch.tensor(order),
                "vals": vals,
                "probs": loss.probs.clone(),
            }
        )
    # load_probs_from_warmup_dir on reference-format files (min_prob_frac = 0: the
    # reference's loader asserts with a positive floor)
    vals = torch.rand(P, 2, generator=g) + 0.01
    d = tempfile.mkdtemp()
    try:
        for p in range(P):
            torch.save(vals[p : p + 1].clone(), os.path.join(d, f"vals_{p}.pt"))
        loss = SCRAPLLoss(**JTFS_KW, n_theta=2)
        loss.load_probs_from_warmup_dir(d)
        out["dir_vals"] = vals
        out["dir_probs"] = loss.probs.clone()
    finally:
        shutil.rmtree(d)
    return out


def warmups() -> dict:
    out: dict = {}
    n_theta = 3
    enc, dec = make_models(n_theta)
    out["enc_state"] = {k: v.clone() for k, v in enc.state_dict().items()}
    out["dec_state"] = {k: v.clone() for k, v in dec.state_dict().items()}
    gx = torch.Generator().manual_seed(5)
    xs = [torch.rand(4, 1, N_SAMPLES, generator=gx) for _ in range(2)]
    out["xs"] = xs
    out["n_theta"] = n_theta
    theta_fn = lambda x: enc(x)  # noqa: E731
    synth_fn = lambda theta: dec(theta).unsqueeze(1)  # noqa: E731
    params = list(enc.parameters())
    loss = ToyRefLoss(**JTFS_KW, n_theta=n_theta)
    P = loss.n_paths
    for name, batches, agg in [("single", xs[:1], "none"), ("multi", xs, "none"), ("single_mean", xs[:1], "mean")]:
        loss.clear()
        d = tempfile.mkdtemp()
        try:
            torch.manual_seed(0)  # the reference's power iteration starts from the global RNG
            loss.warmup_lc_hvp(theta_fn, synth_fn, [{"x": x} for x in batches], params, save_dir=d, n_iter=20, agg=agg)
            out[name] = {
                "vals": [torch.load(os.path.join(d, f"vals_{p}.pt")) for p in range(P)],
                "probs": loss.probs.clone(),
                "n_batches": len(batches),
                "agg": agg,
            }
        finally:
            shutil.rmtree(d)
    return out


def main() -> None:
    data = {"draws": draws(), "prob_math": prob_math(), "warmup": warmups(), "torch_version": str(torch.__version__)}
    torch.save(data, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
