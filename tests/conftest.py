"""Shared fixtures: small fake plugins and a registry that holds only them.

The fakes are real (if tiny) implementations of the plugin contracts, so that the
registry, config and build machinery can be tested without the heavy built-ins.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import pytest
import torch
from pydantic import Field
from torch import Tensor

from scrapl.configs import PluginConfig
from scrapl.interfaces import (
    PathAwareOptimizer,
    PathInfo,
    PathSampler,
    PluginSpec,
    ScatteringTransform,
)
from scrapl.registry import Registry


class FakeTransformConfig(PluginConfig):
    name: Literal["fake_transform"] = "fake_transform"
    shape: int = Field(default=64, gt=8)


class FakeTransform(ScatteringTransform):
    """Three paths: average pooling of |x| with kernels 2, 4 and 8, shape (*batch, 1, frames)."""

    KERNELS = (2, 4, 8)

    def __init__(self, shape: int) -> None:
        super().__init__()
        self.n_samples = shape

    @property
    def paths(self) -> list[tuple[int, ...]]:
        return [(k,) for k in self.KERNELS]

    @property
    def path_infos(self) -> list[PathInfo]:
        return [PathInfo(index=i, key=(k,), label=f"pool {k}") for i, k in enumerate(self.KERNELS)]

    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        k = self.KERNELS[i]
        frames = self.n_samples // 8
        y = x.abs().reshape(*x.shape[:-1], -1, k).mean(-1)  # (*batch, samples / k)
        return y[..., :frames].unsqueeze(-2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.forward_path(x, i) for i in range(self.n_paths)], dim=-3)


class FakeSamplerConfig(PluginConfig):
    name: Literal["fake_sampler"] = "fake_sampler"
    min_prob_frac: float = Field(default=0.0, ge=0.0, le=1.0)


class FakeSampler(PathSampler):
    """Uniform draws with the given generator."""

    def __init__(self, n_paths: int, generator: torch.Generator) -> None:
        self.n_paths = n_paths
        self.generator = generator

    @property
    def probs(self) -> Tensor:
        return torch.full((self.n_paths,), 1.0 / self.n_paths, dtype=torch.float64)

    def sample(self, seed: int | None = None) -> int:
        if seed is not None:
            self.generator.manual_seed(seed)
        return int(torch.randint(self.n_paths, (1,), generator=self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class FakeOptimizerConfig(PluginConfig):
    name: Literal["fake_optimizer"] = "fake_optimizer"
    lr: float = Field(default=0.1, gt=0)


class FakeOptimizer(PathAwareOptimizer):
    """SGD that records the path of each step (``self.paths_seen``)."""

    def __init__(self, params: Any, *, lr: float, n_paths: int, path_source: Callable[[], int | None]) -> None:
        super().__init__(params, {"lr": lr})
        self.n_paths = n_paths
        self.path_source = path_source
        self.paths_seen: list[int | None] = []

    @torch.no_grad()
    def step(self, closure: Any = None, path: int | None = None) -> None:  # type: ignore[override]
        self.paths_seen.append(self.path_source() if path is None else path)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


def make_fake_optimizer(
    config: FakeOptimizerConfig, params: Any, *, n_paths: int, path_source: Callable[[], int | None], **overrides: Any
) -> FakeOptimizer:
    settings = {"lr": config.lr, **overrides}
    return FakeOptimizer(params, n_paths=n_paths, path_source=path_source, **settings)


def train_gain(built: Any, steps: int, *, lr: float = 1e-2) -> tuple[list[float], torch.nn.Parameter, Any]:
    """Train a gain ``w`` for a few steps so that ``w * x`` matches ``2 * x`` through
    ``built.loss`` and ``built.optimizer``; returns (losses, w, optimizer)."""
    n = built.transform.n_samples
    x = torch.randn(2, 1, n, generator=torch.Generator().manual_seed(0))
    target = 2.0 * x
    w = torch.nn.Parameter(torch.ones(()))
    opt = built.optimizer([w], lr=lr)
    built.loss.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = built.loss(w * x, target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, w, opt


FAKE_SPECS = [
    PluginSpec("transform", "fake_transform", FakeTransformConfig, lambda c: FakeTransform(c.shape), "3 pooling paths"),
    PluginSpec(
        "sampler",
        "fake_sampler",
        FakeSamplerConfig,
        lambda c, *, n_paths, generator: FakeSampler(n_paths, generator),
        "uniform (test)",
    ),
    PluginSpec("optimizer", "fake_optimizer", FakeOptimizerConfig, make_fake_optimizer, "recording SGD"),
]


@pytest.fixture
def fake_registry() -> Registry:
    """A registry with only the fake transform, sampler and optimizer (no built-ins, no
    entry points)."""
    registry = Registry(autoload=False, builtins=())
    registry.register(FAKE_SPECS, source="tests:fakes")
    return registry


@pytest.fixture
def fake_config_dict() -> dict[str, Any]:
    """A config dict using the fake plugins."""
    return {
        "transform": {"name": "fake_transform", "shape": 64},
        "sampler": {"name": "fake_sampler"},
        "optimizer": {"name": "fake_optimizer"},
        "seed": 3,
    }


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Install tiny distributions with ``scrapl.plugins`` entry points.

    Returns ``add(dist, modules, entry_points)``: writes each ``{module: source}`` as
    a top-level module and a ``<dist>-0.1.0.dist-info`` directory (METADATA and
    entry_points.txt) into a temporary site directory that is on ``sys.path`` for the
    test.  The modules are removed from ``sys.modules`` afterwards.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules_added: list[str] = []

    def add(dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            modules_added.append(module)
        info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n", encoding="utf-8")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[scrapl.plugins]\n{lines}", encoding="utf-8")
        importlib.invalidate_caches()
        return info

    yield add
    for module in modules_added:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()
