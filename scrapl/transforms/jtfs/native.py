"""Optional native CPU kernels for the JTFS (``_kernels.c``).

1. **Fused element-wise kernels.**  The first-order scalogram spends a large share of
   its time in element-wise passes between its FFTs: filling the inverse-FFT inputs
   from the spectrum windows, the complex modulus and its phasor, and the adjoint of
   the window fill, the second-order window gather and its adjoint (likewise the
   modulus of the frequential scattering and its backward).  As separate
   torch operations these are six to eight memory passes (and a slow ``sqrt``); the C
   kernels do each in one vectorised, OpenMP-parallel pass.  They compute the same
   arithmetic, so results agree with the torch fallback to a unit or two in the last
   place.
2. **Planned FFTs.**  ``torch.fft`` builds and commits a new MKL descriptor at every
   call (about 0.2 ms at 65536 points, a fifth of a one-path step in all).  The same
   MKL (the DFTI functions torch's CPU library exports) is called here through
   descriptors committed once and cached per thread (:data:`MAX_FFT_PLANS`), writing
   straight into the caller's buffers.  Same library, same algorithm: the results are
   bit-identical to ``torch.fft``.  :attr:`Kernels.has_fft` is ``False`` when torch
   exports no DFTI functions (other builds or platforms); torch's FFTs run then.

The kernels are compiled on first use with the system C compiler (``$CC`` or
``cc``; about a second) into a per-user cache directory and loaded with
:mod:`ctypes` (without OpenMP support they are built serial, without
``-march=native`` generic).  They link against the OpenMP runtime torch has already loaded.
Whenever they cannot be used (no compiler, a failed build, a non-CPU tensor, a
dtype other than float32/float64) :mod:`scrapl.transforms.jtfs.core` falls back to
plain torch operations with the same results; :func:`status` says which is active
and why.

Environment:
    ``SCRAPL_NATIVE=0``: never build or use the kernels (pure torch).
    ``SCRAPL_CACHE_DIR``: where compiled kernels are kept (default
    ``$XDG_CACHE_HOME/scrapl`` or ``~/.cache/scrapl``).  A library is only loaded
    from a directory owned by this user and writable by nobody else, and only if the
    file is too; a cache directory that fails this (or cannot be created) is refused
    and a private temporary one used instead (``$TMPDIR/scrapl-<uid>`` only if it
    passes the same checks, else a fresh ``mkdtemp`` directory), with the reason in
    :func:`status` (``cache_note``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["GroupCall", "GroupSpec", "Kernels", "NativeFFTError", "disabled", "get", "status"]

_SOURCE = Path(__file__).with_name("_kernels.c")
_ABI = 11
_BASE_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-shared", "-fPIC"]
#: Tried in order: a compiler without OpenMP (e.g. Apple clang) gets serial kernels,
#: one that does not know ``-march=native`` generic ones.
_FLAG_SETS = [_BASE_FLAGS + ["-march=native", "-fopenmp"], _BASE_FLAGS + ["-march=native"], _BASE_FLAGS]

_P = ctypes.c_void_p
_I = ctypes.c_int64
_C = ctypes.c_int
_SIGNATURES = {
    "fill_planes": [_P, _I, _P, _P, _I, _P, _I, _I, _I, _C],
    "modulus": [_P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _C, _C],
    "combine_add": [_P, _I, _I, _I, _P, _P, _I, _P, _I, _C],
    "modulus_cplx": [_P, _P, _I, _I, _I, _I, _C],
    "scale_cplx": [_P, _P, _P, _I, _I, _I, _I, _I, _C],
    "gather_segments": [_P, _I, _I, _I, _P, _I, _I, _I, _P, _P, _I, _C],
    "scatter_segments": [_P, _I, _I, _I, _P, _P, _I, _P, _I, _I, _I, _C, _C, _C],
    "freq_forward": [_P, _I, _I, _I, _P, _P, _I, _P, _I, _I, _P, _P, _I, _C],
    "freq_backward": [_P, _I, _I, _I, _P, _P, _I, _P, _I, _I, _P, _P, _P, _I, _C],
    "extend": [_P, _P, _I, _I, _I, _C],
    "extend_adjoint": [_P, _P, _P, _I, _I, _I, _C],
    "group_forward": [_P, _I, _I, _P, _P, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _I, _P, _I, _I, _I, _P,
                      _P, _I, _I, _C],
    "group_backward": [_P, _I, _I, _I, _I, _P, _P, _I, _I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P,
                       _P, _I, _P, _I, _I, _C],
}
#: Kernels returning a status (0: done, 1: out of memory, 2: an FFT failed) instead of nothing.
_STATUS_KERNELS = ("freq_forward", "freq_backward", "group_forward", "group_backward")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.complex64: "f32", torch.complex128: "f64"}


class NativeFFTError(RuntimeError):
    """A planned FFT could not run (the caller falls back to ``torch.fft``)."""


_DFTI_SYMBOLS = ("DftiCreateDescriptor_s_1d", "DftiCreateDescriptor_d_1d", "DftiSetValue", "DftiCommitDescriptor",
                 "DftiComputeForward", "DftiComputeBackward", "DftiFreeDescriptor")


def _find_dfti() -> list[int] | None:
    """Addresses of the MKL DFTI functions exported by torch's CPU library, or
    ``None`` (another build of torch, another platform)."""
    lib_dir = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = lib_dir / name
        if not path.exists():
            continue
        try:
            lib = ctypes.CDLL(str(path))
            return [ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value for sym in _DFTI_SYMBOLS]
        except (OSError, AttributeError):
            return None
    return None


#: Committed FFT plans kept (all threads; the least recently used ones are freed
#: beyond).  A sweep over all paths of the paper setting uses about 60; a plan holds
#: its twiddle tables (at most about 0.5 MiB at 65536 points).
MAX_FFT_PLANS: int = 256


#: Work (elements touched) below which an element-wise kernel runs on one thread, as
#: torch's own CPU kernels do (its grain size): waking the other threads for a
#: parallel region costs microseconds on an idle machine and a scheduler time slice
#: (milliseconds) on a loaded one, more than the work of a small call.  The result
#: does not depend on it (the kernels split independent rows).  The planned FFTs keep
#: torch's thread count: MKL splits a single long transform differently on one
#: thread, which changes the last bits.
PARALLEL_MIN_ELEMENTS: int = 1 << 15


def _threads(elements: int) -> int:
    """Threads for a call touching ``elements`` values (see
    :data:`PARALLEL_MIN_ELEMENTS`)."""
    return 1 if elements < PARALLEL_MIN_ELEMENTS else torch.get_num_threads()


@dataclass(frozen=True)
class GroupSpec:
    """A first-order group's constant operands, validated once
    (:meth:`Kernels.group_spec`): the window indices ``idx`` ``(nf, W)`` and values
    ``h2``, the second-order window coefficients ``coef`` and runs ``segs`` (kept
    alive here), their inverse-FFT length ``L``, the spectrum bins the windows read
    (``span``), the output columns the runs write (``width``) and the spectrum bins
    they read (``lo``, ``hi``)."""

    suf: str
    L: int
    nf: int
    W: int
    span: int
    width: int
    lo: int
    hi: int
    idx: Tensor
    h2: Tensor
    coef: Tensor
    segs: Tensor


@dataclass(frozen=True)
class GroupCall:
    """A :class:`GroupSpec` run on ``rows`` signals in the chunks ``bounds``
    (validated, :meth:`Kernels.group_call`), keeping the phasor of the first ``n_ph``
    rows: ``phasor_size`` values in all, chunk ``c`` at ``offsets[c]``.  Scratch
    needs (real values) per buffer: :attr:`work`."""

    spec: GroupSpec
    rows: int
    n_ph: int
    bounds: tuple[int, ...]
    fcmax: int
    offsets: tuple[int, ...]
    phasor_size: int
    work: tuple[int, int, int, int]
    bounds_c: Any


class Kernels:
    """The loaded kernel library: typed wrappers that check what they are given
    (contiguity, dtype, device) and raise ``ValueError`` otherwise; callers use
    :meth:`accepts` first and fall back to torch when it is ``False``.

    :attr:`has_fft`: whether the planned MKL FFTs (:meth:`rfft`, :meth:`irfft`) are
    available (torch's CPU library exports MKL's DFTI functions).
    """

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.path = path
        #: Compiler flags the library was built with (see ``_FLAG_SETS``).
        self.flags: tuple[str, ...] = ()
        #: Why the cache directory was refused (and where the kernels are instead), or None.
        self.cache_note: str | None = None
        self._fn: dict[tuple[str, str], ctypes._CFuncPtr] = {}
        for name, argtypes in _SIGNATURES.items():
            for suf in ("f32", "f64"):
                fn = getattr(lib, f"{name}_{suf}")
                fn.argtypes = argtypes
                fn.restype = ctypes.c_int if name in _STATUS_KERNELS else None
                self._fn[name, suf] = fn
        self._plan = lib.dfti_plan
        self._plan.argtypes = [_C, _C, ctypes.c_long, ctypes.c_long, ctypes.c_double, _C,
                               ctypes.POINTER(ctypes.c_long)]
        self._plan.restype = ctypes.c_void_p
        self._run = lib.dfti_run
        self._run.argtypes = [_P, _C, _P, _P]
        self._run.restype = ctypes.c_long
        self._release = lib.dfti_release
        self._release.argtypes = [_P]
        self._release.restype = None
        self._timing = lib.scrapl_timing
        self._timing.argtypes = [_C]
        self._timing.restype = None
        self._timing_fft = lib.scrapl_timing_fft
        self._timing_fft.argtypes = []
        self._timing_fft.restype = ctypes.c_double
        dfti = _find_dfti()
        self._plans: dict[tuple, int] = {}
        self._plans_lock = threading.Lock()
        self.has_fft = dfti is not None
        self.fft_reason: str | None = None if self.has_fft else "torch exports no MKL DFTI functions"
        if dfti is not None:
            lib.dfti_init.argtypes = [_P] * 7
            lib.dfti_init.restype = None
            lib.dfti_init(*dfti)
            self._self_test()

    def _self_test(self) -> None:
        """Switch the planned FFTs off (with the reason) unless they reproduce
        ``torch.fft`` on small transforms of both precisions."""
        try:
            for dtype, cdtype in ((torch.float32, torch.complex64), (torch.float64, torch.complex128)):
                g = torch.Generator().manual_seed(0)
                x = torch.randn(3, 64, generator=g, dtype=dtype)
                z = torch.randn(3, 64, generator=g, dtype=cdtype)
                X = self.rfft(x, torch.empty(3, 33, dtype=cdtype))
                checks = [(X, torch.fft.rfft(x)),
                          (self.irfft(X.clone(), 64, torch.empty(3, 64, dtype=dtype)), torch.fft.irfft(X, n=64)),
                          (self.c2c(z, torch.empty_like(z), False, 1 / 64), torch.fft.ifft(z)),
                          (self.c2c(z, torch.empty_like(z), True, 1 / 64), torch.fft.fft(z, norm="forward"))]
                for got, want in checks:
                    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                        raise RuntimeError("planned MKL FFTs disagree with torch.fft")
        except (RuntimeError, ValueError) as exc:
            self.has_fft = False
            self.fft_reason = f"self-test failed: {exc}"
        finally:
            self.release_plans()

    def fft_timing(self, on: bool) -> None:
        """Switch on (or off) the timing of the FFTs that the group kernels run
        (:meth:`run_group_forward`, :meth:`run_group_backward`); the sum restarts at zero.
        For profiles (``benchmarks/bench_matrix.py``)."""
        self._timing(int(on))

    def fft_seconds(self) -> float:
        """Seconds spent in the group kernels' FFTs since :meth:`fft_timing` (on)."""
        return float(self._timing_fft())

    def release_plans(self) -> None:
        """Free every cached FFT plan (they are rebuilt on demand)."""
        with self._plans_lock:
            while self._plans:
                self._release(self._plans.popitem()[1])

    # ------------------------------------------------------------------ FFTs
    def _get_plan(self, dbl: bool, kind: int, n: int, howmany: int, scale: float) -> int:
        key = (threading.get_ident(), dbl, kind, n, howmany, scale, torch.get_num_threads())
        with self._plans_lock:
            plan = self._plans.pop(key, None)
            if plan is None:
                status = ctypes.c_long(0)
                plan = self._plan(int(dbl), kind, n, howmany, scale, key[-1], ctypes.byref(status))
                if not plan:
                    self.has_fft = False  # callers fall back to torch.fft from now on
                    self.fft_reason = (f"MKL DFTI plan (kind {kind}, n={n}, batch {howmany}) failed with "
                                       f"status {status.value}")
                    raise NativeFFTError(self.fft_reason)
                while len(self._plans) >= MAX_FFT_PLANS:
                    self._release(self._plans.pop(next(iter(self._plans))))
            self._plans[key] = plan  # most recently used last
            return plan

    def _check_fft(self, inp: Tensor, out: Tensor, n: int, in_len: int, out_len: int) -> int:
        if not self.has_fft:
            raise NativeFFTError(f"the planned FFTs are not available: {self.fft_reason}")
        if not self.accepts(inp, out) or not inp.is_contiguous() or not out.is_contiguous():
            raise ValueError("FFT operands must be contiguous CPU tensors of one precision")
        if inp.shape[-1] != in_len or out.shape[-1] != out_len or inp.shape[:-1] != out.shape[:-1]:
            raise ValueError(f"FFT of length {n}: expected (..., {in_len}) -> (..., {out_len}), got "
                             f"{tuple(inp.shape)} -> {tuple(out.shape)}")
        return inp.numel() // max(in_len, 1)

    def rfft(self, x: Tensor, out: Tensor) -> Tensor:
        """``out = torch.fft.rfft(x)`` over the last dimension; real ``x`` ``(..., n)``,
        complex ``out`` ``(..., n // 2 + 1)``, both contiguous.  ``x`` is left
        unchanged."""
        n = x.shape[-1]
        howmany = self._check_fft(x, out, n, n, n // 2 + 1)
        self._exec(self._get_plan(x.dtype == torch.float64, 0, n, howmany, 1.0), True, x, out)
        return out

    def irfft(self, X: Tensor, n: int, out: Tensor) -> Tensor:
        """``out = torch.fft.irfft(X, n=n)`` over the last dimension (even ``n``);
        complex ``X`` ``(..., n // 2 + 1)``, real ``out`` ``(..., n)``, both
        contiguous.  ``X`` may be overwritten (MKL's complex-to-real transforms may use
        their input as workspace)."""
        if n % 2:
            raise ValueError(f"irfft needs an even length, got {n}")
        howmany = self._check_fft(X, out, n, n // 2 + 1, n)
        self._exec(self._get_plan(out.dtype == torch.float64, 1, n, howmany, 1.0), False, X, out)
        return out

    def c2c(self, x: Tensor, out: Tensor, forward: bool, scale: float) -> Tensor:
        """``out = scale * DFT(x)`` (``forward``: ``exp(-2 pi i k t / n)``, else
        ``exp(+...)``) over the last dimension; complex, contiguous, same shape.  With
        ``scale = 1 / n``: ``torch.fft.ifft(x)`` (backward) or ``torch.fft.fft(x,
        norm="forward")`` (forward).  ``x`` is left unchanged."""
        if not x.is_complex():
            raise ValueError(f"c2c needs complex tensors, got {x.dtype}")
        n = x.shape[-1]
        howmany = self._check_fft(x, out, n, n, n)
        self._exec(self._get_plan(x.dtype == torch.complex128, 2, n, howmany, float(scale)), forward, x, out)
        return out

    def _exec(self, plan: int, forward: bool, inp: Tensor, out: Tensor) -> None:
        status = self._run(plan, int(forward), inp.data_ptr(), out.data_ptr())
        if status != 0:
            self.has_fft = False
            self.fft_reason = f"MKL DFTI compute failed with status {status}"
            raise NativeFFTError(self.fft_reason)

    @staticmethod
    def accepts(*tensors: Tensor) -> bool:
        """All tensors on the CPU, of one float32/complex64 or float64/complex128
        precision."""
        suf = _SUFFIX.get(tensors[0].dtype)
        if suf is None:
            return False
        for t in tensors:  # a plain loop: this runs dozens of times per step
            if t.device.type != "cpu" or _SUFFIX.get(t.dtype) != suf:
                return False
        return True

    @staticmethod
    def _check(*tensors: Tensor) -> str:
        if not Kernels.accepts(*tensors):
            raise ValueError("native kernels need CPU tensors of one precision (float32 or float64), got "
                             + ", ".join(f"{t.dtype}@{t.device}" for t in tensors))
        for t in tensors:
            if not t.is_contiguous():
                raise ValueError(f"native kernels need contiguous tensors, got strides {t.stride()}")
        return _SUFFIX[tensors[0].dtype]

    def fill_planes(self, ext: Tensor, idx: Tensor, h2: Tensor, Z: Tensor) -> None:
        """Write the one-sided inverse-FFT inputs of a filter chunk into ``Z``.

        Args:
            ext: extended input spectrum, complex ``(B, E)``.
            idx: int64 ``(nf, W)`` window indices of the chunk's filters (row ``f``
                starts at ``idx[f, 0]``).
            h2: real ``(nf, W)`` (or ``(nf, W, 1)``) window values ``h / 2``.
            Z: real ``(2, B, nf, Lh, 2)`` output: ``Z[0]`` holds the window at bins
                ``1..W`` and zeros elsewhere, ``Z[1] = -i Z[0]``.
        """
        suf = self._check(ext, h2, Z)
        _, B, nf, Lh, _ = Z.shape
        W = idx.shape[1]
        if idx.dtype != torch.int64 or not idx.is_contiguous() or idx.shape[0] != nf or W + 1 > Lh:
            raise ValueError(f"idx must be contiguous int64 (nf={nf}, W <= Lh - 1 = {Lh - 1}), got "
                             f"{idx.dtype} {tuple(idx.shape)}")
        self._fn["fill_planes", suf](ext.data_ptr(), ext.shape[1], idx.data_ptr(), h2.data_ptr(), W,
                                     Z.data_ptr(), B, nf, Lh, _threads(Z.numel()))

    def modulus(self, re: Tensor, im: Tensor, out: Tensor, save: bool,
                phasor: tuple[Tensor, Tensor] | None = None) -> None:
        """``out = sqrt(re^2 + im^2) + 1e-12``; with ``save`` also the phasor
        ``(re / out, im / out)``, into ``phasor`` (two tensors like ``out``) or, when
        it is ``None``, in place in ``re`` and ``im``.  All are ``(..., cols)`` with
        contiguous last dimension and the same leading shape, each with its own
        (uniform) row stride."""
        pre, pim = (re, im) if phasor is None else phasor
        if not self.accepts(re, im, out, pre, pim) or not re.shape == im.shape == out.shape == pre.shape == pim.shape:
            raise ValueError("re, im, out and the phasor must be CPU tensors of one shape and precision")
        suf = _SUFFIX[out.dtype]
        cols = out.shape[-1]
        strides = [_row_stride(t) for t in (re, im, out, pre, pim)]
        rows = out.numel() // max(cols, 1)
        self._fn["modulus", suf](re.data_ptr(), im.data_ptr(), out.data_ptr(), pre.data_ptr(), pim.data_ptr(), rows,
                                 cols, *strides, int(save), _threads(out.numel()))

    def modulus_cplx(self, z: Tensor, out: Tensor) -> None:
        """``out = |z| + 1e-12`` for complex ``z`` and real ``out`` of one shape
        ``(..., cols)``, each with a contiguous last dimension and a uniform row
        stride."""
        if not self.accepts(z, out) or not z.is_complex() or z.shape != out.shape:
            raise ValueError("z (complex) and out (real) must be CPU tensors of one shape and precision")
        cols = out.shape[-1]
        s_z, s_out = _row_stride(z), _row_stride(out)
        self._fn["modulus_cplx", _SUFFIX[out.dtype]](z.data_ptr(), out.data_ptr(), out.numel() // max(cols, 1),
                                                     cols, s_z, s_out, _threads(out.numel()))

    def scale_cplx(self, z: Tensor, g: Tensor, out: Tensor | None = None) -> Tensor:
        """``out = z * g / (|z| + 1e-12)`` (the modulus backward; ``out=None``: in place
        in ``z``), complex ``z`` and ``out``, real ``g``, one shape; layout as in
        :meth:`modulus_cplx`."""
        out = z if out is None else out
        if (not self.accepts(z, g, out) or not z.is_complex() or not out.is_complex()
                or not z.shape == g.shape == out.shape):
            raise ValueError("z, out (complex) and g (real) must be CPU tensors of one shape and precision")
        cols = g.shape[-1]
        s_z, s_g, s_out = _row_stride(z), _row_stride(g), _row_stride(out)
        self._fn["scale_cplx", _SUFFIX[g.dtype]](z.data_ptr(), g.data_ptr(), out.data_ptr(), g.numel() // max(cols, 1),
                                                 cols, s_z, s_g, s_out, _threads(g.numel()))
        return out

    @staticmethod
    def _check_window_operands(rows: Tensor, row0: int, spec: Tensor, segs: Tensor, coef: Tensor) -> None:
        """``spec`` ``(B, nf, Lh)`` against rows ``row0 .. row0 + nf`` of ``rows``
        ``(B, n, width)``, and the runs against both (see :meth:`gather_segments`)."""
        B, nf, Lh = spec.shape
        if rows.shape[0] != B or row0 < 0 or row0 + nf > rows.shape[1]:
            raise ValueError(f"rows {row0}..{row0 + nf} of {tuple(rows.shape)} for {tuple(spec.shape)}")
        Kernels._check_segments(segs, coef, rows.shape[2], Lh)

    @staticmethod
    def _check_segments(segs: Tensor, coef: Tensor, width: int, Lh: int) -> None:
        ends = getattr(segs, "_scrapl_ends", None)
        if ends is None:
            raise ValueError("segs must come from native.segments()")
        src_end, dst_end = ends
        if src_end > Lh or dst_end > min(width, coef.shape[0]) or coef.shape[-1] != 2:
            raise ValueError(f"segments reach bin {src_end} / column {dst_end}, beyond the spectrum ({Lh}), the "
                             f"coefficients ({tuple(coef.shape)}) or the output ({width})")

    def gather_segments(self, spec: Tensor, out: Tensor, row0: int, coef: Tensor, segs: Tensor) -> None:
        """``out[b, row0 + f, dst + j] = spec[b, f, src + j] * coef[dst + j]`` for every
        run ``(src, dst, n, desc)`` of ``segs`` (descending runs read backwards); the
        second-order window gather of ``core._gather_window``.

        Args:
            spec: complex ``(B, nf, Lh)``.
            out: complex ``(B, n_out, width)``, rows ``row0 .. row0 + nf`` written on the
                runs' columns.
            coef: real ``(W, 2)``, the pair multiplying (real, imag).
            segs: int64 ``(nseg, 4)``.
        """
        suf = self._check(spec, out, coef)
        self._check_window_operands(out, row0, spec, segs, coef)
        B, nf, Lh = spec.shape
        _, n_out, width = out.shape
        self._fn["gather_segments", suf](spec.data_ptr(), B, nf, Lh, out.data_ptr(), n_out, width, row0,
                                         coef.data_ptr(), segs.data_ptr(), segs.shape[0], _threads(spec.numel()))

    def scatter_segments(self, g: Tensor, row0: int, coef: Tensor, segs: Tensor, G: Tensor, scale_ends: bool,
                         even_L: bool) -> None:
        """The adjoint of :meth:`gather_segments`, accumulated into ``G`` (complex
        ``(B, nf, Lh)``) from rows ``row0 .. row0 + nf`` of ``g`` (complex ``(B, n_g,
        width)``); then, with ``scale_ends``, bin 0 and (``even_L``) bin ``Lh - 1`` of
        ``G`` doubled (the weights of the ``rfft`` adjoint)."""
        suf = self._check(g, coef, G)
        self._check_window_operands(g, row0, G, segs, coef)
        B, nf, Lh = G.shape
        _, n_g, width = g.shape
        self._fn["scatter_segments", suf](g.data_ptr(), n_g, width, row0, coef.data_ptr(), segs.data_ptr(),
                                          segs.shape[0], G.data_ptr(), B, nf, Lh, int(scale_ends), int(even_L),
                                          _threads(G.numel()))

    def combine_add(self, gZ: Tensor, idx: Tensor, h2: Tensor, gext: Tensor) -> None:
        """``gext[b, idx[f, 0] + w] += (gZ[0, b, f, 1 + w] + i gZ[1, b, f, 1 + w]) *
        h2[f, w]``: the adjoint of :meth:`fill_planes`, accumulated.

        Args:
            gZ: complex ``(2, B, nf, Lh)`` (the ``rfft`` of the backward planes).
            idx, h2: as in :meth:`fill_planes`.
            gext: complex ``(B, E)``, updated in place.
        """
        suf = self._check(gZ, h2, gext)
        _, B, nf, Lh = gZ.shape
        W = idx.shape[1]
        if idx.dtype != torch.int64 or not idx.is_contiguous() or idx.shape[0] != nf or W + 1 > Lh:
            raise ValueError(f"idx must be contiguous int64 (nf={nf}, W <= Lh - 1 = {Lh - 1}), got "
                             f"{idx.dtype} {tuple(idx.shape)}")
        self._fn["combine_add", suf](gZ.data_ptr(), B, nf, Lh, idx.data_ptr(), h2.data_ptr(), W, gext.data_ptr(),
                                     gext.shape[1], _threads(gZ.numel()))

    def _group_plans(self, dbl: bool, L: int, bounds: list[int], inv_rows: int, fwd_rows: int):
        """ctypes arrays of the committed inverse / forward real-FFT plans of each
        chunk (``inv_rows`` / ``fwd_rows`` transforms per filter of the chunk)."""
        n = len(bounds) - 1
        inv, fwd = (ctypes.c_void_p * n)(), (ctypes.c_void_p * n)()
        for c in range(n):
            fc = bounds[c + 1] - bounds[c]
            inv[c] = self._get_plan(dbl, 1, L, inv_rows * fc, 1.0)
            fwd[c] = self._get_plan(dbl, 0, L, fwd_rows * fc, 1.0)
        return inv, fwd

    def extend(self, x_hat: Tensor, n: int, extra: int, out: Tensor) -> Tensor:
        """``out = core.extended_spectrum(x_hat, n, extra)`` in one pass: complex
        ``x_hat`` ``(B, n // 2 + 1)``, ``out`` ``(B, n + extra)``; ``n`` even,
        ``extra <= n``."""
        suf = self._check(x_hat, out)
        B = x_hat.shape[0]
        if (n % 2 or not 0 <= extra <= n or x_hat.dim() != 2 or x_hat.shape[1] != n // 2 + 1
                or out.shape != (B, n + extra) or not x_hat.is_complex() or not out.is_complex()):
            raise ValueError(f"extend: complex (B, {n // 2 + 1}) -> (B, {n + extra}) with n even and extra <= n, got "
                             f"{tuple(x_hat.shape)} -> {tuple(out.shape)}")
        self._fn["extend", suf](x_hat.data_ptr(), out.data_ptr(), B, n, extra, _threads(out.numel()))
        return out

    def extend_adjoint(self, g: Tensor, n: int, extra: int, out: Tensor, weights: Tensor | None = None) -> Tensor:
        """``out = core.extended_spectrum_adjoint(g, n, extra)`` in one pass, times
        ``weights`` (real ``(n // 2 + 1,)``) when given; shapes as in :meth:`extend`,
        reversed."""
        suf = self._check(g, out, *(() if weights is None else (weights,)))
        B = g.shape[0]
        if (n % 2 or not 0 <= extra <= n or g.dim() != 2 or g.shape[1] != n + extra or out.shape != (B, n // 2 + 1)
                or not g.is_complex() or not out.is_complex()
                or (weights is not None and (weights.is_complex() or weights.shape != (n // 2 + 1,)))):
            raise ValueError(f"extend_adjoint: complex (B, {n + extra}) -> (B, {n // 2 + 1}) with n even and extra "
                             f"<= n (weights ({n // 2 + 1},)), got {tuple(g.shape)} -> {tuple(out.shape)}")
        self._fn["extend_adjoint", suf](g.data_ptr(), out.data_ptr(), None if weights is None else weights.data_ptr(),
                                        B, n, extra, _threads(g.numel()))
        return out

    def group_spec(self, idx: Tensor, h2: Tensor, coef: Tensor, segs: Tensor, L: int) -> GroupSpec:
        """Validate a group's constant operands once (see :meth:`run_group_forward`):
        window indices ``idx`` int64 ``(nf, W)`` (row ``f`` starts at ``idx[f, 0]``),
        window values ``h2`` ``(nf, W)``, second-order window coefficients ``coef``
        ``(W2, 2)`` and runs ``segs`` (from :func:`segments`), inverse-FFT length
        ``L`` (even, ``W + 1 <= L / 2``)."""
        suf = self._check(h2, coef)
        nf, W = idx.shape
        if idx.dtype != torch.int64 or not idx.is_contiguous() or h2.numel() != nf * W or L % 2 or W + 1 > L // 2:
            raise ValueError(f"idx must be contiguous int64 (nf, W) with W + 1 <= L / 2, h2 (nf, W), L even; got "
                             f"{tuple(idx.shape)}, {tuple(h2.shape)}, L={L}")
        ends = getattr(segs, "_scrapl_ends", None)
        if ends is None or segs.dtype != torch.int64 or not segs.is_contiguous():
            raise ValueError("segs must come from native.segments()")
        if ends[0] > L // 2 + 1 or ends[1] > coef.shape[0] or coef.shape[-1] != 2:
            raise ValueError(f"segments reach bin {ends[0]} / column {ends[1]}, beyond the spectrum ({L // 2 + 1}) or "
                             f"the coefficients ({tuple(coef.shape)})")
        lo, hi = segs._scrapl_src  # type: ignore[attr-defined]
        return GroupSpec(suf, L, nf, W, _window_span(idx), ends[1], lo, hi, idx, h2, coef, segs)

    def group_call(self, spec: GroupSpec, rows: int, n_ph: int, bounds: list[int] | tuple[int, ...],
                   backward: bool = False) -> GroupCall:
        """Validate the chunks ``bounds`` of ``spec`` on ``rows`` signals, keeping the
        phasor of the first ``n_ph`` (see :meth:`run_group_forward`;
        ``backward``: the scratch needs of :meth:`run_group_backward`)."""
        nf, L = spec.nf, spec.L
        bounds = tuple(int(b) for b in bounds)
        if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != nf or any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"chunk bounds must rise from 0 to {nf}, got {bounds}")
        if not 0 <= n_ph <= rows or rows < 1:
            raise ValueError(f"n_ph must be in [0, rows={rows}], got {n_ph}")
        fcmax = max(b - a for a, b in zip(bounds, bounds[1:]))
        Lh = L // 2 + 1
        per_row = (2 * Lh, L, 2 * L, 4 * Lh) if backward else (4 * Lh, 2 * L, L, 2 * Lh)
        offsets = tuple(2 * n_ph * a * L for a in bounds[:-1])
        return GroupCall(spec, rows, n_ph, bounds, fcmax, offsets, 2 * n_ph * nf * L,
                         tuple(p * rows * fcmax for p in per_row), (ctypes.c_int64 * len(bounds))(*bounds))

    def _check_call(self, call: GroupCall, data: Tensor, rows_t: Tensor, row0: int, work: tuple[Tensor, ...],
                    phasor: Tensor | None) -> None:
        """Per-call checks of :meth:`run_group_forward` / :meth:`run_group_backward`."""
        spec = call.spec
        for t in (data, rows_t, *work, *(() if phasor is None else (phasor,))):
            if _SUFFIX.get(t.dtype) != spec.suf or t.device.type != "cpu" or not t.is_contiguous():
                raise ValueError(f"operands must be contiguous CPU tensors of the group's precision ({spec.suf}), got "
                                 f"{t.dtype}@{t.device} {tuple(t.shape)}")
        if data.dim() != 2 or data.shape[0] != call.rows or data.shape[1] < spec.span:
            raise ValueError(f"the spectrum must be ({call.rows}, >= {spec.span}), got {tuple(data.shape)}")
        if (rows_t.dim() != 3 or rows_t.shape[0] != call.rows or row0 < 0 or row0 + spec.nf > rows_t.shape[1]
                or rows_t.shape[2] < spec.width):
            raise ValueError(f"rows {row0}..{row0 + spec.nf} (>= {spec.width} columns) of {tuple(rows_t.shape)} for "
                             f"{call.rows} signals")
        for t, need in zip(work, call.work):
            if t.numel() < need:
                raise ValueError(f"a scratch buffer of {t.numel()} values is smaller than a chunk needs ({need})")
        if phasor is not None and phasor.numel() < call.phasor_size:
            raise ValueError(f"phasor buffer of {phasor.numel()} values for {call.phasor_size}")

    def _phasors(self, call: GroupCall, phasor: Tensor) -> Any:
        base, size = phasor.data_ptr(), phasor.element_size()
        return (ctypes.c_void_p * len(call.offsets))(*(base + o * size for o in call.offsets))

    def run_group_forward(self, call: GroupCall, ext: Tensor, out: Tensor, row0: int, work: tuple[Tensor, ...],
                          phasor: Tensor | None) -> None:
        """One first-order group, all its chunks in one native call: for each chunk
        of filters, the window fill of :meth:`fill_planes`, the inverse real FFTs of
        the planes (length ``L``), the modulus (and the phasor of the first
        ``call.n_ph`` rows), the real FFT of the scalogram rows and the second-order
        window gather of :meth:`gather_segments` into rows ``row0 + f`` of ``out``.

        Args:
            call: the prepared group and chunks (:meth:`group_call`).
            ext: extended input spectrum, complex ``(call.rows, E)``.
            out: complex ``(call.rows, n_out, width)``.
            work: the ``(Z, P, U, S)`` scratch buffers, at least ``call.work`` values.
            phasor: ``None``, or ``call.phasor_size`` values (chunk ``c``'s
                ``(2, n_ph, fc, L)`` at ``call.offsets[c]``).
        """
        self._check_call(call, ext, out, row0, work, phasor)
        spec = call.spec
        inv, fwd = self._group_plans(spec.suf == "f64", spec.L, call.bounds, 2 * call.rows, call.rows)
        status = self._fn["group_forward", spec.suf](
            ext.data_ptr(), call.rows, ext.shape[1], spec.idx.data_ptr(), spec.h2.data_ptr(), spec.W, spec.L,
            len(call.bounds) - 1, call.bounds_c, inv, fwd, *(t.data_ptr() for t in work),
            None if phasor is None else self._phasors(call, phasor), call.n_ph, out.data_ptr(), out.shape[1],
            out.shape[2], row0, spec.coef.data_ptr(), spec.segs.data_ptr(), spec.segs.shape[0],
            PARALLEL_MIN_ELEMENTS, torch.get_num_threads())
        self._group_status(status)

    def run_group_backward(self, call: GroupCall, g: Tensor, row0: int, work: tuple[Tensor, ...], phasor: Tensor,
                           gext: Tensor) -> None:
        """The adjoint of :meth:`run_group_forward` for the ``call.rows`` rows of ``g``
        (complex ``(rows, n_g, width)``, rows ``row0 + f``), accumulated into ``gext``
        (complex ``(rows, E)``); ``call`` made with ``backward=True`` and ``n_ph =
        rows``, ``work`` the ``(G, GU, GP, GZ)`` scratch buffers, ``phasor`` as the
        forward wrote it."""
        self._check_call(call, gext, g, row0, work, phasor)
        spec = call.spec
        inv, fwd = self._group_plans(spec.suf == "f64", spec.L, call.bounds, call.rows, 2 * call.rows)
        status = self._fn["group_backward", spec.suf](
            g.data_ptr(), call.rows, g.shape[1], g.shape[2], row0, spec.coef.data_ptr(), spec.segs.data_ptr(),
            spec.segs.shape[0], spec.lo, spec.hi, spec.L, len(call.bounds) - 1, call.bounds_c, inv, fwd,
            *(t.data_ptr() for t in work), self._phasors(call, phasor), spec.idx.data_ptr(), spec.h2.data_ptr(),
            spec.W, gext.data_ptr(), gext.shape[1], PARALLEL_MIN_ELEMENTS, torch.get_num_threads())
        self._group_status(status)

    def _group_status(self, status: int) -> None:
        if status == 2:
            self.has_fft = False
            self.fft_reason = "MKL DFTI compute failed in a first-order group"
            raise NativeFFTError(self.fft_reason)
        if status != 0:
            raise RuntimeError(f"native first-order group failed with status {status}")

    @staticmethod
    def _check_band(band: Tensor | None, T2: int, Tc: int) -> int | None:
        """The pointer of a valid band table (see :meth:`freq_forward`), or ``None``."""
        if band is None:
            return None
        nb = -(-T2 // 64)
        if band.dtype != torch.int64 or not band.is_contiguous() or band.shape != (nb, 2) or band.device.type != "cpu":
            raise ValueError(f"band must be a contiguous int64 CPU tensor ({nb}, 2), got {band.dtype} "
                             f"{tuple(band.shape)}")
        ok = getattr(band, "_scrapl_checked", None)
        if ok != (band._version, Tc):
            if bool(((band < 0) | (band[:, 0] >= Tc).unsqueeze(1) | (band[:, 1] > Tc).unsqueeze(1)).any()):
                raise ValueError(f"band entries must be starts in [0, {Tc}) and counts in [0, {Tc}]")
            band._scrapl_checked = (band._version, Tc)
        return band.data_ptr()

    @staticmethod
    def _check_freq(y2: Tensor, Mr: Tensor, Mi: Tensor, AT: Tensor) -> tuple[str, int, int, int, int, int]:
        """Validate the operands of :meth:`freq_forward` / :meth:`freq_backward`;
        returns the kernel suffix, ``B, n, T2, R, Tc``."""
        if not Kernels.accepts(y2, Mr, Mi, AT) or not y2.is_complex() or Mr.is_complex() or AT.is_complex():
            raise ValueError("y2 (complex), Mr, Mi and AT (real) must be CPU tensors of one precision")
        if y2.dim() != 3 or not y2.is_contiguous() or not Mr.is_contiguous() or not Mi.is_contiguous():
            raise ValueError("y2 (B, n, T2), Mr and Mi (R, n) must be contiguous")
        B, n, T2 = y2.shape
        R = Mr.shape[0]
        if Mr.shape != (R, n) or Mi.shape != (R, n):
            raise ValueError(f"Mr and Mi must be ({R}, {n}), got {tuple(Mr.shape)} and {tuple(Mi.shape)}")
        if AT.dim() != 2 or AT.shape[1] != T2 or AT.stride(1) != 1:
            raise ValueError(f"AT must be (Tc, {T2}) with contiguous rows, got {tuple(AT.shape)} / {AT.stride()}")
        return _SUFFIX[AT.dtype], B, n, T2, R, AT.shape[0]

    def _status(self, status: int, name: str) -> None:
        if status != 0:
            raise MemoryError(f"native {name}: could not allocate its work buffers")

    def freq_forward(self, y2: Tensor, Mr: Tensor, Mi: Tensor, AT: Tensor, out: Tensor, nch: int,
                     band: Tensor | None = None) -> Tensor:
        """``out[b, r, c] = sum_t (|sum_k Mc[r, k] y2[b, k, t]| + 1e-12) AT[c, t]`` with
        ``Mc = Mr + i Mi``: frequential scattering, modulus and time averaging of one
        path, fused (nothing of ``Mc y2`` is stored).

        Args:
            y2: complex ``(B, n, T2)``, contiguous.
            Mr, Mi: real ``(R, n)``, contiguous.
            AT: real ``(Tc, T2)``, contiguous rows (any row stride): the transposed
                time-averaging matrix.
            out: real ``(B, R, Tc)``, contiguous, overwritten.
            nch: time chunks (tasks per batch row); the result depends on it, not on the
                number of threads.
            band: ``None``, or int64 ``(ceil(T2 / 64), 2)``: for each 64-sample block
                the columns ``c = (start + j) % Tc``, ``j < count``, outside which the
                block's rows of ``AT`` count as zero (:func:`core.averaging_band`).
        """
        suf, B, n, T2, R, Tc = self._check_freq(y2, Mr, Mi, AT)
        if out.shape != (B, R, Tc) or not out.is_contiguous() or not self.accepts(out, AT):
            raise ValueError(f"out must be a contiguous ({B}, {R}, {Tc}) tensor, got {tuple(out.shape)}")
        self._status(self._fn["freq_forward", suf](y2.data_ptr(), B, n, T2, Mr.data_ptr(), Mi.data_ptr(), R,
                                                   AT.data_ptr(), Tc, AT.stride(0), self._check_band(band, T2, Tc),
                                                   out.data_ptr(), int(nch), _threads(B * R * T2)), "freq_forward")
        return out

    def freq_backward(self, y2: Tensor, Mr: Tensor, Mi: Tensor, AT: Tensor, g: Tensor, gy2: Tensor,
                      nch: int, band: Tensor | None = None) -> Tensor:
        """The adjoint of :meth:`freq_forward` with respect to ``y2``:
        ``gy2[b, k, t] = sum_r conj(Mc[r, k]) y / (|y| + 1e-12) * sum_c g[b, r, c]
        AT[c, t]`` with ``y = (Mc y2)[b, r, t]`` recomputed; ``g`` real ``(B, R, Tc)``
        contiguous, ``gy2`` complex like ``y2`` (overwritten); ``band`` as in
        :meth:`freq_forward`."""
        suf, B, n, T2, R, Tc = self._check_freq(y2, Mr, Mi, AT)
        if g.shape != (B, R, Tc) or not g.is_contiguous() or not self.accepts(g, AT):
            raise ValueError(f"g must be a contiguous ({B}, {R}, {Tc}) tensor, got {tuple(g.shape)}")
        if gy2.shape != y2.shape or not gy2.is_contiguous() or not self.accepts(gy2, y2):
            raise ValueError(f"gy2 must be a contiguous tensor like y2 {tuple(y2.shape)}, got {tuple(gy2.shape)}")
        self._status(self._fn["freq_backward", suf](y2.data_ptr(), B, n, T2, Mr.data_ptr(), Mi.data_ptr(), R,
                                                    AT.data_ptr(), Tc, AT.stride(0), self._check_band(band, T2, Tc),
                                                    g.data_ptr(), gy2.data_ptr(), int(nch), _threads(B * R * T2)),
                     "freq_backward")
        return gy2


@functools.lru_cache(maxsize=4096)
def segments(segs: tuple) -> Tensor:
    """The runs ``((src, dst, n, descending), ...)`` of a second-order window as the
    int64 ``(nseg, 4)`` tensor the gather/scatter kernels take (validated and cached;
    do not modify it)."""
    rows = [(int(a), int(b), int(c), int(bool(d))) for a, b, c, d in segs]
    if any(a < 0 or b < 0 or c < 0 for a, b, c, _ in rows):
        raise ValueError(f"negative run in {segs}")
    with torch.inference_mode(False):  # cached: never an inference tensor
        t = torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)
    t._scrapl_ends = (max((a + c for a, _, c, _ in rows), default=0), max((b + c for _, b, c, _ in rows), default=0))
    t._scrapl_src = (min((a for a, _, _, _ in rows), default=0), t._scrapl_ends[0])  # bins [lo, hi) read
    return t


def _window_span(idx: Tensor) -> int:
    """``max(idx[:, 0]) + W``, the end of the furthest window (``2**62`` when a start
    is negative), computed once per tensor and version (window indices are module
    buffers: checked once, not at every call)."""
    cached = getattr(idx, "_scrapl_span", None)
    if cached is not None and cached[0] == idx._version:
        return cached[1]
    starts = idx[:, 0]
    span = int(starts.max()) + idx.shape[1] if int(starts.min()) >= 0 else 1 << 62
    idx._scrapl_span = (idx._version, span)
    return span


def _row_stride(t: Tensor) -> int:
    """Uniform stride between the rows of ``t`` seen as ``(rows, cols)`` (in elements
    of its dtype); ``ValueError`` when there is none or the last dimension is not
    contiguous."""
    rows_view = t.reshape(-1, t.shape[-1]) if t.is_contiguous() else _rows(t)
    if rows_view.stride(-1) != 1 and rows_view.shape[-1] > 1:
        raise ValueError("native kernels need a contiguous last dimension")
    return rows_view.stride(0)


def _rows(t: Tensor) -> Tensor:
    """``t`` as ``(rows, cols)`` without copying, when its leading dimensions collapse
    to one uniform row stride; raises ``ValueError`` otherwise."""
    cols = t.shape[-1]
    lead = [(n, s) for n, s in zip(t.shape[:-1], t.stride()[:-1]) if n != 1]
    stride = lead[-1][1] if lead else cols
    expect = stride
    for n, s in reversed(lead):
        if s != expect:
            raise ValueError(f"rows of shape {tuple(t.shape)} / strides {t.stride()} have no uniform stride")
        expect = s * n
    return t.as_strided((t.numel() // max(cols, 1), cols), (stride, t.stride(-1)))


# ------------------------------------------------------------------ build and load
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cache_dir() -> Path:
    env = os.environ.get("SCRAPL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scrapl"


def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` code must not run on another CPU
    sharing the cache directory)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compile(cc: str, flags: list[str], target: Path) -> None:
    """Compile ``_kernels.c`` into ``target`` (atomically: concurrent builders never see
    a partial file); ``RuntimeError`` with the compiler's message on failure."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        out = subprocess.run([cc, *flags, str(_SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                             timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"compiling {_SOURCE.name} with {' '.join(flags)} failed:\n{out.stderr[-1500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unsafe(path: Path, kind: str) -> str | None:
    """Why ``path`` (``kind``: ``"dir"`` or ``"file"``) is no place to load code from,
    or ``None`` when it is: it must be owned by this user and writable by nobody else
    (else another user could plant a library whose constructor runs at load)."""
    try:
        st = os.stat(path) if kind == "dir" else os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    if st.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    if kind == "dir" and not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


def _private_dir() -> tuple[Path, str | None]:
    """A directory to keep the compiled kernels in that only this user can write, and
    a note saying why the default one was refused (``None`` when it was used).

    Tried in order: the cache directory (created ``0700``), the temporary directory's
    ``scrapl-<uid>`` if it exists and is private, else a fresh ``tempfile.mkdtemp``
    directory (``0700``, unpredictable name; removed at exit).  ``RuntimeError`` when
    none can be had."""
    refused = []
    cache = _cache_dir()
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        refused.append(f"{cache}: {exc.strerror or exc}")
    else:
        why = _unsafe(cache, "dir")
        if why is None:
            return cache, None
        refused.append(why)
    shared = Path(tempfile.gettempdir()) / f"scrapl-{os.getuid()}"
    if shared.exists() and _unsafe(shared, "dir") is None:
        return shared, "refused " + "; ".join(refused) + f"; using {shared}"
    if shared.exists():
        refused.append(str(_unsafe(shared, "dir")))
    try:
        fresh = Path(tempfile.mkdtemp(prefix=f"scrapl-{os.getuid()}-"))
    except OSError as exc:
        raise RuntimeError("no private directory for the compiled kernels: " + "; ".join(refused)
                           + f"; mkdtemp: {exc}") from exc
    atexit.register(shutil.rmtree, fresh, True)
    return fresh, "refused " + "; ".join(refused) + f"; using the private temporary directory {fresh}"


def _build() -> Kernels:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found (set CC or install cc/gcc)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    source = _SOURCE.read_bytes()
    directory, note = _private_dir()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), version.encode(),
                                         _cpu_signature().encode(), sys.platform.encode()])).hexdigest()[:16]
        target = directory / f"jtfs_kernels_{key}.so"
        try:
            if not target.exists() or _unsafe(target, "file") is not None:
                _compile(cc, flags, target)  # replaces a file not ours (atomically)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
            continue
        why = _unsafe(target, "file")
        if why is not None:
            raise RuntimeError(f"refusing to load {why}")
        lib = ctypes.CDLL(str(target))
        if lib.scrapl_kernels_abi() != _ABI:
            raise RuntimeError(f"{target} has kernel ABI {lib.scrapl_kernels_abi()}, expected {_ABI}")
        k = Kernels(lib, target)
        k.flags = tuple(flags)
        k.cache_note = note
        return k
    raise RuntimeError("; ".join(errors))


def _disabled() -> bool:
    return bool(_state.get("disabled")) or os.environ.get("SCRAPL_NATIVE", "1").strip().lower() in (
        "0", "false", "no", "off")


def get() -> Kernels | None:
    """The compiled kernels, building them on first call; ``None`` when disabled
    (``SCRAPL_NATIVE=0``, :func:`disabled`) or unavailable (see :func:`status`)."""
    if _disabled():
        return None
    if "kernels" not in _state:
        with _lock:
            if "kernels" not in _state:
                try:
                    _state["kernels"] = _build()
                    _state["reason"] = None
                except Exception as exc:  # any failure: fall back to torch, say why in status()
                    _state["kernels"] = None
                    _state["reason"] = f"{type(exc).__name__}: {exc}"
    return _state["kernels"]  # type: ignore[return-value]


def status() -> dict[str, object]:
    """Whether the native kernels are in use: ``{"active": bool, "path": str | None,
    "reason": str | None, "fft": bool, "fft_reason": str | None, "openmp": bool}``
    (``reason`` says why the kernels are not active, ``fft_reason`` why the planned FFTs
    are not; ``openmp``: built with OpenMP, i.e. multi-threaded; ``cache_note``: why the
    cache directory was refused and where the kernels were built instead, or ``None``)."""
    k = get()
    if k is not None:
        return {"active": True, "path": str(k.path), "reason": None, "fft": k.has_fft, "fft_reason": k.fft_reason,
                "openmp": "-fopenmp" in k.flags, "cache_note": k.cache_note}
    reason = "disabled (SCRAPL_NATIVE=0 or native.disabled())" if _disabled() else _state.get("reason")
    return {"active": False, "path": None, "reason": reason, "fft": False, "fft_reason": reason, "openmp": False,
            "cache_note": None}


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block, :func:`get` returns ``None`` (the pure-torch path runs);
    for tests and comparisons."""
    prev = _state.get("disabled", False)
    _state["disabled"] = True
    try:
        yield
    finally:
        _state["disabled"] = prev
