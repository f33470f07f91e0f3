"""theta-IS warmup and path listings for the demo task.

The warmup itself is :meth:`scrapl.samplers.ThetaISSampler.warmup` (curvatures of
every path for the encoder/synth pair, written as ``vals_{p}.pt`` files, resumable,
shardable over processes or ``torch.distributed`` ranks).  This module supplies the
demo's encoder, synthesizer and warmup batches, and helpers to read probabilities
back and to tabulate the paths.
"""

from __future__ import annotations

import copy
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from scrapl.demo.model import ChirpletEncoder
from scrapl.demo.settings import DemoSettings
from scrapl.demo.synth import ChirpletSynth
from scrapl.demo.task import make_encoder, make_synth

__all__ = [
    "prepare_scrapl_config",
    "warmup_batches",
    "run_demo_warmup",
    "run_warmup_cli",
]


def prepare_scrapl_config(scrapl_cfg: Mapping[str, Any], settings: DemoSettings, n_params: int = 2) -> dict[str, Any]:
    """The scrapl config the demo builds: a ``theta_is`` sampler gets
    ``n_theta = n_params`` unless the config sets it (it must then equal ``n_params``).

    Raises:
        ValueError: the config's ``sampler.n_theta`` differs from ``n_params``, or the
            transform length is missing.
    """
    cfg = copy.deepcopy(dict(scrapl_cfg))
    sampler = cfg.get("sampler")
    if isinstance(sampler, str):
        sampler = {"name": sampler}
    if isinstance(sampler, Mapping) and sampler.get("name") == "theta_is":
        sampler = dict(sampler)
        n_theta = sampler.setdefault("n_theta", n_params)
        if n_theta != n_params:
            raise ValueError(
                f"sampler.n_theta must be {n_params} for the {settings.task} demo (one per synth parameter), got {n_theta!r}"
            )
        cfg["sampler"] = sampler
    return cfg


def warmup_batches(
    settings: DemoSettings, synth: ChirpletSynth
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Unlabeled warmup signals and the reconstruction delays of the synth.

    Returns:
        ``(theta_fn_kwargs, synth_fn_kwargs)``: ``settings.warmup.n_batches`` dicts
        ``{"x": (B, 1, N)}`` and ``{"shifts": (B,)}`` (fixed delays make the synth
        deterministic, as the curvature estimate requires).
    """
    w = settings.warmup
    g = torch.Generator().manual_seed(w.seed)
    theta_kw, synth_kw = [], []
    for _ in range(w.n_batches):
        theta = torch.rand(w.batch_size, synth.n_params, generator=g)
        with torch.no_grad():
            x = synth(theta, generator=g)
        shifts_hat = synth.sample_shifts(w.batch_size, g)
        if not settings.synth.independent_shift:
            shifts_hat = torch.zeros_like(shifts_hat)
        theta_kw.append({"x": x})
        synth_kw.append({"shifts": shifts_hat})
    return theta_kw, synth_kw


def run_demo_warmup(
    built: Any,
    encoder: ChirpletEncoder,
    synth: ChirpletSynth,
    settings: DemoSettings,
    *,
    save_dir: str | os.PathLike | None,
    paths: Sequence[int] | range | None = None,
    shard: tuple[int, int] | None = None,
    resume: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    identity: Mapping[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
) -> Tensor:
    """Run the theta-IS warmup of ``built`` (a :func:`scrapl.build` result with a
    ``theta_is`` sampler) for the demo's encoder and synth.

    The sampler's probabilities are updated with the curvatures found.  ``identity``
    (what else the results depend on: the config, the task settings; recorded in the
    folder's ``warmup.json``), ``overwrite`` and ``stats``: see
    :func:`scrapl.samplers.run_warmup` (``settings``, ``overwrite``, ``stats``).

    Returns:
        ``(P, U)`` curvatures (NaN rows for paths outside ``paths``/``shard``).

    Raises:
        TypeError: the sampler has no ``warmup`` (not theta-IS).
    """
    warm = getattr(built.sampler, "warmup", None)
    if warm is None:
        raise TypeError(
            f"the theta-IS warmup needs sampler 'theta_is'; this config has {type(built.sampler).__name__}"
        )
    theta_kw, synth_kw = warmup_batches(settings, synth)
    loss = built.loss

    def dist_fn(x: Tensor, x_hat: Tensor, path_idx: int) -> Tensor:
        return loss.path_distance(x_hat, x, path_idx, reduction="mean")

    def theta_fn(x: Tensor) -> Tensor:
        return encoder(x)

    def synth_fn(theta: Tensor, shifts: Tensor) -> Tensor:
        return synth(theta, shifts=shifts)

    params = [p for p in encoder.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    return warm(
        dist_fn,
        theta_fn,
        synth_fn,
        theta_kw,
        params,
        synth_kw,
        paths=paths,
        shard=shard,
        save_dir=None if save_dir is None else os.fspath(save_dir),
        n_iter=settings.warmup.n_iter,
        resume=resume,
        progress=progress,
        generator=torch.Generator().manual_seed(settings.warmup.seed + 1),
        overwrite=overwrite,
        settings=identity,
        stats=stats,
    )


def _maybe_init_distributed(log: Callable[[str], None]) -> bool:
    """Initialise a gloo/nccl process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return False
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        log(f"torch.distributed: rank {dist.get_rank()} of {dist.get_world_size()} ({backend})")
        return True
    return False


def warmup_identity(cfg: Mapping[str, Any], settings: DemoSettings) -> dict[str, Any]:
    """What a demo warmup's results depend on besides the warmup arguments: the
    transform and loss config, the sampler's ``n_theta``/``agg``, the task, seed,
    synth and encoder settings, the warmup data settings (recorded in
    ``warmup.json``; the optimizer and ``min_prob_frac`` do not change the curvatures)."""
    sampler = cfg.get("sampler") or {}
    sampler = sampler if isinstance(sampler, Mapping) else {"name": sampler}
    s = settings.model_dump(mode="json")
    return {
        "transform": cfg.get("transform"),
        "loss": cfg.get("loss"),
        "sampler": {k: sampler.get(k) for k in ("n_theta", "agg")},
        "demo": {k: s.get(k) for k in ("task", "seed", "synth", "encoder", "warmup")},
    }


def run_warmup_cli(
    scrapl_cfg: Mapping[str, Any],
    settings: DemoSettings,
    *,
    out_dir: Path,
    shard: tuple[int, int] | None = None,
    path_range: tuple[int | None, int | None] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """What ``scrapl warmup`` does: build, warm up (a share of) the paths, write the
    files, return a JSON-able summary (``paths_in_this_run``: computed by this run;
    ``paths_resumed``: read from the folder)."""
    import scrapl
    from scrapl.samplers import merge_warmup_dir

    cfg = prepare_scrapl_config(scrapl_cfg, settings)
    if (cfg.get("sampler") or {}).get("name") != "theta_is":
        cfg["sampler"] = {"name": "theta_is", "n_theta": 2}
    built = scrapl.build(cfg)
    n_paths = built.transform.n_paths
    n_samples = built.transform.n_samples
    synth = make_synth(settings, n_samples)
    encoder = make_encoder(settings, n_samples)
    paths: range | None = None
    if path_range is not None:
        start = path_range[0] or 0
        stop = n_paths if path_range[1] is None else path_range[1]
        if not 0 <= start < stop <= n_paths:
            raise ValueError(f"--paths must lie within 0:{n_paths}, got {start}:{stop}")
        paths = range(start, stop)
    started_dist = _maybe_init_distributed(log)
    try:
        import torch.distributed as dist

        if shard is not None and dist.is_available() and dist.is_initialized():
            raise ValueError("--shard cannot be combined with torchrun (each rank already takes a share)")
        out_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        stats: dict[str, Any] = {}
        run_demo_warmup(
            built, encoder, synth, settings, save_dir=out_dir, paths=paths, shard=shard, progress=progress,
            overwrite=overwrite, identity=warmup_identity(cfg, settings), stats=stats,
        )
        secs = time.perf_counter() - t0
        if started_dist:  # every rank done before the process group is torn down below
            dist.barrier()
    finally:
        if started_dist:
            import torch.distributed as dist

            dist.destroy_process_group()
    done_here = len(stats.get("computed", ()))
    present = sorted(int(f[5:-3]) for f in os.listdir(out_dir) if re.fullmatch(r"vals_\d+\.pt", f))
    complete = len(present) == n_paths
    probs_path = None
    if complete:
        merge_warmup_dir(out_dir, n_paths, 2, require_complete=True, write=True)
        probs_path = str(out_dir / "probs.pt")
    return {
        "out": str(out_dir),
        "n_paths": n_paths,
        "paths_in_this_run": done_here,
        "paths_resumed": len(stats.get("resumed", ())),
        "paths_done_in_dir": len(present),
        "complete": complete,
        "probs": probs_path,
        "seconds": round(secs, 2),
        "n_iter": settings.warmup.n_iter,
        "batch_size": settings.warmup.batch_size,
        "n_batches": settings.warmup.n_batches,
    }
