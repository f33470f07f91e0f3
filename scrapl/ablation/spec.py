"""The ablation spec: what to compare, on which task, with which seeds and budget.

A spec is a YAML/JSON mapping validated by :class:`AblationSpec` (unknown keys are
errors; every error names its location, e.g. ``arms.2.optimizer``)::

    name: chirplet-ablation
    task: {name: chirplet, settings: {}}
    base:                       # a scrapl config (what scrapl.build reads)
      transform: {name: jtfs, shape: 8192, J: 10, Q1: 8, Q2: 1, J_fr: 3, Q_fr: 1, T: 4096, F: 8}
      sampler: {name: uniform}
      optimizer: {name: p_adam_saga, lr: 0.003}
    arms:
      - {name: plain, optimizer: {name: adam, lr: 0.001}}
      - {name: theta_is, sampler: {name: theta_is}}
      - {name: mss, kind: mss, lr: 0.001}
    seeds: [0, 1, 2]
    budget: {steps: 300, val_every: 25}

Arm kinds: ``scrapl`` (the base config with the arm's ``sampler`` / ``optimizer`` /
``loss`` overrides merged in; ``optimizer: {name: adam}`` means plain
``torch.optim.Adam`` on the one-path loss, the un-path-aware baseline), ``full_jtfs``
(the distance over all paths of the base transform, Adam), ``mss`` (auraloss's
``MultiResolutionSTFTLoss``, Adam) and ``supervised`` (L1 loss on the parameters,
Adam).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import Field, field_validator, model_validator

from scrapl.configs import SeedInt, StrictModel

__all__ = [
    "ArmSpec",
    "Budget",
    "TaskSpec",
    "WarmupSpec",
    "AblationSpec",
    "load_spec",
    "arm_config",
    "spec_hash",
]

ArmKind = Literal["scrapl", "full_jtfs", "mss", "supervised"]

#: Optimizer names an arm may use besides the registered scrapl optimizers.
TORCH_OPTIMIZERS = ("adam",)


class TaskSpec(StrictModel):
    """The task: a registered name and its settings (validated by the task)."""

    name: str = "chirplet"
    settings: dict[str, Any] = Field(default_factory=dict)


class WarmupSpec(StrictModel):
    """theta-IS warmup of a ``theta_is`` arm (run once per seed before training).

    Attributes:
        n_batches: batches of unlabeled training signals.
        batch_size: signals per batch.
        n_iter: power-iteration steps per (path, parameter).
        seed: seed of the warmup signals.
    """

    n_batches: int = Field(default=1, ge=1)
    batch_size: int = Field(default=8, ge=1)
    n_iter: int = Field(default=20, ge=1)
    seed: SeedInt = 1234


class Budget(StrictModel):
    """Training budget of every run.

    Attributes:
        steps: optimizer steps per run (> 0).
        val_every: held-out evaluation every this many steps (and at the end).
        batch_size: training batch size.
        seconds: optional equal wall-clock budget: a run also stops once its
            training steps have taken this many seconds (the step count reached is
            recorded; results then depend on the machine's speed).
        cpu_seconds: optional equal compute budget: a run also stops once its
            training steps have used this many CPU seconds of the process (all its
            threads; warmup and evaluation not counted).  Like ``seconds``, results
            then depend on the machine.
    """

    steps: int = Field(gt=0)
    val_every: int = Field(default=25, gt=0)
    batch_size: int = Field(default=8, gt=0)
    seconds: Optional[float] = Field(default=None, gt=0)
    cpu_seconds: Optional[float] = Field(default=None, gt=0)


class ArmSpec(StrictModel):
    """One arm of the ablation.

    Attributes:
        name: unique label (letters, digits, ``_.+-``).
        kind: ``scrapl``, ``full_jtfs``, ``mss`` or ``supervised``.
        sampler, optimizer, loss: overrides merged into the base scrapl config
            (``scrapl`` arms only).  ``optimizer.name`` is a registered optimizer or
            ``adam`` (plain ``torch.optim.Adam``).
        lr: learning rate (``scrapl``: overrides the optimizer's; baselines: Adam's,
            default 1e-3).
        warmup: theta-IS warmup settings (arms whose sampler is ``theta_is``).
        seeds: this arm's seeds (default: the spec's).
        steps: this arm's optimizer steps (default: ``budget.steps``), e.g. fewer
            for an arm whose step costs many times more.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", min_length=1, max_length=64)
    kind: ArmKind = "scrapl"
    sampler: Optional[dict[str, Any]] = None
    optimizer: Optional[dict[str, Any]] = None
    loss: Optional[dict[str, Any]] = None
    lr: Optional[float] = Field(default=None, gt=0)
    warmup: WarmupSpec = WarmupSpec()
    seeds: Optional[list[int]] = Field(default=None, min_length=1)
    steps: Optional[int] = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _baselines_take_no_overrides(self) -> "ArmSpec":
        if self.kind != "scrapl":
            given = [k for k in ("sampler", "optimizer", "loss") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"a {self.kind!r} arm takes no {', '.join(given)} (only scrapl arms do)")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat, got {self.seeds}")
        return self


class AblationSpec(StrictModel):
    """A validated ablation spec (see the module docstring).

    Attributes:
        name: a label for the report.
        task: :class:`TaskSpec`.
        base: the scrapl config shared by the ``scrapl`` arms; its transform is the
            one of the ``full_jtfs`` arms and fixes the signal length.
        arms: at least one :class:`ArmSpec`, unique names.
        seeds: at least one seed, no repeats; each seed fixes the model's initial
            weights and the training data stream.
        budget: :class:`Budget`.
        threshold: held-out error for "steps to threshold" (default: half the
            task's predict-the-middle error).
        threads: torch CPU threads per run (default: the executor's share).
    """

    name: str = "ablation"
    task: TaskSpec = TaskSpec()
    base: dict[str, Any]
    arms: list[ArmSpec] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    budget: Budget
    threshold: Optional[float] = Field(default=None, gt=0)
    threads: Optional[int] = Field(default=None, ge=1)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must not repeat, got {value}")
        return value

    @model_validator(mode="after")
    def _check_arms(self) -> "AblationSpec":
        from scrapl.builder import load_config

        names = [a.name for a in self.arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"arms: names must be unique, repeated: {', '.join(dup)}")
        try:
            load_config(_placeholder(self.base))
        except ValueError as exc:
            raise ValueError(f"base: {_flat(exc)}") from None
        for i, arm in enumerate(self.arms):
            if arm.kind != "scrapl":
                continue
            try:
                load_config(_placeholder(arm_config(self.base, arm)))
            except ValueError as exc:
                raise ValueError(f"arms.{i} ({arm.name}): {_flat(exc)}") from None
        return self

    def seeds_of(self, arm: ArmSpec) -> list[int]:
        """The seeds run for ``arm``."""
        return list(arm.seeds) if arm.seeds is not None else list(self.seeds)

    def arm(self, name: str) -> ArmSpec:
        """The arm called ``name``."""
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"no arm named {name!r}; arms: {', '.join(a.name for a in self.arms)}")

    def runs(self) -> list[tuple[str, int]]:
        """Every ``(arm, seed)`` pair, arm by arm in spec order."""
        return [(a.name, s) for a in self.arms for s in self.seeds_of(a)]


def _flat(exc: Exception) -> str:
    """One line from a (pydantic) error, locations kept."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
        return "; ".join(parts)
    return " ".join(str(exc).split())


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``; a different ``name`` replaces the whole mapping."""
    if "name" in over and over.get("name") != base.get("name"):
        return copy.deepcopy(dict(over))
    out = copy.deepcopy(dict(base))
    out.update(copy.deepcopy(dict(over)))
    return out


def _as_mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"name": value}
    return dict(value)


def arm_config(base: Mapping[str, Any], arm: ArmSpec) -> dict[str, Any]:
    """The scrapl config of a ``scrapl`` arm: ``base`` with the arm's overrides (and
    ``lr``) merged in.  ``optimizer.name == "adam"`` is kept as is (the runner uses
    ``torch.optim.Adam``)."""
    cfg = copy.deepcopy(dict(base))
    for key in ("sampler", "optimizer", "loss"):
        over = getattr(arm, key)
        if over is not None:
            cfg[key] = _merge(_as_mapping(cfg.get(key)), over)
    if arm.lr is not None:
        opt = _as_mapping(cfg.get("optimizer")) or {"name": "p_adam_saga"}
        opt["lr"] = arm.lr
        cfg["optimizer"] = opt
    return cfg


def _placeholder(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with a torch optimizer replaced by ``sgd`` for validation (its own
    keywords are checked by :func:`torch_optimizer_kwargs`)."""
    out = copy.deepcopy(dict(cfg))
    opt = out.get("optimizer")
    if isinstance(opt, Mapping) and opt.get("name") in TORCH_OPTIMIZERS:
        torch_optimizer_kwargs(opt)
        out["optimizer"] = {"name": "sgd"}
    return out


def torch_optimizer_kwargs(opt: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords of ``torch.optim.Adam`` from an ``{name: adam, ...}`` mapping.

    Raises:
        ValueError: an unknown key or an invalid value.
    """
    allowed = {"lr", "betas", "eps", "weight_decay"}
    extra = sorted(set(opt) - allowed - {"name"})
    if extra:
        raise ValueError(f"optimizer 'adam' takes {', '.join(sorted(allowed))}; unknown: {', '.join(extra)}")
    kw = {k: v for k, v in opt.items() if k != "name"}
    lr = kw.get("lr", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"optimizer.lr must be a positive number, got {lr!r}")
    kw["lr"] = float(lr)
    return kw


def spec_hash(spec: AblationSpec) -> str:
    """A short hash of everything in ``spec`` that changes results (all but ``name``
    and ``threads``)."""
    data = spec.model_dump(mode="json", exclude={"name", "threads"}, exclude_none=True)  # new optional fields keep old hashes
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_spec(source: "AblationSpec | Mapping[str, Any] | str | Path") -> AblationSpec:
    """Validate a spec given as an :class:`AblationSpec`, a mapping or a YAML/JSON file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable file, not a mapping; pydantic.ValidationError (a
            ValueError) for invalid contents, with locations.
    """
    if isinstance(source, AblationSpec):
        return source
    if isinstance(source, (str, Path)):
        from scrapl.builder import read_mapping_file

        return AblationSpec.model_validate(read_mapping_file(Path(source)))
    if isinstance(source, Mapping):
        return AblationSpec.model_validate(dict(source))
    raise TypeError(f"spec must be an AblationSpec, a mapping or a path, got {type(source).__name__}")
