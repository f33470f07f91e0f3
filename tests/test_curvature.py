"""Curvature estimation for theta-IS: power iteration, the operator against dense
Hessians / Jacobians, vectorised vs looped, the loss-Hessian shortcut, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.func import functional_call

from scrapl.samplers import CurvatureEstimator, check_is_deterministic, largest_eigenvalues, path_curvatures

N = 48


def _models(U: int, seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.AvgPool1d(4), torch.nn.Linear(N // 4, 5), torch.nn.Tanh(), torch.nn.Linear(5, U), torch.nn.Sigmoid()).to(dtype)
    dec = torch.nn.Sequential(torch.nn.Linear(U, 7), torch.nn.Tanh(), torch.nn.Linear(7, N)).to(dtype)
    return enc, dec


def _dist(x, x_hat, p):
    """Per-path toy distance: one band of |rfft| per path, L2 over the band, mean over batch."""
    X = torch.fft.rfft(x.reshape(-1, N)).abs()[:, 1 + 4 * p : 5 + 4 * p]
    Xh = torch.fft.rfft(x_hat.reshape(-1, N)).abs()[:, 1 + 4 * p : 5 + 4 * p]
    return torch.linalg.vector_norm(X - Xh, dim=-1).mean()


def _batches(n: int, B: int = 3, seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.rand(B, 1, N, generator=g, dtype=dtype)} for _ in range(n)]


def _setup(U=3, seed=0, n_batches=1):
    enc, dec = _models(U, seed)
    return enc, dec, (lambda x: enc(x.squeeze(1))), (lambda t: dec(t).unsqueeze(1)), _batches(n_batches)


def _flat_fn(module):
    names = [n for n, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    def unflat(f):
        out, i = {}, 0
        for n, sh in zip(names, shapes):
            out[n] = f[i : i + sh.numel()].view(sh)
            i += sh.numel()
        return out

    return flat, unflat


def _dense_eig(enc, synth_fn, kws, p, u):
    """Eigenvalues of d/dw [sum_b s_bu grad_w E_bu] from the dense Jacobian, by
    decreasing magnitude."""
    ev = torch.linalg.eigvals(_dense_operator(enc, synth_fn, kws, p, u))
    return ev[ev.abs().argsort(descending=True)]


def _dense_operator(enc, synth_fn, kws, p, u):
    """The dense Jacobian d/dw [sum_b s_bu grad_w E_bu] (torch.autograd.functional)."""
    flat, unflat = _flat_fn(enc)

    def g(f):
        total = 0
        for kw in kws:
            x = kw["x"]
            th = functional_call(enc, unflat(f), (x.squeeze(1),))
            (s,) = torch.autograd.grad(_dist(x, synth_fn(th), p), th, create_graph=True)
            mask = torch.zeros_like(s)
            mask[:, u] = 1
            total = total + torch.autograd.grad(th, f, grad_outputs=s * mask, create_graph=True)[0]
        return total

    return torch.autograd.functional.jacobian(g, flat.clone().requires_grad_(True))


# -- power iteration --------------------------------------------------------------------
def test_largest_eigenvalues_batched_matrices():
    g = torch.Generator().manual_seed(0)
    n = 20
    mats, expected = [], []
    for top in (5.0, -7.0, 0.5):
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        d = torch.rand(n, generator=g, dtype=torch.float64) * 0.5 * abs(top)
        d[0] = top
        mats.append(q @ torch.diag(d) @ q.T)
        expected.append(top)
    A = torch.stack(mats)
    calls = []

    def matvec(v, which):
        calls.append(which.tolist())
        return torch.einsum("kij,kj->ki", A[which], v)

    lam = largest_eigenvalues(matvec, n, 3, n_iter=200, tol=None, generator=g, dtype=torch.float64)
    assert torch.allclose(lam, torch.tensor(expected, dtype=torch.float64), rtol=1e-8)
    assert len(calls) == 200 and calls[0] == [0, 1, 2]
    calls.clear()
    lam2 = largest_eigenvalues(matvec, n, 3, n_iter=200, tol=1e-10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(lam2, lam, rtol=1e-8)
    assert len(calls) < 200  # early stop, converged operators leave the batch
    assert any(len(c) < 3 for c in calls)


def test_largest_eigenvalues_zero_operator_and_errors():
    lam = largest_eigenvalues(lambda v, w: torch.zeros_like(v), 5, 2)
    assert torch.equal(lam, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_iter"):
        largest_eigenvalues(lambda v, w: v, 5, 1, n_iter=0)
    with pytest.raises(ValueError, match="size"):
        largest_eigenvalues(lambda v, w: v, 0, 1)
    with pytest.raises(ValueError, match="matvec returned"):
        largest_eigenvalues(lambda v, w: v[:, :2], 5, 1)


def test_single_theta_operator_is_the_dense_hessian():
    """With U = 1 the operator is the Hessian of w -> L(E(w)): compare with
    torch.autograd.functional.hessian."""
    enc, dec, theta_fn, synth_fn, kws = _setup(U=1, seed=0)
    flat, unflat = _flat_fn(enc)
    x = kws[0]["x"]
    for p in (0, 2):
        H = torch.autograd.functional.hessian(lambda f: _dist(x, dec(functional_call(enc, unflat(f), (x.squeeze(1),))).unsqueeze(1), p), flat)
        ev = torch.linalg.eigvalsh(H)
        ev = ev[ev.abs().argsort(descending=True)]
        assert abs(ev[0]) > 1.2 * abs(ev[1])  # well separated: power iteration converges
        ours = path_curvatures(_dist, p, theta_fn, synth_fn, kws, list(enc.parameters()), n_iter=300, tol=None)
        assert ours.shape == (1,)
        assert float(ours[0]) == pytest.approx(float(ev[0]), rel=1e-6)


@pytest.mark.parametrize("n_batches", [1, 2])
def test_operator_eigenvalues_match_dense_jacobian(n_batches):
    enc, dec, theta_fn, synth_fn, kws = _setup(U=3, seed=3, n_batches=n_batches)
    ours = path_curvatures(_dist, 1, theta_fn, synth_fn, kws, list(enc.parameters()), n_iter=400, tol=None)
    checked = 0
    for u in range(3):
        ev = _dense_eig(enc, synth_fn, kws, 1, u)
        if abs(ev[0].imag) > 1e-9 or abs(ev[0]) < 1.1 * abs(ev[1]):
            continue  # no unique dominant real eigenvalue: power iteration need not converge
        assert float(ours[u]) == pytest.approx(float(ev[0].real), rel=1e-5)
        checked += 1
    assert checked >= 2


def test_vectorised_equals_loop_and_hessian_modes_agree():
    enc, dec, theta_fn, synth_fn, kws = _setup(U=3, seed=1, n_batches=2)
    params = list(enc.parameters())
    res = {}
    for vec in (True, False):
        for mode in ("auto", "block", "full"):
            res[vec, mode] = path_curvatures(
                _dist, 2, theta_fn, synth_fn, kws, params, n_iter=20, tol=None, generator=torch.Generator().manual_seed(4), loss_hessian=mode, vectorize=vec
            )
    ref = res[True, "auto"]
    assert ref.abs().min() > 0
    for key, val in res.items():
        assert torch.allclose(val, ref, rtol=1e-9, atol=0), key


def test_coupled_synth_falls_back_to_full_hessian():
    """A synth mixing the examples of a batch breaks the block structure: "auto" must
    detect it and equal "full", while the (wrong) "block" assumption differs."""
    enc, dec = _models(3, seed=2)
    theta_fn = lambda x: enc(x.squeeze(1))  # noqa: E731
    synth_fn = lambda t: dec(t - t.mean(0, keepdim=True)).unsqueeze(1)  # noqa: E731
    kws = _batches(1)
    params = list(enc.parameters())
    kw = dict(n_iter=300, tol=None)
    full = path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, loss_hessian="full", **kw)
    block = path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, loss_hessian="block", **kw)
    est = CurvatureEstimator(theta_fn, synth_fn, kws, params, **kw)
    auto = est.path_curvatures(_dist, 0)[0]
    auto2 = est.path_curvatures(_dist, 0)[0]  # second path: decision reused
    assert est.n_hessian_fallbacks == 1
    assert torch.allclose(auto, full, rtol=1e-9) and torch.allclose(auto2, full, rtol=1e-9)
    assert not torch.allclose(block, full, rtol=1e-3)
    checked = 0
    for u in range(3):
        ev = _dense_eig(enc, synth_fn, kws, 0, u)
        if abs(ev[0].imag) < 1e-9 and abs(ev[0]) > 1.1 * abs(ev[1]):
            assert float(full[u]) == pytest.approx(float(ev[0].real), rel=1e-5)
            checked += 1
    assert checked >= 1


def test_multibatch_operator_is_the_sum():
    enc, dec, theta_fn, synth_fn, kws = _setup(U=2, seed=4)
    params = list(enc.parameters())
    one = path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, n_iter=30, tol=None, generator=torch.Generator().manual_seed(0))
    two = path_curvatures(_dist, 0, theta_fn, synth_fn, kws * 2, params, n_iter=30, tol=None, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(two, 2 * one, rtol=1e-9)


def test_param_groups_and_float32():
    enc, dec = _models(2, seed=5, dtype=torch.float32)
    kws = _batches(1, dtype=torch.float32)
    est = CurvatureEstimator(lambda x: enc(x.squeeze(1)), lambda t: dec(t).unsqueeze(1), kws, list(enc.parameters()))
    groups = [[p] for p in enc.parameters()]
    out = est.path_curvatures(_dist, 1, param_groups=groups)
    assert out.shape == (len(groups), 2) and out.dtype == torch.float64
    assert torch.isfinite(out).all()
    est.release()
    with pytest.raises(ValueError, match="param_groups"):
        est.path_curvatures(_dist, 1, param_groups=[[]])


def test_linear_in_theta_loss_gives_encoder_curvature_only():
    """A loss linear in theta has H = 0 (no second backward needed)."""
    enc, _ = _models(2, seed=6)
    kws = _batches(1)
    out = path_curvatures(lambda x, xh, p: xh.sum() * (p + 1), 0, lambda x: enc(x.squeeze(1)), lambda t: t * 3.0, kws, list(enc.parameters()))
    assert out.shape == (2,) and torch.isfinite(out).all()


# -- errors ---------------------------------------------------------------------------------
def test_errors():
    enc, dec, theta_fn, synth_fn, kws = _setup(U=2)
    params = list(enc.parameters())
    with pytest.raises(ValueError, match="'x'"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, [{"y": kws[0]["x"]}], params)
    with pytest.raises(ValueError, match="non-empty"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, [], params)
    with pytest.raises(ValueError, match="params"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, kws, [])
    with pytest.raises(ValueError, match="scalar"):
        path_curvatures(lambda x, xh, p: (x - xh).abs().mean(-1), 0, theta_fn, synth_fn, kws, params)
    with pytest.raises(ValueError, match="n_theta"):
        CurvatureEstimator(theta_fn, synth_fn, kws, params, n_theta=3).path_curvatures(_dist, 0)
    with pytest.raises(ValueError, match="synth_fn_kwargs"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, synth_fn_kwargs=[{}, {}])
    with pytest.raises(ValueError, match="does not require grad"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, kws, [torch.zeros(3)])
    with pytest.raises(ValueError, match="n_iter"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, n_iter=0)
    with pytest.raises(ValueError, match="loss_hessian"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, loss_hessian="diag")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, generator=1)  # type: ignore[arg-type]
    # the synth uses an encoder weight directly: theta is not the only route to params
    w0 = params[0]
    with pytest.raises(ValueError, match="other than through theta"):
        path_curvatures(_dist, 0, theta_fn, lambda t: dec(t).unsqueeze(1) * w0.sum(), kws, params)
    with pytest.raises(ValueError, match=r"\(batch, n_theta\)"):
        path_curvatures(_dist, 0, lambda x: enc(x.squeeze(1)).sum(-1), synth_fn, kws, params)


def test_check_is_deterministic():
    enc, dec, theta_fn, synth_fn, kws = _setup(U=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_is_deterministic(theta_fn, kws[0], synth_fn)
    drop = torch.nn.Dropout(0.5)
    with pytest.warns(RuntimeWarning, match="theta_fn is not deterministic"):
        assert not check_is_deterministic(lambda x: drop(enc(x.squeeze(1))), kws[0], synth_fn)
    with pytest.warns(RuntimeWarning, match="synth_fn is not deterministic"):
        assert not check_is_deterministic(theta_fn, kws[0], lambda t: drop(dec(t)))


class _ItemInBackward(torch.autograd.Function):
    """Identity whose backward calls ``.item()``: fine in a plain backward, an error
    under vmap (``is_grads_batched``)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * (1.0 + 0.0 * g.sum().item())


def test_vmap_failure_in_the_distance_loops_the_hvps_silently():
    """A synth/transform without batching rules (as the JTFS's fused kernels): the
    products through the distance run in a loop, without a warning."""
    enc, dec, theta_fn, _, kws = _setup(U=2, seed=1)
    synth_fn = lambda t: _ItemInBackward.apply(dec(t)).unsqueeze(1)  # noqa: E731
    params = list(enc.parameters())
    loop = path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, vectorize=False, generator=torch.Generator().manual_seed(1))
    est = CurvatureEstimator(theta_fn, synth_fn, kws, params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = est.path_curvatures(_dist, 0, generator=torch.Generator().manual_seed(1))[0]
    assert est.vectorize and est.hvp_loop_reason is not None
    assert torch.allclose(out, loop, rtol=1e-9)


def test_vmap_failure_in_the_encoder_falls_back_to_loop():
    enc, dec, _, synth_fn, kws = _setup(U=2, seed=1)
    theta_fn = lambda x: _ItemInBackward.apply(enc(x.squeeze(1)))  # noqa: E731
    params = list(enc.parameters())
    loop = path_curvatures(_dist, 0, theta_fn, synth_fn, kws, params, vectorize=False, generator=torch.Generator().manual_seed(1))
    est = CurvatureEstimator(theta_fn, synth_fn, kws, params)
    with pytest.warns(RuntimeWarning, match="falling back"):
        out = est.path_curvatures(_dist, 0, generator=torch.Generator().manual_seed(1))[0]
    assert not est.vectorize
    assert torch.allclose(out, loop, rtol=1e-9)


def test_arnoldi_finds_plus_minus_pair_where_power_iteration_cannot():
    g = torch.Generator().manual_seed(0)
    n = 30
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    d = torch.rand(n, generator=g, dtype=torch.float64) * 0.5
    d[0], d[1] = 2.0, -2.0  # dominant +-2 pair
    A = (q @ torch.diag(d) @ q.T).unsqueeze(0)
    mv = lambda v, w: torch.einsum("kij,kj->ki", A[w], v)  # noqa: E731
    power = largest_eigenvalues(mv, n, 1, n_iter=20, tol=None, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    arnoldi = largest_eigenvalues(mv, n, 1, n_iter=20, tol=None, generator=torch.Generator().manual_seed(1), dtype=torch.float64, method="arnoldi")
    assert abs(float(power[0])) < 1.5  # the Rayleigh quotient of an oscillating iterate
    assert abs(float(arnoldi[0])) == pytest.approx(2.0, rel=1e-6)


def test_arnoldi_batched_nonsymmetric_and_early_stop():
    g = torch.Generator().manual_seed(3)
    n = 25
    mats, tops = [], []
    for _ in range(3):
        M = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.1
        M[0, 0] = 3.0 * (1 if len(mats) % 2 == 0 else -1)
        ev = torch.linalg.eigvals(M)
        tops.append(ev[ev.abs().argmax()].real)
        mats.append(M)
    A = torch.stack(mats)
    calls = []

    def mv(v, w):
        calls.append(len(w))
        return torch.einsum("kij,kj->ki", A[w], v)

    lam = largest_eigenvalues(mv, n, 3, n_iter=n, tol=1e-12, generator=g, dtype=torch.float64, method="arnoldi")
    assert torch.allclose(lam, torch.stack(tops), rtol=1e-8)
    assert len(calls) < n  # converged Ritz values stop early
    zero = largest_eigenvalues(lambda v, w: torch.zeros_like(v), 5, 2, method="arnoldi")
    assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        largest_eigenvalues(mv, n, 3, method="lanczos")  # type: ignore[arg-type]


def test_arnoldi_curvatures_and_operator_matrices_match_dense():
    enc, dec, theta_fn, synth_fn, kws = _setup(U=3, seed=0, n_batches=2)
    params = list(enc.parameters())
    est = CurvatureEstimator(theta_fn, synth_fn, kws, params, n_iter=40, tol=None, method="arnoldi")
    ours = est.path_curvatures(_dist, 1)[0]
    mats = est.operator_matrices(_dist, 1, chunk=50)
    W = sum(p.numel() for p in params)
    assert mats.shape == (3, W, W)
    assert torch.allclose(mats[2], _dense_operator(enc, synth_fn, kws, 1, 2), rtol=1e-9, atol=1e-12)
    for u in range(3):
        exact = float(torch.linalg.eigvals(mats[u]).abs().max())
        assert abs(float(ours[u])) == pytest.approx(exact, rel=1e-6)
