"""Contracts shared by every plugin (a leaf module: torch and stdlib only).

Three kinds of plugin exist:

* ``transform``: a :class:`ScatteringTransform` (an ``nn.Module``) whose output is
  split into *paths*; ``forward_path(x, i)`` computes one path only.
* ``sampler``: a :class:`PathSampler` drawing one path index per training step from a
  probability vector held on the CPU, with its own ``torch.Generator``.
* ``optimizer``: a ``torch.optim.Optimizer`` subclass whose ``step`` knows which path
  produced the gradient (:class:`PathAwareOptimizer`).

A plugin is described by a :class:`PluginSpec` (kind, name, pydantic config class and
a factory).  Factories have these signatures (keyword arguments are passed by
``scrapl.build``)::

    transform: factory(config) -> ScatteringTransform
    sampler:   factory(config, *, n_paths: int, generator: torch.Generator) -> PathSampler
    optimizer: factory(config, params, *, n_paths: int,
                       path_source: Callable[[], int | None], **overrides) -> torch.optim.Optimizer

``path_source`` (a :data:`PathSource`) returns the index of the path drawn by the most recent training
forward of the loss (``None`` before the first one); ``overrides`` are the keyword
arguments the user passed to ``build(...).optimizer(params, lr=..., ...)`` and take
precedence over the config's fields.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional

import torch
from torch import Tensor, nn

PluginKind = Literal["transform", "sampler", "optimizer"]
PathSource = Callable[[], Optional[int]]
"""Returns the path that produced the current gradient (``None`` if no training
forward happened since the last optimizer step); e.g. ``loss.consume_path``."""
PLUGIN_KINDS: tuple[str, ...] = ("transform", "sampler", "optimizer")


@dataclass(frozen=True)
class PathInfo:
    """Physical meaning of one scattering path, for logging and plots.

    Attributes:
        index: path index ``i`` (position in ``transform.paths``).
        key: the transform's own key of the path, e.g. ``(n2, n_fr)`` for JTFS.
        label: short human-readable description.
        temporal_rate: centre frequency of the second-order temporal wavelet in
            cycles per sample (multiply by a sample rate for Hz); ``None`` if the
            path has no temporal modulation axis.
        freq_scale: centre frequency of the frequential wavelet in cycles per octave
            (0.0 for the frequential low-pass); ``None`` if not applicable.
        spin: +1 / -1 for the two frequential wavelet orientations, 0 for the
            frequential low-pass, ``None`` if not applicable.
        extra: transform-specific numbers (``j2``, ``j_fr``, ``n1_max`` ...).
    """

    index: int
    key: tuple[int, ...]
    label: str
    temporal_rate: float | None = None
    freq_scale: float | None = None
    spin: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def temporal_rate_hz(self, sample_rate: float) -> float | None:
        """Temporal modulation rate in Hz for a signal sampled at ``sample_rate`` Hz."""
        if self.temporal_rate is None:
            return None
        if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive finite number, got {sample_rate!r}")
        return self.temporal_rate * float(sample_rate)


class ScatteringTransform(nn.Module, abc.ABC):
    """A scattering transform whose output channels are SCRAPL paths.

    Subclasses set ``n_samples`` (expected signal length) and implement
    :attr:`paths`, :attr:`path_infos`, :meth:`forward_path` and :meth:`forward`.
    Input signals are ``(batch, samples)`` or ``(batch, channels, samples)``; an
    image transform takes ``(batch, channels, height, width)`` and overrides
    :attr:`signal_shape`.
    """

    n_samples: int

    @property
    def signal_shape(self) -> tuple[int, ...]:
        """Shape of one example after the ``(batch, channels)`` axes, checked by the
        loss: ``(n_samples,)`` for signals; image transforms return ``(height, width)``."""
        return (int(self.n_samples),)

    @property
    @abc.abstractmethod
    def paths(self) -> list[tuple[int, ...]]:
        """Path keys in path-index order."""

    @property
    def n_paths(self) -> int:
        """Number of SCRAPL paths ``P``."""
        return len(self.paths)

    @property
    @abc.abstractmethod
    def path_infos(self) -> list[PathInfo]:
        """One :class:`PathInfo` per path, in path-index order."""

    @abc.abstractmethod
    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        """Coefficients of path ``i``.

        Args:
            x: signal, shape ``(*batch, samples)`` with ``samples == n_samples``.
            i: path index in ``[0, n_paths)``.
            crop_time: crop the time axis as the full transform does (``True``), or
                keep the frames of the padded signal (``False``).

        Returns:
            Tensor of shape ``(*batch, freq, time)``.
        """

    def forward_path_pair(self, x: Tensor, x_target: Tensor, i: int, *,
                          crop_time: bool = True) -> tuple[Tensor, Tensor]:
        """Path ``i`` of a signal and of its target, as the loss needs them each step.

        Returns ``(forward_path(x, i), forward_path(x_target, i))``, the second
        computed without a graph (the target is a constant).  This default makes the
        two calls; a transform may override it to process both batches in one pass
        (the JTFS does: the fixed per-call costs are paid once).

        Args:
            x: signal ``(*batch, samples)``; its coefficients keep a graph when
                gradients are enabled.
            x_target: same shape as ``x``.
            i, crop_time: as in :meth:`forward_path`.

        Returns:
            two tensors of shape ``(*batch, freq, time)``.
        """
        with torch.no_grad():
            s_target = self.forward_path(x_target, i, crop_time=crop_time)
        return self.forward_path(x, i, crop_time=crop_time), s_target

    @abc.abstractmethod
    def forward(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """All paths: shape ``(*batch, n_paths, freq, time)``, equal path by path to
        ``forward_path(x, i, crop_time=crop_time)``.  The loss's full-tree distance
        (:meth:`scrapl.loss.PathLoss.full_distance`) calls it once per signal; a
        transform whose ``forward`` does not take ``crop_time`` gets one
        ``forward_path`` call per path instead when ``crop_time=False``."""


class PathSampler(abc.ABC):
    """Draws one path index per call from a probability vector.

    Probabilities are a float64 CPU tensor of shape ``(n_paths,)`` summing to one.
    All randomness goes through :attr:`generator` (a CPU ``torch.Generator``), whose
    state is part of :meth:`state_dict`, so a resumed run draws the same paths.
    """

    n_paths: int
    generator: torch.Generator
    sample_all_paths_first: bool = False
    """Visit every path once (random order) before sampling from :attr:`probs`."""

    @property
    @abc.abstractmethod
    def probs(self) -> Tensor:
        """Sampling probabilities, float64, shape ``(n_paths,)``, CPU."""

    @abc.abstractmethod
    def sample(self, seed: int | None = None) -> int:
        """Draw a path index.  If ``seed`` is given the generator is re-seeded with
        it first."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue drawing the same sequence (tensors, numbers,
        strings and containers only, loadable with ``torch.load(weights_only=True)``)."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state produced by :meth:`state_dict`."""

    def reset(self) -> None:
        """Forget what was drawn so far (probabilities are kept)."""

    def set_probs(self, probs: Tensor) -> None:
        """Replace the sampling probabilities (float64 ``(n_paths,)`` summing to one).

        Raises:
            TypeError: by default: the sampler's probabilities are fixed.
        """
        raise TypeError(f"{type(self).__name__} has fixed probabilities; use a sampler that can set them "
                        "(e.g. sampler name 'theta_is')")

    def reset_probs(self) -> None:
        """Back to uniform probabilities ``1/P`` (forget what was learned or loaded)."""
        uniform = torch.full((self.n_paths,), 1.0 / self.n_paths, dtype=torch.float64)
        if not torch.equal(self.probs, uniform):
            self.set_probs(uniform)


class CurvatureSampler(PathSampler):
    """A sampler whose probabilities come from theta-IS curvatures ``(n_paths,
    n_theta)`` (the ``theta_is`` sampler).  The loss's warmup
    (:func:`scrapl.samplers.warmup.run_warmup`) feeds it through
    :meth:`update_curvatures`.

    Attributes:
        n_theta: number of synth parameters ``U``.
        min_prob_frac: floor of every probability as a fraction of ``1/P``.
        eps: clamp of the curvatures before the log.
        agg: reduction of multi-row warmup files (``"none"``, ``"mean"``, ...).
        curvatures: ``(n_paths, n_theta)`` float64, NaN where unknown.
        loaded_probs_path: file or directory the probabilities came from, if any.
    """

    n_theta: int
    min_prob_frac: float
    eps: float
    agg: str
    curvatures: Tensor
    loaded_probs_path: Optional[str] = None

    @abc.abstractmethod
    def update_curvatures(self, vals: Tensor) -> None:
        """Merge ``(n_paths, n_theta)`` curvatures (NaN: keep the known value) and
        recompute the probabilities."""

    @abc.abstractmethod
    def load_warmup_dir(self, warmup_dir: str, agg: Optional[str] = None) -> None:
        """Set the curvatures from a directory of ``vals_{p}.pt`` files."""


class PathAwareOptimizer(torch.optim.Optimizer):
    """Marker base class: an optimizer whose ``step(closure=None, path=None)`` uses
    the path that produced the current gradient.  ``n_paths`` is the number of
    paths ``P`` it keeps per-path state for."""

    n_paths: int


@dataclass(frozen=True)
class PluginSpec:
    """Description of one plugin, returned by the ``scrapl_register_plugins`` hook.

    Attributes:
        kind: ``"transform"``, ``"sampler"`` or ``"optimizer"``.
        name: unique name within the kind; equals the config's ``name`` literal.
        config_cls: pydantic model (subclass of :class:`scrapl.configs.PluginConfig`)
            validating this plugin's settings.
        factory: callable building the component (signatures in the module docs).
        description: one line shown by listings.
    """

    kind: str
    name: str
    config_cls: type
    factory: Callable[..., Any]
    description: str = ""

    @classmethod
    def of(cls, kind: str, config_cls: type, factory: Callable[..., Any], description: str = "") -> "PluginSpec":
        """The spec of the plugin whose name is ``config_cls``'s ``name`` default (the
        ``Literal`` a plugin config pins), so the name is written once."""
        field = getattr(config_cls, "model_fields", {}).get("name")
        name = getattr(field, "default", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{getattr(config_cls, '__name__', config_cls)!r} has no default 'name' to name the plugin by")
        return cls(kind=kind, name=name, config_cls=config_cls, factory=factory, description=description)
