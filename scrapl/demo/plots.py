"""Plots of the sound-matching demo (matplotlib, Agg backend, PNG files).

* :func:`plot_path_probs`: sampling probabilities of the SCRAPL paths as a heatmap
  over temporal modulation rate (Hz, columns) and signed frequential scale
  (cycles/octave, rows; the sign is the spin, 0 is the frequential low-pass).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_path_probs", "path_grid"]

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def path_grid(
    probs: Sequence[float],
    temporal_rate_hz: Sequence[float | None],
    freq_scale: Sequence[float | None],
    spin: Sequence[int | None],
) -> tuple[np.ndarray, list[float], list[float]]:
    """Arrange per-path values on a (signed frequential scale x temporal rate) grid.

    Args:
        probs: one value per path.
        temporal_rate_hz: temporal modulation rate of each path (Hz).
        freq_scale: frequential scale of each path (cycles/octave, >= 0).
        spin: +1, -1 or 0 per path.

    Returns:
        ``(grid, rows, cols)``: ``grid[r, c]`` is the value of the path with signed
        scale ``rows[r]`` (``spin * freq_scale``, ascending) and rate ``cols[c]``
        (ascending); cells without a path are NaN.  Paths lacking a label are
        skipped.
    """
    if not (len(probs) == len(temporal_rate_hz) == len(freq_scale) == len(spin)):
        raise ValueError("probs, temporal_rate_hz, freq_scale and spin must have the same length")
    pts = []
    for p, r, f, s in zip(probs, temporal_rate_hz, freq_scale, spin):
        if r is None or f is None:
            continue
        signed = float(f) * (1 if s is None or s >= 0 else -1)
        pts.append((round(signed, 9), round(float(r), 9), float(p)))
    rows = sorted({q[0] for q in pts})
    cols = sorted({q[1] for q in pts})
    grid = np.full((len(rows), len(cols)), np.nan)
    ri = {v: i for i, v in enumerate(rows)}
    ci = {v: i for i, v in enumerate(cols)}
    for signed, rate, p in pts:
        i, j = ri[signed], ci[rate]
        grid[i, j] = p if np.isnan(grid[i, j]) else grid[i, j] + p
    return grid, rows, cols


def plot_path_probs(
    probs: Sequence[float],
    temporal_rate_hz: Sequence[float | None],
    freq_scale: Sequence[float | None],
    spin: Sequence[int | None],
    out_path: str | Path,
    *,
    title: str = "theta-IS path sampling probabilities",
) -> Path:
    """Heatmap of path probabilities (relative to uniform, log2 colour scale).

    Rows are the signed frequential scale ``spin * freq_scale`` in cycles per octave
    (positive: spin +1, negative: spin -1, zero: the frequential low-pass); columns
    are the temporal modulation rate in Hz.  The colour is
    ``log2(P * prob)`` (0 = uniform).

    Returns:
        ``out_path``.
    """
    plt = _pyplot()
    probs = np.asarray(probs, dtype=float)
    n = len(probs)
    grid, rows, cols = path_grid(probs, temporal_rate_hz, freq_scale, spin)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.log2(grid * n)
    finite = rel[np.isfinite(rel)]
    lim = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(cols) + 2.5), max(4.0, 0.32 * len(rows) + 1.8)))
    masked = np.ma.masked_invalid(rel)
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("0.85")
    im = ax.imshow(masked, aspect="auto", origin="lower", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f"{c:.3g}" for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r:+.3g}" if r != 0 else "0 (low-pass)" for r in rows], fontsize=7)
    ax.set_xlabel("temporal modulation rate (Hz)")
    ax.set_ylabel("frequential scale (cycles/octave), sign = spin")
    ax.set_title(title, fontsize=10)
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label("log2(probability / uniform)")
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
