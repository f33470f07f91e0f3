"""One (arm, seed) training run: the single training loop of ``scrapl ablate`` and
``scrapl demo``.

Each step: ``theta_hat = model(features)``, then ``loss(task.render(theta_hat,
batch), x)`` (or ``|theta_hat - theta|`` for the supervised arm), ``backward()``,
``optimizer.step()``.  The held-out error is measured every ``budget.val_every``
steps.  :func:`run_one` takes and returns plain JSON-able data so that it runs the
same in this process, in a worker process or as a Ray task.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from scrapl.ablation.spec import AblationSpec, ArmSpec, arm_config, load_spec, torch_optimizer_kwargs
from scrapl.ablation.tasks import Task, make_task
from scrapl.ablation.warmup import task_warmup, with_n_theta
from scrapl.interfaces import PathAwareOptimizer

__all__ = ["run_one", "signal_length", "build_task", "STAGES"]

#: The parts of a training step timed separately (``stage_ms`` of a run record):
#: the model's forward (encoder head), rendering its prediction (the synth), the
#: loss's forward, the backward pass through all of them, and the optimizer step.
STAGES = ("model", "render", "loss", "backward", "optimizer")


def signal_length(base: Mapping[str, Any]) -> int:
    """``transform.shape`` of a scrapl config (an int or a 1-tuple)."""
    shape = (base.get("transform") or {}).get("shape")
    if isinstance(shape, (list, tuple)) and len(shape) == 1:
        shape = shape[0]
    if not isinstance(shape, int) or isinstance(shape, bool) or shape < 2:
        raise ValueError(f"base.transform.shape must be the signal length (an integer >= 2), got {shape!r}")
    return shape


def build_task(spec: AblationSpec) -> Task:
    """The spec's task for the base transform's signal length."""
    return make_task(spec.task.name, spec.task.settings, signal_length(spec.base))


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _mss() -> nn.Module:
    try:
        from auraloss.freq import MultiResolutionSTFTLoss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the mss arm needs auraloss: pip install 'scrapl[demo]'") from exc
    return MultiResolutionSTFTLoss()


class _Setup:
    """Loss, optimizer and details of one arm."""

    def __init__(self, loss: Callable[..., Tensor] | None, opt: torch.optim.Optimizer, info: dict[str, Any],
                 built: Any = None, setup_seconds: float = 0.0) -> None:
        self.loss, self.opt, self.info, self.built, self.setup_seconds = loss, opt, info, built, setup_seconds
        # A path-aware optimizer consumes the loss's path in its step; any other one
        # does not, and the loss (path_per_step) would keep drawing the same path.
        self.consume: Callable[[], Any] | None = (
            None if isinstance(opt, PathAwareOptimizer) else getattr(loss, "consume_path", None))


def _setup(spec: AblationSpec, arm: ArmSpec, task: Task, model: nn.Module, seed: int, progress: bool) -> _Setup:
    params = [p for p in model.parameters() if p.requires_grad]
    lr = arm.lr if arm.lr is not None else 1e-3
    if arm.kind == "supervised":
        return _Setup(None, torch.optim.Adam(params, lr=lr), {"loss": "L1 on parameters", "optimizer": "adam", "lr": lr})
    if arm.kind == "mss":
        return _Setup(_mss(), torch.optim.Adam(params, lr=lr),
                      {"loss": "auraloss MultiResolutionSTFTLoss", "optimizer": "adam", "lr": lr})
    import scrapl

    if arm.kind == "full_jtfs":
        cfg = dict(spec.base)
        cfg["sampler"] = {"name": "uniform"}
        cfg["optimizer"] = {"name": "sgd"}
        built = scrapl.build(cfg)
        loss = built.loss

        def full(x_hat: Tensor, x: Tensor) -> Tensor:
            return loss.full_distance(x_hat, x)

        return _Setup(full, torch.optim.Adam(params, lr=lr),
                      {"loss": f"full distance over {built.transform.n_paths} paths", "optimizer": "adam", "lr": lr,
                       "n_paths": built.transform.n_paths}, built)
    cfg = arm_config(spec.base, arm)
    opt_cfg = dict(cfg.get("optimizer") or {})
    torch_adam = opt_cfg.get("name") == "adam"
    if torch_adam:
        cfg["optimizer"] = {"name": "sgd"}
    built = scrapl.build(with_n_theta(cfg, len(task.param_names)))
    info: dict[str, Any] = {"sampler": built.config.sampler.name, "n_paths": built.transform.n_paths}
    setup_seconds = 0.0
    if built.config.sampler.name == "theta_is" and getattr(built.sampler, "loaded_probs_path", None) is None:
        t0 = time.perf_counter()
        task_warmup(built, task, model, arm.warmup, progress=progress)
        setup_seconds = time.perf_counter() - t0
        info["warmup_seconds"] = round(setup_seconds, 3)
    if torch_adam:
        kw = torch_optimizer_kwargs(opt_cfg)
        opt: torch.optim.Optimizer = torch.optim.Adam(params, **kw)
        info.update(optimizer="adam", lr=kw["lr"])
    else:
        opt = built.optimizer(params)
        info.update(optimizer=built.config.optimizer.name, lr=float(opt.param_groups[0]["lr"]))
    built.loss.train()
    return _Setup(built.loss, opt, info, built, setup_seconds)


def run_one(
    spec: AblationSpec | Mapping[str, Any],
    arm_name: str,
    seed: int,
    *,
    threads: int | None = None,
    progress: bool = False,
    task: Task | None = None,
) -> dict[str, Any]:
    """Train arm ``arm_name`` of ``spec`` with ``seed``; returns the run's record.

    Args:
        spec: the spec (or its JSON dump).
        arm_name: which arm.
        seed: model initialisation and training stream seed.
        threads: ``torch.set_num_threads`` for the run (``None``: unchanged).
        progress: a tqdm bar for the steps.
        task: a prebuilt task (reuses its cached batches); default: built from spec.

    Returns:
        ``arm``, ``seed``, ``kind``, ``final`` (held-out errors), ``curve`` (one
        record per evaluation: ``step``, ``time_s``, ``cpu_s``, errors,
        ``train_loss``), ``steps``, ``train_seconds``, ``setup_seconds``,
        ``ms_per_step``, ``stage_ms`` (mean ms per step in each of :data:`STAGES`), ``train_cpu_seconds`` (CPU time of the training steps),
        ``cpu_seconds`` (the whole run's), ``peak_rss_mib``, ``info``.
    """
    spec = load_spec(spec)
    arm = spec.arm(arm_name)
    if threads is not None:
        torch.set_num_threads(threads)
    task = build_task(spec) if task is None else task
    budget = spec.budget
    n_steps = arm.steps if arm.steps is not None else budget.steps
    cpu0 = time.process_time()
    model = task.make_model(seed)
    setup = _setup(spec, arm, task, model, seed, progress)
    curve = [{"step": 0, "time_s": round(setup.setup_seconds, 4), "cpu_s": round(time.process_time() - cpu0, 3),
              **task.evaluate(model), "train_loss": None}]
    train_s = train_cpu = 0.0
    running: list[float] = []
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=f"{arm.name} seed {seed}", leave=False, dynamic_ncols=True)
    step = 0
    stage_s = dict.fromkeys(STAGES, 0.0)
    for step in range(1, n_steps + 1):
        batch = task.batch(seed, step - 1, budget.batch_size)
        t0, c0 = time.perf_counter(), time.process_time()
        setup.opt.zero_grad(set_to_none=True)
        theta_hat = model(batch["features"])
        t1 = time.perf_counter()
        if setup.loss is None:
            t2 = t1
            loss = (theta_hat - batch["theta"]).abs().mean()
        else:
            x_hat = task.render(theta_hat, batch)
            t2 = time.perf_counter()
            loss = setup.loss(x_hat, batch["x"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"arm {arm.name!r} seed {seed}: non-finite loss {float(loss)} at step {step}")
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        setup.opt.step()
        if setup.consume is not None:
            setup.consume()  # a plain torch optimizer: hand the loss its next path
        t5 = time.perf_counter()
        for key, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stage_s[key] += dt
        train_s += t5 - t0
        train_cpu += time.process_time() - c0
        running.append(float(loss.detach()))
        out_of_time = ((budget.seconds is not None and train_s >= budget.seconds)
                       or (budget.cpu_seconds is not None and train_cpu >= budget.cpu_seconds))
        if step % budget.val_every == 0 or step == n_steps or out_of_time:
            rec = task.evaluate(model)
            curve.append({"step": step, "time_s": round(setup.setup_seconds + train_s, 4),
                          "cpu_s": round(time.process_time() - cpu0, 3), **rec,
                          "train_loss": sum(running) / len(running)})
            running.clear()
            if bar is not None:
                bar.set_postfix(err=f"{rec['theta_l1']:.3f}")
        if bar is not None:
            bar.update(1)
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    final = {k: v for k, v in curve[-1].items() if k.startswith("theta_l1")}
    info = dict(setup.info)
    if setup.built is not None and arm.kind == "scrapl":
        info["distinct_paths_drawn"] = len(dict(setup.built.loss.path_counts))
        if info.get("sampler") == "theta_is":
            info["probs"] = [float(p) for p in setup.built.sampler.probs.double().tolist()]
    return {
        "arm": arm.name,
        "seed": seed,
        "kind": arm.kind,
        "final": final,
        "curve": curve,
        "steps": step,
        "train_seconds": round(train_s, 4),
        "train_cpu_seconds": round(train_cpu, 3),
        "setup_seconds": round(setup.setup_seconds, 4),
        "ms_per_step": round(1000.0 * train_s / max(1, step), 4),
        "stage_ms": {k: round(1000.0 * v / max(1, step), 4) for k, v in stage_s.items()},
        "cpu_seconds": round(time.process_time() - cpu0, 3),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "threads": torch.get_num_threads(),
        "info": info,
    }


def steps_to(curve: list[Mapping[str, Any]], threshold: float) -> int | None:
    """First evaluated step whose ``theta_l1`` is at most ``threshold`` (``None``: never)."""
    for rec in curve:
        if rec["theta_l1"] <= threshold:
            return int(rec["step"])
    return None


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)
