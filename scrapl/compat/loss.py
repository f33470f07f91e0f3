"""``SCRAPLLoss``: the drop-in for ``scrapl-loss`` 0.1.0 on top of the core loss.

:class:`SCRAPLLoss` is :class:`scrapl.loss.PathLoss` plus what the reference
package's users call: the reference constructor (JTFS transform, theta-IS sampler),
the gradient hooks of :meth:`SCRAPLLoss.attach_params`, the theta-IS warmup
(:meth:`SCRAPLLoss.warmup_lc_hvp`), probability files, ``clear`` and the
reference's attribute names.  docs/compat.md lists every name and every deliberate
difference.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Literal, Mapping, Optional, Sequence

import torch
from torch import Tensor

from scrapl import checks
from scrapl.compat.hooks import PathGradHooks
from scrapl.compat.jtfs_names import ReferenceJTFSNames, jtfs_meta
from scrapl.configs import LossConfig
from scrapl.interfaces import CurvatureSampler, PathSampler, ScatteringTransform
from scrapl.loss import PathLoss
from scrapl.samplers.curvature import check_is_deterministic as _check_is_deterministic
from scrapl.samplers.probs import log_probs_from_curvatures
from scrapl.samplers.theta_is import ThetaISSampler
from scrapl.samplers.warmup import run_warmup
from scrapl.transforms.jtfs import JTFS

__all__ = ["SCRAPLLoss"]

log = logging.getLogger(__name__)

_HOOK_DEFAULTS: dict[str, Any] = {"grad_mult": 1e8, "use_p_adam": True, "use_p_saga": True,
                                  "p_adam_b1": 0.9, "p_adam_b2": 0.999, "p_adam_eps": 1e-8}


def _hook_settings(grad_mult: Any, use_p_adam: Any, use_p_saga: Any, b1: Any, b2: Any, adam_eps: Any,
                   *, use_rho_log1p: bool) -> dict[str, Any]:
    """Validated settings of the :meth:`SCRAPLLoss.attach_params` hooks.  A numeric
    string ``grad_mult`` (``1e8`` in a YAML 1.1 file is the string ``"1e8"``) is
    read as a float, as the reference's arithmetic accepts it."""
    checks.check_bool("use_p_adam", use_p_adam)
    checks.check_bool("use_p_saga", use_p_saga)
    if isinstance(grad_mult, str):
        try:
            grad_mult = float(grad_mult)
        except ValueError:
            raise ValueError(f"grad_mult must be a number, got the string {grad_mult!r}") from None
    grad_mult = checks.check_number("grad_mult", grad_mult, low=0, low_open=True)
    if use_p_adam and not use_rho_log1p and not grad_mult > 1.0:
        raise ValueError(
            f"grad_mult must be > 1 when use_p_adam=True and use_rho_log1p=False (got {grad_mult!r}): "
            "per-path JTFS gradients are tiny and P-Adam's eps would swamp them; "
            "use the default 1e8, or set use_rho_log1p=True or use_p_adam=False"
        )
    return {
        "grad_mult": grad_mult,
        "use_p_adam": use_p_adam,
        "use_p_saga": use_p_saga,
        "p_adam_b1": checks.check_number("p_adam_b1", b1, low=0.0, high=1.0, high_open=True),
        "p_adam_b2": checks.check_number("p_adam_b2", b2, low=0.0, high=1.0, high_open=True),
        "p_adam_eps": checks.check_number("p_adam_eps", adam_eps, low=0.0, low_open=True),
    }


class SCRAPLLoss(PathLoss):
    """SCRAPL loss with the reference package's API (drop-in for ``scrapl-loss`` 0.1.0).

    The positional/keyword arguments and their defaults are the reference's, and
    path index ``i`` means the same JTFS path ``(n2, n_fr)``; loss values equal the
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
            (> 1 required when ``use_p_adam`` and not ``use_rho_log1p``: per-path
            JTFS gradients are tiny and Adam's ``eps`` would swamp them).
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

    Keyword-only extras:
        seed: seed of a private ``torch.Generator`` for the draws.  ``None`` (the
            reference's behaviour): unseeded draws come from torch's global
            generator, so ``torch.manual_seed(S)`` (or ``seed_everything(S)``) gives
            the reference's path sequence.  Construction never touches the global
            generator.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(batch, channels)``).
        eval_paths: ``"sample"`` (a random path in ``eval()`` mode too) or ``"all"``
            (``eval()`` forwards return :meth:`full_distance`).
        crop_time: crop padded time frames (``False`` = reference values).
        path_per_step: ``False``: a new path at every training forward.  ``True``:
            training forwards reuse one path until :meth:`consume_path`.
        check_finite: raise ``ValueError`` on NaN/inf inputs.

    The sampler is a theta-IS sampler (``scrapl.samplers.ThetaISSampler``): with its
    initial uniform probabilities it draws like a uniform sampler
    (``torch.multinomial`` on the probability vector), and it is what
    :meth:`warmup_lc_hvp` and ``probs_path`` update.

    Example:
        >>> import torch
        >>> from scrapl import SCRAPLLoss
        >>> loss_fn = SCRAPLLoss(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2, seed=0)
        >>> x, y = torch.randn(2, 1, 4096), torch.randn(2, 1, 4096)
        >>> loss_fn(x, y, path_idx=3).shape
        torch.Size([])
    """

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
        for name, flag in (("use_rho_log1p", use_rho_log1p), ("crop_time", crop_time),
                           ("path_per_step", path_per_step), ("check_finite", check_finite),
                           ("sample_all_paths_first", sample_all_paths_first)):
            checks.check_bool(name, flag)
        config = LossConfig(p=p, use_rho_log1p=use_rho_log1p, log1p_eps=log1p_eps, reduction=reduction,
                            crop_time=crop_time, path_per_step=path_per_step, eval_paths=eval_paths,
                            check_finite=check_finite)
        hooks = _hook_settings(grad_mult, use_p_adam, use_p_saga, p_adam_b1, p_adam_b2, p_adam_eps,
                               use_rho_log1p=use_rho_log1p)
        checks.check_int("n_theta", n_theta, 1)
        checks.check_number("min_prob_frac", min_prob_frac, low=0.0, high=1.0, high_open=True)
        checks.check_number("eps", eps, low=0.0, low_open=True)
        if probs_path is not None and not (isinstance(probs_path, (str, os.PathLike)) and os.path.isfile(probs_path)):
            raise ValueError(f"probs_path must be an existing .pt file, got {probs_path!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
            raise ValueError(f"seed must be a non-negative int below 2**64 or None, got {seed!r}")
        # The loss checks finiteness itself (naming x / x_target), once per call.
        transform = JTFS(shape, J, Q1, Q2, J_fr, Q_fr, T=T, F=F, check_finite=False)
        sampler = ThetaISSampler(
            transform.n_paths, n_theta=n_theta,
            generator=torch.default_generator if seed is None else torch.Generator().manual_seed(seed),
            min_prob_frac=min_prob_frac, probs_path=None if probs_path is None else str(probs_path), eps=eps,
            sample_all_paths_first=sample_all_paths_first,
        )
        super().__init__(transform, sampler, config)
        self._init_reference(hooks, seed=seed)
        log.info("SCRAPLLoss: J=%s, Q1=%s, Q2=%s, J_fr=%s, Q_fr=%s, T=%s, F=%s; %d paths (unif_prob %.8f); "
                 "grad_mult=%g, use_p_adam=%s, use_p_saga=%s, n_theta=%d, min_prob_frac=%g",
                 J, Q1, Q2, J_fr, Q_fr, T, F, self.n_paths, self.unif_prob, grad_mult, use_p_adam, use_p_saga,
                 n_theta, min_prob_frac)

    @classmethod
    def from_components(cls, transform: ScatteringTransform, sampler: PathSampler,
                        config: LossConfig | Mapping[str, Any] | None = None, **overrides: Any) -> "SCRAPLLoss":
        """Build the loss from any transform and sampler (what :func:`scrapl.build`
        does), with the reference methods available.

        Args:
            transform, sampler, config: as :class:`scrapl.loss.PathLoss`.
            **overrides: :class:`~scrapl.configs.LossConfig` fields, and the
                :meth:`attach_params` hook settings ``grad_mult`` (1e8),
                ``use_p_adam``, ``use_p_saga`` (True), ``p_adam_b1`` (0.9),
                ``p_adam_b2`` (0.999), ``p_adam_eps`` (1e-8).
        """
        hook_kw = {k: overrides.pop(k, default) for k, default in _HOOK_DEFAULTS.items()}
        self = cls.__new__(cls)  # the reference constructor builds its own components
        PathLoss.__init__(self, transform, sampler, config, **overrides)
        self._init_reference(_hook_settings(*hook_kw.values(), use_rho_log1p=self.config.use_rho_log1p), seed=None)
        return self

    def _init_reference(self, hooks: dict[str, Any], *, seed: Optional[int]) -> None:
        self.seed = seed
        self.grad_mult: float = hooks["grad_mult"]
        self.use_p_adam: bool = hooks["use_p_adam"]
        self.use_p_saga: bool = hooks["use_p_saga"]
        self.p_adam_b1: float = hooks["p_adam_b1"]
        self.p_adam_b2: float = hooks["p_adam_b2"]
        self.p_adam_eps: float = hooks["p_adam_eps"]
        self._hooks: Optional[PathGradHooks] = None
        self._pending_hooks_state: Optional[dict[str, Any]] = None

    # ------------------------------------------------------------- reference names
    @property
    def n_theta(self) -> int:
        """Synth parameters of the theta-IS sampler (1 for other samplers)."""
        return self.sampler.n_theta if isinstance(self.sampler, CurvatureSampler) else 1

    @property
    def min_prob_frac(self) -> float:
        """theta-IS probability floor as a fraction of ``1/P`` (0.0 for other samplers)."""
        return self.sampler.min_prob_frac if isinstance(self.sampler, CurvatureSampler) else 0.0

    @property
    def eps(self) -> float:
        """Floor of the theta-IS probability arithmetic."""
        return self.sampler.eps if isinstance(self.sampler, CurvatureSampler) else 1e-12

    @property
    def sample_all_paths_first(self) -> bool:
        """Whether every path is visited once before sampling from :attr:`probs`."""
        return bool(self.sampler.sample_all_paths_first)

    @property
    def loaded_probs_path(self) -> Optional[str]:
        """The probabilities file or warmup directory loaded last, or ``None``."""
        return self.sampler.loaded_probs_path if isinstance(self.sampler, CurvatureSampler) else None

    @property
    def all_log_vals(self) -> Tensor:
        """``log(max(curvature, eps))`` per synth parameter and path, float64
        ``(n_theta, n_paths)``; ``log(eps)`` where unknown (the reference's layout)."""
        sampler = self._curvature_sampler("all_log_vals")
        return sampler.curvatures.nan_to_num(nan=0.0).clamp(min=sampler.eps).log().T.contiguous()

    @property
    def all_log_probs(self) -> Tensor:
        """Per-parameter log probabilities, float64 ``(n_theta, n_paths)`` (the
        reference's layout; ``probs`` is the mean of ``exp(.) + min_prob_frac / P``)."""
        sampler = self._curvature_sampler("all_log_probs")
        return log_probs_from_curvatures(sampler.curvatures, sampler.min_prob_frac, sampler.eps).T.contiguous()

    def update_prob(self, path_idx: int, val: float | Tensor, theta_idx: int = 0) -> None:
        """Set the curvature of path ``path_idx`` for synth parameter ``theta_idx`` to
        ``val`` (>= 0) and recompute the probabilities (the reference's method).

        Raises:
            ValueError: probabilities were loaded from a file (as the reference), or
                ``val`` / the indices are out of range.
        """
        sampler = self._curvature_sampler("update_prob")
        if sampler.loaded_probs_path is not None:
            raise ValueError(f"cannot update probs: external probs were loaded ({sampler.loaded_probs_path})")
        i = checks.path_index(path_idx, self.n_paths, "path_idx")
        u = checks.path_index(theta_idx, sampler.n_theta, "theta_idx")
        v = float(val.item() if isinstance(val, Tensor) else val)
        if not v >= 0.0:
            raise ValueError(f"val must be a number >= 0 (a curvature), got {val!r}")
        vals = torch.full((self.n_paths, sampler.n_theta), float("nan"), dtype=torch.float64)
        vals[i, u] = v
        sampler.update_curvatures(vals)

    @property
    def jtfs(self) -> "ReferenceJTFSNames":
        """The JTFS transform under the reference's attribute names (``Q``, ``J``,
        ``J_fr``, ``Q_fr``, ``T``, ``F``, ``shape``); anything else is the module's."""
        if not isinstance(self.transform, JTFS):
            raise AttributeError(f"jtfs: this loss's transform is a {type(self.transform).__name__}, not JTFS")
        return ReferenceJTFSNames(self.transform)

    @property
    def meta(self) -> dict[str, Any]:
        """Per output channel of the JTFS (first-order channels, then the paths), the
        reference's ``meta`` columns: ``key``, ``order``, ``n_fr``, ``xi``,
        ``sigma``, ``j`` (``(C, 2)``, NaN for the first order), ``xi_fr``,
        ``sigma_fr``, ``j_fr``, ``spin`` (``(C,)``), as numpy arrays."""
        return jtfs_meta(self.jtfs.module)

    @property
    def scrapl_keys(self) -> list[tuple[int, ...]]:
        """The reference's name of :attr:`paths`."""
        return self.paths

    @property
    def attached_params(self) -> list[Tensor]:
        """The parameters hooked by :meth:`attach_params` (empty when detached)."""
        return [] if self._hooks is None else list(self._hooks.params)

    @property
    def hooks(self) -> Optional[PathGradHooks]:
        """The :class:`scrapl.compat.hooks.PathGradHooks` of :meth:`attach_params`, or ``None``."""
        return self._hooks

    # ------------------------------------------------------------- gradient hooks
    def attach_params(self, params: Iterable[Tensor]) -> None:
        """Apply ``grad_mult``, P-Adam and P-SAGA to ``params``' gradients in gradient
        hooks (then step a plain ``torch.optim.SGD``).

        Every backward in training mode multiplies the gradient by ``grad_mult`` and
        replaces it by the P-Adam output and the P-SAGA direction of the path of the
        last training forward, with P-Adam step ``k =`` training forwards ``+ 1``
        (attaching resets the counter) and the reference's P-SAGA divisor.
        Attaching an empty list detaches.

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
        self.tracker.scrapl_t = 0
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
        self._hooks = PathGradHooks(
            params, self.n_paths,
            path_getter=lambda: self.tracker.last_train_path,
            step_getter=lambda: self.tracker.scrapl_t + 1,
            is_training=lambda: self.training,
            grad_mult=self.grad_mult, use_p_adam=self.use_p_adam, use_p_saga=self.use_p_saga,
            betas=(self.p_adam_b1, self.p_adam_b2), eps=self.p_adam_eps,
            eps_placement="outside", saga_divisor="reference",
        )
        if self._pending_hooks_state is not None:
            pending, self._pending_hooks_state = self._pending_hooks_state, None
            self._hooks.load_state_dict(pending)
        log.info("Attached %d parameter tensors (%d weights)", len(self._hooks.params),
                 sum(p.numel() for p in self._hooks.params))

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

    def _curvature_sampler(self, method: str) -> CurvatureSampler:
        if not isinstance(self.sampler, CurvatureSampler):
            raise TypeError(f"{method} needs a theta-IS sampler (scrapl.samplers.ThetaISSampler, sampler name "
                            f"'theta_is'), this loss has {type(self.sampler).__name__}")
        return self.sampler

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
        """theta-IS warmup: estimate the loss curvature of every path in
        ``[start_path_idx, end_path_idx)`` w.r.t. each of the ``n_theta`` synth
        parameters and update the sampling probabilities from it.

        Args:
            theta_fn: encoder; ``theta_fn(**theta_fn_kwargs[i])`` returns ``(batch,
                n_theta)``; deterministic during the warmup.
            synth_fn: synthesizer; ``synth_fn(theta, **synth_fn_kwargs[i])`` returns
                ``x_hat`` of shape ``(batch, channels, samples)``.
            theta_fn_kwargs: one dict per warmup batch, each with the input ``"x"``.
            params: encoder weights (without gradients, not attached).
            synth_fn_kwargs: optional per-batch synth arguments (same length).
            start_path_idx, end_path_idx: the paths ``[start, end)`` to compute
                (``None`` = ``n_paths``).
            save_dir: write ``vals_{path}.pt`` per path and, once every path is known,
                ``probs.pt`` (``None``: nothing written).  Existing files are reused.
            n_iter: power-iteration steps.
            agg: ``"none"`` (all params together) or ``"mean"``/``"max"``/``"med"``
                over one curvature per parameter tensor.
            force_multibatch: accepted; the computation does not depend on it.

        The distance is :meth:`path_distance` with ``reduction="mean"``; the
        curvatures come from :func:`scrapl.samplers.warmup.run_warmup` (which
        validates the encoder, synth and batches) and reach the sampler through
        :meth:`~scrapl.interfaces.CurvatureSampler.update_curvatures`.

        Raises:
            TypeError: the sampler is not a theta-IS sampler.
            ValueError: parameters with gradients or attached by
                :meth:`attach_params`, or a bad path range.
        """
        sampler = self._curvature_sampler("warmup_lc_hvp")
        params = list(params)
        if any(p.grad is not None and bool(p.grad.ne(0).any()) for p in params):
            raise ValueError("params must have no gradients before the warmup (call zero_grad(set_to_none=True))")
        if self._hooks is not None:
            raise ValueError("parameters are attached (attach_params); detach them with attach_params([]) "
                             "before the warmup")
        checks.check_bool("force_multibatch", force_multibatch)
        end = self.n_paths if end_path_idx is None else end_path_idx
        checks.check_int("start_path_idx", start_path_idx, 0)
        checks.check_int("end_path_idx", end, 0)
        if not 0 <= start_path_idx < end <= self.n_paths:
            raise ValueError(f"need 0 <= start_path_idx < end_path_idx <= {self.n_paths}, got "
                             f"start_path_idx={start_path_idx}, end_path_idx={end}")

        def dist_fn(x: Tensor, x_hat: Tensor, path_idx: int) -> Tensor:
            return self.path_distance(x, x_hat, path_idx, reduction="mean")

        log.info("Starting warmup_lc_hvp with agg = %s for %d parameter(s), %d iter, paths [%d, %d)",
                 agg, len(params), n_iter, start_path_idx, end)
        vals = run_warmup(dist_fn, self.n_paths, sampler.n_theta, theta_fn, synth_fn, theta_fn_kwargs, params,
                          synth_fn_kwargs, paths=range(start_path_idx, end), save_dir=save_dir, n_iter=n_iter,
                          agg=agg, min_prob_frac=sampler.min_prob_frac, eps=sampler.eps)
        sampler.update_curvatures(vals)

    def load_probs_from_warmup_dir(self, warmup_dir: str, agg: Literal["none", "mean", "max", "med"] = "none") -> None:
        """Set the probabilities from the ``vals_{path}.pt`` files of a warmup
        directory (e.g. written in parallel by several :meth:`warmup_lc_hvp` runs).

        First forgets the path counts, the step counter and the sampler's state
        (:meth:`clear`); attached parameters stay attached.  Paths without a file keep
        the uniform probability (with a warning).

        Raises:
            FileNotFoundError / NotADirectoryError: no such directory.
            TypeError: the sampler cannot load warmup results (not theta-IS).
            scrapl.errors.WarmupError: unusable files.
        """
        sampler = self._curvature_sampler("load_probs_from_warmup_dir")
        if not os.path.isdir(warmup_dir):
            if os.path.exists(warmup_dir):
                raise NotADirectoryError(f"warmup_dir {str(warmup_dir)!r} is not a directory")
            raise FileNotFoundError(f"warmup_dir {str(warmup_dir)!r} does not exist")
        self.clear(keep_attached=True)
        sampler.load_warmup_dir(warmup_dir, agg)
        log.info("Loading probs from directory %s: min prob = %.6f, max prob = %.6f", os.path.abspath(warmup_dir),
                 float(self.probs.min()), float(self.probs.max()))

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
        return _check_is_deterministic(theta_fn, theta_fn_kwargs, synth_fn, synth_fn_kwargs)

    # ------------------------------------------------------------- state
    def clear(self, *, keep_attached: bool = False) -> None:
        """Forget everything learned or drawn: path counts, step counter, the step's
        path, the sampler's draw state and probabilities (back to uniform), and
        detach the :meth:`attach_params` hooks (with ``keep_attached=True`` they stay
        attached and only their per-path state is reset)."""
        self.tracker.clear()
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
        self.sampler.reset_probs()

    def get_extra_state(self) -> dict[str, Any]:
        """:meth:`PathLoss.get_extra_state` plus the :meth:`attach_params` hooks' state."""
        return {**super().get_extra_state(), "hooks": None if self._hooks is None else self._hooks.state_dict()}

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state` output (hooks' state applied now if
        attached, else by the next :meth:`attach_params`)."""
        hooks = state.get("hooks") if isinstance(state, Mapping) else None
        if hooks is not None and not isinstance(hooks, Mapping):
            raise ValueError(f"_extra_state['hooks'] must be the hooks' state (a mapping) or None, got {type(hooks).__name__}")
        apply_hooks = hooks is not None and self._hooks is not None
        before = PathLoss.get_extra_state(self) if apply_hooks else None
        super().set_extra_state(state)  # all or nothing for sampler and tracker
        if apply_hooks:
            try:
                self._hooks.load_state_dict(hooks)  # builds the new state before replacing the old
            except BaseException:
                PathLoss.set_extra_state(self, before)
                raise
            hooks = None
        self._pending_hooks_state = hooks
