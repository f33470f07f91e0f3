"""``scrapl.ablation.ablate``: run a spec's sweep into a folder and write its report."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from scrapl.ablation.report import format_table, markdown_stage_table, markdown_table, runs_csv, summarize
from scrapl.ablation.spec import AblationSpec, load_spec
from scrapl.ablation.store import RunStore

__all__ = ["SweepResult", "ablate"]


@dataclass
class SweepResult:
    """What :func:`ablate` returns.

    Attributes:
        spec: the validated spec.
        out: the output folder.
        records: every finished run (spec order).
        rows: one summary row per arm (see :func:`scrapl.ablation.report.summarize`).
        baseline: the task's predict-the-middle errors.
        threshold: the steps-to-threshold level.
        ran: runs computed by this call; skipped: runs found finished.
        files: files written.
    """

    spec: AblationSpec
    out: Path
    records: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    baseline: dict[str, float]
    threshold: float
    ran: int
    skipped: int
    files: list[Path]
    param_names: tuple[str, ...]

    def table(self) -> str:
        """The printed summary table."""
        return format_table(self.rows, self.param_names, self.baseline, self.threshold, self.spec.budget.steps)

    def row(self, arm: str) -> dict[str, Any]:
        """The summary row of ``arm``."""
        for r in self.rows:
            if r["arm"] == arm:
                return r
        raise KeyError(arm)


def ablate(
    spec: AblationSpec | Mapping[str, Any] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    executor: Literal["local", "ray"] = "local",
    workers: int = 0,
    address: str | None = None,
    gpus: float = 0.0,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> SweepResult:
    """Run every (arm, seed) of ``spec`` not yet finished in ``out``, then write the
    report (``runs.csv``, ``summary.json``, ``summary.md``, plots).

    Args:
        spec: an :class:`AblationSpec`, a mapping or a YAML/JSON file.
        out: output folder (created; a folder of another spec is refused).
        executor: ``"local"`` or ``"ray"``.
        workers: local executor: 0 runs in this process, N > 0 in N worker
            processes (torch threads split among them unless ``spec.threads``).
        address: Ray cluster address (``None``: start a local Ray).
        gpus: GPUs requested per Ray task.
        progress: tqdm bars (sweep and per run).
        plots: write the PNG plots (needs matplotlib).
        log: receives one line per finished run.

    Raises:
        ValueError: invalid spec (pydantic errors with locations), a foreign output
            folder, bad executor options, Ray unreachable.
    """
    spec = load_spec(os.fspath(spec) if isinstance(spec, os.PathLike) else spec)
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if executor == "local" and address is not None:
        raise ValueError("address is only used by the ray executor")
    store = RunStore(out, spec)
    import torch

    from scrapl.ablation.runner import build_task

    threads_before = torch.get_num_threads()
    if spec.threads is not None and executor == "local" and workers == 0:
        # the task's features are computed with the runs' thread count (bit-equal to workers)
        torch.set_num_threads(spec.threads)
    try:
        task = build_task(spec)  # validates the task settings before anything runs
        return _sweep(spec, store, task, executor=executor, workers=workers, address=address, gpus=gpus,
                      progress=progress, plots=plots, log=log)
    finally:
        torch.set_num_threads(threads_before)


def _sweep(spec: AblationSpec, store: RunStore, task: Any, *, executor: str, workers: int, address: str | None,
           gpus: float, progress: bool, plots: bool, log: Callable[[str], None]) -> SweepResult:
    store.prepare()
    all_runs = spec.runs()
    todo = [(a, s) for a, s in all_runs if not store.done(a, s)]
    skipped = len(all_runs) - len(todo)
    if skipped:
        log(f"{skipped} of {len(all_runs)} runs already finished in {store.root}; running {len(todo)}")
    spec_json = spec.model_dump(mode="json")
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(all_runs), initial=skipped, desc="sweep runs", dynamic_ncols=True)

    def on_done(record: dict[str, Any]) -> None:
        store.save(record)
        log(f"[{record['arm']} seed {record['seed']}] theta_l1 {record['final']['theta_l1']:.4f}, "
            f"{record['steps']} steps, {record['ms_per_step']:.1f} ms/step")
        if bar is not None:
            bar.update(1)

    t0 = time.perf_counter()
    try:
        if executor == "ray":
            from scrapl.ablation.executors import run_ray

            run_ray(spec_json, todo, on_done, address=address, threads=spec.threads, gpus=gpus)
        else:
            from scrapl.ablation.executors import run_local

            if workers == 0:
                # in this process: reuse the task built above (its cached batches)
                from scrapl.ablation.runner import run_one

                for arm, seed in todo:
                    on_done(run_one(spec, arm, seed, threads=spec.threads, progress=progress, task=task))
            else:
                run_local(spec_json, todo, on_done, workers=workers, threads=spec.threads, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    return _report(spec, store, task, ran=len(todo), skipped=skipped, wall=wall, plots=plots)


def _report(spec: AblationSpec, store: RunStore, task: Any, *, ran: int, skipped: int, wall: float,
            plots: bool) -> SweepResult:
    records = [store.load(a, s) for a, s in spec.runs()]
    names = tuple(task.param_names)
    baseline = task.baseline()
    threshold = spec.threshold if spec.threshold is not None else 0.5 * baseline["theta_l1"]
    rows = summarize(records, [a.name for a in spec.arms], names, threshold)
    files = [store.write_text("runs.csv", runs_csv(records, names, threshold))]
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        machine["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    summary = {
        "spec": spec.name,
        "hash": store.hash,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": machine,
        "threshold": threshold,
        "baseline_predict_middle": baseline,
        "arms": rows,
        "wall_seconds_this_call": round(wall, 2),
        "runs_computed_this_call": ran,
        "runs_skipped": skipped,
    }
    files.append(store.write_text("summary.json", json.dumps(summary, indent=2) + "\n"))
    table = markdown_table(rows, names, baseline, threshold, spec.budget.steps)
    md = (f"# {spec.name}\n\n{summary['date_utc']} UTC, {machine['platform']}, {machine['cpus']} CPUs; "
          f"{spec.budget.steps} steps (unless an arm sets its own), batch {spec.budget.batch_size}; "
          "mean over seeds with 95 % t interval.\n\n"
          f"{table}\n")
    stage_table = markdown_stage_table(rows)
    if stage_table:
        md += f"\nTraining step by stage (mean ms per step: model forward, synth render, loss, backward, optimizer):\n\n{stage_table}\n"
    files.append(store.write_text("summary.md", md))
    if plots:
        from scrapl.ablation.plots import plot_sweep

        files += plot_sweep(records, rows, store.root, baseline=baseline["theta_l1"], title=spec.name)
    return SweepResult(spec, store.root, records, rows, baseline, threshold, ran, skipped, files, names)
