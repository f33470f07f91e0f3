"""Texture synthesis from noise by gradient descent on the 2-D scattering distance.

A 128 x 128 grey-level texture (generated in code: bricks with mortar lines, grain and
shading, see :func:`brick_texture`) is the target; an image that starts as noise
with the target's mean and standard deviation is optimised so that its second-order
scattering coefficients (``scattering2d``, J=3, L=8: 192 paths) match the target's.
Four arms run at **equal compute**:

* ``full``: Adam on the full-tree distance (every path at every step);
* ``scrapl_adam``: SCRAPL, one uniformly drawn path per step, plain Adam;
* ``p_adam``: SCRAPL with the path-aware P-Adam;
* ``p_saga``: SCRAPL with P-SAGA.

Equal compute: a full step costs ``c`` one-path steps, ``c`` measured at start-up
(median of interleaved timings of both; ``--cost-ratio`` fixes it instead), so the
SCRAPL arms get ``round(c * steps)`` steps for the full arm's ``steps``.  Compute
is reported in full-step equivalents.  The full-tree distance (the mean over all
paths of the per-path L2 distance, :meth:`scrapl.SCRAPLLoss.full_distance`) is
measured at ``--evals`` points of each arm, outside the compute budget.

Outputs in ``--out``: ``results.json`` (settings, measured cost ratio, distance vs
compute per arm), ``texture_grid.png`` (target, initial noise and each arm's result at
equal compute) and ``distance_vs_compute.png``.  The two PNGs need matplotlib
(``pip install scrapl[demo]``).

Run::

    python examples/texture_synthesis.py --out texture_out [--steps 150] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

import scrapl

ARMS = ("full", "scrapl_adam", "p_adam", "p_saga")


def brick_texture(size: int = 128, seed: int = 0) -> torch.Tensor:
    """A deterministic brick-wall texture in ``[0, 1]``, ``(size, size)`` float32.

    Bricks of 16 x 32 pixels (scaled with ``size``) in rows offset by half a brick,
    dark mortar lines, one random shade per brick, fine grain and a smooth
    illumination gradient; the randomness comes from a generator seeded with ``seed``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 pixels, got {size!r}")
    g = torch.Generator().manual_seed(seed)
    bh, bw = max(size // 8, 2), max(size // 4, 4)
    r = torch.arange(size).view(-1, 1).expand(size, size)
    c = torch.arange(size).view(1, -1).expand(size, size)
    row = r // bh
    cc = c + (row % 2) * (bw // 2)
    col = cc // bw
    shade = 0.55 + 0.25 * torch.rand(size // bh + 1, size // bw + 2, generator=g)
    img = shade[row, col]
    mortar = ((r % bh) < max(bh // 8, 1)) | ((cc % bw) < max(bw // 16, 1))
    img = torch.where(mortar, torch.full_like(img, 0.15), img)
    grain = torch.randn(size, size, generator=g)
    grain = torch.nn.functional.avg_pool2d(grain[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    light = 0.1 * (r + c).float() / (2 * size)
    return (img + 0.08 * grain + light).clamp(0, 1).to(torch.float32)


def measure_cost_ratio(loss: scrapl.SCRAPLLoss, x0: torch.Tensor, target: torch.Tensor, repeat: int = 3) -> float:
    """Median over ``repeat`` interleaved rounds of (full step time) / (mean one-path
    step time over a spread of paths); a step is forward + backward."""
    P = loss.n_paths
    paths = sorted({0, P // 4, P // 2, 3 * P // 4, P - 1})

    def full() -> None:
        x = x0.clone().requires_grad_(True)
        loss.full_distance(x, target).backward()

    def one(i: int) -> None:
        x = x0.clone().requires_grad_(True)
        loss(x, target, path_idx=i).backward()

    def timed(fn: Callable[[], None]) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    full(), one(paths[0])  # warm-up
    ratios = []
    for _ in range(repeat):
        t_full = timed(full)
        t_path = statistics.mean(timed(lambda i=i: one(i)) for i in paths)
        ratios.append(t_full / t_path)
    return statistics.median(ratios)


def run_arm(arm: str, transform_cfg: dict, target: torch.Tensor, x_init: torch.Tensor, n_steps: int, lr: float,
            seed: int, eval_at: list[int]) -> dict[str, Any]:
    """Optimise the image for ``n_steps`` steps; the full-tree distance at the step
    counts in ``eval_at``.  Returns the distances, the final image and the wall time."""
    opt_name = {"scrapl_adam": "sgd", "p_adam": "p_adam", "p_saga": "p_saga", "full": "sgd"}[arm]
    built = scrapl.build({"transform": transform_cfg, "sampler": "uniform", "optimizer": opt_name, "seed": seed})
    loss = built.loss
    x = torch.nn.Parameter(x_init.clone())
    if arm in ("full", "scrapl_adam"):
        opt = torch.optim.Adam([x], lr=lr)
    elif arm == "p_adam":
        opt = built.optimizer([x], lr=lr)
    else:  # P-SAGA then SGD: a larger step (SGD on the variance-reduced gradient)
        opt = built.optimizer([x], lr=lr * 1e3)
    dists: list[tuple[int, float]] = []
    evals = set(eval_at)
    t_train = 0.0

    def evaluate(step: int) -> None:
        with torch.no_grad():
            dists.append((step, float(loss.full_distance(x, target))))

    if 0 in evals:
        evaluate(0)
    for step in range(1, n_steps + 1):
        t = time.perf_counter()
        opt.zero_grad()
        d = loss.full_distance(x, target) if arm == "full" else loss(x, target)
        d.backward()
        if arm in ("full", "scrapl_adam"):
            opt.step()
            if arm == "scrapl_adam":
                loss.consume_path()
        else:
            opt.step()
        t_train += time.perf_counter() - t
        if step in evals:
            evaluate(step)
    return {"distances": dists, "image": x.detach()[0, 0].clone(), "train_s": t_train, "steps": n_steps}


def save_pictures(out: Path, target: torch.Tensor, x_init: torch.Tensor, results: dict, curves: dict) -> list[str]:
    """``texture_grid.png`` and ``distance_vs_compute.png``; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("target", target), ("initial noise", x_init[0, 0])] + [
        (f"{arm}\nfull dist {results[arm]['distances'][-1][1]:.3g}", results[arm]["image"]) for arm in results
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.8))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("Texture synthesis on the scattering2d distance at equal compute", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "texture_grid.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=arm)
    ax.set_xlabel("compute (full-step equivalents)")
    ax.set_ylabel("full-tree scattering distance")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "distance_vs_compute.png", dpi=100)
    plt.close(fig)
    return ["texture_grid.png", "distance_vs_compute.png"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--J", type=int, default=3)
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150, help="steps of the full arm (the compute budget)")
    ap.add_argument("--lr", type=float, default=0.02, help="Adam / P-Adam learning rate (P-SAGA+SGD: 1000 x)")
    ap.add_argument("--evals", type=int, default=6, help="distance measurements per arm")
    ap.add_argument("--cost-ratio", type=float, default=None, help="full-step / one-path-step cost (default: measured)")
    ap.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = ap.parse_args(argv)
    for name in ("steps", "evals"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.cost_ratio is not None and not args.cost_ratio > 0:
        print(f"error: --cost-ratio must be > 0, got {args.cost_ratio}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    transform_cfg = {"name": "scattering2d", "shape": [args.size, args.size], "J": args.J, "L": args.L}
    try:
        probe = scrapl.build({"transform": transform_cfg})
    except Exception as exc:  # invalid J / L / size: one line, exit 2
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    target = brick_texture(args.size, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    x_init = (target.mean() + target.std() * torch.randn(args.size, args.size, generator=g))[None, None]
    target4 = target[None, None]

    ratio = args.cost_ratio if args.cost_ratio is not None else measure_cost_ratio(probe.loss, x_init, target4)
    budget = args.steps  # full-step equivalents
    results: dict[str, dict] = {}
    curves: dict[str, list[tuple[float, float]]] = {}
    for arm in args.arms:
        cost = 1.0 if arm == "full" else 1.0 / ratio  # full-step equivalents per step
        n = args.steps if arm == "full" else max(1, round(args.steps * ratio))
        eval_at = sorted({round(k * n / args.evals) for k in range(args.evals + 1)})
        r = run_arm(arm, transform_cfg, target4, x_init, n, args.lr, args.seed, eval_at)
        results[arm] = r
        curves[arm] = [(s * cost, d) for s, d in r["distances"]]
        print(f"{arm:12s} {n:5d} steps, {r['train_s']:.1f} s: full distance {r['distances'][0][1]:.4g} -> "
              f"{r['distances'][-1][1]:.4g}", flush=True)

    summary = {
        "settings": {**vars(args), "transform": transform_cfg, "n_paths": probe.loss.n_paths},
        "cost_ratio_full_over_path": ratio,
        "cost_ratio_measured": args.cost_ratio is None,
        "budget_full_steps": budget,
        "arms": {
            arm: {"steps": r["steps"], "train_s": r["train_s"], "final_distance": r["distances"][-1][1],
                  "distance_vs_compute": curves[arm]}
            for arm, r in results.items()
        },
    }
    files = [] if args.no_plots else save_pictures(out, target, x_init, results, curves)
    summary["files"] = files
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"cost ratio full/path = {ratio:.1f}; wrote {', '.join(['results.json', *files])} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
