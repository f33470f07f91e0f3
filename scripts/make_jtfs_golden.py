"""Regenerate the JTFS golden fixtures (tests/fixtures/jtfs_*.pt) from the reference.

Run with the scratch interpreter that has scrapl-loss 0.1.0 installed (never the
project's own environment)::

    /work/refenv/bin/python scripts/make_jtfs_golden.py [--out tests/fixtures] [--only NAME]

For each configuration it stores (``torch.load(path, weights_only=True)`` readable):

* ``params``: shape, J, Q1, Q2, J_fr, Q_fr, T, F;
* ``x``: the seeded input batch ``(B, N)`` float32 (row 0 white noise, row 1 --
  when B = 2 -- a deterministic chirp with a decaying envelope plus a little noise);
* ``keys``: all channel keys of the joint output (first order ``(n_fr,)`` then
  ``(n2, n_fr)``), ``scrapl_keys`` from ``SCRAPLLoss(...).scrapl_keys``;
* ``channels`` and ``full``: the reference joint output
  ``TimeFrequencyScattering(..., format='joint', out_type='array')(x)`` restricted
  to the listed channel indices, ``(B, len(channels), F_out, T_out)``;
* ``N_pad``, ``pad_left``, ``pad_right``, ``N_fr``, ``n_first``, ``n_paths``,
  ``out_shape`` (shape of the complete output);
* ``single_paths`` / ``single``: SCRAPL single-path outputs
  (``TimeFrequencyScrapl.scattering_singlepath``, uncropped, ``(B, F_out, T_pad)``);
* ``filters``: xi / sigma / j of psi1, psi2 and the frequential wavelets;
* optionally gradients w.r.t. ``x``: ``grad_full`` of ``sum(full_output * W)`` with
  ``W[c, f, t] = cos(0.37 c + 0.11 f + 0.05 t)`` over the complete output, and
  ``grad_paths``/``grad_scrapl``/``loss_scrapl``: the reference ``SCRAPLLoss``
  distance (uncropped, mean over batch of the L2 norm of the difference) between
  ``x`` and ``x_target`` (also stored) for the listed paths and its gradient.

The script is deterministic (explicit ``torch.Generator`` seeds, single thread).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

import scrapl  # noqa: F401  (puts the bundled kymatio on sys.path)
from kymatio.torch import TimeFrequencyScattering  # noqa: E402
from scrapl import SCRAPLLoss  # noqa: E402
from scrapl.single_path_jtfs import TimeFrequencyScrapl  # noqa: E402

CONFIGS = [
    # name, params, batch, channel subset step (None = all), single paths, gradients, scrapl grad paths
    dict(name="small", params=dict(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1, T=None, F=None), batch=2,
         step=None, single=[0, 5, 13, 27], grad_full=True, grad_paths=[0, 13, 27]),
    dict(name="tf", params=dict(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2, T=32, F=2), batch=2,
         step=5, single=[0, 7, 60, 134], grad_full=False, grad_paths=[60]),
    dict(name="paper", params=dict(shape=32768, J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2, T=None, F=None), batch=2,
         step=None, single=[0, 1, 15, 100, 200, 314], grad_full=False, grad_paths=[1]),
    dict(name="tr808", params=dict(shape=44100, J=12, Q1=8, Q2=2, J_fr=5, Q_fr=2, T=2048, F=1), batch=1,
         step=8, single=[0, 7, 240, 482], grad_full=False, grad_paths=[]),
]


def make_input(N: int, batch: int, seed: int) -> torch.Tensor:
    """Seeded test signals ``(batch, N)`` float32."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randn(N, generator=g, dtype=torch.float64)]
    if batch > 1:
        t = torch.arange(N, dtype=torch.float64) / N
        f0, f1 = 0.002, 0.2  # cycles per sample: an upward chirp
        phase = 2 * math.pi * N * (f0 * t + 0.5 * (f1 - f0) * t**2)
        env = torch.exp(-3.0 * t) * (1 - torch.exp(-200.0 * t))
        rows.append(env * torch.sin(phase) + 0.05 * torch.randn(N, generator=g, dtype=torch.float64))
    return torch.stack(rows).float()


def weight(shape: tuple[int, ...]) -> torch.Tensor:
    """Deterministic weights ``cos(0.37 c + 0.11 f + 0.05 t)`` of shape ``(C, F, T)``."""
    C, Fo, To = shape
    c = torch.arange(C, dtype=torch.float32)[:, None, None]
    f = torch.arange(Fo, dtype=torch.float32)[None, :, None]
    t = torch.arange(To, dtype=torch.float32)[None, None, :]
    return torch.cos(0.37 * c + 0.11 * f + 0.05 * t)


def run(cfg: dict, out_dir: str) -> str:
    p = cfg["params"]
    N = p["shape"]
    kw = dict(J=p["J"], shape=(N,), Q=(p["Q1"], p["Q2"]), J_fr=p["J_fr"], Q_fr=p["Q_fr"], T=p["T"], F=p["F"])
    jtfs = TimeFrequencyScattering(**kw, format="joint", out_type="array")
    meta = jtfs.meta()
    keys = [tuple(int(v) for v in k) for k in meta["key"]]
    if len(keys) != len(meta["order"]):
        keys = keys[1:]
    x = make_input(N, cfg["batch"], seed=1234 + N)
    t0 = time.time()
    out = jtfs(x)
    print(f"[{cfg['name']}] full output {tuple(out.shape)} in {time.time() - t0:.1f}s")
    C = out.shape[1]
    n_first = sum(1 for k in keys if len(k) == 1)
    if cfg["step"] is None:
        channels = list(range(C))
    else:
        channels = list(range(n_first)) + list(range(n_first, C, cfg["step"]))
        if C - 1 not in channels:
            channels.append(C - 1)
    loss = SCRAPLLoss(shape=N, J=p["J"], Q1=p["Q1"], Q2=p["Q2"], J_fr=p["J_fr"], Q_fr=p["Q_fr"], T=p["T"],
                      F=p["F"])
    scrapl_keys = [tuple(int(v) for v in k) for k in loss.scrapl_keys]
    sp = TimeFrequencyScrapl(**kw)
    single = []
    for i in cfg["single"]:
        n2, n_fr = scrapl_keys[i]
        coef = sp.scattering_singlepath(x.view(-1, 1, N), n2, n_fr)["coef"]  # (B, 1, F, T, 1)
        single.append(coef[:, 0, :, :, 0].clone())
    psi1, psi2 = jtfs.psi1_f, jtfs.psi2_f
    psi_fr = jtfs.filters_fr[1]
    filters = {
        "psi1": torch.tensor([[f["xi"], f["sigma"], f["j"]] for f in psi1], dtype=torch.float64),
        "psi2": torch.tensor([[f["xi"], f["sigma"], f["j"]] for f in psi2], dtype=torch.float64),
        "psi_fr": torch.tensor([[f["xi"], f["sigma"], f["j"]] for f in psi_fr], dtype=torch.float64),
    }
    data = {
        "params": dict(p),
        "x": x,
        "keys": [list(k) for k in keys],
        "scrapl_keys": [list(k) for k in scrapl_keys],
        "channels": channels,
        "full": out[:, channels].clone(),
        "out_shape": list(out.shape),
        "N_pad": int(jtfs._N_padded),
        "pad_left": int(jtfs.pad_left),
        "pad_right": int(jtfs.pad_right),
        "N_fr": int(jtfs._N_padded_fr),
        "n_first": n_first,
        "n_paths": len(scrapl_keys),
        "single_paths": list(cfg["single"]),
        "single": single,
        "filters": filters,
    }
    if cfg["grad_full"]:
        xg = x.clone().requires_grad_(True)
        o = jtfs(xg)
        (o * weight(tuple(o.shape[1:]))).sum().backward()
        data["grad_full"] = xg.grad.clone()
    if cfg["grad_paths"]:
        g = torch.Generator().manual_seed(99 + N)
        x_target = (x + 0.5 * torch.randn(x.shape, generator=g)).float()
        data["x_target"] = x_target
        grads, losses = [], []
        for i in cfg["grad_paths"]:
            xg = x.clone().view(-1, 1, N).requires_grad_(True)
            d = loss(xg, x_target.view(-1, 1, N), path_idx=i)
            d.backward()
            grads.append(xg.grad.view(-1, N).clone())
            losses.append(float(d.detach()))
        data["grad_paths"] = list(cfg["grad_paths"])
        data["grad_scrapl"] = grads
        data["loss_scrapl"] = losses
    path = os.path.join(out_dir, f"jtfs_{cfg['name']}.pt")
    torch.save(data, path)
    print(f"[{cfg['name']}] wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--only", default=None, help="generate only this configuration")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    for cfg in CONFIGS:
        if args.only and cfg["name"] != args.only:
            continue
        run(cfg, args.out)


if __name__ == "__main__":
    main()
