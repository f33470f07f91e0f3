"""The SCRAPL loss: a scattering distance evaluated on one random path per step.

:class:`PathLoss` combines a :class:`~scrapl.interfaces.ScatteringTransform` (which
computes one path's coefficients) with a :class:`~scrapl.interfaces.PathSampler`
(which draws the path).  For signals ``x`` and ``x_target`` of shape
``(batch, channels, samples)`` and a path ``i``,

.. code-block:: text

    d_i(x, x_target) = || rho(phi_i(x)) - rho(phi_i(x_target)) ||_p      (per example)

where the norm runs over the path's (frequency, time) array, ``rho`` is the identity
or ``log1p(S / log1p_eps)``, and the examples are then averaged (``reduction="mean"``),
summed, or returned as a ``(batch, channels)`` tensor.  The full-tree distance is the
mean of ``d_i`` over all ``P`` paths (:meth:`PathLoss.full_distance`); with uniform
sampling the one-path gradient is an unbiased estimate of its gradient.

This module imports no plugin: any registered transform and sampler fit.  The
drop-in ``scrapl.SCRAPLLoss(shape, J, ...)`` (:mod:`scrapl.compat`) derives from it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import warnings
from collections import defaultdict
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from scrapl import checks
from scrapl.configs import LossConfig
from scrapl.interfaces import PathInfo, PathSampler, ScatteringTransform
from scrapl.tracker import PathTracker
from scrapl.transforms.scale import normalise, rescale

__all__ = ["PathLoss"]

EXTRA_STATE_VERSION = 1


def _copy_state(obj: Any) -> Any:
    """Deep copy of a state container (tensors cloned, containers rebuilt)."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, Mapping):
        return {k: _copy_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_state(v) for v in obj)
    return copy.deepcopy(obj)


_HALF_DTYPES = (torch.float16, torch.bfloat16)
#: Peak coefficient differences for which :meth:`PathLoss._norm` needs no scaling.
_NORM_SAFE = (2.0**-40, 2.0**40)


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


#: The loss's entry points run eagerly inside ``torch.compile`` regions (dynamo skips
#: them and everything they call: one graph break).  Compiling them gains nothing (one
#: graph per path, the sampler's and tracker's side effects, native kernels dynamo
#: cannot trace) and cost up to a minute of compilation, or failed on short JTFS
#: signals (docs/best_practices.md).
_eager = torch.compiler.disable


def _loss_config(config: LossConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> LossConfig:
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, LossConfig):
        base = config.model_dump()
    elif isinstance(config, Mapping):
        base = dict(config)
    else:
        raise TypeError(f"config must be a LossConfig, a mapping or None, got {type(config).__name__}")
    return LossConfig.model_validate({**base, **overrides})


class PathLoss(nn.Module):
    """The scattering distance on one randomly drawn path.

    Args:
        transform: the scattering transform (the submodule ``transform``).
        sampler: draws the paths; its ``n_paths`` must equal the transform's.
        config: :class:`scrapl.configs.LossConfig` (or a mapping of its fields);
            ``None`` uses its defaults (``path_per_step=True``).
        **overrides: :class:`~scrapl.configs.LossConfig` fields taking precedence.

    Training forwards are recorded in :attr:`tracker` (a
    :class:`~scrapl.tracker.PathTracker`), whose :meth:`consume_path` is the
    ``path_source`` of the path-aware optimizers.

    Shapes:
        ``forward(x, x_target)``: both ``(batch, channels, samples)``, floating point;
        returns a scalar (or ``(batch, channels)`` with ``reduction="none"``).
    """

    transform: ScatteringTransform
    sampler: PathSampler

    def __init__(self, transform: ScatteringTransform, sampler: PathSampler,
                 config: LossConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        if not isinstance(transform, ScatteringTransform):
            raise TypeError(f"transform must be a scrapl ScatteringTransform, got {type(transform).__name__}")
        if not isinstance(sampler, PathSampler):
            raise TypeError(f"sampler must be a scrapl PathSampler, got {type(sampler).__name__}")
        if sampler.n_paths != transform.n_paths:
            raise ValueError(f"sampler.n_paths ({sampler.n_paths}) must equal transform.n_paths "
                             f"({transform.n_paths})")
        self.transform = transform
        self.sampler = sampler
        self.config = _loss_config(config, overrides)
        self.n_paths: int = int(transform.n_paths)
        self.unif_prob: float = 1.0 / self.n_paths
        self.tracker = PathTracker(self.config.path_per_step)
        try:  # transforms written before forward(x, *, crop_time) was part of the contract
            self._forward_crop_kw = "crop_time" in inspect.signature(transform.forward).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            self._forward_crop_kw = False
        self.register_state_dict_post_hook(PathLoss._drop_transform_entries)

    # ------------------------------------------------------------- settings
    def _update_config(self, **changes: Any) -> None:
        self.config = LossConfig.model_validate({**self.config.model_dump(), **changes})

    @property
    def p(self) -> float:
        """Order of the norm (settable)."""
        return self.config.p

    @p.setter
    def p(self, value: float) -> None:
        self._update_config(p=value)

    @property
    def use_rho_log1p(self) -> bool:
        """Compare ``log1p(S / log1p_eps)`` (settable)."""
        return self.config.use_rho_log1p

    @use_rho_log1p.setter
    def use_rho_log1p(self, value: bool) -> None:
        self._update_config(use_rho_log1p=checks.check_bool("use_rho_log1p", value))

    @property
    def log1p_eps(self) -> float:
        """Scale of the log1p compression (settable)."""
        return self.config.log1p_eps

    @log1p_eps.setter
    def log1p_eps(self, value: float) -> None:
        self._update_config(log1p_eps=value)

    @property
    def reduction(self) -> str:
        return self.config.reduction

    @property
    def path_per_step(self) -> bool:
        return self.config.path_per_step

    @property
    def probs(self) -> Tensor:
        """The sampler's probabilities: float64 CPU tensor ``(n_paths,)`` (settable
        when the sampler's ``set_probs`` allows it)."""
        return self.sampler.probs

    @probs.setter
    def probs(self, value: Tensor) -> None:
        self.sampler.set_probs(value)

    @property
    def paths(self) -> list[tuple[int, ...]]:
        """Path keys in path-index order (``(n2, n_fr)`` for JTFS)."""
        return list(self.transform.paths)

    @property
    def path_infos(self) -> list[PathInfo]:
        """Physical description of every path (:class:`scrapl.PathInfo`)."""
        return list(self.transform.path_infos)

    # the tracker's counters (read-only views of ``self.tracker``)
    @property
    def curr_path_idx(self) -> Optional[int]:
        """Path of the last forward (``None`` before the first)."""
        return self.tracker.curr_path_idx

    @property
    def path_counts(self) -> defaultdict[int, int]:
        """Training forwards per path."""
        return self.tracker.path_counts

    @property
    def scrapl_t(self) -> int:
        """Number of training forwards."""
        return self.tracker.scrapl_t

    @property
    def step_path(self) -> Optional[int]:
        """The path held for the current step (``path_per_step=True``), or ``None``."""
        return self.tracker.held_path

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_paths={self.n_paths}, p={c.p}, use_rho_log1p={c.use_rho_log1p}, reduction={c.reduction!r}, "
                f"crop_time={c.crop_time}, path_per_step={c.path_per_step}, eval_paths={c.eval_paths!r}, "
                f"sampler={type(self.sampler).__name__}")

    # ------------------------------------------------------------- distances
    def _check(self, x: Any, x_target: Any) -> None:
        shape = getattr(self.transform, "signal_shape", None)  # transforms older than signal_shape: n_samples
        sig = (int(self.transform.n_samples),) if shape is None else tuple(shape)
        checks.check_signals(x, x_target, sig, finite=self.config.check_finite)

    def _rho(self, s: Tensor) -> Tensor:
        return torch.log1p(s / self.config.log1p_eps) if self.config.use_rho_log1p else s

    def _coefs(self, x: Tensor, i: int) -> Tensor:
        """rho(phi_i(x)) ``(batch, channels, freq, time)``; no graph unless x needs one."""
        with torch.set_grad_enabled(x.requires_grad and torch.is_grad_enabled()), checks.caller_checked():
            return self._rho(self.transform.forward_path(x, i, crop_time=self.config.crop_time))

    def _all_coefs(self, x: Tensor) -> Tensor:
        """rho of every path ``(batch, channels, P, freq, time)``."""
        kw = {"crop_time": self.config.crop_time} if self._forward_crop_kw else {}
        with torch.set_grad_enabled(x.requires_grad and torch.is_grad_enabled()), checks.caller_checked():
            return self._rho(self.transform(x, **kw))

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
        # scale-robust: the p-norm of diff / 2**e times 2**e (exact; squares of
        # coefficients above ~1e19 would overflow float32), skipped when the largest
        # coefficient is within [2**-40, 2**40] and p <= 2: there the powers neither
        # overflow nor lose anything against it, and scaling by powers of two changes
        # nothing (one reduction instead of the scaling's seven operations; on the CPU
        # only, where reading the peak costs no device synchronisation)
        B = diff.shape[:-2]
        flat = diff.reshape(-1, diff.shape[-2] * diff.shape[-1])
        p = self.config.p
        if p <= 2 and flat.device.type == "cpu":
            peak = float(checks.peak_abs(flat))
            if _NORM_SAFE[0] <= peak <= _NORM_SAFE[1]:
                return torch.linalg.vector_norm(flat, ord=p, dim=-1).reshape(B)
        flat, s = normalise(flat)
        return rescale(torch.linalg.vector_norm(flat, ord=p, dim=-1), s).reshape(B)

    def _path_dist(self, x: Tensor, x_target: Tensor, i: int) -> Tensor:
        if x_target.requires_grad and torch.is_grad_enabled():  # both signals get a gradient
            s_target = self._coefs(x_target, i)
            return self._norm(s_target - self._coefs(x, i))
        # the target is a constant: one call for both (JTFS: one pass over the two batches)
        with torch.set_grad_enabled(x.requires_grad and torch.is_grad_enabled()), checks.caller_checked():
            s, s_target = self.transform.forward_path_pair(x, x_target, i, crop_time=self.config.crop_time)
        return self._norm(self._rho(s_target) - self._rho(s))

    def _full_dist(self, x: Tensor, x_target: Tensor) -> Tensor:
        """Unreduced full-tree distance ``(batch, channels)`` of checked inputs."""
        if self.config.crop_time or self._forward_crop_kw:
            s_target = self._all_coefs(x_target)
            return self._norm(s_target - self._all_coefs(x)).mean(dim=-1)
        total = self._path_dist(x, x_target, 0)
        for i in range(1, self.n_paths):
            total = total + self._path_dist(x, x_target, i)
        return total / self.n_paths

    @_eager
    @_full_precision
    def path_distance(self, x: Tensor, x_target: Tensor, path_idx: int, reduction: Optional[str] = None) -> Tensor:
        """Distance of one path, without side effects (no sampling, no counting).

        Args:
            x, x_target: ``(batch, channels, samples)`` signals.
            path_idx: the path, in ``[0, n_paths)``.
            reduction: overrides the configured reduction.

        Returns:
            scalar, or ``(batch, channels)`` for ``"none"``.
        """
        self._check(x, x_target)
        i = checks.path_index(path_idx, self.n_paths, "path_idx")
        return self._reduce(self._path_dist(x, x_target, i), reduction)

    @_eager
    @_full_precision
    def full_distance(self, x: Tensor, x_target: Tensor, reduction: Optional[str] = None) -> Tensor:
        """Deterministic full-tree distance: the mean over all paths of the per-path
        distance (same ``p``, ``rho`` and ``crop_time``); usable in any mode, no side
        effects.  One ``transform.forward`` per signal when the transform takes
        ``crop_time`` (or ``crop_time=True``), else one ``forward_path`` per path.

        Returns:
            scalar, or ``(batch, channels)`` for ``reduction="none"``.
        """
        self._check(x, x_target)
        return self._reduce(self._full_dist(x, x_target), reduction)

    # ------------------------------------------------------------- sampling
    def sample_path(self, seed: Optional[int] = None) -> int:
        """Draw a path index.  A seeded draw re-seeds the generator for this draw only
        (its state is restored afterwards, so the unseeded sequence is not disturbed)."""
        if seed is None:
            return checks.path_index(self.sampler.sample(), self.n_paths, "sampled path")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
        gen = self.sampler.generator
        state = gen.get_state()
        try:
            return checks.path_index(self.sampler.sample(seed=seed), self.n_paths, "sampled path")
        finally:
            gen.set_state(state)

    def _pick(self, seed: Optional[int], path_idx: Optional[int], *, reuse_held: bool) -> int:
        if path_idx is not None:
            if seed is not None:
                warnings.warn("seed is ignored when path_idx is given", UserWarning, stacklevel=3)
            return checks.path_index(path_idx, self.n_paths, "path_idx")
        if seed is None and reuse_held:
            held = self.tracker.held()
            if held is not None:
                return held
        return self.sample_path(seed)

    @_eager
    @_full_precision
    def forward(self, x: Tensor, x_target: Tensor, seed: Optional[int] = None,
                path_idx: Optional[int] = None) -> Tensor:
        """Distance between ``x`` and ``x_target`` on one path.

        Args:
            x, x_target: ``(batch, channels, samples)`` floating-point signals of the
                same shape and dtype (``(batch, channels, height, width)`` images for
                an image transform: its ``signal_shape``); float16/bfloat16 inputs
                (e.g. under ``torch.autocast``) are cast to float32 and the distance is
                computed with autocast off, in float32.
            seed: draw the path with the sampler re-seeded with ``seed``.
            path_idx: use this path (``seed`` is then ignored, with a warning).

        In training mode the path is recorded in :attr:`tracker`; with
        ``path_per_step=True`` training forwards without ``seed``/``path_idx`` reuse
        the step's path.  In ``eval()`` mode with ``eval_paths="all"`` and neither
        ``seed`` nor ``path_idx``, the result is :meth:`full_distance`.

        Returns:
            scalar (``reduction="mean"``/``"sum"``) or ``(batch, channels)``.
        """
        self._check(x, x_target)
        if not self.training and path_idx is None and seed is None and self.config.eval_paths == "all":
            return self._reduce(self._full_dist(x, x_target), None)
        i = self._pick(seed, path_idx, reuse_held=self.training)
        out = self._reduce(self._path_dist(x, x_target, i), None)
        if self.training:
            self.tracker.record_train(i, out.requires_grad)
        else:
            self.tracker.curr_path_idx = i
        return out

    def consume_path(self) -> Optional[int]:
        """The path of the training forwards since the last call, and release it
        (:meth:`scrapl.tracker.PathTracker.consume_path`): the ``path_source`` of the
        path-aware optimizers of :func:`scrapl.build`."""
        return self.tracker.consume_path()

    def path_stats(self) -> list[dict[str, Any]]:
        """Per path, in index order: ``index``, ``key``, ``label``, ``count``
        (training forwards on it) and ``prob`` (current sampling probability)."""
        probs = self.probs
        return [
            {"index": info.index, "key": tuple(info.key), "label": info.label,
             "count": int(self.path_counts.get(info.index, 0)), "prob": float(probs[info.index])}
            for info in self.path_infos
        ]

    # ------------------------------------------------------------- state
    def get_extra_state(self) -> dict[str, Any]:
        """The loss's own state (saved under ``_extra_state`` by ``state_dict``): the
        sampler's state (generator included) and the tracker's.  Plain containers
        and tensors: ``torch.load(weights_only=True)`` reads it."""
        return {"version": EXTRA_STATE_VERSION, "n_paths": self.n_paths,
                "sampler": _copy_state(self.sampler.state_dict()), **self.tracker.state_dict()}

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state` output."""
        if not isinstance(state, Mapping) or state.get("version") != EXTRA_STATE_VERSION:
            raise ValueError("not a SCRAPLLoss state (missing or unknown 'version' in _extra_state)")
        if state.get("n_paths") != self.n_paths:
            raise ValueError(f"the state is for {state.get('n_paths')} paths, this loss has {self.n_paths}")
        if not isinstance(state.get("sampler"), Mapping):
            raise ValueError("_extra_state['sampler'] must be the sampler's state (a mapping)")
        # All or nothing: a state that fails part-way leaves sampler and tracker as they were.
        before = (_copy_state(self.sampler.state_dict()), self.tracker.state_dict())
        try:
            self.sampler.load_state_dict(_copy_state(state["sampler"]))
            self.tracker.load_state_dict(state)
        except BaseException:
            self.sampler.load_state_dict(before[0])
            self.tracker.load_state_dict(before[1])
            raise

    @staticmethod
    def _drop_transform_entries(module: "PathLoss", state_dict: dict[str, Any], prefix: str,
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


def __getattr__(name: str) -> Any:
    # ``from scrapl.loss import SCRAPLLoss`` predates the compat layer: a lazy alias.
    if name == "SCRAPLLoss":
        from scrapl.compat.loss import SCRAPLLoss

        return SCRAPLLoss
    raise AttributeError(f"module 'scrapl.loss' has no attribute {name!r}")
