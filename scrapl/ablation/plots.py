"""PNG plots of a sweep (matplotlib, Agg backend).

* ``val_error_vs_steps.png`` / ``val_error_vs_time.png``: held-out error against
  optimizer steps / wall-clock seconds (setup included), mean over seeds with the
  95 % t band per arm.
* ``error_vs_cost.png`` (the paper's Figure 1): final error against training cost
  per step (ms), log-log, both divided by the supervised arm's when the sweep has
  one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from scrapl.ablation.report import mean_ci

__all__ = ["plot_sweep"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _band(records: Sequence[Mapping[str, Any]], x_key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """Mean curve and CI band of one arm, on the evaluation points common to all seeds."""
    n = min(len(r["curve"]) for r in records)
    xs, ms, lo, hi = [], [], [], []
    for i in range(n):
        x = sum(r["curve"][i][x_key] for r in records) / len(records)
        m, h = mean_ci([r["curve"][i]["theta_l1"] for r in records])
        xs.append(x)
        ms.append(m)
        lo.append(m - (h or 0.0))
        hi.append(m + (h or 0.0))
    return xs, ms, lo, hi


def plot_sweep(
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    baseline: float,
    title: str,
) -> list[Path]:
    """Write the three plots; returns their paths."""
    plt = _pyplot()
    out = Path(out_dir)
    written = []
    arms = [r["arm"] for r in rows]
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(arms)}
    for x_key, x_label, fname, logx in (
        ("step", "optimizer steps", "val_error_vs_steps.png", False),
        ("time_s", "wall-clock seconds (setup + training)", "val_error_vs_time.png", True),
    ):
        fig, ax = plt.subplots(figsize=(7.0, 4.4))
        for arm in arms:
            rs = [r for r in records if r["arm"] == arm]
            xs, ms, lo, hi = _band(rs, x_key)
            if logx:
                xs = [max(x, 1e-2) for x in xs]
            ax.plot(xs, ms, "-", color=colors[arm], label=f"{arm} (n={len(rs)})")
            ax.fill_between(xs, lo, hi, color=colors[arm], alpha=0.18, linewidth=0)
        ax.axhline(baseline, color="0.4", ls="--", lw=1, label="predict the middle")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel("held-out parameter error")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        p = out / fname
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)

    sup = next((r for r in rows if r["kind"] == "supervised"), None)
    e0 = sup["theta_l1"] if sup else 1.0
    c0 = sup["ms_per_step"] if sup else 1.0
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for r in rows:
        x, y = r["ms_per_step"] / c0, r["theta_l1"] / e0
        yerr = None if r["theta_l1_ci"] is None else [[min(r["theta_l1_ci"] / e0, y * 0.999)], [r["theta_l1_ci"] / e0]]
        ax.errorbar([x], [y], yerr=yerr, fmt="o", color=colors[r["arm"]], capsize=3, label=r["arm"])
        ax.annotate(r["arm"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(baseline / e0, color="0.4", ls="--", lw=1, label="predict the middle")
    ax.set_xscale("log")
    ax.set_yscale("log")
    unit = " (relative to supervised)" if sup else ""
    ax.set_xlabel(f"training cost per step{unit}" if sup else "training cost per step (ms)")
    ax.set_ylabel(f"final held-out error{unit}")
    ax.set_title("Error against cost per step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "error_vs_cost.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    return written
