"""End to end: the ``scattering1d`` transform through ``scrapl.build`` with every
built-in sampler and path-aware optimizer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import scrapl
from scrapl.builtin import BUILTIN_MODULES
from scrapl.registry import Registry, get_registry
from scrapl.transforms.scattering1d import TimeScattering

MODULE = "scrapl.transforms.scattering1d"
N = 512
TRANSFORM = {"name": "scattering1d", "shape": N, "J": 5, "Q": [4, 1]}


def registry() -> Registry:
    """The default registry once the module is a built-in; until then one that adds it."""
    if MODULE in BUILTIN_MODULES:
        return get_registry()
    return Registry(autoload=False, builtins=(*BUILTIN_MODULES, MODULE))


def test_registered_as_builtin() -> None:
    """scrapl.builtin.BUILTIN_MODULES must list the module (the lead adds it)."""
    assert MODULE in BUILTIN_MODULES
    assert "scattering1d" in get_registry().names("transform")


def test_build_validates_transform_config() -> None:
    built = scrapl.build({"transform": TRANSFORM, "sampler": "uniform", "optimizer": "sgd"}, registry=registry())
    assert isinstance(built.transform, TimeScattering)
    assert built.loss.n_paths == built.transform.n_paths > 0
    with pytest.raises(Exception, match="T=0"):
        scrapl.build({"transform": {**TRANSFORM, "T": 0}}, registry=registry())
    with pytest.raises(Exception, match="transform"):
        scrapl.build({"transform": {**TRANSFORM, "bogus": 1}}, registry=registry())


class Synth(torch.nn.Module):
    """A tiny differentiable synthesizer: sum of 4 learnable-amplitude AM tones."""

    def __init__(self) -> None:
        super().__init__()
        self.amp = torch.nn.Parameter(torch.tensor([0.2, 0.5, 1.0, 0.3]))
        t = torch.arange(N, dtype=torch.float32)
        carriers = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (0.03, 0.07, 0.13, 0.21)])
        envelopes = 1 + 0.9 * torch.stack([torch.sin(2 * torch.pi * r * t) for r in (0.004, 0.01, 0.02, 0.03)])
        self.register_buffer("atoms", carriers * envelopes)

    def forward(self, batch: int = 2) -> torch.Tensor:
        return (self.amp @ self.atoms).expand(batch, 1, N)


def train(sampler: Any, optimizer: str, steps: int, tmp_path: Any) -> tuple[list[float], list[int], Synth]:
    torch.manual_seed(0)
    built = scrapl.build(
        {"transform": TRANSFORM, "sampler": sampler, "optimizer": optimizer, "seed": 3}, registry=registry()
    )
    synth = Synth()
    target_amp = torch.tensor([1.0, 0.1, 0.4, 0.8])
    with torch.no_grad():
        target = (target_amp @ synth.atoms).expand(2, 1, N)
    if getattr(built.sampler, "warmup", None) is not None:  # theta-IS: curvature warmup first
        enc = torch.nn.Linear(N, 4)
        theta_fn = lambda x: torch.sigmoid(enc(x.squeeze(1)))  # noqa: E731
        synth_fn = lambda theta: (theta @ synth.atoms).unsqueeze(1)  # noqa: E731
        batches = [{"x": target[:1].clone()}]
        built.loss.warmup_lc_hvp(theta_fn, synth_fn, batches, list(enc.parameters()),
                                 save_dir=str(tmp_path / "warmup"), n_iter=3)
        probs = built.loss.probs
        assert torch.isfinite(probs).all() and abs(float(probs.sum()) - 1) < 1e-9
        assert not torch.allclose(probs, torch.full_like(probs, 1 / built.loss.n_paths))
    opt = built.optimizer(synth.parameters(), lr=1e-2)
    losses, paths = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = built.loss(synth(), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        paths.append(int(built.loss.curr_path_idx))
    return losses, paths, synth


@pytest.mark.parametrize("optimizer", ["p_adam", "p_saga", "p_adam_saga", "sgd"])
@pytest.mark.parametrize("sampler", ["uniform", {"name": "theta_is", "n_theta": 4}])
def test_training_steps(sampler: Any, optimizer: str, tmp_path: Any) -> None:
    losses, paths, synth = train(sampler, optimizer, steps=6, tmp_path=tmp_path)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert len(set(paths)) > 1  # several paths were drawn
    assert not torch.allclose(synth.amp.detach(), torch.tensor([0.2, 0.5, 1.0, 0.3]))  # parameters moved
    assert torch.isfinite(synth.amp).all()
    # same seed, same config: the same paths and the same trajectory
    losses2, paths2, synth2 = train(sampler, optimizer, steps=6, tmp_path=tmp_path / "again")
    assert paths2 == paths
    torch.testing.assert_close(synth2.amp, synth.amp)


def test_full_distance_decreases_with_training(tmp_path: Any) -> None:
    """P-Adam+SAGA on the scattering1d loss brings the full-tree distance down."""
    built = scrapl.build({"transform": TRANSFORM, "sampler": "uniform", "optimizer": "p_adam_saga", "seed": 1},
                         registry=registry())
    synth = Synth()
    with torch.no_grad():
        target = (torch.tensor([1.0, 0.1, 0.4, 0.8]) @ synth.atoms).expand(2, 1, N)
        before = float(built.loss.full_distance(synth(), target))
    opt = built.optimizer(synth.parameters(), lr=2e-2)
    for _ in range(60):
        opt.zero_grad()
        built.loss(synth(), target).backward()
        opt.step()
    with torch.no_grad():
        after = float(built.loss.full_distance(synth(), target))
    assert after < 0.7 * before
