"""Filter bank, padding and path table of Kymatio 0.3.0's ``Scattering2D`` (numpy).

Kymatio's 2-D design, reproduced with its precision choices so that the filters
agree with it to float32 rounding:

* a Gabor filter ``g(u) = exp(-u^T C u + i xi (cos t, sin t) . u) / (2 * 3.1415 *
  sigma**2 / slant)`` sampled on the ``(M, N)`` grid (``u = (row, column)``) and
  periodised over 5 x 5 copies of the grid, the rotation matrix in float32 and the
  sum accumulated in complex64 (Kymatio's dtypes; ``3.1415`` is Kymatio's constant);
* a Morlet filter ``psi = g_xi - K g_0`` with ``K`` chosen so that ``sum psi = 0``;
* wavelets ``psi_{j, theta}``: ``sigma = 0.8 * 2**j`` pixels, angle
  ``(int(L - L/2 - 1) - theta) * pi / L``, ``xi = 3 pi / (4 * 2**j)`` radians per
  pixel, ``slant = 4 / L``; low-pass ``phi``: a Gaussian with
  ``sigma = 0.8 * 2**(J - 1)``;
* filters are used in the Fourier domain as the **real part** of their 2-D FFT;
* the "level" ``r`` of a filter (the filter on an image decimated by ``2**r``) keeps
  the frequencies ``|k| < M / 2**(r+1)`` on each axis (the rest is zeroed) and sums
  the ``2**r x 2**r`` folds of the spectrum; wavelet ``j`` has levels
  ``0 .. min(j, max(J - 2, 0))``, the low-pass levels ``0 .. J-1``;
* padding: ``M_padded = ((M + 2**J) // 2**J + 1) * 2**J`` (same for ``N``), reflect
  padding split ``floor/ceil`` (top/left gets the floor).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = [
    "gabor_2d",
    "morlet_2d",
    "periodize",
    "padded_size",
    "Padding2D",
    "padding_plan",
    "wavelet_angle",
    "wavelet_sigma",
    "wavelet_xi",
    "Path2D",
    "FilterBank2D",
    "build_filterbank",
]


def wavelet_sigma(j: int) -> float:
    """Gaussian envelope width of ``psi_j`` in pixels: ``0.8 * 2**j``."""
    return 0.8 * 2**j


def wavelet_xi(j: int) -> float:
    """Centre frequency of ``psi_j`` in radians per pixel: ``3 pi / (4 * 2**j)``."""
    return 3.0 / 4.0 * np.pi / 2**j


def wavelet_angle(theta: int, L: int) -> float:
    """Orientation of wavelet ``theta`` (radians): ``(int(L - L/2 - 1) - theta) * pi / L``.

    The angle is that of the wave vector ``(cos a, sin a)`` in ``(row, column)``
    coordinates, i.e. measured from the downward row axis towards the column axis.
    """
    return (int(L - L / 2 - 1) - theta) * np.pi / L


@functools.lru_cache(maxsize=8)
def _grid(M: int, N: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The 5 x 5 periodisation grids ``(rows, columns)`` of an ``(M, N)`` filter."""
    xs, ys = [], []
    for ex in (-2, -1, 0, 1, 2):
        for ey in (-2, -1, 0, 1, 2):
            xx, yy = np.mgrid[ex * M : M + ex * M, ey * N : N + ey * N]
            xs.append(xx)
            ys.append(yy)
    return tuple(xs), tuple(ys)


def gabor_2d(M: int, N: int, sigma: float, theta: float, xi: float, slant: float = 1.0) -> np.ndarray:
    """Periodised 2-D Gabor filter in space, complex64 ``(M, N)`` (Kymatio's precision).

    Args:
        M, N: grid size (rows, columns).
        sigma: envelope width in pixels.
        theta: orientation in radians.
        xi: centre frequency in radians per pixel.
        slant: envelope aspect ratio: the quadratic form is ``R diag(1, slant**2) R^T
            / (2 sigma**2)``, so the envelope is ``1/slant`` times wider across the
            wave vector than along it.
    """
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    R = np.array([[c, -s], [s, c]], np.float32)
    R_inv = np.array([[c, s], [-s, c]], np.float32)
    D = np.array([[1, 0], [0, slant * slant]])
    curv = np.dot(R, np.dot(D, R_inv)) / (2 * sigma * sigma)
    gab = np.zeros((M, N), np.complex64)
    kx, ky = xi * np.cos(theta), xi * np.sin(theta)
    for xx, yy in zip(*_grid(M, N)):
        arg = -(curv[0, 0] * xx * xx + (curv[0, 1] + curv[1, 0]) * xx * yy + curv[1, 1] * yy * yy) + 1.0j * (
            xx * kx + yy * ky
        )
        gab += np.exp(arg)
    gab /= 2 * 3.1415 * sigma * sigma / slant
    return gab


def morlet_2d(M: int, N: int, sigma: float, theta: float, xi: float, slant: float) -> np.ndarray:
    """Periodised 2-D Morlet wavelet in space (complex64 ``(M, N)``), zero mean."""
    wv = gabor_2d(M, N, sigma, theta, xi, slant)
    wv_modulus = gabor_2d(M, N, sigma, theta, 0.0, slant)
    K = np.sum(wv) / np.sum(wv_modulus)
    return wv - K * wv_modulus


def periodize(h: np.ndarray, res: int) -> np.ndarray:
    """Kymatio's level ``res`` of a Fourier-domain filter ``h`` ``(M, N)``.

    The frequencies ``M/2**(res+1) <= k < M - M/2**(res+1)`` (and the same columns)
    are zeroed, then the ``2**res x 2**res`` folds are summed.

    Returns:
        ``(M // 2**res, N // 2**res)``, dtype of ``h``.
    """
    M, N = h.shape
    f = 2**res
    mask = np.ones(h.shape, np.float32)
    len_x, start_x = int(M * (1 - 2.0 ** (-res))), int(M * 2.0 ** (-res - 1))
    len_y, start_y = int(N * (1 - 2.0 ** (-res))), int(N * 2.0 ** (-res - 1))
    mask[start_x : start_x + len_x, :] = 0
    mask[:, start_y : start_y + len_y] = 0
    x = np.multiply(h, mask)
    return x.reshape(f, M // f, f, N // f).sum(axis=(0, 2), dtype=h.dtype)


def padded_size(size: int, J: int) -> int:
    """Kymatio 0.3.0's padded size of one axis: ``((size + 2**J) // 2**J + 1) * 2**J``."""
    return ((size + 2**J) // 2**J + 1) * 2**J


@dataclass(frozen=True)
class Padding2D:
    """Reflect padding of an ``(M, N)`` image to ``(M_padded, N_padded)``.

    Attributes:
        M, N: image size; M_padded, N_padded: padded size (multiples of ``2**J``).
        top, bottom, left, right: pixels added on each side.
        out_rows, out_cols: output size after the final ``2**J`` decimation and the
            one-pixel crop on each side; ``out_rows_padded``, ``out_cols_padded`` before it.
    """

    M: int
    N: int
    M_padded: int
    N_padded: int
    top: int
    bottom: int
    left: int
    right: int
    out_rows: int
    out_cols: int
    out_rows_padded: int
    out_cols_padded: int


def padding_plan(M: int, N: int, J: int) -> Padding2D:
    """Padding of Kymatio 0.3.0's ``Scattering2D(J, (M, N))``."""
    Mp, Np = padded_size(M, J), padded_size(N, J)
    rows, cols = Mp // 2**J, Np // 2**J
    return Padding2D(
        M=M, N=N, M_padded=Mp, N_padded=Np,
        top=(Mp - M) // 2, bottom=(Mp - M + 1) // 2, left=(Np - N) // 2, right=(Np - N + 1) // 2,
        out_rows=rows - 2, out_cols=cols - 2, out_rows_padded=rows, out_cols_padded=cols,
    )


@dataclass(frozen=True)
class Path2D:
    """One second-order path: ``n1 = j1 * L + theta1``, ``n2 = j2 * L + theta2``."""

    j1: int
    theta1: int
    j2: int
    theta2: int
    n1: int
    n2: int


@dataclass(frozen=True)
class FilterBank2D:
    """Everything :class:`~scrapl.transforms.scattering2d.module.ImageScattering` needs.

    Attributes:
        J, L: scales and angles.
        padding: the :class:`Padding2D`.
        phi_levels: ``J`` float32 arrays, level ``r`` of shape ``(M_padded/2**r, N_padded/2**r)``.
        psi_levels: ``psi_levels[n][r]``: level ``r`` of wavelet ``n = j * L + theta``
            (float32), ``r = 0 .. min(j, max(J - 2, 0))``.
        paths: second-order paths in Kymatio's output order (``n1`` outer, ``n2``
            inner, ``j1 < j2``).
    """

    J: int
    L: int
    padding: Padding2D
    phi_levels: tuple[np.ndarray, ...]
    psi_levels: tuple[tuple[np.ndarray, ...], ...]
    paths: tuple[Path2D, ...]


@functools.lru_cache(maxsize=8)
def build_filterbank(M: int, N: int, J: int, L: int) -> FilterBank2D:
    """Filters, padding and paths of ``Scattering2D(J, (M, N), L, max_order=2)``.

    Takes ``J * L * 50`` complex exponentials over the padded grid (about one second
    for J=3, L=8 at 128 x 128); the last few banks are cached, their arrays read-only.
    """
    pad = padding_plan(M, N, J)
    Mp, Np = pad.M_padded, pad.N_padded
    psi_levels = []
    for j in range(J):
        for theta in range(L):
            psi = morlet_2d(Mp, Np, wavelet_sigma(j), wavelet_angle(theta, L), wavelet_xi(j), 4.0 / L)
            psi_hat = np.real(scipy.fft.fft2(psi))
            psi_levels.append(tuple(periodize(psi_hat, r) for r in range(min(j + 1, max(J - 1, 1)))))
    phi = gabor_2d(Mp, Np, wavelet_sigma(J - 1), 0.0, 0.0)
    phi_hat = np.real(scipy.fft.fft2(phi))
    phi_levels = tuple(periodize(phi_hat, r) for r in range(J))
    paths = []
    for n1 in range(J * L):
        j1, t1 = divmod(n1, L)
        for n2 in range(J * L):
            j2, t2 = divmod(n2, L)
            if j2 > j1:
                paths.append(Path2D(j1=j1, theta1=t1, j2=j2, theta2=t2, n1=n1, n2=n2))
    for arr in (*phi_levels, *(a for levels in psi_levels for a in levels)):
        arr.setflags(write=False)
    return FilterBank2D(J=J, L=L, padding=pad, phi_levels=phi_levels, psi_levels=tuple(psi_levels),
                        paths=tuple(paths))
