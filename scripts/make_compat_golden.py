"""Generate golden data for the drop-in's reference names from the REFERENCE package.

Run with a scratch environment that holds ``scrapl-loss`` 0.1.0 (never the
project's own environment)::

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 scrapl-loss==0.1.0 "scipy<1.15"
    /tmp/ref/bin/python scripts/make_compat_golden.py

It writes ``tests/fixtures/compat_golden.pt`` with, for one small configuration
(:data:`KWARGS`):

* ``attrs``: ``n_paths``, ``min_prob_frac``, ``eps``, ``sample_all_paths_first``,
  ``loaded_probs_path``, ``grad_mult``, ``jtfs`` (``Q``, ``J``, ``J_fr``, ``Q_fr``,
  ``T``, ``F``, ``shape``) and the well-defined columns of ``meta`` (``key``,
  ``order``, ``n_fr``, ``xi``, ``sigma``, ``j``, ``xi_fr``, ``sigma_fr``, ``j_fr``,
  ``spin``);
* ``global_draws``: under ``torch.manual_seed(s)`` the paths of 40 unseeded
  training forwards (plain and ``sample_all_paths_first=True``), and
  ``after_init``: ``torch.rand(4)`` drawn right after constructing the loss under
  ``torch.manual_seed(s)`` (does construction consume global random numbers?);
* ``updates``: per case of :data:`CASES`, a sequence of
  ``update_prob(path_idx, val, theta_idx)`` calls with ``probs``, ``all_log_vals`` and
  ``all_log_probs`` after each call, and the same three after
  ``load_probs_from_warmup_dir`` of a directory of ``vals_{p}.pt`` files;
* ``tensor_dict``: the behaviour of ``scrapl.util.ReadOnlyTensorDict``.

Everything stored is a tensor, number, string or container (``weights_only=True``).
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "scripts")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import scrapl  # noqa: E402

if "site-packages" not in str(Path(scrapl.__file__)):  # pragma: no cover - operator guard
    sys.exit(f"run this with the reference environment; imported scrapl from {scrapl.__file__}")
from scrapl.scrapl_loss import SCRAPLLoss  # noqa: E402  (the reference, scrapl-loss 0.1.0)
from scrapl.util import ReadOnlyTensorDict  # noqa: E402

KWARGS = dict(shape=1024, J=4, Q1=2, Q2=1, J_fr=2, Q_fr=1)
META_COLUMNS = ("order", "n_fr", "xi", "sigma", "j", "xi_fr", "sigma_fr", "j_fr", "spin")
SEEDS = (0, 7, 123)
UPDATES = [(3, 2.0, 0), (5, 0.5, 1), (3, 4.0, 1), (0, 1.0, 0), (7, 3.0, 0), (7, 1e-14, 1), (12, 0.25, 0)]
CASES = {"theta2": dict(n_theta=2, min_prob_frac=0.0)}
"""(With ``min_prob_frac > 0`` the reference's ``update_prob`` fails its own
assertion once two paths are updated, so only ``min_prob_frac=0`` is recorded.)"""


def _attrs(loss: SCRAPLLoss) -> dict:
    j = loss.jtfs
    meta = {"key": [list(k) for k in loss.meta["key"]]}
    for c in META_COLUMNS:
        meta[c] = torch.from_numpy(np.asarray(loss.meta[c], dtype=np.float64))
    return {
        "n_paths": loss.n_paths,
        "min_prob_frac": loss.min_prob_frac,
        "eps": loss.eps,
        "sample_all_paths_first": loss.sample_all_paths_first,
        "loaded_probs_path": loss.loaded_probs_path,
        "grad_mult": float(loss.grad_mult),
        "jtfs": {"Q": list(j.Q), "J": j.J, "J_fr": j.J_fr, "Q_fr": list(j.Q_fr), "T": j.T, "F": j.F,
                 "shape": list(j.shape)},
        "meta": meta,
    }


def _draws(**extra) -> dict:
    out = {}
    x = torch.zeros(1, 1, KWARGS["shape"])
    for s in SEEDS:
        torch.manual_seed(s)
        loss = SCRAPLLoss(**KWARGS, **extra)
        after_init = torch.rand(4)
        torch.manual_seed(s)
        loss = SCRAPLLoss(**KWARGS, **extra)
        paths = []
        for _ in range(40):
            loss(x, x)
            paths.append(loss.curr_path_idx)
        out[s] = {"paths": paths, "after_init": after_init}
    return out


def _updates(n_theta: int, min_prob_frac: float) -> dict:
    loss = SCRAPLLoss(**KWARGS, n_theta=n_theta, min_prob_frac=min_prob_frac)
    calls = [c for c in UPDATES if c[2] < n_theta]
    steps = []
    for path_idx, val, theta_idx in calls:
        loss.update_prob(path_idx, val, theta_idx)
        steps.append({"probs": loss.probs.clone(), "all_log_vals": loss.all_log_vals.clone(),
                      "all_log_probs": loss.all_log_probs.clone()})
    g = torch.Generator().manual_seed(3)
    vals = {p: torch.rand(1, n_theta, generator=g, dtype=torch.float64) + 0.1 for p in range(loss.n_paths)}
    with tempfile.TemporaryDirectory() as d:
        for p, v in vals.items():
            torch.save(v, f"{d}/vals_{p}.pt")
        warm = SCRAPLLoss(**KWARGS, n_theta=n_theta, min_prob_frac=min_prob_frac)
        warm.load_probs_from_warmup_dir(d)
    return {"n_theta": n_theta, "min_prob_frac": min_prob_frac, "calls": [list(c) for c in calls], "steps": steps, "warmup_vals": vals,
            "warmup": {"probs": warm.probs.clone(), "all_log_vals": warm.all_log_vals.clone(),
                       "all_log_probs": warm.all_log_probs.clone()}}


def _tensor_dict() -> dict:
    data = {"a": torch.arange(3.0), 2: torch.ones(2, 2)}
    d = ReadOnlyTensorDict(data, persistent=False)
    return {"len": len(d), "contains_a": "a" in d, "contains_b": "b" in d, "item_a": d["a"].clone(),
            "item_2": d[2].clone(), "keys": sorted(str(k) for k in d.keys), "state_dict_keys": sorted(d.state_dict()),
            "persistent_state_dict_keys": sorted(ReadOnlyTensorDict(data).state_dict())}


def main() -> None:
    golden = {
        "kwargs": KWARGS,
        "attrs": _attrs(SCRAPLLoss(**KWARGS)),
        "global_draws": {"plain": _draws(), "all_first": _draws(sample_all_paths_first=True)},
        "updates": {name: _updates(**case) for name, case in CASES.items()},
        "tensor_dict": _tensor_dict(),
    }
    out = ROOT / "tests" / "fixtures" / "compat_golden.pt"
    torch.save(golden, out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    for case in golden["updates"].values():
        assert math.isclose(float(case["warmup"]["probs"].sum()), 1.0, abs_tol=1e-9)


if __name__ == "__main__":
    main()
