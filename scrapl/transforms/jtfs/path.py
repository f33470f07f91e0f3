"""One JTFS path of a signal and its target as one autograd node.

A training step needs one path of the input ``x`` (with a gradient) and of the target
(a constant).  :class:`PathPair` computes both in one pass over the two batches
stacked (the per-call costs -- Python, dispatch, FFT plan lookups, some forty native
calls -- are paid once, and the FFTs run on longer batches), keeps for the backward
pass only what ``x``'s rows need, and runs the whole adjoint chain in one
``backward`` on those rows: no gradient is computed, allocated or zero-filled for
the target.  ``JTFS.forward_path`` uses it too (with an empty target).

The stages are the functions of :mod:`scrapl.transforms.jtfs.core` (their autograd
Functions are thin wrappers of the same code), in this order::

    x / s -> reflect pad -> rfft -> extended spectrum
          -> first order and second-order windows   (core.scalogram_second_order)
          -> fold, ifft                             (second-order rows y2)
          -> |M y2| A                               (core.freq_forward)
          -> P S + bias, times s                    (frequential averaging, rescale)

``s`` is the power-of-two row scale of :func:`scrapl.transforms.scale.normalise`.
A backward pass with ``create_graph=True`` (Hessian-vector products of the theta-IS
warmup) differentiates the stage-by-stage autograd composition instead, which is
twice differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from scrapl.transforms import ops
from scrapl.transforms.scale import normalise, row_peaks, scales_of_peaks

from . import buffers, core
from .buffers import BufferPool

__all__ = ["PathGeometry", "PathPair", "reflect_pad_adjoint", "stagewise"]


@dataclass(frozen=True)
class PathGeometry:
    """Everything :class:`PathPair` needs about one path besides the signals (built
    once per path and time crop by the module).

    Attributes:
        pad_left, pad_right: reflection padding of the ``N`` samples to ``n_pad``.
        n_pad: padded length (even).
        ext_extra: bins appended to the extended spectrum (:func:`core.extended_spectrum`).
        specs, tensors, width: the arguments of :func:`core.scalogram_second_order`.
        T2: second-order length; fold: ``None`` or the positions ``i % T2``.
        M, A, freq: the frequential operator (real form ``(2R, 2n)``), the time
            averaging ``(T2, Tc)`` and their native layout (:class:`core.FreqOperands`).
        P, bias: frequential averaging ``(F_out, R)`` and the bias ``(F_out, Tc)`` of
            the rows below the operator's floor.
        cache: what the stages prepare once per batch size (the native group calls).
    """

    pad_left: int
    pad_right: int
    n_pad: int
    ext_extra: int
    specs: tuple
    tensors: tuple[Tensor, ...]
    width: int
    T2: int
    fold: Tensor | None
    M: Tensor
    A: Tensor
    freq: core.FreqOperands
    P: Tensor
    bias: Tensor
    cache: dict = field(default_factory=dict, compare=False, repr=False)


def stagewise(rows: Tensor, geo: PathGeometry, pool: BufferPool | None) -> Tensor:
    """The path of scaled rows ``(B, N) -> (B, F_out, Tc)`` as a composition of the
    stage autograd Functions of :mod:`.core` (twice differentiable; the same values
    as :class:`PathPair`)."""
    spec = core.RealSpectrum.apply(ops.pad_reflect(rows, geo.pad_left, geo.pad_right))
    ext = core.extended_spectrum(spec, geo.n_pad, geo.ext_extra)
    win = core.ScalogramSecondOrder.apply(ext, geo.specs, geo.width, pool, *geo.tensors)
    y2 = core.second_order_inverse(win, geo.T2, geo.fold, pool)
    S = core.freq_scatter_modulus_average(y2, geo.M, geo.A, pool, geo.freq)
    return torch.matmul(geo.P, S) + geo.bias


def reflect_pad_adjoint(g: Tensor, pad_left: int, pad_right: int) -> Tensor:
    """The adjoint of :func:`scrapl.transforms.ops.pad_reflect` over the last axis:
    ``(B, N + pad_left + pad_right) -> (B, N)`` (each padded sample's gradient goes to
    the sample it mirrors; not differentiable)."""
    n = g.shape[-1] - pad_left - pad_right
    out = g[:, pad_left: pad_left + n].clone()
    if pad_left:
        out[:, 1: pad_left + 1] += g[:, :pad_left].flip(-1)
    if pad_right:
        out[:, n - 1 - pad_right: n - 1] += g[:, pad_left + n:].flip(-1)
    return out


def _scaled_padded(x: Tensor, t: Tensor, geo: PathGeometry, pool: BufferPool | None) -> tuple[Tensor, Tensor]:
    """The rows of ``x`` ``(B, N)`` and ``t`` ``(Bt, N)``, each divided by its
    power-of-two scale (:func:`~scrapl.transforms.scale.row_scales`) and reflect-padded,
    written straight into one buffer of ``pool``: ``(B + Bt, n_pad)``, and the scales
    ``(B + Bt,)``.  The values of ``pad_reflect(normalise(cat(x, t)))`` without their
    three full-size temporaries."""
    B, Bt, pl = x.shape[0], t.shape[0], geo.pad_left
    peaks = torch.cat((row_peaks(x), row_peaks(t))) if Bt else row_peaks(x)
    scale, inv = scales_of_peaks(peaks, x.dtype)
    inv = inv[:, None]
    padded = buffers.empty(pool, (B + Bt, geo.n_pad), x)
    torch.mul(x, inv[:B], out=padded[:B, pl: pl + x.shape[1]])
    if Bt:
        torch.mul(t, inv[B:], out=padded[B:, pl: pl + t.shape[1]])
    ops.reflect_fill_(padded, pl, geo.pad_right)
    return padded, scale


class PathPair(torch.autograd.Function):
    """``(S_i(x), S_i(t))``: one JTFS path of ``x`` ``(B, N)`` and of the constant
    target ``t`` ``(Bt, N)`` (``Bt = 0`` allowed), each ``(rows, F_out, Tc)``, in one
    pass (see the module docs).  Only ``x`` receives a gradient; the target's output
    is non-differentiable.

    Args (of ``apply``): ``x``, ``t``, ``geo`` (:class:`PathGeometry`), ``pool``
    (:class:`~scrapl.transforms.jtfs.buffers.BufferPool` or ``None``).
    """

    @staticmethod
    def forward(ctx, x: Tensor, t: Tensor, geo: PathGeometry,  # noqa: D102
                pool: BufferPool | None) -> tuple[Tensor, Tensor]:
        B = x.shape[0]
        save = ctx.needs_input_grad[0]
        padded, scale = _scaled_padded(x, t, geo, pool)
        # the spectra are transient (the backward keeps neither): pooled, as they are
        # the step's largest buffers (a fresh allocation of tens of MiB is faulted in
        # page by page at every step)
        spec = core._rfft(padded, lambda: buffers.empty(pool, (padded.shape[0], geo.n_pad // 2 + 1), padded,
                                                        torch.promote_types(padded.dtype, torch.complex64)))
        ext = core.extended_spectrum(spec, geo.n_pad, geo.ext_extra, pool)
        win, phasors, layout = core.scalogram_second_order(ext, geo.specs, geo.width, pool, geo.tensors, save,
                                                          n_grad=B, cache=geo.cache)
        win = core.fold_windows(win, geo.T2, geo.fold)
        y2 = core._c2c(win, False, lambda: buffers.empty(pool, win.shape, win), keep=pool is not None)
        S, kept, ch = core.freq_forward(y2, geo.M, geo.A, pool, geo.freq, save)
        # two products, so that neither output is a view of the other
        out_x = torch.matmul(geo.P, S[:B]).add_(geo.bias).mul_(scale[:B].view(-1, 1, 1))
        out_t = torch.matmul(geo.P, S[B:]).add_(geo.bias).mul_(scale[B:].view(-1, 1, 1))
        if save:
            ctx.save_for_backward(x, scale, y2, *phasors, *(() if kept is None else (kept,)))
            ctx.geo, ctx.pool, ctx.layout, ctx.ch = geo, pool, layout, ch
            ctx.ext_len, ctx.n_phasors, ctx.kept = ext.shape[1], len(phasors), kept is not None
        ctx.mark_non_differentiable(out_t)
        return out_x, out_t

    @staticmethod
    @ops.run_eagerly
    def backward(ctx, g: Tensor, g_target: Tensor | None):  # noqa: D102
        x, scale, y2, *rest = ctx.saved_tensors
        geo: PathGeometry = ctx.geo
        nones = (None, None, None)
        if torch.is_grad_enabled():  # create_graph=True: the twice-differentiable composition
            def plain(v: Tensor) -> Tensor:
                vs, s = normalise(v)
                return stagewise(vs, geo, ctx.pool) * s.view(-1, 1, 1)

            return core._recompute_grad(plain, x, g), *nones
        core.require_storage(g)
        B = x.shape[0]
        phasors, kept = rest[: ctx.n_phasors], (rest[ctx.n_phasors] if ctx.kept else None)
        s = scale[:B].view(-1, 1, 1)
        gS = torch.matmul(geo.P.t(), g * s)  # (B, R, Tc)
        gy2 = core.freq_adjoint(y2[:B], gS, geo.M, geo.A, ctx.pool, geo.freq, kept, ctx.ch)
        gwin = core._c2c(gy2, True, lambda: buffers.empty(ctx.pool, gy2.shape, gy2))  # adjoint of ifft
        if geo.fold is not None:  # adjoint of the fold (an index_add): a gather
            gwin = gwin.index_select(-1, geo.fold)
        gext = core.scalogram_second_order_adjoint(gwin, ctx.ext_len, geo.specs, ctx.layout, geo.tensors, phasors,
                                                   ctx.pool)
        grows = reflect_pad_adjoint(core.extended_rfft_adjoint(gext, geo.n_pad, geo.ext_extra, ctx.pool), geo.pad_left,
                                    geo.pad_right)
        return grows.div_(s.view(-1, 1)), *nones
