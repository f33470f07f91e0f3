"""The ``theta_is`` sampler: theta-importance sampling (theta-IS) from warmup curvatures.

Probabilities from curvatures
-----------------------------
For curvatures ``C`` of shape ``(P, U)`` (``C[p, u] = |lambda_max|`` of path ``p``
and synth parameter ``u``, see :mod:`scrapl.samplers.curvature`), per parameter
``u``, exactly as the reference ``SCRAPLLoss.update_prob`` once every path is known:

    log pi_u = log(clamp(C[:, u], eps)) - logsumexp(log(clamp(C[:, u], eps))) + log(1 - min_prob_frac)
    probs    = mean_u( exp(log pi_u) + min_prob_frac / P )

so every path keeps at least ``min_prob_frac / P`` and the sum is one.

Partial warmups (rows of ``C`` that are NaN, i.e. paths not computed yet): per
``u``, the ``k`` computed paths share the mass ``k / P`` in proportion to their
curvatures and every other path keeps the uniform ``1 / P`` (then the floor is mixed
in as above).  ``k = P`` gives the formula above, ``k <= 1`` gives uniform
probabilities.  This is what the reference's sequential updates produce from
uniform initial probabilities, written in closed form, so it does not depend on the
order in which paths were computed, and it never touches the probability of a path
it knows nothing about.  (The reference's ``load_probs_from_warmup_dir`` fails with
an assertion when ``min_prob_frac > 0``; ours works.)

Files (compatible with the reference both ways)
-----------------------------------------------
``<warmup_dir>/vals_{p}.pt``: tensor ``(G, U)`` of curvatures of path ``p`` (``G = 1``
unless the warmup used ``agg != "none"``, then one row per parameter tensor);
``<warmup_dir>/probs.pt`` / any ``probs_path``: float64 tensor ``(P,)``.  Written
with ``torch.save`` (atomically: temporary file + ``os.replace``), read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor

from scrapl.configs import PluginConfig
from scrapl.errors import WarmupError
from scrapl.interfaces import CurvatureSampler
from scrapl.samplers.base import ProbabilitySampler, validate_probs

__all__ = [
    "Agg",
    "InvalidWarmupFileError",
    "ThetaISSampler",
    "ThetaISSamplerConfig",
    "make_theta_is_sampler",
    "probs_from_curvatures",
    "aggregate_vals",
    "atomic_save",
    "vals_file",
    "probs_file",
    "load_vals_file",
    "load_probs_file",
    "save_probs_file",
    "load_warmup_dir",
]

Agg = Literal["none", "mean", "max", "med"]
AGGS: tuple[str, ...] = ("none", "mean", "max", "med")

_VALS_RE = re.compile(r"^vals_(\d+)\.pt$")


class InvalidWarmupFileError(WarmupError, ValueError):
    """A probabilities or warmup file exists but cannot be used (unreadable, wrong
    type, shape or values).  Both a :class:`~scrapl.errors.WarmupError` and a
    ``ValueError``; the message names the file and what was expected."""


# -- validation helpers -------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_min_prob_frac(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"min_prob_frac must be a float in [0, 1), got {type(value).__name__}")
    if not (0.0 <= float(value) < 1.0):
        raise ValueError(f"min_prob_frac must be in [0, 1), got {value!r}")
    return float(value)


def _check_eps(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"eps must be a positive float, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"eps must be a positive finite float, got {value!r}")
    return float(value)


def _check_agg(value: Any) -> str:
    if value not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {value!r}")
    return value


# -- probability math ---------------------------------------------------------------
def probs_from_curvatures(vals: Tensor, min_prob_frac: float = 0.0, eps: float = 1e-12) -> Tensor:
    """Sampling probabilities from theta-IS curvatures (log-space arithmetic).

    Args:
        vals: ``(P, U)`` non-negative curvatures; NaN marks a path (row) or entry
            not computed (see the module docs for how those are treated).
        min_prob_frac: floor as a fraction of the uniform probability, in [0, 1).
        eps: curvatures are clamped to at least ``eps`` before the log (> 0).

    Returns:
        float64 CPU tensor ``(P,)`` summing to one, every entry >=
        ``min_prob_frac / P``.

    Example:
        >>> import torch
        >>> [round(p, 6) for p in probs_from_curvatures(torch.tensor([[1.0], [3.0]])).tolist()]
        [0.25, 0.75]
    """
    if not isinstance(vals, Tensor):
        raise TypeError(f"vals must be a torch.Tensor of shape (n_paths, n_theta), got {type(vals).__name__}")
    if vals.ndim != 2 or vals.size(0) < 1 or vals.size(1) < 1:
        raise ValueError(f"vals must have shape (n_paths, n_theta), got {tuple(vals.shape)}")
    mpf = _check_min_prob_frac(min_prob_frac)
    eps = _check_eps(eps)
    v = vals.detach().to(device="cpu", dtype=torch.float64)
    known = ~torch.isnan(v)
    if bool(torch.isinf(v).any()):
        raise ValueError("vals contains infinite values")
    if bool((v[known] < 0).any()):
        raise ValueError("vals must be non-negative (absolute eigenvalues)")
    P = v.size(0)
    log_unif = math.log(1.0 / P)
    log_v = torch.where(known, v.clamp(min=eps).log(), torch.full_like(v, -math.inf))
    k = known.sum(dim=0)  # (U,)
    lse = torch.logsumexp(log_v, dim=0)  # (U,), -inf where k == 0
    frac = k.double() / P
    log_probs = log_v - lse + torch.where(k > 0, frac.log(), torch.zeros_like(frac))
    log_probs = torch.where(known, log_probs, torch.full_like(log_probs, log_unif))
    log_probs = log_probs + math.log(1.0 - mpf)
    min_prob = (1.0 / P) * mpf
    probs = (log_probs.exp() + min_prob).mean(dim=1)
    total = float(probs.sum())
    if not math.isclose(total, 1.0, abs_tol=1e-9):  # cannot happen short of a bug
        raise WarmupError(f"internal error: theta-IS probabilities sum to {total!r}")
    return probs


def aggregate_vals(vals: Tensor, agg: Agg = "none", *, name: str = "vals") -> Tensor:
    """Reduce a warmup file's ``(G, U)`` curvatures to ``(U,)`` (reference semantics:
    ``"none"`` requires ``G == 1``; ``"med"`` is ``torch.median``, the lower median)."""
    _check_agg(agg)
    if agg == "none":
        if vals.size(0) != 1:
            raise InvalidWarmupFileError(f"{name} has shape {tuple(vals.shape)}; with agg='none' the expected shape is (1, n_theta)")
        return vals[0]
    if agg == "mean":
        return vals.mean(dim=0)
    if agg == "max":
        return vals.max(dim=0).values
    return vals.median(dim=0).values


# -- files --------------------------------------------------------------------------
def vals_file(warmup_dir: str | os.PathLike, path_idx: int) -> str:
    """``<warmup_dir>/vals_{path_idx}.pt``."""
    return os.path.join(os.fspath(warmup_dir), f"vals_{path_idx}.pt")


def probs_file(warmup_dir: str | os.PathLike) -> str:
    """``<warmup_dir>/probs.pt``."""
    return os.path.join(os.fspath(warmup_dir), "probs.pt")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same directory and
    ``os.replace``: readers (and an interrupted run) never see a partial file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_" + os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_tensor(path: str, what: str) -> Tensor:
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise InvalidWarmupFileError(f"{what} {path!r} is not a regular file")
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors vary; the file is unusable either way
        raise InvalidWarmupFileError(f"{what} {path!r} could not be read with torch.load(weights_only=True) (corrupt or not a tensor file): {exc}") from exc
    if not isinstance(obj, Tensor):
        raise InvalidWarmupFileError(f"{what} {path!r} holds a {type(obj).__name__}, expected a tensor")
    return obj


def load_vals_file(path: str | os.PathLike, n_theta: int) -> Tensor:
    """Read one ``vals_{p}.pt``: a non-negative finite tensor of shape ``(G, n_theta)``.

    Returns it as float64.  Raises ``FileNotFoundError`` or
    :class:`InvalidWarmupFileError` (naming the file and the expected shape).
    """
    path = os.fspath(path)
    t = _load_tensor(path, "warmup file")
    if t.ndim != 2 or t.size(0) < 1 or t.size(1) != n_theta or not t.is_floating_point():
        raise InvalidWarmupFileError(
            f"warmup file {path!r} holds a {t.dtype} tensor of shape {tuple(t.shape)}, expected a float tensor of shape "
            f"(n_groups, n_theta) = (1, {n_theta}) (n_groups > 1 only for agg != 'none')"
        )
    t = t.double()
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise InvalidWarmupFileError(f"warmup file {path!r} must hold finite non-negative curvatures")
    return t


def load_probs_file(path: str | os.PathLike, n_paths: int) -> Tensor:
    """Read a probabilities file: float64 ``(n_paths,)``, non-negative, summing to one.

    Raises ``FileNotFoundError`` or :class:`InvalidWarmupFileError` (a ``ValueError``).
    """
    path = os.fspath(path)
    t = _load_tensor(path, "probabilities file")
    try:
        return validate_probs(t, n_paths, name=f"probabilities file {path!r}")
    except (ValueError, TypeError) as exc:
        raise InvalidWarmupFileError(str(exc)) from exc


def save_probs_file(probs: Tensor, path: str | os.PathLike) -> None:
    """Validate ``probs`` (``(P,)``) and write it atomically as float64."""
    probs = validate_probs(probs, int(probs.numel()) if isinstance(probs, Tensor) else len(probs))
    atomic_save(probs, path)


def load_warmup_dir(
    warmup_dir: str | os.PathLike,
    n_paths: int,
    n_theta: int,
    agg: Agg = "none",
    *,
    require_complete: bool = False,
) -> Tensor:
    """Read every ``vals_{p}.pt`` of a warmup directory.

    Args:
        warmup_dir: the directory (must exist).
        n_paths, n_theta: expected ``P`` and ``U``.
        agg: how multi-row files are reduced (:func:`aggregate_vals`).
        require_complete: raise :class:`~scrapl.errors.WarmupError` listing the
            missing paths instead of warning about them.

    Returns:
        ``(P, U)`` float64 tensor; rows of missing paths are NaN.
    """
    _check_int("n_paths", n_paths, 1)
    _check_int("n_theta", n_theta, 1)
    _check_agg(agg)
    d = os.fspath(warmup_dir)
    if not os.path.exists(d):
        raise FileNotFoundError(f"warmup_dir {d!r} does not exist")
    if not os.path.isdir(d):
        raise NotADirectoryError(f"warmup_dir {d!r} is not a directory")
    extra = sorted(int(m.group(1)) for m in map(_VALS_RE.match, os.listdir(d)) if m and int(m.group(1)) >= n_paths)
    if extra:
        raise WarmupError(f"warmup_dir {d!r} has curvature files for path(s) {extra[:5]} but n_paths={n_paths}: wrong directory or configuration?")
    out = torch.full((n_paths, n_theta), math.nan, dtype=torch.float64)
    missing = []
    for p in range(n_paths):
        f = vals_file(d, p)
        if not os.path.exists(f):
            missing.append(p)
            continue
        out[p] = aggregate_vals(load_vals_file(f, n_theta), agg, name=f"warmup file {f!r}")
    if missing:
        msg = f"warmup_dir {d!r} has no curvature file for {len(missing)} of {n_paths} paths (e.g. {missing[:5]})"
        if require_complete:
            raise WarmupError(msg)
        warnings.warn(msg + "; those paths keep the uniform probability", RuntimeWarning, stacklevel=2)
    return out


# -- the sampler --------------------------------------------------------------------
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
        self.n_theta = _check_int("n_theta", n_theta, 1)
        self.min_prob_frac = _check_min_prob_frac(min_prob_frac)
        self.eps = _check_eps(eps)
        self.agg: Agg = _check_agg(agg)  # type: ignore[assignment]
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
        current ones (several partial warmups add up, as in the reference)."""
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
        from scrapl.samplers.warmup import run_warmup  # warmup imports this module

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
        curv = state.get("curvatures") if isinstance(state, Mapping) else None
        if curv is not None:
            curv = self._check_vals(curv)
        super().load_state_dict(state)
        if curv is not None:
            self.curvatures = curv.clone()
        lp = state.get("loaded_probs_path")
        self.loaded_probs_path = None if lp is None else str(lp)


def make_theta_is_sampler(config: ThetaISSamplerConfig | Mapping[str, Any], *, n_paths: int, generator: torch.Generator) -> ThetaISSampler:
    """Plugin factory: build a :class:`ThetaISSampler` from its config (loading
    ``probs_path`` / ``warmup_dir`` if given)."""
    cfg = config if isinstance(config, ThetaISSamplerConfig) else ThetaISSamplerConfig.model_validate(config)
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
