"""A third-party ablation task for the tests: one parameter (the amplitude of a
fixed tone burst), a linear model on a coarse envelope.  It imports only the public
task interface, as a plugin package would."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from scrapl.ablation import Task
from scrapl.configs import StrictModel


class ToySettings(StrictModel):
    """Settings of :class:`ToyTask`."""

    n_val: int = 8
    hop: int = 64


class _Model(nn.Module):
    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, features: Tensor) -> Tensor:
        return torch.sigmoid(self.linear(features))


class ToyTask(Task):
    """``x = a * burst`` with ``a = 0.2 + 0.8 * theta``; features: the envelope."""

    Settings = ToySettings
    param_names = ("amp",)

    def __init__(self, settings: ToySettings, n_samples: int) -> None:  # type: ignore[override]
        super().__init__(settings, n_samples)
        t = torch.arange(n_samples, dtype=torch.float32)
        window = torch.exp(-0.5 * ((t - n_samples / 2) / (n_samples / 8)) ** 2)
        self.burst = (window * torch.sin(2 * math.pi * 0.05 * t)).reshape(1, 1, -1)

    def _render(self, theta: Tensor) -> Tensor:
        return (0.2 + 0.8 * theta[:, :1, None]) * self.burst

    def features(self, x: Tensor) -> Tensor:
        hop = self.settings.hop
        return x.abs().reshape(x.shape[0], -1, hop).mean(-1)

    def make_model(self, seed: int) -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        model = _Model(self.n_samples // self.settings.hop)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        return model

    def _theta(self, g: torch.Generator, n: int) -> Tensor:
        return torch.rand(n, 1, generator=g)

    def batch(self, seed: int, index: int, batch_size: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(seed * 100_003 + index)
        theta = self._theta(g, batch_size)
        x = self._render(theta)
        return {"features": self.features(x), "x": x, "theta": theta}

    def render(self, theta: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return self._render(theta)

    def validation(self) -> dict[str, Tensor]:
        theta = self._theta(torch.Generator().manual_seed(99), self.settings.n_val)
        return {"features": self.features(self._render(theta)), "theta": theta}

    def warmup_batches(self, n_batches: int, batch_size: int, seed: int) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        g = torch.Generator().manual_seed(seed)
        return [{"x": self._render(self._theta(g, batch_size))} for _ in range(n_batches)], [{} for _ in range(n_batches)]

    def model_input(self, **kwargs: Tensor) -> Tensor:
        return self.features(kwargs["x"])

    def render_for_warmup(self, theta: Tensor, **kwargs: Any) -> Tensor:
        return self._render(theta)
