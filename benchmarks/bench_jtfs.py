"""Benchmark of scrapl's JTFS against the reference (scrapl-loss 0.1.0) and auraloss.

Measured on the paper configuration (J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2, N=32768), CPU:

(a) **one-path step**, ours: ``scrapl.SCRAPLLoss(...)(x, x_target, path_idx=i)
    .backward()`` (the drop-in class; target coefficients under ``no_grad``), batch 4.
    The cost of a path depends on its temporal scale ``n2`` (the first-order wavelets
    it needs), so one path per ``n2`` is drawn (seeded) and weighted by the number of
    paths sharing that ``n2``: the weighted mean is the **expected cost of a training
    step under uniform path sampling**; the weighted median and the per-``n2`` extremes
    are reported too;
(b) the same step through the reference ``SCRAPLLoss(...)(x, x_target,
    path_idx=i).backward()``, run in the reference interpreter
    (``benchmarks/_jtfs_ref_worker.py``), same inputs and paths;
(c) ``auraloss.freq.MultiResolutionSTFTLoss()`` forward + backward on the same batch;
    (a), (b) and (c) are interleaved path by path (the reference in a persistent worker
    process), so that slow drifts of a shared machine affect all three alike;
(d) **full transform** distance + backward (all channels of the joint output), ours vs
    the reference ``TimeFrequencyScattering``, batch 1 (the reference takes tens of
    seconds: few repeats).

Peak memory: torch CPU tensors are invisible to ``tracemalloc``, so each step runs in a
fresh process that returns freed heap to the OS (``malloc_trim``), resets the kernel's
peak-RSS counter (``/proc/self/clear_refs``), runs one step and reads ``VmHWM``; the
reported number is the peak RSS increase over the RSS just before the step (the model
and inputs already built).  It includes every allocation of the step (torch's
allocator, FFT plans, autograd buffers).  Our JTFS keeps its large work buffers in a
per-module pool across steps; the pool is emptied after the warm-up step, so the
measured step allocates them again and they count in full.

Run::

    python benchmarks/bench_jtfs.py [--threads 2] [--batch 4] [--repeat 5]
        [--ref-python /work/refenv/bin/python] [--no-ref] [--no-full]
        [--json benchmarks/results/bench_jtfs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

PAPER = dict(shape=32768, J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2, T=None, F=None)
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_jtfs_ref_worker.py")


# ---------------------------------------------------------------------- helpers
def _inputs(batch: int, N: int, seed: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, N, generator=g).to(device), torch.randn(batch, 1, N, generator=g).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], object], repeat: int, warmup: bool = True, device: str = "cpu") -> float:
    if warmup:
        fn()
    ts = []
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _cuda_peak(fn: Callable[[], object]) -> int:
    """Peak CUDA memory allocated by ``fn`` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _ours(cfg: dict):
    from scrapl.transforms.jtfs import JTFS

    return JTFS(**cfg)


def _ours_loss(cfg: dict):
    from scrapl import SCRAPLLoss

    return SCRAPLLoss(**cfg)


def _path_step(loss, x0: torch.Tensor, xt: torch.Tensor, i: int) -> None:
    x = x0.clone().requires_grad_(True)
    loss(x, xt, path_idx=i).backward()


def _paths_per_n2(keys: list[tuple[int, int]], seed: int) -> tuple[list[int], list[int]]:
    """One seeded path per temporal scale n2 and the number of paths sharing it."""
    g = torch.Generator().manual_seed(seed)
    by_n2: dict[int, list[int]] = {}
    for i, (n2, _) in enumerate(keys):
        by_n2.setdefault(n2, []).append(i)
    paths, weights = [], []
    for n2 in sorted(by_n2):
        members = by_n2[n2]
        paths.append(members[int(torch.randint(len(members), (1,), generator=g))])
        weights.append(len(members))
    return paths, weights


def _weighted_median(values: list[float], weights: list[int]) -> float:
    pairs = sorted(zip(values, weights))
    half, acc = sum(weights) / 2, 0
    for v, w in pairs:
        acc += w
        if acc >= half:
            return v
    return pairs[-1][0]  # pragma: no cover


def _summary(times: dict[str, float], paths: list[int], weights: list[int]) -> dict[str, float]:
    vals = [times[str(i)] for i in paths]
    return {"expected": sum(v * w for v, w in zip(vals, weights)) / sum(weights),
            "median": _weighted_median(vals, weights), "min": min(vals), "max": max(vals)}


def _full_step(T, x0: torch.Tensor, xt: torch.Tensor) -> None:
    x = x0.clone().requires_grad_(True)
    with torch.no_grad():
        st = T.forward_full(xt)
    s = T.forward_full(x)
    torch.linalg.vector_norm(st - s, dim=(-2, -1)).mean().backward()


def _run_ref(python: str, spec: dict, timeout: float) -> dict:
    out = subprocess.run([python, WORKER, json.dumps(spec)], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise RuntimeError(f"reference worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_mem_worker(spec: dict, timeout: float) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--mem-worker", json.dumps(spec)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"memory worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _clear_pools(module: torch.nn.Module) -> None:
    for m in module.modules():
        pool = getattr(m, "buffer_pool", None)
        if pool is not None:
            pool.clear()


def mem_worker(spec: dict) -> None:
    """Fresh-process peak-memory measurement of one of our steps (see module docs)."""
    from scrapl.bench import rss_peak_bytes

    torch.set_num_threads(int(spec["threads"]))
    x0, xt = _inputs(int(spec["batch"]), spec["config"]["shape"], int(spec["seed"]))
    if spec["mode"] == "mem_path":
        loss = _ours_loss(spec["config"])
        i = spec["paths"][0]
        _path_step(loss, x0, xt, i)  # warm-up (FFT plans)
        _clear_pools(loss)  # the pooled work buffers count in the measured step
        peak = rss_peak_bytes(lambda: _path_step(loss, x0, xt, i))
    else:
        T = _ours(spec["config"])
        peak = rss_peak_bytes(lambda: _full_step(T, x0, xt))
    print(json.dumps({"peak_bytes": peak}))


# ---------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description="JTFS benchmark: ours vs reference vs auraloss")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (GPU peak memory from torch.cuda's counters)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-python", default="/work/refenv/bin/python")
    ap.add_argument("--no-ref", action="store_true", help="skip the reference measurements")
    ap.add_argument("--no-full", action="store_true", help="skip the full-transform measurements")
    ap.add_argument("--no-mem", action="store_true", help="skip the peak-memory measurements")
    ap.add_argument("--full-repeat-ref", type=int, default=1)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bench_jtfs.json"))
    ap.add_argument("--mem-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_worker:
        mem_worker(json.loads(args.mem_worker))
        return

    torch.set_num_threads(args.threads)
    cfg = dict(PAPER)
    N, B = cfg["shape"], args.batch
    dev = args.device
    T = _ours(cfg).to(dev)
    loss = _ours_loss(cfg).to(dev)
    paths, weights = _paths_per_n2([tuple(k) for k in loss.paths], args.seed)
    x0, xt = _inputs(B, N, args.seed + 1, dev)
    machine = platform.processor() or platform.machine()
    if dev.startswith("cuda"):
        machine = torch.cuda.get_device_name()
    res: dict = {"config": cfg, "batch": B, "threads": args.threads, "device": dev, "paths": paths,
                 "weights": weights, "machine": machine, "torch": torch.__version__}

    # (a)-(c), interleaved: for each path ours, then the reference (a persistent worker
    # process), then auraloss, so that the machine's slow drifts hit all three alike
    spec = {"config": cfg, "batch": B, "threads": args.threads, "paths": paths, "repeat": args.repeat,
            "seed": args.seed + 1, "device": dev}
    try:
        import auraloss

        mrstft = auraloss.freq.MultiResolutionSTFTLoss().to(dev)

        def aura() -> None:
            x = x0.clone().requires_grad_(True)
            mrstft(x, xt).backward()
    except ImportError:  # pragma: no cover
        aura = None
    server = None
    if not args.no_ref:
        server = subprocess.Popen([args.ref_python, WORKER, json.dumps({**spec, "mode": "serve"})],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if json.loads(server.stdout.readline()).get("ready") is not True:  # pragma: no cover
            raise RuntimeError("reference worker did not start")
    _path_step(loss, x0, xt, paths[0])
    ours: dict[str, float] = {}
    ref: dict[str, float] = {}
    aura_times: list[float] = []
    for i in paths:
        # a pause before each measurement: the other process's OpenMP threads spin for
        # a while after their last parallel region and would steal the cores
        time.sleep(0.2)
        ours[str(i)] = _median_time(lambda: _path_step(loss, x0, xt, i), args.repeat, device=dev)
        time.sleep(0.2)
        if server is not None:
            server.stdin.write(json.dumps({"path": i}) + "\n")
            server.stdin.flush()
            ref[str(i)] = float(json.loads(server.stdout.readline())["time"])
        if aura is not None:
            time.sleep(0.2)
            aura_times.append(_median_time(aura, args.repeat, device=dev))
    if server is not None:
        server.stdin.write("\n")
        server.stdin.flush()
        server.wait(timeout=60)
    res["ours_path"] = ours
    so = _summary(ours, paths, weights)
    print(f"ours one-path step (batch {B}): expected {1e3 * so['expected']:.1f} ms per step under uniform "
          f"sampling, median {1e3 * so['median']:.1f} ms ({len(paths)} temporal scales)", flush=True)
    res["auraloss_mrstft"] = statistics.median(aura_times) if aura_times else None
    if aura_times:
        print(f"auraloss MultiResolutionSTFTLoss step: {1e3 * res['auraloss_mrstft']:.1f} ms", flush=True)
    if ref:
        res["ref_path"] = ref
        sr = _summary(ref, paths, weights)
        print(f"reference one-path step: expected {1e3 * sr['expected']:.1f} ms, median {1e3 * sr['median']:.1f} ms",
              flush=True)

    # (d) full transform distance + backward, batch 1
    if not args.no_full:
        x1, t1 = x0[:1], xt[:1]
        res["ours_full"] = _median_time(lambda: _full_step(T, x1, t1), args.repeat, device=dev)
        print(f"ours full JTFS distance+backward (batch 1): {res['ours_full']:.2f} s", flush=True)
        if not args.no_ref:
            r = _run_ref(args.ref_python, {**spec, "batch": 1, "mode": "full", "repeat": args.full_repeat_ref},
                         timeout=3600)
            res["ref_full"] = statistics.median(r["times"])
            print(f"reference full JTFS distance+backward (batch 1): {res['ref_full']:.2f} s", flush=True)

    # peak memory: ours in a fresh process on the CPU (RSS), in this one on CUDA
    # (allocator counters); the reference in its worker either way
    if not args.no_mem:
        cuda = dev.startswith("cuda")

        def ours_mem(mode: str) -> int:
            if cuda and mode == "mem_path":
                return _cuda_peak(lambda: _path_step(loss, x0, xt, paths[0]))
            if cuda:
                return _cuda_peak(lambda: _full_step(T, x0[:1], xt[:1]))
            batch = {"batch": 1} if mode == "mem_full" else {}
            return _run_mem_worker({**spec, **batch, "mode": mode}, timeout=600)["peak_bytes"]

        res["ours_mem_path"] = ours_mem("mem_path")
        if not args.no_ref:
            res["ref_mem_path"] = _run_ref(args.ref_python, {**spec, "mode": "mem_path"}, timeout=600)["peak_bytes"]
        if not args.no_full:
            res["ours_mem_full"] = ours_mem("mem_full")
            if not args.no_ref:
                res["ref_mem_full"] = _run_ref(args.ref_python, {**spec, "batch": 1, "mode": "mem_full"},
                                               timeout=3600)["peak_bytes"]

    # table
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1e3 * v:9.1f} ms"

    def mb(v: int | None) -> str:
        return "-" if v is None else f"{v / 2**20:9.1f} MiB"

    rows = []
    ref = res.get("ref_path")
    sr = _summary(ref, paths, weights) if ref else None
    rows.append(("one-path step, expected per step", ms(so["expected"]), ms(sr["expected"]) if sr else "-"))
    rows.append(("one-path step, median over paths", ms(so["median"]), ms(sr["median"]) if sr else "-"))
    rows.append(("one-path step, cheapest n2", ms(so["min"]), ms(sr["min"]) if sr else "-"))
    rows.append(("auraloss MRSTFT step", ms(res.get("auraloss_mrstft")), ""))
    rows.append(("full JTFS distance+backward (B=1)", ms(res.get("ours_full")), ms(res.get("ref_full"))))
    rows.append(("peak memory, one-path step", mb(res.get("ours_mem_path")), mb(res.get("ref_mem_path"))))
    rows.append(("peak memory, full step (B=1)", mb(res.get("ours_mem_full")), mb(res.get("ref_mem_full"))))
    print()
    print(f"{'measurement':40s} {'ours':>14s} {'reference':>14s}")
    for r in rows:
        print(f"{r[0]:40s} {r[1]:>14s} {r[2]:>14s}")
    ratios = {}
    if sr:
        ratios["path_speedup_expected"] = sr["expected"] / so["expected"]
        ratios["path_speedup_median"] = sr["median"] / so["median"]
        ratios["path_speedup_per_n2_min"] = min(ref[str(i)] / ours[str(i)] for i in paths)
    if res.get("auraloss_mrstft"):
        ratios["auraloss_over_ours_expected"] = res["auraloss_mrstft"] / so["expected"]
        ratios["auraloss_over_ours_median"] = res["auraloss_mrstft"] / so["median"]
    if res.get("ref_full") and res.get("ours_full"):
        ratios["full_speedup"] = res["ref_full"] / res["ours_full"]
    if res.get("ref_mem_path") and res.get("ours_mem_path"):
        ratios["path_memory_ours_over_ref"] = res["ours_mem_path"] / res["ref_mem_path"]
    if res.get("ref_mem_full") and res.get("ours_mem_full"):
        ratios["full_memory_ours_over_ref"] = res["ours_mem_full"] / res["ref_mem_full"]
    res["ratios"] = ratios
    print()
    for k, v in ratios.items():
        print(f"{k:34s} {v:8.2f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
