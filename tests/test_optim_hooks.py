"""Tests of scrapl.compat.hooks.PathGradHooks, the reference-compatible
``attach_params`` machinery: golden trajectories recorded with the reference package
(tests/fixtures/make_optim_reference_hooks.py), equivalence with the optimizer
plugins, and hook management."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

import scrapl.optim as O
from scrapl.compat.hooks import PathGradHooks

FIXTURE = Path(__file__).parent / "fixtures" / "optim_reference_hooks.pt"
FLAGS = {"p_adam_saga": (True, True), "p_adam": (True, False), "p_saga": (False, True)}


def _quad_loss(w1, w2, data, path):
    a1, a2, c1, c2 = data["a1"][path], data["a2"][path], data["c1"][path], data["c2"][path]
    return 1e-8 * ((a1 * (w1 - c1) ** 2).sum() + (a2 * (w2 - c2) ** 2).sum() + (w1.sum() * w2.sum()) ** 2)


def _run_hooks(data, paths, n_paths, *, saga_divisor, use_p_adam, use_p_saga, **kw):
    w1 = torch.nn.Parameter(data["w1"].clone())
    w2 = torch.nn.Parameter(data["w2"].clone())
    # The reference: each training forward sets the path and increments t; hooks use k = t + 1.
    ctr = {"t": 0, "path": None}
    hooks = PathGradHooks(
        [w1, w2], n_paths, lambda: ctr["path"], lambda: ctr["t"] + 1, lambda: True,
        use_p_adam=use_p_adam, use_p_saga=use_p_saga, saga_divisor=saga_divisor, **kw,
    )
    opt = torch.optim.SGD([w1, w2], lr=data["lr"])
    t1, t2 = [], []
    for path in paths:
        opt.zero_grad()
        ctr["path"], ctr["t"] = path, ctr["t"] + 1  # the "forward"
        _quad_loss(w1, w2, data, path).backward()
        opt.step()
        t1.append(w1.detach().clone())
        t2.append(w2.detach().clone())
    hooks.remove()
    return torch.stack(t1), torch.stack(t2), hooks


@pytest.mark.parametrize("kind", ["p_adam_saga", "p_adam", "p_saga"])
def test_reproduces_reference_package_hooks(kind):
    fx = torch.load(FIXTURE, weights_only=True)
    ref = fx["runs"][kind]
    w1, w2, _ = _run_hooks(fx["data"], fx["paths"], ref["n_paths"], saga_divisor="reference",
                           use_p_adam=FLAGS[kind][0], use_p_saga=FLAGS[kind][1])
    torch.testing.assert_close(w1, ref["w1"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w2, ref["w2"], rtol=1e-5, atol=1e-6)


def test_paper_saga_divisor_differs_from_reference_when_paths_repeat():
    fx = torch.load(FIXTURE, weights_only=True)
    ref = fx["runs"]["p_adam_saga"]
    w1, _, _ = _run_hooks(fx["data"], fx["paths"], ref["n_paths"], saga_divisor="paper", use_p_adam=True, use_p_saga=True)
    assert (w1 - ref["w1"]).abs().max() > 1e-3


def test_hooks_plus_sgd_equal_optimizer_plugin():
    # grad_mult=1, eps inside the sqrt, k = optimizer step: the same as PAdamSAGA(eps_mode="absolute").
    g = torch.Generator().manual_seed(0)
    n_paths, n_steps = 4, 12
    paths = [int(i) for i in torch.randint(0, n_paths, (n_steps,), generator=g)]
    targets = torch.randn(n_paths, 6, generator=g)
    init = torch.randn(6, generator=g)

    def loss(w, p):
        return ((w - targets[p]) ** 2 * (1 + p)).sum() + w.prod()

    wa = torch.nn.Parameter(init.clone())
    ctr = {"k": 0, "path": None}
    hooks = PathGradHooks([wa], n_paths, lambda: ctr["path"], lambda: ctr["k"], lambda: True, grad_mult=1.0,
                          eps_placement="inside", eps=1e-6, betas=(0.8, 0.99))
    sgd = torch.optim.SGD([wa], lr=0.05)
    wb = torch.nn.Parameter(init.clone())
    opt = O.PAdamSAGA([wb], n_paths, lr=0.05, eps=1e-6, betas=(0.8, 0.99), eps_mode="absolute")
    for p in paths:
        ctr["path"], ctr["k"] = p, ctr["k"] + 1
        sgd.zero_grad()
        loss(wa, p).backward()
        sgd.step()
        opt.zero_grad()
        loss(wb, p).backward()
        opt.step(path=p)
    torch.testing.assert_close(wa.detach(), wb.detach(), rtol=1e-5, atol=1e-6)
    hooks.remove()


def test_eval_mode_leaves_gradients_and_remove_detaches():
    w = torch.nn.Parameter(torch.ones(3))
    mode = {"train": False}
    hooks = PathGradHooks([w, w], 3, lambda: 0, lambda: 1, lambda: mode["train"])
    assert len(hooks.params) == 1
    (w * 2).sum().backward()
    assert torch.equal(w.grad, torch.full((3,), 2.0)) and hooks.state_bytes() == 0
    mode["train"] = True
    w.grad = None
    (w * 2).sum().backward()
    torch.testing.assert_close(w.grad, torch.ones(3))  # P-Adam's first output: sign(g)
    assert hooks.state_bytes() > 0
    hooks.remove()
    w.grad = None
    (w * 2).sum().backward()
    assert torch.equal(w.grad, torch.full((3,), 2.0))
    assert "attached=False" in repr(hooks)


def test_missing_path_and_bad_step_raise():
    w = torch.nn.Parameter(torch.ones(2))
    h = PathGradHooks([w], 3, lambda: None, lambda: 1, lambda: True)
    with pytest.raises(ValueError, match="no current path"):
        w.sum().backward()
    h.remove()
    h = PathGradHooks([w], 3, lambda: 1, lambda: 0, lambda: True)
    with pytest.raises(ValueError, match="step_getter"):
        w.sum().backward()
    h.remove()
    with pytest.raises(ValueError, match="leaf"):
        PathGradHooks([w * 2], 3, lambda: 1, lambda: 1, lambda: True)
    with pytest.raises(ValueError, match="saga_divisor"):
        PathGradHooks([w], 3, lambda: 1, lambda: 1, lambda: True, saga_divisor="x")


def test_hooks_state_dict_roundtrip():
    fx = torch.load(FIXTURE, weights_only=True)
    data, paths = fx["data"], fx["paths"]
    w1 = torch.nn.Parameter(data["w1"].clone())
    w2 = torch.nn.Parameter(data["w2"].clone())
    ctr = {"t": 0, "path": None}
    hooks = PathGradHooks([w1, w2], 28, lambda: ctr["path"], lambda: ctr["t"], lambda: True)
    for p in paths[:5]:
        ctr["path"], ctr["t"] = p, ctr["t"] + 1
        w1.grad = w2.grad = None
        _quad_loss(w1, w2, data, p).backward()
    buf = io.BytesIO()
    torch.save(hooks.state_dict(), buf)
    hooks.remove()
    v1 = torch.nn.Parameter(w1.detach().clone())
    v2 = torch.nn.Parameter(w2.detach().clone())
    h2 = PathGradHooks([v1, v2], 28, lambda: ctr["path"], lambda: ctr["t"], lambda: True)
    buf.seek(0)
    h2.load_state_dict(torch.load(buf, weights_only=True))
    hooks = PathGradHooks([w1, w2], 28, lambda: ctr["path"], lambda: ctr["t"], lambda: True)
    buf.seek(0)  # a separate copy: load_state_dict keeps (does not clone) the tensors it is given
    hooks.load_state_dict(torch.load(buf, weights_only=True))
    for p in paths[5:9]:
        ctr["path"], ctr["t"] = p, ctr["t"] + 1
        for a, b in ((w1, w2), (v1, v2)):
            a.grad = b.grad = None
            _quad_loss(a, b, data, p).backward()
        assert torch.equal(w1.grad, v1.grad) and torch.equal(w2.grad, v2.grad)
    with pytest.raises(ValueError, match="n_paths"):
        PathGradHooks([w1], 5, lambda: 0, lambda: 1, lambda: True).load_state_dict(h2.state_dict())
