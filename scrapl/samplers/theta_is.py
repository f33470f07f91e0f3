"""The ``theta_is`` sampler: theta-importance sampling (theta-IS) from warmup curvatures.

Probabilities follow :func:`scrapl.samplers.probs.probs_from_curvatures`; files are
read and written by :mod:`scrapl.samplers.files`; the curvatures come from
:func:`scrapl.samplers.warmup.run_warmup`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor

from scrapl import checks
from scrapl.configs import PluginConfig
from scrapl.interfaces import CurvatureSampler
from scrapl.samplers.base import ProbabilitySampler, validate_probs
from scrapl.samplers.files import InvalidWarmupFileError, load_probs_file, load_warmup_dir
from scrapl.samplers.probs import Agg, check_agg, check_eps, check_min_prob_frac, probs_from_curvatures
from scrapl.samplers.warmup import run_warmup

__all__ = ["ThetaISSampler", "ThetaISSamplerConfig", "make_theta_is", "make_theta_is_sampler"]


class ThetaISSamplerConfig(PluginConfig):
    """Config of the ``theta_is`` sampler.

    Attributes:
        n_theta: number of synth parameters ``U`` (>= 1).
        min_prob_frac: probability floor as a fraction of ``1/P``, in [0, 1).
        probs_path: load probabilities from this ``.pt`` file at construction.
        warmup_dir: or compute them from this warmup directory's ``vals_{p}.pt``.
        agg: reduction of multi-row warmup files (``"none"``, ``"mean"``, ``"max"``,
            ``"med"``).
        eps: curvature clamp before the log (> 0).
        sample_all_paths_first: visit every path once before importance sampling.
    """

    name: Literal["theta_is"] = "theta_is"
    n_theta: int = Field(default=1, ge=1)
    min_prob_frac: float = Field(default=0.0, ge=0.0, lt=1.0)
    probs_path: Optional[str] = None
    warmup_dir: Optional[str] = None
    agg: Agg = "none"
    eps: float = Field(default=1e-12, gt=0.0)
    sample_all_paths_first: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> "ThetaISSamplerConfig":
        if self.probs_path is not None and self.warmup_dir is not None:
            raise ValueError("give at most one of probs_path and warmup_dir")
        return self


class ThetaISSampler(ProbabilitySampler, CurvatureSampler):
    """Importance sampling of paths from theta-IS curvatures.

    Until curvatures or probabilities are given, it samples uniformly.

    Args:
        n_paths: number of paths ``P``.
        n_theta: number of synth parameters ``U`` (>= 1).
        min_prob_frac: floor ``min_prob_frac / P`` on every probability, in [0, 1).
        eps: clamp of curvatures before the log.
        probs_path: load probabilities from this file now (:meth:`load_probs`).
        warmup_dir: or from this warmup directory (:meth:`load_warmup_dir`).
        agg: reduction of multi-row warmup files.
        sample_all_paths_first: visit every path once first.
        generator: CPU generator of all draws.

    Attributes:
        curvatures: ``(P, U)`` float64, NaN for paths not computed.
        loaded_probs_path: the file or directory the probabilities came from, if any.

    Example:
        >>> import torch
        >>> s = ThetaISSampler(3, n_theta=2, min_prob_frac=0.5, generator=torch.Generator().manual_seed(0))
        >>> s.set_curvatures(torch.tensor([[1.0, 2.0], [1.0, 0.0], [2.0, 2.0]]))
        >>> [round(p, 4) for p in s.probs.tolist()]
        [0.3542, 0.2292, 0.4167]
    """

    def __init__(
        self,
        n_paths: int,
        *,
        n_theta: int = 1,
        min_prob_frac: float = 0.0,
        eps: float = 1e-12,
        probs_path: Optional[str | os.PathLike] = None,
        warmup_dir: Optional[str | os.PathLike] = None,
        agg: Agg = "none",
        sample_all_paths_first: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__(n_paths, generator=generator, sample_all_paths_first=sample_all_paths_first)
        self.n_theta = checks.check_int("n_theta", n_theta, 1)
        self.min_prob_frac = check_min_prob_frac(min_prob_frac)
        self.eps = check_eps(eps)
        self.agg: Agg = check_agg(agg)  # type: ignore[assignment]
        if probs_path is not None and warmup_dir is not None:
            raise ValueError("give at most one of probs_path and warmup_dir")
        self.curvatures = torch.full((self.n_paths, self.n_theta), math.nan, dtype=torch.float64)
        self.loaded_probs_path: Optional[str] = None
        if probs_path is not None:
            self.load_probs(probs_path)
        elif warmup_dir is not None:
            self.load_warmup_dir(warmup_dir)

    @property
    def min_prob(self) -> float:
        """The probability floor ``min_prob_frac / P``."""
        return (1.0 / self.n_paths) * self.min_prob_frac

    def set_probs(self, probs: Tensor) -> None:
        """Replace the probabilities (validated, and at least :attr:`min_prob` each).

        Raises:
            ValueError / TypeError: invalid probabilities.
        """
        probs = validate_probs(probs, self.n_paths)
        if float(probs.min()) < self.min_prob - 1e-12:
            raise ValueError(f"probs has a minimum {float(probs.min())!r} below min_prob_frac / n_paths = {self.min_prob!r}")
        self._probs = probs

    # -- curvatures ------------------------------------------------------------------
    def _check_vals(self, vals: Tensor) -> Tensor:
        if not isinstance(vals, Tensor):
            raise TypeError(f"vals must be a torch.Tensor of shape ({self.n_paths}, {self.n_theta}), got {type(vals).__name__}")
        if tuple(vals.shape) != (self.n_paths, self.n_theta):
            raise ValueError(f"vals has shape {tuple(vals.shape)}, expected (n_paths, n_theta) = ({self.n_paths}, {self.n_theta})")
        v = vals.detach().to(device="cpu", dtype=torch.float64)
        if bool(torch.isinf(v).any()) or bool((v[~torch.isnan(v)] < 0).any()):
            raise ValueError("vals must hold non-negative finite curvatures (NaN = not computed)")
        return v

    def set_curvatures(self, vals: Tensor) -> None:
        """Replace all curvatures (``(P, U)``, NaN = unknown) and recompute the
        probabilities with :func:`probs_from_curvatures`."""
        v = self._check_vals(vals)
        probs = probs_from_curvatures(v, self.min_prob_frac, self.eps)
        self.curvatures = v.clone()
        self._probs = probs
        self.loaded_probs_path = None

    def update_curvatures(self, vals: Tensor) -> None:
        """Merge new curvatures: non-NaN entries of ``vals`` overwrite, NaN keep the
        current ones (several partial warmups add up)."""
        v = self._check_vals(vals)
        merged = torch.where(torch.isnan(v), self.curvatures, v)
        self.set_curvatures(merged)

    def clear_curvatures(self) -> None:
        """Forget curvatures and loaded probabilities: back to uniform."""
        self.curvatures = torch.full((self.n_paths, self.n_theta), math.nan, dtype=torch.float64)
        self._probs = torch.full((self.n_paths,), 1.0 / self.n_paths, dtype=torch.float64)
        self.loaded_probs_path = None

    reset_probs = clear_curvatures

    def load_probs(self, probs_path: str | os.PathLike) -> None:
        """Load probabilities from a ``.pt`` file (``torch.load(weights_only=True)``).

        Raises:
            FileNotFoundError: no such file.
            InvalidWarmupFileError: unreadable, not a tensor, wrong shape ``(P,)``,
                negative, below the floor or not summing to one.
        """
        probs = load_probs_file(probs_path, self.n_paths)
        try:
            self.set_probs(probs)
        except ValueError as exc:
            raise InvalidWarmupFileError(f"probabilities file {os.fspath(probs_path)!r}: {exc}") from exc
        self.curvatures = torch.full((self.n_paths, self.n_theta), math.nan, dtype=torch.float64)
        self.loaded_probs_path = os.fspath(probs_path)

    def load_warmup_dir(self, warmup_dir: str | os.PathLike, agg: Optional[Agg] = None, *, require_complete: bool = False) -> None:
        """Set the curvatures from a warmup directory (missing paths: a warning and the
        partial rule, or a :class:`~scrapl.errors.WarmupError` if ``require_complete``)."""
        vals = load_warmup_dir(warmup_dir, self.n_paths, self.n_theta, self.agg if agg is None else agg, require_complete=require_complete)
        self.set_curvatures(vals)
        self.loaded_probs_path = os.fspath(warmup_dir)

    def warmup(
        self,
        dist_fn: Callable[[Tensor, Tensor, int], Tensor],
        theta_fn: Callable[..., Tensor],
        synth_fn: Callable[..., Tensor],
        theta_fn_kwargs: Sequence[Mapping[str, Any]],
        params: Sequence[Tensor],
        synth_fn_kwargs: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
        **kwargs: Any,
    ) -> Tensor:
        """Run :func:`scrapl.samplers.warmup.run_warmup` with this sampler's ``n_paths``,
        ``n_theta``, ``min_prob_frac``, ``eps`` and ``agg`` (other keywords are passed
        on) and merge the result with :meth:`update_curvatures`.

        Returns:
            The ``(P, U)`` curvatures of this run (NaN for paths it did not cover).
        """
        kwargs.setdefault("agg", self.agg)
        vals = run_warmup(
            dist_fn,
            self.n_paths,
            self.n_theta,
            theta_fn,
            synth_fn,
            theta_fn_kwargs,
            params,
            synth_fn_kwargs,
            min_prob_frac=self.min_prob_frac,
            eps=self.eps,
            **kwargs,
        )
        self.update_curvatures(vals)
        return vals

    # -- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Base state plus curvatures, ``n_theta``, ``min_prob_frac``, ``eps`` and the
        loaded file name."""
        state = super().state_dict()
        state.update(
            curvatures=self.curvatures.clone(),
            n_theta=self.n_theta,
            min_prob_frac=self.min_prob_frac,
            eps=self.eps,
            loaded_probs_path=self.loaded_probs_path,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: invalid state or one made for a different ``n_theta``.
        """
        if isinstance(state, Mapping) and "n_theta" in state and int(state["n_theta"]) != self.n_theta:
            raise ValueError(f"sampler state is for n_theta={int(state['n_theta'])}, this sampler has n_theta={self.n_theta}")
        if isinstance(state, Mapping):
            # The configured floor and eps win over a checkpoint's: refuse one made with others.
            for key in ("min_prob_frac", "eps"):
                if key in state and float(state[key]) != float(getattr(self, key)):
                    raise ValueError(f"sampler state was made with {key}={float(state[key])!r}, this sampler is "
                                     f"configured with {key}={float(getattr(self, key))!r}; rebuild it with that value "
                                     "or recompute the probabilities")
            probs = state.get("probs")
            floor = self.min_prob_frac / self.n_paths
            if isinstance(probs, Tensor) and probs.numel() and float(probs.detach().double().min()) < floor * (1 - 1e-9):
                raise ValueError(f"state['probs'] has a probability {float(probs.min()):.3g} below this sampler's floor "
                                 f"min_prob_frac / P = {floor:.3g}")
        curv = state.get("curvatures") if isinstance(state, Mapping) else None
        if curv is not None:
            curv = self._check_vals(curv)
        super().load_state_dict(state)
        if curv is not None:
            self.curvatures = curv.clone()
        lp = state.get("loaded_probs_path")
        self.loaded_probs_path = None if lp is None else str(lp)


def make_theta_is(config: ThetaISSamplerConfig | Mapping[str, Any], *, n_paths: int, generator: torch.Generator) -> ThetaISSampler:
    """Plugin factory: build a :class:`ThetaISSampler` from its config (loading
    ``probs_path`` / ``warmup_dir`` if given)."""
    cfg = ThetaISSamplerConfig.coerce(config)
    return ThetaISSampler(
        n_paths,
        n_theta=cfg.n_theta,
        min_prob_frac=cfg.min_prob_frac,
        eps=cfg.eps,
        probs_path=cfg.probs_path,
        warmup_dir=cfg.warmup_dir,
        agg=cfg.agg,
        sample_all_paths_first=cfg.sample_all_paths_first,
        generator=generator,
    )


make_theta_is_sampler = make_theta_is
"""Earlier name of :func:`make_theta_is`."""
