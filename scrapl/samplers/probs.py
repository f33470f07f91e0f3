"""theta-IS probabilities from warmup curvatures (pure functions, log-space).

For curvatures ``C`` of shape ``(P, U)`` (``C[p, u] = |lambda_max|`` of path ``p``
and synth parameter ``u``, see :mod:`scrapl.samplers.curvature`), per parameter
``u``:

    log pi_u = log(clamp(C[:, u], eps)) - logsumexp(log(clamp(C[:, u], eps))) + log(1 - min_prob_frac)
    probs    = mean_u( exp(log pi_u) + min_prob_frac / P )

so every path keeps at least ``min_prob_frac / P`` and the sum is one.

Partial warmups (rows of ``C`` that are NaN, i.e. paths not computed yet): per
``u``, the ``k`` computed paths share the mass ``k / P`` in proportion to their
curvatures and every other path keeps the uniform ``1 / P`` (then the floor is mixed
in as above).  ``k = P`` gives the formula above, ``k <= 1`` gives uniform
probabilities.  This closed form does not depend on the order in which paths were
computed, and never touches the probability of a path it knows nothing about.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from scrapl import checks
from scrapl.errors import InvalidWarmupFileError, WarmupError

__all__ = ["AGGS", "Agg", "aggregate_vals", "check_agg", "check_eps", "check_min_prob_frac", "log_probs_from_curvatures",
           "probs_from_curvatures"]

Agg = Literal["none", "mean", "max", "med"]
AGGS: tuple[str, ...] = ("none", "mean", "max", "med")


def check_min_prob_frac(value: object) -> float:
    """``min_prob_frac`` as a float in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"min_prob_frac must be a float in [0, 1), got {type(value).__name__}")
    return checks.check_number("min_prob_frac", value, low=0.0, high=1.0, high_open=True)


def check_eps(value: object) -> float:
    """``eps`` as a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"eps must be a positive float, got {type(value).__name__}")
    return checks.check_number("eps", value, low=0.0, low_open=True)


def check_agg(value: object) -> str:
    """``agg`` as one of :data:`AGGS`."""
    if value not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {value!r}")
    return value  # type: ignore[return-value]


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
    log_probs = log_probs_from_curvatures(vals, min_prob_frac, eps)
    P = log_probs.size(0)
    probs = (log_probs.exp() + min_prob_frac / P).mean(dim=1)
    total = float(probs.sum())
    if not math.isclose(total, 1.0, abs_tol=1e-9):  # cannot happen short of a bug
        raise WarmupError(f"internal error: theta-IS probabilities sum to {total!r}")
    return probs


def log_probs_from_curvatures(vals: Tensor, min_prob_frac: float = 0.0, eps: float = 1e-12) -> Tensor:
    """Per-parameter log probabilities ``log pi_u`` (``log(1 - min_prob_frac)``
    included), float64 ``(P, U)``; :func:`probs_from_curvatures` averages
    ``exp(.) + min_prob_frac / P`` over ``u``.  Arguments as there."""
    if not isinstance(vals, Tensor):
        raise TypeError(f"vals must be a torch.Tensor of shape (n_paths, n_theta), got {type(vals).__name__}")
    if vals.ndim != 2 or vals.size(0) < 1 or vals.size(1) < 1:
        raise ValueError(f"vals must have shape (n_paths, n_theta), got {tuple(vals.shape)}")
    mpf = check_min_prob_frac(min_prob_frac)
    eps = check_eps(eps)
    v = vals.detach().to(device="cpu", dtype=torch.float64)
    known = ~torch.isnan(v)
    if bool(torch.isinf(v).any()):
        raise ValueError("vals contains infinite values")
    if bool((v[known] < 0).any()):
        raise ValueError("vals must be non-negative (absolute eigenvalues)")
    P = v.size(0)
    log_v = torch.where(known, v.clamp(min=eps).log(), torch.full_like(v, -math.inf))
    k = known.sum(dim=0)  # (U,)
    lse = torch.logsumexp(log_v, dim=0)  # (U,), -inf where k == 0
    frac = k.double() / P
    log_probs = log_v - lse + torch.where(k > 0, frac.log(), torch.zeros_like(frac))
    log_probs = torch.where(known, log_probs, torch.full_like(log_probs, math.log(1.0 / P)))
    return log_probs + math.log(1.0 - mpf)


def aggregate_vals(vals: Tensor, agg: Agg = "none", *, name: str = "vals") -> Tensor:
    """Reduce a warmup file's ``(G, U)`` curvatures to ``(U,)`` (``"none"`` requires
    ``G == 1``; ``"med"`` is ``torch.median``, the lower median)."""
    check_agg(agg)
    if agg == "none":
        if vals.size(0) != 1:
            raise InvalidWarmupFileError(f"{name} has shape {tuple(vals.shape)}; with agg='none' the expected shape is (1, n_theta)")
        return vals[0]
    if agg == "mean":
        return vals.mean(dim=0)
    if agg == "max":
        return vals.max(dim=0).values
    return vals.median(dim=0).values
