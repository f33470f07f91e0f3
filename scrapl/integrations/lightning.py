"""PyTorch Lightning integration: :class:`SCRAPLCallback` and :class:`ResumableDataLoader`.

Needs ``pip install "scrapl[lightning]"`` (``lightning >= 2.2``; the standalone
``pytorch_lightning`` package is used when ``lightning`` is absent).  A
LightningModule holds the loss of :func:`scrapl.build` as a submodule and returns
the path-aware optimizer of the same build from ``configure_optimizers``; the
callback then

* runs the theta-IS warmup at fit start on the first batches of the train
  dataloader (rank 0's batches, broadcast; the paths are sharded over the DDP ranks
  and the curvatures gathered), or loads probabilities from a ``probs.pt`` file or
  a warmup folder;
* logs per-path statistics through the Trainer's loggers: the step's path and its
  probability, the mean SCRAPL loss and the count of every path seen in the epoch
  (keys carry the path's physical meaning), the path-count histogram, and the
  probability heatmap as an image at fit start;
* keeps the draws of validation forwards out of the training path sequence, so
  validation, the sanity check and a resume do not change which paths train;
* checks the setup before any training step (a loss that is not a SCRAPL loss, a
  plain optimizer with a loss that holds one path per optimizer step, a warmup
  without train batches) and stores its own state in Lightning checkpoints (the
  loss's sampler state too when the loss is not a submodule of the module; the
  path-aware optimizer's state is saved by Lightning itself).

:class:`ResumableDataLoader` is a ``DataLoader`` with ``state_dict`` /
``load_state_dict``: Lightning saves its position in checkpoints, so a run resumed
from a mid-epoch checkpoint continues on the very next batch.

Nothing in the core of ``scrapl`` imports this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

try:  # the unified package first, the standalone one otherwise
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as exc:
        raise ImportError(
            "scrapl.integrations.lightning needs PyTorch Lightning: pip install 'scrapl[lightning]'"
        ) from exc

from scrapl.interfaces import PathAwareOptimizer, PathInfo

__all__ = ["SCRAPLCallback", "ResumableDataLoader", "path_tag", "probability_grid"]

_STATE_VERSION = 1
_WARMUP_OPTIONS = frozenset(
    {"n_iter", "tol", "agg", "method", "loss_hessian", "vectorize", "progress", "resume", "check_determinism",
     "generator"}
)
_LOSS_ATTRS = ("consume_path", "sampler", "path_infos", "n_paths", "path_distance")

ModuleFn = Union[str, Callable[..., Any]]


def _is_scrapl_loss(obj: Any) -> bool:
    """A SCRAPL loss: an ``nn.Module`` with the loss API the callback uses."""
    return isinstance(obj, nn.Module) and all(hasattr(obj, a) for a in _LOSS_ATTRS)


# ----------------------------------------------------------------------- path labels
def _num(v: float) -> str:
    return f"{v:.3g}"


def path_tag(info: PathInfo, sample_rate: Optional[float] = None) -> str:
    """A short logger key for a path: index and physical meaning, no spaces.

    JTFS paths give ``p012_rate4Hz_scale0.5cpo_up`` (temporal modulation rate in Hz
    with ``sample_rate``, else cycles per sample ``cps``; frequential scale in cycles
    per octave; spin ``up`` / ``down`` / ``lp`` for the frequential low-pass).  Paths
    without these fields use their label with unsafe characters replaced.
    """
    head = f"p{info.index:03d}"
    parts = []
    if info.temporal_rate is not None:
        if sample_rate is not None:
            parts.append(f"rate{_num(info.temporal_rate * sample_rate)}Hz")
        else:
            parts.append(f"rate{_num(info.temporal_rate)}cps")
    if info.freq_scale is not None:
        parts.append(f"scale{_num(info.freq_scale)}cpo")
    if info.spin is not None:
        parts.append({1: "up", -1: "down", 0: "lp"}.get(int(info.spin), f"spin{info.spin}"))
    if not parts:
        parts.append(re.sub(r"[^A-Za-z0-9.=+-]+", "_", info.label).strip("_") or "path")
    return "_".join([head, *parts])


def probability_grid(infos: Sequence[PathInfo], probs: Tensor) -> tuple[Tensor, list[float], list[float]]:
    """Probabilities arranged as (signed frequential scale) x (temporal rate).

    Args:
        infos: the loss's ``path_infos``.
        probs: ``(P,)`` sampling probabilities.

    Returns:
        ``(grid, rows, cols)``: ``grid`` of shape ``(len(rows), len(cols))`` (NaN
        where no path lies), ``rows`` the signed frequential scales ``spin *
        freq_scale`` in cycles per octave (descending), ``cols`` the temporal rates
        in cycles per sample (ascending).  Paths without these fields give one row
        ``[nan]`` and one column per path index.
    """
    p = probs.detach().double().cpu()
    if any(i.temporal_rate is None or i.freq_scale is None for i in infos):
        return p.unsqueeze(0).clone(), [math.nan], [float(i.index) for i in infos]
    def row_of(i: PathInfo) -> float:
        return float((i.spin if i.spin is not None else 1) * i.freq_scale)  # type: ignore[operator]

    rows = sorted({row_of(i) for i in infos}, reverse=True)
    cols = sorted({float(i.temporal_rate) for i in infos})  # type: ignore[arg-type]
    grid = torch.full((len(rows), len(cols)), math.nan, dtype=torch.float64)
    for i in infos:
        r, c = rows.index(row_of(i)), cols.index(float(i.temporal_rate))  # type: ignore[arg-type]
        grid[r, c] = p[i.index] if math.isnan(float(grid[r, c])) else grid[r, c] + p[i.index]
    return grid, rows, cols


def _heatmap_image(infos: Sequence[PathInfo], probs: Tensor, sample_rate: Optional[float]) -> Optional[Any]:
    """The probability heatmap as an ``(H, W, 3)`` uint8 numpy array (matplotlib),
    or ``None`` when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is part of the extra
        return None
    import numpy as np

    grid, rows, cols = probability_grid(infos, probs)
    fig = Figure(figsize=(6.0, 4.0), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid.numpy(), aspect="auto", origin="upper", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="sampling probability")
    if not math.isnan(rows[0]):
        scale = sample_rate if sample_rate is not None else 1.0
        unit = "Hz" if sample_rate is not None else "cycles/sample"
        ax.set_xticks(range(len(cols)), [_num(c * scale) for c in cols], rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), [_num(r) for r in rows], fontsize=7)
        ax.set_xlabel(f"temporal modulation rate ({unit})")
        ax.set_ylabel("spin x frequential scale (cycles/octave)")
    else:
        ax.set_xlabel("path index")
        ax.set_yticks([])
    ax.set_title(f"theta-IS path probabilities ({len(infos)} paths)")
    fig.tight_layout()
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return img


# ----------------------------------------------------------------------- RNG guard
def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects a DataLoader draws its order from."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None),
                                                                      "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


@contextlib.contextmanager
def _untouched_rng(loader: Any) -> Iterator[None]:
    """Iterate ``loader`` without changing torch's CPU RNG or the loader's generators."""
    gens = _loader_generators(loader)
    states = [g.get_state() for g in gens]
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            for g, s in zip(gens, states):
                g.set_state(s)


# ----------------------------------------------------------------------- data loader
class ResumableDataLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` that resumes mid-epoch in Lightning.

    Lightning stores the ``state_dict()`` of a train dataloader that has one in its
    checkpoints and calls ``load_state_dict`` on resume.  The state is the number of
    batches already given in the current epoch and the state of the generators that
    order the epoch (``DataLoader(generator=...)``, ``RandomSampler(generator=...)``),
    taken at the start of the epoch; after a resume the epoch's order is drawn again
    and the batches already trained on are skipped (loaded and dropped: skipping
    costs their loading time).  A ``DistributedSampler`` (what Lightning puts in
    under DDP) orders each epoch from its seed and epoch number, so it needs no state.

    Takes the arguments of ``DataLoader``.  Exact resume needs a reproducible order:
    ``shuffle=True`` requires ``generator=torch.Generator().manual_seed(seed)``
    (without it the order comes from torch's global RNG, which checkpoints do not
    hold).  Not supported: ``limit_train_batches`` below the loader's length, and
    randomness inside the dataset or the workers (seed it from the index).

    Raises:
        ValueError: ``shuffle=True`` without a generator.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sampler = getattr(self, "sampler", None)
        if isinstance(sampler, torch.utils.data.RandomSampler) and sampler.generator is None and self.generator is None:
            raise ValueError(
                "ResumableDataLoader(shuffle=True) needs generator=torch.Generator().manual_seed(seed): the order "
                "must be reproducible for an exact resume"
            )
        self._skip = 0
        self._position = 0
        self._epoch_states: Optional[list[Tensor]] = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # Runs at the first next(): record the epoch's starting generator states.
        self._epoch_states = [g.get_state() for g in _loader_generators(self)]
        skip, self._skip = self._skip, 0
        self._position = skip
        for i, batch in enumerate(DataLoader.__iter__(self)):
            if i < skip:
                continue
            self._position = i + 1
            yield batch

    def _in_epoch(self) -> bool:
        try:
            n = len(self)
        except TypeError:
            n = None
        return self._epoch_states is not None and (n is None or self._position < n)

    def state_dict(self) -> dict[str, Any]:
        """``{"skip": batches given in this epoch, "generators": [states]}``; between
        epochs ``skip`` is 0 and the states are the current ones."""
        if self._in_epoch():
            return {"skip": int(self._position), "generators": [s.clone() for s in self._epoch_states or []]}
        return {"skip": 0, "generators": [g.get_state() for g in _loader_generators(self)]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next epoch starts at batch ``skip`` of the
        order drawn from the saved generator states."""
        if not isinstance(state, Mapping) or "skip" not in state or "generators" not in state:
            raise ValueError("not a ResumableDataLoader state (needs 'skip' and 'generators')")
        gens = _loader_generators(self)
        saved = list(state["generators"])
        if len(saved) != len(gens):
            raise ValueError(f"the state holds {len(saved)} generator states, this loader has {len(gens)} generators")
        for g, s in zip(gens, saved):
            g.set_state(s)
        self._skip = int(state["skip"])
        self._epoch_states = None


# ----------------------------------------------------------------------- inputs
def _default_warmup_inputs(batch: Any) -> dict[str, Any]:
    if isinstance(batch, Tensor):
        return {"x": batch}
    if isinstance(batch, Mapping) and "x" in batch:
        return {"x": batch["x"]}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return {"x": batch[0]}
    raise TypeError(
        f"cannot find the target signal in a train batch of type {type(batch).__name__}; pass "
        "SCRAPLCallback(warmup_inputs=lambda batch: {'x': <target audio (B, C, N)>, ...})"
    )


def _check_callable_or_name(name: str, value: Any) -> None:
    if value is not None and not (callable(value) or isinstance(value, str)):
        raise TypeError(f"{name} must be a callable or the name of a LightningModule method, got {type(value).__name__}")


# ----------------------------------------------------------------------- callback
class SCRAPLCallback(pl.Callback):
    """Lightning callback for training with a SCRAPL loss.

    Args:
        loss: the SCRAPL loss (``scrapl.build(...).loss`` or ``scrapl.SCRAPLLoss``),
            the name of the LightningModule attribute holding it (dotted names
            allowed), or ``None``: the only SCRAPL loss among the module's submodules.
        warmup_batches: run the theta-IS warmup at fit start on this many first
            batches of the train dataloader (0: no warmup).  Needs a ``theta_is``
            sampler, ``theta_fn`` and ``synth_fn``.  Skipped on resume from a
            checkpoint written after it (the probabilities are in the checkpoint).
        theta_fn: encoder ``theta_fn(**inputs) -> (B, n_theta)``: a callable or the
            name of a method of the LightningModule.
        synth_fn: synthesizer ``synth_fn(theta, **synth_kwargs) -> x_hat (B, C, N)``
            (callable or method name); must be deterministic.
        warmup_inputs: ``batch -> dict`` of ``theta_fn`` keyword arguments holding the
            target signal under ``"x"``.  Default: the batch itself if it is a tensor,
            ``batch["x"]``, or ``batch[0]``.
        warmup_synth_kwargs: optional ``batch -> dict`` of ``synth_fn`` keywords.
        warmup_params: ``module -> parameters`` the curvature is taken over (the
            encoder's; the loss must depend on them only through theta).  Default:
            every trainable parameter of the module.
        warmup_dir: write the warmup's ``vals_{p}.pt`` files (and ``probs.pt``) here;
            an interrupted warmup resumes from them.
        warmup_options: more keywords of :func:`scrapl.samplers.run_warmup`
            (``n_iter``, ``tol``, ``method``, ``agg``, ``loss_hessian``,
            ``vectorize``, ``progress``, ``resume``, ``check_determinism``,
            ``generator``).
        probs_from: instead of a warmup, load the probabilities at fit start from a
            ``probs.pt`` file or a warmup folder of ``vals_{p}.pt`` files.
        log_paths: log per-path statistics (see the module docs).
        log_heatmap: log the probability heatmap as an image at fit start
            (TensorBoard ``add_image``, a logger's ``log_image``, else a PNG in the
            logger's ``log_dir``).
        sample_rate: sample rate in Hz of the signals, to give temporal rates in Hz.
        isolate_eval_draws: validation forwards draw their paths without advancing
            the training sequence (the sampler's state is restored after each
            validation run).

    Logged keys (``scrapl/`` prefix): ``path`` and ``path_prob`` at each training
    step; at each epoch end ``paths_seen`` (distinct paths trained on so far),
    ``loss_by_path/<tag>`` and ``count_by_path/<tag>`` for every path trained on in
    the epoch (``<tag>`` from :func:`path_tag`); ``path_counts`` as a histogram
    where the logger has one (TensorBoard).

    Raises (at setup, before any training step):
        TypeError: no SCRAPL loss, or a plain optimizer with a loss that holds one
            path per optimizer step, or a sampler that cannot warm up / load.
        ValueError: invalid arguments, a path-aware optimizer for another loss, a
            warmup with fewer train batches than ``warmup_batches``.
        FileNotFoundError: ``probs_from`` does not exist.
    """

    def __init__(
        self,
        loss: Union[str, nn.Module, None] = None,
        *,
        warmup_batches: int = 0,
        theta_fn: Optional[ModuleFn] = None,
        synth_fn: Optional[ModuleFn] = None,
        warmup_inputs: Optional[Callable[[Any], Mapping[str, Any]]] = None,
        warmup_synth_kwargs: Optional[Callable[[Any], Mapping[str, Any]]] = None,
        warmup_params: Optional[Callable[[Any], Iterable[Tensor]]] = None,
        warmup_dir: Optional[Union[str, os.PathLike]] = None,
        warmup_options: Optional[Mapping[str, Any]] = None,
        probs_from: Optional[Union[str, os.PathLike]] = None,
        log_paths: bool = True,
        log_heatmap: bool = True,
        sample_rate: Optional[float] = None,
        isolate_eval_draws: bool = True,
    ) -> None:
        super().__init__()
        if loss is not None and not isinstance(loss, str) and not _is_scrapl_loss(loss):
            raise TypeError(
                f"loss must be a SCRAPL loss (scrapl.build(config).loss or scrapl.SCRAPLLoss), the name of the "
                f"LightningModule attribute holding it, or None; got {type(loss).__name__}"
            )
        if isinstance(warmup_batches, bool) or not isinstance(warmup_batches, int) or warmup_batches < 0:
            raise ValueError(f"warmup_batches must be an int >= 0, got {warmup_batches!r}")
        for name, fn in (("theta_fn", theta_fn), ("synth_fn", synth_fn)):
            _check_callable_or_name(name, fn)
        for name, fn in (("warmup_inputs", warmup_inputs), ("warmup_synth_kwargs", warmup_synth_kwargs),
                         ("warmup_params", warmup_params)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if warmup_batches > 0 and (theta_fn is None or synth_fn is None):
            raise ValueError("warmup_batches > 0 needs theta_fn and synth_fn (callables or LightningModule method names)")
        if warmup_batches > 0 and probs_from is not None:
            raise ValueError("give warmup_batches > 0 or probs_from, not both")
        options = dict(warmup_options or {})
        unknown = sorted(set(options) - _WARMUP_OPTIONS)
        if unknown:
            raise ValueError(f"unknown warmup_options {unknown}; allowed: {sorted(_WARMUP_OPTIONS)}")
        if sample_rate is not None and not (
            isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool)
            and math.isfinite(sample_rate) and sample_rate > 0
        ):
            raise ValueError(f"sample_rate must be a positive number of Hz or None, got {sample_rate!r}")
        for name, flag in (("log_paths", log_paths), ("log_heatmap", log_heatmap),
                           ("isolate_eval_draws", isolate_eval_draws)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self._loss_spec = loss
        self.warmup_batches = warmup_batches
        self.theta_fn = theta_fn
        self.synth_fn = synth_fn
        self.warmup_inputs = warmup_inputs or _default_warmup_inputs
        self.warmup_synth_kwargs = warmup_synth_kwargs
        self.warmup_params = warmup_params
        self.warmup_dir = None if warmup_dir is None else os.fspath(warmup_dir)
        self.warmup_options = options
        self.probs_from = None if probs_from is None else os.fspath(probs_from)
        self.log_paths = log_paths
        self.log_heatmap = log_heatmap
        self.sample_rate = None if sample_rate is None else float(sample_rate)
        self.isolate_eval_draws = isolate_eval_draws

        self.loss: Optional[nn.Module] = None
        self.warmup_curvatures: Optional[Tensor] = None
        self._ready = False  # probabilities set (warmup run or loaded), also after a resume
        self._pending: Optional[dict[str, Any]] = None
        self._hook: Any = None
        self._eval_stash: Optional[dict[str, Any]] = None
        self._epoch_sum: Optional[Tensor] = None  # (P,) sums of the SCRAPL loss per path, this epoch
        self._epoch_count: Optional[Tensor] = None  # (P,) int64 training forwards per path, this epoch
        self._total_count: Optional[Tensor] = None  # (P,) int64, since the start of training
        self._tags: list[str] = []
        self._outside_module = False

    @property
    def state_key(self) -> str:
        name = self._loss_spec if isinstance(self._loss_spec, str) else None
        return self._generate_state_key(loss=name)

    # ------------------------------------------------------------------ setup
    def _resolve_loss(self, pl_module: Any) -> nn.Module:
        spec = self._loss_spec
        if spec is None:
            found: dict[int, tuple[str, nn.Module]] = {}
            for name, module in pl_module.named_modules():
                if _is_scrapl_loss(module) and id(module) not in found:
                    found[id(module)] = (name, module)
            if not found:
                raise TypeError(
                    f"SCRAPLCallback found no SCRAPL loss in {type(pl_module).__name__}: make the loss "
                    "(scrapl.build(config).loss) a submodule, e.g. self.loss_fn = built.loss, or pass "
                    "SCRAPLCallback(loss=...)"
                )
            if len(found) > 1:
                names = sorted(n for n, _ in found.values())
                raise ValueError(f"SCRAPLCallback found several SCRAPL losses {names}: pass loss='<name>'")
            return next(iter(found.values()))[1]
        if isinstance(spec, str):
            obj: Any = pl_module
            for part in spec.split("."):
                if not hasattr(obj, part):
                    raise ValueError(f"SCRAPLCallback(loss={spec!r}): {type(pl_module).__name__} has no attribute {spec!r}")
                obj = getattr(obj, part)
            if not _is_scrapl_loss(obj):
                raise TypeError(
                    f"SCRAPLCallback(loss={spec!r}): {type(pl_module).__name__}.{spec} is a {type(obj).__name__}, not a "
                    "SCRAPL loss (scrapl.build(config).loss or scrapl.SCRAPLLoss)"
                )
            return obj
        return spec

    def _resolve_fn(self, pl_module: Any, name: str, value: Optional[ModuleFn]) -> Callable[..., Any]:
        if isinstance(value, str):
            fn = getattr(pl_module, value, None)
            if not callable(fn):
                raise ValueError(f"SCRAPLCallback({name}={value!r}): {type(pl_module).__name__} has no method {value!r}")
            return fn
        assert value is not None  # checked at construction
        return value

    def _is_submodule(self, pl_module: Any) -> bool:
        return any(m is self.loss for m in pl_module.modules())

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.loss = self._resolve_loss(pl_module)
        self._outside_module = not self._is_submodule(pl_module)
        P = int(self.loss.n_paths)
        self._tags = [path_tag(info, self.sample_rate) for info in self.loss.path_infos]
        self._epoch_sum = torch.zeros(P, dtype=torch.float64)
        self._epoch_count = torch.zeros(P, dtype=torch.int64)
        self._total_count = torch.zeros(P, dtype=torch.int64)
        if stage == "fit" and (self.warmup_batches > 0 or self.probs_from is not None):
            sampler = self.loss.sampler
            need = "warmup" if self.warmup_batches > 0 else "load_probs"
            if not hasattr(sampler, need):
                raise TypeError(
                    f"SCRAPLCallback({'warmup_batches' if need == 'warmup' else 'probs_from'}=...) needs the theta-IS "
                    f"sampler (config sampler: {{'name': 'theta_is', 'n_theta': ...}}); this loss has "
                    f"{type(sampler).__name__}"
                )
        if stage == "fit" and self.warmup_batches > 0:
            self._resolve_fn(pl_module, "theta_fn", self.theta_fn)
            self._resolve_fn(pl_module, "synth_fn", self.synth_fn)

    def _check_optimizers(self, trainer: Any) -> None:
        loss = self.loss
        assert loss is not None
        optimizers = list(trainer.optimizers)
        aware = [o for o in optimizers if isinstance(o, PathAwareOptimizer)]
        for opt in aware:
            if int(opt.n_paths) != int(loss.n_paths):
                raise ValueError(
                    f"{type(opt).__name__} keeps state for {opt.n_paths} paths, the SCRAPL loss has {loss.n_paths}: "
                    "build the optimizer with the same scrapl.build(config) as the loss: built.optimizer(params, lr=...)"
                )
            source = getattr(opt, "path_source", None)
            if source is None and _holds_path(loss):
                raise ValueError(
                    f"{type(opt).__name__} has no path_source, so it never takes the loss's path: build it with "
                    "built.optimizer(params, lr=...) (the same scrapl.build as the loss)"
                )
            owner = getattr(source, "__self__", None)
            if getattr(source, "__name__", None) == "consume_path" and _is_scrapl_loss(owner) and owner is not loss:
                raise ValueError(
                    f"{type(opt).__name__} takes its paths from another SCRAPL loss than this callback's: build it "
                    "with built.optimizer(...) of the build whose loss the module uses"
                )
        plain = [o for o in optimizers if not isinstance(o, PathAwareOptimizer)]
        if plain and not aware and _holds_path(loss):
            names = ", ".join(sorted({type(o).__name__ for o in plain}))
            raise TypeError(
                f"optimizer {names} is not path-aware, but this SCRAPL loss holds one path per optimizer step "
                "(path_per_step=True) until a path-aware optimizer takes it: it would train on one path forever. "
                "Return built.optimizer(self.parameters(), lr=...) from configure_optimizers (the configured "
                "'p_adam_saga' by default; 'p_adam', 'p_saga', or 'sgd' for plain SGD in the config's optimizer), "
                "or build the loss with loss: {path_per_step: false} to use a plain optimizer"
            )

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        loss = self.loss
        assert loss is not None, "setup() resolves the loss"
        self._apply_pending(pl_module)
        self._check_optimizers(trainer)
        if not self._ready and self.probs_from is not None:
            self._load_probs(self.probs_from)
            self._ready = True
        if not self._ready and self.warmup_batches > 0:
            self.warmup_curvatures = self._warmup(trainer, pl_module)
            self._ready = True
        if self.log_paths:
            self._hook = loss.register_forward_hook(self._record)
        if self.log_heatmap and trainer.is_global_zero:
            self._log_heatmap(trainer)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._remove_hook()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._remove_hook()

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # ------------------------------------------------------------------ probabilities
    def _load_probs(self, source: str) -> None:
        sampler = self.loss.sampler  # type: ignore[union-attr]
        if os.path.isdir(source):
            sampler.load_warmup_dir(source)
        elif os.path.isfile(source):
            sampler.load_probs(source)
        else:
            raise FileNotFoundError(f"SCRAPLCallback(probs_from={source!r}): no such file or directory")

    def _train_loader(self, trainer: Any) -> Any:
        """The single train dataloader, after Lightning prepared it (DDP sampler)."""
        fit_loop = trainer.fit_loop
        fit_loop.setup_data()  # what fit_loop.run() does first; idempotent
        loader = trainer.train_dataloader
        if loader is None or trainer.num_training_batches == 0:
            raise ValueError(
                f"SCRAPLCallback(warmup_batches={self.warmup_batches}) needs a train dataloader with batches, "
                "and this fit has none (no train dataloader, an empty one, or limit_train_batches=0)"
            )
        if isinstance(loader, (Mapping, list, tuple)):
            raise ValueError(
                "SCRAPLCallback's warmup needs a single train dataloader, got a "
                f"{type(loader).__name__} of dataloaders; run the warmup separately and pass probs_from="
            )
        try:
            n = len(loader)
        except TypeError:  # an iterable dataset: counted while reading
            n = None
        if n is not None and n < self.warmup_batches:
            raise ValueError(
                f"SCRAPLCallback(warmup_batches={self.warmup_batches}): the train dataloader gives only {n} batches"
            )
        return loader

    def _first_batches(self, loader: Any) -> list[Any]:
        """The first ``warmup_batches`` batches the fit loop will train on.

        A map-style loader is read through its batch sampler and collate function,
        in this process: the indices come from the sampler's current state, which is
        restored afterwards, so these are the batches the first training steps get
        (and a persistent worker iterator is not disturbed).  Other loaders are
        iterated with their generators and torch's RNG restored afterwards.
        """
        out: list[Any] = []
        batch_sampler = getattr(loader, "batch_sampler", None)
        dataset = getattr(loader, "dataset", None)
        with _untouched_rng(loader):
            if batch_sampler is not None and dataset is not None \
                    and not isinstance(dataset, torch.utils.data.IterableDataset):
                for indices in batch_sampler:
                    out.append(loader.collate_fn([dataset[i] for i in indices]))
                    if len(out) == self.warmup_batches:
                        break
            else:
                for batch in loader:
                    out.append(batch)
                    if len(out) == self.warmup_batches:
                        break
        if len(out) < self.warmup_batches:
            raise ValueError(
                f"SCRAPLCallback(warmup_batches={self.warmup_batches}): the train dataloader gave only {len(out)} batches"
            )
        return out

    def _warmup(self, trainer: Any, pl_module: Any) -> Tensor:
        loss = self.loss
        assert loss is not None
        loader = self._train_loader(trainer)
        batches = self._first_batches(loader) if trainer.is_global_zero else None
        batches = trainer.strategy.broadcast(batches, src=0)  # every rank: rank 0's batches
        batches = [trainer.strategy.batch_to_device(b) for b in batches]
        theta_kw = [dict(self.warmup_inputs(b)) for b in batches]
        if any("x" not in kw for kw in theta_kw):
            raise ValueError("warmup_inputs(batch) must return a dict holding the target signal under 'x'")
        synth_kw = None if self.warmup_synth_kwargs is None else [dict(self.warmup_synth_kwargs(b)) for b in batches]
        if self.warmup_params is not None:
            params = [p for p in self.warmup_params(pl_module)]
        else:
            own = {id(p) for p in loss.parameters()}
            params = [p for p in pl_module.parameters() if p.requires_grad and id(p) not in own]
        theta_fn = self._resolve_fn(pl_module, "theta_fn", self.theta_fn)
        synth_fn = self._resolve_fn(pl_module, "synth_fn", self.synth_fn)

        def dist_fn(x: Tensor, x_hat: Tensor, path_idx: int) -> Tensor:
            return loss.path_distance(x_hat, x, path_idx, reduction="mean")

        options = dict(self.warmup_options)
        options.setdefault("progress", False)
        return loss.sampler.warmup(dist_fn, theta_fn, synth_fn, theta_kw, params, synth_kw,
                                   save_dir=self.warmup_dir, **options)

    # ------------------------------------------------------------------ eval draws
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if self.isolate_eval_draws and self.loss is not None:
            self._eval_stash = _clone(self.loss.sampler.state_dict())

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._eval_stash is not None and self.loss is not None:
            self.loss.sampler.load_state_dict(self._eval_stash)
            self._eval_stash = None

    # ------------------------------------------------------------------ logging
    def _record(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook of the loss: accumulate training forwards per path."""
        if not module.training or not isinstance(output, Tensor) or not output.requires_grad:
            return
        path = getattr(module, "curr_path_idx", None)
        if path is None or self._epoch_sum is None:
            return
        value = float(output.detach().float().mean())
        self._epoch_sum[int(path)] += value
        self._epoch_count[int(path)] += 1  # type: ignore[index]
        self._total_count[int(path)] += 1  # type: ignore[index]

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.log_paths or self.loss is None:
            return
        path = getattr(self.loss, "curr_path_idx", None)
        if path is None:
            return
        prob = float(self.loss.sampler.probs[int(path)])
        pl_module.log_dict({"scrapl/path": float(path), "scrapl/path_prob": prob}, on_step=True, on_epoch=False,
                           batch_size=1)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.log_paths or self._epoch_count is None:
            return
        seen = torch.nonzero(self._epoch_count).flatten().tolist()
        metrics: dict[str, float] = {"scrapl/paths_seen": float(int((self._total_count > 0).sum()))}  # type: ignore[operator]
        for i in seen:
            n = int(self._epoch_count[i])
            metrics[f"scrapl/loss_by_path/{self._tags[i]}"] = float(self._epoch_sum[i]) / n  # type: ignore[index]
            metrics[f"scrapl/count_by_path/{self._tags[i]}"] = float(n)
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.log_metrics(metrics, step=trainer.global_step)
                exp = getattr(lg, "experiment", None)
                if hasattr(exp, "add_histogram"):
                    counts = self._total_count
                    values = torch.repeat_interleave(torch.arange(len(counts)), counts).double()  # type: ignore[arg-type]
                    if values.numel():
                        exp.add_histogram("scrapl/path_counts", values, trainer.global_step,
                                          bins=torch.arange(len(counts) + 1).double().sub(0.5).numpy())
        self._epoch_sum.zero_()  # type: ignore[union-attr]
        self._epoch_count.zero_()

    def _log_heatmap(self, trainer: Any) -> None:
        loss = self.loss
        assert loss is not None
        if not trainer.loggers:
            return
        img = _heatmap_image(loss.path_infos, loss.sampler.probs, self.sample_rate)
        if img is None:
            warnings.warn("SCRAPLCallback: matplotlib is not installed; no probability heatmap", RuntimeWarning,
                          stacklevel=2)
            return
        for lg in trainer.loggers:
            exp = getattr(lg, "experiment", None)
            if hasattr(exp, "add_image"):  # TensorBoard
                exp.add_image("scrapl/path_probs", img, trainer.global_step, dataformats="HWC")
            elif hasattr(lg, "log_image"):  # e.g. Weights & Biases, Neptune
                lg.log_image(key="scrapl/path_probs", images=[img], step=trainer.global_step)
            elif getattr(lg, "log_dir", None):
                out = Path(lg.log_dir)
                out.mkdir(parents=True, exist_ok=True)
                from matplotlib.image import imsave

                imsave(out / "scrapl_path_probs.png", img)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"version": _STATE_VERSION, "ready": self._ready}
        if self._epoch_count is not None:
            state.update(epoch_sum=self._epoch_sum.clone(), epoch_count=self._epoch_count.clone(),  # type: ignore[union-attr]
                         total_count=self._total_count.clone())  # type: ignore[union-attr]
        if self.loss is not None and self._outside_module:  # else the module's state_dict holds it
            state["loss"] = _clone(self.loss.state_dict())
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, Mapping) or state_dict.get("version") != _STATE_VERSION:
            raise ValueError("not a SCRAPLCallback state (missing or unknown 'version')")
        self._pending = dict(state_dict)

    def _apply_pending(self, pl_module: Any) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        self._ready = bool(state["ready"])
        for key in ("epoch_sum", "epoch_count", "total_count"):
            if key in state and getattr(self, f"_{key}") is not None:
                value = state[key]
                if value.shape != getattr(self, f"_{key}").shape:
                    raise ValueError(f"SCRAPLCallback checkpoint is for {value.shape[0]} paths, the loss has "
                                     f"{self.loss.n_paths}")  # type: ignore[union-attr]
                setattr(self, f"_{key}", value.clone())
        if "loss" in state and self._outside_module:
            self.loss.load_state_dict(state["loss"])  # type: ignore[union-attr]


def _holds_path(loss: Any) -> bool:
    """Whether the loss keeps one path per optimizer step until it is consumed."""
    return bool(getattr(loss, "path_per_step", True))


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, Mapping):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone(v) for v in obj)
    return obj
