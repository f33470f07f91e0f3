"""Numerical range: the transforms and the loss are positively homogeneous, so float32
inputs of any amplitude in float32's range give the amplitude-1 result scaled (no NaN
at 1e20, no floor- or underflow-dominated values at 1e-16), gradients included."""

from __future__ import annotations

import pytest
import torch

from scrapl import SCRAPLLoss
from scrapl.transforms.jtfs import JTFS
from scrapl.transforms.scale import normalise
from scrapl.transforms.scattering1d import TimeScattering

AMPLITUDES = [1e-30, 1e-16, 1e-8, 1e8, 1e20, 1e30]


@pytest.fixture(scope="module")
def signals() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 4096, generator=g), torch.randn(2, 1, 4096, generator=g)


@pytest.fixture(scope="module")
def loss() -> SCRAPLLoss:
    return SCRAPLLoss(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)


def _value_and_grad(loss: SCRAPLLoss, x: torch.Tensor, y: torch.Tensor, i: int) -> tuple[float, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    v = loss(x, y, path_idx=i)
    v.backward()
    return v.item(), x.grad


@pytest.mark.parametrize("amplitude", AMPLITUDES)
def test_the_loss_is_scale_robust_in_float32(loss: SCRAPLLoss, signals, amplitude: float) -> None:
    x, y = signals
    for i in (5, 20):
        v1, g1 = _value_and_grad(loss, x, y, i)
        va, ga = _value_and_grad(loss, x * amplitude, y * amplitude, i)
        assert va / amplitude == pytest.approx(v1, rel=1e-5), (amplitude, i)
        torch.testing.assert_close(ga, g1, rtol=1e-4, atol=1e-4 * g1.abs().max().item())


def test_rows_of_different_amplitudes_in_one_batch(signals) -> None:
    x, _ = signals
    jtfs = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
    scales = torch.tensor([1e-20, 1e20]).view(2, 1, 1)
    want = jtfs.forward_path(x, 7)
    assert want.shape == (2, 1, 22, 64)
    out = jtfs.forward_path(x * scales, 7)
    # the 1e-12 modulus floor acts relative to each row's scale: differences ~1e-12
    torch.testing.assert_close(out / scales[..., None], want, rtol=1e-5, atol=1e-9 * want.abs().max().item())


@pytest.mark.parametrize("amplitude", [1e-30, 1e20, 1e30])
def test_scattering1d_is_scale_robust(signals, amplitude: float) -> None:
    x, _ = signals
    s1d = TimeScattering(shape=4096, J=6, Q=8)
    want = s1d(x)
    got = s1d(x * amplitude) / amplitude
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_scaling_is_by_exact_powers_of_two() -> None:
    x = torch.tensor([[3.0, -0.1], [0.0, 0.0], [1e-40, 0.0]])
    xs, s = normalise(x)
    assert s.tolist()[1] == 1.0 and torch.equal(xs * s[:, None], x)
    assert 0.5 <= xs[0].abs().max() < 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scales_are_the_ldexp_powers_of_two(dtype: torch.dtype) -> None:
    # normalise writes 2**e from the float's bit pattern; it must equal ldexp over
    # the whole clamped exponent range, and s * (1 / s) must be exactly 1
    peaks = torch.tensor([2.0 ** k for k in range(-126, 128, 3)] + [0.0, 1e-45, 3e38], dtype=dtype)
    x = torch.stack([peaks, -peaks / 3], dim=1)
    xs, s = normalise(x)
    _, e = torch.frexp(x.abs().amax(dim=-1))
    want = torch.ldexp(torch.ones_like(s), e.clamp(-120, 120))
    assert torch.equal(s, want)
    assert torch.equal(xs, x * torch.ldexp(torch.ones_like(s), -e.clamp(-120, 120))[:, None])
