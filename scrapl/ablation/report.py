"""Summaries of a sweep: per-arm means with 95 % t confidence intervals, tables.

The confidence interval of a mean over ``n`` seeds is ``mean +- t_{0.975, n-1} *
s / sqrt(n)`` with ``s`` the sample standard deviation (``n - 1`` in the
denominator); with one seed it is undefined (reported as ``None``).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

__all__ = ["t_quantile_975", "mean_ci", "summarize", "runs_csv", "format_table", "markdown_table", "markdown_stage_table"]

# Two-sided 95 % Student t quantiles t_{0.975, df} for df = 1 .. 30.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)


def t_quantile_975(df: int) -> float:
    """``t_{0.975}`` of Student's t with ``df >= 1`` degrees of freedom (a table to
    df = 30, then the Cornish-Fisher expansion around the normal 1.95996)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: Sequence[float]) -> tuple[float, float | None]:
    """``(mean, half_width)`` of the 95 % t interval (``None`` for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    m = sum(values) / n
    if n == 1:
        return m, None
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, t_quantile_975(n - 1) * s / math.sqrt(n)


def _steps_to(curve: Sequence[Mapping[str, Any]], threshold: float) -> int | None:
    for rec in curve:
        if rec["theta_l1"] <= threshold:
            return int(rec["step"])
    return None


def summarize(
    records: Sequence[Mapping[str, Any]],
    arm_order: Sequence[str],
    param_names: Sequence[str],
    threshold: float,
) -> list[dict[str, Any]]:
    """One row per arm (in ``arm_order``): ``n`` seeds, mean and CI half-width of
    ``theta_l1`` and of each parameter's error, mean steps to ``threshold`` (runs that
    never reach it are counted in ``reached``), mean ms/step, total CPU seconds, max
    peak memory."""
    rows = []
    for arm in arm_order:
        rs = [r for r in records if r["arm"] == arm]
        if not rs:
            continue
        row: dict[str, Any] = {"arm": arm, "kind": rs[0]["kind"], "n": len(rs)}
        for key in ["theta_l1"] + [f"theta_l1_{p}" for p in param_names]:
            m, h = mean_ci([r["final"][key] for r in rs])
            row[key] = m
            row[f"{key}_ci"] = h
        reached = [s for s in (_steps_to(r["curve"], threshold) for r in rs) if s is not None]
        row["reached"] = len(reached)
        row["steps_to_threshold"] = sum(reached) / len(reached) if reached else None
        row["ms_per_step"] = sum(r["ms_per_step"] for r in rs) / len(rs)
        stages = [r["stage_ms"] for r in rs if isinstance(r.get("stage_ms"), Mapping)]
        if stages:
            row["stage_ms"] = {k: sum(st.get(k, 0.0) for st in stages) / len(stages) for k in stages[0]}
        row["setup_seconds"] = sum(r["setup_seconds"] for r in rs) / len(rs)
        row["cpu_seconds"] = sum(r["cpu_seconds"] for r in rs)
        row["train_cpu_seconds"] = sum(r.get("train_cpu_seconds", math.nan) for r in rs) / len(rs)
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rs)
        row["steps"] = sum(r["steps"] for r in rs) / len(rs)
        rows.append(row)
    return rows


def runs_csv(records: Sequence[Mapping[str, Any]], param_names: Sequence[str], threshold: float) -> str:
    """``runs.csv``: one row per run."""
    cols = ["arm", "kind", "seed", "theta_l1", *[f"theta_l1_{p}" for p in param_names], "steps",
            "steps_to_threshold", "ms_per_step", "train_seconds", "train_cpu_seconds", "setup_seconds", "cpu_seconds", "peak_rss_mib",
            "threads"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        vals = {**r, **r["final"], "steps_to_threshold": _steps_to(r["curve"], threshold)}
        w.writerow(["" if vals.get(c) is None else vals.get(c) for c in cols])
    return buf.getvalue()


def _fmt_err(m: float, h: float | None) -> str:
    return f"{m:.3f}" if h is None else f"{m:.3f} ± {h:.3f}"


def _cells(rows: Sequence[Mapping[str, Any]], param_names: Sequence[str], baseline: Mapping[str, float],
           threshold: float, budget_steps: int) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "n", "theta_l1 (95% CI)", *[f"err_{p}" for p in param_names], "steps",
              f"steps to {threshold:.3g}", "ms/step", "CPU s", "peak MiB"]
    out = []
    for r in rows:
        reached = r["reached"]
        steps = r.get("steps", budget_steps)
        if r["steps_to_threshold"] is None:
            stt = f"> {steps:.0f}"
        else:
            stt = f"{r['steps_to_threshold']:.0f}" + ("" if reached == r["n"] else f" ({reached}/{r['n']})")
        out.append([
            r["arm"], str(r["n"]), _fmt_err(r["theta_l1"], r["theta_l1_ci"]),
            *[_fmt_err(r[f"theta_l1_{p}"], r[f"theta_l1_{p}_ci"]) for p in param_names], f"{steps:.0f}",
            stt, f"{r['ms_per_step']:.1f}", f"{r['cpu_seconds']:.0f}", f"{r['peak_rss_mib']:.0f}",
        ])
    out.append(["predict the middle", "-", f"{baseline['theta_l1']:.3f}",
                *[f"{baseline[f'theta_l1_{p}']:.3f}" for p in param_names], "-", "-", "-", "-", "-"])
    return header, out


def format_table(rows: Sequence[Mapping[str, Any]], param_names: Sequence[str], baseline: Mapping[str, float],
                 threshold: float, budget_steps: int) -> str:
    """A plain-text table (the printed summary)."""
    header, cells = _cells(rows, param_names, baseline, threshold, budget_steps)
    widths = [max(len(x[i]) for x in (header, *cells)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, Any]], param_names: Sequence[str], baseline: Mapping[str, float],
                   threshold: float, budget_steps: int) -> str:
    """The same table in Markdown."""
    header, cells = _cells(rows, param_names, baseline, threshold, budget_steps)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in cells:
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown_stage_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Mean ms per training step by stage (``stage_ms`` of the rows), in Markdown;
    empty when no row has it."""
    rows = [r for r in rows if r.get("stage_ms")]
    if not rows:
        return ""
    stages = list(rows[0]["stage_ms"])
    lines = ["| arm | " + " | ".join(stages) + " | total |", "|" + "---|" * (len(stages) + 2)]
    for r in rows:
        cells = [f"{r['stage_ms'].get(s, 0.0):.1f}" for s in stages]
        lines.append(f"| {r['arm']} | " + " | ".join(cells) + f" | {r['ms_per_step']:.1f} |")
    return "\n".join(lines)
