"""The SCRAPL loss: a scattering distance evaluated on one random path per step.

:class:`SCRAPLLoss` combines a :class:`~scrapl.interfaces.ScatteringTransform` (which
computes one path's coefficients) with a :class:`~scrapl.interfaces.PathSampler`
(which draws the path).  For signals ``x`` and ``x_target`` of shape
``(batch, channels, samples)`` and a path ``i``,

.. code-block:: text

    d_i(x, x_target) = || rho(phi_i(x)) - rho(phi_i(x_target)) ||_p      (per example)

where the norm runs over the path's (frequency, time) array, ``rho`` is the identity
or ``log1p(S / log1p_eps)``, and the examples are then averaged (``reduction="mean"``,
the reference), summed, or returned as a ``(batch, channels)`` tensor.  The full-tree
distance is the mean of ``d_i`` over all ``P`` paths (:meth:`SCRAPLLoss.full_distance`);
with uniform sampling the one-path gradient is an unbiased estimate of its gradient.

Two ways to build it:

* ``SCRAPLLoss(shape, J, Q1, Q2, J_fr, Q_fr, ...)``: the drop-in replacement of
  ``scrapl-loss`` 0.1.0 (same arguments and defaults; JTFS transform, a path sampler,
  a new path at every training forward, reference loss values);
* ``SCRAPLLoss.from_components(transform, sampler, config)`` (used by
  :func:`scrapl.build`): any registered transform and sampler; by default one path per
  optimizer step (see :meth:`SCRAPLLoss.consume_path`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import math
import operator
import os
import warnings
from collections import defaultdict
from typing import Any, Callable, Iterable, Literal, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from scrapl.configs import LossConfig
from scrapl.interfaces import PathInfo, PathSampler, ScatteringTransform

__all__ = ["SCRAPLLoss"]

log = logging.getLogger(__name__)

_EXTRA_STATE_VERSION = 1
_HELD_PATH_WARN_AFTER = 1000
"""Warn (once) when ``path_per_step=True`` reused one path for this many training
forwards without :meth:`SCRAPLLoss.consume_path` (usually: a plain optimizer that
never consumes the path, so the loss is stuck on one path)."""


_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _full_precision(method: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a distance method in float32 whatever the caller's precision.

    Half-precision inputs (``float16``/``bfloat16``, e.g. a model output under
    ``torch.autocast``) are cast to float32 (gradients flow back in their dtype),
    and autocast is switched off for the input's device while the transform runs,
    so the distance is computed, and returned, in float32 (float64 stays float64).
    """

    @functools.wraps(method)
    def wrapper(self: Any, x: Any, x_target: Any, *args: Any, **kwargs: Any) -> Tensor:
        if isinstance(x, Tensor) and x.dtype in _HALF_DTYPES:
            x = x.float()
        if isinstance(x_target, Tensor) and x_target.dtype in _HALF_DTYPES:
            x_target = x_target.float()
        with contextlib.ExitStack() as stack:
            if isinstance(x, Tensor) and torch.is_autocast_enabled(x.device.type):
                stack.enter_context(torch.autocast(x.device.type, enabled=False))
            return method(self, x, x_target, *args, **kwargs)

    return wrapper


def _check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds, or ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok):
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {lo or '(-inf'}, {hi or 'inf)'}, got {value!r}")
    return float(value)


def _check_p(p: Any) -> float:
    """The norm order: a number > 0 (``inf`` allowed: the max norm)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or p <= 0:
        raise ValueError(f"p must be a number > 0 (the order of the norm; inf allowed), got {p!r}")
    return float(p)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def _index(name: str, value: Any, n: int) -> int:
    """An int in ``[0, n)`` (Python/numpy ints and 0-d integer tensors accepted)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int in [0, {n}), got {value!r}")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must be an int in [0, {n}), got a tensor of shape {tuple(value.shape)} "
                            f"and dtype {value.dtype}")
        value = int(value.item())
    try:
        idx = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int in [0, {n}), got {type(value).__name__} {value!r}") from None
    if not 0 <= idx < n:
        raise ValueError(f"{name} must be in [0, {n}) (the loss has {n} paths), got {idx}")
    return idx


def _copy_state(obj: Any) -> Any:
    """Deep copy of a state container (tensors cloned, containers rebuilt)."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, Mapping):
        return {k: _copy_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_copy_state(v) for v in obj)
    if isinstance(obj, set):
        return {_copy_state(v) for v in obj}
    return copy.deepcopy(obj)


class SCRAPLLoss(nn.Module):
    """SCRAPL loss: the scattering distance on one randomly drawn path.

    Drop-in replacement of ``scrapl.SCRAPLLoss`` from ``scrapl-loss`` 0.1.0: the
    positional/keyword arguments and their defaults are the reference's, and path
    index ``i`` means the same JTFS path ``(n2, n_fr)``.  Loss values equal the
    reference's (which keeps the padded time frames: ``crop_time=False``).

    Args:
        shape: signal length in samples (``x.shape[-1]``).
        J: number of octaves of the JTFS time filters (first and second order).
        Q1: wavelets per octave of the first-order time filters.
        Q2: wavelets per octave of the second-order time filters.
        J_fr: number of octaves of the frequential filters.
        Q_fr: wavelets per octave of the frequential filters.
        T: temporal averaging size in samples (``None``: ``2**J``).
        F: frequential averaging size in bins (``None``: ``2**J_fr``).
        p: order of the norm of each path's coefficient difference (> 0).
        use_rho_log1p: compare ``log1p(S / log1p_eps)`` instead of ``S``.
        log1p_eps: scale of the log1p compression (> 0).
        grad_mult: gradient multiplier applied by the :meth:`attach_params` hooks
            (> 1 required when ``use_p_adam`` and not ``use_rho_log1p``, as in the
            reference: per-path JTFS gradients are tiny and Adam's ``eps`` would swamp
            them).
        use_p_adam: apply P-Adam in the :meth:`attach_params` hooks.
        use_p_saga: apply P-SAGA in the :meth:`attach_params` hooks.
        sample_all_paths_first: visit every path once (in random order) before
            sampling from the probabilities.
        n_theta: number of synthesizer parameters for theta-IS (:meth:`warmup_lc_hvp`).
        min_prob_frac: theta-IS floor: every path keeps at least
            ``min_prob_frac / n_paths`` probability (in ``[0, 1)``).
        probs_path: ``.pt`` file with sampling probabilities of shape ``(n_paths,)``.
        eps: numerical floor of the probability arithmetic (> 0).
        p_adam_b1, p_adam_b2: P-Adam betas (in ``[0, 1)``).
        p_adam_eps: P-Adam epsilon (> 0).

    Keyword-only extras (not in the reference):
        seed: seed of the sampler's private ``torch.Generator``.  ``None`` draws it
            from torch's global generator at construction, so ``torch.manual_seed``
            before building the loss makes the path sequence reproducible.
        reduction: ``"mean"`` (reference), ``"sum"`` or ``"none"`` (``(batch,
            channels)``).
        eval_paths: ``"sample"`` (reference: a random path in ``eval()`` mode too) or
            ``"all"`` (``eval()`` forwards return :meth:`full_distance`).
        crop_time: crop padded time frames (``False`` = reference values).
        path_per_step: ``False`` (reference): a new path at every training forward.
            ``True``: training forwards reuse one path until :meth:`consume_path`.
        check_finite: raise ``ValueError`` on NaN/inf inputs.

    The sampler is always a theta-IS sampler (``scrapl.samplers.ThetaISSampler``): with
    its initial uniform probabilities it draws exactly like the uniform sampler of
    the reference (``torch.multinomial`` on the probability vector), and it is what
    :meth:`warmup_lc_hvp` and ``probs_path`` update.

    Shapes:
        ``forward(x, x_target)``: both ``(batch, channels, shape)``, floating point;
        returns a scalar (or ``(batch, channels)`` with ``reduction="none"``).

    Example:
        >>> import torch
        >>> from scrapl import SCRAPLLoss
        >>> loss_fn = SCRAPLLoss(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2, seed=0)
        >>> x, y = torch.randn(2, 1, 4096), torch.randn(2, 1, 4096)
        >>> loss_fn(x, y, path_idx=3).shape
        torch.Size([])
    """

    transform: ScatteringTransform
    sampler: PathSampler

    def __init__(
        self,
        shape: int,
        J: int,
        Q1: int,
        Q2: int,
        J_fr: int,
        Q_fr: int,
        T: Optional[int | str] = None,
        F: Optional[int | str] = None,
        p: float = 2,
        use_rho_log1p: bool = False,
        log1p_eps: float = 1e-3,
        grad_mult: float = 1e8,
        use_p_adam: bool = True,
        use_p_saga: bool = True,
        sample_all_paths_first: bool = False,
        n_theta: int = 1,
        min_prob_frac: float = 0.0,
        probs_path: Optional[str] = None,
        eps: float = 1e-12,
        p_adam_b1: float = 0.9,
        p_adam_b2: float = 0.999,
        p_adam_eps: float = 1e-8,
        *,
        seed: Optional[int] = None,
        reduction: Literal["mean", "sum", "none"] = "mean",
        eval_paths: Literal["sample", "all"] = "sample",
        crop_time: bool = False,
        path_per_step: bool = False,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        config = LossConfig(
            p=_check_p(p),
            use_rho_log1p=_check_bool("use_rho_log1p", use_rho_log1p),
            log1p_eps=_check_number("log1p_eps", log1p_eps, low=0, low_open=True),
            reduction=reduction,
            crop_time=_check_bool("crop_time", crop_time),
            path_per_step=_check_bool("path_per_step", path_per_step),
            eval_paths=eval_paths,
            check_finite=_check_bool("check_finite", check_finite),
        )
        grad = self._grad_settings(grad_mult, use_p_adam, use_p_saga, p_adam_b1, p_adam_b2, p_adam_eps,
                                   use_rho_log1p=use_rho_log1p)
        if isinstance(n_theta, bool) or not isinstance(n_theta, int) or n_theta < 1:
            raise ValueError(f"n_theta must be an int >= 1, got {n_theta!r}")
        min_prob_frac = _check_number("min_prob_frac", min_prob_frac, low=0.0, high=1.0, high_open=True)
        eps = _check_number("eps", eps, low=0.0, low_open=True)
        _check_bool("sample_all_paths_first", sample_all_paths_first)
        if probs_path is not None:
            if not isinstance(probs_path, (str, os.PathLike)):
                raise TypeError(f"probs_path must be a path (str) or None, got {type(probs_path).__name__}")
            if not os.path.isfile(probs_path):
                raise ValueError(f"probs_path must be an existing .pt file, got {str(probs_path)!r}")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")

        from scrapl.samplers import ThetaISSampler
        from scrapl.transforms.jtfs import JTFS

        # The loss checks finiteness itself (naming x / x_target), once.
        transform = JTFS(shape, J, Q1, Q2, J_fr, Q_fr, T=T, F=F, check_finite=False)
        generator = torch.Generator().manual_seed(seed)
        sampler = ThetaISSampler(
            transform.n_paths,
            generator=generator,
            n_theta=n_theta,
            min_prob_frac=min_prob_frac,
            probs_path=None if probs_path is None else str(probs_path),
            eps=eps,
            sample_all_paths_first=sample_all_paths_first,
        )
        self._setup(transform, sampler, config, grad, n_theta=n_theta, seed=seed)
        log.info(
            "SCRAPLLoss: J=%s, Q1=%s, Q2=%s, J_fr=%s, Q_fr=%s, T=%s, F=%s; %d paths (unif_prob %.8f); "
            "p=%s, use_rho_log1p=%s (eps %g), grad_mult=%g, use_p_adam=%s, use_p_saga=%s, "
            "sample_all_paths_first=%s, n_theta=%d, min_prob_frac=%g",
            J, Q1, Q2, J_fr, Q_fr, T, F, self.n_paths, self.unif_prob, p, use_rho_log1p, log1p_eps,
            grad_mult, use_p_adam, use_p_saga, sample_all_paths_first, n_theta, min_prob_frac,
        )

    # ------------------------------------------------------------------ building
    @staticmethod
    def _grad_settings(grad_mult: Any, use_p_adam: Any, use_p_saga: Any, b1: Any, b2: Any, adam_eps: Any,
                       *, use_rho_log1p: bool) -> dict[str, Any]:
        """Validated settings of the :meth:`attach_params` hooks."""
        _check_bool("use_p_adam", use_p_adam)
        _check_bool("use_p_saga", use_p_saga)
        grad_mult = _check_number("grad_mult", grad_mult, low=0, low_open=True)
        if use_p_adam and not use_rho_log1p and not grad_mult > 1.0:
            raise ValueError(
                f"grad_mult must be > 1 when use_p_adam=True and use_rho_log1p=False (got {grad_mult!r}): "
                "per-path JTFS gradients are tiny and P-Adam's eps would swamp them (the reference's rule); "
                "use the default 1e8, or set use_rho_log1p=True or use_p_adam=False"
            )
        return {
            "grad_mult": grad_mult,
            "use_p_adam": use_p_adam,
            "use_p_saga": use_p_saga,
            "p_adam_b1": _check_number("p_adam_b1", b1, low=0.0, high=1.0, high_open=True),
            "p_adam_b2": _check_number("p_adam_b2", b2, low=0.0, high=1.0, high_open=True),
            "p_adam_eps": _check_number("p_adam_eps", adam_eps, low=0.0, low_open=True),
        }

    @classmethod
    def from_components(
        cls,
        transform: ScatteringTransform,
        sampler: PathSampler,
        config: LossConfig | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> "SCRAPLLoss":
        """Build the loss from a transform and a sampler (what :func:`scrapl.build` does).

        Args:
            transform: the scattering transform (becomes the submodule ``transform``).
            sampler: draws the paths (its ``n_paths`` must equal the transform's).
            config: :class:`scrapl.configs.LossConfig` (or a mapping of its fields);
                ``None`` uses its defaults (``path_per_step=True``).
            **overrides: :class:`LossConfig` fields taking precedence over ``config``,
                and the :meth:`attach_params` hook settings ``grad_mult`` (1e8),
                ``use_p_adam``, ``use_p_saga`` (True), ``p_adam_b1`` (0.9), ``p_adam_b2``
                (0.999), ``p_adam_eps`` (1e-8), as in the reference constructor.

        Raises:
            TypeError: wrong component types.
            ValueError / pydantic.ValidationError: invalid settings or mismatched
                numbers of paths.
        """
        if not isinstance(transform, ScatteringTransform):
            raise TypeError(f"transform must be a scrapl ScatteringTransform, got {type(transform).__name__}")
        if not isinstance(sampler, PathSampler):
            raise TypeError(f"sampler must be a scrapl PathSampler, got {type(sampler).__name__}")
        if sampler.n_paths != transform.n_paths:
            raise ValueError(
                f"sampler.n_paths ({sampler.n_paths}) must equal transform.n_paths ({transform.n_paths})"
            )
        grad_keys = ("grad_mult", "use_p_adam", "use_p_saga", "p_adam_b1", "p_adam_b2", "p_adam_eps")
        grad_kw = {k: overrides.pop(k) for k in grad_keys if k in overrides}
        if config is None:
            base: dict[str, Any] = {}
        elif isinstance(config, LossConfig):
            base = config.model_dump()
        elif isinstance(config, Mapping):
            base = dict(config)
        else:
            raise TypeError(f"config must be a LossConfig, a mapping or None, got {type(config).__name__}")
        cfg = LossConfig.model_validate({**base, **overrides})
        grad = cls._grad_settings(
            grad_kw.get("grad_mult", 1e8), grad_kw.get("use_p_adam", True), grad_kw.get("use_p_saga", True),
            grad_kw.get("p_adam_b1", 0.9), grad_kw.get("p_adam_b2", 0.999), grad_kw.get("p_adam_eps", 1e-8),
            use_rho_log1p=cfg.use_rho_log1p,
        )
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._setup(transform, sampler, cfg, grad, n_theta=int(getattr(sampler, "n_theta", 1)), seed=None)
        return self

    def _setup(self, transform: ScatteringTransform, sampler: PathSampler, config: LossConfig,
               grad: dict[str, Any], *, n_theta: int, seed: Optional[int]) -> None:
        self.transform = transform
        self.sampler = sampler
        self.config = config
        self.seed = seed
        self.n_theta = n_theta
        self.grad_mult = grad["grad_mult"]
        self.use_p_adam = grad["use_p_adam"]
        self.use_p_saga = grad["use_p_saga"]
        self.p_adam_b1 = grad["p_adam_b1"]
        self.p_adam_b2 = grad["p_adam_b2"]
        self.p_adam_eps = grad["p_adam_eps"]
        self.n_paths: int = int(transform.n_paths)
        self.unif_prob: float = 1.0 / self.n_paths
        self.curr_path_idx: Optional[int] = None
        self.path_counts: defaultdict[int, int] = defaultdict(int)
        self.scrapl_t: int = 0
        self._step_paths: list[int] = []
        self._held_path: Optional[int] = None
        self._held_uses = 0
        self._warned_held = False
        self._last_train_path: Optional[int] = None
        self._hooks: Any = None
        self._pending_hooks_state: Optional[dict[str, Any]] = None
        try:
            params = inspect.signature(transform.forward).parameters
            self._forward_crop_kw = "crop_time" in params
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            self._forward_crop_kw = False
        self.register_state_dict_post_hook(SCRAPLLoss._drop_transform_entries)

    # ------------------------------------------------------------- properties
    def _update_config(self, **changes: Any) -> None:
        self.config = LossConfig.model_validate({**self.config.model_dump(), **changes})

    @property
    def p(self) -> float:
        """Order of the norm (settable, as the reference's attribute)."""
        return self.config.p

    @p.setter
    def p(self, value: float) -> None:
        self._update_config(p=_check_p(value))

    @property
    def use_rho_log1p(self) -> bool:
        """Compare ``log1p(S / log1p_eps)`` (settable)."""
        return self.config.use_rho_log1p

    @use_rho_log1p.setter
    def use_rho_log1p(self, value: bool) -> None:
        self._update_config(use_rho_log1p=_check_bool("use_rho_log1p", value))

    @property
    def log1p_eps(self) -> float:
        """Scale of the log1p compression (settable)."""
        return self.config.log1p_eps

    @log1p_eps.setter
    def log1p_eps(self, value: float) -> None:
        self._update_config(log1p_eps=_check_number("log1p_eps", value, low=0, low_open=True))

    @property
    def reduction(self) -> str:
        return self.config.reduction

    @property
    def path_per_step(self) -> bool:
        return self.config.path_per_step

    @property
    def probs(self) -> Tensor:
        """The sampler's probabilities: float64 CPU tensor ``(n_paths,)``."""
        return self.sampler.probs

    @probs.setter
    def probs(self, value: Tensor) -> None:
        set_probs = getattr(self.sampler, "set_probs", None)
        if set_probs is None:
            raise AttributeError(f"the sampler {type(self.sampler).__name__} has no set_probs(); probs are read-only")
        set_probs(value)

    @property
    def paths(self) -> list[tuple[int, ...]]:
        """Path keys in path-index order (``(n2, n_fr)`` for JTFS)."""
        return list(self.transform.paths)

    @property
    def scrapl_keys(self) -> list[tuple[int, ...]]:
        """The reference's name of :attr:`paths`."""
        return self.paths

    @property
    def path_infos(self) -> list[PathInfo]:
        """Physical description of every path (:class:`scrapl.PathInfo`)."""
        return list(self.transform.path_infos)

    @property
    def attached_params(self) -> list[Tensor]:
        """The parameters hooked by :meth:`attach_params` (empty when detached)."""
        return [] if self._hooks is None else list(self._hooks.params)

    @property
    def hooks(self) -> Any:
        """The :class:`scrapl.optim.hooks.PathGradHooks` of :meth:`attach_params`, or ``None``."""
        return self._hooks

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_paths={self.n_paths}, p={c.p}, use_rho_log1p={c.use_rho_log1p}, reduction={c.reduction!r}, "
                f"crop_time={c.crop_time}, path_per_step={c.path_per_step}, eval_paths={c.eval_paths!r}, "
                f"sampler={type(self.sampler).__name__}")

    # ------------------------------------------------------------- validation
    def _check_inputs(self, x: Any, x_target: Any) -> None:
        # (batch, channels, *signal_shape): (samples,) for signals, (height, width) for images
        shape = getattr(self.transform, "signal_shape", None)  # duck-typed transforms: n_samples only
        sig = (int(self.transform.n_samples),) if shape is None else tuple(int(n) for n in shape)
        names = "samples" if len(sig) == 1 else "height, width" if len(sig) == 2 else f"{len(sig)} signal axes"
        layout = f"(batch, channels, {names})"
        for name, t in (("x", x), ("x_target", x_target)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"{name} must have a floating-point dtype, got {t.dtype}")
            if t.ndim != 2 + len(sig):
                raise ValueError(f"{name} must have shape {layout} ({2 + len(sig)} dimensions), "
                                 f"got shape {tuple(t.shape)}")
        if x.shape != x_target.shape:
            raise ValueError(f"x and x_target must have the same shape, got {tuple(x.shape)} and "
                             f"{tuple(x_target.shape)}")
        if x.dtype != x_target.dtype:
            raise TypeError(f"x and x_target must have the same dtype, got {x.dtype} and {x_target.dtype}")
        if x.device != x_target.device:
            raise ValueError(f"x and x_target must be on the same device, got {x.device} and {x_target.device}")
        if len(sig) == 1 and x.shape[-1] != sig[0]:
            raise ValueError(f"x and x_target must have {sig[0]} samples (the loss's shape), got {x.shape[-1]}")
        if tuple(x.shape[2:]) != sig:
            raise ValueError(f"x and x_target must have ({names}) = {sig} (the transform's shape), "
                             f"got {tuple(x.shape[2:])}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x must have at least one example and one channel, got shape {tuple(x.shape)}")
        if self.config.check_finite:
            for name, t in (("x", x), ("x_target", x_target)):
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"{name} contains NaN or infinite values (pass check_finite=False to skip "
                                     "this check)")

    # ------------------------------------------------------------- distances
    def _rho(self, s: Tensor) -> Tensor:
        if self.config.use_rho_log1p:
            return torch.log1p(s / self.config.log1p_eps)
        return s

    def _coefs(self, x: Tensor, path_idx: int) -> Tensor:
        """rho(phi_i(x)): ``(batch, channels, freq, time)``; no graph unless x needs one."""
        if x.requires_grad:
            return self._rho(self.transform.forward_path(x, path_idx, crop_time=self.config.crop_time))
        with torch.no_grad():
            return self._rho(self.transform.forward_path(x, path_idx, crop_time=self.config.crop_time))

    def _reduce(self, d: Tensor, reduction: Optional[str]) -> Tensor:
        red = self.config.reduction if reduction is None else reduction
        if red == "mean":
            return d.mean()
        if red == "sum":
            return d.sum()
        if red == "none":
            return d
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {red!r}")

    def _norm(self, diff: Tensor) -> Tensor:
        return torch.linalg.vector_norm(diff, ord=self.config.p, dim=(-2, -1))

    @_full_precision
    def path_distance(self, x: Tensor, x_target: Tensor, path_idx: int, reduction: Optional[str] = None) -> Tensor:
        """Distance of one path, without side effects (no sampling, no counting).

        Args:
            x, x_target: ``(batch, channels, samples)`` signals.
            path_idx: the path, in ``[0, n_paths)``.
            reduction: overrides the configured reduction (``"mean"``, ``"sum"``,
                ``"none"``).

        Returns:
            scalar, or ``(batch, channels)`` for ``"none"``.
        """
        self._check_inputs(x, x_target)
        i = _index("path_idx", path_idx, self.n_paths)
        return self._reduce(self._path_dist(x, x_target, i), reduction)

    def _path_dist(self, x: Tensor, x_target: Tensor, i: int) -> Tensor:
        s_target = self._coefs(x_target, i)
        s = self._coefs(x, i)
        return self._norm(s_target - s)

    @_full_precision
    def full_distance(self, x: Tensor, x_target: Tensor, reduction: Optional[str] = None) -> Tensor:
        """Deterministic full-tree distance: the mean over all paths of the per-path
        distance (same ``p``, ``rho`` and ``crop_time``); usable in any mode, no side
        effects.

        Uses ``transform.forward`` once per signal (when the transform can produce the
        requested time cropping), else one ``forward_path`` call per path.

        Returns:
            scalar, or ``(batch, channels)`` for ``reduction="none"``.
        """
        self._check_inputs(x, x_target)
        return self._reduce(self._full_dist(x, x_target), reduction)

    def _full_dist(self, x: Tensor, x_target: Tensor) -> Tensor:
        """Unreduced full-tree distance ``(batch, channels)`` of checked inputs."""
        crop = self.config.crop_time
        if crop or self._forward_crop_kw:
            kw = {"crop_time": crop} if self._forward_crop_kw else {}

            def all_paths(sig: Tensor) -> Tensor:
                return self._rho(self.transform(sig, **kw))  # (B, C, P, F, T)

            if x_target.requires_grad:
                s_target = all_paths(x_target)
            else:
                with torch.no_grad():
                    s_target = all_paths(x_target)
            if x.requires_grad:
                s = all_paths(x)
            else:
                with torch.no_grad():
                    s = all_paths(x)
            d = self._norm(s_target - s).mean(dim=-1)
        else:
            total = self._path_dist(x, x_target, 0)
            for i in range(1, self.n_paths):
                total = total + self._path_dist(x, x_target, i)
            d = total / self.n_paths
        return d

    # ------------------------------------------------------------- sampling
    def _draw(self, seed: Optional[int]) -> int:
        """Draw a path from the sampler.  A seeded draw re-seeds the generator for
        this draw only: its state is restored afterwards, so the unseeded sequence is
        not disturbed (as in the reference, whose seeded draws use a separate
        generator)."""
        if seed is None:
            return _index("sampled path", self.sampler.sample(), self.n_paths)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
        gen = self.sampler.generator
        state = gen.get_state()
        try:
            return _index("sampled path", self.sampler.sample(seed=seed), self.n_paths)
        finally:
            gen.set_state(state)

    def sample_path(self, seed: Optional[int] = None) -> int:
        """Draw a path index (the reference's method).  Advances the sampler only."""
        return self._draw(seed)

    def _training_path(self, seed: Optional[int], path_idx: Optional[int]) -> int:
        if path_idx is not None:
            if seed is not None:
                warnings.warn("seed is ignored when path_idx is given", UserWarning, stacklevel=3)
            return _index("path_idx", path_idx, self.n_paths)
        if seed is not None:
            return self._draw(seed)
        if self.config.path_per_step and self._held_path is not None:
            self._held_uses += 1
            if self._held_uses >= _HELD_PATH_WARN_AFTER and not self._warned_held:
                self._warned_held = True
                warnings.warn(
                    f"SCRAPLLoss(path_per_step=True) has reused path {self._held_path} for "
                    f"{self._held_uses} training forwards: nothing called consume_path(). Use the optimizer "
                    "from scrapl.build(...).optimizer (it consumes the path at each step), call "
                    "loss.consume_path() after each optimizer step, or use path_per_step=False",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return self._held_path
        return self._draw(None)

    @_full_precision
    def forward(self, x: Tensor, x_target: Tensor, seed: Optional[int] = None,
                path_idx: Optional[int] = None) -> Tensor:
        """Distance between ``x`` and ``x_target`` on one path.

        Args:
            x, x_target: ``(batch, channels, samples)`` floating-point signals of the
                same shape and dtype, ``samples == shape`` (``(batch, channels, height,
                width)`` images for an image transform: its ``signal_shape``);
                float16/bfloat16 inputs (e.g. under ``torch.autocast``) are cast to
                float32 and the distance is computed with autocast off, in float32.
            seed: draw the path with the sampler re-seeded with ``seed`` (the same
                seed gives the same path; the unseeded sequence is not disturbed).
            path_idx: use this path (``seed`` is then ignored, with a warning).

        In training mode the path is recorded: :attr:`curr_path_idx`,
        :attr:`path_counts`, the step counter, and (when the result requires grad) the
        step's path returned by :meth:`consume_path`.  With ``path_per_step=True``
        training forwards without ``seed``/``path_idx`` reuse the step's path.  In
        ``eval()`` mode with ``eval_paths="all"`` and neither ``seed`` nor
        ``path_idx``, the result is :meth:`full_distance`.

        Returns:
            scalar (``reduction="mean"``/``"sum"``) or ``(batch, channels)``.
        """
        self._check_inputs(x, x_target)
        if not self.training:
            if path_idx is None and seed is None and self.config.eval_paths == "all":
                return self._reduce(self._full_dist(x, x_target), None)
            if path_idx is not None:
                if seed is not None:
                    warnings.warn("seed is ignored when path_idx is given", UserWarning, stacklevel=2)
                i = _index("path_idx", path_idx, self.n_paths)
            else:
                i = self._draw(seed)
            out = self._reduce(self._path_dist(x, x_target, i), None)
            self.curr_path_idx = i
            return out

        i = self._training_path(seed, path_idx)
        out = self._reduce(self._path_dist(x, x_target, i), None)
        self.curr_path_idx = i
        self.path_counts[i] += 1
        self.scrapl_t += 1
        if self.config.path_per_step and self._held_path is None:
            self._held_path = i
            self._held_uses = 1
        if out.requires_grad:
            self._last_train_path = i
            if i not in self._step_paths:
                self._step_paths.append(i)
        return out

    # ------------------------------------------------------------- steps
    def consume_path(self) -> Optional[int]:
        """The path of the training forwards since the last call, and release it.

        Called once per optimizer step by the path-aware optimizers of
        :func:`scrapl.build` (their ``path_source``).  Only training forwards whose
        result requires grad count (a forward under ``torch.no_grad()`` cannot feed a
        gradient).  With ``path_per_step=True`` the next training forward then draws
        a new path.

        Returns:
            the path index, or ``None`` if no such forward happened.

        Raises:
            RuntimeError: the forwards since the last call used different paths, so
                the accumulated gradient mixes paths and no single path can be
                credited with it.  The record is cleared before raising.
        """
        paths = self._step_paths
        self._step_paths = []
        self._held_path = None
        self._held_uses = 0
        if not paths:
            return None
        if len(paths) > 1:
            raise RuntimeError(
                f"the gradient of this step mixes SCRAPL paths {paths}: several training forwards since the "
                "last optimizer step used different paths, so the path-aware optimizer cannot attribute the "
                "gradient to one path. Use path_per_step=True (training forwards then reuse one path until the "
                "optimizer step), or run one loss forward per optimizer step; with path_idx=/seed= forwards, "
                "pass the same path to every forward of a step"
            )
        return paths[0]

    @property
    def step_path(self) -> Optional[int]:
        """The path held for the current step (``path_per_step=True``), or ``None``."""
        return self._held_path

    # ------------------------------------------------------------- stats
    def path_stats(self) -> list[dict[str, Any]]:
        """Per-path training counts with each path's physical label.

        Returns:
            one dict per path, in path-index order: ``index``, ``key``, ``label``,
            ``count`` (training forwards on it), ``prob`` (current sampling
            probability).
        """
        probs = self.probs
        return [
            {"index": info.index, "key": tuple(info.key), "label": info.label,
             "count": int(self.path_counts.get(info.index, 0)), "prob": float(probs[info.index])}
            for info in self.path_infos
        ]

    # ------------------------------------------------------------- reference hooks
    def attach_params(self, params: Iterable[Tensor]) -> None:
        """Apply ``grad_mult``, P-Adam and P-SAGA to ``params``' gradients in gradient
        hooks (the reference API; then step a plain ``torch.optim.SGD``).

        Reference semantics: every backward in training mode multiplies the gradient by
        ``grad_mult`` and replaces it by the P-Adam output and the P-SAGA direction of
        the path of the last training forward, with P-Adam step ``k =`` training
        forwards ``+ 1`` (attaching resets the counter, as the reference) and the
        reference's P-SAGA divisor.  Attaching an empty list detaches.

        Limits (the optimizers of :func:`scrapl.build` have none of them): one
        backward per forward and per optimizer step (no gradient accumulation, no
        second loss term sharing the backward), no GradScaler, no DDP.  Needs
        ``path_per_step=False``: with ``True`` nothing would release the step's path.
        The hooks' state is saved by :meth:`state_dict` and restored after
        ``attach_params`` with the same parameter list.
        """
        params = list(params)
        n_prev = len(self.attached_params)
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None
        self.scrapl_t = 0
        if not params:
            if n_prev:
                log.info("Detached %d parameter tensors", n_prev)
            return
        if self.config.path_per_step:
            raise ValueError(
                "attach_params needs path_per_step=False (its hooks read the path of the last training forward and "
                "nothing would release a per-step path); build the loss with path_per_step=False, or use the "
                "path-aware optimizers (scrapl.build(...).optimizer) instead of attach_params"
            )
        from scrapl.optim.hooks import PathGradHooks

        self._hooks = PathGradHooks(
            params,
            self.n_paths,
            path_getter=lambda: self._last_train_path,
            step_getter=lambda: self.scrapl_t + 1,
            is_training=lambda: self.training,
            grad_mult=self.grad_mult,
            use_p_adam=self.use_p_adam,
            use_p_saga=self.use_p_saga,
            betas=(self.p_adam_b1, self.p_adam_b2),
            eps=self.p_adam_eps,
            eps_placement="outside",
            saga_divisor="reference",
        )
        if self._pending_hooks_state is not None:
            pending, self._pending_hooks_state = self._pending_hooks_state, None
            self._hooks.load_state_dict(pending)
        n_weights = sum(p.numel() for p in self._hooks.params)
        log.info("Attached %d parameter tensors (%d weights)", len(self._hooks.params), n_weights)

    # ------------------------------------------------------------- probabilities
    def load_probs(self, probs_path: str) -> None:
        """Load sampling probabilities ``(n_paths,)`` from a ``.pt`` file."""
        if not isinstance(probs_path, (str, os.PathLike)) or not os.path.isfile(probs_path):
            raise ValueError(f"probs_path must be an existing .pt file, got {probs_path!r}")
        probs = torch.load(probs_path, map_location="cpu", weights_only=True)
        if not isinstance(probs, Tensor) or probs.shape != (self.n_paths,):
            raise ValueError(f"{str(probs_path)!r} must hold a tensor of shape ({self.n_paths},), got "
                             f"{getattr(probs, 'shape', type(probs).__name__)}")
        self.probs = probs.double()

    def warmup_lc_hvp(
        self,
        theta_fn: Callable[..., Tensor],
        synth_fn: Callable[..., Tensor],
        theta_fn_kwargs: Sequence[dict[str, Any]],
        params: Sequence[Tensor],
        synth_fn_kwargs: Optional[Sequence[dict[str, Any]]] = None,
        start_path_idx: int = 0,
        end_path_idx: Optional[int] = None,
        save_dir: Optional[str] = "scrapl_warmup",
        n_iter: int = 20,
        agg: Literal["none", "mean", "max", "med"] = "none",
        force_multibatch: bool = False,
    ) -> None:
        """theta-IS warmup (the reference's signature): estimate the loss curvature of
        every path in ``[start_path_idx, end_path_idx)`` w.r.t. each of the ``n_theta``
        synth parameters and update the sampling probabilities from it.

        Args:
            theta_fn: encoder; ``theta_fn(**theta_fn_kwargs[i])`` returns ``(batch,
                n_theta)``; deterministic during the warmup.
            synth_fn: synthesizer; ``synth_fn(theta, **synth_fn_kwargs[i])`` returns
                ``x_hat`` of shape ``(batch, channels, samples)``.
            theta_fn_kwargs: one dict per warmup batch, each with the input ``"x"``
                (``(batch, channels, samples)``).
            params: encoder weights (without gradients, not attached).
            synth_fn_kwargs: optional per-batch synth arguments (same length).
            start_path_idx, end_path_idx: the paths ``[start, end)`` to compute (to
                split the warmup over processes; ``None`` = ``n_paths``).
            save_dir: write ``vals_{path}.pt`` per path and, once every path is known,
                ``probs.pt`` (``None``: nothing written).  Existing ``vals_{path}.pt``
                files are reused (resume), where the reference refuses to overwrite.
            n_iter: power-iteration steps.
            agg: ``"none"`` (all params together) or ``"mean"``/``"max"``/``"med"``
                over one curvature per parameter tensor.
            force_multibatch: accepted for compatibility; the computation does not
                depend on it.

        The per-path distance used is :meth:`path_distance` with ``reduction="mean"``
        (no sampling, no counting).  Computed by
        :func:`scrapl.samplers.warmup.run_warmup` through the sampler's ``warmup``.

        Raises:
            TypeError: the sampler is not a theta-IS sampler.
            ValueError: empty ``params``/``theta_fn_kwargs``, parameters with
                gradients or attached by :meth:`attach_params`, bad path range.
        """
        warmup = getattr(self.sampler, "warmup", None)
        if warmup is None:
            raise TypeError(
                f"warmup_lc_hvp needs a theta-IS sampler (scrapl.samplers.ThetaISSampler, sampler name 'theta_is'), "
                f"this loss has {type(self.sampler).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError("params must not be empty (the encoder weights)")
        if any(p.grad is not None and bool(p.grad.ne(0).any()) for p in params):
            raise ValueError("params must have no gradients before the warmup (call zero_grad(set_to_none=True))")
        if self._hooks is not None:
            raise ValueError("parameters are attached (attach_params); detach them with attach_params([]) "
                             "before the warmup")
        if not isinstance(theta_fn_kwargs, Sequence) or isinstance(theta_fn_kwargs, Mapping) or not theta_fn_kwargs:
            raise ValueError("theta_fn_kwargs must be a non-empty list of dicts (one per batch)")
        if synth_fn_kwargs is not None and len(synth_fn_kwargs) != len(theta_fn_kwargs):
            raise ValueError(f"synth_fn_kwargs has {len(synth_fn_kwargs)} entries, theta_fn_kwargs has "
                             f"{len(theta_fn_kwargs)}: they must match")
        _check_bool("force_multibatch", force_multibatch)
        end = self.n_paths if end_path_idx is None else end_path_idx
        for name, v in (("start_path_idx", start_path_idx), ("end_path_idx", end)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if not 0 <= start_path_idx < end <= self.n_paths:
            raise ValueError(f"need 0 <= start_path_idx < end_path_idx <= {self.n_paths}, got "
                             f"start_path_idx={start_path_idx}, end_path_idx={end}")

        def dist_fn(x: Tensor, x_hat: Tensor, path_idx: int) -> Tensor:
            return self.path_distance(x, x_hat, path_idx, reduction="mean")

        log.info("Starting warmup_lc_hvp with agg = %s for %d parameter(s) and %d batch(es), %d iter, paths [%d, %d)",
                 agg, len(params), len(theta_fn_kwargs), n_iter, start_path_idx, end)
        warmup(dist_fn, theta_fn, synth_fn, theta_fn_kwargs, params, synth_fn_kwargs,
               paths=range(start_path_idx, end), save_dir=save_dir, n_iter=n_iter, agg=agg)

    def load_probs_from_warmup_dir(self, warmup_dir: str, agg: Literal["none", "mean", "max", "med"] = "none") -> None:
        """Set the probabilities from the ``vals_{path}.pt`` files of a warmup
        directory (e.g. written in parallel by several :meth:`warmup_lc_hvp` runs).

        As the reference, this first forgets the path counts, the step counter and the
        sampler's state (:meth:`clear`); unlike it, attached parameters stay attached.
        Paths without a file keep the uniform probability (with a warning).

        Raises:
            FileNotFoundError / NotADirectoryError: no such directory.
            TypeError: the sampler cannot load warmup results (not theta-IS).
            scrapl.errors.WarmupError: unusable files.
        """
        load_dir = getattr(self.sampler, "load_warmup_dir", None)
        if load_dir is None:
            raise TypeError(f"load_probs_from_warmup_dir needs a theta-IS sampler (scrapl.samplers.ThetaISSampler), "
                            f"this loss has {type(self.sampler).__name__}")
        if not os.path.isdir(warmup_dir):
            if os.path.exists(warmup_dir):
                raise NotADirectoryError(f"warmup_dir {str(warmup_dir)!r} is not a directory")
            raise FileNotFoundError(f"warmup_dir {str(warmup_dir)!r} does not exist")
        self.clear(keep_attached=True)
        load_dir(warmup_dir, agg)
        probs = self.probs
        log.info("Loading probs from directory %s: min prob = %.6f, max prob = %.6f", os.path.abspath(warmup_dir),
                 float(probs.min()), float(probs.max()))

    @staticmethod
    def check_is_deterministic(
        theta_fn: Callable[..., Tensor],
        theta_fn_kwargs: Mapping[str, Any],
        synth_fn: Optional[Callable[..., Tensor]] = None,
        synth_fn_kwargs: Optional[Mapping[str, Any]] = None,
        *,
        synth: Optional[Callable[..., Tensor]] = None,
    ) -> bool:
        """Whether encoder and synth give the same output twice on one batch (a
        warning names the one that does not).  ``synth`` is the reference's keyword
        name of ``synth_fn``."""
        if synth_fn is None:
            synth_fn = synth
        elif synth is not None:
            raise TypeError("pass synth_fn or synth, not both")
        if synth_fn is None:
            raise TypeError("check_is_deterministic() needs synth_fn")
        from scrapl.samplers.curvature import check_is_deterministic

        return check_is_deterministic(theta_fn, theta_fn_kwargs, synth_fn, synth_fn_kwargs)

    # ------------------------------------------------------------- state
    def clear(self, *, keep_attached: bool = False) -> None:
        """Forget everything learned or drawn (the reference's ``clear``): path counts,
        step counter, the step's path, the sampler's draw state and probabilities
        (back to uniform), and detach the :meth:`attach_params` hooks (with
        ``keep_attached=True`` they stay attached and only their per-path state is
        reset)."""
        self.curr_path_idx = None
        self.path_counts.clear()
        self.scrapl_t = 0
        self._step_paths = []
        self._held_path = None
        self._held_uses = 0
        self._last_train_path = None
        self._pending_hooks_state = None
        if self._hooks is not None:
            if keep_attached:
                self._hooks.reset()  # the step counter restarts: so does the per-path state
            else:
                n = len(self._hooks.params)
                self._hooks.remove()
                self._hooks = None
                log.info("Detached %d parameter tensors", n)
        self.sampler.reset()
        clear_curvatures = getattr(self.sampler, "clear_curvatures", None)  # ThetaISSampler
        if clear_curvatures is not None:
            clear_curvatures()
        elif not torch.equal(self.sampler.probs, torch.full((self.n_paths,), self.unif_prob, dtype=torch.float64)):
            self.sampler.set_probs(torch.full((self.n_paths,), self.unif_prob, dtype=torch.float64))

    def get_extra_state(self) -> dict[str, Any]:
        """The loss's own state (saved under ``_extra_state`` by ``state_dict``): the
        sampler's state (generator included), path counts, step counter, the step's
        path and the :meth:`attach_params` hooks' state.  Plain dicts, lists, ints and
        tensors: ``torch.load(weights_only=True)`` reads it."""
        return {
            "version": _EXTRA_STATE_VERSION,
            "n_paths": self.n_paths,
            "sampler": _copy_state(self.sampler.state_dict()),
            "path_counts": {int(k): int(v) for k, v in self.path_counts.items()},
            "scrapl_t": int(self.scrapl_t),
            "curr_path_idx": self.curr_path_idx,
            "last_train_path": self._last_train_path,
            "step_paths": list(self._step_paths),
            "held_path": self._held_path,
            "hooks": None if self._hooks is None else self._hooks.state_dict(),
        }

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state` output."""
        if not isinstance(state, Mapping) or state.get("version") != _EXTRA_STATE_VERSION:
            raise ValueError("not a SCRAPLLoss state (missing or unknown 'version' in _extra_state)")
        if state.get("n_paths") != self.n_paths:
            raise ValueError(f"the state is for {state.get('n_paths')} paths, this loss has {self.n_paths}")
        self.sampler.load_state_dict(_copy_state(state["sampler"]))
        self.path_counts = defaultdict(int, {int(k): int(v) for k, v in state["path_counts"].items()})
        self.scrapl_t = int(state["scrapl_t"])
        self.curr_path_idx = state["curr_path_idx"]
        self._last_train_path = state.get("last_train_path")
        self._step_paths = [int(i) for i in state.get("step_paths", [])]
        self._held_path = state.get("held_path")
        self._held_uses = 0
        hooks = state.get("hooks")
        if hooks is not None:
            if self._hooks is not None:
                self._hooks.load_state_dict(hooks)
            else:
                self._pending_hooks_state = hooks  # applied by the next attach_params
        else:
            self._pending_hooks_state = None

    @staticmethod
    def _drop_transform_entries(module: "SCRAPLLoss", state_dict: dict[str, Any], prefix: str,
                                local_metadata: Any) -> None:
        """state_dict post-hook: the transform's buffers are rebuilt from its config,
        so they are not saved."""
        for key in [k for k in state_dict if k.startswith(prefix + "transform.")]:
            del state_dict[key]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        # The transform's entries are not saved: fill them with the current values so
        # that strict loading works (and a checkpoint that has them still loads them).
        for name, tensor in self.transform.state_dict(keep_vars=True).items():
            state_dict.setdefault(prefix + "transform." + name, tensor.detach())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
