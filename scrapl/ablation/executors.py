"""Where runs execute: this process, local worker processes, or a Ray cluster.

Every executor calls :func:`scrapl.ablation.runner.run_one` with the spec's JSON dump
and hands each finished record to ``on_done`` as soon as it arrives (the caller
writes it to disk), so a killed sweep loses only the runs in flight.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

__all__ = ["run_local", "run_ray", "default_threads"]

OnDone = Callable[[dict[str, Any]], None]


def default_threads(workers: int) -> int:
    """Torch threads per run when ``workers`` runs share this machine's CPUs."""
    n = os.cpu_count() or 1
    return max(1, n // max(1, workers))


def _child(spec_json: dict[str, Any], arm: str, seed: int, threads: int) -> dict[str, Any]:
    from scrapl.ablation.runner import run_one

    return run_one(spec_json, arm, seed, threads=threads, progress=False)


def run_local(
    spec_json: dict[str, Any],
    todo: Sequence[tuple[str, int]],
    on_done: OnDone,
    *,
    workers: int,
    threads: int | None,
    progress: bool,
) -> None:
    """Run ``todo`` here (``workers == 0``: in this process, one after the other, with
    per-run progress bars) or in ``workers`` fresh worker processes (one process per
    run, so each run's peak memory is its own)."""
    if workers == 0:
        from scrapl.ablation.runner import build_task, run_one
        from scrapl.ablation.spec import load_spec

        spec = load_spec(spec_json)
        task = build_task(spec)
        for arm, seed in todo:
            on_done(run_one(spec, arm, seed, threads=threads, progress=progress, task=task))
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    per_run = threads if threads is not None else default_threads(workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
    futures = {pool.submit(_child, spec_json, arm, seed, per_run): (arm, seed) for arm, seed in todo}
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                on_done(f.result())
    except BaseException:
        for f in futures:
            f.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ValueError("the ray executor needs Ray: pip install 'scrapl[ray]'") from exc
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast when a Ray address ``HOST:PORT`` (or ``ray://HOST:PORT``) does not
    accept TCP connections (``ray.init`` itself may wait for minutes).  ``auto`` is
    left to Ray.

    Raises:
        ValueError: malformed address, or nothing answers within ``timeout`` seconds.
    """
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Ray address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(f"Ray address {address!r} does not answer: {exc}") from None


def run_ray(
    spec_json: dict[str, Any],
    todo: Sequence[tuple[str, int]],
    on_done: OnDone,
    *,
    address: str | None,
    threads: int | None,
    gpus: float = 0.0,
    num_cpus: int | None = None,
) -> None:
    """One Ray task per run, each requesting ``threads`` CPUs (and ``gpus`` GPUs).

    Connects to ``address`` (an existing cluster) or, when it is ``None`` and Ray is
    not initialised yet, starts a local one with ``num_cpus`` CPUs.

    Raises:
        ValueError: Ray is missing or the address does not answer.
    """
    ray = _ray()
    if address is not None:
        check_address(address)
    started = False
    if not ray.is_initialized():
        try:
            if address is not None:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            else:
                ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = address if address is not None else "a local cluster"
            raise ValueError(f"cannot start or reach Ray at {where}: {' '.join(str(exc).split())[:300]}") from None
        started = True
    try:
        per_run = threads if threads is not None else 1
        remote = ray.remote(num_cpus=per_run, num_gpus=gpus)(_child)
        refs = {remote.remote(spec_json, arm, seed, per_run): (arm, seed) for arm, seed in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for r in ready:
                on_done(ray.get(r))
    finally:
        if started:
            ray.shutdown()


def _iter(xs: Iterable[Any]) -> list[Any]:
    return list(xs)
