"""Generate golden data for the ``scattering1d`` transform plugin.

Run with the scratch environment that holds Kymatio 0.3.0 from PyPI (never the
project's own environment)::

    /work/kymenv/bin/python scripts/make_scattering1d_golden.py

It writes ``tests/fixtures/scattering1d_<name>.pt`` for each configuration in
:data:`CONFIGS`: the input batch, Kymatio's full ``Scattering1D`` output
(``out_type='array'``, orders 0, 1 and 2), ``meta()`` (keys in output order and
the per-channel arrays), padding and unpadding indices, the filter parameter
tables, a few filters, and (for the first configuration) the gradient of a scalar
of the output with respect to the input.  Everything stored is a tensor, number,
string or container, so ``torch.load(path, weights_only=True)`` reads it.

The script is deterministic: inputs come from a seeded ``torch.Generator`` and the
filters are deterministic functions of the parameters.  It also writes
``tests/fixtures/scattering1d_filterbank_params.pt``: filter (xi, sigma, j) tables
for extra (J, Q) pairs, including the degenerate case where the largest wavelet is
already narrower than ``sigma0 / 2**J``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

import kymatio
from kymatio.scattering1d.filter_bank import compute_params_filterbank
from kymatio.torch import Scattering1D

if kymatio.__version__ != "0.3.0":  # pragma: no cover - guard for the operator
    sys.exit(f"need kymatio 0.3.0, found {kymatio.__version__}")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# name -> Scattering1D keyword arguments (+ "batch", the number of input signals)
CONFIGS: dict[str, dict] = {
    # The Kymatio docstring's example scale: Q=8 means Q=(8, 1).
    "j6_q8_n4096": dict(J=6, shape=4096, Q=8, T=None, oversampling=0, batch=2),
    # Larger J, two wavelets per octave at the second order, non-power-of-two Q1.
    "j8_q12x2_n8192": dict(J=8, shape=8192, Q=(12, 2), T=None, oversampling=0, batch=2),
    # Non-default averaging: T not a power of two and smaller than 2**J, plus
    # oversampling; N not a power of two.
    "j6_q4x2_n3000_t48_os1": dict(J=6, shape=3000, Q=(4, 2), T=48, oversampling=1, batch=2),
}

# Extra (J, Q) pairs for the filter parameter tables (sigma0=0.1, alpha=5, r=sqrt(.5)).
PARAM_TABLES = [(2, 8), (2, 1), (3, 1), (4, 16), (6, 8), (8, 12), (12, 8), (12, 2), (5, 3)]


def make_input(n_samples: int, batch: int, seed: int) -> torch.Tensor:
    """(batch, n_samples) float32: a white-noise row, then a chirp with AM rows."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randn(n_samples, generator=g, dtype=torch.float64)]
    t = torch.arange(n_samples, dtype=torch.float64)
    for b in range(1, batch):
        f0, f1 = 0.002 * b, 0.3 / b
        phase = 2 * math.pi * (f0 * t + 0.5 * (f1 - f0) * t**2 / n_samples)
        am = 1.0 + 0.8 * torch.sin(2 * math.pi * t * (0.004 * b))
        rows.append(am * torch.cos(phase) + 0.05 * torch.randn(n_samples, generator=g, dtype=torch.float64))
    return torch.stack(rows).to(torch.float32).contiguous()


def meta_to_tensors(meta: dict) -> dict:
    """Convert Kymatio's meta dict into tensors/lists (NaN padding kept)."""
    out = {"key": [list(k) for k in meta["key"]]}
    for field in ("order", "xi", "sigma", "j", "n"):
        out[field] = torch.as_tensor(np.asarray(meta[field], dtype=np.float64))
    return out


def filter_tables(J: int, Q) -> dict:
    Q1, Q2 = (Q, 1) if isinstance(Q, int) else tuple(Q)
    sigma_min = 0.1 / 2**J
    tabs = {}
    for name, q in (("psi1", Q1), ("psi2", Q2)):
        xis, sigmas, js = compute_params_filterbank(sigma_min, q, 5.0, math.sqrt(0.5))
        tabs[name] = {
            "xi": torch.tensor(xis, dtype=torch.float64),
            "sigma": torch.tensor(sigmas, dtype=torch.float64),
            "j": torch.tensor(js, dtype=torch.int64),
        }
    return tabs


def main() -> None:
    torch.manual_seed(0)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for seed, (name, cfg) in enumerate(CONFIGS.items()):
        cfg = dict(cfg)
        batch = cfg.pop("batch")
        S = Scattering1D(**cfg)
        x = make_input(cfg["shape"], batch, seed=1234 + seed)
        with torch.no_grad():
            full = S(x)
        meta = S.meta()
        assert full.shape[-2] == len(meta["key"]), (full.shape, len(meta["key"]))
        # per-order check of the output order against meta (list output)
        S.out_type = "list"
        with torch.no_grad():
            lst = S(x)
        S.out_type = "array"
        assert [tuple(d["n"]) for d in lst] == [tuple(k) for k in meta["key"]]

        data = {
            "kymatio_version": kymatio.__version__,
            "torch_version": str(torch.__version__),
            "params": {
                "J": cfg["J"],
                "shape": cfg["shape"],
                "Q": list(S.Q),
                "T": cfg["T"],
                "T_effective": S.T,
                "log2_T": S.log2_T,
                "oversampling": cfg["oversampling"],
            },
            "x": x,
            "full": full.contiguous(),
            "meta": meta_to_tensors(meta),
            "sizes": list(S.output_size(detail=True)),
            "N_padded": S._N_padded,
            "pad_left": S.pad_left,
            "pad_right": S.pad_right,
            "ind_start": [S.ind_start[k] for k in sorted(S.ind_start)],
            "ind_end": [S.ind_end[k] for k in sorted(S.ind_end)],
            "tables": filter_tables(cfg["J"], cfg["Q"]),
            "phi_levels": len(S.phi_f["levels"]),
            "psi2_levels": [len(p["levels"]) for p in S.psi2_f],
        }
        # A few filters (float32 buffers as Kymatio uses them), small config only.
        if name == "j6_q8_n4096":
            n1s = [0, len(S.psi1_f) // 2, len(S.psi1_f) - 1]
            data["filters"] = {
                "phi_level0": S.phi_f["levels"][0].reshape(-1).clone(),
                "phi_last_level": S.phi_f["levels"][-1].reshape(-1).clone(),
                "psi1_n1": n1s,
                "psi1": torch.stack([S.psi1_f[n]["levels"][0].reshape(-1) for n in n1s]).clone(),
                "psi2_last_levels": [l.reshape(-1).clone() for l in S.psi2_f[-1]["levels"]],
            }
            # Gradient of a fixed scalar of the output with respect to the input.
            xg = x.clone().requires_grad_(True)
            w = torch.randn(full.shape, generator=torch.Generator().manual_seed(99))
            (S(xg) * w).sum().backward()
            data["grad_weight_seed"] = 99
            data["grad"] = xg.grad.detach().clone()
        path = FIXTURES / f"scattering1d_{name}.pt"
        torch.save(data, path)
        torch.load(path, weights_only=True)  # must stay loadable without pickled classes
        print(f"{path.relative_to(ROOT)}: full {tuple(full.shape)}, sizes {data['sizes']}, "
              f"N_pad {S._N_padded}, {os.path.getsize(path) / 1e3:.0f} kB")

    tables = {f"{J},{Q}": filter_tables(J, Q) for (J, Q) in PARAM_TABLES}
    tables_path = FIXTURES / "scattering1d_filterbank_params.pt"
    torch.save({"kymatio_version": kymatio.__version__, "tables": tables}, tables_path)
    torch.load(tables_path, weights_only=True)
    print(f"{tables_path.relative_to(ROOT)}: {len(tables)} tables")


if __name__ == "__main__":
    main()
