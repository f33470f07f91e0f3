"""JTFS filterbanks and the precomputed operators of the fast algorithm (numpy, float64).

Two layers:

1. :func:`design_filterbank` builds the full (untruncated) filterbanks of the joint
   time-frequency scattering exactly as Kymatio 0.4 does:
   first-order ``psi1`` and second-order ``psi2`` Morlet wavelets and the low-pass
   ``phi`` on the padded time grid (``N_pad`` bins), the frequential wavelets
   ``psi_fr`` and low-pass ``phi_fr`` on the padded log-frequency grid (``N_fr``
   bins).  Every array is computed in float64 and then rounded to float32; it is
   returned as float64 holding those float32 values.

2. :func:`build_plan` turns the banks into what :mod:`scrapl.transforms.jtfs.core`
   needs, all independent of the input signal:

   * **Fourier windows.**  A Morlet is negligible outside a short band.  For every
     time filter we keep the circular window of DFT bins where ``|h| > rel_tol *
     max |h|`` (``rel_tol = TIME_REL_TOL``), as gather indices into a one-sided
     (``rfft``) spectrum plus a conjugation sign and the filter values, already
     divided by the Fourier-domain decimation factor.  Placing the window at bin 0
     before the inverse FFT multiplies the result by a phase ramp that is the same
     for every row, which a later complex modulus removes.
   * **Dense small operators.**  Along the log-frequency axis every step is a small
     linear map: frequential wavelet + decimation (a complex ``R x n1`` matrix
     ``M``), frequential averaging (a real ``F_out x R`` matrix ``P``); along time
     the second-order averaging with ``phi`` + decimation to ``T_s = N_pad / 2**s``
     frames is a real ``T2 x T_s`` matrix ``A``.  They are computed in closed form
     from the float32-rounded filters (e.g. ``A[n, t] = Re(ifft(phi))[(2**d t - n)
     mod T2]``).  Rows of ``M`` whose entries are all below ``FREQ_ROW_REL_TOL``
     times the largest are dropped; those rows' moduli equal the ``1e-12`` floor,
     whose (tiny) contribution is added back as a constant ``bias``.

Units: frequencies ``xi``/``sigma`` of time filters in cycles per sample, of
frequential filters in cycles per first-order channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from scrapl.transforms import filterbank as fb

__all__ = [
    "FREQ_ROW_REL_TOL",
    "MODULUS_FLOOR",
    "TIME_REL_TOL",
    "FirstOrderGroup",
    "JTFSBank",
    "JTFSPlan",
    "PathPlan",
    "SecondOrderPlan",
    "build_plan",
    "design_filterbank",
    "index_segments",
    "support_window",
]

#: Filter bins below this fraction of a time filter's peak are treated as zero.
TIME_REL_TOL: float = 1e-10
#: Rows of a frequential-scattering matrix below this fraction of its peak are
#: treated as zero (their modulus is the floor).  The matrices come from float32
#: filters, whose rounding leaves a floor near 6e-8 of the peak in every row.
FREQ_ROW_REL_TOL: float = 1e-7
#: Added to every complex modulus after its square root.
MODULUS_FLOOR: float = 1e-12


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32 precision, keep float64 storage."""
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


@dataclass
class JTFSBank:
    """Full (untruncated) filterbanks of one JTFS configuration (float32 values in float64).

    Time filters live on the padded grid of ``N_pad`` bins; ``*_levels[l]`` is the
    filter for a signal decimated by ``2**l`` (length ``N_pad / 2**l``).  Frequential
    filters live on the ``N_fr``-bin grid.
    """

    N: int
    N_pad: int
    pad_left: int
    pad_right: int
    T: int
    F: int
    log2_T: int
    log2_F: int
    log2_stride: int
    log2_stride_fr: int
    N_fr: int
    ind_start: list[int]
    ind_end: list[int]
    psi1_xi: np.ndarray
    psi1_sigma: np.ndarray
    psi1_j: np.ndarray
    psi1: np.ndarray  # (N1, N_pad)
    psi2_xi: np.ndarray
    psi2_sigma: np.ndarray
    psi2_j: np.ndarray
    psi2_levels: list[list[np.ndarray]]
    phi_levels: list[np.ndarray]
    psi_fr_xi: np.ndarray
    psi_fr_sigma: np.ndarray
    psi_fr_j: np.ndarray
    psi_fr_spin: np.ndarray
    psi_fr: np.ndarray  # (1 + 2K, N_fr)
    phi_fr_levels: list[np.ndarray]

    @property
    def n1(self) -> int:
        return int(self.psi1.shape[0])

    @property
    def n2(self) -> int:
        return len(self.psi2_levels)

    @property
    def n_fr(self) -> int:
        return int(self.psi_fr.shape[0])

    @property
    def K(self) -> int:
        """Number of positive-spin frequential wavelets."""
        return (self.n_fr - 1) // 2

    def n1_max(self, n2: int) -> int:
        """Number of first-order wavelets with ``j1 < j2[n2]`` (a prefix of n1)."""
        return int(np.sum(self.psi1_j < self.psi2_j[n2]))


def design_filterbank(N: int, J: int, Q1: int, Q2: int, J_fr: int, Q_fr: int, T: int | None = None,
                      F: int | None = None) -> JTFSBank:
    """Build the full (untruncated) JTFS filterbanks.

    Arguments are those of :class:`scrapl.transforms.jtfs.JTFSConfig` (assumed
    validated).  ``T``/``F`` default to ``2**J`` / ``2**J_fr``.
    """
    T_ = 2**J if T is None else int(T)
    F_ = 2**J_fr if F is None else int(F)
    log2_T = int(math.floor(math.log2(T_)))
    log2_F = int(math.floor(math.log2(F_)))
    n_pad, pad_left, pad_right = fb.padding(N, T_)
    i0, i1 = fb.border_indices(pad_left, pad_left + N, max(log2_T, J))

    p1 = fb.wavelet_params(J, Q1)
    p2 = fb.wavelet_params(J, Q2)
    j1 = np.array([fb.max_subsampling(xi, s) for xi, s in p1], dtype=np.int64)
    j2 = np.array([fb.max_subsampling(xi, s) for xi, s in p2], dtype=np.int64)
    max_j1 = int(j1.max())
    psi1 = np.stack([_f32(fb.morlet_fourier(n_pad, xi, s)) for xi, s in p1])
    psi2_levels: list[list[np.ndarray]] = []
    for (xi, s), j in zip(p2, j2):
        lev0 = fb.morlet_fourier(n_pad, xi, s)
        levels = [lev0] + [fb.periodize(lev0, lv) for lv in range(1, min(max_j1, int(j), 1 + log2_T))]
        psi2_levels.append([_f32(h) for h in levels])
    max_j = max(max_j1, int(j2.max()))
    phi0 = fb.gauss_fourier(n_pad, fb.SIGMA0 / T_)
    phi_levels = [_f32(phi0)] + [_f32(fb.periodize(phi0, lv)) for lv in range(1, max(max_j, 1 + log2_T))]

    # frequential banks on the padded log-frequency axis
    n_in_fr = (J + 1) * Q1
    min_pad_fr = 8 * min(F_, 2**J_fr)
    n_fr = ((n_in_fr + min_pad_fr) // 2**J_fr) * 2**J_fr
    pfr = fb.wavelet_params(J_fr, Q_fr)
    xi_fr = [0.0] + [xi for xi, _ in pfr] + [-xi for xi, _ in pfr]
    sigma_fr = [fb.SIGMA0 / 2**J_fr] + [s for _, s in pfr] * 2
    j_fr = [J_fr] + [fb.max_subsampling(xi, s) for xi, s in pfr] * 2
    psi_fr = np.stack([_f32(fb.gauss_fourier(n_fr, sigma_fr[0]))]
                      + [_f32(fb.morlet_fourier(n_fr, xi, s)) for xi, s in zip(xi_fr[1:], sigma_fr[1:])])
    phi_fr0 = fb.gauss_fourier(n_fr, fb.SIGMA0 / F_)
    phi_fr_levels = [_f32(phi_fr0)] + [_f32(fb.periodize(phi_fr0, lv)) for lv in range(1, 1 + log2_F)]

    return JTFSBank(
        N=int(N), N_pad=n_pad, pad_left=pad_left, pad_right=pad_right, T=T_, F=F_, log2_T=log2_T,
        log2_F=log2_F, log2_stride=log2_T, log2_stride_fr=log2_F, N_fr=n_fr, ind_start=i0, ind_end=i1,
        psi1_xi=np.array([p[0] for p in p1]), psi1_sigma=np.array([p[1] for p in p1]), psi1_j=j1, psi1=psi1,
        psi2_xi=np.array([p[0] for p in p2]), psi2_sigma=np.array([p[1] for p in p2]), psi2_j=j2,
        psi2_levels=psi2_levels, phi_levels=phi_levels,
        psi_fr_xi=np.array(xi_fr), psi_fr_sigma=np.array(sigma_fr), psi_fr_j=np.array(j_fr, dtype=np.int64),
        psi_fr_spin=np.sign(np.array(xi_fr)).astype(np.int64), psi_fr=psi_fr, phi_fr_levels=phi_fr_levels,
    )


# ----------------------------------------------------------------------------------
# plan: windows and dense operators
# ----------------------------------------------------------------------------------


def support_window(h: np.ndarray, rel_tol: float) -> tuple[int, int]:
    """Smallest circular window of bins holding every ``|h| > rel_tol * max|h|``.

    Returns:
        ``(start, width)``: the window is bins ``(start + i) % len(h)``,
        ``i < width``; ``start`` in ``[0, len(h))``.
    """
    L = h.shape[-1]
    a = np.abs(h)
    mask = a > rel_tol * a.max()
    idx = np.flatnonzero(mask)
    if idx.size == 0:  # pragma: no cover - all-zero filter cannot happen
        return 0, 1
    if idx.size == 1:
        return int(idx[0]), 1
    nxt = np.roll(idx, -1)
    gaps = (nxt - idx) % L  # distance to the next kept bin (circular)
    g = int(np.argmax(gaps))
    if gaps[g] <= 1:
        return 0, L
    start = int(nxt[g])
    width = int((idx[g] - start) % L) + 1
    return start, width


def _hermitian_index(bins: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Index into a one-sided spectrum (length ``L // 2 + 1``) and the sign of the
    imaginary part: bin ``b`` of a real signal's full spectrum equals
    ``rfft[b]`` if ``b <= L / 2`` else ``conj(rfft[L - b])``."""
    b = np.mod(bins, L)
    neg = b > L // 2
    idx = np.where(neg, L - b, b)
    return idx.astype(np.int64), np.where(neg, -1.0, 1.0)


def index_segments(hidx: np.ndarray, sign: np.ndarray) -> tuple[tuple[int, int, int, bool], ...]:
    """Split a Hermitian gather (``hidx``, ``sign`` from :func:`_hermitian_index`) into
    runs ``(src, dst, n, descending)``: output positions ``dst .. dst+n-1`` take source
    bins ``src .. src+n-1`` in order (``descending=False``, positive frequencies) or in
    reverse order and conjugated (``descending=True``, negative frequencies)."""
    runs: list[tuple[int, int, int, bool]] = []
    i, W = 0, len(hidx)
    while i < W:
        desc = bool(sign[i] < 0)
        step = -1 if desc else 1
        j = i + 1
        while j < W and bool(sign[j] < 0) == desc and hidx[j] == hidx[j - 1] + step:
            j += 1
        n = j - i
        src = int(hidx[j - 1]) if desc else int(hidx[i])
        runs.append((src, i, n, desc))
        i = j
    return tuple(runs)


@dataclass
class FirstOrderGroup:
    """First-order wavelets sharing one decimation ``k`` (``n1`` in ``[start, stop)``).

    ``idx[f, i]`` / ``coef[f, i] = (h, sign * h) / 2**k`` gather the windowed product
    ``X * psi1`` from the one-sided spectrum of the padded input (``N_pad`` bins);
    the inverse FFT has length ``L = N_pad / 2**k``.  ``one_sided`` tells whether the
    window fits in bins ``1 .. L/2 - 1`` (then real and imaginary parts come from
    two inverse real FFTs).  ``phi_idx``/``phi_coef_*`` give the first-order time
    averaging ``S1 = Re(sum_i U1hat[b_i] C[i, t])`` onto ``T_s`` frames.
    ``win_start[f]`` is the first bin (in ``[0, N_pad)``) of filter ``f``'s window in
    the full two-sided spectrum: the window is bins ``win_start[f] + i``, ``i < W``,
    taken modulo ``N_pad``.
    """

    k: int
    start: int
    stop: int
    L: int
    idx: np.ndarray  # (nf, W) int64
    coef: np.ndarray  # (nf, W, 2)
    one_sided: bool
    phi_idx: np.ndarray  # (Wp,) int64 into rfft of U1 (length L//2+1)
    phi_coef: np.ndarray  # (Wp, 2, T_s): real/imag parts of C with conj sign folded
    win_start: np.ndarray  # (nf,) int64


@dataclass
class SecondOrderPlan:
    """Everything for the second-order channels of one ``n2``.

    ``idx[k]``/``coef[k]`` gather ``U1hat * psi2.level[k] / 2**(j2 - k)`` from the
    one-sided spectrum of group ``k`` (window width ``W`` common to all groups, the
    same absolute frequencies); the inverse FFT has length ``T2 = N_pad / 2**j2``
    (``fold`` is ``None`` when ``W <= T2``, else the positions ``i % T2``).
    ``segments[k]`` describes the same gather as runs of consecutive bins (see
    :func:`index_segments`), which slicing copies far faster than an index gather.
    ``M`` stacks the frequential-scattering matrices of all ``n_fr`` in row-interleaved
    real form (rows ``2r, 2r+1`` = real, imaginary part of output row ``r``; columns
    ``2n, 2n+1`` = real, imaginary part of input row ``n``); path ``n_fr`` owns rows
    ``[2 row_start[n_fr], 2 row_stop[n_fr])``.
    """

    n2: int
    j2: int
    n1_max: int
    T2: int
    W: int
    idx: list[np.ndarray]
    coef: list[np.ndarray]
    segments: list[tuple[tuple[int, int, int, bool], ...]]
    fold: np.ndarray | None
    M: np.ndarray  # (2 R_tot, 2 n1_max)
    row_start: list[int]
    row_stop: list[int]


@dataclass
class PathPlan:
    """One second-order path ``(n2, n_fr)``: frequential averaging ``P`` (``F_out x R'``,
    identity columns for spin 0) over the kept rows and the constant ``bias``
    (``F_out x T_s``) of the dropped rows."""

    n2: int
    n_fr: int
    P: np.ndarray
    bias: np.ndarray
    rows: np.ndarray  # kept row indices in [0, R)
    R: int


@dataclass
class JTFSPlan:
    """Signal-independent data of the fast JTFS (see module docs)."""

    bank: JTFSBank
    T_s: int
    F_out: int
    groups: list[FirstOrderGroup]
    second: dict[int, SecondOrderPlan]
    paths: list[tuple[int, int]]
    path_plans: list[PathPlan]
    A: dict[int, np.ndarray]  # j2 -> (T2, T_s)
    first_M: np.ndarray  # (2 R1_tot, N1) real form applied to real S1: rows 2r, 2r+1 = (Re, Im)
    first_row_start: list[int]
    first_row_stop: list[int]
    first_P: list[np.ndarray]  # per n_fr in 0..K: (F_out, R)
    extra: dict = field(default_factory=dict)


def _freq_matrix(psi_t: np.ndarray, n_fr: int, k: int, n_cols: int) -> np.ndarray:
    """``M[r, n] = psi_t[(2**k r - n) mod N_fr]``: zero-pad ``n_cols`` rows to ``N_fr``,
    convolve with the frequential filter (impulse response ``psi_t``), decimate by
    ``2**k`` (``sub`` in Fourier = decimation in time)."""
    R = n_fr // 2**k
    r = np.arange(R)[:, None]
    n = np.arange(n_cols)[None, :]
    return psi_t[np.mod(2**k * r - n, n_fr)]


def _avg_matrix(phi_level: np.ndarray, d: int) -> np.ndarray:
    """Real averaging operator of ``Re IFFT(sub(FFT(u) * phi, 2**d))`` on a real
    length-``L`` signal: ``A[n, t] = Re(ifft(phi))[(2**d t - n) mod L]``, shape
    ``(L, L / 2**d)``."""
    L = phi_level.shape[-1]
    phi_t = np.real(scipy.fft.ifft(phi_level))
    n = np.arange(L)[:, None]
    t = np.arange(L // 2**d)[None, :]
    return phi_t[np.mod(2**d * t - n, L)]


def _interleave_complex(Mr: np.ndarray, Mi: np.ndarray) -> np.ndarray:
    """Real ``(2R, 2n)`` form of the complex ``R x n`` matrix ``Mr + i Mi`` acting on
    row-interleaved (real, imag) inputs and giving row-interleaved outputs."""
    R, n = Mr.shape
    out = np.empty((R, 2, n, 2))
    out[:, 0, :, 0] = Mr
    out[:, 0, :, 1] = -Mi
    out[:, 1, :, 0] = Mi
    out[:, 1, :, 1] = Mr
    return out.reshape(2 * R, 2 * n)


def build_plan(bank: JTFSBank, time_rel_tol: float = TIME_REL_TOL,
               freq_row_rel_tol: float = FREQ_ROW_REL_TOL) -> JTFSPlan:
    """Precompute windows and operators (see module docs) for ``bank``."""
    b = bank
    s, s_fr = b.log2_stride, b.log2_stride_fr
    n_pad = b.N_pad
    T_s = n_pad // 2**s
    F_out = b.N_fr // 2**s_fr
    n1 = b.n1

    # ---- first order: groups by k1 = min(j1, s) -----------------------------------
    k1 = np.minimum(b.psi1_j, s)
    groups: list[FirstOrderGroup] = []
    for k in sorted(set(int(v) for v in k1)):
        members = np.flatnonzero(k1 == k)
        start, stop = int(members[0]), int(members[-1]) + 1
        if not np.array_equal(members, np.arange(start, stop)):  # pragma: no cover - j1 is monotone
            raise RuntimeError("first-order wavelets of one decimation must be contiguous")
        L = n_pad // 2**k
        wins = [support_window(b.psi1[m], time_rel_tol) for m in members]
        W = min(max(w for _, w in wins), L)
        idx = np.empty((len(members), W), dtype=np.int64)
        coef = np.empty((len(members), W, 2))
        for f, (m, (st, _)) in enumerate(zip(members, wins)):
            bins = (st + np.arange(W)) % n_pad
            hidx, sign = _hermitian_index(bins, n_pad)
            h = b.psi1[m][bins] / 2**k
            idx[f] = hidx
            coef[f, :, 0] = h
            coef[f, :, 1] = sign * h
        one_sided = W + 1 <= L // 2 - 1
        # first-order averaging with phi.level[k] onto T_s frames
        phi = b.phi_levels[k]
        pst, pw = support_window(phi, time_rel_tol)
        pbins = (pst + np.arange(pw)) % L
        pidx, psign = _hermitian_index(pbins, L)
        t = np.arange(T_s)
        ph = np.exp(2j * np.pi * np.outer(pbins, t) / T_s) * (phi[pbins] / L)[:, None]  # (Wp, T_s)
        # S1 = Re(sum_i g_i C_i) with g_i = (gr, sign*gi) from the rfft: Re(g C) = gr Cr - sign gi Ci
        pc = np.stack([ph.real, -psign[:, None] * ph.imag], axis=1)  # (Wp, 2, T_s)
        groups.append(FirstOrderGroup(k=k, start=start, stop=stop, L=L, idx=idx, coef=coef,
                                      one_sided=one_sided, phi_idx=pidx, phi_coef=pc,
                                      win_start=np.array([st for st, _ in wins], dtype=np.int64)))

    # ---- frequential impulse responses ----------------------------------------------
    n_fr_tot = b.n_fr
    K = b.K
    psi_fr_t = scipy.fft.ifft(b.psi_fr, axis=-1)  # (n_fr, N_fr) complex
    k_fr = np.minimum(b.psi_fr_j, s_fr)
    P_by_kin: dict[int, np.ndarray] = {}

    def freq_avg(nf: int) -> np.ndarray:
        R = b.N_fr // 2 ** int(k_fr[nf])
        if b.psi_fr_spin[nf] == 0:
            if R != F_out:  # pragma: no cover - excluded by F <= 2**J_fr
                raise RuntimeError("spin-0 channel does not match F_out")
            return np.eye(R)
        k_in = int(min(b.psi_fr_j[nf], b.log2_F))
        if k_in not in P_by_kin:
            P_by_kin[k_in] = _avg_matrix(b.phi_fr_levels[k_in], s_fr - k_in).T  # (F_out, R)
        return P_by_kin[k_in]

    # ---- first-order joint channels: n_fr = 0..K on S1 (all n1) ----------------------
    fM, f_start, f_stop, f_P = [], [], [], []
    row = 0
    for nf in range(K + 1):
        M = _freq_matrix(psi_fr_t[nf], b.N_fr, int(k_fr[nf]), n1)  # (R, N1) complex
        fM.append(np.stack([M.real, M.imag], axis=1).reshape(2 * M.shape[0], n1))
        f_start.append(row)
        row += M.shape[0]
        f_stop.append(row)
        f_P.append(freq_avg(nf))
    first_M = np.concatenate(fM, axis=0)

    # ---- second order ----------------------------------------------------------------
    A: dict[int, np.ndarray] = {}
    second: dict[int, SecondOrderPlan] = {}
    paths: list[tuple[int, int]] = []
    path_plans: list[PathPlan] = []
    for n2 in range(b.n2):
        j2 = int(b.psi2_j[n2])
        n1_max = b.n1_max(n2)
        if n1_max == 0:
            continue
        T2 = n_pad // 2**j2
        if j2 not in A:
            A[j2] = _avg_matrix(b.phi_levels[j2], s - j2)
        st2, W2 = support_window(b.psi2_levels[n2][0], time_rel_tol)
        idx_l, coef_l, seg_l = [], [], []
        for g in groups:
            if g.k >= j2:
                break
            L = g.L
            bins = (st2 + np.arange(W2)) % L
            hidx, sign = _hermitian_index(bins, L)
            h = b.psi2_levels[n2][g.k][bins] / 2 ** (j2 - g.k)
            idx_l.append(hidx)
            coef_l.append(np.stack([h, sign * h], axis=-1))
            seg_l.append(index_segments(hidx, sign))
        fold = None if W2 <= T2 else (np.arange(W2) % T2).astype(np.int64)
        Ms, r_start, r_stop = [], [], []
        row = 0
        for nf in range(n_fr_tot):
            Mc = _freq_matrix(psi_fr_t[nf], b.N_fr, int(k_fr[nf]), n1_max)  # (R, n1_max)
            R = Mc.shape[0]
            mag = np.abs(Mc).max(axis=1)
            keep = np.flatnonzero(mag > freq_row_rel_tol * mag.max())
            Ms.append(_interleave_complex(Mc.real[keep], Mc.imag[keep]))
            r_start.append(row)
            row += keep.size
            r_stop.append(row)
            P = freq_avg(nf)
            dropped = np.setdiff1d(np.arange(R), keep)
            bias = MODULUS_FLOOR * np.outer(P[:, dropped].sum(axis=1), A[j2].sum(axis=0))
            path_plans.append(PathPlan(n2=n2, n_fr=nf, P=P[:, keep], bias=bias, rows=keep, R=R))
            paths.append((n2, nf))
        second[n2] = SecondOrderPlan(n2=n2, j2=j2, n1_max=n1_max, T2=T2, W=W2, idx=idx_l, coef=coef_l,
                                     segments=seg_l, fold=fold, M=np.concatenate(Ms, axis=0), row_start=r_start,
                                     row_stop=r_stop)
    return JTFSPlan(bank=b, T_s=T_s, F_out=F_out, groups=groups, second=second, paths=paths,
                    path_plans=path_plans, A=A, first_M=first_M, first_row_start=f_start,
                    first_row_stop=f_stop, first_P=f_P)
