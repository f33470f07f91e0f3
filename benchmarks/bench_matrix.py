"""One-path SCRAPL step against MSS and the reference, per configuration and batch,
with its distance to the FFT floor and a per-stage profile.

For each configuration (``paper``: J=12, Q=(8, 2), J_fr=3, Q_fr=2, 32768 samples;
``tr808``: ``configs/paper_tr808.yaml``, 44100 samples, J_fr=5, T=2048, F=1, log1p;
``demo``: ``configs/demo.yaml``, 8192 samples, T=4096, F=8) and batch size (1, 4,
16), on the CPU with 2 threads:

* **SCRAPL**: ``scrapl.SCRAPLLoss(...)(x, x_target, path_idx=i).backward()`` (the
  drop-in class; the target's coefficients are computed under ``no_grad`` in the
  call);
* **reference**: the same call on scrapl-loss 0.1.0 in its own interpreter
  (``_jtfs_ref_worker.py``, a persistent worker per cell), same inputs and paths;
* **MSS**: ``auraloss.freq.MultiResolutionSTFTLoss()`` forward + backward on the same
  batch (its cost does not depend on the path: the median over the paths is
  reported).

After one warm-up step per path, the sides (and the FFT floor below) alternate
repetition by repetition, ``--repeat`` times (``--ref-repeat`` for the reference),
so that the shared machine's load hits all alike; a 50 ms pause before and after
each reference step lets the OpenMP threads of the side that just ran stop
spin-waiting (right after a reference step, with no pause, our batch-1 step took up
to twice as long: the worker's two threads spin on both cores); per path and side
the fastest repetition is kept (the least disturbed by other jobs; all are in the JSON).  Two
clocks are reported: wall time, and the CPU time of the process summed over its
threads (the reference's measured in its worker), which waiting for a core on a
loaded machine does not inflate.  A path's cost depends on its temporal scale ``n2``; the ``n2`` values are cut
into ``--strata`` contiguous strata, one path is drawn (seeded) uniformly from each
and weighted by the stratum's number of paths: the weighted mean is an unbiased
estimate of the **expected step under uniform path sampling** (exact, up to timing
noise, with one stratum per ``n2``: ``--strata 0``); the weighted median is the
**median path**.

**FFT floor** of a path: the FFTs its step cannot avoid, at the sizes and counts given
by the path's filters, for the input's forward pass, the target's forward pass and the
input's backward pass (the adjoint of each forward FFT, same size):

* input spectrum: one real FFT of ``N_pad`` samples per signal;
* first order, for each of the ``n1_max`` wavelets with ``j1 < j2`` (group ``k``,
  length ``L = N_pad / 2**k``): one complex inverse FFT of ``L`` (the wavelet's analytic
  signal) and one real FFT of ``L`` (the scalogram row's spectrum the second order
  windows);
* second order: one complex inverse FFT of ``T2 = N_pad / 2**j2`` per row;
* frequential: one complex FFT of ``N_fr`` along log-frequency per time column of
  the second-order rows and one inverse FFT of the path's ``R`` decimated rows.

The step applies the frequential transform as one complex matrix product instead
(``N_fr`` is not a power of two in these configurations: 96-168 bins, whose FFTs are
slow), so that part of the floor is work the step does differently, not work it
cannot avoid.  The **time floor** (``time_floor``) leaves it out: the time-axis FFTs
alone, which every implementation of the reference transform runs (or an equivalent
amount of work); ``time floor / MSS`` above 1 means that they alone cost more than
MSS's whole step.

Each FFT is timed alone with the same library route as the step (the planned MKL
FFTs of ``scrapl.transforms.jtfs.native`` when available -- through a second handle
with its own plan cache, so that the floor's many plans do not evict the step's --
else ``torch.fft``), in
the cheaper of two layouts: batched over all its signals in one call, or in
cache-sized pieces of ``scrapl.transforms.jtfs.core.SCALOGRAM_CHUNK_FLOATS`` floats
run one after the other (the step's own layout; large batched FFTs fall out of
cache and cost more per signal).  The time averaging (small matrix products here)
is not counted.  ``step / floor`` is reported per path and in expectation
(expected step over expected floor).

**Profile** (median path of each cell): wall time inside each stage of the step --
the stages of the one-path autograd node ``scrapl.transforms.jtfs.path.PathPair``
(the native first-order group kernels, the frequential stage, the spectrum extension
and padding, each forward and backward; the stage autograd Functions of
``scrapl.transforms.jtfs.core`` when another route runs), the input checks, and
the FFT time inside them (the planned FFTs called from Python, and those the group
kernels run, timed in C) -- measured with timers around those functions over
``--repeat`` steps; the rest of the step (the loss's own code, the node's glue:
scaling, stacking, the output projection; autograd bookkeeping, Python) is the
remainder.

Run (``nice`` on a shared machine)::

    python benchmarks/bench_matrix.py [--quick] [--configs paper,tr808,demo]
        [--batches 1,4,16] [--ref-python /tmp/ref/bin/python] [--no-ref]
        [--json benchmarks/results/bench_matrix.json] [--merge]

``--merge`` keeps the cells of other configurations/batches already in the JSON file
(each cell records its own date), so that the matrix can be measured in short runs.

``--rounds R`` measures the whole matrix ``R`` times, round after round (so that a
slow phase of a shared machine, which lasts tens of seconds to minutes, hits one
round's cells rather than every repetition of one cell), and prints the ratios of
each cell across rounds: their median and range.  Each ratio is taken within one
round (the sides interleaved as above); the JSON keeps every round's cells.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import torch

#: Per path and side, the fastest of the repetitions: on a shared machine the one
#: least disturbed by other jobs (all repetitions are stored in the JSON too).
STAT = min
#: Both clocks are reported: wall time (what a user waits for) and the process's CPU
#: time summed over its threads (less disturbed by other jobs on a loaded machine:
#: waiting for a core costs no CPU time; OpenMP spin-waiting does count).
CLOCKS = ("wall", "cpu")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_jtfs import WORKER, _inputs, _weighted_median  # noqa: E402

PAPER = {"shape": 32768, "J": 12, "Q1": 8, "Q2": 2, "J_fr": 3, "Q_fr": 2, "T": None, "F": None}
TRANSFORM_KEYS = ("shape", "J", "Q1", "Q2", "J_fr", "Q_fr", "T", "F")
LOSS_KEYS = ("p", "use_rho_log1p", "log1p_eps")


def _yaml_config(name: str) -> tuple[dict, dict]:
    import yaml

    with open(os.path.join(ROOT, "configs", name)) as f:
        cfg = yaml.safe_load(f)
    t = cfg["transform"]
    loss = cfg.get("loss", {})
    return ({k: t.get(k) for k in TRANSFORM_KEYS}, {k: loss[k] for k in LOSS_KEYS if k in loss})


def configurations() -> dict[str, tuple[dict, dict]]:
    """name -> (transform keywords, loss keywords) of the drop-in ``SCRAPLLoss``."""
    return {"paper": (dict(PAPER), {}), "tr808": _yaml_config("paper_tr808.yaml"),
            "demo": _yaml_config("demo.yaml")}


# ---------------------------------------------------------------------- paths
def stratified_paths(keys: list[tuple[int, int]], strata: int, seed: int) -> tuple[list[int], list[int]]:
    """One seeded path per stratum of consecutive ``n2`` values and the stratum's
    number of paths (``strata <= 0`` or more than the ``n2`` count: one per ``n2``)."""
    g = torch.Generator().manual_seed(seed)
    by_n2: dict[int, list[int]] = {}
    for i, (n2, _) in enumerate(keys):
        by_n2.setdefault(n2, []).append(i)
    n2s = sorted(by_n2)
    k = len(n2s) if strata <= 0 else min(strata, len(n2s))
    bounds = [round(s * len(n2s) / k) for s in range(k + 1)]
    paths, weights = [], []
    for s in range(k):
        members = [i for n2 in n2s[bounds[s]: bounds[s + 1]] for i in by_n2[n2]]
        paths.append(members[int(torch.randint(len(members), (1,), generator=g))])
        weights.append(len(members))
    return paths, weights


def _summary(values: list[float], weights: list[int]) -> dict[str, float]:
    return {"expected": sum(v * w for v, w in zip(values, weights)) / sum(weights),
            "median": _weighted_median(values, weights), "min": min(values), "max": max(values)}


# ---------------------------------------------------------------------- FFT floor
def fft_list(jtfs: Any, i: int, batch: int, frequential: bool = True) -> list[tuple[str, int, int]]:
    """The unavoidable FFTs of one path's step (see the module docs):
    ``(kind, n, howmany)`` with kind ``r2c``, ``c2r``, ``c2c_f`` or ``c2c_i``; the
    input's forward, the target's forward, then the input's backward (adjoints).
    Without ``frequential``: the time-axis FFTs only (input spectrum, first and
    second order), which the step runs as FFTs (it applies the frequential transform
    as a matrix product)."""
    n2, nf = jtfs._paths[i]
    sp = jtfs._second[n2]
    fwd = [("r2c", jtfs.N_pad, batch)]
    for g in jtfs._groups:
        used = min(g.stop, sp.n1_max) - g.start
        if used > 0:
            fwd += [("c2c_i", g.L, batch * used), ("r2c", g.L, batch * used)]
    fwd.append(("c2c_i", sp.T2, batch * sp.n1_max))
    if frequential:
        R = sp.row_stop[nf] - sp.row_start[nf]
        fwd += [("c2c_f", jtfs.N_fr, batch * sp.T2), ("c2c_i", R, batch * sp.T2)]
    adjoint = {"r2c": "c2r", "c2r": "r2c", "c2c_i": "c2c_f", "c2c_f": "c2c_i"}
    bwd = [(adjoint[k], n, m) for k, n, m in reversed(fwd)]
    return fwd + fwd + bwd


def chunk_rows(n: int, m: int, chunk_floats: int) -> list[int]:
    """The pieces (rows each) of ``m`` FFTs of length ``n`` in the chunked layout:
    as many rows as fit ``chunk_floats`` floats of complex data (at least one)."""
    c = max(1, chunk_floats // max(1, 2 * n))
    return [min(c, m - r) for r in range(0, m, c)]


class FloorTimer:
    """Times lists of FFTs with the step's FFT route, each in the cheaper of the
    batched and the chunked layout (see the module docs); buffers allocated once."""

    def __init__(self) -> None:
        from scrapl.transforms.jtfs import core, native

        k = native.get()
        if k is not None and k.has_fft:
            # a second handle on the same library, with its own FFT plan cache: the
            # floor's many (length, batch) plans must not evict the step's plans
            # (native.MAX_FFT_PLANS), which the step would then commit again
            import ctypes

            k = native.Kernels(ctypes.CDLL(str(k.path)), k.path)
        self.kernels = k if k is not None and k.has_fft else None
        self.route = "native planned MKL" if self.kernels is not None else "torch.fft"
        self.chunk_floats = core.SCALOGRAM_CHUNK_FLOATS
        self._bufs: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _operands(self, kind: str, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (kind, n, m)
        if key not in self._bufs:
            g = torch.Generator().manual_seed(n + m)
            if kind == "r2c":
                a, b = torch.randn(m, n, generator=g), torch.empty(m, n // 2 + 1, dtype=torch.complex64)
            elif kind == "c2r":
                a, b = torch.randn(m, n // 2 + 1, dtype=torch.complex64, generator=g), torch.empty(m, n)
            else:
                a, b = torch.randn(m, n, dtype=torch.complex64, generator=g), torch.empty(m, n, dtype=torch.complex64)
            self._bufs[key] = (a, b)
        return self._bufs[key]

    def _run(self, kind: str, n: int, m: int) -> None:
        a, b = self._operands(kind, n, m)
        k = self.kernels
        if k is not None:
            if kind == "r2c":
                k.rfft(a, b)
            elif kind == "c2r":
                k.irfft(a, n, b)
            else:
                k.c2c(a, b, kind == "c2c_f", 1.0 / n)
            return
        if kind == "r2c":
            torch.fft.rfft(a)
        elif kind == "c2r":
            torch.fft.irfft(a, n=n)
        elif kind == "c2c_f":
            torch.fft.fft(a, norm="forward")
        else:
            torch.fft.ifft(a)

    def _layouts(self, kind: str, n: int, m: int) -> list[Callable[[], None]]:
        pieces = chunk_rows(n, m, self.chunk_floats)
        out = [lambda: self._run(kind, n, m)]
        if len(pieces) > 1:
            out.append(lambda: [self._run(kind, n, r) for r in pieces])
        return out

    def run(self, ffts: list[tuple[str, int, int]]) -> None:
        """Run all of ``ffts`` once in every layout (warm-up: plans and buffers)."""
        for op in ffts:
            for fn in self._layouts(*op):
                fn()

    def measure(self, ffts: list[tuple[str, int, int]]) -> tuple[float, float]:
        """Wall-clock and process-CPU seconds of ``ffts``, each FFT in its cheaper
        layout (by wall time, its CPU time with it)."""
        wall = cpu = 0.0
        for op in ffts:
            best = None
            for fn in self._layouts(*op):
                t, c = time.perf_counter(), time.process_time()
                fn()
                w = (time.perf_counter() - t, time.process_time() - c)
                if best is None or w[0] < best[0]:
                    best = w
            wall, cpu = wall + best[0], cpu + best[1]
        return wall, cpu

    def release(self) -> None:
        """Free the operand buffers."""
        self._bufs.clear()


# ---------------------------------------------------------------------- profile
class StageTimer:
    """Wall time inside the JTFS stages of a step (see the module docs)."""

    def __init__(self, jtfs: Any) -> None:
        self.jtfs = jtfs
        self.acc: dict[str, float] = {}
        self.state = {"depth": 0, "outer": 0.0}

    def _wrap(self, name: str, fn: Callable) -> Callable:
        """``fn`` timed into ``name``; a stage not named with a leading blank (an
        "of which" detail) nested in another such stage is not added to the total
        twice: the outermost ones' time goes to ``self.outer``."""
        acc, top = self.acc, not name.startswith(" ")
        state = self.state

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            state["depth"] += top
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                acc[name] = acc.get(name, 0.0) + dt
                state["depth"] -= top
                if top and state["depth"] == 0:
                    state["outer"] += dt

        return timed

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        from scrapl.transforms import ops
        from scrapl.transforms.jtfs import core, native, path

        saved: list[tuple[Any, str, Any, bool]] = []

        def patch(owner: Any, attr: str, name: str, static: bool = False) -> None:
            if not hasattr(owner, attr):
                return
            orig = owner.__dict__[attr] if static else getattr(owner, attr)
            fn = orig.__func__ if static else orig
            new = self._wrap(name, fn)
            saved.append((owner, attr, orig, static))
            setattr(owner, attr, staticmethod(new) if static else new)

        # the one-path node (scrapl.transforms.jtfs.path.PathPair) and its stages
        patch(path.PathPair, "forward", "  one-path node, all stages fwd", static=True)
        patch(path.PathPair, "backward", "  one-path node, all stages bwd", static=True)
        patch(native.Kernels, "run_group_forward", "first order + 2nd-order windows (native groups) fwd")
        patch(native.Kernels, "run_group_backward", "first order + 2nd-order windows (native groups) bwd")
        patch(core, "freq_forward", "frequential + modulus + time average fwd")
        patch(core, "freq_adjoint", "frequential + modulus + time average bwd")
        patch(core, "extended_spectrum", "spectrum extension")
        patch(core, "extended_spectrum_adjoint", "spectrum extension bwd")
        patch(ops, "pad_reflect", "padding")
        patch(path, "reflect_pad_adjoint", "padding bwd")
        # the stage autograd Functions (other routes: forward(), no native kernels)
        for cls, label in ((core.RealSpectrum, "input spectrum (rfft)"),
                           (core.ScalogramSecondOrder, "first order + 2nd-order windows"),
                           (core.ScalogramGroups, "first order (unfused groups)"),
                           (core.InverseFFT, "second-order ifft"),
                           (core.FreqScatterModulusAverage, "frequential + modulus + time average")):
            patch(cls, "forward", f"{label} fwd", static=True)
            patch(cls, "backward", f"{label} bwd", static=True)
        for attr in ("_rfft", "_irfft", "_c2c"):
            patch(core, attr, "planned FFTs called from Python (input spectrum, 2nd-order ifft, adjoints)")
        patch(self.jtfs, "_rows", "input checks")
        k = native.get()
        if k is not None:
            k.fft_timing(True)
        try:
            yield
        finally:
            if k is not None:
                self.acc["  of which FFTs inside the native group kernels"] = k.fft_seconds()
                k.fft_timing(False)
            for owner, attr, orig, static in reversed(saved):
                if owner is self.jtfs:
                    delattr(owner, attr)
                else:
                    setattr(owner, attr, orig)

    def profile(self, step: Callable[[], None], repeat: int) -> dict[str, float]:
        """Mean seconds per step in each stage, and ``step`` and ``rest``."""
        step()
        self.acc.clear()
        self.state.update(depth=0, outer=0.0)
        with self.active():
            t = time.perf_counter()
            for _ in range(repeat):
                step()
            total = time.perf_counter() - t
        out = {k: v / repeat for k, v in sorted(self.acc.items())}
        out["rest (loss code, autograd, Python, glue ops)"] = (total - self.state["outer"]) / repeat
        out["step"] = total / repeat
        return out


# ---------------------------------------------------------------------- one cell
def _ref_server(python: str, spec: dict) -> subprocess.Popen:
    server = subprocess.Popen([python, WORKER, json.dumps({**spec, "mode": "serve"})], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if json.loads(server.stdout.readline()).get("ready") is not True:  # pragma: no cover
        raise RuntimeError("reference worker did not start")
    return server


def _ref_times(server: subprocess.Popen, i: int) -> tuple[float, float]:
    """Wall and CPU seconds of one reference step (the worker runs one per request)."""
    server.stdin.write(json.dumps({"path": i}) + "\n")
    server.stdin.flush()
    r = json.loads(server.stdout.readline())
    return float(r["times"][0]), float(r["cpu"])


def _cell_summary(raw: dict[str, list[list[float]]], weights: list[int]) -> dict:
    """Per-path fastest repetition of each side, their summaries and the ratios."""
    best = {k: [STAT(r) for r in v] for k, v in raw.items() if v and all(v)}
    ours = best["ours"]
    so = _summary(ours, weights)
    mss = statistics.median(best["mss"])
    c: dict = {"ours": ours, "ours_summary": so, "mss": best["mss"], "mss_median": mss,
               "scrapl_over_mss_expected": so["expected"] / mss, "scrapl_over_mss_median": so["median"] / mss}
    if "ref" in best:
        sr = _summary(best["ref"], weights)
        c.update(ref=best["ref"], ref_summary=sr, ref_over_scrapl_expected=sr["expected"] / so["expected"],
                 ref_over_scrapl_median=sr["median"] / so["median"])
    if "floor" in best:
        sf = _summary(best["floor"], weights)
        c.update(floor=best["floor"], floor_summary=sf, step_over_floor=[o / f for o, f in zip(ours, best["floor"])],
                 step_over_floor_expected=so["expected"] / sf["expected"],
                 floor_over_mss_expected=sf["expected"] / mss)
    if "time_floor" in best:
        st = _summary(best["time_floor"], weights)
        c.update(time_floor=best["time_floor"], time_floor_summary=st,
                 step_over_time_floor_expected=so["expected"] / st["expected"],
                 time_floor_over_mss_expected=st["expected"] / mss)
    return c


def run_cell(name: str, tcfg: dict, lcfg: dict, batch: int, args: argparse.Namespace, floor: FloorTimer,
             mss: Any) -> dict:
    from scrapl import SCRAPLLoss

    loss = SCRAPLLoss(**tcfg, **lcfg)
    jtfs = loss.transform
    paths, weights = stratified_paths([tuple(k) for k in loss.paths], args.strata, args.seed)
    x0, xt = _inputs(batch, tcfg["shape"], args.seed + 1)
    repeat = args.repeat if batch < 16 else max(1, args.repeat // 2)
    ref_repeat = args.ref_repeat if batch < 16 else args.ref_repeat_16
    server = None
    if not args.no_ref and batch in args.ref_batches:
        server = _ref_server(args.ref_python, {"config": tcfg, "loss": lcfg, "batch": batch, "threads": args.threads,
                                               "paths": paths, "repeat": 1, "seed": args.seed + 1})

    def step(i: int) -> Callable[[], None]:
        def run() -> None:
            x = x0.clone().requires_grad_(True)
            loss(x, xt, path_idx=i).backward()

        return run

    def mss_step() -> None:
        x = x0.clone().requires_grad_(True)
        mss(x, xt).backward()

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        """Wall-clock and process CPU seconds (all threads) of ``fn()``."""
        t, c = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t, time.process_time() - c

    sides = ("ours", "ref", "mss", "floor", "time_floor")
    raw: dict[str, dict[str, list[list[float]]]] = {clock: {k: [] for k in sides} for clock in CLOCKS}
    mss_step()
    try:
        for i in paths:
            ffts = fft_list(jtfs, i, batch)
            time_ffts = fft_list(jtfs, i, batch, frequential=False)
            step(i)()  # warm-up: FFT plans of this path
            if not args.no_floor:
                floor.run(ffts)
            ts: dict[str, dict[str, list[float]]] = {clock: {k: [] for k in sides} for clock in CLOCKS}

            def add(side: str, wall_cpu: tuple[float, float]) -> None:
                for clock, v in zip(CLOCKS, wall_cpu):
                    ts[clock][side].append(v)

            # the sides alternate repetition by repetition, so that the shared
            # machine's load hits them alike
            for r in range(max(repeat, ref_repeat if server is not None else 0)):
                if r < repeat:
                    add("ours", timed(step(i)))
                    add("mss", timed(mss_step))
                    if not args.no_floor:
                        add("floor", floor.measure(ffts))
                        add("time_floor", floor.measure(time_ffts))
                if server is not None and r < ref_repeat:
                    time.sleep(0.05)  # our OpenMP threads spin a while after their last region
                    add("ref", _ref_times(server, i))
                    time.sleep(0.05)  # and the worker's, which would take both cores from our next step
            floor.release()
            for clock in CLOCKS:
                for k in sides:
                    raw[clock][k].append(ts[clock][k])
    finally:
        if server is not None:
            server.stdin.write("\n")
            server.stdin.flush()
            server.wait(timeout=120)
    cell: dict = {"config": name, "batch": batch, "paths": paths, "weights": weights, "repeat": repeat,
                  "ref_repeat": ref_repeat, "raw": raw}
    for clock in CLOCKS:
        cell[clock] = _cell_summary(raw[clock], weights)
    ours = cell["wall"]["ours"]
    so = cell["wall"]["ours_summary"]
    if not args.no_profile:
        med = min(range(len(paths)), key=lambda k: abs(ours[k] - so["median"]))
        cell["profile_path"] = paths[med]
        cell["profile"] = StageTimer(jtfs).profile(step(paths[med]), repeat)
    return cell


# ---------------------------------------------------------------------- report
def _fmt_table(cells: list[dict], clock: str) -> str:
    head = ("config", "batch", "SCRAPL exp", "SCRAPL med", "MSS", "S/MSS exp", "S/MSS med", "ref exp",
            "ref/S exp", "ref/S med", "floor exp", "S/floor exp", "floor/MSS", "time floor/MSS")
    rows = []
    for cell in cells:
        c = {**cell[clock], "config": cell["config"], "batch": cell["batch"]}
        so = c["ours_summary"]
        ms = lambda v: f"{1e3 * v:.1f}"  # noqa: E731
        rows.append((c["config"], str(c["batch"]), ms(so["expected"]), ms(so["median"]), ms(c["mss_median"]),
                     f"{c['scrapl_over_mss_expected']:.2f}", f"{c['scrapl_over_mss_median']:.2f}",
                     ms(c["ref_summary"]["expected"]) if "ref" in c else "-",
                     f"{c['ref_over_scrapl_expected']:.1f}" if "ref" in c else "-",
                     f"{c['ref_over_scrapl_median']:.1f}" if "ref" in c else "-",
                     ms(c["floor_summary"]["expected"]) if "floor" in c else "-",
                     f"{c['step_over_floor_expected']:.2f}" if "floor" in c else "-",
                     f"{c['floor_over_mss_expected']:.2f}" if "floor" in c else "-",
                     f"{c['time_floor_over_mss_expected']:.2f}" if "time_floor" in c else "-"))
    return (f"{clock} time:\n" + _fmt_columns(head, rows)
            + "\n(ms; exp = expected step under uniform path sampling, med = median path)")


def _fmt_columns(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """The header and rows as right-aligned text columns."""
    widths = [max(len(r[k]) for r in (head, *rows)) for k in range(len(head))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _fmt_profile(c: dict) -> str:
    p = c["profile"]
    lines = [f"profile {c['config']} batch {c['batch']}, path {c['profile_path']} "
             f"(step {1e3 * p['step']:.1f} ms):"]
    for k, v in p.items():
        if k != "step":
            lines.append(f"  {k:48s} {1e3 * v:8.2f} ms {100 * v / p['step']:5.1f} %")
    return "\n".join(lines)


#: Per-cell ratios summarised across rounds: (label, key in a cell's clock summary).
ROUND_RATIOS = (("S/MSS exp", "scrapl_over_mss_expected"), ("S/MSS med", "scrapl_over_mss_median"),
                ("ref/S exp", "ref_over_scrapl_expected"), ("S/floor exp", "step_over_floor_expected"),
                ("time floor/MSS", "time_floor_over_mss_expected"))


def round_summary(cells: list[dict], clock: str) -> list[dict]:
    """Per (config, batch), in first-seen order: each ratio of :data:`ROUND_RATIOS`
    over the rounds as ``{"median", "min", "max", "n"}`` (ratios missing from a
    round, e.g. the reference with ``--no-ref``, are left out)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["config"], c["batch"]), []).append(c[clock])
    out = []
    for (name, batch), summaries in groups.items():
        row: dict = {"config": name, "batch": batch}
        for label, key in ROUND_RATIOS:
            vals = [s[key] for s in summaries if key in s]
            if vals:
                row[label] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
        out.append(row)
    return out


def _fmt_rounds(cells: list[dict], clock: str) -> str:
    rows = round_summary(cells, clock)
    head = ("config", "batch", *(label for label, _ in ROUND_RATIOS))

    def fmt(v: dict | None) -> str:
        return "-" if v is None else f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"

    table = [(r["config"], str(r["batch"]), *(fmt(r.get(label)) for label, _ in ROUND_RATIOS)) for r in rows]
    n = max((v["n"] for r in rows for v in r.values() if isinstance(v, dict)), default=0)
    return f"{clock} time, ratios across {n} rounds: median (min-max)\n" + _fmt_columns(head, table)


def _write(args: argparse.Namespace, confs: dict, floor: FloorTimer, cells: list[dict]) -> list[dict]:
    """Write the JSON (with ``--merge``, the file's other cells kept); return the cells
    of this run."""
    out = list(cells)
    if args.merge and os.path.exists(args.json):
        with open(args.json) as f:
            old = json.load(f)
        done = {(c["config"], c["batch"]) for c in cells}
        order = {n: k for k, n in enumerate(confs)}
        out = sorted([c for c in old["cells"] if (c["config"], c["batch"]) not in done] + out,
                     key=lambda c: (c.get("round", 0), order.get(c["config"], 99), c["batch"]))
    names = sorted({c["config"] for c in out}, key=list(confs).index)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "cpus": os.cpu_count(), "threads": args.threads, "rounds": args.rounds, "torch": torch.__version__,
           "fft_route": floor.route,
           "configs": {n: {"transform": confs[n][0], "loss": confs[n][1]} for n in names}, "cells": out}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description="SCRAPL one-path step vs MSS and the reference: configs x batches")
    ap.add_argument("--configs", default="paper,tr808,demo")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="timed steps per path (half at batch 16)")
    ap.add_argument("--ref-repeat", type=int, default=3)
    ap.add_argument("--ref-repeat-16", type=int, default=1, help="reference repeats at batch 16 (slow)")
    ap.add_argument("--strata", type=int, default=12, help="path strata of consecutive n2 (0: one per n2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-python", default="/work/refenv/bin/python")
    ap.add_argument("--no-ref", action="store_true")
    ap.add_argument("--ref-batches", default="1,4,16", help="batch sizes at which the reference runs")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="4 strata, 2 repeats, 1 reference repeat")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bench_matrix.json"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the other cells of an existing --json file (runs in pieces on a shared machine)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure the whole matrix this many times; print each ratio's median and range over rounds")
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds: expected a positive integer, got {args.rounds}")
    if args.merge and args.rounds > 1:
        raise SystemExit("--merge: not with --rounds > 1 (a merged file would mix rounds of different runs)")
    args.ref_batches = {int(v) for v in args.ref_batches.split(",") if v}
    if args.quick:
        args.strata, args.repeat, args.ref_repeat, args.ref_repeat_16 = 4, 2, 1, 1
    torch.set_num_threads(args.threads)
    import auraloss

    mss = auraloss.freq.MultiResolutionSTFTLoss()
    floor = FloorTimer()
    confs = configurations()
    names = args.configs.split(",")
    for n in names:
        if n not in confs:
            raise SystemExit(f"--configs: unknown configuration {n!r} (choose from {', '.join(confs)})")
    cells = []
    for rnd, n, b in ((r, n, int(v)) for r in range(args.rounds) for n in names for v in args.batches.split(",")):
        tcfg, lcfg = confs[n]
        t0 = time.perf_counter()
        load0 = os.getloadavg()[0]
        cell = run_cell(n, tcfg, lcfg, b, args, floor, mss)
        cell["load_average"] = [load0, os.getloadavg()[0]]  # the machine's 1-min load, start and end
        cell["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        cell["round"] = rnd
        cell["settings"] = {"strata": args.strata, "repeat": args.repeat, "ref_repeat": args.ref_repeat,
                            "ref_repeat_16": args.ref_repeat_16}
        cells.append(cell)
        if args.json:  # after every cell: a long run interrupted keeps what it measured
            cells = _write(args, confs, floor, cells)
        w = cell["wall"]
        print(f"round {rnd}, {n} batch {b}: SCRAPL {1e3 * w['ours_summary']['expected']:.1f} ms expected, "
              f"MSS {1e3 * w['mss_median']:.1f} ms ({time.perf_counter() - t0:.0f} s)", flush=True)
    last = [c for c in cells if c["round"] == args.rounds - 1]
    for clock in CLOCKS:
        print()
        print(_fmt_table(last, clock) if args.rounds == 1 else f"last round, {_fmt_table(last, clock)}")
    if args.rounds > 1:
        for clock in CLOCKS:
            print()
            print(_fmt_rounds(cells, clock))
    if not args.no_profile:
        for c in last:
            if "profile" in c:
                print()
                print(_fmt_profile(c))
    if args.json:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
