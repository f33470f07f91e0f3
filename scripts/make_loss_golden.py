"""Generate golden data for :class:`scrapl.SCRAPLLoss` from the REFERENCE package.

Run with the scratch environment that holds ``scrapl-loss`` 0.1.0 (never the
project's own environment), from anywhere::

    /work/refenv/bin/python scripts/make_loss_golden.py

It writes ``tests/fixtures/loss_<name>.pt`` for each configuration in
:data:`CONFIGS`, ``tests/fixtures/loss_draws.pt`` and
``tests/fixtures/loss_readme_warmup.pt`` (pass part names, e.g. ``readme_warmup``, to
write only those).  Each configuration file
holds:

* ``kwargs``: the ``SCRAPLLoss`` constructor arguments, ``n_paths`` and the
  reference's ``scrapl_keys`` (``[n2, n_fr]`` per path index);
* ``x``, ``x_target``: float32 inputs of shape ``(batch, channels, samples)``;
* ``values``: ``{(p, use_rho_log1p): {path_idx: loss}}`` (reference ``forward`` with
  ``path_idx``; ``p`` in {1, 2}, rho identity or log1p);
* ``per_example``: ``{path_idx: (batch, channels) tensor}`` of one-example losses;
* ``grads``: ``{(p, use_rho_log1p, path_idx): d loss / d x}`` (p=2 identity for every
  path of :data:`GRAD_PATHS`; p=1 with either rho for the first);
* ``attach`` (tiny configuration only): a 6-step SGD run of a small synthesizer
  trained with the reference's ``attach_params`` gradient hooks (P-Adam + P-SAGA
  and P-Adam only with ``grad_mult=1e8``, P-SAGA only with ``grad_mult=1``), with explicit path indices and the configuration's
  ``x_target``; per-step losses, the post-hook gradients and the final parameters.

``loss_readme_warmup.pt`` holds the curvatures (``vals``, ``(7, 3)``) and the
probabilities computed by the reference README's warmup example, run verbatim.

``loss_draws.pt`` holds the path drawn by ``forward(..., seed=s)`` for uniform
probabilities (``torch.multinomial`` with a re-seeded generator) for several numbers
of paths and seeds, and the sequence drawn with ``sample_all_paths_first=True`` when
every forward passes a seed.

Everything stored is a tensor, number, string or container, so
``torch.load(path, weights_only=True)`` reads it.  The script is deterministic.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Make sure the reference package, not this repository's ``scrapl``, is imported.
sys.path = [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "scripts")]

import torch  # noqa: E402
from torch import nn  # noqa: E402

import scrapl  # noqa: E402

if "site-packages" not in str(Path(scrapl.__file__)):  # pragma: no cover - operator guard
    sys.exit(f"run this with the reference environment; imported scrapl from {scrapl.__file__}")
from scrapl import SCRAPLLoss  # noqa: E402  (the reference, scrapl-loss 0.1.0)

FIXTURES = ROOT / "tests" / "fixtures"

# name -> (JTFS kwargs, batch, channels, path indices to record)
CONFIGS: dict[str, tuple[dict, int, int, list[int]]] = {
    # 135 paths; 4 channel-level examples (batch 2 x channels 2).
    "j6_q8x2_jfr3_n4096": (dict(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2), 2, 2, [0, 1, 7, 14, 15, 67, 100, 134]),
    # The reference README's warmup example: 7 paths.
    "j3_q1x1_jfr2_n8096": (dict(shape=8096, J=3, Q1=1, Q2=1, J_fr=2, Q_fr=1), 2, 1, [0, 1, 2, 3, 4, 5, 6]),
}
GRAD_PATHS = {"j6_q8x2_jfr3_n4096": [14, 100], "j3_q1x1_jfr2_n8096": [3]}


def make_signals(n: int, batch: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 batches (batch, channels, n): AM/FM tones plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / 8192.0
    xs = []
    for _ in range(2):
        rows = []
        for _ in range(batch * channels):
            f0 = 200.0 + 1500.0 * float(torch.rand((), generator=g, dtype=torch.float64))
            am = 2.0 + 10.0 * float(torch.rand((), generator=g, dtype=torch.float64))
            fm = float(torch.rand((), generator=g, dtype=torch.float64))
            phase = 2 * math.pi * f0 * (2 ** (fm * t) - 1) / (fm * math.log(2))
            sig = torch.sin(phase) * (0.6 + 0.4 * torch.sin(2 * math.pi * am * t))
            sig = sig + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
            rows.append(sig)
        xs.append(torch.stack(rows).reshape(batch, channels, n).float())
    return xs[0], xs[1]


def make_config(name: str) -> dict:
    kwargs, batch, channels, paths = CONFIGS[name]
    x, x_target = make_signals(kwargs["shape"], batch, channels, seed=len(name))
    out: dict = {"kwargs": dict(kwargs), "x": x, "x_target": x_target, "values": {}, "per_example": {}, "grads": {}}
    loss_fn = SCRAPLLoss(**kwargs)  # built once: calc_dist reads p and use_rho_log1p at call time
    out["n_paths"] = int(loss_fn.n_paths)
    out["scrapl_keys"] = [[int(a), int(b)] for a, b in loss_fn.scrapl_keys]
    for p in (2, 1):
        for log1p in (False, True):
            loss_fn.p, loss_fn.use_rho_log1p = p, log1p
            vals = {}
            for i in paths:
                with torch.no_grad():
                    vals[i] = float(loss_fn(x, x_target, path_idx=i))
            out["values"][(p, log1p)] = vals
            if p == 2 and not log1p:
                for i in paths[:3]:
                    per = torch.zeros(batch, channels)
                    for b in range(batch):
                        for c in range(channels):
                            with torch.no_grad():
                                per[b, c] = loss_fn(x[b : b + 1, c : c + 1], x_target[b : b + 1, c : c + 1], path_idx=i)
                    out["per_example"][i] = per
            for i in GRAD_PATHS[name] if (p, log1p) == (2, False) else GRAD_PATHS[name][:1]:
                if (p, log1p) == (2, True):
                    continue
                xg = x.clone().requires_grad_(True)
                loss_fn(xg, x_target, path_idx=i).backward()
                out["grads"][(p, log1p, i)] = xg.grad.detach().clone()
    return out


def basis(n: int, k: int = 16) -> torch.Tensor:
    """(k, n) float32 sinusoid basis, a deterministic function of (n, k)."""
    t = torch.arange(n, dtype=torch.float64) / 8192.0
    rows = [torch.sin(2 * math.pi * (110.0 * (j + 1)) * t + 0.3 * j) for j in range(k)]
    return torch.stack(rows).float()


def make_attach(kwargs: dict, x_target: torch.Tensor) -> dict:
    """A tiny synthesizer trained by SGD with the reference's attach_params hooks."""
    g = torch.Generator().manual_seed(7)
    n = kwargs["shape"]
    lin0 = nn.Linear(4, 16)
    with torch.no_grad():
        lin0.weight.copy_(torch.randn(16, 4, generator=g) * 0.5)
        lin0.bias.copy_(torch.randn(16, generator=g) * 0.1)
    z = torch.randn(2, 4, generator=g)
    paths = [0, 3, 0, 5, 3, 6]
    runs = {}
    # P-SAGA alone runs with grad_mult=1: with 1e8 its float32 differences of huge
    # gradients are rounding noise (and the first SGD steps explode).
    runs_flags = {"p_adam_saga": (True, True, 1e8), "p_adam": (True, False, 1e8), "p_saga": (False, True, 1.0)}
    for name, (adam, saga, grad_mult) in runs_flags.items():
        lin = nn.Linear(4, 16)
        lin.load_state_dict(lin0.state_dict())
        b = basis(n)
        loss_fn = SCRAPLLoss(**kwargs, use_p_adam=adam, use_p_saga=saga, grad_mult=grad_mult)
        loss_fn.attach_params(lin.parameters())
        opt = torch.optim.SGD(lin.parameters(), lr=1e-3, weight_decay=0.01)
        losses, gw, gb = [], [], []
        for path in paths:
            opt.zero_grad()
            x_hat = torch.tanh(lin(z) @ b).unsqueeze(1)
            loss = loss_fn(x_hat, x_target, path_idx=path)
            loss.backward()
            losses.append(float(loss.detach()))
            gw.append(lin.weight.grad.detach().clone())
            gb.append(lin.bias.grad.detach().clone())
            opt.step()
        runs[name] = {
            "losses": losses,
            "grad_weight": torch.stack(gw),
            "grad_bias": torch.stack(gb),
            "weight": lin.weight.detach().clone(),
            "bias": lin.bias.detach().clone(),
            "scrapl_t": int(loss_fn.scrapl_t),
            "use_p_adam": adam,
            "use_p_saga": saga,
            "grad_mult": grad_mult,
        }
    return {
        "init_weight": lin0.weight.detach().clone(),
        "init_bias": lin0.bias.detach().clone(),
        "z": z,
        "paths": paths,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "n_basis": 16,
        "runs": runs,
    }


def make_draws() -> dict:
    seeds = [0, 1, 42, 123, 2024]
    seeded = {}
    for n_paths in (7, 135, 315):
        probs = torch.full((n_paths,), 1.0 / n_paths, dtype=torch.double)
        seeded[n_paths] = {}
        for s in seeds:
            gen = torch.Generator().manual_seed(s)
            seeded[n_paths][s] = int(torch.multinomial(probs, 1, generator=gen).item())
    # sample_all_paths_first with a seed at every forward (the reference's own logic).
    kwargs = CONFIGS["j3_q1x1_jfr2_n8096"][0]
    loss_fn = SCRAPLLoss(**kwargs, sample_all_paths_first=True)
    x = torch.zeros(1, 1, kwargs["shape"])
    first = []
    for s in range(10):
        with torch.no_grad():
            loss_fn(x, x, seed=100 + s)
        first.append(int(loss_fn.curr_path_idx))
    return {"seeds": seeds, "uniform_seeded": seeded, "all_paths_first_seeds": list(range(100, 110)),
            "all_paths_first_draws": first}


def make_readme_warmup() -> dict:
    """Run the reference README's warmup example verbatim (in a temporary directory)
    and record the curvatures and probabilities it computes."""
    import os
    import re
    import tempfile

    readme = Path(scrapl.__file__).parent / "README.md"
    blocks = re.findall(r"```python ?\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    code = next(b for b in blocks if "warmup_lc_hvp(" in b)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            ns: dict = {"nn": nn, "__name__": "readme"}
            exec(compile(code, "<README warmup example>", "exec"), ns)
            vals = torch.stack([torch.load(Path(tmp) / "scrapl_warmup" / f"vals_{i}.pt")[0] for i in range(7)])
            probs_file = torch.load(Path(tmp) / "scrapl_warmup" / "probs.pt")
        finally:
            os.chdir(cwd)
    loss_fn = ns["scrapl_loss"]
    return {"vals": vals.double(), "probs": loss_fn.probs.double().clone(), "probs_file": probs_file.double(),
            "n_paths": int(loss_fn.n_paths), "n_theta": int(loss_fn.n_theta)}


PARTS = ("configs", "draws", "readme_warmup")


def main(parts: tuple[str, ...] = PARTS) -> None:
    """Write the fixtures of ``parts`` (all by default; e.g. ``readme_warmup`` alone:
    ``python scripts/make_loss_golden.py readme_warmup``)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    if "readme_warmup" in parts:
        path = FIXTURES / "loss_readme_warmup.pt"
        torch.save(make_readme_warmup(), path)
        print(f"wrote {path}")
    if "draws" in parts:
        path = FIXTURES / "loss_draws.pt"
        torch.save(make_draws(), path)
        print(f"wrote {path}")
    if "configs" not in parts:
        return
    for name in CONFIGS:
        data = make_config(name)
        if name == "j3_q1x1_jfr2_n8096":
            data["attach"] = make_attach(CONFIGS[name][0], data["x_target"])
        path = FIXTURES / f"loss_{name}.pt"
        torch.save(data, path)
        print(f"wrote {path} ({path.stat().st_size:,} bytes, {data['n_paths']} paths)")


if __name__ == "__main__":
    unknown = [a for a in sys.argv[1:] if a not in PARTS]
    if unknown:
        sys.exit(f"unknown part(s) {unknown}; choose from {PARTS}")
    main(tuple(sys.argv[1:]) or PARTS)
