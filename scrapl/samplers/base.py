"""Common machinery of the probability-vector path samplers.

:class:`ProbabilitySampler` keeps a float64 CPU probability vector and a CPU
``torch.Generator`` and draws as follows:

* with ``sample_all_paths_first``, while some path was never drawn, it pops a
  uniformly random element of the list of unsampled paths
  (``torch.randint(0, len(unsampled), (1,), generator=g)``);
* then ``torch.multinomial(probs, 1, generator=g)``.

``sample(seed=...)`` re-seeds the generator first; a seeded draw then equals
scrapl-loss 0.1.0's ``forward(..., seed=...)`` draw (docs/compat.md).  An unseeded
draw uses the sampler's own generator, so a run is reproducible from the generator's
seed alone and a checkpoint (:meth:`ProbabilitySampler.state_dict`) resumes the same
sequence.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from scrapl.interfaces import PathSampler

__all__ = ["ProbabilitySampler", "validate_probs", "PROBS_SUM_TOL"]

PROBS_SUM_TOL = 1e-6
"""Maximum allowed ``|sum(probs) - 1|``."""


def validate_probs(probs: Any, n_paths: int, *, name: str = "probs") -> Tensor:
    """Check a probability vector and return it as a float64 CPU tensor.

    Args:
        probs: tensor (or sequence of numbers) of shape ``(n_paths,)``.
        n_paths: expected number of paths ``P``.
        name: how the value is called in error messages (an argument or a file).

    Raises:
        TypeError: ``probs`` is not a tensor or a sequence of numbers.
        ValueError: wrong shape, non-finite or negative entries, or a sum that
            differs from 1 by more than :data:`PROBS_SUM_TOL`.
    """
    if not isinstance(probs, Tensor):
        if isinstance(probs, (list, tuple)):
            try:
                probs = torch.tensor(probs, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"{name} must be a tensor or a sequence of numbers") from exc
        else:
            raise TypeError(f"{name} must be a torch.Tensor of shape ({n_paths},), got {type(probs).__name__}")
    if not probs.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {probs.dtype}")
    if tuple(probs.shape) != (n_paths,):
        raise ValueError(f"{name} has shape {tuple(probs.shape)}, expected ({n_paths},) (one probability per path)")
    out = probs.detach().to(device="cpu", dtype=torch.float64).clone()
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((out < 0).any()):
        raise ValueError(f"{name} contains negative values (min {float(out.min()):.3g})")
    total = float(out.sum())
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=PROBS_SUM_TOL):
        raise ValueError(f"{name} must sum to 1 (within {PROBS_SUM_TOL:g}), sums to {total!r}")
    return out


def _check_n_paths(n_paths: Any) -> int:
    if isinstance(n_paths, bool) or not isinstance(n_paths, int):
        raise TypeError(f"n_paths must be an int, got {type(n_paths).__name__}")
    if n_paths < 1:
        raise ValueError(f"n_paths must be >= 1, got {n_paths}")
    return n_paths


class ProbabilitySampler(PathSampler):
    """A path sampler drawing from a float64 CPU probability vector.

    Args:
        n_paths: number of paths ``P`` (>= 1).
        generator: CPU ``torch.Generator`` used for every draw; ``None`` creates a
            fresh one (torch's default seed, so still deterministic).
        probs: initial probabilities ``(P,)``; ``None`` = uniform ``1/P``.
        sample_all_paths_first: visit every path once, in random order, before
            drawing from ``probs``.
    """

    def __init__(
        self,
        n_paths: int,
        *,
        generator: Optional[torch.Generator] = None,
        probs: Optional[Tensor] = None,
        sample_all_paths_first: bool = False,
    ) -> None:
        self.n_paths = _check_n_paths(n_paths)
        if generator is None:
            generator = torch.Generator(device="cpu")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU generator (probabilities live on the CPU), got device {generator.device}")
        if not isinstance(sample_all_paths_first, bool):
            raise TypeError(f"sample_all_paths_first must be a bool, got {type(sample_all_paths_first).__name__}")
        self.generator = generator
        self.sample_all_paths_first = sample_all_paths_first
        self._probs = (
            torch.full((self.n_paths,), 1.0 / self.n_paths, dtype=torch.float64)
            if probs is None
            else validate_probs(probs, self.n_paths)
        )
        self.unsampled_paths: list[int] = list(range(self.n_paths))

    @property
    def uses_global_generator(self) -> bool:
        """Whether draws come from torch's global CPU generator (the drop-in built
        without a seed); its state is then not part of
        :meth:`state_dict`."""
        return self.generator is torch.default_generator

    # -- probabilities -------------------------------------------------------------
    @property
    def unif_prob(self) -> float:
        """The uniform probability ``1 / P``."""
        return 1.0 / self.n_paths

    @property
    def probs(self) -> Tensor:
        """Sampling probabilities, float64 ``(P,)`` on the CPU (a copy)."""
        return self._probs.clone()

    def set_probs(self, probs: Tensor) -> None:
        """Replace the sampling probabilities.

        Raises:
            ValueError / TypeError: see :func:`validate_probs`.
        """
        self._probs = validate_probs(probs, self.n_paths)

    # -- drawing ---------------------------------------------------------------------
    def sample(self, seed: Optional[int] = None) -> int:
        """Draw a path index in ``[0, P)``.

        Args:
            seed: if given, ``generator.manual_seed(seed)`` first.
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
            if not -(2**63) <= seed < 2**64:
                raise ValueError(f"seed must be in [-2**63, 2**64 - 1] (torch.Generator's range), got {seed}")
            self.generator.manual_seed(seed)
        if self.sample_all_paths_first and self.unsampled_paths:
            i = int(torch.randint(0, len(self.unsampled_paths), (1,), generator=self.generator).item())
            return self.unsampled_paths.pop(i)
        return int(torch.multinomial(self._probs, num_samples=1, generator=self.generator).item())

    def reset(self) -> None:
        """Forget which paths were drawn (``sample_all_paths_first`` starts over)."""
        self.unsampled_paths = list(range(self.n_paths))

    # -- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Probabilities, generator state (uint8 tensor) and the unsampled paths."""
        return {
            "n_paths": self.n_paths,
            "probs": self._probs.clone(),
            # torch's global generator belongs to the user: never saved or restored
            "generator_state": torch.empty(0, dtype=torch.uint8) if self.uses_global_generator
            else self.generator.get_state(),
            "unsampled_paths": torch.tensor(self.unsampled_paths, dtype=torch.int64),
            "sample_all_paths_first": self.sample_all_paths_first,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (also after ``torch.save`` /
        ``torch.load(weights_only=True)``).

        Raises:
            TypeError: ``state`` is not a mapping.
            ValueError: missing keys, a different ``n_paths``, or invalid values.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping, got {type(state).__name__}")
        missing = [k for k in ("n_paths", "probs", "generator_state", "unsampled_paths") if k not in state]
        if missing:
            raise ValueError(f"sampler state is missing keys {missing}")
        if int(state["n_paths"]) != self.n_paths:
            raise ValueError(f"sampler state is for n_paths={int(state['n_paths'])}, this sampler has n_paths={self.n_paths}")
        probs = validate_probs(state["probs"], self.n_paths, name="state['probs']")
        gen_state = state["generator_state"]
        if not isinstance(gen_state, Tensor) or gen_state.dtype != torch.uint8:
            raise ValueError("state['generator_state'] must be a uint8 tensor (torch.Generator.get_state())")
        unsampled = _as_index_list(state["unsampled_paths"], self.n_paths)
        if not self.uses_global_generator and gen_state.numel():
            self.generator.set_state(gen_state.clone())
        self._probs = probs
        self.unsampled_paths = unsampled
        if "sample_all_paths_first" in state:
            self.sample_all_paths_first = bool(state["sample_all_paths_first"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_paths={self.n_paths}, sample_all_paths_first={self.sample_all_paths_first}, "
            f"min_prob={float(self._probs.min()):.4g}, max_prob={float(self._probs.max()):.4g})"
        )


def _as_index_list(value: Any, n_paths: int) -> list[int]:
    if isinstance(value, Tensor):
        value = value.tolist()
    if not isinstance(value, Sequence):
        raise ValueError("state['unsampled_paths'] must be a list or 1-D tensor of path indices")
    out = [int(v) for v in value]
    if any(not 0 <= v < n_paths for v in out) or len(set(out)) != len(out):
        raise ValueError(f"state['unsampled_paths'] must hold distinct path indices in [0, {n_paths})")
    return out
