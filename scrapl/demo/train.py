"""Unsupervised sound matching with the chirplet synthesizer: SCRAPL against MSS.

The setup follows the SCRAPL paper's chirplet experiment, scaled down to run on a
laptop CPU in a few minutes:

1. a target ``x = synth(theta, delay)`` is rendered from random parameters
   ``theta ~ U[0, 1]^2`` (AM rate, FM rate) and a random delay;
2. the encoder predicts ``theta_hat`` from ``x`` (no labels are used for training);
3. the synthesizer renders ``x_hat = synth(theta_hat, delay_hat)`` with an
   independent random delay;
4. the loss compares ``x_hat`` with ``x``: SCRAPL (one random JTFS path per step,
   P-Adam + P-SAGA through the ``p_adam_saga`` optimizer, theta-IS path
   probabilities from a warmup) or the multi-resolution STFT loss (MSS, auraloss)
   with Adam, under the same number of steps and the same data stream;
5. the held-out parameter error ``mean |theta_hat - theta|`` is measured on a fixed
   validation set along the way.

Entry point: :func:`run_demo`.  Everything random goes through explicit
``torch.Generator`` objects seeded from :class:`~scrapl.demo.settings.DemoSettings`;
weights are initialised after ``torch.manual_seed(seed)`` so every method starts
from the same encoder.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from scrapl.demo.model import ChirpletEncoder
from scrapl.demo.settings import DemoSettings, default_scrapl_config
from scrapl.demo.synth import ChirpletSynth

__all__ = [
    "DemoData",
    "MethodResult",
    "DemoResult",
    "make_synth",
    "make_encoder",
    "evaluate",
    "train_method",
    "run_demo",
    "format_summary",
]

PARAM_NAMES: tuple[str, str] = ("am", "fm")


def _tqdm(iterable: Any = None, **kw: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


# ----------------------------------------------------------------------------- setup
def make_synth(settings: DemoSettings, n_samples: int) -> ChirpletSynth:
    """The demo's :class:`ChirpletSynth` for signals of ``n_samples`` samples."""
    s = settings.synth
    return ChirpletSynth(
        n_samples=n_samples,
        sr=s.sr,
        f0_hz=s.f0_hz,
        bw_oct=s.bw_oct,
        sigma0=s.sigma0,
        am_hz_range=s.am_hz_range,
        fm_oct_range=s.fm_oct_range,
        max_shift=s.max_shift,
    )


def make_encoder(settings: DemoSettings, n_samples: int) -> ChirpletEncoder:
    """A freshly initialised encoder: ``torch.manual_seed(settings.seed)`` first, so
    every call returns the same weights."""
    e = settings.encoder
    torch.manual_seed(settings.seed)
    return ChirpletEncoder(
        n_samples, 2, channels=e.channels, hidden=e.hidden, n_octaves=e.n_octaves, Q=e.Q, hop=e.hop
    )


class DemoData:
    """Deterministic stream of training batches and a fixed validation set.

    Batch ``i`` is the same for every method (it is generated once, in order, and
    cached), so all methods see the same targets and reconstruction delays.

    Args:
        synth: the synthesizer.
        features: the encoder's gradient-free front end
            (:meth:`ChirpletEncoder.features`), used to precompute inputs.
        batch_size: training batch size.
        seed: seed of the training stream (parameters, target delays, reconstruction
            delays each come from their own generator).
        n_val: validation set size.
        val_seed: seed of the validation set.
        independent_shift: reconstructions get their own delays (else the target's).
    """

    def __init__(
        self,
        synth: ChirpletSynth,
        features: Callable[[Tensor], Tensor],
        *,
        batch_size: int,
        seed: int,
        n_val: int,
        val_seed: int,
        independent_shift: bool = True,
    ) -> None:
        self.synth = synth
        self.features = features
        self.batch_size = batch_size
        self.independent_shift = independent_shift
        self._g_theta = torch.Generator().manual_seed(seed * 3 + 1)
        self._g_shift = torch.Generator().manual_seed(seed * 3 + 2)
        self._g_shift_hat = torch.Generator().manual_seed(seed * 3 + 3)
        self._cache: list[dict[str, Tensor]] = []
        gv = torch.Generator().manual_seed(val_seed)
        self.val_theta = torch.rand(n_val, 2, generator=gv)
        with torch.no_grad():
            self.val_x = synth(self.val_theta, generator=gv)
            self.val_features = features(self.val_x)

    def batch(self, i: int) -> dict[str, Tensor]:
        """Training batch ``i`` (0-based): ``theta`` ``(B, 2)``, target audio ``x``
        ``(B, 1, N)``, encoder ``features`` ``(B, 1, K, frames)``, reconstruction
        delays ``shifts_hat`` ``(B,)``."""
        while len(self._cache) <= i:
            b = self.batch_size
            theta = torch.rand(b, 2, generator=self._g_theta)
            shifts = self.synth.sample_shifts(b, self._g_shift)
            shifts_hat = (
                self.synth.sample_shifts(b, self._g_shift_hat) if self.independent_shift else shifts.clone()
            )
            with torch.no_grad():
                x = self.synth(theta, shifts=shifts)
                feats = self.features(x)
            self._cache.append({"theta": theta, "x": x, "features": feats, "shifts_hat": shifts_hat})
        return self._cache[i]


@torch.no_grad()
def evaluate(encoder: ChirpletEncoder, features: Tensor, theta: Tensor) -> dict[str, float]:
    """Held-out parameter error of ``encoder``.

    Args:
        encoder: the model (put in eval mode for the call, restored afterwards).
        features: precomputed :meth:`ChirpletEncoder.features`, ``(B, 1, K, T)``.
        theta: true parameters ``(B, 2)`` in ``[0, 1]``.

    Returns:
        ``theta_l1`` (mean absolute error over both parameters) and
        ``theta_l1_am``, ``theta_l1_fm``.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        err = (encoder.head_from_features(features) - theta).abs()
    finally:
        encoder.train(was_training)
    out = {"theta_l1": float(err.mean())}
    for i, name in enumerate(PARAM_NAMES):
        out[f"theta_l1_{name}"] = float(err[:, i].mean())
    return out


# ----------------------------------------------------------------------------- runs
@dataclass
class MethodResult:
    """Outcome of one training run.

    Attributes:
        name: method name.
        final: final held-out errors (``theta_l1``, ``theta_l1_am``, ``theta_l1_fm``).
        history: validation records (``step``, ``time_s``, errors, ``train_loss``).
        train_seconds: wall-clock seconds spent in training steps (validation
            excluded).
        setup_seconds: seconds spent before the first step (theta-IS warmup).
        steps: number of optimizer steps.
        extra: method-specific details (paths drawn, optimizer name ...).
    """

    name: str
    final: dict[str, float]
    history: list[dict[str, float]]
    train_seconds: float
    setup_seconds: float
    steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        d = dict(self.final)
        d.update(
            steps=self.steps,
            train_seconds=round(self.train_seconds, 3),
            setup_seconds=round(self.setup_seconds, 3),
            ms_per_step=round(1000.0 * self.train_seconds / max(1, self.steps), 3),
            history=self.history,
        )
        d.update(self.extra)
        return d


def train_method(
    name: str,
    encoder: ChirpletEncoder,
    synth: ChirpletSynth,
    data: DemoData,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    val_every: int,
    time_offset: float = 0.0,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, float]], float]:
    """Train ``encoder`` for ``steps`` optimizer steps.

    Each step: ``theta_hat = encoder(x)``, ``x_hat = synth(theta_hat, shifts_hat)``,
    ``loss_fn(x_hat, x).backward()``, ``optimizer.step()``.

    Args:
        name: shown in the progress bar.
        time_offset: added to the recorded ``time_s`` (e.g. warmup seconds).
        on_step: called with the step number after each optimizer step.

    Returns:
        ``(history, train_seconds)``.
    """
    history: list[dict[str, float]] = []
    rec = evaluate(encoder, data.val_features, data.val_theta)
    history.append({"step": 0, "time_s": round(time_offset, 4), **rec, "train_loss": float("nan")})
    train_seconds = 0.0
    running: list[float] = []
    encoder.train()
    bar = _tqdm(range(1, steps + 1), desc=f"train {name}", disable=not progress, leave=False, dynamic_ncols=True)
    for step in bar:
        batch = data.batch(step - 1)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        theta_hat = encoder.head_from_features(batch["features"])
        x_hat = synth(theta_hat, shifts=batch["shifts_hat"])
        loss = loss_fn(x_hat, batch["x"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: non-finite loss {float(loss)} at step {step}")
        loss.backward()
        optimizer.step()
        train_seconds += time.perf_counter() - t0
        if on_step is not None:
            on_step(step)
        running.append(float(loss.detach()))
        if step % val_every == 0 or step == steps:
            rec = evaluate(encoder, data.val_features, data.val_theta)
            mean_loss = sum(running) / len(running)
            running.clear()
            history.append(
                {"step": step, "time_s": round(time_offset + train_seconds, 4), **rec, "train_loss": mean_loss}
            )
            bar.set_postfix(loss=f"{mean_loss:.3g}", val_l1=f"{rec['theta_l1']:.3f}")
    bar.close()
    return history, train_seconds


@dataclass
class DemoResult:
    """All results of :func:`run_demo`."""

    methods: dict[str, MethodResult]
    settings: dict[str, Any]
    scrapl_config: dict[str, Any]
    path_table: list[dict[str, Any]] | None
    files: list[str]
    total_seconds: float

    def metrics(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "methods": {k: v.as_json() for k, v in self.methods.items()},
            "settings": {**self.settings, "scrapl_config": self.scrapl_config},
            "total_seconds": round(self.total_seconds, 2),
        }


def _mss_loss() -> nn.Module:
    try:
        from auraloss.freq import MultiResolutionSTFTLoss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the MSS baseline needs auraloss: pip install 'scrapl[demo]'"
        ) from exc
    return MultiResolutionSTFTLoss()


def _run_mss(
    settings: DemoSettings, synth: ChirpletSynth, data: DemoData, progress: bool
) -> MethodResult:
    encoder = make_encoder(settings, synth.n_samples)
    loss = _mss_loss()
    opt = torch.optim.Adam(encoder.parameters(), lr=settings.mss_lr)
    hist, secs = train_method(
        "mss", encoder, synth, data, loss, opt, steps=settings.steps, val_every=settings.val_every, progress=progress
    )
    final = {k: v for k, v in hist[-1].items() if k.startswith("theta_l1")}
    return MethodResult(
        "mss", final, hist, secs, 0.0, settings.steps,
        extra={"loss": "auraloss.freq.MultiResolutionSTFTLoss()", "optimizer": "Adam", "lr": settings.mss_lr},
    )


def _make_data(settings: DemoSettings, synth: ChirpletSynth, encoder: ChirpletEncoder) -> DemoData:
    return DemoData(
        synth,
        encoder.features,
        batch_size=settings.batch_size,
        seed=settings.seed,
        n_val=settings.n_val,
        val_seed=settings.val_seed,
        independent_shift=settings.synth.independent_shift,
    )


def _run_scrapl(
    name: str,
    scrapl_cfg: Mapping[str, Any],
    settings: DemoSettings,
    synth: ChirpletSynth,
    data: DemoData,
    progress: bool,
    out_dir: Path | None,
    log: Callable[[str], None],
) -> tuple[MethodResult, Any]:
    """Train with the SCRAPL loss; ``name == "scrapl_uniform"`` forces uniform paths.

    Returns:
        ``(result, built)``.
    """
    import scrapl
    from scrapl.demo.warmup import prepare_scrapl_config, run_demo_warmup

    cfg = prepare_scrapl_config(scrapl_cfg, settings)
    if name == "scrapl_uniform":
        cfg["sampler"] = {"name": "uniform"}
    built = scrapl.build(cfg)
    n_samples = built.transform.n_samples
    if n_samples != synth.n_samples:
        raise ValueError(f"transform.shape ({n_samples}) must equal the synth's signal length ({synth.n_samples})")
    encoder = make_encoder(settings, n_samples)
    sampler_name = built.config.sampler.name
    setup_t0 = time.perf_counter()
    warm_info: dict[str, Any] = {"sampler": sampler_name}
    if sampler_name == "theta_is":
        if settings.probs_path is not None:
            from scrapl.demo.warmup import load_probs

            built.sampler.set_probs(load_probs(settings.probs_path, built.transform.n_paths))
            warm_info["probs_from"] = settings.probs_path
        elif getattr(built.sampler, "loaded_probs_path", None) is not None:
            warm_info["probs_from"] = built.sampler.loaded_probs_path
        else:
            log(f"theta-IS warmup: {built.transform.n_paths} paths, {settings.warmup.n_iter} power iterations, "
                f"batch {settings.warmup.batch_size} x {settings.warmup.n_batches}")
            save_dir = None if out_dir is None else out_dir / "warmup"
            run_demo_warmup(
                built, encoder, synth, settings, save_dir=save_dir, resume=False, progress=progress
            )
            warm_info["warmup_dir"] = None if save_dir is None else str(save_dir)
    setup_seconds = time.perf_counter() - setup_t0
    if sampler_name == "theta_is":
        warm_info["warmup_seconds"] = round(setup_seconds, 3)
    lr = settings.scrapl_lr
    opt = built.optimizer(encoder.parameters(), **({} if lr is None else {"lr": lr}))
    loss = built.loss
    loss.train()
    hist, secs = train_method(
        name, encoder, synth, data, loss, opt, steps=settings.steps, val_every=settings.val_every,
        time_offset=setup_seconds, progress=progress,
    )
    final = {k: v for k, v in hist[-1].items() if k.startswith("theta_l1")}
    counts = dict(loss.path_counts)
    extra = {
        "optimizer": built.config.optimizer.name,
        "lr": float(opt.param_groups[0]["lr"]),
        "n_paths": built.transform.n_paths,
        "distinct_paths_drawn": len(counts),
        **warm_info,
    }
    return MethodResult(name, final, hist, secs, setup_seconds, settings.steps, extra=extra), built


def run_demo(
    scrapl_cfg: Mapping[str, Any] | None = None,
    settings: DemoSettings | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> DemoResult:
    """Run the sound-matching comparison.

    Args:
        scrapl_cfg: the scrapl config (default: :data:`~scrapl.demo.settings.DEFAULT_SCRAPL_CONFIG`).
        settings: demo settings (default: :class:`DemoSettings()`).
        out_dir: folder receiving ``metrics.json``, the plots and the theta-IS
            warmup files (``None``: nothing written).
        progress: show tqdm progress bars.
        log: receives progress messages.

    Returns:
        :class:`DemoResult` (``.metrics()`` is what ``metrics.json`` holds).
    """
    settings = DemoSettings() if settings is None else settings
    scrapl_cfg = default_scrapl_config() if scrapl_cfg is None else dict(scrapl_cfg)
    t_start = time.perf_counter()
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results: dict[str, MethodResult] = {}
    built_main = None
    n_samples = _signal_length(scrapl_cfg)
    synth = make_synth(settings, n_samples)
    log(f"chirplet task: {n_samples} samples at {settings.synth.sr:g} Hz, AM {settings.synth.am_hz_range} Hz, "
        f"FM {settings.synth.fm_oct_range} oct/s, delays up to +-{settings.synth.max_shift} samples")
    data = _make_data(settings, synth, make_encoder(settings, n_samples))
    for method in settings.methods:
        if method == "mss":
            log(f"[mss] training for {settings.steps} steps (Adam, lr {settings.mss_lr:g})")
            res = _run_mss(settings, synth, data, progress)
        else:
            log(f"[{method}] building the loss and training for {settings.steps} steps")
            res, built = _run_scrapl(method, scrapl_cfg, settings, synth, data, progress, out, log)
            if method == "scrapl" or built_main is None:
                built_main = built
        results[method] = res
        log(f"[{method}] theta_l1 = {res.final['theta_l1']:.4f} ({res.train_seconds:.1f} s training"
            + (f", {res.setup_seconds:.1f} s warmup" if res.setup_seconds else "") + ")")
    ordered = {m: results[m] for m in settings.methods}

    path_rows = None
    files: list[str] = []
    if built_main is not None:
        from scrapl.demo.warmup import path_table

        path_rows = path_table(built_main, sr=settings.synth.sr)
    if out is not None:
        from scrapl.demo.plots import plot_error_curves, plot_path_probs

        files += [str(p) for p in plot_error_curves({k: v.history for k, v in ordered.items()}, out)]
        if path_rows is not None:
            files.append(
                str(
                    plot_path_probs(
                        [r["prob"] for r in path_rows],
                        [r["temporal_rate_hz"] for r in path_rows],
                        [r["freq_scale"] for r in path_rows],
                        [r["spin"] for r in path_rows],
                        out / "path_probs.png",
                        title=f"SCRAPL path probabilities ({built_main.config.sampler.name}), {len(path_rows)} paths",
                    )
                )
            )
    total = time.perf_counter() - t_start
    result = DemoResult(
        methods=ordered,
        settings=settings.model_dump(mode="json"),
        scrapl_config=_jsonable(scrapl_cfg),
        path_table=path_rows,
        files=files,
        total_seconds=total,
    )
    if out is not None:
        metrics = result.metrics()
        if path_rows is not None:
            (out / "paths.json").write_text(json.dumps(path_rows, indent=1) + "\n", encoding="utf-8")
            files.append(str(out / "paths.json"))
        metrics["files"] = [os.path.basename(f) for f in files] + ["metrics.json"]
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        files.append(str(out / "metrics.json"))
    return result


def _signal_length(scrapl_cfg: Mapping[str, Any]) -> int:
    """``transform.shape`` of a config (an int or a 1-tuple)."""
    shape = (scrapl_cfg.get("transform") or {}).get("shape")
    if isinstance(shape, (list, tuple)) and len(shape) == 1:
        shape = shape[0]
    if not isinstance(shape, int) or isinstance(shape, bool) or shape < 2:
        raise ValueError(f"transform.shape must be the signal length (an integer >= 2), got {shape!r}")
    return shape


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def format_summary(result: DemoResult) -> str:
    """A plain-text table of the final held-out errors and costs."""
    header = ("method", "theta_l1", "err_am", "err_fm", "steps", "train_s", "ms/step", "setup_s")
    rows = []
    for name, r in result.methods.items():
        rows.append(
            (
                name,
                f"{r.final['theta_l1']:.4f}",
                f"{r.final['theta_l1_am']:.4f}",
                f"{r.final['theta_l1_fm']:.4f}",
                str(r.steps),
                f"{r.train_seconds:.1f}",
                f"{1000 * r.train_seconds / max(1, r.steps):.1f}",
                f"{r.setup_seconds:.1f}",
            )
        )
    widths = [max(len(x[i]) for x in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append("theta_l1: mean |theta_hat - theta| of the [0,1]-normalised (AM, FM) rates on held-out chirplets"
                 f" (chance ~0.33); total {result.total_seconds:.0f} s")
    if "scrapl" in result.methods and "mss" in result.methods:
        a, b = result.methods["scrapl"].final["theta_l1"], result.methods["mss"].final["theta_l1"]
        verdict = "lower" if a < b else "NOT lower"
        lines.append(f"SCRAPL's parameter error is {verdict} than MSS's ({a:.4f} vs {b:.4f}, ratio {a / b:.2f})")
    return "\n".join(lines)
