"""Grad modes never poison a module's state: calls under ``torch.inference_mode()``,
``torch.no_grad()`` and with gradients (``retain_graph`` included) follow each other in
every order, in train and eval mode, and give the values and gradients of a fresh
module.  (A pooled work buffer first allocated under ``inference_mode`` used to be an
inference tensor: every later grad-mode call then failed.)"""

from __future__ import annotations

import itertools

import pytest
import torch

from scrapl import SCRAPLLoss
from scrapl.transforms.jtfs import JTFS
from scrapl.transforms.jtfs import native
from scrapl.transforms.jtfs.buffers import BufferPool

KW = dict(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
PATHS = (5, 20)  # two different second-order scales (different buffer sizes)
MODES = ("inference", "no_grad", "grad")


@pytest.fixture(scope="module")
def expected() -> dict:
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 4096), torch.randn(2, 1, 4096)
    ref = JTFS(**KW)
    ref.buffer_pool = None  # plain allocations: the reference values
    out = {}
    for p in PATHS:
        xx = x.clone().requires_grad_(True)
        s = ref.forward_path(xx, p)
        s.square().sum().backward()
        out[p] = (s.detach(), xx.grad)
    loss = SCRAPLLoss(**KW)
    loss.transform.buffer_pool = None
    for p in PATHS:
        xx = x.clone().requires_grad_(True)
        v = loss(xx, y, path_idx=p)
        v.backward()
        out["loss", p] = (v.detach(), xx.grad)
    return {"x": x, "y": y, **out}


def _call(fn, mode: str, x: torch.Tensor):
    """``fn(x)`` under ``mode``; with gradients: backward twice (retain_graph)."""
    if mode == "inference":
        with torch.inference_mode():
            return fn(x), None
    if mode == "no_grad":
        with torch.no_grad():
            return fn(x), None
    xx = x.clone().requires_grad_(True)
    out = fn(xx)
    g1 = torch.autograd.grad(out.square().sum(), xx, retain_graph=True)[0]
    g2 = torch.autograd.grad(out.square().sum(), xx)[0]
    torch.testing.assert_close(g1, g2)
    return out, g1


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("use_native", [True, False], ids=["native", "torch"])
def test_every_order_of_grad_modes_on_the_transform(expected: dict, train: bool, use_native: bool) -> None:
    ctx = native.disabled() if not use_native else torch.enable_grad()
    with ctx:
        jtfs = JTFS(**KW).train(train)
        for order in itertools.permutations(MODES):
            jtfs.buffer_pool = BufferPool()  # the only state a call leaves behind
            for mode in (*order, "grad"):
                for p in PATHS:
                    out, g = _call(lambda t: jtfs.forward_path(t, p), mode, expected["x"])
                    s, gs = expected[p]
                    torch.testing.assert_close(out, s, rtol=1e-5, atol=1e-7)
                    if g is not None:
                        torch.testing.assert_close(g, gs, rtol=1e-4, atol=1e-6)


def test_every_order_of_grad_modes_on_the_loss(expected: dict) -> None:
    """A metric computed under inference_mode inside a training loop (train mode)."""
    x, y = expected["x"], expected["y"]
    loss = SCRAPLLoss(**KW).train()
    for order in itertools.permutations(MODES):
        loss.transform.buffer_pool = BufferPool()
        for mode in (*order, "grad"):
            for p in PATHS:
                if mode == "grad":
                    xx = x.clone().requires_grad_(True)
                    v = loss(xx, y, path_idx=p)
                    v.backward(retain_graph=True)
                    g = xx.grad.clone()
                    xx.grad = None
                    v.backward()
                    torch.testing.assert_close(xx.grad, g)
                    torch.testing.assert_close(g, expected["loss", p][1], rtol=1e-4, atol=1e-8)
                else:
                    cm = torch.inference_mode() if mode == "inference" else torch.no_grad()
                    with cm:
                        v = loss(x, y, path_idx=p)
                torch.testing.assert_close(v.detach(), expected["loss", p][0], rtol=1e-5, atol=1e-8)
