"""``scrapl demo``: a quick preset of the ablation machinery on the chirplet task.

One seed, one budget, these arms (see :mod:`scrapl.ablation`, which trains every
arm through the same loop):

* ``scrapl``: the full method, one random JTFS path per step with theta-IS path
  probabilities (warmup before training) and the ``p_adam_saga`` optimizer;
* ``full_jtfs``: the distance over all paths of the same transform, Adam;
* ``mss``: auraloss's multi-resolution STFT loss, Adam;
* ``supervised``: an L1 loss on the parameters (a reference point of the
  error-against-cost plot).

The held-out parameter error of each is compared with predicting the middle of the
ranges.  Entry points: :func:`demo_spec`, :func:`run_demo`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping


from scrapl.demo.settings import DemoSettings, default_scrapl_config

__all__ = ["demo_spec", "run_demo", "format_summary", "format_stage_split"]


def demo_spec(scrapl_cfg: Mapping[str, Any] | None = None, settings: DemoSettings | None = None) -> Any:
    """The :class:`~scrapl.ablation.AblationSpec` of the demo for a scrapl config
    (default :data:`~scrapl.demo.settings.DEFAULT_SCRAPL_CONFIG`) and settings."""
    from scrapl.ablation import AblationSpec

    settings = DemoSettings() if settings is None else settings
    base = default_scrapl_config() if scrapl_cfg is None else dict(scrapl_cfg)
    base = {k: v for k, v in base.items() if k != "seed"}
    warm = settings.warmup.model_dump()
    arms: dict[str, dict[str, Any]] = {
        "scrapl": {"name": "scrapl", "warmup": warm, **({"lr": settings.scrapl_lr} if settings.scrapl_lr else {})},
        "scrapl_uniform": {"name": "scrapl_uniform", "sampler": {"name": "uniform"},
                           **({"lr": settings.scrapl_lr} if settings.scrapl_lr else {})},
        "full_jtfs": {"name": "full_jtfs", "kind": "full_jtfs", "lr": settings.full_lr,
                      **({"steps": min(settings.full_steps, settings.steps)} if settings.full_steps else {})},
        "mss": {"name": "mss", "kind": "mss", "lr": settings.mss_lr},
        "supervised": {"name": "supervised", "kind": "supervised", "lr": settings.supervised_lr},
    }
    return AblationSpec.model_validate({
        "name": "scrapl demo: chirplet sound matching",
        "task": settings.task_spec(),
        "base": base,
        "arms": [arms[m] for m in settings.methods],
        "seeds": [settings.seed],
        "budget": {"steps": settings.steps, "val_every": settings.val_every, "batch_size": settings.batch_size},
        "threads": settings.threads,
    })


def run_demo(
    scrapl_cfg: Mapping[str, Any] | None = None,
    settings: DemoSettings | None = None,
    *,
    out_dir: str | os.PathLike,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> Any:
    """Run the demo preset into ``out_dir`` (resumable like any sweep); returns the
    :class:`~scrapl.ablation.SweepResult`.  Also writes ``path_probs.png`` (the
    theta-IS probabilities of the ``scrapl`` arm) when that arm ran."""
    from scrapl.ablation import ablate

    settings = DemoSettings() if settings is None else settings
    spec = demo_spec(scrapl_cfg, settings)
    result = ablate(spec, out_dir, workers=settings.workers, progress=progress, log=log)
    rec = next((r for r in result.records if r["arm"] == "scrapl"), None)
    probs = None if rec is None else rec["info"].get("probs")
    if probs is not None:
        import scrapl
        from scrapl.demo.plots import plot_path_probs

        built = scrapl.build({**spec.base, "sampler": {"name": "uniform"}})
        infos = built.transform.path_infos
        sr = settings.synth.sr
        result.files.append(plot_path_probs(
            probs, [i.temporal_rate_hz(sr) for i in infos], [i.freq_scale for i in infos], [i.spin for i in infos],
            result.out / "path_probs.png",
            title=f"SCRAPL theta-IS path probabilities, {len(infos)} paths",
        ))
    return result


def format_stage_split(rows: Any) -> str:
    """A table of each arm's mean ms per step by stage (model, render, loss, backward,
    optimizer), from the runs' ``stage_ms``."""
    from scrapl.ablation.runner import STAGES

    lines = [f"  {'ms/step by stage':<19}" + " ".join(f"{s:>9}" for s in (*STAGES, "total"))]
    for r in rows:
        st = r.get("stage_ms")
        if st:
            lines.append(f"  {r['arm']:<19}" + " ".join(f"{st.get(s, 0.0):9.1f}" for s in STAGES)
                         + f" {r['ms_per_step']:9.1f}")
    return "\n".join(lines)


def format_summary(result: Any) -> str:
    """The printed summary: the sweep table and the demo's verdicts."""
    lines = [result.table()]
    rows = {r["arm"]: r for r in result.rows}
    mid = result.baseline
    lines.append(
        "theta_l1: mean |theta_hat - theta| of the [0,1]-normalised (AM, FM) rates on held-out chirplets; "
        f"predicting the middle gives {mid['theta_l1']:.3f}"
    )
    s = rows.get("scrapl")
    if s is not None:
        half = {p: 0.5 * mid[f"theta_l1_{p}"] for p in result.param_names}
        ok = all(s[f"theta_l1_{p}"] <= half[p] for p in result.param_names)
        lines.append(
            "SCRAPL per-parameter errors " + ", ".join(f"{p} {s[f'theta_l1_{p}']:.3f}" for p in result.param_names)
            + f": {'each at most' if ok else 'NOT each at most'} half the predict-the-middle level "
            + "(" + ", ".join(f"{half[p]:.3f}" for p in result.param_names) + ")"
        )
        f = rows.get("full_jtfs")
        if f is not None:
            lines.append(
                f"SCRAPL / full JTFS: error ratio {s['theta_l1'] / f['theta_l1']:.2f}, "
                f"cost per step {f['ms_per_step'] / max(s['ms_per_step'], 1e-9):.1f}x cheaper"
            )
        m = rows.get("mss")
        if m is not None:
            lines.append(f"MSS: {m['theta_l1']:.3f} (SCRAPL {s['theta_l1']:.3f})")
    lines.append(format_stage_split(result.rows))
    return "\n".join(lines)
