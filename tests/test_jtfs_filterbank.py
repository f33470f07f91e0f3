"""Shared Morlet filter design (scrapl.transforms.filterbank) and the JTFS plan."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import scipy.fft

from scrapl.transforms import filterbank as fb
from scrapl.transforms.jtfs.filterbank import build_plan, design_filterbank, support_window


@pytest.mark.parametrize(
    "J, Q, total",
    [(12, 8, 86), (12, 2, 25), (8, 8, 54), (8, 2, 17), (6, 8, 38), (6, 2, 13), (6, 1, 7), (3, 1, 4),
     (3, 2, 7), (5, 2, 11), (2, 1, 3)],
)
def test_bank_sizes(J: int, Q: int, total: int) -> None:
    params = fb.wavelet_params(J, Q)
    assert len(params) == total
    xis = [p[0] for p in params]
    assert all(a > b for a, b in zip(xis, xis[1:]))  # strictly decreasing


def test_xi_max_and_sigma_table() -> None:
    table = {1: (0.35, 0.140131), 2: (0.35, 0.072128), 4: (0.372885, 0.038709), 8: (0.435381, 0.022641),
             16: (0.467554, 0.012163), 24: (0.478353, 0.008296)}
    for Q, (xi, sigma) in table.items():
        assert fb.xi_max(Q) == pytest.approx(xi, abs=1e-6)
        assert fb.sigma_psi(fb.xi_max(Q), Q) == pytest.approx(sigma, abs=1e-6)


def test_subsampling_counts_of_the_paper_banks() -> None:
    j1 = Counter(fb.max_subsampling(*p) for p in fb.wavelet_params(12, 8))
    assert j1 == {0: 10, **{j: 8 for j in range(1, 9)}, 9: 7, 10: 4, 11: 1}
    j2 = Counter(fb.max_subsampling(*p) for p in fb.wavelet_params(12, 2))
    assert j2 == {0: 4, **{j: 2 for j in range(1, 11)}, 11: 1}


def test_morlet_properties() -> None:
    L = 1000  # not a power of two
    for xi, sigma in fb.wavelet_params(6, 4):
        for sign in (1, -1):
            h = fb.morlet_fourier(L, sign * xi, sigma)
            assert h.shape == (L,) and h.dtype == np.float64
            assert abs(h[0]) <= 1e-15 * np.abs(h).max()  # zero mean (up to rounding)
            assert np.abs(scipy.fft.ifft(h)).sum() == pytest.approx(1.0, rel=1e-12)  # unit L1 norm in time
            peak = np.argmax(np.abs(h)) / L
            assert (peak if sign > 0 else 1 - peak) == pytest.approx(xi, abs=2 / L + sigma)
    g = fb.gauss_fourier(L, 0.01)
    assert g[0] == g.max() and np.allclose(g[1:], g[1:][::-1])  # even, peak at DC
    assert fb.morlet_fourier(L, 0, 0.01).tolist() == g.tolist()  # xi = 0 is the low-pass
    assert fb.n_periods(0.17) == 2 and fb.n_periods(0.5) == 4 and fb.n_periods(5.0) == fb.P_MAX
    with pytest.raises(ValueError, match="sigma"):
        fb.n_periods(0.0)
    with pytest.raises(ValueError, match="L"):
        fb.morlet_fourier(0, 0.1, 0.01)


def test_periodize_is_a_sum_and_decimates_in_time() -> None:
    h = fb.morlet_fourier(64, 0.1, 0.02)
    p = fb.periodize(h, 2)
    assert p.shape == (16,)
    np.testing.assert_allclose(p, h.reshape(4, 16).sum(0))
    # time domain: 2**l * h_time[2**l n]
    np.testing.assert_allclose(scipy.fft.ifft(p), 4 * scipy.fft.ifft(h)[::4], atol=1e-15)
    with pytest.raises(ValueError, match="divide"):
        fb.periodize(np.ones(12), 3)


@pytest.mark.parametrize(
    "N, T, n_pad, pad",
    [(32768, 4096, 65536, 16384), (48000, 4096, 131072, 41536), (44100, 2048, 131072, 43486),
     (8192, 256, 16384, 4096), (8096, 8, 16384, 4144), (4096, 64, 8192, 2048)],
)
def test_padding_worked_examples(N: int, T: int, n_pad: int, pad: int) -> None:
    assert fb.padding(N, T) == (n_pad, pad, n_pad - N - pad)


@pytest.mark.parametrize(
    "N, T, s, crop",
    [(32768, 4096, 12, (4, 12)), (48000, 4096, 12, (11, 22)), (44100, 2048, 11, (22, 43)),
     (8192, 256, 8, (16, 48)), (8096, 8, 3, (518, 1530)), (4096, 64, 6, (32, 96))],
)
def test_border_indices_worked_examples(N: int, T: int, s: int, crop: tuple[int, int]) -> None:
    n_pad, left, _ = fb.padding(N, T)
    i0, i1 = fb.border_indices(left, left + N, s)
    assert (i0[s], i1[s]) == crop and len(i0) == s + 1


def test_support_window() -> None:
    h = np.zeros(10)
    h[[8, 9, 0, 1]] = 1.0  # wraps around
    assert support_window(h, 1e-3) == (8, 4)
    h = np.zeros(10)
    h[3] = 1.0
    assert support_window(h, 1e-3) == (3, 1)
    assert support_window(np.ones(10), 1e-3) == (0, 10)
    h = np.array([0, 1, 0, 1, 0, 0, 0, 0.0])
    assert support_window(h, 1e-3) == (1, 3)


def test_paper_plan_tables() -> None:
    """Spec Appendix A: N_fr, n1_max per n2, frequential j's; windows inside the grids."""
    bank = design_filterbank(32768, 12, 8, 2, 3, 2)
    assert (bank.N_pad, bank.N_fr, bank.n1, bank.n2, bank.n_fr) == (65536, 168, 86, 25, 15)
    n1_max = [bank.n1_max(n2) for n2 in range(25)]
    assert n1_max == [0] * 4 + [10, 10, 18, 18, 26, 26, 34, 34, 42, 42, 50, 50, 58, 58, 66, 66, 74, 74, 81, 81, 85]
    assert bank.psi_fr_j.tolist() == [3, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1, 1, 2]
    assert bank.psi_fr_spin.tolist() == [0] + [1] * 7 + [-1] * 7
    assert bank.psi2_xi[4] == pytest.approx(0.0875) and bank.psi2_j[4] == 1
    assert len(bank.phi_levels) == 13 and len(bank.phi_fr_levels) == 4
    assert [len(lv) for lv in bank.psi2_levels][4:8] == [1, 1, 2, 2]
    plan = build_plan(bank)
    assert (plan.T_s, plan.F_out) == (16, 21)
    assert len(plan.paths) == 315 and plan.paths == sorted(plan.paths)
    for g in plan.groups:
        assert g.idx.max() <= bank.N_pad // 2 and g.idx.shape[1] <= g.L
    for sp in plan.second.values():
        assert sp.W <= sp.T2 and sp.fold is None
        assert sp.M.shape[1] == 2 * sp.n1_max
    # dropping negligible rows keeps every row that matters
    for pp in plan.path_plans:
        assert 1 <= pp.rows.size <= pp.R
        assert np.abs(pp.bias).max() < 1e-10


def test_filters_are_float32_values() -> None:
    bank = design_filterbank(4096, 6, 8, 2, 3, 2)
    for arr in [bank.psi1, bank.psi_fr, *bank.phi_levels, *bank.psi2_levels[5]]:
        assert np.array_equal(arr, arr.astype(np.float32).astype(np.float64))
    assert math.isclose(bank.psi1_xi[0], fb.xi_max(8))
