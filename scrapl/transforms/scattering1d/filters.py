"""Filter bank, padding and path table of Kymatio 0.3.0's ``Scattering1D`` (numpy).

The Morlet/Gaussian design itself (``morlet_fourier``, ``sigma_psi``, ``xi_max``, the
centre-frequency generator, the maximal dyadic subsampling, periodisation and the
low-pass support) lives in :mod:`scrapl.transforms.filterbank`, shared with JTFS.
This module only adds what Kymatio 0.3.0 does differently from the 0.4-dev code
that JTFS reproduces:

* the constant-bandwidth tail of the centre frequencies is ``elbow - q/Q * elbow``
  (0.4-dev subtracts ``elbow/Q`` cumulatively, which differs in the last bits);
* the subsampled "levels" of a filter are the **mean** over the ``2**l`` folds of its
  spectrum (0.4-dev sums them), i.e. ``2**l`` times smaller;
* which levels exist: psi2 has levels ``0..max{j1 : j1 < j2}`` and phi has levels
  ``0..min(max(j1, j2), log2_T)``;
* the averaging and subsampling rules with ``oversampling`` (see :class:`PathPlan`).

All arithmetic is float64; the module casts to the working dtype once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scrapl.transforms import filterbank as _fb

__all__ = [
    "SIGMA0",
    "ALPHA",
    "R_PSI",
    "FilterParams",
    "filter_params",
    "PaddingPlan",
    "padding_plan",
    "mean_level",
    "PathPlan",
    "TimeFilterBank",
    "build_filterbank",
]

SIGMA0: float = _fb.SIGMA0
"""Low-pass bandwidth at scale 1: ``phi`` has ``sigma = SIGMA0 / T``; the narrowest
wavelet has ``sigma = SIGMA0 / 2**J`` (cycles/sample).  Kymatio 0.3.0's value."""
ALPHA: float = _fb.ALPHA
"""Aliasing tolerance in the maximal dyadic subsampling ``j(xi, sigma)``."""
R_PSI: float = _fb.R_PSI
"""Neighbouring wavelets meet at ``R_PSI`` of their peak."""


@dataclass(frozen=True)
class FilterParams:
    """Centre frequencies ``xi`` (cycles/sample, decreasing), bandwidths ``sigma``
    (cycles/sample) and maximal dyadic subsamplings ``j`` of one wavelet bank."""

    xi: tuple[float, ...]
    sigma: tuple[float, ...]
    j: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.xi)


def filter_params(J: int, Q: int) -> FilterParams:
    """Kymatio 0.3.0's ``compute_params_filterbank(SIGMA0 / 2**J, Q, ALPHA, R_PSI)``.

    The constant-Q part comes from the shared generator; the constant-bandwidth tail
    is recomputed with 0.3.0's direct formula ``elbow - q/Q * elbow`` (the shared
    generator, following 0.4-dev, subtracts ``elbow/Q`` repeatedly).

    Args:
        J: log2 of the largest scale (>= 0).
        Q: wavelets per octave (>= 1).
    """
    sigma_min = SIGMA0 / 2**J
    pairs = _fb.wavelet_params(J, Q, sigma0=SIGMA0, r_psi=R_PSI)  # geometric part, then a Q-1 tail
    n_tail = Q - 1
    geometric = pairs[: len(pairs) - n_tail]
    if geometric:
        elbow = geometric[-1][0]
    else:  # degenerate bank: the widest wavelet is already narrower than sigma_min
        elbow = _fb.sigma_psi(_fb.xi_max(Q), Q, r=R_PSI)
    xis = [float(xi) for xi, _ in geometric] + [elbow - q / Q * elbow for q in range(1, Q)]
    sigmas = [float(s) for _, s in geometric] + [sigma_min] * n_tail
    js = [_fb.max_subsampling(xi, s, alpha=ALPHA) for xi, s in zip(xis, sigmas)]
    return FilterParams(tuple(xis), tuple(sigmas), tuple(js))


@dataclass(frozen=True)
class PaddingPlan:
    """Reflect padding and unpadding indices of the time axis.

    Attributes:
        n_samples: unpadded length N.
        n_padded: padded length ``N_pad`` (a power of two).
        pad_left, pad_right: samples added on each side.
        ind_start, ind_end: ``ind_start[s]:ind_end[s]`` are the frames of the original
            signal after decimation by ``2**s`` (iterated ceil-halving), for
            ``s = 0..max(log2_T, J)``.
    """

    n_samples: int
    n_padded: int
    pad_left: int
    pad_right: int
    ind_start: tuple[int, ...]
    ind_end: tuple[int, ...]


def padding_plan(n_samples: int, J: int, T: int) -> PaddingPlan:
    """Kymatio 0.3.0's padding, identical to 0.4-dev's (:func:`filterbank.padding`):
    ``3 *`` the support of ``phi_T`` (measured at the unpadded length), rounded up to
    a power of two, capped at ``2**floor(log2(3N-2))``; crop indices for decimations
    ``0..max(log2_T, J)``.

    Raises:
        ValueError: the padding on one side would reach the signal length.
    """
    try:
        n_padded, pad_left, pad_right = _fb.padding(n_samples, T)
    except ValueError as exc:
        raise ValueError(f"shape={n_samples} is too short for the averaging scale T={T}: {exc}") from None
    log2_T = int(math.floor(math.log2(T)))
    start, end = _fb.border_indices(pad_left, pad_left + n_samples, max(log2_T, J))
    return PaddingPlan(n_samples, int(n_padded), int(pad_left), int(pad_right), tuple(start), tuple(end))


def mean_level(h: np.ndarray, level: int) -> np.ndarray:
    """Kymatio 0.3.0's level ``l`` of a Fourier-domain filter: the **mean** of the
    ``2**l`` folds, ``h.reshape(2**l, L / 2**l).mean(0)``.

    It equals the shared (0.4-dev) sum-periodisation divided by ``2**l``, bit for
    bit (a power-of-two scaling is exact).
    """
    if level == 0:
        return h
    return _fb.periodize(h, level) / float(2**level)


@dataclass(frozen=True)
class PathPlan:
    """Subsampling exponents of one second-order path ``(n1, n2)``.

    Kymatio 0.3.0 with averaging (``o`` = oversampling)::

        k1 = max(min(j1, log2_T) - o, 0)          # |x * psi1| decimated by 2**k1
        k2 = max(min(j2, log2_T) - k1 - o, 0)     # |U1 * psi2[level k1]| by 2**k2
        kT = max(log2_T - k1 - k2 - o, 0)         # low-pass phi[level k1+k2], by 2**kT

    The output is decimated by ``2**(k1 + k2 + kT) = 2**max(log2_T - o, 0)`` for
    every path.
    """

    n1: int
    n2: int
    k1: int
    k2: int
    kT: int


@dataclass(frozen=True)
class TimeFilterBank:
    """Everything of the transform that does not depend on the input (float64 numpy).

    Attributes:
        J, Q1, Q2, T, log2_T, oversampling: the parameters.
        padding: :class:`PaddingPlan`.
        psi1: first-order bank parameters (``N1`` wavelets).
        psi2: second-order bank parameters (``N2`` wavelets).
        k1: decimation exponent of each first-order wavelet ``(N1,)``.
        paths: the second-order paths in Kymatio's output order (``n1`` outer,
            ``n2`` inner, ``j1 < j2``).
        phi_levels: ``phi`` at levels ``0..L_phi``: arrays of length ``N_pad / 2**l``.
        psi1_f: first-order filters ``(N1, N_pad)``.
        psi2_levels: ``{level l: (first n2, array (n, N_pad / 2**l))}``: psi2 filters
            ``n2 >= first`` at level ``l`` (only the levels some path uses).
        log2_out: decimation exponent of every output channel.
    """

    J: int
    Q1: int
    Q2: int
    T: int
    log2_T: int
    oversampling: int
    padding: PaddingPlan
    psi1: FilterParams
    psi2: FilterParams
    k1: tuple[int, ...]
    paths: tuple[PathPlan, ...]
    phi_levels: tuple[np.ndarray, ...]
    psi1_f: np.ndarray
    psi2_levels: dict[int, tuple[int, np.ndarray]]
    log2_out: int


def build_filterbank(n_samples: int, J: int, Q: tuple[int, int], T: int | None, oversampling: int = 0) -> TimeFilterBank:
    """Design the filters of Kymatio 0.3.0's ``Scattering1D(J, n_samples, Q, T)``.

    Args:
        n_samples: signal length N.
        J: log2 of the largest wavelet scale.
        Q: ``(Q1, Q2)`` wavelets per octave.
        T: averaging scale in samples (``None`` means ``2**J``).
        oversampling: Kymatio's ``oversampling`` exponent (>= 0).

    Raises:
        ValueError: inconsistent parameters (see :func:`padding_plan`) or no
            second-order path (every ``j2 <= j1``).
    """
    Q1, Q2 = Q
    T_eff = 2**J if T is None else int(T)
    log2_T = int(math.floor(math.log2(T_eff)))
    o = int(oversampling)
    pad = padding_plan(n_samples, J, T_eff)
    n_pad = pad.n_padded

    p1 = filter_params(J, Q1)
    p2 = filter_params(J, Q2)
    k1s = tuple(max(min(j1, log2_T) - o, 0) for j1 in p1.j)

    paths: list[PathPlan] = []
    for n1, j1 in enumerate(p1.j):
        k1 = k1s[n1]
        for n2, j2 in enumerate(p2.j):
            if j2 > j1:
                k2 = max(min(j2, log2_T) - k1 - o, 0)
                kT = max(log2_T - k1 - k2 - o, 0)
                paths.append(PathPlan(n1, n2, k1, k2, kT))
    if not paths:
        raise ValueError(
            f"J={J}, Q={Q} gives no second-order path (no psi2 wavelet has j2 > j1 of a psi1 "
            "wavelet); increase J"
        )
    log2_out = max(log2_T - o, 0)
    for p in paths:  # holds by construction; a violated invariant is a bug, not bad input
        if p.k1 + p.k2 + p.kT != log2_out:
            raise RuntimeError(f"inconsistent subsampling for path {p}")

    # first order: only level 0 (psi1 always sees the full-resolution signal)
    psi1_f = np.stack([_fb.morlet_fourier(n_pad, xi, s) for xi, s in zip(p1.xi, p1.sigma)])

    # second order: level l of psi2[n2] for every (n2, l = k1) some path uses
    needed: dict[int, int] = {}
    for p in paths:
        needed[p.k1] = min(needed.get(p.k1, p.n2), p.n2)
    psi2_base: dict[int, np.ndarray] = {}
    first_needed = min(needed.values())
    for n2 in range(first_needed, len(p2)):
        psi2_base[n2] = _fb.morlet_fourier(n_pad, p2.xi[n2], p2.sigma[n2])
    psi2_levels = {
        level: (first, np.stack([mean_level(psi2_base[n2], level) for n2 in range(first, len(p2))]))
        for level, first in sorted(needed.items())
    }

    # low-pass: levels used by orders 0 (0), 1 (k1) and 2 (k1 + k2)
    max_phi_level = max([0, *k1s, *(p.k1 + p.k2 for p in paths)])
    phi0 = _fb.gauss_fourier(n_pad, SIGMA0 / T_eff)
    phi_levels = tuple(mean_level(phi0, level) for level in range(max_phi_level + 1))

    return TimeFilterBank(
        J=J,
        Q1=Q1,
        Q2=Q2,
        T=T_eff,
        log2_T=log2_T,
        oversampling=o,
        padding=pad,
        psi1=p1,
        psi2=p2,
        k1=k1s,
        paths=tuple(paths),
        phi_levels=phi_levels,
        psi1_f=psi1_f,
        psi2_levels=psi2_levels,
        log2_out=log2_out,
    )
