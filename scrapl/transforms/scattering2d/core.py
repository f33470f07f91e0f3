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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from scrapl.transforms.ops import modulus, run_eagerly

#: Largest fold count ``k * k`` that :class:`FoldSubsample` adds slice by slice; above
#: it, one strided reduction.
_FOLD_LOOP_MAX = 64

__all__ = [
    "FoldSubsample",
    "modulus",
    "pad_reflect_2d",
    "unpad",
    "subsample_fourier_2d",
    "filter_subsample",
    "filter_bank_subsample",
    "fft2_real",
    "wavelet_modulus_2d",
    "lowpass_2d",
    "lowpass_spectrum_2d",
]

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


class FoldSubsample(torch.autograd.Function):
    """Fourier-domain decimation by ``k = 2**log2_factor`` on the last two axes: the
    mean of the ``k x k`` folds of a spectrum ``(..., M, N)`` -> ``(..., M/k, N/k)``.

    Forward adds the folds (slices) into one buffer; backward is the adjoint, the
    gradient tiled ``k x k`` times and divided by ``k**2``, written with
    differentiable operations (double backward works).  Autograd through slicing
    would instead zero-fill a full-size buffer per fold.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, log2_factor: int) -> Tensor:  # noqa: D102 - documented on the class
        k = 2**log2_factor
        ctx.k = k
        M, N = z.shape[-2:]
        m, n = M // k, N // k
        if k * k > _FOLD_LOOP_MAX:
            return z.reshape(*z.shape[:-2], k, m, k, n).sum(dim=(-4, -2)).mul_(1.0 / (k * k))
        out = z[..., :m, :n].clone()
        for a in range(k):
            for b in range(k):
                if a or b:
                    out += z[..., a * m : (a + 1) * m, b * n : (b + 1) * n]
        return out.mul_(1.0 / (k * k))

    @staticmethod
    @run_eagerly
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        k = ctx.k
        return grad.repeat(*([1] * (grad.ndim - 2)), k, k) * (1.0 / (k * k)), None


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
    return FoldSubsample.apply(x_hat, log2_factor)


def filter_subsample(x_hat: Tensor, filt: Tensor, log2_factor: int) -> Tensor:
    """``subsample_fourier_2d(x_hat * filt, log2_factor)``: filter, then decimate.

    Args:
        x_hat: complex ``(..., M, N)``, broadcast against ``filt``.
        filt: real ``(..., M, N)``.
        log2_factor: decimation exponent.

    Returns:
        complex ``(broadcast leading axes, M // k, N // k)``.
    """
    return subsample_fourier_2d(x_hat * filt, log2_factor)


def filter_bank_subsample(x_hat: Tensor, filt: Tensor, log2_factor: int) -> Tensor:
    """Every image times every filter, decimated: ``sub(x_hat[p] * filt[q], 2**k)``.

    For ``k >= 1`` this is, at each output frequency, a contraction over the
    ``2**k x 2**k`` folds: one batched matrix product (over the output frequencies)
    of ``(2 P, 4**k)`` by ``(4**k, Q)``, so the ``(P, Q, M, N)`` product is never
    formed (about 3x less time than product-then-fold, forward and backward).  All
    operations are differentiable (double backward works).

    Args:
        x_hat: complex ``(P, M, N)``, contiguous.
        filt: real ``(Q, M, N)`` of ``x_hat``'s real dtype.
        log2_factor: decimation exponent ``k``.

    Returns:
        complex ``(P, Q, M // 2**k, N // 2**k)``.
    """
    if log2_factor == 0:
        return x_hat[:, None] * filt
    k = 2**log2_factor
    P, M, N = x_hat.shape
    Q = filt.shape[0]
    m, n = M // k, N // k
    xr = torch.view_as_real(x_hat.contiguous()).reshape(P, k, m, k, n, 2)
    xr = xr.permute(2, 4, 0, 5, 1, 3).reshape(m * n, 2 * P, k * k)
    fp = filt.reshape(Q, k, m, k, n).permute(2, 4, 1, 3, 0).reshape(m * n, k * k, Q)
    y = torch.bmm(xr, fp).reshape(m, n, P, 2, Q).permute(2, 4, 0, 1, 3).contiguous()
    return torch.view_as_complex(y) * (1.0 / (k * k))


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
