"""End to end: the ``scattering2d`` transform through ``scrapl.build`` with every
built-in sampler and path-aware optimizer, on (batch, channels, height, width) images."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import scrapl
from scrapl.registry import get_registry
from scrapl.transforms.scattering2d import ImageScattering

H, W = 24, 20
TRANSFORM = {"name": "scattering2d", "shape": [H, W], "J": 2, "L": 4}


def test_registered_as_builtin() -> None:
    assert "scattering2d" in get_registry().names("transform")


def test_build_validates_transform_config() -> None:
    built = scrapl.build({"transform": TRANSFORM, "sampler": "uniform", "optimizer": "sgd"})
    assert isinstance(built.transform, ImageScattering)
    assert built.loss.n_paths == built.transform.n_paths == 16
    with pytest.raises(Exception, match="J=5 is too large"):
        scrapl.build({"transform": {**TRANSFORM, "J": 5}})
    with pytest.raises(Exception, match="L"):
        scrapl.build({"transform": {**TRANSFORM, "L": 0}})
    with pytest.raises(Exception, match="transform"):
        scrapl.build({"transform": {**TRANSFORM, "bogus": 1}})


def test_loss_shape_checks_are_the_images() -> None:
    loss = scrapl.build({"transform": TRANSFORM}).loss
    x = torch.randn(2, 1, H, W)
    assert loss(x, x.flip(-1)).ndim == 0
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\) \(4 dimensions\)"):
        loss(x[:, 0], x[:, 0])
    with pytest.raises(ValueError, match=r"\(height, width\) = \(24, 20\)"):
        loss(x[..., :-1], x[..., :-1])
    with pytest.raises(TypeError, match="floating-point"):
        loss(x.to(torch.int64), x.to(torch.int64))
    d = loss.full_distance(x, x.flip(-1), reduction="none")
    assert d.shape == (2, 1)
    per_path = torch.stack([loss.path_distance(x, x.flip(-1), i, reduction="none") for i in range(loss.n_paths)])
    torch.testing.assert_close(d, per_path.mean(0))


class Gratings(torch.nn.Module):
    """A tiny differentiable image model: learnable amplitudes of 4 oriented gratings."""

    def __init__(self) -> None:
        super().__init__()
        self.amp = torch.nn.Parameter(torch.tensor([0.2, 0.5, 1.0, 0.3]))
        r, c = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
        waves = [(0.3, 0.0), (0.0, 0.25), (0.15, 0.15), (0.4, -0.2)]
        self.register_buffer("atoms", torch.stack([torch.cos(2 * torch.pi * (fr * r + fc * c)) for fr, fc in waves]))

    def render(self, amp: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, H, W)`` from amplitudes ``(batch, 4)``."""
        return torch.einsum("bk,khw->bhw", amp, self.atoms)[:, None]

    def forward(self, batch: int = 2) -> torch.Tensor:
        return self.render(self.amp.expand(batch, 4))


def train(sampler: Any, optimizer: str, steps: int, tmp_path: Any) -> tuple[list[float], list[int], Gratings]:
    torch.manual_seed(0)
    built = scrapl.build({"transform": TRANSFORM, "sampler": sampler, "optimizer": optimizer, "seed": 3})
    model = Gratings()
    with torch.no_grad():
        target = model.render(torch.tensor([[1.0, 0.1, 0.4, 0.8]]).expand(2, 4))
    if getattr(built.sampler, "warmup", None) is not None:  # theta-IS: curvature warmup first
        enc = torch.nn.Linear(H * W, 4)
        theta_fn = lambda x: torch.sigmoid(enc(x.flatten(1)))  # noqa: E731
        synth_fn = lambda theta: model.render(theta)  # noqa: E731
        built.loss.warmup_lc_hvp(theta_fn, synth_fn, [{"x": target[:1].clone()}], list(enc.parameters()),
                                 save_dir=str(tmp_path / "warmup"), n_iter=3)
        probs = built.loss.probs
        assert torch.isfinite(probs).all() and abs(float(probs.sum()) - 1) < 1e-9
        assert not torch.allclose(probs, torch.full_like(probs, 1 / built.loss.n_paths))
    opt = built.optimizer(model.parameters(), lr=1e-2)
    losses, paths = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = built.loss(model(), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        paths.append(int(built.loss.curr_path_idx))
    return losses, paths, model


@pytest.mark.parametrize("optimizer", ["p_adam", "p_saga", "p_adam_saga", "sgd"])
@pytest.mark.parametrize("sampler", ["uniform", {"name": "theta_is", "n_theta": 4}])
def test_training_steps(sampler: Any, optimizer: str, tmp_path: Any) -> None:
    losses, paths, model = train(sampler, optimizer, steps=6, tmp_path=tmp_path)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert len(set(paths)) > 1  # several paths were drawn
    assert not torch.allclose(model.amp.detach(), torch.tensor([0.2, 0.5, 1.0, 0.3]))  # parameters moved
    # same seed, same config: the same paths and the same trajectory
    losses2, paths2, model2 = train(sampler, optimizer, steps=6, tmp_path=tmp_path / "again")
    assert paths2 == paths
    torch.testing.assert_close(model2.amp, model.amp)


def test_full_distance_decreases_with_training() -> None:
    """P-Adam+SAGA on the scattering2d loss brings the full-tree distance down."""
    built = scrapl.build({"transform": TRANSFORM, "sampler": "uniform", "optimizer": "p_adam_saga", "seed": 1})
    model = Gratings()
    with torch.no_grad():
        target = model.render(torch.tensor([[1.0, 0.1, 0.4, 0.8]]).expand(2, 4))
        before = float(built.loss.full_distance(model(), target))
    opt = built.optimizer(model.parameters(), lr=2e-2)
    for _ in range(60):
        opt.zero_grad()
        built.loss(model(), target).backward()
        opt.step()
    with torch.no_grad():
        after = float(built.loss.full_distance(model(), target))
    assert after < 0.7 * before
