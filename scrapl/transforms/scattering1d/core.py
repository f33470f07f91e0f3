"""Pure torch functions of the second-order time scattering (Kymatio 0.3.0 semantics).

Everything here takes explicit tensors and integers; nothing reads module state.
Conventions (as in Kymatio):

* Filters are real arrays holding a filter's Fourier transform on the DFT grid of
  the signal they are applied to (zero-phase filters); applying one multiplies the
  full complex spectrum elementwise.
* Spectra are full-length complex FFTs (``torch.fft.fft``) of real signals;
  "real part of the inverse FFT" stands for Kymatio's ``irfft``.
* Fourier-domain subsampling by ``2**k`` is the mean over ``2**k`` folds
  (:func:`subsample_fourier`), i.e. exact time-domain decimation.
* Shapes: ``B`` is the flattened batch, ``L`` a time length in samples.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ModulusStable",
    "modulus",
    "pad_reflect",
    "subsample_fourier",
    "fft_real",
    "wavelet_modulus",
    "lowpass",
    "lowpass_spectrum",
]


class ModulusStable(torch.autograd.Function):
    """``|z| = sqrt(re(z)**2 + im(z)**2)`` of a complex tensor, with a safe backward.

    The gradient is ``grad * z / |z|`` and exactly zero where ``|z| == 0`` (plain
    autograd through ``sqrt``/``abs`` gives NaN or an arbitrary subgradient there).
    The backward is written with differentiable operations, so double backward
    (Hessian-vector products) works too.  No floor is added to the modulus, as in
    Kymatio 0.3.0 (the 0.4-dev fork inside scrapl-loss adds 1e-12).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:  # noqa: D102 - documented on the class
        out = (z.real * z.real + z.imag * z.imag).sqrt()
        ctx.save_for_backward(z, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        z, out = ctx.saved_tensors
        zero = out == 0
        safe = torch.where(zero, torch.ones_like(out), out)
        scale = torch.where(zero, torch.zeros_like(out), grad / safe)
        return z * scale


def modulus(z: Tensor) -> Tensor:
    """Complex modulus with the safe backward of :class:`ModulusStable`.

    Args:
        z: complex tensor, any shape.

    Returns:
        Real tensor of the same shape (dtype ``z.real.dtype``).
    """
    return ModulusStable.apply(z)


def pad_reflect(x: Tensor, pad_left: int, pad_right: int) -> Tensor:
    """Reflect-pad the last axis (mirror without repeating the edge sample).

    Args:
        x: real tensor ``(B, N)``.
        pad_left, pad_right: samples added before / after, each ``< N``.

    Returns:
        ``(B, N + pad_left + pad_right)``.
    """
    if pad_left == 0 and pad_right == 0:
        return x
    return F.pad(x.unsqueeze(1), (pad_left, pad_right), mode="reflect").squeeze(1)


def subsample_fourier(x_hat: Tensor, log2_factor: int) -> Tensor:
    """Decimate a signal by ``2**log2_factor`` in the Fourier domain.

    ``out[..., m] = mean_r x_hat[..., m + r * L / 2**k]`` for ``m < L / 2**k``: the
    spectrum of ``x[..., ::2**k]``.

    Args:
        x_hat: complex spectrum ``(..., L)``; ``2**log2_factor`` must divide ``L``.
        log2_factor: ``k >= 0``.

    Returns:
        ``(..., L // 2**k)``.
    """
    if log2_factor == 0:
        return x_hat
    k = 2**log2_factor
    length = x_hat.shape[-1]
    return x_hat.reshape(*x_hat.shape[:-1], k, length // k).mean(dim=-2)


def fft_real(x: Tensor) -> Tensor:
    """Full complex FFT of a real tensor along the last axis (Kymatio's ``rfft``).

    The real input is promoted to complex first so that the result equals Kymatio's
    complex-to-complex transform bit for bit.
    """
    return torch.fft.fft(torch.complex(x, torch.zeros_like(x)))


def wavelet_modulus(x_hat: Tensor, filt: Tensor, log2_sub: int) -> Tensor:
    """``|ifft(sub(x_hat * filt, 2**log2_sub))|``: one wavelet-modulus layer.

    Args:
        x_hat: complex spectrum ``(..., L)`` (leading axes broadcast against ``filt``).
        filt: real Fourier-domain filter(s) ``(..., L)``.
        log2_sub: decimation exponent ``k``.

    Returns:
        Real ``(..., L // 2**k)``.
    """
    y = torch.fft.ifft(subsample_fourier(x_hat * filt, log2_sub))
    return modulus(y)


def lowpass(u: Tensor, phi: Tensor, log2_sub: int) -> Tensor:
    """Average a real signal with the low-pass ``phi`` and decimate by ``2**log2_sub``.

    Args:
        u: real signal ``(..., L)``.
        phi: real Fourier-domain low-pass ``(L,)``.
        log2_sub: decimation exponent.

    Returns:
        Real ``(..., L // 2**log2_sub)``: ``Re ifft(sub(fft(u) * phi, 2**log2_sub))``.
    """
    return lowpass_spectrum(fft_real(u), phi, log2_sub)


def lowpass_spectrum(u_hat: Tensor, phi: Tensor, log2_sub: int) -> Tensor:
    """:func:`lowpass` of a signal given by its spectrum ``u_hat`` ``(..., L)``.

    Returns:
        Real ``(..., L // 2**log2_sub)``: ``Re ifft(sub(u_hat * phi, 2**log2_sub))``.
    """
    return torch.fft.ifft(subsample_fourier(u_hat * phi, log2_sub)).real
