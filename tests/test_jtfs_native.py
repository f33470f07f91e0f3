"""The optional fused CPU kernels of the JTFS scalogram (scrapl.transforms.jtfs.native):
each kernel against the torch operations it replaces, the whole transform with and
without them, and the fallbacks (disabled, no compiler)."""

from __future__ import annotations

import shutil

import pytest
import torch

from scrapl.transforms.jtfs import JTFS, core, native

HAS_CC = bool(shutil.which("cc") or shutil.which("gcc"))
needs_kernels = pytest.mark.skipif(not HAS_CC, reason="no C compiler: the kernels cannot be built")


@pytest.fixture(scope="module")
def kernels() -> native.Kernels:
    if not HAS_CC:
        pytest.skip("no C compiler")
    k = native.get()
    assert k is not None, native.status()
    return k


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request: pytest.FixtureRequest):
    n = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(n)


def _windows(dtype: torch.dtype, B: int = 3, nf: int = 4, W: int = 37, Lh: int = 65, E: int = 300):
    g = torch.Generator().manual_seed(0)
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    ext = torch.randn(B, E, generator=g, dtype=cdtype)
    starts = (5, 40, 41, 200)[:nf]  # overlapping windows (41 starts inside 40's)
    idx = torch.tensor([[s + w for w in range(W)] for s in starts])
    h2 = torch.rand(nf, W, 1, generator=g, dtype=dtype)
    return ext, starts, idx, h2, Lh


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_status_reports_the_built_library(kernels: native.Kernels, dtype: torch.dtype) -> None:
    st = native.status()
    assert st["active"] is True and st["reason"] is None and st["path"] == str(kernels.path)
    assert kernels.accepts(torch.zeros(2, dtype=dtype)) and not kernels.accepts(torch.zeros(2, dtype=torch.int64))
    assert not kernels.accepts(torch.zeros(2), torch.zeros(2, dtype=torch.float64))


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fill_planes_matches_the_torch_fill(kernels: native.Kernels, threads: int, dtype: torch.dtype) -> None:
    ext, starts, idx, h2, Lh = _windows(dtype)
    B, nf, W = ext.shape[0], idx.shape[0], idx.shape[1]
    Z = torch.full((2, B, nf, Lh, 2), float("nan"), dtype=dtype)  # every entry must be written
    kernels.fill_planes(ext, idx, h2, Z)
    ref = core._fill_window(core._empty_planes(ext, nf, Lh, W, core._Scratch(ext.real)), ext, starts, idx, h2)
    torch.testing.assert_close(torch.view_as_complex(Z), ref, rtol=0, atol=0)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("save", [False, True])
def test_modulus_matches_torch_on_strided_rows(kernels: native.Kernels, threads: int, dtype: torch.dtype,
                                               save: bool) -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, 5, 2, 9000, generator=g, dtype=dtype)[..., :8193]  # rows with a uniform stride
    y[0, 0, :, :7] = 0.0  # exact zeros: the 1e-12 floor
    out = torch.empty(3, 5, 9000, dtype=dtype)[..., :8193]
    re, im = y[:, :, 0].clone(), y[:, :, 1].clone()
    ref = core._modulus_torch(re, im, torch.empty(3, 5, 8193, dtype=dtype))
    kernels.modulus(y[:, :, 0], y[:, :, 1], out, save)
    torch.testing.assert_close(out, ref, rtol=2 * torch.finfo(dtype).eps, atol=0)
    assert float(out[0, 0, 0]) == 1e-12 if dtype == torch.float64 else float(out[0, 0, 0]) > 0
    if save:
        torch.testing.assert_close(y[:, :, 0], re / ref, rtol=4 * torch.finfo(dtype).eps, atol=0)
        torch.testing.assert_close(y[:, :, 1], im / ref, rtol=4 * torch.finfo(dtype).eps, atol=0)
    else:
        assert torch.equal(y[:, :, 0], re)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_modulus_writes_the_phasor_out_of_place(kernels: native.Kernels, threads: int, dtype: torch.dtype) -> None:
    """The paired forward keeps the phasor of the input's rows only: written into
    separate buffers, the planes left as they were."""
    g = torch.Generator().manual_seed(11)
    y = torch.randn(2, 3, 4, 5000, generator=g, dtype=dtype)
    before = y.clone()
    out = torch.empty(3, 4, 5000, dtype=dtype)
    ph = torch.full((2, 3, 4, 5000), float("nan"), dtype=dtype)
    kernels.modulus(y[0], y[1], out, True, (ph[0], ph[1]))
    assert torch.equal(y, before)
    ref = core._modulus_torch(y[0].clone(), y[1].clone(), torch.empty_like(out))
    torch.testing.assert_close(out, ref, rtol=2 * torch.finfo(dtype).eps, atol=0)
    torch.testing.assert_close(ph[0], y[0] / ref, rtol=4 * torch.finfo(dtype).eps, atol=0)
    torch.testing.assert_close(ph[1], y[1] / ref, rtol=4 * torch.finfo(dtype).eps, atol=0)
    with native.disabled():  # the torch fallback of the same call
        out2, ph2 = torch.empty_like(out), torch.empty_like(ph)
        core._modulus_into(y[0], y[1], out2, True, (ph2[0], ph2[1]))
    torch.testing.assert_close(ph2, ph, rtol=4 * torch.finfo(dtype).eps, atol=0)
    assert torch.equal(y, before)


def _freq_case(dtype: torch.dtype, B: int, n: int, R: int, T2: int, Tc: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    y2 = torch.randn(B, n, T2, generator=g, dtype=cdtype)
    Mc = torch.randn(R, n, generator=g, dtype=cdtype)
    M = torch.zeros(R, 2, n, 2, dtype=dtype)
    M[:, 0, :, 0], M[:, 0, :, 1], M[:, 1, :, 0], M[:, 1, :, 1] = Mc.real, -Mc.imag, Mc.imag, Mc.real
    A_full = torch.rand(T2, Tc + 3, generator=g, dtype=dtype)
    A = A_full[:, 1: 1 + Tc]  # a crop of the columns, as the module's time crop: strided rows of A.t()
    return y2, M.reshape(2 * R, 2 * n), A


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,n,R,T2,Tc", [(2, 5, 7, 200, 3), (1, 1, 4, 64, 9), (3, 13, 9, 1500, 16),
                                         (1, 4, 2, 5000, 64)])
def test_fused_frequential_kernels_match_the_plain_composition(kernels: native.Kernels, threads: int,
                                                               dtype: torch.dtype, B: int, n: int, R: int,
                                                               T2: int, Tc: int) -> None:
    """|M y2| A and its adjoint in one pass (register tiles of 4 rows, 64-sample
    blocks, partial tiles and blocks) against the plain autograd composition in
    float64."""
    y2, M, A = _freq_case(dtype, B, n, R, T2, Tc)
    ops = core.freq_operands(M, A)
    out = torch.empty(B, R, Tc, dtype=dtype)
    kernels.freq_forward(y2, ops.Mr, ops.Mi, ops.AT, out, core.freq_chunks(T2))
    y64 = y2.to(torch.complex128).requires_grad_(True)
    ref = core._freq_scatter_plain(y64, M.double(), A.double())
    tol = 2e-6 if dtype == torch.float32 else 1e-12
    assert float((out.double() - ref.detach()).norm() / ref.detach().norm()) < tol
    g = torch.randn(B, R, Tc, generator=torch.Generator().manual_seed(3), dtype=dtype)
    (want,) = torch.autograd.grad(ref, y64, g.double())
    got = torch.full_like(y2, float("nan"))
    kernels.freq_backward(y2, ops.Mr, ops.Mi, ops.AT, g, got, core.freq_chunks(T2))
    assert float((got.to(torch.complex128) - want).norm() / want.norm()) < 10 * tol


@needs_kernels
def test_fused_frequential_kernels_read_a_strided_averaging_matrix(kernels: native.Kernels) -> None:
    """The crop of the time-averaging columns is a block of rows of A.t(): a row stride
    larger than the row, read in place."""
    y2, M, A = _freq_case(torch.float32, 2, 3, 5, 300, 4, seed=5)
    AT_full = torch.rand(9, 300, generator=torch.Generator().manual_seed(6))
    ops = core.freq_operands(M, A)
    strided = core.FreqOperands(ops.Mr, ops.Mi, AT_full[2:6])
    dense = core.FreqOperands(ops.Mr, ops.Mi, AT_full[2:6].contiguous())
    outs = []
    for o in (strided, dense):
        out = torch.empty(2, 5, 4)
        kernels.freq_forward(y2, o.Mr, o.Mi, o.AT, out, 1)
        outs.append(out)
    assert torch.equal(outs[0], outs[1])


@needs_kernels
def test_fused_frequential_kernels_do_not_depend_on_the_thread_count(kernels: native.Kernels) -> None:
    y2, M, A = _freq_case(torch.float32, 3, 6, 11, 4100, 5, seed=2)
    ops = core.freq_operands(M, A)
    g = torch.randn(3, 11, 5, generator=torch.Generator().manual_seed(7))
    res = []
    n = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out, gy = torch.empty(3, 11, 5), torch.empty_like(y2)
            kernels.freq_forward(y2, ops.Mr, ops.Mi, ops.AT, out, core.freq_chunks(4100))
            kernels.freq_backward(y2, ops.Mr, ops.Mi, ops.AT, g, gy, core.freq_chunks(4100))
            res.append((out, gy))
    finally:
        torch.set_num_threads(n)
    for out, gy in res[1:]:
        assert torch.equal(out, res[0][0]) and torch.equal(gy, res[0][1])


@needs_kernels
def test_fused_frequential_kernel_argument_checks(kernels: native.Kernels) -> None:
    y2, M, A = _freq_case(torch.float32, 2, 3, 5, 100, 4)
    o = core.freq_operands(M, A)
    out = torch.empty(2, 5, 4)
    with pytest.raises(ValueError, match="one precision"):
        kernels.freq_forward(y2, o.Mr.double(), o.Mi, o.AT, out, 1)
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        kernels.freq_forward(y2, o.Mr[:, :2].contiguous(), o.Mi, o.AT, out, 1)
    with pytest.raises(ValueError, match="AT must be"):
        kernels.freq_forward(y2, o.Mr, o.Mi, o.AT[:, :50], out, 1)
    with pytest.raises(ValueError, match="out must be"):
        kernels.freq_forward(y2, o.Mr, o.Mi, o.AT, torch.empty(2, 5, 3), 1)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.freq_forward(y2[:, :, ::2], o.Mr, o.Mi, o.AT[:, :50], torch.empty(2, 5, 4), 1)
    with pytest.raises(ValueError, match="gy2 must be"):
        kernels.freq_backward(y2, o.Mr, o.Mi, o.AT, torch.empty(2, 5, 4), torch.empty(2, 3, 99, dtype=y2.dtype), 1)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_complex_modulus_and_its_backward_scale_match_torch(kernels: native.Kernels, threads: int,
                                                            dtype: torch.dtype) -> None:
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, 4, 5000, generator=g, dtype=cdtype)[..., :4097]  # strided rows
    z[1, 2, :5] = 0
    gr = torch.randn(3, 4, 4097, generator=g, dtype=dtype)
    out = torch.empty(3, 4, 6000, dtype=dtype)[..., :4097]
    kernels.modulus_cplx(z, out)
    ref = torch.view_as_real(z).square().sum(-1).sqrt() + 1e-12
    torch.testing.assert_close(out, ref, rtol=2 * torch.finfo(dtype).eps, atol=0)
    zz = z.clone()
    separate = kernels.scale_cplx(z, gr, torch.empty(3, 4, 4097, dtype=cdtype))
    assert torch.equal(z, zz)  # out= leaves z alone
    kernels.scale_cplx(z, gr)
    torch.testing.assert_close(z, zz * (gr / ref), rtol=8 * torch.finfo(dtype).eps, atol=1e-300)
    assert torch.equal(separate, z)
    assert torch.equal(z[1, 2, :5], torch.zeros(5, dtype=cdtype))  # the floor: no NaN at exact zeros
    # the core wrappers give the same with and without the kernels
    z2, z3 = zz.clone(), zz.clone()
    core._scale_by_modulus(z2, gr, torch.empty(3, 4, 4097, dtype=dtype))
    with native.disabled():
        core._scale_by_modulus(z3, gr, torch.empty(3, 4, 4097, dtype=dtype))
        z4 = core._scale_by_modulus(zz, gr, torch.empty(3, 4, 4097, dtype=dtype), out=torch.empty_like(zz))
        u3 = core._modulus_cplx_into(zz, torch.empty(3, 4, 4097, dtype=dtype))
    torch.testing.assert_close(z4, z3, rtol=0, atol=0)
    torch.testing.assert_close(z2, z3, rtol=8 * torch.finfo(dtype).eps, atol=1e-300)
    torch.testing.assert_close(core._modulus_cplx_into(zz, torch.empty(3, 4, 4097, dtype=dtype)), u3,
                               rtol=2 * torch.finfo(dtype).eps, atol=0)
    with pytest.raises(ValueError, match="complex"):
        kernels.modulus_cplx(gr, out)


@needs_kernels
def test_modulus_rejects_rows_without_a_uniform_stride(kernels: native.Kernels) -> None:
    a = torch.randn(4, 6, 10)[:, :3]  # (4, 3, 10): rows 30 apart across the first dim, 10 within
    with pytest.raises(ValueError, match="uniform stride"):
        kernels.modulus(a, a, torch.empty(4, 3, 10), False)
    # core falls back to torch for such views instead of failing
    out = core._modulus_into(a, a, torch.empty(4, 3, 10))
    torch.testing.assert_close(out, core._modulus_torch(a, a, torch.empty(4, 3, 10)))


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_combine_add_is_the_adjoint_of_fill_planes(kernels: native.Kernels, threads: int,
                                                   dtype: torch.dtype) -> None:
    """<fill(ext), G> = <ext, combine(G)> on the real views (overlapping windows)."""
    ext, starts, idx, h2, Lh = _windows(dtype)
    B, nf = ext.shape[0], idx.shape[0]
    g = torch.Generator().manual_seed(2)
    cdtype = ext.dtype
    G = torch.randn(2, B, nf, Lh, generator=g, dtype=cdtype)
    Z = torch.empty(2, B, nf, Lh, 2, dtype=dtype)
    kernels.fill_planes(ext, idx, h2, Z)
    gext = torch.zeros_like(ext)
    kernels.combine_add(G, idx, h2, gext)
    lhs = (Z * torch.view_as_real(G)).sum()
    rhs = (torch.view_as_real(ext) * torch.view_as_real(gext)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)
    # and it accumulates
    before = gext.clone()
    kernels.combine_add(G, idx, h2, gext)
    torch.testing.assert_close(gext, 2 * before)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_planned_ffts_equal_torch_fft(kernels: native.Kernels, threads: int, dtype: torch.dtype) -> None:
    if not kernels.has_fft:
        pytest.skip("this torch build exports no MKL DFTI functions")
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    g = torch.Generator().manual_seed(6)
    for n, batch in ((64, (3,)), (4096, (2, 5)), (1000, (1,))):
        x = torch.randn(*batch, n, generator=g, dtype=dtype)
        x0 = x.clone()
        X = kernels.rfft(x, torch.empty(*batch, n // 2 + 1, dtype=cdtype))
        torch.testing.assert_close(X, torch.fft.rfft(x0), rtol=0, atol=0)  # same MKL, same plan
        assert torch.equal(x, x0)
        if n % 2 == 0:
            X0 = X.clone()
            y = kernels.irfft(X, n, torch.empty(*batch, n, dtype=dtype))
            torch.testing.assert_close(y, torch.fft.irfft(X0, n=n), rtol=0, atol=0)
        else:
            with pytest.raises(ValueError, match="even"):
                kernels.irfft(X, n, torch.empty(*batch, n, dtype=dtype))
        z = torch.randn(*batch, n, generator=g, dtype=cdtype)
        z0 = z.clone()
        torch.testing.assert_close(kernels.c2c(z, torch.empty_like(z), False, 1 / n), torch.fft.ifft(z0),
                                   rtol=0, atol=0)
        torch.testing.assert_close(kernels.c2c(z, torch.empty_like(z), True, 1 / n),
                                   torch.fft.fft(z0, norm="forward"), rtol=0, atol=0)
        assert torch.equal(z, z0)
    with pytest.raises(ValueError, match="expected"):
        kernels.rfft(torch.randn(4, 64, dtype=dtype), torch.empty(4, 32, dtype=cdtype))
    with pytest.raises(ValueError, match="contiguous"):
        kernels.rfft(torch.randn(64, 4, dtype=dtype).t(), torch.empty(4, 33, dtype=cdtype))


@needs_kernels
def test_without_planned_ffts_the_torch_ffts_run(kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    m = JTFS(shape=2048, J=5, Q1=8, Q2=2, J_fr=2, Q_fr=1)
    x = torch.randn(2, 2048)
    i = m.n_paths // 3
    xa = x.clone().requires_grad_(True)
    out = m.forward_path(xa, i)
    (ga,) = torch.autograd.grad(out.square().sum(), xa)
    monkeypatch.setattr(kernels, "has_fft", False)
    for pool_outputs in (True, False):
        monkeypatch.setattr(core, "POOL_FFT_OUTPUTS", pool_outputs)
        xb = x.clone().requires_grad_(True)
        out_b = m.forward_path(xb, i)
        (gb,) = torch.autograd.grad(out_b.square().sum(), xb)
        torch.testing.assert_close(out_b, out, rtol=0, atol=0)
        torch.testing.assert_close(gb, ga, rtol=0, atol=0)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_window_gather_and_scatter_match_torch(kernels: native.Kernels, threads: int, dtype: torch.dtype) -> None:
    """The second-order window gather (descending runs read backwards, overlapping
    runs) and its accumulated adjoint with the rfft end-bin weights."""
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    g = torch.Generator().manual_seed(7)
    B, nf, Lh, n_out, width, row0 = 2, 3, 50, 7, 40, 2
    segs = ((1, 0, 6, True), (0, 6, 20, False), (10, 26, 5, False))  # bins 10..14 read twice
    st = native.segments(segs)
    coef = torch.randn(31, 2, generator=g, dtype=dtype)
    spec = torch.randn(B, nf, Lh, generator=g, dtype=cdtype)
    out = torch.zeros(B, n_out, width, dtype=cdtype)
    kernels.gather_segments(spec, out, row0, coef, st)
    ref = torch.zeros(B, n_out, width, dtype=cdtype)
    core._gather_window(torch.view_as_real(ref)[:, row0: row0 + nf], spec, coef, segs)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grad = torch.randn(B, n_out, width, generator=g, dtype=cdtype)
    G = torch.randn(B, nf, Lh, generator=g, dtype=cdtype)
    G_ref = G.clone()
    kernels.scatter_segments(grad, row0, coef, st, G, True, True)
    core._scatter_window(torch.view_as_real(G_ref), torch.view_as_real(grad)[:, row0: row0 + nf], coef, segs)
    G_ref[:, :, 0] *= 2
    G_ref[:, :, -1] *= 2
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(G, G_ref, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="beyond"):
        kernels.gather_segments(spec, out, row0, coef[:20], st)
    with pytest.raises(ValueError, match="native.segments"):
        kernels.gather_segments(spec, out, row0, coef, st.clone())
    with pytest.raises(ValueError, match="rows"):
        kernels.gather_segments(spec, out, n_out - 1, coef, st)
    with pytest.raises(ValueError, match="negative"):
        native.segments(((-1, 0, 3, False),))


@needs_kernels
def test_kernel_argument_checks(kernels: native.Kernels) -> None:
    ext, _, idx, h2, Lh = _windows(torch.float32)
    Z = torch.empty(2, ext.shape[0], idx.shape[0], Lh, 2)
    with pytest.raises(ValueError, match="one precision"):
        kernels.fill_planes(ext, idx, h2.double(), Z)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.fill_planes(ext[:, ::2], idx, h2, Z)
    with pytest.raises(ValueError, match="int64"):
        kernels.fill_planes(ext, idx.int(), h2, Z)
    with pytest.raises(ValueError, match="W <= Lh - 1"):
        kernels.fill_planes(ext, idx, h2, torch.empty(2, ext.shape[0], idx.shape[0], 30, 2))


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transform_and_gradients_agree_with_and_without_kernels(kernels: native.Kernels, dtype: torch.dtype) -> None:
    m = JTFS(shape=2048, J=5, Q1=8, Q2=2, J_fr=2, Q_fr=1).to(dtype)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2048, generator=g, dtype=dtype)
    tol = dict(rtol=2e-6, atol=1e-9) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-15)
    for i in (0, m.n_paths // 2, m.n_paths - 1):
        outs, grads = [], []
        for use in (True, False):
            xb = x.clone().requires_grad_(True)
            if use:
                out = m.forward_path(xb, i)
            else:
                with native.disabled():
                    assert native.get() is None
                    out = m.forward_path(xb, i)
            (gr,) = torch.autograd.grad(out.square().sum(), xb)
            outs.append(out.detach())
            grads.append(gr)
        torch.testing.assert_close(outs[0], outs[1], **tol)
        torch.testing.assert_close(grads[0], grads[1], **tol)
    with native.disabled():
        full_torch = m(x)
    torch.testing.assert_close(m(x), full_torch, **tol)


def test_environment_variable_disables_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAPL_NATIVE", "0")
    assert native.get() is None
    st = native.status()
    assert st["active"] is False and "disabled" in str(st["reason"])
    m = JTFS(shape=1024, J=4, Q1=4, Q2=1, J_fr=1, Q_fr=1)
    assert torch.isfinite(m.forward_path(torch.randn(1, 1024), 0)).all()


def test_a_failed_build_falls_back_to_torch_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(native, "_state", {})  # forget the loaded kernels for this test only
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(tmp_path))
    assert native.get() is None
    st = native.status()
    assert st["active"] is False and "no-such-compiler" in str(st["reason"])
    m = JTFS(shape=1024, J=4, Q1=4, Q2=1, J_fr=1, Q_fr=1)
    x = torch.randn(1, 1024)
    out = m.forward_path(x, 1)
    monkeypatch.setattr(native, "_state", {"disabled": True})
    torch.testing.assert_close(out, m.forward_path(x, 1))


@needs_kernels
def test_build_is_cached_and_atomic(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(tmp_path))
    first = native._build()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [first.path.name]  # no temporary file left behind
    mtime = first.path.stat().st_mtime_ns
    second = native._build()
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime  # not rebuilt


@pytest.mark.parametrize("n", [16, 15])
def test_real_spectrum_is_rfft_with_its_adjoint(n: int) -> None:
    """core.RealSpectrum (the input spectrum, planned FFT when available): values, and
    first and second derivatives by finite differences, odd and even lengths."""
    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(core.RealSpectrum.apply(x), torch.fft.rfft(x), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(core.RealSpectrum.apply, (x,))
    assert torch.autograd.gradgradcheck(core.RealSpectrum.apply, (x,))


@needs_kernels
def test_a_failing_fft_plan_falls_back_to_torch(kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    if not kernels.has_fft:
        pytest.skip("this torch build exports no MKL DFTI functions")
    m = JTFS(shape=2048, J=5, Q1=8, Q2=2, J_fr=2, Q_fr=1)
    x = torch.randn(2, 2048)
    want = m.forward_path(x, 7)
    monkeypatch.setattr(kernels, "has_fft", True)  # restored after the test
    monkeypatch.setattr(kernels, "fft_reason", None)
    monkeypatch.setattr(kernels, "_plans", {})
    monkeypatch.setattr(kernels, "_plan", lambda *args: None)  # every new plan fails
    torch.testing.assert_close(m.forward_path(x, 7), want, rtol=0, atol=0)
    assert kernels.has_fft is False and "failed" in kernels.fft_reason
    st = native.status()
    assert st["active"] is True and st["fft"] is False and "failed" in st["fft_reason"]


@needs_kernels
def test_fft_plan_cache_evicts_and_rebuilds(kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    if not kernels.has_fft:
        pytest.skip("this torch build exports no MKL DFTI functions")
    kernels.release_plans()
    monkeypatch.setattr(native, "MAX_FFT_PLANS", 2)
    g = torch.Generator().manual_seed(8)
    for _ in range(2):
        for n, batch in ((64, 3), (128, 2), (256, 1), (64, 5)):
            x = torch.randn(batch, n, generator=g)
            X = kernels.rfft(x, torch.empty(batch, n // 2 + 1, dtype=torch.complex64))
            torch.testing.assert_close(X, torch.fft.rfft(x), rtol=0, atol=0)
            assert len(kernels._plans) <= 2
    kernels.release_plans()
    assert not kernels._plans


@needs_kernels
def test_a_compiler_without_openmp_gets_serial_kernels(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    fake = tmp_path / "cc-without-openmp"
    fake.write_text(f'#!/bin/sh\ncase "$*" in *-fopenmp*) echo "unsupported option -fopenmp" >&2; exit 1;; esac\n'
                    f'exec {gcc} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(native, "_state", {})  # forget the loaded kernels for this test only
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(tmp_path / "cache"))
    k = native.get()
    assert k is not None and "-fopenmp" not in k.flags
    st = native.status()
    assert st["active"] is True and st["openmp"] is False
    m = JTFS(shape=2048, J=5, Q1=8, Q2=2, J_fr=2, Q_fr=1)
    x = torch.randn(2, 2048).requires_grad_(True)
    out = m.forward_path(x, 9)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    monkeypatch.setattr(native, "_state", {"disabled": True})
    xr = x.detach().clone().requires_grad_(True)
    ref = m.forward_path(xr, 9)
    (grad_ref,) = torch.autograd.grad(ref.square().sum(), xr)
    torch.testing.assert_close(out, ref, rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(grad, grad_ref, rtol=2e-6, atol=1e-9)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk_floats", [1 << 20, 1 << 13], ids=["one-chunk", "many-chunks"])
def test_group_kernels_equal_the_python_chunk_loop(kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch,
                                                   dtype: torch.dtype, chunk_floats: int) -> None:
    """A first-order group's chunks in one native call (Kernels.run_group_forward /
    run_group_backward) give the results of the Python loop over the same kernels, also
    with several chunks of unequal width and the phasors of the first rows only."""
    monkeypatch.setattr(core, "SCALOGRAM_CHUNK_FLOATS", chunk_floats)
    m = JTFS(shape=2048, J=6, Q1=8, Q2=2, J_fr=2, Q_fr=1).to(dtype)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 2048, generator=g, dtype=dtype)
    t = torch.randn(3, 2048, generator=g, dtype=dtype)
    res = {}
    for use in (True, False):
        monkeypatch.setattr(core, "_native_group", (lambda k, *ts: k is not None) if use else (lambda k, *ts: False))
        m._plans.clear()
        xa = x.clone().requires_grad_(True)
        s, s_t = m.forward_path_pair(xa, t, 30, crop_time=False)
        (s * torch.linspace(-1, 1, s.shape[-1], dtype=dtype)).sum().backward()
        res[use] = (s.detach(), s_t, xa.grad)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for a, b in zip(res[True], res[False]):
        assert float((a - b).norm() / b.norm()) < tol


@needs_kernels
def test_group_kernel_argument_checks(kernels: native.Kernels) -> None:
    ext, _, idx, h2, _ = _windows(torch.float32, W=37, E=300)
    L = 128
    rows = ext.shape[0]
    coef = torch.ones(64, 2)
    segs = native.segments(((0, 0, 30, False),))
    spec = kernels.group_spec(idx, h2, coef, segs, L)
    call = kernels.group_call(spec, rows, rows, [0, 2, 4])
    work = tuple(torch.empty(n) for n in call.work)
    out = torch.zeros(rows, 4, 64, dtype=torch.complex64)
    phasor = torch.empty(call.phasor_size)
    kernels.run_group_forward(call, ext, out, 0, work, phasor)  # valid
    with pytest.raises(ValueError, match="chunk bounds"):
        kernels.group_call(spec, rows, rows, [0, 3, 2, 4])
    with pytest.raises(ValueError, match="n_ph"):
        kernels.group_call(spec, rows, rows + 1, [0, 4])
    with pytest.raises(ValueError, match="scratch buffer"):
        kernels.run_group_forward(call, ext, out, 0, (work[0], torch.empty(10), *work[2:]), phasor)
    with pytest.raises(ValueError, match="spectrum must be"):
        kernels.run_group_forward(call, ext[:, :200].contiguous(), out, 0, work, phasor)
    with pytest.raises(ValueError, match="phasor buffer"):
        kernels.run_group_forward(call, ext, out, 0, work, phasor[:100])
    with pytest.raises(ValueError, match="rows 1..5"):
        kernels.run_group_forward(call, ext, out, 1, work, phasor)
    with pytest.raises(ValueError, match="precision"):
        kernels.run_group_forward(call, ext.to(torch.complex128), out, 0, work, phasor)
    with pytest.raises(ValueError, match="W \\+ 1 <= L / 2"):
        kernels.group_spec(idx, h2, coef, segs, 64)
    with pytest.raises(ValueError, match="segments reach"):
        kernels.group_spec(idx, h2, coef[:20], segs, L)
    with pytest.raises(ValueError, match="native.segments"):
        kernels.group_spec(idx, h2, coef, torch.zeros(1, 4, dtype=torch.int64), L)


@needs_kernels
def test_native_forward_then_torch_backward(kernels: native.Kernels) -> None:
    """A graph built with the native group kernels still differentiates when they
    are switched off before its backward pass (chunk by chunk in Python)."""
    m = JTFS(shape=2048, J=6, Q1=8, Q2=2, J_fr=2, Q_fr=1).double()
    g = torch.Generator().manual_seed(13)
    x, t = torch.randn(2, 2048, generator=g, dtype=torch.float64), torch.randn(2, 2048, generator=g, dtype=torch.float64)
    grads = []
    for off in (False, True):
        xa = x.clone().requires_grad_(True)
        s, _ = m.forward_path_pair(xa, t, 33)
        if off:
            with native.disabled():
                s.square().sum().backward()
        else:
            s.square().sum().backward()
        grads.append(xa.grad)
    assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 1e-12


def test_averaging_band_covers_the_significant_frames_cyclically() -> None:
    T2, Tc = 256, 8
    AT = torch.full((Tc, T2), 1e-9)
    for blk in range(4):  # block b: frames b+6, b+7, b+8, b+9 (mod 8) significant
        for c in range(blk + 6, blk + 10):
            AT[c % Tc, 64 * blk: 64 * blk + 64] = 1.0
    band = core.averaging_band(AT, floor=1e-7)
    assert band.tolist() == [[6, 4], [7, 4], [0, 4], [1, 4]]
    assert core.averaging_band(AT.double(), floor=1e-7) is None  # float64: every entry counts
    assert core.averaging_band(torch.ones(Tc, T2)) is None  # nothing to leave out
    tail = torch.zeros(Tc, 100)  # a partial last block, all frames negligible there
    tail[3, :64] = 1.0
    b2 = core.averaging_band(tail, floor=1e-7)
    assert b2.tolist() == [[3, 1], [0, 0]]


@needs_kernels
def test_fused_frequential_kernels_with_a_band_skip_only_zeros(kernels: native.Kernels) -> None:
    """A band that leaves out only zero entries of AT gives the dense result (to
    float rounding); one that leaves out nonzero entries does not."""
    y2, M, A = _freq_case(torch.float32, 2, 5, 9, 500, 12, seed=8)
    ops = core.freq_operands(M, A)
    AT = ops.AT.clone()
    nb = -(-500 // 64)
    band = torch.tensor([[(3 * b) % 12, 5] for b in range(nb)], dtype=torch.int64)
    for b in range(nb):  # zero AT outside each block's band
        keep = {(int(band[b, 0]) + j) % 12 for j in range(5)}
        for c in range(12):
            if c not in keep:
                AT[c, 64 * b: 64 * b + 64] = 0
    g = torch.randn(2, 9, 12, generator=torch.Generator().manual_seed(9))
    res = []
    for bd in (None, band):
        out, gy = torch.empty(2, 9, 12), torch.empty_like(y2)
        kernels.freq_forward(y2, ops.Mr, ops.Mi, AT, out, 1, bd)
        kernels.freq_backward(y2, ops.Mr, ops.Mi, AT, g, gy, 1, bd)
        res.append((out, gy))
    torch.testing.assert_close(res[0][0], res[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-6, atol=1e-6)
    out, dense = torch.empty(2, 9, 12), torch.empty(2, 9, 12)
    kernels.freq_forward(y2, ops.Mr, ops.Mi, ops.AT, out, 1, band)  # the dense AT: entries left out
    kernels.freq_forward(y2, ops.Mr, ops.Mi, ops.AT, dense, 1, None)
    torch.testing.assert_close(out, res[0][0], rtol=1e-6, atol=1e-6)
    assert float((out - dense).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="band must be"):
        kernels.freq_forward(y2, ops.Mr, ops.Mi, AT, out, 1, band[:2])
    with pytest.raises(ValueError, match="band entries"):
        kernels.freq_forward(y2, ops.Mr, ops.Mi, AT, out, 1, band + 12)
