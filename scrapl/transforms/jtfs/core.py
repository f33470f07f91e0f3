"""Pure torch building blocks of the JTFS (no module state: filters and plans are
arguments; the upper-case module constants are performance knobs, not results).

Shapes use ``B`` for the flattened batch, ``N_pad`` for the padded signal length,
``nf`` for a number of first-order wavelets, ``W`` for a Fourier window width and
``L`` / ``T2`` for a (decimated) time length.  All tensors are float32/complex64 or
float64/complex128; the algorithm is the one described in
:mod:`scrapl.transforms.jtfs.filterbank`.

Complex moduli are ``sqrt(re^2 + im^2) + 1e-12`` with a custom backward
``g * z / |z|`` that is exactly zero where ``|z| == 0``, so exact zeros in
the zero-padded regions never produce NaN gradients.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from scrapl.transforms import ops

from . import buffers, native
from .buffers import BufferPool

__all__ = [
    "MODULUS_FLOOR",
    "ComplexModulus",
    "AVERAGE_BAND_FLOOR",
    "FreqOperands",
    "averaging_band",
    "FreqScatterModulusAverage",
    "PlanarModulus",
    "complex_modulus",
    "extended_spectrum",
    "first_order_time_average",
    "freq_operands",
    "freq_scatter_modulus_average",
    "planar_modulus",
    "reflect_pad",
    "rfft_adjoint_scale",
    "ScalogramGroups",
    "ScalogramSecondOrder",
    "scalogram_spectra",
    "SecondOrderSpectrum",
    "second_order_inverse",
    "second_order_rows",
    "time_average",
    "wavelet_modulus",
]

#: Added to every complex modulus after its square root: ``|z| = sqrt(re^2 + im^2) + MODULUS_FLOOR``.
MODULUS_FLOOR: float = 1e-12


class ComplexModulus(ops.Modulus):
    """``|z| + 1e-12`` with the safe backward of :class:`scrapl.transforms.ops.Modulus`."""

    @staticmethod
    def forward(ctx, z: Tensor, floor: float = MODULUS_FLOOR) -> Tensor:  # noqa: D102
        return ops.Modulus.forward(ctx, z, floor)


def complex_modulus(z: Tensor) -> Tensor:
    """Differentiable ``sqrt(re^2 + im^2) + 1e-12`` of a complex tensor."""
    return ops.modulus(z, MODULUS_FLOOR)


class PlanarModulus(torch.autograd.Function):
    """Modulus of a complex tensor stored as real and imaginary planes.

    ``x`` has a size-2 dimension ``dim`` holding (real, imag); the output drops it.
    Same forward and backward as :class:`ComplexModulus` (vectorises far better
    than a complex ``abs`` on CPU).
    """

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:  # noqa: D102
        if x.shape[dim] != 2:
            raise ValueError(f"dimension {dim} must have size 2 (real, imag), got shape {tuple(x.shape)}")
        re, im = x.select(dim, 0), x.select(dim, 1)
        out = torch.mul(re, re)
        out.addcmul_(im, im).sqrt_().add_(MODULUS_FLOOR)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor):  # noqa: D102
        x, out = ctx.saved_tensors  # out >= MODULUS_FLOOR > 0: no zero guard needed
        return x * (g / out).unsqueeze(ctx.dim), None


def planar_modulus(x: Tensor, dim: int) -> Tensor:
    """``sqrt(x[re]^2 + x[im]^2) + 1e-12`` over the size-2 dimension ``dim`` (see
    :class:`PlanarModulus`)."""
    return PlanarModulus.apply(x, dim)


reflect_pad = ops.pad_reflect


def _gather(spec: Tensor, idx: Tensor) -> Tensor:
    """``spec[..., idx]`` for a complex ``(B, n, H)`` or ``(B, H)`` spectrum and an index
    tensor of any shape, as a real view ``(B, [n,] *idx.shape, 2)`` (``index_select``
    on the complex tensor: much faster than advanced indexing, and its backward is a
    complex ``index_add``)."""
    out = spec.index_select(-1, idx.reshape(-1))
    return torch.view_as_real(out).reshape(*spec.shape[:-1], *idx.shape, 2)


def wavelet_modulus(x_hat: Tensor, idx: Tensor, coef: Tensor, L: int, one_sided: bool) -> Tensor:
    """First-order scalogram rows ``U1 = |IFFT_L(sub(X * psi1, N_pad / L))|`` of a group
    (plain autograd version; :class:`ScalogramGroups` is the fused fast path).

    Args:
        x_hat: spectrum of the padded input, complex ``(B, H)``: the one-sided
            ``rfft`` (then ``coef`` carries the conjugation signs) or the extended
            two-sided spectrum of :func:`extended_spectrum` (signs all ``+1``).
        idx: ``(nf, W)`` gather indices (window of each wavelet).
        coef: ``(nf, W, 2)``: ``(h, sign * h) / 2**k`` applied to the real view
            (``sign = -1`` conjugates a negative-frequency bin).
        L: length of the decimated time axis ``N_pad / 2**k``.
        one_sided: the window fits in bins ``1 .. L/2 - 1``: compute the real and
            imaginary parts with two inverse real FFTs (planar, faster modulus).

    Returns:
        ``(B, nf, L)`` real, the modulus ``U1``; the complex rows before it differ from
        ``IFFT_L(sub(X * psi1, N_pad / L))`` by a per-row phase ramp (the window is
        moved to bin 0 / 1), which the modulus removes.
    """
    c = _gather(x_hat, idx) * coef  # (B, nf, W, 2)
    if one_sided:
        # Re(y) = irfft(c / 2 at bins 1..W) and Im(y) = Re(-i y) = irfft(-i c / 2)
        half = 0.5 * c
        re_in = torch.view_as_complex(half)
        im_in = torch.view_as_complex(torch.stack((half[..., 1], -half[..., 0]), dim=-1))
        z = F.pad(torch.stack((re_in, im_in)), (1, 0))  # (2, B, nf, W + 1), bin 0 empty
        planes = torch.fft.irfft(z, n=L)  # (2, B, nf, L)
        return planar_modulus(planes, 0)
    y = torch.fft.ifft(torch.view_as_complex(c), n=L)
    return complex_modulus(y)


def _recompute_grad(fn, inp: Tensor, grad_out: Tensor) -> Tensor:
    """Vector-Jacobian product of ``fn`` at ``inp`` with a graph (for double backward).

    Used by the fused autograd Functions when their backward runs with
    ``create_graph=True``: the fused backward kernels write into buffers and are not
    differentiable, so the plain composition is differentiated instead.
    """
    with torch.enable_grad():
        leaf = inp if inp.requires_grad else inp.detach().requires_grad_()
        out = fn(leaf)
        (grad,) = torch.autograd.grad(out, leaf, grad_out, create_graph=True)
    return grad


#: Floats per chunk of the fused first-order kernel's ``(2, B, fc, L)`` planes: the
#: filters of a group are processed ``fc`` at a time so that the temporaries stay in
#: cache and are recycled by the allocator instead of being mapped afresh each call.
SCALOGRAM_CHUNK_FLOATS: int = 1 << 20

#: Windows at least this wide are gathered with one slice per filter (a strided
#: multiply straight into the inverse-FFT input); narrower ones with one index gather.
#: CPU only: on an accelerator, where every operation is a kernel launch, the single
#: gather is used throughout.
SLICE_GATHER_MIN_WIDTH: int = 1024


def _use_slices(ext: Tensor, W: int) -> bool:
    return ext.device.type == "cpu" and W >= SLICE_GATHER_MIN_WIDTH


def _native(*tensors: Tensor, contiguous: bool = True) -> native.Kernels | None:
    """The fused CPU kernels of :mod:`.native` when they can take these tensors
    (CPU, one float precision, and contiguous unless ``contiguous=False``: the
    row-strided kernels check their layout themselves), else ``None`` (torch
    fallback)."""
    if tensors[0].device.type != "cpu":
        return None
    k = native.get()
    if k is None or not k.accepts(*tensors):
        return None
    if contiguous:
        for t in tensors:
            if not t.is_contiguous():
                return None
    return k


def _modulus_into(re: Tensor, im: Tensor, out: Tensor, save: bool = False,
                  phasor: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """``out = sqrt(re^2 + im^2) + 1e-12`` (no autograd); with ``save`` also the
    phasor ``(re / out, im / out)``: into ``phasor`` (two tensors like ``out``), or
    in place in ``re`` and ``im`` when it is ``None``.  One fused pass on the CPU
    when the native kernels are available; else multiply-adds (vectorised) on the
    CPU and one ``hypot`` kernel elsewhere."""
    k = _native(out, re, im, contiguous=False)
    if k is not None:
        try:
            k.modulus(re, im, out, save, phasor)
            return out
        except ValueError:  # rows without a uniform stride: torch below
            pass
    _modulus_torch(re, im, out)
    if save:
        pre, pim = (re, im) if phasor is None else phasor
        torch.div(re, out, out=pre)
        torch.div(im, out, out=pim)
    return out


def _modulus_torch(re: Tensor, im: Tensor, out: Tensor) -> Tensor:
    if out.device.type == "cpu":
        torch.mul(re, re, out=out)
        out.addcmul_(im, im).sqrt_()
    else:
        torch.hypot(re, im, out=out)
    return out.add_(MODULUS_FLOOR)




def require_storage(g: Tensor) -> None:
    """A ``RuntimeError`` naming vmap when ``g`` has no storage of its own (a batched
    tensor of ``torch.func`` or ``autograd.grad(..., is_grads_batched=True)``): the
    fused backward passes write into preallocated buffers and run native kernels,
    which vmap cannot batch (the theta-IS warmup then loops over its products)."""
    try:
        g.data_ptr()
    except RuntimeError as exc:
        raise RuntimeError("vmap: the fused JTFS backward passes write into preallocated outputs (out=) and run "
                           f"native kernels, which cannot be batched ({exc})") from exc


_WEIGHTS: dict[tuple, Tensor] = {}


def _rfft_weights(n: int, bins: int, like: Tensor) -> Tensor:
    """Weights of the ``rfft`` adjoint over the ``bins = n // 2 + 1`` bins: ``n`` at
    bin 0 (and the Nyquist bin for even ``n``), ``n / 2`` in between (cached per
    length, dtype and device; do not modify)."""
    key = (n, bins, like.real.dtype, like.device)
    w = _WEIGHTS.get(key)
    if w is None:
        with torch.inference_mode(False), torch.no_grad():  # cached: never an inference tensor
            w = torch.full((bins,), 0.5 * n, dtype=like.real.dtype, device=like.device)
            w[0] = n
            if n % 2 == 0:
                w[-1] = n
        if len(_WEIGHTS) > 64:
            _WEIGHTS.clear()
        _WEIGHTS[key] = w
    return w


def rfft_adjoint(g: Tensor, n: int) -> Tensor:
    """The adjoint of ``torch.fft.rfft`` over the last dimension for a real input of
    length ``n`` (not differentiable): ``n * irfft(g * w, n=n)``, ``w`` = 1 at bin 0
    (and ``n / 2`` for even ``n``), ``1 / 2`` in between."""
    gw = g * _rfft_weights(n, g.shape[-1], g)
    return _irfft(gw, n, lambda: g.real.new_empty(*g.shape[:-1], n))


class RealSpectrum(torch.autograd.Function):
    """``torch.fft.rfft`` of a real ``(..., N)`` signal over its last dimension,
    through the planned native FFTs when available.  Backward (the adjoint):
    ``N * irfft(G * w, n=N)`` with ``w = 1`` at bin 0 (and ``N / 2`` for even ``N``)
    and ``1 / 2`` in between."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        ctx.n = x.shape[-1]
        return _rfft(x.contiguous(), lambda: x.new_empty(*x.shape[:-1], x.shape[-1] // 2 + 1,
                                                        dtype=torch.promote_types(x.dtype, torch.complex64)))

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor):  # noqa: D102
        if torch.is_grad_enabled():  # create_graph=True: differentiable
            return torch.fft.irfft(g * _rfft_weights(ctx.n, g.shape[-1], g), n=ctx.n)
        require_storage(g)
        return rfft_adjoint(g, ctx.n)


def extended_spectrum(x_hat: Tensor, n_pad: int, extra: int, pool: BufferPool | None = None) -> Tensor:
    """Two-sided spectrum of a real signal from its one-sided one, extended
    circularly: complex ``(B, n_pad + extra)`` with ``out[:, b] = X[b % n_pad]``,
    ``X[b] = x_hat[b]`` for ``b <= n_pad / 2`` else ``conj(x_hat[n_pad - b])``.

    Every first-order window is then a contiguous run of bins (no conjugation, no
    wrap-around), which :class:`ScalogramGroups` reads with plain slices.  Without
    autograd, the native route writes into a buffer of ``pool`` when one is given.
    """
    if not (x_hat.requires_grad and torch.is_grad_enabled()):
        k = _native(x_hat) if n_pad % 2 == 0 and extra <= n_pad and x_hat.dim() == 2 else None
        if k is not None:  # one pass instead of the five below
            return k.extend(x_hat, n_pad, extra, buffers.empty(pool, (x_hat.shape[0], n_pad + extra), x_hat))
    full = torch.cat((x_hat, x_hat[:, 1: n_pad // 2].flip(-1).conj()), dim=-1)
    return torch.cat((full, full[:, :extra]), dim=-1)


def extended_spectrum_adjoint(g: Tensor, n_pad: int, extra: int, weights: Tensor | None = None,
                              pool: BufferPool | None = None) -> Tensor:
    """The adjoint of :func:`extended_spectrum` (even ``n_pad``; not
    differentiable): the gradient ``(B, n_pad // 2 + 1)`` of ``x_hat`` from that of
    the extended spectrum ``(B, n_pad + extra)`` (autograd's convention for complex
    tensors: the conjugated bins pass the conjugated gradient), times ``weights``
    ``(n_pad // 2 + 1,)`` when given; the native route writes into a buffer of
    ``pool`` when one is given."""
    half = n_pad // 2 + 1
    g = g.contiguous()
    k = _native(g, *(() if weights is None else (weights,))) if extra <= n_pad and g.dim() == 2 else None
    if k is not None:
        return k.extend_adjoint(g, n_pad, extra, buffers.empty(pool, (g.shape[0], half), g), weights)
    full = g[:, :n_pad].clone()
    full[:, :extra] += g[:, n_pad: n_pad + extra]
    out = full[:, :half].clone()
    out[:, 1: n_pad // 2] += full[:, half:].flip(-1).conj()
    return out if weights is None else out.mul_(weights)


def extended_rfft_adjoint(g: Tensor, n_pad: int, extra: int, pool: BufferPool | None = None) -> Tensor:
    """The gradient of the real padded signal ``(B, n_pad)`` from that of its
    extended spectrum ``extended_spectrum(rfft(x), n_pad, extra)`` (the adjoints of
    both, the rfft weights folded into the first pass; not differentiable).  With
    ``pool``, the intermediate and the result are buffers of the pool."""
    w = _rfft_weights(n_pad, n_pad // 2 + 1, g)
    gw = extended_spectrum_adjoint(g, n_pad, extra, w, pool)
    return _irfft(gw, n_pad, lambda: buffers.empty(pool, (g.shape[0], n_pad), g.real))


def _filter_chunks(B: int, nf: int, L: int, device: torch.device) -> list[tuple[int, int]]:
    """Ranges ``(f0, f1)`` of filters whose ``(2, B, f1 - f0, L)`` planes fit
    :data:`SCALOGRAM_CHUNK_FLOATS` floats (at least one filter per chunk).  On an
    accelerator (kernel launches dominate, memory is plentiful) one chunk."""
    if device.type != "cpu":
        return [(0, nf)]
    fc = max(1, SCALOGRAM_CHUNK_FLOATS // max(1, 2 * B * L))
    return [(f0, min(nf, f0 + fc)) for f0 in range(0, nf, fc)]


#: Without the planned native FFTs: write the torch FFT outputs that autograd keeps
#: for the backward pass (the first-order planes, the second-order rows) into pooled
#: buffers.  torch's ``out=`` FFT variants compute into a fresh tensor and copy it
#: over, so this trades a copy pass for memory that is not returned to the OS and
#: faulted in again at every step (measured on the paper configuration: the step is
#: 8-10 % faster; pooling the transient spectra as well gains nothing more).
POOL_FFT_OUTPUTS: bool = True


def _pool_torch_fft(x: Tensor) -> bool:
    """Whether a kept torch FFT output goes to a pooled buffer (CPU only: elsewhere
    ``out=`` would only add a copy)."""
    return POOL_FFT_OUTPUTS and x.device.type == "cpu"


def _native_fft(*tensors: Tensor) -> native.Kernels | None:
    """The native kernels when they can run planned FFTs on these tensors."""
    k = _native(*tensors)
    return k if k is not None and k.has_fft else None


def _rfft(x: Tensor, out, keep: bool = False) -> Tensor:
    """``torch.fft.rfft(x)`` (last dimension): a planned MKL FFT straight into
    ``out()`` when available (no per-call plan, no copy); else torch's, into
    ``out()`` only when ``keep`` (see :data:`POOL_FFT_OUTPUTS`)."""
    k = _native_fft(x)
    if k is not None:
        try:
            return k.rfft(x, out())
        except native.NativeFFTError:  # unavailable from now on (see native.status())
            pass
    return torch.fft.rfft(x, out=out()) if keep and _pool_torch_fft(x) else torch.fft.rfft(x)


def _irfft(X: Tensor, n: int, out, keep: bool = False) -> Tensor:
    """``torch.fft.irfft(X, n=n)`` (last dimension) like :func:`_rfft`; ``X`` may be
    overwritten."""
    k = _native_fft(X) if n % 2 == 0 else None
    if k is not None:
        try:
            return k.irfft(X, n, out())
        except native.NativeFFTError:
            pass
    return torch.fft.irfft(X, n=n, out=out()) if keep and _pool_torch_fft(X) else torch.fft.irfft(X, n=n)


def _c2c(x: Tensor, forward: bool, out, keep: bool = False) -> Tensor:
    """``torch.fft.fft(x, norm="forward")`` (``forward``) or ``torch.fft.ifft(x)``
    (last dimension), like :func:`_rfft`."""
    k = _native_fft(x)
    if k is not None:
        try:
            return k.c2c(x, out(), forward, 1.0 / x.shape[-1])
        except native.NativeFFTError:
            pass
    kw = {"out": out()} if keep and _pool_torch_fft(x) else {}
    return torch.fft.fft(x, norm="forward", **kw) if forward else torch.fft.ifft(x, **kw)


class _Scratch:
    """Flat scratch buffers reused by the chunks and groups of one forward or backward
    call (transient planes and products need no fresh, page-faulting allocation per
    chunk), taken from ``pool`` (reused across calls) when one is given."""

    def __init__(self, ref: Tensor, pool: BufferPool | None = None) -> None:
        self.ref = ref
        self.pool = pool
        self.bufs: dict[str, Tensor] = {}

    def take(self, name: str, *shape: int) -> Tensor:
        n = math.prod(shape)
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = buffers.empty(self.pool, (n,), self.ref)
            self.bufs[name] = buf
        return buf[:n].view(shape)

    def take_c(self, name: str, *shape: int) -> Tensor:
        """:meth:`take` as a complex tensor of ``shape``."""
        return torch.view_as_complex(self.take(name, *shape, 2))

    def new(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A fresh (pooled) buffer of ``shape`` and ``like``'s dtype, not shared with
        later ``take``/``new`` calls (for FFT outputs that outlive a chunk)."""
        return buffers.empty(self.pool, shape, like)


def _empty_planes(ext: Tensor, nf: int, Lh: int, W: int, scratch: _Scratch) -> Tensor:
    """Real view ``(2, B, nf, Lh, 2)`` of the inverse-FFT inputs (in ``scratch``), zero
    outside bins ``1..W`` (which :func:`_fill_window` overwrites)."""
    Z = scratch.take("Z", 2, ext.shape[0], nf, Lh, 2)
    Z[:, :, :, 0].zero_()
    Z[:, :, :, W + 1:].zero_()
    return Z


def _fill_window(Z: Tensor, ext: Tensor, starts: tuple[int, ...], idx: Tensor, h2: Tensor) -> Tensor:
    """Write ``Z = (c / 2, -i c / 2)`` at bins ``1..W`` of the planes from
    :func:`_empty_planes`, for the windows ``c = ext[:, start_f : start_f + W] * h_f``
    (``h2 = h / 2``, ``(nf, W, 1)``; ``idx[f] = start_f + arange(W)``); returns the
    complex view ``(2, B, nf, Lh)``."""
    W = idx.shape[1]
    z0 = Z[0, :, :, 1: W + 1]
    if _use_slices(ext, W):
        e_r = torch.view_as_real(ext)
        for f, st in enumerate(starts):
            torch.mul(e_r[:, st: st + W], h2[f], out=z0[:, f])
    else:
        torch.mul(_gather(ext, idx), h2, out=z0)
    Zc = torch.view_as_complex(Z)
    torch.mul(Zc[0, :, :, 1: W + 1], -1j, out=Zc[1, :, :, 1: W + 1])
    return Zc


def rfft_adjoint_scale(L: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """``(L // 2 + 1, 2)`` weights of the adjoint of ``rfft`` on the real view, over
    ``L / 2``: 1 inside, 2 at bin 0 and (for even ``L``) at the Nyquist bin.  The
    first-order backward multiplies the incoming spectrum gradient by them (the
    ``L / 2`` is folded into the ``2 / L`` of the inverse FFT's adjoint)."""
    scale = torch.ones(L // 2 + 1, 2, dtype=dtype, device=device)
    scale[0] = 2.0
    if L % 2 == 0:
        scale[-1] = 2.0
    return scale


def _group_forward(ext: Tensor, starts: tuple[int, ...], idx: Tensor, h2: Tensor, L: int, save: bool,
                   scratch: _Scratch, consume, keep_spec: bool = False,
                   n_grad: int | None = None) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """Forward of one group (see :class:`ScalogramGroups`): ``consume(f0, f1, spec)``
    receives each chunk's spectrum ``rfft(U1)``, complex ``(B, f1 - f0, L // 2 + 1)``
    (a scratch buffer overwritten by the next chunk unless ``keep_spec``); returns the
    tensors the backward needs (with ``save``: the phasor ``p / u`` of each chunk's
    first ``n_grad`` rows, ``(2, n_grad, f1 - f0, L)``; ``n_grad=None``: all rows) and
    the chunks."""
    nf, W = idx.shape
    Lh = L // 2 + 1
    rows = ext.shape[0]
    n_grad = rows if n_grad is None else n_grad
    chunks = _filter_chunks(rows, nf, L, ext.device)
    saved: list[Tensor] = []
    Z = None
    k = _native(ext, h2) if idx.is_contiguous() else None
    for f0, f1 in chunks:
        if k is not None:  # one fused pass: window, -i window and the zeros around
            Z = scratch.take("Z", 2, rows, f1 - f0, Lh, 2)
            k.fill_planes(ext, idx[f0:f1], h2[f0:f1], Z)
            Zc = torch.view_as_complex(Z)
        else:
            if Z is None or Z.shape[2] != f1 - f0:  # equal chunks share the zeroed planes
                Z = _empty_planes(ext, f1 - f0, Lh, W, scratch)
            Zc = _fill_window(Z, ext, starts[f0:f1], idx[f0:f1], h2[f0:f1])
        shape = (2, rows, f1 - f0, L)
        p = _irfft(Zc, L, lambda: scratch.take("p", *shape), keep=True)  # (2, B, fc, L)
        u = scratch.take("u", *p.shape[1:])
        if save:  # the phasor p / u (u >= 1e-12) of the rows that need a gradient: all the backward needs
            ph = scratch.new((2, n_grad, f1 - f0, L), ext.real)
            _modulus_into(p[0, :n_grad], p[1, :n_grad], u[:n_grad], True, (ph[0], ph[1]))
            if n_grad < rows:
                _modulus_into(p[0, n_grad:], p[1, n_grad:], u[n_grad:])
            saved.append(ph)
        else:
            _modulus_into(p[0], p[1], u)
        sshape = (*u.shape[:-1], Lh)
        consume(f0, f1, _rfft(u, (lambda: scratch.new(sshape, ext)) if keep_spec else
                              (lambda: scratch.take_c("spec", *sshape))))
    return saved, chunks


def _group_backward(gext: Tensor, g_of, saved: list[Tensor], starts: tuple[int, ...], idx: Tensor, h2: Tensor,
                    scale: Tensor | None, L: int, chunks: list[tuple[int, int]], scratch: _Scratch) -> None:
    """Add one group's gradient with respect to ``ext`` to ``gext`` (see
    :class:`ScalogramGroups`); ``g_of(ci, f0, f1)`` gives the gradient with respect to
    chunk ``ci``'s spectrum, complex ``(B, f1 - f0, L // 2 + 1)``; ``scale`` is
    :func:`rfft_adjoint_scale`, or ``None`` when ``g_of`` applies it already."""
    B = gext.shape[0]
    W = idx.shape[1]
    k = _native(gext, h2) if idx.is_contiguous() else None
    for ci, (f0, f1) in enumerate(chunks):
        phasor = saved[ci]  # p / u
        # adjoint of rfft (real input): L * irfft(G with bins 1..L/2-1 halved), here
        # over L / 2 (see rfft_adjoint_scale)
        G = g_of(ci, f0, f1)
        if scale is not None:
            g_r = torch.view_as_real(G)
            G = torch.view_as_complex(torch.mul(g_r, scale, out=scratch.take("g", *g_r.shape)))
        gu = _irfft(G, L, lambda: scratch.take("gu", B, f1 - f0, L))
        gp = torch.mul(phasor, gu, out=scratch.take("p", *phasor.shape))  # modulus backward g p / u: (2, B, fc, L)
        del gu
        # adjoint of irfft at bins 1..W (strictly inside (0, L/2)): (2 / L) * rfft, the
        # 2 / L cancelling the L / 2 left out of the scale
        zshape = (*gp.shape[:-1], L // 2 + 1)
        gZ = _rfft(gp, lambda: scratch.take_c("gZ", *zshape))  # complex (2, B, fc, L // 2 + 1)
        del gp
        if k is not None:  # fused adjoint of the window fill
            k.combine_add(gZ, idx[f0:f1], h2[f0:f1], gext)
            continue
        gZ = gZ[..., 1: W + 1]  # (2, B, fc, W)
        # Z0 = ext * h2 and Z1 = -i Z0  =>  d ext = (dZ0 + i dZ1) * h2
        gc = torch.add(gZ[0], gZ[1], alpha=1j)  # (B, fc, W)
        del gZ
        torch.view_as_real(gc).mul_(h2[f0:f1])
        if _use_slices(gext, W):
            for f, st in enumerate(starts[f0:f1]):
                gext[:, st: st + W].add_(gc[:, f])
        else:
            gext.index_add_(1, idx[f0:f1].reshape(-1), gc.view(B, -1))


class ScalogramGroups(torch.autograd.Function):
    """Fused first-order groups: extended input spectrum -> ``rfft(|IFFT_L(window)|)``.

    Per group (``ext`` from :func:`extended_spectrum`; ``h2 = h / 2`` the filters'
    window values over ``2**k``, shape ``(nf, W, 1)``)::

        Z[0] = ext[:, start_f : start_f + W] * h2_f     # window moved to bins 1..W
        Z[1] = -i Z[0]                                  # one-sided irfft inputs:
        p    = irfft(Z, n=L)                            # p = (Re y, Im y)
        u    = sqrt(p0^2 + p1^2) + 1e-12                # (B, nf, L)
        out  = rfft(u)                                  # complex (B, nf, L//2+1)

    Moving each window to bins ``1..W`` multiplies ``y`` by a phase ramp, which the
    modulus removes.  The filters of a group are processed in chunks
    (:func:`_filter_chunks`) returned as separate outputs, so the large temporaries
    have a bounded size and no large spectrum is assembled.  All groups share one
    gradient buffer for ``ext``.  The backward applies the adjoints of these maps
    directly.  The modulus gradient is ``g * p / u``; ``u >= 1e-12 > 0`` so no zero
    guard is needed, and only the phasor ``p / u`` is kept for it.

    Args (of ``apply``): ``ext`` complex ``(B, E)``; ``specs`` a tuple of
    ``(starts, L)`` per group (window starts in ``ext``, inverse-FFT length with
    ``W + 1 <= L / 2 - 1``); then ``idx_0, h2_0, scale_0, idx_1, ...`` with ``idx``
    ``(nf, W)`` = ``start_f + arange(W)``, ``h2`` real ``(nf, W, 1)`` and ``scale``
    :func:`rfft_adjoint_scale` ``(L)``.

    Returns:
        the chunk spectra of all groups in order, complex ``(B, nf_c, L // 2 + 1)``.
    """

    @staticmethod
    def forward(ctx, ext: Tensor, specs: tuple, pool: BufferPool | None,  # noqa: D102
                *tensors: Tensor) -> tuple[Tensor, ...]:
        save = ctx.needs_input_grad[0]
        outs: list[Tensor] = []
        saved: list[Tensor] = []
        layout = []
        scratch = _Scratch(ext.real, pool)
        for gi, (starts, L) in enumerate(specs):
            idx, h2 = tensors[3 * gi], tensors[3 * gi + 1]
            o: list[Tensor] = []
            sv, chunks = _group_forward(ext, starts, idx, h2, L, save, scratch, lambda f0, f1, spec: o.append(spec),
                                        keep_spec=True)
            layout.append((len(outs), len(o), len(saved), len(sv), chunks))
            outs += o
            saved += sv
        if save:
            ctx.save_for_backward(ext, *tensors, *saved)
            ctx.specs, ctx.layout, ctx.n_tensors, ctx.pool = specs, layout, len(tensors), pool
        return tuple(outs)

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, *g_outs: Tensor):  # noqa: D102
        ext, *rest = ctx.saved_tensors
        tensors, saved = rest[: ctx.n_tensors], rest[ctx.n_tensors:]
        nones = (None,) * (2 + ctx.n_tensors)
        if torch.is_grad_enabled():
            # create_graph=True (e.g. Hessian-vector products of the theta-IS warmup):
            # differentiate the plain autograd composition so that the gradient is
            # itself differentiable.
            def plain(e: Tensor) -> Tensor:
                parts = []
                for gi, (_, L) in enumerate(ctx.specs):
                    idx, h2 = tensors[3 * gi], tensors[3 * gi + 1]
                    nf, W = idx.shape
                    parts.append(torch.fft.rfft(wavelet_modulus(e, idx, (2 * h2).expand(nf, W, 2), L, True)))
                return torch.cat([pp.flatten(1) for pp in parts], dim=1)

            flat = torch.cat([g.flatten(1) for g in g_outs], dim=1)
            return (_recompute_grad(plain, ext, flat), *nones)
        for g in g_outs:
            require_storage(g)
        gext = buffers.zeros(ctx.pool, ext.shape, ext)
        scratch = _Scratch(ext.real, ctx.pool)
        for gi, (starts, L) in enumerate(ctx.specs):
            o0, no, s0, ns, chunks = ctx.layout[gi]
            _group_backward(gext, lambda ci, f0, f1, o0=o0: g_outs[o0 + ci], saved[s0: s0 + ns], starts,
                            tensors[3 * gi], tensors[3 * gi + 1], tensors[3 * gi + 2], L, chunks, scratch)
        return (gext, *nones)


def _gather_window(out_r: Tensor, spec: Tensor, coef: Tensor, segs: tuple) -> None:
    """``out_r[:, :, dst:dst+n] = view_as_real(spec[..., src:src+n]) * coef[dst:dst+n]``
    for every run of ``segs``, descending runs read in reverse order (see
    :class:`SecondOrderSpectrum`)."""
    for src, dst, n, desc in segs:
        piece = spec[..., src: src + n]
        if desc:
            piece = piece.flip(-1)
        torch.mul(torch.view_as_real(piece), coef[dst: dst + n], out=out_r[:, :, dst: dst + n])


def _scatter_window(gu_r: Tensor, g_r: Tensor, coef: Tensor, segs: tuple) -> None:
    """Adjoint of :func:`_gather_window`: ``gu_r[:, :, src:src+n] += g_r[:, :,
    dst:dst+n] * coef[dst:dst+n]`` (reversed for descending runs; runs may overlap)."""
    for src, dst, n, desc in segs:
        piece = g_r[:, :, dst: dst + n] * coef[dst: dst + n]
        if desc:
            piece = piece.flip(-2)
        gu_r[:, :, src: src + n].add_(piece)


def _native_group(k: native.Kernels | None, *tensors: Tensor) -> bool:
    """Whether the first-order groups run as native calls (``k``: the kernels with
    planned FFTs, or ``None``; the groups' tensors must be contiguous)."""
    return k is not None and all(t.is_contiguous() for t in tensors)


def _bounds(chunks: list[tuple[int, int]]) -> list[int]:
    return [chunks[0][0]] + [f1 for _, f1 in chunks]


class _NativePlan(NamedTuple):
    """How :func:`scalogram_second_order` runs its groups natively on a batch (built
    once per path, batch size and gradient rows when the caller passes a cache):
    ``entries`` one per group and row block ``(group, r0, b0, b1, e, forward call,
    backward call or None, phasor offset, chunks)`` (output rows from ``r0``, signals
    ``b0 .. b1`` of which ``b0 .. e`` need a gradient), the phasor values in all and
    the scratch each buffer needs."""

    entries: tuple
    phasor_size: int
    work: tuple[int, int, int, int]
    work_bwd: tuple[int, int, int, int]


def _native_plan(k: native.Kernels, specs: tuple, tensors: tuple, rows: int, n_grad: int, save: bool,
                 device: torch.device, cache: dict | None) -> _NativePlan:
    key = ("native", rows, n_grad, save, SCALOGRAM_CHUNK_FLOATS)
    plan = None if cache is None else cache.get(key)
    if plan is not None:
        return plan
    entries, size, work, work_bwd, r0 = [], 0, [0, 0, 0, 0], [0, 0, 0, 0], 0
    for gi, (_, L, segs) in enumerate(specs):
        idx, h2, coef = tensors[3 * gi: 3 * gi + 3]
        spec = k.group_spec(idx, h2, coef, native.segments(segs), L)
        for b0, b1 in _row_blocks(rows, n_grad, L, device):
            e = max(b0, min(b1, n_grad)) if save else b0
            chunks = _filter_chunks(b1 - b0, spec.nf, L, device)
            fwd = k.group_call(spec, b1 - b0, e - b0, _bounds(chunks))
            bwd = k.group_call(spec, e - b0, e - b0, _bounds(chunks), backward=True) if e > b0 else None
            entries.append((gi, r0, b0, b1, e, fwd, bwd, size, chunks))
            size += fwd.phasor_size
            work = [max(a, b) for a, b in zip(work, fwd.work)]
            if bwd is not None:
                work_bwd = [max(a, b) for a, b in zip(work_bwd, bwd.work)]
        r0 += spec.nf
    plan = _NativePlan(tuple(entries), size, tuple(work), tuple(work_bwd))
    if cache is not None:
        cache[key] = plan
    return plan


def _native_forward(k: native.Kernels, plan: _NativePlan, ext: Tensor, out: Tensor,
                    scratch: _Scratch) -> Tensor | None:
    """Run ``plan``'s group calls; returns the phasor buffer (``None``: none kept)."""
    rows = ext.shape[0]
    work = tuple(scratch.take(name, n) for name, n in zip(("Z", "p", "u", "spec"), plan.work))
    phasor = scratch.new((plan.phasor_size,), ext.real) if plan.phasor_size else None
    for _, r0, b0, b1, _, fwd, _, off, _ in plan.entries:
        whole = b0 == 0 and b1 == rows
        ph = phasor[off: off + fwd.phasor_size] if fwd.n_ph else None
        k.run_group_forward(fwd, ext if whole else ext[b0:b1], out if whole else out[b0:b1], r0, work, ph)
    return phasor


def _native_backward(k: native.Kernels | None, plan: _NativePlan, phasor: Tensor, g: Tensor, gext: Tensor,
                     specs: tuple, tensors: tuple, scratch: _Scratch) -> None:
    """The adjoint of :func:`_native_forward` for ``g``'s rows, into ``gext``
    (chunk by chunk in Python when the native kernels are off by now)."""
    B = g.shape[0]
    work = None if k is None else tuple(scratch.take(n, m) for n, m in zip(("G", "gu", "p", "gZ"), plan.work_bwd))
    for gi, r0, b0, _, e, fwd, bwd, off, chunks in plan.entries:
        if bwd is None or b0 >= B:
            continue
        whole = b0 == 0 and e == B
        gb, geb = (g, gext) if whole else (g[b0:e], gext[b0:e])
        ph = phasor[off: off + fwd.phasor_size]
        if k is not None:
            k.run_group_backward(bwd, gb, r0, work, ph, geb)
            continue
        spec, L, n = fwd.spec, fwd.spec.L, e - b0
        views = [ph[o: o + 2 * n * (f1 - f0) * L].view(2, n, f1 - f0, L) for o, (f0, f1) in zip(fwd.offsets, chunks)]
        _group_backward_python(gb, geb, views, specs[gi][0], spec.idx, spec.h2, spec.coef, L, specs[gi][2], chunks,
                               r0, scratch)


def _row_blocks(rows: int, n_grad: int, L: int, device: torch.device) -> list[tuple[int, int]]:
    """Row ranges a first-order group runs in natively: all rows at once when one
    filter's ``(2, rows, 1, L)`` planes fit :data:`SCALOGRAM_CHUNK_FLOATS`, else the
    rows that need a gradient (the first ``n_grad``) and the others separately, each
    cut to fit (long transforms at a large batch: with two batches stacked the planes
    of one filter alone can outgrow the cache).  One range on an accelerator."""
    if device.type != "cpu" or 2 * rows * L <= SCALOGRAM_CHUNK_FLOATS:
        return [(0, rows)]
    step = max(1, SCALOGRAM_CHUNK_FLOATS // (2 * L))
    return [(b, min(end, b + step)) for start, end in ((0, n_grad), (n_grad, rows)) for b in range(start, end, step)]


def scalogram_second_order(ext: Tensor, specs: tuple, width: int, pool: BufferPool | None, tensors: tuple,
                           save: bool, n_grad: int | None = None,
                           cache: dict | None = None) -> tuple[Tensor, list[Tensor], list]:
    """Forward of :class:`ScalogramSecondOrder` (no autograd): the output, and with
    ``save`` what :func:`scalogram_second_order_adjoint` needs: the phasors of the
    first ``n_grad`` rows (``None``: all) and the layout of the groups' row blocks
    and chunks.  ``cache``: a dict kept with the path (the native group calls are
    prepared and validated once per batch size there)."""
    rows = ext.shape[0]
    n_grad = rows if n_grad is None else n_grad
    n_rows = sum(tensors[3 * gi].shape[0] for gi in range(len(specs)))
    out = buffers.zeros(pool, (rows, n_rows, width), ext)
    scratch = _Scratch(ext.real, pool)
    k = _native_fft(ext, out)
    if _native_group(k, ext, *tensors):
        plan = _native_plan(k, specs, tensors, rows, n_grad, save, ext.device, cache)
        phasor = _native_forward(k, plan, ext, out, scratch)
        return out, ([] if phasor is None else [phasor]), [("native", plan)]
    out_r = torch.view_as_real(out)
    saved: list[Tensor] = []
    layout = []  # ("python", group, first output row, rows 0..n_grad, first saved phasor, chunks)
    r0 = 0
    for gi, (starts, L, segs) in enumerate(specs):
        idx, h2, coef = tensors[3 * gi: 3 * gi + 3]

        def gather(f0: int, f1: int, spec: Tensor, r0: int = r0, coef: Tensor = coef, segs: tuple = segs) -> None:
            k = _native(spec, out, coef)
            if k is not None:
                k.gather_segments(spec, out, r0 + f0, coef, native.segments(segs))
            else:
                _gather_window(out_r[:, r0 + f0: r0 + f1], spec, coef, segs)

        sv, chunks = _group_forward(ext, starts, idx, h2, L, save, scratch, gather, n_grad=n_grad)
        layout.append(("python", gi, r0, 0, n_grad, len(saved), chunks))
        saved += sv
        r0 += idx.shape[0]
    return out, saved, layout


def scalogram_second_order_adjoint(g: Tensor, ext_len: int, specs: tuple, layout: list, tensors: tuple,
                                   saved: list[Tensor], pool: BufferPool | None) -> Tensor:
    """Backward of :class:`ScalogramSecondOrder` (no autograd) for the rows of ``g``
    (complex ``(B, n_rows, width)``, the rows whose phasors ``saved`` holds): the
    gradient of ``ext``, complex ``(B, ext_len)``."""
    g = g.contiguous()
    B = g.shape[0]
    gext = buffers.zeros(pool, (B, ext_len), g)
    scratch = _Scratch(torch.view_as_real(g), pool)
    if layout and layout[0][0] == "native":
        k = _native_fft(g, gext)
        _native_backward(k if _native_group(k, *tensors) else None, layout[0][1], saved[0], g, gext, specs, tensors,
                         scratch)
        return gext
    for _, gi, r0, b0, b1, s0, chunks in layout:
        starts, L, segs = specs[gi]
        idx, h2, coef = tensors[3 * gi: 3 * gi + 3]
        _group_backward_python(g[b0:b1], gext[b0:b1], saved[s0: s0 + len(chunks)], starts, idx, h2, coef, L, segs,
                               chunks, r0, scratch)
    return gext


def _group_backward_python(g: Tensor, gext: Tensor, saved: list[Tensor], starts: tuple, idx: Tensor, h2: Tensor,
                           coef: Tensor, L: int, segs: tuple, chunks: list[tuple[int, int]], r0: int,
                           scratch: _Scratch) -> None:
    """One group of :func:`scalogram_second_order_adjoint`, chunk by chunk in Python
    (the route without the native group kernels), accumulated into ``gext``."""
    B = g.shape[0]
    g_r = torch.view_as_real(g)
    Lh = L // 2 + 1
    lo = min(src for src, _, _, _ in segs)
    hi = max(src + n for src, _, n, _ in segs)
    state: dict = {}

    def g_of(ci: int, f0: int, f1: int) -> Tensor:
        # gradient of the chunk's spectrum: zero outside the window's bins
        # [lo, hi); the buffer is zeroed whole once per shape, then only there
        G = scratch.take("G", B, f1 - f0, Lh, 2)
        if state.get("shape") != G.shape:
            G.zero_()
            state["shape"] = G.shape
        else:
            G[:, :, lo:hi].zero_()
        Gc = torch.view_as_complex(G)
        k = _native(g, coef, Gc)
        if k is not None:  # scatter and end-bin weights in one pass
            k.scatter_segments(g, r0 + f0, coef, native.segments(segs), Gc, True, L % 2 == 0)
            return Gc
        _scatter_window(G, g_r[:, r0 + f0: r0 + f1], coef, segs)
        # rfft_adjoint_scale in place: 2 at bin 0 and the Nyquist bin, else 1
        # (those bins are zero or inside [lo, hi), so rewritten every chunk)
        G[:, :, 0].mul_(2.0)
        if L % 2 == 0:
            G[:, :, -1].mul_(2.0)
        return Gc

    _group_backward(gext, g_of, saved, starts, idx, h2, None, L, chunks, scratch)


def _scalogram_second_order_plain(e: Tensor, specs: tuple, width: int, tensors: tuple) -> Tensor:
    """Plain-autograd :class:`ScalogramSecondOrder` (twice differentiable)."""
    spectra, coefs, segments = [], [], []
    for gi, (_, L, segs) in enumerate(specs):
        idx, h2, coef = tensors[3 * gi: 3 * gi + 3]
        nf, W = idx.shape
        spectra.append(torch.fft.rfft(wavelet_modulus(e, idx, (2 * h2).expand(nf, W, 2), L, True)))
        coefs.append(coef)
        segments.append(segs)
    return SecondOrderSpectrum.apply(tuple(coefs), tuple(segments), width, *spectra)


class ScalogramSecondOrder(torch.autograd.Function):
    """:class:`ScalogramGroups` followed by :class:`SecondOrderSpectrum` for one
    second-order filter, fused: each chunk's scalogram spectrum is consumed at once
    (its window gathered into the output) instead of being kept, and in the backward
    pass the gradient of a chunk's spectrum, zero outside the window, is built in one
    reused buffer.  Same result as the two functions in sequence.

    Args (of ``apply``): ``ext``; ``specs`` a tuple of ``(starts, L, segments)`` per
    group (``segments``: the runs of :class:`SecondOrderSpectrum`); ``width`` the
    output's number of columns; ``pool``; then ``idx_0, h2_0, coef_0, idx_1, ...``
    (``coef``: the second-order window coefficients, ``(width_win, 2)``).

    Returns:
        complex ``(B, n_rows, width)``, ``n_rows`` the total number of filters.
    """

    @staticmethod
    def forward(ctx, ext: Tensor, specs: tuple, width: int, pool: BufferPool | None,  # noqa: D102
                *tensors: Tensor) -> Tensor:
        save = ctx.needs_input_grad[0]
        out, saved, layout = scalogram_second_order(ext, specs, width, pool, tensors, save)
        if save:
            ctx.save_for_backward(ext, *tensors, *saved)
            ctx.specs, ctx.layout, ctx.n_tensors, ctx.width, ctx.pool = specs, layout, len(tensors), width, pool
        return out

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor):  # noqa: D102
        ext, *rest = ctx.saved_tensors
        tensors, saved = rest[: ctx.n_tensors], rest[ctx.n_tensors:]
        nones = (None,) * (3 + ctx.n_tensors)
        if torch.is_grad_enabled():  # create_graph=True: differentiable recomputation
            return (_recompute_grad(lambda e: _scalogram_second_order_plain(e, ctx.specs, ctx.width, tensors),
                                    ext, g), *nones)
        require_storage(g)
        return (scalogram_second_order_adjoint(g, ext.shape[1], ctx.specs, ctx.layout, tensors, saved, ctx.pool),
                *nones)


def scalogram_spectra(ext: Tensor, groups: list[tuple[tuple[int, ...], Tensor, Tensor, Tensor, int, bool]],
                      pool: BufferPool | None = None) -> list[list[Tensor]]:
    """``rfft(U1)`` of several first-order groups, each as consecutive chunks of
    filters: complex ``(B, nf_c, L // 2 + 1)`` each, ``sum(nf_c) = nf`` (one chunk
    unless the group is large; joining them would cost a copy of the whole spectrum).

    ``ext`` is the extended two-sided input spectrum (:func:`extended_spectrum`); each
    group is ``(starts, idx, h2, scale, L, one_sided)``: window starts, ``idx[f] =
    starts[f] + arange(W)``, window values ``h2 = h / 2`` ``(nf, W, 1)``,
    :func:`rfft_adjoint_scale` ``(L)``, inverse-FFT length.  The
    ``one_sided`` groups run in one fused :class:`ScalogramGroups` call; the others
    (window too wide for one half of the spectrum) through :func:`wavelet_modulus` and
    a plain ``rfft``.  Large work buffers come from ``pool`` when given.
    """
    fused = [g for g in groups if g[5]]
    res: dict[int, list[Tensor]] = {}
    if fused:
        specs = tuple((tuple(g[0]), g[4]) for g in fused)
        tensors = [t for g in fused for t in (g[1], g[2], g[3])]
        outs = ScalogramGroups.apply(ext, specs, pool, *tensors)
        k = 0
        for gi, g in enumerate(groups):
            if g[5]:
                n = len(_filter_chunks(ext.shape[0], g[1].shape[0], g[4], ext.device))
                res[gi] = list(outs[k: k + n])
                k += n
    for gi, (starts, idx, h2, scale, L, one_sided) in enumerate(groups):
        if not one_sided:
            nf, W = idx.shape
            res[gi] = [torch.fft.rfft(wavelet_modulus(ext, idx, (2 * h2).expand(nf, W, 2), L, False))]
    return [res[gi] for gi in range(len(groups))]


def first_order_time_average(u1_hat: Tensor, phi_idx: Tensor, phi_coef: Tensor) -> Tensor:
    """``S1 = Re IFFT_{T_s}(sub(U1hat * phi.level[k], 2**(s - k)))`` restricted to the
    low-pass window.

    Args:
        u1_hat: ``rfft(U1)``, complex ``(B, nf, L // 2 + 1)``.
        phi_idx: ``(Wp,)`` window indices.
        phi_coef: ``(Wp, 2, T_s)`` coefficients (see ``FirstOrderGroup``).

    Returns:
        ``(B, nf, T_s)`` real.
    """
    g = _gather(u1_hat, phi_idx)  # (B, nf, Wp, 2)
    B, nf = g.shape[:2]
    return torch.matmul(g.reshape(B, nf, -1), phi_coef.reshape(-1, phi_coef.shape[-1]))


class SecondOrderSpectrum(torch.autograd.Function):
    """Windowed second-order spectra of all rows, gathered with slices.

    For each first-order group ``k``: ``out[:, rows_k, dst:dst+n] = U_k[..., src:src+n]
    * coef_k[dst:dst+n]`` for every run ``(src, dst, n, descending)`` of
    ``segments[k]`` (descending runs read the bins in reverse order; ``coef`` holds
    ``(h, -h)`` there, which conjugates them).  ``out`` has ``width`` columns (zeros
    beyond the window), ready for an inverse FFT of that length.
    """

    @staticmethod
    def forward(ctx, coefs: tuple, segments: tuple, width: int, *u1_hats: Tensor) -> Tensor:  # noqa: D102
        B = u1_hats[0].shape[0]
        n_rows = sum(u.shape[1] for u in u1_hats)
        out = u1_hats[0].new_zeros(B, n_rows, width)
        out_r = torch.view_as_real(out)
        r0 = 0
        for u, coef, segs in zip(u1_hats, coefs, segments):
            r1 = r0 + u.shape[1]
            _gather_window(out_r[:, r0:r1], u, coef, segs)
            r0 = r1
        ctx.coefs, ctx.segments = coefs, segments
        ctx.shapes = [u.shape for u in u1_hats]
        return out

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor):  # noqa: D102
        g_r = torch.view_as_real(g)
        grads = []
        r0 = 0
        for shape, coef, segs in zip(ctx.shapes, ctx.coefs, ctx.segments):
            r1 = r0 + shape[1]
            gu = g.new_zeros(shape)
            _scatter_window(torch.view_as_real(gu), g_r[:, r0:r1], coef, segs)
            grads.append(gu)
            r0 = r1
        return (None, None, None, *grads)


def second_order_rows(u1_hats: list[Tensor], coef: list[Tensor], segments: list[tuple], T2: int,
                      fold: Tensor | None, pool: BufferPool | None = None) -> Tensor:
    """Second-order wavelet transform ``Y2[n1] = IFFT_T2(sub(U1hat[n1] * psi2.level[k1],
    2**(j2 - k1)))`` of the first ``n1_max`` scalogram rows.

    Args:
        u1_hats: ``rfft(U1)`` of consecutive blocks of scalogram rows (first-order
            groups ``k < j2``, possibly split in chunks), complex
            ``(B, nf_c, L_k // 2 + 1)``.
        coef / segments: per block, ``(W, 2)`` coefficients and the gather runs (see
            :class:`SecondOrderSpectrum`); the chunks of one group share them.
        T2: output length ``N_pad / 2**j2``.
        fold: ``None`` when ``W <= T2``, else the positions ``i % T2``.
        pool: optional :class:`BufferPool` for the inverse FFT's output.

    Returns:
        complex ``(B, n1_max, T2)``: ``Y2`` times a phase ramp common to all rows (the
        windows are moved to bin 0), which a later modulus removes.
    """
    W = coef[0].shape[0]
    win = SecondOrderSpectrum.apply(tuple(coef), tuple(segments), T2 if fold is None else W, *u1_hats)
    return second_order_inverse(win, T2, fold, pool)


class InverseFFT(torch.autograd.Function):
    """``torch.fft.ifft`` over the last dimension, with its output (and its gradient's)
    taken from a :class:`BufferPool`.  Backward: ``fft(g) / n`` (the adjoint)."""

    @staticmethod
    def forward(ctx, x: Tensor, pool: BufferPool | None) -> Tensor:  # noqa: D102
        ctx.pool = pool
        return _c2c(x, False, lambda: buffers.empty(pool, x.shape, x), keep=pool is not None)

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor):  # noqa: D102
        if torch.is_grad_enabled():  # create_graph=True: differentiable
            return torch.fft.fft(g, norm="forward"), None
        require_storage(g)
        return _c2c(g.contiguous(), True, lambda: buffers.empty(ctx.pool, g.shape, g)), None


def fold_windows(win: Tensor, T2: int, fold: Tensor | None) -> Tensor:
    """Second-order windows ``(B, n1, width)`` folded onto ``T2`` bins when ``fold``
    (the positions ``i % T2``) is given (differentiable; ``win`` itself otherwise)."""
    if fold is None:
        return win
    return win.new_zeros(*win.shape[:-1], T2).index_add_(-1, fold, win)


def second_order_inverse(win: Tensor, T2: int, fold: Tensor | None, pool: BufferPool | None = None) -> Tensor:
    """``ifft`` of gathered second-order windows ``(B, n1, width)`` (see
    :class:`SecondOrderSpectrum`), folded onto ``T2`` bins first when ``fold`` is
    given: complex ``(B, n1, T2)``."""
    return InverseFFT.apply(fold_windows(win, T2, fold), pool)  # (B, n1, T2)


#: Longest inner dimension of one float matrix product accumulating the time
#: averages: BLAS sums long inner products of many small positive terms with a
#: relative error that grows with their length (about 3e-5 in float32 over 32768
#: terms on an AVX-512 MKL, against 1e-7 for 1024-term blocks summed afterwards).
ACCUMULATE_BLOCK: int = 1024


#: Floats per time chunk of :class:`FreqScatterModulusAverage`'s ``(B, 2R, chunk)``
#: working set...
FREQ_CHUNK_FLOATS: int = 1 << 19
#: ...unless that makes more than this many chunks (long time axes: per-chunk
#: overhead then outweighs the cache benefit).
FREQ_MAX_CHUNKS: int = 8


def _chunk_size(batch: int, rows: int, length: int, device: torch.device) -> int:
    """Time columns per chunk so that ``batch * rows * chunk`` stays near
    :data:`FREQ_CHUNK_FLOATS`, with at most :data:`FREQ_MAX_CHUNKS` chunks (a power
    of two, at least 64); the whole length on an accelerator."""
    if device.type != "cpu":
        return length
    ch = max(64, FREQ_CHUNK_FLOATS // max(1, batch * rows), length // FREQ_MAX_CHUNKS)
    ch = 1 << (ch.bit_length() - 1)  # power of two
    return min(length, ch)


def time_average(u: Tensor, A: Tensor) -> Tensor:
    """``u @ A`` for ``u`` ``(..., T)`` and ``A`` ``(T, Tc)``, summing the length-``T``
    inner products in blocks of :data:`ACCUMULATE_BLOCK` (accurate in float32; see
    there).  Differentiable."""
    T = u.shape[-1]
    if T <= ACCUMULATE_BLOCK or T % ACCUMULATE_BLOCK:
        return torch.matmul(u, A)
    nb = T // ACCUMULATE_BLOCK
    lead = u.shape[:-1]
    ub = u.reshape(-1, nb, ACCUMULATE_BLOCK).transpose(0, 1)  # (nb, rows, block)
    part = torch.bmm(ub, A.reshape(nb, ACCUMULATE_BLOCK, A.shape[-1]))  # (nb, rows, Tc)
    return part.sum(0).reshape(*lead, A.shape[-1])


def _planar_chunk(y2: Tensor, c0: int, c1: int) -> Tensor:
    """Rows of a complex ``(B, n, T2)`` tensor, columns ``c0:c1``, as a row-interleaved
    real ``(B, 2n, c1 - c0)`` tensor (real, imag per row)."""
    B, n = y2.shape[:2]
    return torch.view_as_real(y2[:, :, c0:c1]).transpose(-1, -2).reshape(B, 2 * n, c1 - c0)


def _complex_operator(M: Tensor) -> Tensor:
    """The complex ``(R, n)`` matrix of a complex-linear operator given in real form
    ``(2R, 2n)`` on row-interleaved (real, imag) rows (``M[2r, 2k] = Re``,
    ``M[2r + 1, 2k] = Im``)."""
    return torch.complex(M[0::2, 0::2], M[1::2, 0::2])


def _modulus_cplx_into(z: Tensor, out: Tensor) -> Tensor:
    """``out = |z| + 1e-12`` for complex ``z`` (no autograd)."""
    k = _native(out, z, contiguous=False)
    if k is not None:
        try:
            k.modulus_cplx(z, out)
            return out
        except ValueError:  # rows without a uniform stride: torch below
            pass
    zr = torch.view_as_real(z)
    return _modulus_torch(zr[..., 0], zr[..., 1], out)


def _scale_by_modulus(z: Tensor, g: Tensor, ubuf: Tensor, out: Tensor | None = None) -> Tensor:
    """``out = z * g / (|z| + 1e-12)`` (``out=None``: in place in ``z``; ``ubuf``:
    scratch of ``g``'s shape for the torch fallback)."""
    out = z if out is None else out
    k = _native(g, z, out, contiguous=False)
    if k is not None:
        try:
            return k.scale_cplx(z, g, out)
        except ValueError:
            pass
    u = _modulus_cplx_into(z, ubuf)
    torch.mul(torch.view_as_real(z), torch.div(g, u, out=u).unsqueeze(-1), out=torch.view_as_real(out))
    return out


#: :class:`FreqScatterModulusAverage` keeps ``M y2`` for the backward pass when it has
#: at most this many (complex) elements, instead of recomputing it: 64 MiB in
#: float32, enough for the small-``j2`` paths of the paper setting at batch 4, where
#: the recomputation cost 2-7 % of the step (measured).
FREQ_KEEP_MAX: int = 1 << 23


class FreqOperands(NamedTuple):
    """One path's frequential stage in the layout of the fused native kernels
    (:func:`freq_operands`): ``Mr``, ``Mi`` the real and imaginary parts of the
    complex operator, real ``(R, n)`` contiguous; ``AT`` the transposed time-averaging
    matrix, real ``(Tc, T2)`` with contiguous rows; ``band`` its
    :func:`averaging_band` (or ``None``: every column everywhere)."""

    Mr: Tensor
    Mi: Tensor
    AT: Tensor
    band: Tensor | None = None


def freq_operands(M: Tensor, A: Tensor, AT: Tensor | None = None, band: Tensor | None = None) -> FreqOperands:
    """:class:`FreqOperands` of the real-form operator ``M`` ``(2R, 2n)`` and the
    time averaging ``A`` ``(T2, Tc)`` (``AT``: ``A.t()`` already laid out, and
    ``band`` its :func:`averaging_band`, to share them between the paths of one
    ``j2``)."""
    Mc = _complex_operator(M)
    return FreqOperands(Mc.real.contiguous(), Mc.imag.contiguous(), A.t().contiguous() if AT is None else AT, band)


#: Entries of the time-averaging matrix below this fraction of its largest are left
#: out by the native frequential kernels (:func:`averaging_band`): the low-pass's far
#: tails, down at the float32 rounding floor of the filters (about 1e-8 of the peak
#: beyond the main lobe), as for the rows of the frequential operator.  Measured on
#: the TR-808 golden data (T = 2048, 64 frames): leaving out entries below 1e-6 of
#: the peak changes no path's error against the reference (1.6e-6 at most, as with
#: every entry); 1e-7 keeps 18-19 of the 64 frames per 64-sample block.
AVERAGE_BAND_FLOOR: float = 1e-7


def averaging_band(AT: Tensor, floor: float = AVERAGE_BAND_FLOOR, block: int = 64) -> Tensor | None:
    """For each ``block``-sample block of the transposed time averaging ``AT``
    ``(Tc, T2)``, the shortest cyclic run of frames ``c = (start + j) % Tc``, ``j <
    count``, outside which all its entries are at most ``floor`` times the largest:
    int64 ``(ceil(T2 / block), 2)`` rows ``(start, count)``; ``None`` when that
    leaves out less than a tenth of the work (short signals, long averages), and in
    float64 (where those entries are accurate, not rounding noise: every entry is
    used)."""
    if AT.dtype != torch.float32:
        return None
    Tc, T2 = AT.shape
    a = AT.detach().abs().to("cpu", torch.float64)
    nz = a > floor * float(a.max())
    nb = -(-T2 // block)
    nz = F.pad(nz, (0, nb * block - T2)).reshape(Tc, nb, block).any(-1).t().tolist()  # (nb, Tc)
    band = []
    for row in nz:
        if all(row) or not any(row):
            band.append((0, Tc if any(row) else 0))
            continue
        # the complement of the longest cyclic run of negligible frames
        best_len, best_end, run = 0, 0, 0
        for c in range(2 * Tc):
            if row[c % Tc]:
                run = 0
            else:
                run += 1
                if run > best_len:
                    best_len, best_end = min(run, Tc), c
        band.append(((best_end + 1) % Tc, Tc - best_len))
    out = torch.tensor(band, dtype=torch.int64)
    return None if float(out[:, 1].sum()) > 0.9 * nb * Tc else out


def freq_chunks(T2: int) -> int:
    """Time chunks of the fused native frequential kernels (tasks per batch row): at
    most 16, of at least 1024 samples.  A function of the length only, so that the
    result does not depend on the number of threads."""
    return max(1, min(16, T2 // 1024))


def _native_freq(y2: Tensor, ops: FreqOperands | None) -> native.Kernels | None:
    if ops is None or not y2.is_contiguous():
        return None
    return _native(y2, ops.AT, contiguous=False)


def freq_forward(y2: Tensor, M: Tensor, A: Tensor, pool: BufferPool | None, ops: FreqOperands | None,
                 keep: bool) -> tuple[Tensor, Tensor | None, int]:
    """Forward of :class:`FreqScatterModulusAverage` (no autograd): ``(S, kept,
    ch)``, ``S = |M y2| A`` ``(B, R, Tc)``; ``kept`` (torch route, ``keep`` and small
    enough) the product ``M y2`` in time chunks of ``ch`` columns, for
    :func:`freq_adjoint`; ``ch = 0`` when the native kernels ran."""
    B, n, T2 = y2.shape
    k = _native_freq(y2, ops)
    if k is not None:
        out = A.new_empty(B, ops.Mr.shape[0], ops.AT.shape[0])
        k.freq_forward(y2, ops.Mr, ops.Mi, ops.AT, out, freq_chunks(T2), ops.band)
        return out, None, 0
    Mc = _complex_operator(M)
    R = Mc.shape[0]
    Tc = A.shape[1]
    ch = _chunk_size(B, 2 * R, T2, y2.device)
    out = A.new_zeros(B * R, Tc)
    n_ch = -(-T2 // ch)
    keep = keep and n_ch * B * R * ch <= FREQ_KEEP_MAX
    ybuf = buffers.empty(pool, (n_ch if keep else 1, B, R, ch), y2)
    ubuf = buffers.empty(pool, (B, R, ch), A)
    for ci, c0 in enumerate(range(0, T2, ch)):
        c1 = min(T2, c0 + ch)
        w = c1 - c0
        y = ybuf[ci if keep else 0][:, :, :w]
        torch.matmul(Mc, y2[:, :, c0:c1], out=y)
        u = _modulus_cplx_into(y, ubuf[:, :, :w])
        # blocked products + add, not addmm_: the latter accumulates as
        # inaccurately as one long product (see ACCUMULATE_BLOCK)
        out.add_(time_average(u.reshape(B * R, w), A[c0:c1]))
    return out.view(B, R, Tc), (ybuf if keep else None), ch


def freq_adjoint(y2: Tensor, g: Tensor, M: Tensor, A: Tensor, pool: BufferPool | None, ops: FreqOperands | None,
                 kept: Tensor | None, ch: int) -> Tensor:
    """Backward of :class:`FreqScatterModulusAverage` (no autograd): the gradient of
    ``y2`` ``(B, n, T2)`` (the first ``B`` rows of the forward's) for the gradient
    ``g`` ``(B, R, Tc)`` of ``S``; ``kept``, ``ch`` from :func:`freq_forward`."""
    B, n, T2 = y2.shape
    k = _native_freq(y2, ops) if ch == 0 else None
    if k is not None:
        grad = buffers.empty(pool, y2.shape, y2)
        return k.freq_backward(y2, ops.Mr, ops.Mi, ops.AT, g.contiguous(), grad, freq_chunks(T2), ops.band)
    Mc = _complex_operator(M)
    R = Mc.shape[0]
    McH = Mc.conj().t()
    ch = ch or _chunk_size(B, 2 * R, T2, y2.device)
    grad = buffers.empty(pool, y2.shape, y2)
    g2 = g.reshape(B * R, -1)
    ybuf = buffers.empty(pool, (B, R, ch), y2)
    ubuf = buffers.empty(pool, (B, R, ch), A)
    gbuf = buffers.empty(pool, (B * R, ch), A)
    for ci, c0 in enumerate(range(0, T2, ch)):
        c1 = min(T2, c0 + ch)
        w = c1 - c0
        y = ybuf[:, :, :w]
        # M y2: kept (left unchanged, for retain_graph) or recomputed into y
        prod = kept[ci][:B, :, :w] if kept is not None else torch.matmul(Mc, y2[:, :, c0:c1], out=y)
        gu = gbuf[:, :w]
        torch.mm(g2, A[c0:c1].t(), out=gu)  # (B R, w)
        _scale_by_modulus(prod, gu.view(B, R, w), ubuf[:, :, :w], out=y)  # g y / |y|
        if w == T2:
            torch.matmul(McH, y, out=grad)
        else:
            grad[:, :, c0:c1] = torch.matmul(McH, y)
    return grad


class FreqScatterModulusAverage(torch.autograd.Function):
    """Fused ``S = |M y2| A`` (frequential scattering, modulus, time averaging).

    ``y2``: complex ``(B, n, T2)``; ``M``: ``(2R, 2n)`` real form of the complex-linear
    frequential operator (row-interleaved (real, imag) rows in and out; applied as the
    complex ``(R, n)`` matrix of :func:`_complex_operator`); ``A``: ``(T2, Tc)`` real.
    Output ``(B, R, Tc)``.  Only ``y2`` receives a gradient.  The modulus carries the
    ``1e-12`` floor, so its backward ``g * y / |y|`` never divides by zero.

    With ``ops`` (:func:`freq_operands`) and the native kernels, forward and backward
    each run as one pass (``Kernels.freq_forward`` / ``freq_backward``): ``M y2`` is
    computed a few dozen time samples at a time and never stored (the backward
    recomputes it), and the time average is summed in double precision.  Otherwise
    the torch route (:func:`freq_forward`): over time chunks, ``M y2`` kept for the
    backward pass when it has at most :data:`FREQ_KEEP_MAX` elements, else
    recomputed there.
    """

    @staticmethod
    def forward(ctx, y2: Tensor, M: Tensor, A: Tensor, pool: BufferPool | None = None,  # noqa: D102
                ops: FreqOperands | None = None) -> Tensor:
        out, kept, ch = freq_forward(y2, M, A, pool, ops, ctx.needs_input_grad[0])
        ctx.save_for_backward(y2, M, A, *(() if kept is None else (kept,)))
        ctx.pool, ctx.ops, ctx.ch = pool, ops, ch
        return out

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor):  # noqa: D102
        y2, M, A, *kept = ctx.saved_tensors
        nones = (None,) * 4
        if torch.is_grad_enabled():  # create_graph=True: differentiable recomputation
            return _recompute_grad(lambda y: _freq_scatter_plain(y, M, A), y2, g), *nones
        require_storage(g)
        return freq_adjoint(y2, g, M, A, ctx.pool, ctx.ops, kept[0] if kept else None, ctx.ch), *nones


def _freq_scatter_plain(y2: Tensor, M: Tensor, A: Tensor) -> Tensor:
    """Plain-autograd ``|M y2| A`` (twice differentiable); same result as
    :class:`FreqScatterModulusAverage`."""
    B, n, T2 = y2.shape
    R = M.shape[0] // 2
    y = torch.matmul(M, _planar_chunk(y2, 0, T2)).view(B, R, 2, T2)
    return time_average(planar_modulus(y, 2), A)


def freq_scatter_modulus_average(y2: Tensor, M: Tensor, A: Tensor, pool: BufferPool | None = None,
                                 ops: FreqOperands | None = None) -> Tensor:
    """``|M y2| A`` with a memory-light fused backward (see
    :class:`FreqScatterModulusAverage`); work buffers from ``pool`` when given,
    the fused native kernels with ``ops`` (:func:`freq_operands` of ``M`` and ``A``)."""
    return FreqScatterModulusAverage.apply(y2, M, A, pool, ops)
