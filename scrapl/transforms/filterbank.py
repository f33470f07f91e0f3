"""Morlet and Gaussian filter design shared by scrapl's scattering transforms.

Pure numpy / scipy, float64 throughout; no torch.  Every filter is returned in the
**Fourier domain**, sampled on the DFT grid of the signal it is applied to:
``h[k]`` is the (real) frequency response at ``k / L`` cycles per sample, bins
``k >= L / 2`` standing for the negative frequencies ``k / L - 1``.  Filters are
zero-phase (centred at ``t = 0`` circularly).

The design reproduces Kymatio 0.4 (the version bundled with ``scrapl-loss`` 0.1.0)
exactly, including its float64 operation order, so that filter arrays match it bit
for bit:

* :func:`morlet_fourier` / :func:`gauss_fourier` -- one filter (periodised Gabor
  minus a ``kappa``-scaled Gaussian so that the DC bin is exactly 0, then L1-normalised
  in time);
* :func:`sigma_psi`, :func:`xi_max`, :func:`wavelet_params` -- the centre-frequency /
  bandwidth generator ``G(J, Q)`` ("Anden" filterbank: geometric above an elbow,
  arithmetic below it);
* :func:`max_subsampling` -- the largest dyadic decimation ``j`` a filter tolerates;
* :func:`periodize` -- the filter to use on a signal already decimated by ``2**level``;
* :func:`temporal_support`, :func:`padding`, :func:`border_indices` -- how much to pad
  a signal of length ``N`` for an averaging scale ``T`` and where to crop afterwards.

Units: frequencies (``xi``, ``sigma``) are in cycles per sample (Nyquist = 0.5);
lengths are in samples.

Example::

    >>> from scrapl.transforms import filterbank as fb
    >>> params = fb.wavelet_params(J=6, Q=8)
    >>> len(params), round(params[0][0], 6)
    (38, 0.435381)
    >>> h = fb.morlet_fourier(1024, *params[0])
    >>> h.shape, float(h[0])
    ((1024,), 0.0)
"""

from __future__ import annotations

import math
import warnings
import numpy as np
import scipy.fft

__all__ = [
    "ALPHA",
    "P_EPS",
    "P_MAX",
    "R_PSI",
    "SIGMA0",
    "SUPPORT_CRITERION",
    "border_indices",
    "gauss_fourier",
    "max_subsampling",
    "morlet_fourier",
    "n_periods",
    "padding",
    "periodize",
    "sigma_psi",
    "temporal_support",
    "wavelet_params",
    "xi_max",
]

#: Low-pass bandwidth constant: phi_T has ``sigma = SIGMA0 / T``; the smallest
#: wavelet bandwidth of a bank of scale ``J`` is ``SIGMA0 / 2**J``.
SIGMA0: float = 0.1
#: Number of bandwidths above the centre frequency that must stay below Nyquist
#: after decimation (see :func:`max_subsampling`).
ALPHA: float = 5.0
#: Neighbouring wavelets meet at ``R_PSI`` of their peak.
R_PSI: float = math.sqrt(0.5)
#: Precision target deciding the number of Fourier periods summed in a Morlet.
P_EPS: float = 1e-7
#: Upper limit on that number of periods.
P_MAX: int = 5
#: L1 tail criterion defining the temporal support of a low-pass filter.
SUPPORT_CRITERION: float = 1e-3


def n_periods(sigma: float, eps: float = P_EPS) -> int:
    """Number ``P`` of Fourier periods summed by :func:`morlet_fourier`.

    ``P = min(ceil(sqrt(-2 sigma^2 ln eps) + 1), P_MAX)``; ``P = 2`` for every
    ``sigma <= 0.176``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    val = math.sqrt(-2 * (sigma**2) * math.log(eps))
    return min(int(math.ceil(val + 1)), P_MAX)


def _gauss(freqs: np.ndarray, xi: float, sigma: float) -> np.ndarray:
    """``exp(-(freqs - xi)^2 / (2 sigma^2))``, evaluated only where it does not
    underflow to 0 in float64 (bit-identical to evaluating it everywhere)."""
    if xi == 0.0:
        arg = -(freqs**2) / (2 * sigma**2)
    else:
        arg = -((freqs - xi) ** 2) / (2 * sigma**2)
    out = np.zeros_like(freqs)
    live = arg > -760.0  # exp(-746) is already exactly 0.0 in float64
    np.exp(arg, out=out, where=live)
    return out


def morlet_fourier(L: int, xi: float | None, sigma: float) -> np.ndarray:
    """Fourier transform of a Morlet wavelet (or a Gaussian if ``xi`` is falsy).

    Args:
        L: number of DFT bins (the length of the signal the filter is applied to);
            any positive integer.
        xi: centre frequency in cycles per sample (may be negative: a Morlet centred
            at a negative frequency).  ``None`` or ``0`` gives the Gaussian low-pass.
        sigma: bandwidth (standard deviation of the Gaussian in cycles per sample).

    Returns:
        float64 array of shape ``(L,)``: the real frequency response on the grid
        ``k / L``.  Band-pass filters have ``h[0] == 0`` exactly; every filter has a
        unit L1 norm in time (``sum |ifft(h)| == 1``, with ``ifft`` including ``1/L``).
    """
    L = int(L)
    if L < 1:
        raise ValueError(f"L must be a positive integer, got {L!r}")
    P = n_periods(sigma)
    # frequency grid covering [1 - P, P): (2P - 1) periods of length L
    freqs = np.arange((1 - P) * L, P * L, dtype=float) / float(L)
    low = _gauss(freqs, 0.0, sigma).reshape(2 * P - 1, -1).mean(axis=0)
    if xi:
        gabor = _gauss(freqs, xi, sigma).reshape(2 * P - 1, -1).mean(axis=0)
        kappa = gabor[0] / low[0]
        h = gabor - kappa * low
    else:
        h = low
    h /= np.abs(scipy.fft.ifft(h)).sum()
    return h


def gauss_fourier(L: int, sigma: float) -> np.ndarray:
    """Gaussian low-pass of bandwidth ``sigma`` (cycles per sample), see
    :func:`morlet_fourier`."""
    return morlet_fourier(L, None, sigma)


def sigma_psi(xi: float, Q: int, r: float = R_PSI) -> float:
    """Bandwidth of the Morlet of centre ``xi`` in a bank of ``Q`` wavelets per octave.

    Neighbours (ratio ``2**(1/Q)``) then meet at ``r`` times their peak:
    ``sigma = xi (1 - 2^(-1/Q)) / (1 + 2^(-1/Q)) / sqrt(2 ln(1/r))``.
    """
    factor = 1.0 / math.pow(2, 1.0 / Q)
    term1 = (1 - factor) / (1 + factor)
    term2 = 1.0 / math.sqrt(2 * math.log(1.0 / r))
    return xi * term1 * term2


def xi_max(Q: int) -> float:
    """Largest centre frequency of a bank with ``Q`` wavelets per octave:
    ``max(1 / (1 + 2^(3/Q)), 0.35)`` cycles per sample."""
    return max(1.0 / (1.0 + math.pow(2.0, 3.0 / Q)), 0.35)


def wavelet_params(J: int, Q: int, sigma0: float = SIGMA0, r_psi: float = R_PSI) -> list[tuple[float, float]]:
    """The ``(xi, sigma)`` pairs of the wavelet bank ``G(J, Q)``, ``xi`` decreasing.

    Geometric progression (ratio ``2**(1/Q)``, constant ``xi / sigma``) from
    :func:`xi_max` down to the elbow where ``sigma`` reaches ``sigma0 / 2**J``, then
    ``Q - 1`` wavelets of constant bandwidth ``sigma0 / 2**J`` with arithmetically
    decreasing centres.  The ``(xi, sigma)`` values come from repeated in-place
    division and subtraction (not closed forms), since loop termination depends on
    float64 comparisons.

    Args:
        J: log2 of the largest wavelet scale (>= 0).
        Q: wavelets per octave (>= 1).

    Returns:
        list of ``(xi, sigma)`` in cycles per sample.
    """
    if Q < 1:
        raise ValueError(f"Q must be >= 1, got {Q!r}")
    out: list[tuple[float, float]] = []
    xi = xi_max(Q)
    sigma = sigma_psi(xi, Q, r=r_psi)
    sigma_min = sigma0 / 2**J
    if sigma <= sigma_min:
        xi = sigma  # degenerate bank: no geometric part; the constant-bandwidth part starts at xi = sigma
    else:
        out.append((xi, sigma))
        while sigma > (sigma_min * math.pow(2, 1 / Q)):
            xi /= math.pow(2, 1 / Q)
            sigma /= math.pow(2, 1 / Q)
            out.append((xi, sigma))
    elbow_xi = xi
    for _ in range(Q - 1):
        xi -= 1 / Q * elbow_xi
        out.append((xi, sigma_min))
    return out


def max_subsampling(xi: float, sigma: float, alpha: float = ALPHA) -> int:
    """Largest ``j`` such that the band ``|xi| +- alpha sigma`` stays below the
    Nyquist frequency ``2**-(j+1)`` of a signal decimated by ``2**j``:
    ``floor(-log2(min(|xi| + alpha sigma, 0.5))) - 1``."""
    upper = min(abs(xi) + alpha * sigma, 0.5)
    return int(math.floor(-math.log2(upper)) - 1)


def periodize(h: np.ndarray, level: int) -> np.ndarray:
    """Filter ``h`` (length ``L``) for a signal decimated by ``2**level``.

    ``out[m] = sum_r h[m + r L / 2**level]`` (a sum, not a mean), i.e. in time
    ``2**level * h_time[2**level n]``.  ``2**level`` must divide ``L``.
    """
    L = h.shape[-1]
    if L % (2**level):
        raise ValueError(f"2**level = {2**level} must divide the filter length {L}")
    return h.reshape(*h.shape[:-1], 2**level, L // 2**level).sum(axis=-2)


def temporal_support(h_f: np.ndarray, criterion: float = SUPPORT_CRITERION) -> int:
    """Half temporal support of a centred symmetric filter given in Fourier.

    The smallest ``n`` such that the L1 mass of the impulse response beyond
    ``n`` (first half only) is at most ``criterion``, plus one; half the length
    (with a warning) if no such ``n`` exists.
    """
    h = np.abs(scipy.fft.ifft(np.atleast_2d(h_f), axis=-1))
    half = h.shape[-1] // 2
    tail = np.fliplr(np.cumsum(np.fliplr(h[:, :half]), axis=1))
    ok = np.max(tail, axis=0) <= criterion
    if np.any(ok):
        return int(np.min(np.where(ok)[0])) + 1
    warnings.warn("Signal support is too small to avoid border effects", stacklevel=2)
    return half


def padding(N: int, T: float) -> tuple[int, int, int]:
    """Padded length and left/right padding of a length-``N`` signal averaged at ``T``.

    ``min_to_pad = 3 * support(phi_T)`` (support measured at the unpadded ``N``),
    ``N_pad = 2**min(ceil(log2(N + 2 min_to_pad)), floor(log2(3N - 2)))`` (the cap
    keeps each side's padding below ``N``, as reflection padding requires).

    Returns:
        ``(N_pad, pad_left, pad_right)`` with ``pad_left = (N_pad - N) // 2``.
    """
    N = int(N)
    if N < 2:
        raise ValueError(f"signal length must be >= 2, got {N!r}")
    phi = gauss_fourier(N, SIGMA0 / T)
    min_to_pad = 3 * temporal_support(phi)
    j_max_support = int(np.floor(np.log2(3 * N - 2)))
    j_pad = min(int(np.ceil(np.log2(N + 2 * min_to_pad))), j_max_support)
    n_pad = 2**j_pad
    if n_pad < N:
        raise ValueError(f"padded length {n_pad} is shorter than the signal length {N}")
    pad_left = (n_pad - N) // 2
    pad_right = n_pad - N - pad_left
    if max(pad_left, pad_right) >= N:
        raise ValueError(f"padding ({pad_left}, {pad_right}) must be smaller than the signal length {N}")
    return n_pad, pad_left, pad_right


def border_indices(start: int, stop: int, n_levels: int) -> tuple[list[int], list[int]]:
    """Crop indices of the unpadded signal after each dyadic decimation.

    ``i0[0], i1[0] = start, stop``; then ``i[l] = ceil(i[l - 1] / 2)`` for
    ``l = 1 .. n_levels``.  A time axis decimated by ``2**l`` is cropped to
    ``[i0[l] : i1[l]]`` (note ``i1 - i0`` is not always ``ceil(N / 2**l)``).
    """
    i0, i1 = [int(start)], [int(stop)]
    for _ in range(n_levels):
        i0.append(-(-i0[-1] // 2))
        i1.append(-(-i1[-1] // 2))
    return i0, i1

