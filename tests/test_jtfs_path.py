"""The one-path JTFS as one autograd node (scrapl.transforms.jtfs.path): the adjoints
it applies by hand, the paired forward of a signal and its target against two
separate calls and the stage-by-stage composition, and its backward passes (twice,
with create_graph, under vmap, for the input's rows only)."""

from __future__ import annotations

import pytest
import torch

from scrapl import checks
from scrapl.transforms import ops
from scrapl.transforms.jtfs import JTFS, core, native, path
from scrapl.transforms.scale import normalise, row_peaks


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


@pytest.mark.parametrize("pads", [(5, 7), (0, 3), (4, 0), (0, 0)])
def test_reflect_pad_adjoint_is_the_autograd_gradient(pads: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, dtype=torch.float64, generator=g, requires_grad=True)
    y = ops.pad_reflect(x, *pads)
    w = torch.randn(y.shape, dtype=torch.float64, generator=g)
    (want,) = torch.autograd.grad(y, x, w)
    torch.testing.assert_close(path.reflect_pad_adjoint(w, *pads), want, rtol=0, atol=1e-15)


def test_reflect_pad_equals_torch_reflection_padding() -> None:
    x = torch.randn(3, 2, 20, generator=torch.Generator().manual_seed(5))
    for pads in ((5, 7), (0, 3), (4, 0), (19, 19)):
        want = torch.nn.functional.pad(x, pads, mode="reflect")
        assert torch.equal(ops.pad_reflect(x, *pads), want)
    with pytest.raises(ValueError, match="smaller than the signal"):
        ops.pad_reflect(x, 20, 0)


def test_reflect_fill_completes_the_padding_in_place() -> None:
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(6))
    for pl, pr in ((5, 7), (0, 3), (4, 0), (0, 0), (19, 19)):
        out = torch.full((3, pl + 20 + pr), float("nan"))
        out[:, pl: pl + 20] = x
        assert ops.reflect_fill_(out, pl, pr) is out
        assert torch.equal(out, ops.pad_reflect(x, pl, pr))
    with pytest.raises(ValueError, match="smaller than the signal"):
        ops.reflect_fill_(torch.zeros(3, 40), 20, 0)


@pytest.mark.parametrize("t_rows", [0, 3])
def test_scaled_padded_rows_equal_the_composition(jtfs64: JTFS, t_rows: int) -> None:
    """The pair's input buffer (scaled, padded, from the pool) holds the values of
    ``pad_reflect(normalise(cat(x, t)))`` exactly, whatever the rows' amplitudes."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 1024, dtype=torch.float64, generator=g) * torch.tensor([[1e-20], [3e5]], dtype=torch.float64)
    t = torch.randn(t_rows, 1024, dtype=torch.float64, generator=g) * 7
    geo = jtfs64._path_plan(5, False).geo
    pool = jtfs64.buffer_pool
    got, scale = path._scaled_padded(x, t, geo, pool)
    rows, want_scale = normalise(torch.cat((x, t)))
    assert torch.equal(scale, want_scale)
    assert torch.equal(got, ops.pad_reflect(rows, geo.pad_left, geo.pad_right))


@pytest.mark.parametrize("n", [50, checks.ABS_COPY_MAX_ELEMENTS // 4 + 1])  # both routes of peak_abs
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_peaks_are_the_max_abs_and_propagate_nan(dtype: torch.dtype, n: int) -> None:
    x = torch.randn(4, n, dtype=dtype, generator=torch.Generator().manual_seed(8))
    x[1, 7] = -30.0
    assert torch.equal(row_peaks(x), x.abs().amax(dim=-1))
    x[2, 3], x[3, 4] = float("nan"), -float("inf")
    p = row_peaks(x)
    assert torch.isnan(p[2]) and p[3] == float("inf")
    assert torch.isnan(checks.peak_abs(x)) and checks.peak_abs(x[3]) == float("inf")


@pytest.mark.parametrize("n_pad,extra", [(64, 0), (64, 9), (256, 100)])
def test_extended_spectrum_adjoint_is_the_autograd_gradient(n_pad: int, extra: int) -> None:
    g = torch.Generator().manual_seed(1)
    x_hat = torch.randn(2, n_pad // 2 + 1, dtype=torch.complex128, generator=g, requires_grad=True)
    ext = core.extended_spectrum(x_hat, n_pad, extra)
    w = torch.randn(ext.shape, dtype=torch.complex128, generator=g)
    (want,) = torch.autograd.grad(ext, x_hat, w)
    torch.testing.assert_close(core.extended_spectrum_adjoint(w, n_pad, extra), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_extended_spectrum_one_pass_equals_the_torch_composition(dtype: torch.dtype) -> None:
    """Without a graph the extension (and always its adjoint, with the rfft weights
    folded in) runs as one native pass: the same values as the torch composition."""
    g = torch.Generator().manual_seed(4)
    for n_pad, extra in ((64, 0), (64, 9), (256, 256)):
        x_hat = torch.randn(3, n_pad // 2 + 1, dtype=dtype, generator=g)
        want = core.extended_spectrum(x_hat.clone().requires_grad_(True), n_pad, extra).detach()  # torch route
        assert torch.equal(core.extended_spectrum(x_hat, n_pad, extra), want)
        gr = torch.randn(3, n_pad + extra, dtype=dtype, generator=g)
        w = core._rfft_weights(n_pad, n_pad // 2 + 1, gr)
        got = core.extended_spectrum_adjoint(gr, n_pad, extra, w)
        with native.disabled():
            ref = core.extended_spectrum_adjoint(gr, n_pad, extra, w)
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)


def test_rfft_adjoint_is_the_autograd_gradient() -> None:
    g = torch.Generator().manual_seed(2)
    for n in (64, 65):
        x = torch.randn(3, n, dtype=torch.float64, generator=g, requires_grad=True)
        X = torch.fft.rfft(x)
        w = torch.randn(X.shape, dtype=torch.complex128, generator=g)
        (want,) = torch.autograd.grad(X, x, w)
        torch.testing.assert_close(core.rfft_adjoint(w, n), want, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def jtfs64() -> JTFS:
    return JTFS(shape=1024, J=6, Q1=8, Q2=2, J_fr=2, Q_fr=1).double()


def _signals(B: int = 2, seed: int = 3, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1, 1024, generator=g, dtype=dtype), torch.randn(B, 1, 1024, generator=g, dtype=dtype)


@pytest.mark.parametrize("i", [0, 7, 20, 39])
@pytest.mark.parametrize("crop_time", [True, False])
def test_pair_equals_two_calls_and_the_stagewise_composition(jtfs64: JTFS, i: int, crop_time: bool) -> None:
    """Values and gradient of the paired call equal those of separate calls and of
    the stage-by-stage autograd Functions (float64: to rounding)."""
    x, t = _signals()
    xa = x.clone().requires_grad_(True)
    s, s_t = jtfs64.forward_path_pair(xa, t, i, crop_time=crop_time)
    assert not s_t.requires_grad and s_t.grad_fn is None
    w = torch.randn(s.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
    (s * w).sum().backward()
    xb = x.clone().requires_grad_(True)
    s1 = jtfs64.forward_path(xb, i, crop_time=crop_time)
    (s1 * w).sum().backward()
    assert rel(s, s1) < 1e-12 and rel(s_t, jtfs64.forward_path(t, i, crop_time=crop_time)) < 1e-12
    assert rel(xa.grad, xb.grad) < 1e-12
    geo = jtfs64._plans[(i, crop_time)].geo
    xc = x.clone().requires_grad_(True)
    rows, scale = normalise(xc.reshape(2, 1024))
    s2 = (path.stagewise(rows, geo, None) * scale.view(-1, 1, 1)).reshape(s.shape)
    (s2 * w).sum().backward()
    assert rel(s, s2) < 1e-12 and rel(xa.grad, xc.grad) < 1e-12


def test_pair_gradient_passes_gradcheck(jtfs64: JTFS) -> None:
    x, t = _signals(B=1)
    x = x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: jtfs64.forward_path_pair(v, t, 11)[0], (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda v: jtfs64.forward_path_pair(v, t, 11)[0], (x,), fast_mode=True)


def test_backward_twice_and_the_saved_rows(jtfs64: JTFS) -> None:
    """retain_graph: a second backward gives the same gradient (nothing saved is
    modified); only the input's rows are kept for the backward pass."""
    x, t = _signals(B=3)
    x = x.requires_grad_(True)
    s, _ = jtfs64.forward_path_pair(x, t, 25)
    node = s.grad_fn.next_functions[0][0]  # PathPair's (s is a reshape of its output)
    assert type(node).__name__ == "PathPairBackward"
    geo = jtfs64._plans[(25, True)].geo
    per_row = sum(2 * geo.tensors[3 * gi].shape[0] * L for gi, (_, L, _) in enumerate(geo.specs))
    (phasor,) = node.saved_tensors[3:]  # the first-order phasors of x's 3 rows, not of the target's
    assert phasor.numel() == 3 * per_row
    s.sum().backward(retain_graph=True)
    first = x.grad.clone()
    x.grad = None
    s.sum().backward()
    assert torch.equal(first, x.grad)


def test_float32_pair_matches_separate_calls() -> None:
    m = JTFS(shape=1024, J=6, Q1=8, Q2=2, J_fr=2, Q_fr=1)
    x, t = _signals(B=2, dtype=torch.float32)
    xa = x.clone().requires_grad_(True)
    s, s_t = m.forward_path_pair(xa, t, 13, crop_time=False)
    s.square().sum().backward()
    xb = x.clone().requires_grad_(True)
    s1 = m.forward_path(xb, 13, crop_time=False)
    s1.square().sum().backward()
    assert rel(s, s1) < 1e-6 and rel(s_t, m.forward_path(t, 13, crop_time=False)) < 1e-6
    assert rel(xa.grad, xb.grad) < 1e-5


def test_pair_in_no_grad_and_inference_modes(jtfs64: JTFS) -> None:
    x, t = _signals()
    want = jtfs64.forward_path(x, 3)
    with torch.no_grad():
        s, _ = jtfs64.forward_path_pair(x.requires_grad_(True), t, 3)
    assert s.grad_fn is None and rel(s, want) < 1e-12
    with torch.inference_mode():
        s, s_t = jtfs64.forward_path_pair(x, t, 3)
    assert rel(s, want) < 1e-12
    s, _ = jtfs64.forward_path_pair(x.detach().requires_grad_(True), t, 3)  # grad mode again: not poisoned
    s.sum().backward()


def test_pair_argument_errors(jtfs64: JTFS) -> None:
    x, t = _signals()
    with pytest.raises(ValueError, match="x_target must have the shape of x"):
        jtfs64.forward_path_pair(x, t[:1], 0)
    with pytest.raises(TypeError, match="x_target is torch.float32"):
        jtfs64.forward_path_pair(x, t.float(), 0)
    with pytest.raises(ValueError, match="x_target must have shape"):
        jtfs64.forward_path_pair(x, t[..., :512], 0)
    with pytest.raises(ValueError, match="x_target contains NaN"):
        jtfs64.forward_path_pair(x, t.clone().fill_(float("nan")), 0)
    with pytest.raises(ValueError, match=rf"\[0, {jtfs64.n_paths}\)"):
        jtfs64.forward_path_pair(x, t, jtfs64.n_paths)


def test_the_loss_uses_one_paired_call_and_keeps_a_target_gradient() -> None:
    """A constant target goes through one paired call; a target that requires a
    gradient gets one (two separate calls)."""
    from scrapl import SCRAPLLoss

    loss = SCRAPLLoss(shape=1024, J=6, Q1=8, Q2=2, J_fr=2, Q_fr=1).double()
    calls = []
    orig = type(loss.transform).forward_path_pair

    def spy(self, *a, **k):
        calls.append(1)
        return orig(self, *a, **k)

    x, t = _signals()
    type(loss.transform).forward_path_pair = spy
    try:
        x = x.requires_grad_(True)
        loss(x, t, path_idx=5).backward()
        assert calls == [1] and x.grad is not None
        tg = t.clone().requires_grad_(True)
        loss(x, tg, path_idx=5).backward()
        assert calls == [1] and tg.grad is not None and float(tg.grad.abs().sum()) > 0
    finally:
        type(loss.transform).forward_path_pair = orig
