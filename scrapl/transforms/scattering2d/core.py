"""Pure torch functions of the 2-D scattering transform (Kymatio 0.3.0 semantics).

Everything here takes explicit tensors and integers; nothing reads module state.
Conventions (as in Kymatio's ``Scattering2D``):

* Filters are real arrays holding a filter's 2-D Fourier transform on the DFT grid of
  the image they are applied to; applying one multiplies the full complex spectrum
  elementwise (the wavelets are not Hermitian-symmetric, so full complex FFTs are
  needed).
* Fourier-domain subsampling by ``2**k`` on both axes is the mean over the
  ``2**k x 2**k`` folds of the spectrum: exact spatial decimation.
* Shapes: ``B`` is the flattened batch, ``(M, N)`` an image size in pixels at the
  current resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scrapl.transforms.scattering1d.core import modulus

__all__ = [
    "pad_reflect_2d",
    "unpad",
    "subsample_fourier_2d",
    "filter_subsample",
    "fft2_real",
    "wavelet_modulus_2d",
    "lowpass_2d",
    "lowpass_spectrum_2d",
]

#: Largest fold count ``k * k`` for which :func:`filter_subsample` multiplies fold by
#: fold (less memory: no full-size product); above it, one product then a mean.
_FOLD_LOOP_MAX = 16


def pad_reflect_2d(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Kymatio 0.3.0's reflect padding of the last two axes.

    When a pad equals the image size on an axis (``2**J == size``, beyond what reflect
    padding allows), that axis is reflect-padded by one pixel less on each side and
    the second and second-to-last rows (columns) of the result are added outside, as
    Kymatio's torch backend does.

    Args:
        x: real ``(B, M, N)``.
        top, bottom, left, right: pixels to add.

    Returns:
        ``(B, M + top + bottom, N + left + right)``.
    """
    M, N = x.shape[-2:]
    t, b, le, r = top, bottom, left, right
    fix_rows, fix_cols = t == M, le == N
    if fix_rows:
        t, b = t - 1, b - 1
    if fix_cols:
        le, r = le - 1, r - 1
    y = F.pad(x.unsqueeze(1), (le, r, t, b), mode="reflect").squeeze(1)
    if fix_rows:
        y = torch.cat([y[:, 1:2, :], y, y[:, -2:-1, :]], dim=1)
    if fix_cols:
        y = torch.cat([y[:, :, 1:2], y, y[:, :, -2:-1]], dim=2)
    return y


def unpad(s: Tensor) -> Tensor:
    """Crop one pixel on each side of the last two axes (Kymatio's ``unpad``)."""
    return s[..., 1:-1, 1:-1]


def subsample_fourier_2d(x_hat: Tensor, log2_factor: int) -> Tensor:
    """Decimate an image by ``2**log2_factor`` on both axes in the Fourier domain.

    ``out[..., m, n] = mean_{a, b} x_hat[..., m + a M/k, n + b N/k]``: the spectrum of
    ``x[..., ::k, ::k]``.

    Args:
        x_hat: complex ``(..., M, N)``; ``k = 2**log2_factor`` divides ``M`` and ``N``.
        log2_factor: ``>= 0``.

    Returns:
        ``(..., M // k, N // k)``.
    """
    if log2_factor == 0:
        return x_hat
    k = 2**log2_factor
    M, N = x_hat.shape[-2:]
    return x_hat.reshape(*x_hat.shape[:-2], k, M // k, k, N // k).mean(dim=(-4, -2))


def filter_subsample(x_hat: Tensor, filt: Tensor, log2_factor: int) -> Tensor:
    """``subsample_fourier_2d(x_hat * filt, log2_factor)`` without the full-size product
    for small factors (fold by fold accumulation).

    Args:
        x_hat: complex ``(..., M, N)``, broadcast against ``filt``.
        filt: real ``(..., M, N)``.
        log2_factor: decimation exponent.

    Returns:
        complex ``(broadcast leading axes, M // k, N // k)``.
    """
    k = 2**log2_factor
    if k == 1 or k * k > _FOLD_LOOP_MAX:
        return subsample_fourier_2d(x_hat * filt, log2_factor)
    M, N = x_hat.shape[-2:]
    m, n = M // k, N // k
    out = None
    for a in range(k):
        for b in range(k):
            term = x_hat[..., a * m : (a + 1) * m, b * n : (b + 1) * n] * filt[..., a * m : (a + 1) * m, b * n : (b + 1) * n]
            out = term if out is None else out + term
    return out / (k * k)


def fft2_real(x: Tensor) -> Tensor:
    """Full complex 2-D FFT of a real tensor over its last two axes."""
    return torch.fft.fft2(x)


def wavelet_modulus_2d(x_hat: Tensor, filt: Tensor, log2_sub: int) -> Tensor:
    """``|ifft2(sub(x_hat * filt, 2**log2_sub))|``: one wavelet-modulus layer.

    Args:
        x_hat: complex spectrum ``(..., M, N)``.
        filt: real Fourier-domain filter(s) ``(..., M, N)``.
        log2_sub: decimation exponent.

    Returns:
        real ``(..., M // 2**log2_sub, N // 2**log2_sub)``.
    """
    return modulus(torch.fft.ifft2(filter_subsample(x_hat, filt, log2_sub)))


def lowpass_2d(u: Tensor, phi: Tensor, log2_sub: int) -> Tensor:
    """``Re ifft2(sub(fft2(u) * phi, 2**log2_sub))``: average a real image and decimate.

    Args:
        u: real ``(..., M, N)``.
        phi: real Fourier-domain low-pass ``(M, N)``.
        log2_sub: decimation exponent.

    Returns:
        real ``(..., M // 2**log2_sub, N // 2**log2_sub)``.
    """
    return lowpass_spectrum_2d(fft2_real(u), phi, log2_sub)


def lowpass_spectrum_2d(u_hat: Tensor, phi: Tensor, log2_sub: int) -> Tensor:
    """:func:`lowpass_2d` of an image given by its spectrum ``u_hat``."""
    return torch.fft.ifft2(filter_subsample(u_hat, phi, log2_sub)).real
