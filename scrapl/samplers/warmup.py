"""The theta-IS warmup: curvatures of every path, resumable, shardable, distributed.

:func:`run_warmup` computes ``C[p, u] = |lambda_max(A_{u,p})|`` (see
:mod:`scrapl.samplers.curvature`) for a set of paths and returns a ``(P, U)``
tensor.  With a ``save_dir`` every path's result is written as soon as it is known,
atomically (temporary file + ``os.replace``), as ``vals_{p}.pt`` of shape
``(G, U)`` (format: :mod:`scrapl.samplers.files`), so

* an interrupted warmup, run again with the same ``save_dir``, computes only the
  paths that have no file yet (``resume=True``) and loses nothing;
* independent processes can each take a share of the paths (``shard=(i, n)`` or
  explicit ``paths``), then :func:`merge_warmup_dir` turns the directory into
  probabilities (and ``probs.pt``);
* inside an initialised ``torch.distributed`` group each rank computes a contiguous
  share and the results are gathered to every rank (``all_gather``), so all ranks
  return the same complete tensor.

Random start vectors come from a per-path generator seeded from ``generator`` (one
draw, broadcast from rank 0 in distributed runs): results do not depend on how the
paths were split.

**What a folder's results depend on** is recorded in its ``warmup.json``
(:func:`warmup_manifest`): package version, ``n_paths``, ``n_theta``, ``n_iter``,
``tol``, ``agg``, ``loss_hessian``, ``method``, the start-vector seed, fingerprints
(SHA-256) of the warmup signals and synth arguments and of the encoder weights, and
the caller's ``settings`` (the CLI records the transform/loss config and the demo
task).  A run resumes only when everything matches; otherwise, before any work,
:class:`~scrapl.errors.WarmupError` names what differs (``overwrite=True`` / ``scrapl
warmup --overwrite`` deletes the folder's results and starts again).  A folder with
results but no ``warmup.json`` (unknown settings) and any file the warmup did not
write (e.g. ``vals_old.pt``) are refused the same way, by name.

**probs.pt rule** (the same for the Python API and the CLI): a warmup folder is
always *read* from its ``vals_{p}.pt`` files (:func:`load_warmup_dir`), never from its
``probs.pt``; ``probs.pt`` is a convenience copy for ``probs_path`` users, deleted
before a run computes anything and written again when the folder is complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from scrapl.atomic import atomic_write
from scrapl.errors import WarmupError
from scrapl.samplers.curvature import (CurvatureEstimator, DistFn, EigenMethod, LossHessianMode, check_estimator_options,
                                      check_is_deterministic)
from scrapl import checks
from scrapl.samplers.files import atomic_save, load_vals_file, load_warmup_dir, probs_file, save_probs_file, vals_file
from scrapl.samplers.probs import Agg, aggregate_vals, check_agg, check_eps, check_min_prob_frac, probs_from_curvatures

__all__ = ["run_warmup", "merge_warmup_dir", "shard_paths", "warmup_manifest", "DEFAULT_SEED", "MANIFEST"]

MANIFEST = "warmup.json"
"""Name of the file recording what a warmup folder's results depend on."""

#: Files a warmup writes into its folder (temporary ``.part`` files of an atomic
#: save that was killed included); anything else is a stray file.
_OWN_RE = re.compile(r"^(vals_\d+\.pt|probs\.pt|warmup\.json|\.tmp_.*\.part)$")
_VALS_NAME_RE = re.compile(r"^vals_(\d+)\.pt$")

DEFAULT_SEED = 0x5C4A_B1
"""Seed of the power-iteration start vectors when no generator is given."""


def shard_paths(paths: Sequence[int], index: int, count: int) -> list[int]:
    """Contiguous share ``index`` of ``count`` of ``paths`` (sizes differ by at most one).

    >>> shard_paths(range(7), 0, 3), shard_paths(range(7), 2, 3)
    ([0, 1, 2], [5, 6])
    """
    checks.check_int("shard count", count, 1)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"shard index must be an int in [0, {count}), got {index!r}")
    paths = list(paths)
    q, r = divmod(len(paths), count)
    start = index * q + min(index, r)
    return paths[start : start + q + (1 if index < r else 0)]


def _check_paths(paths: Any, n_paths: int) -> list[int]:
    if paths is None:
        return list(range(n_paths))
    if isinstance(paths, (str, bytes)) or not isinstance(paths, (range, Sequence, Tensor)):
        raise TypeError(f"paths must be a range or a list of path indices, got {type(paths).__name__}")
    out = [int(p) for p in (paths.tolist() if isinstance(paths, Tensor) else paths)]
    bad = [p for p in out if not 0 <= p < n_paths]
    if bad:
        raise ValueError(f"paths must be indices in [0, {n_paths}), got {bad[:5]}")
    if len(set(out)) != len(out):
        raise ValueError("paths must not repeat an index")
    return out


def _dist_module() -> Any:
    import torch.distributed as dist

    return dist


def _use_distributed(distributed: Optional[bool]) -> bool:
    dist = _dist_module()
    ready = dist.is_available() and dist.is_initialized()
    if distributed is None:
        return ready
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be a bool or None, got {type(distributed).__name__}")
    if distributed and not ready:
        raise ValueError("distributed=True but torch.distributed is not initialised (call init_process_group first)")
    return distributed


def _comm_device() -> torch.device:
    dist = _dist_module()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _package_version() -> str:
    """The installed scrapl distribution's version (read from its metadata: the
    samplers layer does not import the package facade)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scrapl")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _fingerprint(obj: Any) -> str:
    """SHA-256 (16 hex digits) of the tensors (dtype, shape, bytes) and other values
    (``repr``) of a nested structure of dicts and sequences."""
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, Tensor):
            t = o.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{o.dtype}{tuple(o.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(o, Mapping):
            h.update(b"{")
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                feed(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(o).encode())

    feed(obj)
    return h.hexdigest()[:16]


def _jsonable(obj: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(obj, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable (dicts, lists, str, numbers, bool, None): {exc}") from None


def warmup_manifest(
    *,
    n_paths: int,
    n_theta: int,
    n_iter: int,
    tol: Optional[float],
    agg: str,
    loss_hessian: str,
    method: str,
    seed: int,
    theta_fn_kwargs: Sequence[Mapping[str, Any]],
    synth_fn_kwargs: Optional[Sequence[Optional[Mapping[str, Any]]]],
    params: Sequence[Tensor],
    settings: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """What a warmup's results depend on (written as ``warmup.json``; see the module
    docs).  ``settings``: anything else the caller knows they depend on (JSON-able)."""
    return {
        "scrapl_version": _package_version(),
        "n_paths": n_paths,
        "n_theta": n_theta,
        "n_iter": n_iter,
        "tol": tol,
        "agg": agg,
        "loss_hessian": loss_hessian,
        "method": method,
        "seed": seed,
        "signals": _fingerprint([dict(k) for k in theta_fn_kwargs]),
        "synth_args": _fingerprint([dict(k or {}) for k in synth_fn_kwargs] if synth_fn_kwargs is not None else None),
        "encoder_weights": _fingerprint(list(params)),
        "settings": _jsonable(dict(settings) if settings is not None else {}, "settings"),
    }


_WHAT = {
    "signals": "the warmup signals (theta_fn_kwargs: other data seed, batch size, number of batches or length?)",
    "synth_args": "the synth arguments (synth_fn_kwargs)",
    "encoder_weights": "the encoder weights (other seed or architecture?)",
    "seed": "the start-vector seed (generator)",
}


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            what = _WHAT.get(f"{prefix}{k}")
            out.append(f"{what} differ" if what else f"{prefix}{k}: folder {a!r}, now {b!r}")
    return out


def _prepare_folder(save_dir: str, manifest: dict[str, Any], n_paths: int, overwrite: bool) -> None:
    """Check (before any work) that ``save_dir``'s results were computed with
    ``manifest``'s settings and that it holds no stray file; write the manifest.
    With ``overwrite``, delete the folder's results first.  ``WarmupError`` naming
    what is wrong otherwise."""
    names = sorted(os.listdir(save_dir))
    stray = [f for f in names if not _OWN_RE.match(f)
             or ((m := _VALS_NAME_RE.match(f)) is not None and int(m.group(1)) >= n_paths)]
    if stray:
        raise WarmupError(
            f"warmup folder {save_dir!r} holds file(s) the warmup did not write or for paths >= n_paths={n_paths}: "
            f"{', '.join(stray[:10])}{' ...' if len(stray) > 10 else ''} (move them away or choose another folder)")
    path = os.path.join(save_dir, MANIFEST)
    vals = [f for f in names if _VALS_NAME_RE.match(f)]
    if overwrite:
        for f in names:
            os.unlink(os.path.join(save_dir, f))
    elif os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                old = json.load(fh)
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise WarmupError(f"cannot read {path!r} ({exc}); pass overwrite=True (scrapl warmup --overwrite) "
                              "to start again") from None
        diff = _differences(old, manifest)
        if diff:
            raise WarmupError(
                f"warmup folder {save_dir!r} holds results computed with other settings: {'; '.join(diff[:6])}"
                f"{' ...' if len(diff) > 6 else ''}; pass overwrite=True (scrapl warmup --overwrite) to recompute, "
                "or choose another folder")
        return
    elif vals:
        raise WarmupError(
            f"warmup folder {save_dir!r} holds {len(vals)} vals file(s) but no {MANIFEST} (settings unknown: "
            "another version or program wrote them); pass overwrite=True (scrapl warmup --overwrite) to recompute, "
            "or choose another folder")
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def run_warmup(
    dist_fn: DistFn,
    n_paths: int,
    n_theta: int,
    theta_fn: Callable[..., Tensor],
    synth_fn: Callable[..., Tensor],
    theta_fn_kwargs: Sequence[Mapping[str, Any]],
    params: Sequence[Tensor],
    synth_fn_kwargs: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
    *,
    paths: Optional[Sequence[int] | range] = None,
    save_dir: Optional[str | os.PathLike] = None,
    n_iter: int = 20,
    tol: Optional[float] = 1e-4,
    agg: Agg = "none",
    resume: bool = True,
    progress: bool = True,
    shard: Optional[tuple[int, int]] = None,
    distributed: Optional[bool] = None,
    generator: Optional[torch.Generator] = None,
    min_prob_frac: float = 0.0,
    eps: float = 1e-12,
    loss_hessian: LossHessianMode = "auto",
    vectorize: bool = True,
    method: EigenMethod = "power",
    check_determinism: bool = True,
    overwrite: bool = False,
    settings: Optional[Mapping[str, Any]] = None,
    stats: Optional[dict[str, Any]] = None,
) -> Tensor:
    """Curvatures ``C[p, u]`` of the theta-IS warmup.

    Args:
        dist_fn: ``dist_fn(x, x_hat, path_idx) -> scalar Tensor``, the distance of
            one path (mean over the batch), free of side effects.
        n_paths, n_theta: ``P`` and ``U``.
        theta_fn: encoder; ``theta_fn(**theta_fn_kwargs[i])`` returns ``(B, U)``.
        synth_fn: synth; ``synth_fn(theta, **synth_fn_kwargs[i])`` returns ``x_hat``.
        theta_fn_kwargs: one dict per warmup batch, each holding the input ``"x"``.
        params: encoder weights (the loss must depend on them only through theta).
        synth_fn_kwargs: optional per-batch synth arguments (same length).
        paths: the paths to cover (default all); ``shard`` / ``distributed`` split
            this list into contiguous shares.
        save_dir: write ``vals_{p}.pt`` there as results come in (and ``probs.pt``
            once all ``P`` paths are known); ``None`` keeps results in memory only.
        n_iter, tol: power-iteration steps and early-stopping tolerance.
        agg: ``"none"`` (all params together, default) or ``"mean"`` /
            ``"max"`` / ``"med"``: one curvature per parameter tensor, reduced.
        resume: reuse existing ``vals_{p}.pt`` files of ``save_dir`` (otherwise they
            are recomputed and overwritten); only if the folder's ``warmup.json``
            matches this run (see the module docs).
        overwrite: delete ``save_dir``'s results (and ``warmup.json``) first, whatever
            settings they were computed with.
        settings: what else the results depend on (JSON-able, e.g. the transform
            config), recorded in ``warmup.json`` and compared on resume.
        stats: if a dict, filled with ``"computed"`` and ``"resumed"``: the paths this
            call computed and those it read from ``save_dir``.
        progress: show a tqdm progress bar (rank 0 only).
        shard: ``(index, count)``: this process takes share ``index`` of ``count``.
        distributed: split over the ranks of the initialised ``torch.distributed``
            group and gather to all; ``None`` = automatically when initialised.
        generator: seeds the power iterations (``None``: :data:`DEFAULT_SEED`).
        min_prob_frac, eps: used for ``probs.pt`` (see :func:`probs_from_curvatures`).
        loss_hessian, vectorize, method: see
            :class:`scrapl.samplers.curvature.CurvatureEstimator` (``method="arnoldi"``:
            same cost, robust when the top eigenvalues are close or ``+-lambda``).
        check_determinism: warn (``RuntimeWarning``) if encoder or synth is not
            deterministic on the first batch (the warmup still runs).

    Returns:
        ``(P, U)`` float64 CPU tensor of non-negative curvatures; NaN rows for paths
        outside this call's share (all of ``paths`` in distributed mode).

    Raises:
        ValueError / TypeError: invalid arguments (named in the message).
        FileNotFoundError / InvalidWarmupFileError: with ``resume``, an existing file
            that cannot be read or has a wrong shape.
        WarmupError: ``save_dir`` holds results of other settings, results without a
            ``warmup.json``, or stray files (before any work).
    """
    if not callable(dist_fn):
        raise TypeError("dist_fn must be callable: dist_fn(x, x_hat, path_idx) -> scalar tensor")
    checks.check_int("n_paths", n_paths, 1)
    checks.check_int("n_theta", n_theta, 1)
    check_estimator_options(n_iter, tol, method, loss_hessian)
    check_agg(agg)
    mpf = check_min_prob_frac(min_prob_frac)
    eps = check_eps(eps)
    todo_all = _check_paths(paths, n_paths)
    use_dist = _use_distributed(distributed)
    if shard is not None:
        if use_dist:
            raise ValueError("shard cannot be combined with distributed runs (each rank already takes a share)")
        if not (isinstance(shard, tuple) and len(shard) == 2):
            raise TypeError(f"shard must be a tuple (index, count), got {shard!r}")
        mine = shard_paths(todo_all, shard[0], shard[1])
    elif use_dist:
        dist = _dist_module()
        mine = shard_paths(todo_all, dist.get_rank(), dist.get_world_size())
    else:
        mine = todo_all
    rank = _dist_module().get_rank() if use_dist else 0
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    base_seed = DEFAULT_SEED if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator).item())
    if use_dist:
        dist = _dist_module()
        seed_t = torch.tensor([base_seed], dtype=torch.int64, device=_comm_device())
        dist.broadcast(seed_t, src=0)
        base_seed = int(seed_t.item())
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    if stats is not None and not isinstance(stats, dict):
        raise TypeError(f"stats must be a dict or None, got {type(stats).__name__}")
    if save_dir is not None:
        save_dir = os.fspath(save_dir)
        if os.path.exists(save_dir) and not os.path.isdir(save_dir):
            raise NotADirectoryError(f"save_dir {save_dir!r} exists and is not a directory")
        os.makedirs(save_dir, exist_ok=True)
        manifest = warmup_manifest(n_paths=n_paths, n_theta=n_theta, n_iter=n_iter, tol=tol, agg=agg,
                                   loss_hessian=loss_hessian, method=method, seed=base_seed,
                                   theta_fn_kwargs=theta_fn_kwargs, synth_fn_kwargs=synth_fn_kwargs, params=params,
                                   settings=settings)
        if use_dist:  # rank 0 checks (and may delete); the others learn the outcome
            dist = _dist_module()
            err = ""
            if rank == 0:
                try:
                    _prepare_folder(save_dir, manifest, n_paths, overwrite)
                except WarmupError as exc:
                    err = str(exc)
            flag = torch.tensor([1 if err else 0], dtype=torch.int64, device=_comm_device())
            dist.broadcast(flag, src=0)
            if err:
                raise WarmupError(err)
            if int(flag.item()):
                raise WarmupError(f"rank 0 refused the warmup folder {save_dir!r} (see its error)")
        else:
            _prepare_folder(save_dir, manifest, n_paths, overwrite)

    out = torch.full((n_paths, n_theta), math.nan, dtype=torch.float64)
    to_compute = []
    for p in mine:
        f = vals_file(save_dir, p) if save_dir is not None else None
        if f is not None and resume and os.path.exists(f):
            out[p] = aggregate_vals(load_vals_file(f, n_theta), agg, name=f"warmup file {f!r}")
        else:
            to_compute.append(p)

    if stats is not None:
        stats["computed"], stats["resumed"] = [], [p for p in mine if p not in set(to_compute)]
    if to_compute and save_dir is not None and rank == 0 and os.path.exists(probs_file(save_dir)):
        os.unlink(probs_file(save_dir))  # about to change: written again once complete
    if to_compute:
        est = CurvatureEstimator(
            theta_fn,
            synth_fn,
            theta_fn_kwargs,
            params,
            synth_fn_kwargs,
            n_theta=n_theta,
            n_iter=n_iter,
            tol=tol,
            loss_hessian=loss_hessian,
            vectorize=vectorize,
            method=method,
        )
        if check_determinism:
            check_is_deterministic(theta_fn, est.theta_fn_kwargs[0], synth_fn, est.synth_fn_kwargs[0])
        groups = None if agg == "none" else [[p] for p in est.params]
        bar = None
        if progress and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=len(to_compute), desc="theta-IS warmup", unit="path")
        try:
            for p in to_compute:
                gen = torch.Generator().manual_seed(base_seed + p)
                vals = est.path_curvatures(dist_fn, p, generator=gen, param_groups=groups).abs()
                if save_dir is not None:
                    atomic_save(vals, vals_file(save_dir, p))
                out[p] = aggregate_vals(vals, agg)
                if stats is not None:
                    stats["computed"].append(p)
                if bar is not None:
                    bar.update(1)
        finally:
            est.release()
            if bar is not None:
                bar.close()

    if use_dist:
        out = _gather(out, mine)

    complete = bool(torch.isfinite(out).all())
    if save_dir is not None and complete and rank == 0:
        save_probs_file(probs_from_curvatures(out, mpf, eps), probs_file(save_dir))
    return out


def _gather(local: Tensor, mine: Sequence[int]) -> Tensor:
    """All-gather the ``(P, U)`` results of every rank (each valid on its own rows)."""
    dist = _dist_module()
    device = _comm_device()
    P = local.size(0)
    mask = torch.zeros(P, dtype=torch.float64)
    mask[list(mine)] = 1.0
    payload = torch.cat([local, mask.unsqueeze(1)], dim=1).to(device)
    bufs = [torch.empty_like(payload) for _ in range(dist.get_world_size())]
    dist.all_gather(bufs, payload)
    out = torch.full_like(local, math.nan)
    for buf in bufs:
        buf = buf.cpu()
        rows = buf[:, -1] > 0.5
        out[rows] = buf[rows, :-1]
    return out


def merge_warmup_dir(
    warmup_dir: str | os.PathLike,
    n_paths: int,
    n_theta: int,
    min_prob_frac: float = 0.0,
    eps: float = 1e-12,
    agg: Agg = "none",
    *,
    require_complete: bool = True,
    write: bool = True,
) -> Tensor:
    """Probabilities from a warmup directory filled by one or several (sharded) runs.

    Args:
        warmup_dir: directory of ``vals_{p}.pt`` files (must exist).
        n_paths, n_theta, min_prob_frac, eps, agg: as for the sampler.
        require_complete: raise :class:`~scrapl.errors.WarmupError` naming the
            missing paths; if ``False``, missing paths keep the uniform probability
            (with a warning).
        write: write ``probs.pt`` into the directory (atomically) -- only when every
            path is present, so a later ``probs_path`` never picks up partial results.

    Returns:
        float64 ``(P,)`` probabilities.
    """
    vals = load_warmup_dir(warmup_dir, n_paths, n_theta, agg, require_complete=require_complete)
    probs = probs_from_curvatures(vals, min_prob_frac, eps)
    if write and bool(torch.isfinite(vals).all()):
        save_probs_file(probs, probs_file(warmup_dir))
    return probs
