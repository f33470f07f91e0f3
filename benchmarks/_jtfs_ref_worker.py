"""Reference-side worker of ``bench_jtfs.py`` (run with the scratch interpreter that
has scrapl-loss 0.1.0, e.g. ``/work/refenv/bin/python``; never imported by scrapl).

Usage::

    python _jtfs_ref_worker.py '<json spec>'

The spec holds ``mode`` (``"path"``: one-path SCRAPLLoss step per listed path;
``"serve"``: the same, one path per request line on stdin, so that the caller can
interleave its own measurements;
``"full"``: full JTFS distance + backward; ``"mem_path"`` / ``"mem_full"``: one such
step with its peak-memory increase), the JTFS ``config``, ``batch``, ``threads``,
``paths``, ``repeat`` and ``seed``, and optionally ``loss`` (keyword arguments of
the reference ``SCRAPLLoss`` such as ``p``, ``use_rho_log1p``, ``log1p_eps``).  Prints one JSON line: times in seconds, memory
in bytes.
"""

from __future__ import annotations

import ctypes
import json
import re
import statistics
import sys
import time


def _rss_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            m = re.match(r"(VmHWM|VmRSS):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2)) * 1024
    return out


def _reset_peak() -> int:
    """Return the memory to the OS, reset the peak RSS, return the current RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - non-glibc
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _rss_status()["VmRSS"]


def main() -> None:
    spec = json.loads(sys.argv[1])
    import torch

    torch.set_num_threads(int(spec["threads"]))
    import scrapl  # noqa: F401  (bundled kymatio on sys.path)
    from kymatio.torch import TimeFrequencyScattering
    from scrapl import SCRAPLLoss

    c = spec["config"]
    dev = spec.get("device", "cpu")
    cuda = dev.startswith("cuda")
    B, N = int(spec["batch"]), int(c["shape"])
    g = torch.Generator().manual_seed(int(spec["seed"]))
    x0 = torch.randn(B, 1, N, generator=g).to(dev)
    xt = torch.randn(B, 1, N, generator=g).to(dev)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def peak(fn) -> int:
        """Peak memory increase of ``fn``: CUDA counters, or the process's peak RSS."""
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            sync()
            return torch.cuda.max_memory_allocated() - base
        base = _reset_peak()
        fn()
        return _rss_status()["VmHWM"] - base
    def timings(fn) -> list[float]:
        """``repeat`` wall-clock times of ``fn`` in seconds (synchronised on CUDA)."""
        ts = []
        for _ in range(int(spec["repeat"])):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t)
        return ts

    mode = spec["mode"]
    result: dict = {"mode": mode}
    if mode in ("path", "mem_path", "serve"):
        loss = SCRAPLLoss(shape=N, J=c["J"], Q1=c["Q1"], Q2=c["Q2"], J_fr=c["J_fr"], Q_fr=c["Q_fr"], T=c.get("T"),
                          F=c.get("F"), **spec.get("loss", {})).to(dev)

        def step(i: int) -> None:
            x = x0.clone().requires_grad_(True)
            loss(x, xt, path_idx=i).backward()

        def timed(i: int) -> float:
            return statistics.median(timings(lambda: step(i)))

        if mode == "serve":
            # interleaved with the caller's own measurements: one request per line,
            # {"path": i} -> {"path": i, "time": median seconds, "times": all, "cpu":
            # the process's CPU seconds over them}; an empty
            # line ends
            step(spec["paths"][0])  # warm-up
            print(json.dumps({"ready": True}), flush=True)
            for line in sys.stdin:
                if not line.strip():
                    break
                i = int(json.loads(line)["path"])
                c0 = time.process_time()
                ts = timings(lambda: step(i))
                cpu = time.process_time() - c0  # all threads of this process
                print(json.dumps({"path": i, "time": statistics.median(ts), "times": ts, "cpu": cpu}), flush=True)
            return
        if mode == "mem_path":
            step(spec["paths"][0])
            result["peak_bytes"] = peak(lambda: step(spec["paths"][0]))
        else:
            step(spec["paths"][0])  # warm-up
            result["times"] = {str(i): timed(i) for i in spec["paths"]}
    else:
        jtfs = TimeFrequencyScattering(J=c["J"], shape=(N,), Q=(c["Q1"], c["Q2"]), J_fr=c["J_fr"], Q_fr=c["Q_fr"],
                                       T=c.get("T"), F=c.get("F"), format="joint", out_type="array")
        if cuda:
            jtfs = jtfs.cuda()

        def step_full() -> None:
            x = x0.clone().requires_grad_(True)
            with torch.no_grad():
                st = jtfs(xt)
            s = jtfs(x)
            torch.linalg.vector_norm(st - s, dim=(-2, -1)).mean().backward()

        if mode == "mem_full":
            result["peak_bytes"] = peak(step_full)
        else:
            result["times"] = timings(step_full)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
