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

import torch
from torch import Tensor

from scrapl.transforms import ops

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


ModulusStable = ops.Modulus
"""``|z|`` with a safe backward (:class:`scrapl.transforms.ops.Modulus`); no floor is
added to the modulus, as in Kymatio 0.3.0."""
modulus = ops.modulus
pad_reflect = ops.pad_reflect
subsample_fourier = ops.subsample_fourier


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
