"""JTFS module behaviour: shapes, consistency, autograd, dtypes/devices, input checks."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scrapl.interfaces import PathInfo, ScatteringTransform
from scrapl.transforms.jtfs import JTFS, PLUGINS, JTFSConfig, build_jtfs, core

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: two OpenMP threads on a loaded 2-core box mostly wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small() -> JTFS:
    return JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)


@pytest.fixture(scope="module")
def tiny64() -> JTFS:
    """Float64 tiny transform with both kinds of first-order group (one-sided irfft
    pair and full complex ifft)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # border-effect warning of a very short signal
        m = JTFS(shape=64, J=3, Q1=8, Q2=1, J_fr=1, Q_fr=1).double()
    assert {g.one_sided for g in m._groups} == {True, False}
    return m


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ------------------------------------------------------------------ structure
def test_is_a_scattering_transform_with_path_metadata(small: JTFS) -> None:
    assert isinstance(small, ScatteringTransform)
    assert small.n_samples == 4096 and small.n_paths == 28 == len(small.paths)
    assert small.paths == sorted(small.paths)
    assert all(len(k) == 2 for k in small.paths)
    assert small.first_order_keys == [(0,), (1,), (2,), (3,)]
    assert small.channel_keys == small.first_order_keys + small.paths
    infos = small.path_infos
    assert len(infos) == small.n_paths and all(isinstance(p, PathInfo) for p in infos)
    table = small.filter_table
    for i, (info, (n2, n_fr)) in enumerate(zip(infos, small.paths)):
        assert info.index == i and info.key == (n2, n_fr)
        assert info.temporal_rate == pytest.approx(table["psi2_xi"][n2])
        assert info.freq_scale == pytest.approx(abs(table["psi_fr_xi"][n_fr]) * 8)  # cycles per octave
        assert info.spin == int(np.sign(table["psi_fr_xi"][n_fr]))
        assert info.extra["j2"] == table["psi2_j"][n2] and info.extra["n1_max"] >= 1
        assert info.extra["j_fr"] == table["psi_fr_j"][n_fr]
    assert {p.spin for p in infos} == {-1, 0, 1}
    assert infos[0].temporal_rate_hz(44100) == pytest.approx(infos[0].temporal_rate * 44100)


def test_plugin_spec_builds_the_transform() -> None:
    (spec,) = PLUGINS
    assert (spec.kind, spec.name, spec.config_cls) == ("transform", "jtfs", JTFSConfig)
    assert spec.factory is build_jtfs and spec.description
    m = spec.factory(JTFSConfig(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1, check_finite=False))
    assert isinstance(m, JTFS) and m.n_paths == 28 and m.check_finite is False
    with pytest.raises(TypeError, match="JTFSConfig"):
        JTFS.from_config({"shape": 4096})  # type: ignore[arg-type]


# ------------------------------------------------------------------ consistency
def test_forward_equals_stack_of_forward_path(small: JTFS) -> None:
    x = torch.randn(2, 4096, generator=torch.Generator().manual_seed(0))
    for crop in (True, False):
        allp = small(x, crop_time=crop)
        T = small.T_out if crop else small.T_out_padded
        assert allp.shape == (2, small.n_paths, small.F_out, T)
        for i in range(small.n_paths):
            torch.testing.assert_close(allp[:, i], small.forward_path(x, i, crop_time=crop), rtol=1e-5, atol=1e-9)
    full = small.forward_full(x)
    torch.testing.assert_close(full[:, small.n_first:], small(x), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(full[:, : small.n_first], small.forward_first_order(x), rtol=1e-6, atol=1e-9)


def test_cropping_selects_the_unpadded_frames(small: JTFS) -> None:
    x = torch.randn(1, 4096, generator=torch.Generator().manual_seed(1))
    i0, i1 = small.crop
    assert i1 - i0 == small.T_out
    torch.testing.assert_close(small.forward_path(x, 3), small.forward_path(x, 3, crop_time=False)[..., i0:i1])


def test_batch_shapes_and_batch_independence(small: JTFS) -> None:
    x = torch.randn(2, 3, 4096, generator=torch.Generator().manual_seed(2))
    out = small.forward_path(x, 7)
    assert out.shape == (2, 3, small.F_out, small.T_out)
    one = small.forward_path(x[1, 2], 7)
    assert one.shape == (small.F_out, small.T_out)
    torch.testing.assert_close(out[1, 2], one, rtol=1e-5, atol=1e-9)
    assert small(x[0]).shape == (3, small.n_paths, small.F_out, small.T_out)
    assert small.forward_full(x).shape == (2, 3, small.n_first + small.n_paths, small.F_out, small.T_out)


def test_float64_after_double(small: JTFS) -> None:
    m = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1).double()
    assert m.dtype == torch.float64
    assert all(b.dtype in (torch.float64, torch.int64) for b in m.buffers())
    x = torch.randn(2, 4096, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = m.forward_path(x, 11)
    assert out.dtype == torch.float64
    assert rel_l2(small.forward_path(x.float(), 11), out) < 1e-5
    m.float()
    assert m.forward_path(x.float(), 11).dtype == torch.float32


def test_path_plans_follow_the_buffers() -> None:
    # forward_path caches each path's buffer views; moving or converting the module
    # must drop them (else a float32 view would meet float64 input), and a copy
    # starts without them
    import copy
    import pickle

    m = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
    x = torch.randn(2, 4096, generator=torch.Generator().manual_seed(4))
    first = m.forward_path(x, 11)
    assert torch.equal(m.forward_path(x, 11), first) and (11, True) in m._plans
    assert m.forward_path(x, 11, crop_time=False).shape[-1] == m.T_out_padded  # its own plan
    m.double()
    assert len(m._plans) == 0
    assert rel_l2(m.forward_path(x.double(), 11), first) < 1e-5
    assert all(t.dtype != torch.float32 for t in m._plans[(11, True)].geo.tensors)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert len(clone._plans) == 0
        assert torch.equal(clone.forward_path(x.double(), 11), m.forward_path(x.double(), 11))


def test_buffers_are_derived_state(small: JTFS) -> None:
    names = [n for n, _ in small.named_buffers()]
    assert len(names) > 10
    assert small.state_dict() == {}  # nothing bulky in checkpoints: rebuilt from the config
    small.load_state_dict({})
    assert {b.device for b in small.buffers()} == {torch.device("cpu")}
    wrapped = torch.nn.Sequential(small).to(torch.device("cpu"))
    assert wrapped[0] is small


# ------------------------------------------------------------------ autograd
def test_gradcheck_float64_tiny(tiny64: JTFS) -> None:
    x = torch.randn(1, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    for i in (0, tiny64.n_paths - 1):
        assert torch.autograd.gradcheck(lambda v: tiny64.forward_path(v, i, crop_time=False), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda v: tiny64.forward_full(v), (x,), fast_mode=True)


def test_gradcheck_float64_small_path() -> None:
    m = JTFS(shape=256, J=4, Q1=4, Q2=2, J_fr=1, Q_fr=1).double()
    x = torch.randn(2, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(5), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: m.forward_path(v, m.n_paths // 2), (x,), fast_mode=True)


@pytest.mark.parametrize("kind", ["zeros", "silence"])
def test_no_nan_gradients_with_zero_regions(small: JTFS, kind: str) -> None:
    x = torch.zeros(2, 4096)
    if kind == "silence":  # a burst in silence: exact zeros appear in many rows
        x[:, 1000:1200] = torch.randn(2, 200, generator=torch.Generator().manual_seed(6))
    x.requires_grad_(True)
    out = small.forward_full(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    if kind == "zeros":
        assert float(out.detach().max()) < 1e-9  # only the 1e-12 modulus floor remains
        x.grad = None
        small.forward_path(x, 0).pow(2).sum().backward()
        assert torch.isfinite(x.grad).all()


def test_complex_and_planar_modulus_agree_and_are_safe() -> None:
    g = torch.Generator().manual_seed(7)
    z = torch.complex(torch.randn(5, 6, dtype=torch.float64, generator=g), torch.randn(5, 6, dtype=torch.float64, generator=g))
    z[0, 0] = 0
    m1 = core.complex_modulus(z)
    planes = torch.stack((z.real, z.imag))
    m2 = core.planar_modulus(planes, 0)
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(m1, z.abs() + 1e-12)
    assert float(m1[0, 0]) == 1e-12
    zz = z.clone().requires_grad_(True)
    core.complex_modulus(zz).sum().backward()
    assert torch.isfinite(torch.view_as_real(zz.grad)).all() and zz.grad[0, 0] == 0
    nz = z.clone()
    nz[0, 0] = 1.0
    assert torch.autograd.gradcheck(core.complex_modulus, (nz.requires_grad_(True),))
    pp = torch.stack((nz.real, nz.imag)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: core.planar_modulus(p, 0), (pp,))
    exact_zero = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    core.planar_modulus(exact_zero, 0).sum().backward()
    assert torch.equal(exact_zero.grad, torch.zeros(2, 3, dtype=torch.float64))
    # a modulus of exactly 0 (possible only in float32 underflow) gets a zero gradient
    w = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    out = core.ComplexModulus.apply(w)
    assert torch.equal(out, torch.full((3,), 1e-12))
    with pytest.raises(TypeError, match="complex"):
        core.complex_modulus(torch.ones(3))


def test_fused_frequency_scattering_matches_unfused_and_gradchecks() -> None:
    g = torch.Generator().manual_seed(8)
    B, n, R, T2, Tc = 2, 3, 5, 700, 4  # T2 not a multiple of the chunk
    y2 = torch.randn(B, 2 * n, T2, dtype=torch.float64, generator=g)
    Mc = torch.complex(torch.randn(R, n, dtype=torch.float64, generator=g), torch.randn(R, n, dtype=torch.float64, generator=g))
    M = torch.zeros(R, 2, n, 2, dtype=torch.float64)
    M[:, 0, :, 0], M[:, 0, :, 1], M[:, 1, :, 0], M[:, 1, :, 1] = Mc.real, -Mc.imag, Mc.imag, Mc.real
    M = M.reshape(2 * R, 2 * n)
    A = torch.randn(T2, Tc, dtype=torch.float64, generator=g)
    y2c = torch.complex(y2[:, 0::2], y2[:, 1::2])
    expected = (torch.matmul(Mc, y2c).abs() + 1e-12) @ A
    torch.testing.assert_close(core.freq_scatter_modulus_average(y2c, M, A), expected)
    y2s = y2c[:, :, :150].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: core.freq_scatter_modulus_average(v, M, A[:150]), (y2s,))
    # twice differentiable (the theta-IS warmup takes Hessian-vector products)
    y2t = y2c[:1, :, :24].clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda v: core.freq_scatter_modulus_average(v, M, A[:24]), (y2t,))


@pytest.mark.parametrize("keep_max", [0, None], ids=["recompute", "keep"])
def test_frequency_scattering_backward_keeps_or_recomputes_the_product(monkeypatch: pytest.MonkeyPatch,
                                                                       keep_max: int | None) -> None:
    """The backward pass either reuses the kept ``M y2`` (small enough) or recomputes
    it; both give the autograd gradient of the plain composition, also when the graph
    is run twice (retain_graph: the kept product must not be modified)."""
    if keep_max is not None:
        monkeypatch.setattr(core, "FREQ_KEEP_MAX", keep_max)
    g = torch.Generator().manual_seed(9)
    B, n, R, T2, Tc = 2, 3, 5, 3000, 4  # several time chunks, the last one partial
    monkeypatch.setattr(core, "FREQ_CHUNK_FLOATS", 2 * B * R * 512)
    Mc = torch.complex(torch.randn(R, n, generator=g), torch.randn(R, n, generator=g))
    M = torch.zeros(R, 2, n, 2)
    M[:, 0, :, 0], M[:, 0, :, 1], M[:, 1, :, 0], M[:, 1, :, 1] = Mc.real, -Mc.imag, Mc.imag, Mc.real
    M = M.reshape(2 * R, 2 * n)
    A = torch.rand(T2, Tc, generator=g)
    y2 = torch.randn(B, n, T2, dtype=torch.complex64, generator=g)
    w = torch.randn(B, R, Tc, generator=g)
    ya = y2.clone().requires_grad_(True)
    (want,) = torch.autograd.grad((core._freq_scatter_plain(ya, M, A) * w).sum(), ya)
    yb = y2.clone().requires_grad_(True)
    loss = (core.freq_scatter_modulus_average(yb, M, A) * w).sum()
    loss.backward(retain_graph=True)
    first = yb.grad.clone()
    yb.grad = None
    loss.backward()
    torch.testing.assert_close(first, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(yb.grad, first, rtol=0, atol=0)


def test_second_order_rows_folding_matches_explicit_fold() -> None:
    """The fold branch (window wider than the output length) equals an explicit
    Fourier-domain decimation."""
    g = torch.Generator().manual_seed(9)
    L, T2, W = 64, 16, 24
    u = torch.randn(2, 3, L, dtype=torch.float64, generator=g)
    uh = torch.fft.rfft(u)
    start = 50
    bins = (start + torch.arange(W)) % L
    neg = bins > L // 2
    hidx = torch.where(neg, L - bins, bins)
    h = torch.rand(W, dtype=torch.float64, generator=g)
    coef = torch.stack((h, torch.where(neg, -h, h)), -1) / (L // T2)
    # gather runs (src, dst, n, descending): window bins 50..63 are the conjugates of
    # one-sided bins 14..1 (read in reverse), bins 0..9 are read as they are
    assert hidx[:14].tolist() == list(range(14, 0, -1)) and hidx[14:].tolist() == list(range(10))
    segments = [((1, 0, 14, True), (0, 14, 10, False))]
    rows = core.second_order_rows([uh], [coef], segments, T2, torch.arange(W) % T2)
    # explicit: multiply the full spectrum by the windowed filter, sub() by L / T2, ifft
    hf = torch.zeros(L, dtype=torch.float64)
    hf[bins] = h
    spec = (torch.fft.fft(u) * hf).reshape(2, 3, L // T2, T2).mean(-2)
    y = torch.fft.ifft(spec)
    ramp = torch.exp(2j * math.pi * start * torch.arange(T2, dtype=torch.float64) / T2)
    got = rows * ramp
    torch.testing.assert_close(got, y)


# ------------------------------------------------------------------ input validation
def test_dtype_errors(small: JTFS) -> None:
    with pytest.raises(TypeError, match=r"\.double\(\)"):
        small.forward_path(torch.randn(1, 4096, dtype=torch.float64), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        small.forward_path(torch.ones(1, 4096, dtype=torch.int64), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        small(torch.ones(1, 4096, dtype=torch.complex64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        small(np.zeros((1, 4096), dtype=np.float32))  # type: ignore[arg-type]
    m64 = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1).double()
    with pytest.raises(TypeError, match=r"\.float\(\)"):
        m64.forward_path(torch.randn(1, 4096), 0)


def test_shape_errors(small: JTFS) -> None:
    with pytest.raises(ValueError, match=r"\(\*batch, 4096\)"):
        small.forward_path(torch.randn(2, 4000), 0)
    with pytest.raises(ValueError, match=r"\(\*batch, 4096\)"):
        small(torch.tensor(1.0))
    with pytest.raises(ValueError, match="empty batch"):
        small(torch.randn(0, 4096))


def test_path_index_errors(small: JTFS) -> None:
    x = torch.randn(1, 4096)
    with pytest.raises(ValueError, match=r"\[0, 28\)"):
        small.forward_path(x, 28)
    with pytest.raises(ValueError, match=r"\[0, 28\)"):
        small.forward_path(x, -1)
    with pytest.raises(TypeError, match="integer"):
        small.forward_path(x, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer"):
        small.forward_path(x, True)
    with pytest.raises(TypeError, match="integer"):
        small.forward_path(x, "3")  # type: ignore[arg-type]
    ref = small.forward_path(x, 3)
    torch.testing.assert_close(small.forward_path(x, np.int64(3)), ref)
    torch.testing.assert_close(small.forward_path(x, torch.tensor(3)), ref)


def test_non_finite_input(small: JTFS) -> None:
    x = torch.randn(1, 4096)
    x[0, 10] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        small.forward_path(x, 0)
    x[0, 10] = float("inf")
    with pytest.raises(ValueError, match="check_finite=False"):
        small(x)
    unchecked = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1, check_finite=False)
    assert not torch.isfinite(unchecked.forward_path(x, 0)).all()


@pytest.mark.parametrize("chunk_floats", [1, 3 * 2 * 2 * 1024, None])
def test_fused_one_path_route_matches_the_separate_kernels(monkeypatch: pytest.MonkeyPatch,
                                                           chunk_floats: int | None) -> None:
    """forward_path fuses the scalogram with the second-order window gather
    (ScalogramSecondOrder); forward() keeps the scalogram spectra (ScalogramGroups then
    SecondOrderSpectrum).  Values, gradients and second derivatives agree in float64,
    with one filter per chunk, uneven chunks (3, 3, 2, ...) and unchunked groups."""
    if chunk_floats is not None:
        monkeypatch.setattr(core, "SCALOGRAM_CHUNK_FLOATS", chunk_floats)
    m = JTFS(shape=2048, J=5, Q1=8, Q2=2, J_fr=2, Q_fr=1).double()
    assert all(g.one_sided for g in m._groups[:-1])
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2048, generator=g, dtype=torch.float64)
    w = torch.randn(2, m.n_paths, m.F_out, m.T_out_padded, generator=g, dtype=torch.float64)
    for i in range(0, m.n_paths, max(1, m.n_paths // 6)):
        xb = x.clone().requires_grad_(True)
        out = m.forward_path(xb, i, crop_time=False)
        torch.testing.assert_close(out, m(x, crop_time=False)[:, i], rtol=1e-10, atol=1e-14)
        (grad,) = torch.autograd.grad((out * w[:, i]).sum(), xb, create_graph=True)
        xc = x.clone().requires_grad_(True)
        (grad_sep,) = torch.autograd.grad((m(xc, crop_time=False)[:, i] * w[:, i]).sum(), xc, create_graph=True)
        torch.testing.assert_close(grad, grad_sep, rtol=1e-9, atol=1e-14)
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        (hvp,) = torch.autograd.grad((grad * v).sum(), xb)
        (hvp_sep,) = torch.autograd.grad((grad_sep * v).sum(), xc)
        torch.testing.assert_close(hvp, hvp_sep, rtol=1e-8, atol=1e-12)
