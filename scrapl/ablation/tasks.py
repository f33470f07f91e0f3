"""Tasks of the ablation runner: the interface and the registry.

A task is a sound-matching problem: a differentiable synthesizer with ``U``
parameters in ``[0, 1]``, a model (encoder) mapping precomputed features to
parameters, a deterministic training stream and a fixed held-out set.  The runner
(:mod:`scrapl.ablation.runner`) trains the model through ``loss(task.render(theta_hat,
batch), batch["x"])`` and measures the held-out parameter error.

Built-in: ``chirplet`` (:class:`scrapl.demo.task.ChirpletTask`).  A third party adds a
task with :func:`register_task` or an entry point in the group ``scrapl.tasks``::

    [project.entry-points."scrapl.tasks"]
    my_task = "my_package.tasks:MyTask"
"""

from __future__ import annotations

import abc
from importlib import import_module
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from scrapl.configs import StrictModel

__all__ = ["Task", "register_task", "task_names", "get_task_class", "make_task"]

#: Built-in tasks, as ``module:Class`` strings (imported on first use).
_BUILTIN: dict[str, str] = {"chirplet": "scrapl.demo.task:ChirpletTask"}
_REGISTERED: dict[str, type["Task"]] = {}
ENTRY_POINT_GROUP = "scrapl.tasks"


class Task(abc.ABC):
    """A sound-matching task (subclass it and register the subclass).

    Class attributes:
        Settings: the task's pydantic settings model (``extra="forbid"``).
        param_names: the ``U`` parameter names (a class attribute: the theta-IS
            warmup reads ``U`` before it builds the task).

    Attributes set by ``__init__``:
        settings: validated :attr:`Settings`.
        n_samples: signal length in samples.
    """

    Settings: ClassVar[type[StrictModel]] = StrictModel
    param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: StrictModel, n_samples: int) -> None:
        self.settings = settings
        self.n_samples = n_samples

    @abc.abstractmethod
    def make_model(self, seed: int) -> nn.Module:
        """A freshly initialised model (weights a function of ``seed`` only, drawn
        from a private generator); ``model(features)`` is ``(B, U)`` in ``[0, 1]``."""

    @abc.abstractmethod
    def batch(self, seed: int, index: int, batch_size: int) -> dict[str, Tensor]:
        """Training batch ``index`` of the stream of ``seed``: at least ``features``
        (model input), ``x`` ``(B, 1, N)`` (target audio) and ``theta`` ``(B, U)``
        (true parameters, used only by the supervised arm and for monitoring)."""

    @abc.abstractmethod
    def render(self, theta: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Differentiable synthesis ``(B, U) -> (B, 1, N)`` for ``batch``."""

    @abc.abstractmethod
    def validation(self) -> dict[str, Tensor]:
        """The fixed held-out set: ``features`` and ``theta``."""

    @abc.abstractmethod
    def warmup_batches(
        self, n_batches: int, batch_size: int, seed: int
    ) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Unlabeled theta-IS warmup data: ``(model_kwargs, render_kwargs)``, one dict
        per batch; ``model_input(**model_kwargs)`` gives the model's input and
        ``render_for_warmup(theta, **render_kwargs)`` must be deterministic."""

    @abc.abstractmethod
    def model_input(self, **kwargs: Tensor) -> Tensor:
        """Model input from one ``model_kwargs`` dict of :meth:`warmup_batches`."""

    @abc.abstractmethod
    def render_for_warmup(self, theta: Tensor, **kwargs: Tensor) -> Tensor:
        """Deterministic synthesis for the warmup."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out errors: ``theta_l1`` (mean |theta_hat - theta|) and
        ``theta_l1_<param>`` for each parameter."""
        val = self.validation()
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                err = (model(val["features"]) - val["theta"]).abs()
        finally:
            model.train(was)
        return _errors(err, self.param_names)

    def baseline(self) -> dict[str, float]:
        """Errors of predicting the middle (0.5) of every range on the held-out set."""
        val = self.validation()
        return _errors((val["theta"] - 0.5).abs(), self.param_names)


def _errors(err: Tensor, names: tuple[str, ...]) -> dict[str, float]:
    out = {"theta_l1": float(err.mean())}
    for i, n in enumerate(names):
        out[f"theta_l1_{n}"] = float(err[:, i].mean())
    return out


def register_task(name: str, cls: type[Task]) -> None:
    """Register a task class under ``name`` (a name in use is an error)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"task {name!r} must be a subclass of scrapl.ablation.Task, got {cls!r}")
    if name in _BUILTIN or name in _REGISTERED:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTERED[name] = cls


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """Names of every available task."""
    return sorted(set(_BUILTIN) | set(_REGISTERED) | set(_entry_points()))


def get_task_class(name: str) -> type[Task]:
    """The task class called ``name``.

    Raises:
        ValueError: no such task.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        return getattr(import_module(module), attr)
    eps = _entry_points()
    if name in eps:
        cls = eps[name].load()
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ValueError(f"entry point {name!r} of group {ENTRY_POINT_GROUP!r} is not a Task subclass")
        return cls
    raise ValueError(f"unknown task {name!r}; available: {', '.join(task_names())}")


def make_task(name: str, settings: Mapping[str, Any], n_samples: int) -> Task:
    """Build task ``name`` with ``settings`` (validated by its :attr:`Task.Settings`)
    for signals of ``n_samples`` samples."""
    cls = get_task_class(name)
    return cls(cls.Settings.model_validate(dict(settings)), n_samples)
