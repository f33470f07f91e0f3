"""theta-IS warmup on a task: the warmup of a ``theta_is`` arm and ``scrapl warmup``.

One function, :func:`task_warmup`, computes the curvatures of a built loss's paths for
a task's model and deterministic synthesis (:meth:`scrapl.samplers.ThetaISSampler.warmup`);
the ablation runner calls it before a ``theta_is`` arm trains, and
:func:`run_warmup_job` (what ``scrapl warmup CONFIG`` does) calls it for any config
and any registered task, writing per-path files that resume and shard across
processes or ``torch.distributed`` ranks.
"""

from __future__ import annotations

import copy
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from scrapl.ablation.spec import TaskSpec, WarmupSpec
from scrapl.ablation.tasks import Task, get_task_class, make_task
from scrapl.configs import SeedInt, StrictModel

__all__ = ["WarmupJob", "task_warmup", "with_n_theta", "warmup_identity", "run_warmup_job"]


class WarmupJob(StrictModel):
    """What a warmup needs besides the scrapl config.

    Attributes:
        task: the registered task and its settings (as in an ablation spec).
        warmup: warmup data and power iterations (as in an ablation arm; 8 power
            iterations by default, the demo's and the shipped ablation's).
        seed: seed of the model weights the curvatures are computed for (the
            ablation runner's model of that seed).
    """

    task: TaskSpec = TaskSpec()
    warmup: WarmupSpec = WarmupSpec(n_iter=8)
    seed: SeedInt = 0


def task_warmup(
    built: Any,
    task: Task,
    model: nn.Module,
    warmup: WarmupSpec,
    *,
    save_dir: str | os.PathLike | None = None,
    paths: Sequence[int] | range | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    overwrite: bool = False,
    identity: Mapping[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
) -> Tensor:
    """theta-IS warmup of ``built`` (a :func:`scrapl.build` result) for ``model`` on
    ``task``; the sampler's probabilities are updated with the curvatures found.

    ``save_dir``, ``paths``, ``shard``, ``overwrite``, ``stats`` and ``identity``
    (recorded in ``warmup.json`` as ``settings``): see :func:`scrapl.samplers.run_warmup`.

    Returns:
        ``(P, U)`` curvatures (NaN rows for paths outside ``paths`` / ``shard``).

    Raises:
        TypeError: the sampler is not theta-IS.
    """
    warm = getattr(built.sampler, "warmup", None)
    if warm is None:
        raise TypeError(f"the theta-IS warmup needs sampler 'theta_is'; this config has {type(built.sampler).__name__}")
    model_kw, render_kw = task.warmup_batches(warmup.n_batches, warmup.batch_size, warmup.seed)
    loss = built.loss

    def dist_fn(x: Tensor, x_hat: Tensor, path_idx: int) -> Tensor:
        return loss.path_distance(x_hat, x, path_idx, reduction="mean")

    def theta_fn(**kw: Tensor) -> Tensor:
        return model(task.model_input(**kw))

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return warm(
            dist_fn, theta_fn, task.render_for_warmup, model_kw, params, render_kw,
            paths=paths, shard=shard, save_dir=None if save_dir is None else os.fspath(save_dir),
            n_iter=warmup.n_iter, progress=progress, generator=torch.Generator().manual_seed(warmup.seed + 1),
            overwrite=overwrite, settings=identity, stats=stats,
        )
    finally:
        for p in params:
            p.grad = None


def with_n_theta(scrapl_cfg: Mapping[str, Any], n_params: int) -> dict[str, Any]:
    """A copy of ``scrapl_cfg`` in which a ``theta_is`` sampler has ``n_theta =
    n_params`` (set when the config leaves it out); other samplers are kept as they are.

    Raises:
        ValueError: the config sets another ``sampler.n_theta``.
    """
    cfg = copy.deepcopy(dict(scrapl_cfg))
    sampler = cfg.get("sampler")
    sampler = {"name": sampler} if isinstance(sampler, str) else sampler
    if isinstance(sampler, Mapping) and sampler.get("name") == "theta_is":
        sampler = dict(sampler)
        n_theta = sampler.setdefault("n_theta", n_params)
        if n_theta != n_params:
            raise ValueError(f"sampler.n_theta must be {n_params} for this task (one per parameter), got {n_theta!r}")
        cfg["sampler"] = sampler
    return cfg


def warmup_identity(cfg: Mapping[str, Any], job: WarmupJob) -> dict[str, Any]:
    """What a warmup's results depend on besides :func:`~scrapl.samplers.run_warmup`'s
    own arguments: the transform and loss config, the sampler's ``n_theta`` / ``agg``,
    the task, the model seed and the warmup data (recorded in ``warmup.json``; the
    optimizer and ``min_prob_frac`` do not change the curvatures)."""
    sampler = cfg.get("sampler") or {}
    job_json = job.model_dump(mode="json")
    return {
        "transform": cfg.get("transform"),
        "loss": cfg.get("loss"),
        "sampler": {k: sampler.get(k) for k in ("n_theta", "agg")},
        "task": job_json["task"],
        "seed": job_json["seed"],
        "warmup": job_json["warmup"],
    }


def _maybe_init_distributed(log: Callable[[str], None]) -> bool:
    """Initialise a gloo/nccl process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return False
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        log(f"torch.distributed: rank {dist.get_rank()} of {dist.get_world_size()} ({backend})")
        return True
    return False


def run_warmup_job(
    scrapl_cfg: Mapping[str, Any],
    job: WarmupJob | Mapping[str, Any] | None = None,
    *,
    out_dir: str | os.PathLike,
    shard: tuple[int, int] | None = None,
    path_range: tuple[int | None, int | None] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """What ``scrapl warmup`` does: build ``scrapl_cfg`` with a theta-IS sampler, warm
    up (a share of) its paths for the model of ``job.seed`` on ``job.task``, write the
    files to ``out_dir`` (``probs.pt`` once every path is there) and return a JSON-able
    summary (``paths_in_this_run``: computed by this call; ``paths_resumed``: read
    from the folder).

    Args:
        scrapl_cfg: a scrapl config (its sampler becomes ``theta_is``, unless it is
            one, with one curvature per task parameter).
        job: :class:`WarmupJob` (or its dict; default: the chirplet task).
        out_dir: folder of ``vals_{p}.pt``, ``warmup.json`` and ``probs.pt``.
        shard: ``(index, count)``: this process's share of the paths.
        path_range: ``(start, stop)``: only these paths (``None`` ends: 0 and ``P``).
        overwrite: delete ``out_dir``'s earlier results first.

    Raises:
        ValueError: a bad range, another ``n_theta``, ``shard`` under torchrun, or
            results in ``out_dir`` from other settings.
    """
    import torch.distributed as dist

    import scrapl
    from scrapl.samplers import merge_warmup_dir

    job = job if isinstance(job, WarmupJob) else WarmupJob.model_validate(job or {})
    n_params = len(get_task_class(job.task.name).param_names)
    sampler = scrapl_cfg.get("sampler")
    name = sampler if isinstance(sampler, str) else dict(sampler or {}).get("name")
    base = scrapl_cfg if name == "theta_is" else {**scrapl_cfg, "sampler": {"name": "theta_is"}}
    cfg = with_n_theta(base, n_params)
    built = scrapl.build(cfg)
    n_paths = built.transform.n_paths
    task = make_task(job.task.name, job.task.settings, built.transform.n_samples)
    model = task.make_model(job.seed)
    paths: range | None = None
    if path_range is not None:
        start = path_range[0] or 0
        stop = n_paths if path_range[1] is None else path_range[1]
        if not 0 <= start < stop <= n_paths:
            raise ValueError(f"paths must lie within 0:{n_paths}, got {start}:{stop}")
        paths = range(start, stop)
    out = Path(out_dir)
    started_dist = _maybe_init_distributed(log)
    try:
        if shard is not None and dist.is_available() and dist.is_initialized():
            raise ValueError("shard cannot be combined with torchrun (each rank already takes a share)")
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        stats: dict[str, Any] = {}
        task_warmup(built, task, model, job.warmup, save_dir=out, paths=paths, shard=shard, progress=progress,
                    overwrite=overwrite, identity=warmup_identity(cfg, job), stats=stats)
        secs = time.perf_counter() - t0
        if started_dist:  # every rank done before the process group is torn down below
            dist.barrier()
    finally:
        if started_dist:
            dist.destroy_process_group()
    present = sorted(int(f[5:-3]) for f in os.listdir(out) if re.fullmatch(r"vals_\d+\.pt", f))
    complete = len(present) == n_paths
    if complete:
        merge_warmup_dir(out, n_paths, n_params, require_complete=True, write=True)
    return {
        "out": str(out),
        "task": job.task.name,
        "n_paths": n_paths,
        "paths_in_this_run": len(stats.get("computed", ())),
        "paths_resumed": len(stats.get("resumed", ())),
        "paths_done_in_dir": len(present),
        "complete": complete,
        "probs": str(out / "probs.pt") if complete else None,
        "seconds": round(secs, 2),
        "n_iter": job.warmup.n_iter,
        "batch_size": job.warmup.batch_size,
        "n_batches": job.warmup.n_batches,
    }

