"""Mixed precision: half-precision inputs and torch.autocast.

The loss computes in float32 whatever the caller's precision: float16/bfloat16
inputs (what a model returns under autocast) are cast to float32 and autocast is
off inside the distance, so the value equals the float32 computation exactly and is
a float32 scalar; gradients flow back to the half-precision input in its dtype.
"""

from __future__ import annotations

import pytest
import torch

import scrapl

CFG = {"transform": {"name": "jtfs", "shape": 1024, "J": 4, "Q1": 4, "Q2": 1, "J_fr": 2, "Q_fr": 1}, "seed": 0}


def _loss():
    return scrapl.build(CFG).loss


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_compute_in_float32(dtype):
    loss = _loss()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 1024, generator=g).to(dtype).requires_grad_()
    y = torch.randn(2, 1, 1024, generator=g)
    for path in (0, 5):
        ref = loss.path_distance(x.detach().float(), y, path)
        out = loss.path_distance(x, y, path)  # half x, float32 target: no dtype TypeError
        assert out.dtype == torch.float32 and out.shape == ()
        assert torch.equal(out, ref)
        both = loss.path_distance(x, y.to(dtype), path)  # both half
        assert torch.equal(both, loss.path_distance(x.detach().float(), y.to(dtype).float(), path))
    out = loss(x, y, path_idx=3)
    out.backward()
    assert x.grad is not None and x.grad.dtype == dtype and bool(torch.isfinite(x.grad.float()).all())
    assert loss.full_distance(x, y).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_equals_float32_and_keeps_paths(dtype):
    lin = torch.nn.Linear(8, 1024)
    z, y = torch.randn(2, 8), torch.randn(2, 1, 1024)
    plain = _loss()
    with torch.no_grad():
        x32 = lin(z).unsqueeze(1)
    with torch.autocast("cpu", dtype=dtype):
        x16 = lin(z).unsqueeze(1)
        assert x16.dtype == dtype
        mixed = _loss()
        out = mixed(x16, y)  # model output in bf16, target in float32
        # A float32 input under autocast: the transform must not run in bf16.
        out32 = mixed.path_distance(x32, y, mixed.curr_path_idx)
    assert out.dtype == torch.float32
    assert torch.equal(out32, plain.path_distance(x32, y, mixed.curr_path_idx))
    assert torch.equal(out.detach(), plain.path_distance(x16.detach().float(), y, mixed.curr_path_idx))
    out.backward()
    assert lin.weight.grad is not None and lin.weight.grad.dtype == torch.float32
    assert mixed.consume_path() == plain.sample_path()  # same seed: the same draw


def test_float64_unchanged_and_mismatch_still_rejected():
    loss = _loss().double()
    x, y = torch.randn(1, 1, 1024, dtype=torch.float64), torch.randn(1, 1, 1024, dtype=torch.float64)
    assert loss.path_distance(x, y, 1).dtype == torch.float64
    with pytest.raises(TypeError, match="same dtype"):
        loss.path_distance(x, y.float(), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_computes_in_float32(dtype):
    dev = torch.device("cuda")
    lin = torch.nn.Linear(8, 1024).to(dev)
    z, y = torch.randn(2, 8, device=dev), torch.randn(2, 1, 1024, device=dev)
    loss = scrapl.build(CFG).loss.to(dev)
    ref = scrapl.build(CFG).loss.to(dev)
    with torch.autocast("cuda", dtype=dtype):
        x16 = lin(z).unsqueeze(1)
        assert x16.dtype == dtype
        out = loss(x16, y)
    assert out.dtype == torch.float32 and out.shape == ()
    torch.testing.assert_close(out.detach(), ref.path_distance(x16.detach().float(), y, loss.curr_path_idx))
    out.backward()
    assert lin.weight.grad is not None and bool(torch.isfinite(lin.weight.grad).all())
