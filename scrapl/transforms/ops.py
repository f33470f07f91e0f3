"""Operations shared by the transforms: complex modulus with a safe backward,
reflection padding, Fourier-domain subsampling (pure torch functions), and the
decorator that keeps the transforms out of ``torch.compile``'s tracing."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["Modulus", "modulus", "modulus_backward", "pad_reflect", "reflect_fill_", "run_eagerly", "subsample_fourier"]

#: Runs the decorated function eagerly even inside a ``torch.compile`` region (dynamo
#: skips it and everything it calls: one graph break).  On the JTFS's entry points and
#: on the backward of every autograd Function of the transforms, which the autograd
#: engine calls from ``loss.backward()`` in a compiled training step: dynamo cannot
#: trace the native kernels, its fake tensors reject the buffer pool's complex views,
#: and it would otherwise compile each backward frame by frame at each new path's
#: shapes (seconds per path, nothing gained: the loss runs eagerly, see
#: :mod:`scrapl.loss`).
run_eagerly = torch.compiler.disable


def modulus_backward(g: Tensor, z: Tensor, out: Tensor) -> Tensor:
    """``g * z / |z|``, exactly zero where ``|z| == 0`` (``out`` is the forward
    output).  Written with differentiable operations, so double backward (Hessian-
    vector products) works.  ``z`` may be complex, or real planes broadcasting with
    ``out`` (the caller unsqueezes ``out``'s ``g / out`` as needed)."""
    zero = out == 0
    safe = torch.where(zero, torch.ones_like(out), out)
    return z * torch.where(zero, torch.zeros_like(out), g / safe)


class Modulus(torch.autograd.Function):
    """``|z| = sqrt(re^2 + im^2) + floor`` of a complex tensor, with the safe
    backward of :func:`modulus_backward` (plain autograd gives NaN at 0)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, floor: float = 0.0) -> Tensor:  # noqa: D102
        if not z.is_complex():
            raise TypeError(f"the modulus expects a complex tensor, got {z.dtype}")
        re, im = z.real, z.imag
        out = torch.sqrt(re * re + im * im)
        if floor:
            out = out + floor
        ctx.save_for_backward(z, out)
        return out

    @staticmethod
    @run_eagerly
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        z, out = ctx.saved_tensors
        return modulus_backward(g, z, out), None


def modulus(z: Tensor, floor: float = 0.0) -> Tensor:
    """Differentiable ``sqrt(re^2 + im^2) + floor`` of a complex tensor (any shape;
    real output of dtype ``z.real.dtype``)."""
    return Modulus.apply(z, floor)


def _check_reflect_pads(pad_left: int, pad_right: int, n: int) -> None:
    if not (0 <= pad_left < n and 0 <= pad_right < n):
        raise ValueError(f"reflection padding ({pad_left}, {pad_right}) must be smaller than the signal ({n} samples)")


def pad_reflect(x: Tensor, pad_left: int, pad_right: int) -> Tensor:
    """Reflect-pad the last axis of ``(B, N)`` (mirror without repeating the edge
    sample) to ``(B, N + pad_left + pad_right)``; each pad ``< N``.  The same values
    as ``F.pad(..., mode="reflect")``, as two flipped slices around ``x`` (about 3x
    faster on the CPU)."""
    if pad_left == 0 and pad_right == 0:
        return x
    n = x.shape[-1]
    _check_reflect_pads(pad_left, pad_right, n)
    return torch.cat((x[..., 1: pad_left + 1].flip(-1), x, x[..., n - 1 - pad_right: n - 1].flip(-1)), dim=-1)


def reflect_fill_(out: Tensor, pad_left: int, pad_right: int) -> Tensor:
    """Complete an in-place reflection padding: ``out`` ``(B, pad_left + N +
    pad_right)`` holding the signal in its middle gets the mirrored samples written
    around it (the values of :func:`pad_reflect`, without allocating the padded
    signal); each pad ``< N``.  Returns ``out``."""
    n = out.shape[-1] - pad_left - pad_right
    _check_reflect_pads(pad_left, pad_right, n)
    if pad_left:
        out[..., :pad_left].copy_(out[..., pad_left + 1: 2 * pad_left + 1].flip(-1))
    if pad_right:
        end = pad_left + n
        out[..., end:].copy_(out[..., end - 1 - pad_right: end - 1].flip(-1))
    return out


def subsample_fourier(x_hat: Tensor, log2_factor: int) -> Tensor:
    """Decimate by ``2**log2_factor`` in the Fourier domain:
    ``out[..., m] = mean_r x_hat[..., m + r * L / 2**k]`` for ``m < L / 2**k``, the
    spectrum of ``x[..., ::2**k]`` (``2**k`` must divide ``L``)."""
    if log2_factor == 0:
        return x_hat
    k = 2**log2_factor
    length = x_hat.shape[-1]
    return x_hat.reshape(*x_hat.shape[:-1], k, length // k).mean(dim=-2)
