"""Reference-side worker of ``bench_scattering2d.py`` (run with a scratch interpreter
that has Kymatio 0.3.0, e.g. ``/tmp/ref_s2d/bin/python``; never imported by scrapl).

Usage::

    python _s2d_ref_worker.py '<json spec>'

The spec holds ``J``, ``L``, ``shape``, ``batch``, ``threads``, ``repeat``, ``seed``
and ``device``.  The worker builds Kymatio's ``Scattering2D``, draws the same inputs
as the caller (``torch.randn`` with a seeded generator: the target, then the
estimate), prints ``{"ready": true}``, then serves one request per stdin line:
``{"op": "fwd_bwd"}`` -> ``{"times": [...]}``, ``repeat`` wall-clock times in seconds
of one forward + backward of ``mean_b,c,k ||S(x)[b,c,k] - S(x_target)[b,c,k]||_2``
(``S(x_target)`` precomputed); an empty line ends it.  Serving lets the caller
interleave its own measurements with these on a shared machine.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.loads(sys.argv[1])
    import torch
    from kymatio.torch import Scattering2D

    torch.set_num_threads(int(spec["threads"]))
    dev = spec.get("device", "cpu")
    cuda = dev.startswith("cuda")
    M, N = spec["shape"]
    B = int(spec["batch"])
    S = Scattering2D(J=int(spec["J"]), shape=(M, N), L=int(spec["L"]), max_order=2).to(dev)
    g = torch.Generator().manual_seed(int(spec["seed"]))
    xt = torch.randn(B, 1, M, N, generator=g).to(dev)
    x0 = torch.randn(B, 1, M, N, generator=g).to(dev)
    with torch.no_grad():
        st = S(xt)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def step() -> None:
        x = x0.clone().requires_grad_(True)
        torch.linalg.vector_norm(S(x) - st, dim=(-2, -1)).mean().backward()

    step()  # warm-up
    print(json.dumps({"ready": True, "out_shape": list(st.shape)}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        req = json.loads(line)
        if req.get("op") != "fwd_bwd":  # pragma: no cover - protocol guard
            print(json.dumps({"error": f"unknown op {req.get('op')!r}"}), flush=True)
            continue
        ts = []
        for _ in range(int(spec["repeat"])):
            sync()
            t = time.perf_counter()
            step()
            sync()
            ts.append(time.perf_counter() - t)
        print(json.dumps({"times": ts}), flush=True)


if __name__ == "__main__":
    main()
