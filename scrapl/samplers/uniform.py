"""The ``uniform`` sampler: every path with probability ``1/P`` (unbiased SCRAPL)."""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

import torch
from torch import Tensor

from scrapl.configs import PluginConfig
from scrapl.samplers.base import ProbabilitySampler

__all__ = ["UniformSampler", "UniformSamplerConfig", "make_uniform", "make_uniform_sampler"]


class UniformSamplerConfig(PluginConfig):
    """Config of the ``uniform`` sampler.

    Attributes:
        sample_all_paths_first: visit every path once (random order) before
            drawing uniformly.
    """

    name: Literal["uniform"] = "uniform"
    sample_all_paths_first: bool = False


class UniformSampler(ProbabilitySampler):
    """Draws every path with probability ``1/P`` (the unbiased estimator of the
    full scattering distance).

    Example:
        >>> import torch
        >>> s = UniformSampler(7, generator=torch.Generator().manual_seed(0))
        >>> 0 <= s.sample() < 7
        True
        >>> s.sample(seed=42) == s.sample(seed=42)
        True
    """

    def __init__(self, n_paths: int, *, generator: Optional[torch.Generator] = None, sample_all_paths_first: bool = False) -> None:
        super().__init__(n_paths, generator=generator, sample_all_paths_first=sample_all_paths_first)

    def set_probs(self, probs: Tensor) -> None:
        """Not supported: a uniform sampler's probabilities are fixed.

        Raises:
            TypeError: always; use :class:`scrapl.samplers.ThetaISSampler` for
                non-uniform probabilities.
        """
        raise TypeError("UniformSampler has fixed probabilities 1/P; use ThetaISSampler (sampler name 'theta_is') to set them")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state; its probabilities must be uniform.

        Raises:
            ValueError: invalid state, or non-uniform ``state['probs']``.
        """
        if isinstance(state, Mapping) and isinstance(state.get("probs"), Tensor):
            probs = state["probs"].detach().double().cpu()
            if probs.shape == (self.n_paths,) and not torch.allclose(probs, torch.full_like(probs, 1.0 / self.n_paths), rtol=0, atol=1e-12):
                raise ValueError("state['probs'] is not uniform; it belongs to a non-uniform sampler (e.g. 'theta_is')")
        super().load_state_dict(state)


def make_uniform(config: UniformSamplerConfig | Mapping[str, Any], *, n_paths: int, generator: torch.Generator) -> UniformSampler:
    """Plugin factory: build a :class:`UniformSampler` from its config."""
    cfg = UniformSamplerConfig.coerce(config)
    return UniformSampler(n_paths, generator=generator, sample_all_paths_first=cfg.sample_all_paths_first)


make_uniform_sampler = make_uniform
"""Earlier name of :func:`make_uniform`."""
