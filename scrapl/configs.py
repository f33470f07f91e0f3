"""Base pydantic configuration models (a leaf module).

Every plugin has one config class deriving from :class:`PluginConfig` that pins its
``name`` with ``Literal["..."]``.  Configs are frozen and forbid unknown keys, so a
typo is an error that names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

#: A seed field: a genuine ``int`` (no ``"12"``, ``3.0`` or ``true`` coerced, like
#: every other integer field) in ``[0, 2**63 - 1]`` (what ``torch.Generator`` takes).
SeedInt = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]


class StrictModel(BaseModel):
    """Frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class PluginConfig(StrictModel):
    """Base class of plugin configs; subclasses set ``name: Literal["<plugin>"]``."""

    name: str

    @classmethod
    def coerce(cls, value: "PluginConfig | Mapping[str, Any]") -> Any:
        """``value`` if it is already this config, else ``value`` validated (a
        pydantic ``ValidationError`` names a bad field); what a plugin factory
        does first with the config it is given."""
        return value if isinstance(value, cls) else cls.model_validate(value)

    @classmethod
    def from_call(cls, config: "PluginConfig | None", kwargs: Mapping[str, Any]) -> Any:
        """The config of a module called as ``Module(config)`` or ``Module(**kwargs)``.

        Raises:
            TypeError: both given, or ``config`` of another class.
        """
        if config is None:
            return cls(**kwargs)
        if kwargs:
            raise TypeError(f"pass either a {cls.__name__} or keyword arguments, not both")
        if not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        return config


class LossConfig(StrictModel):
    """Settings of :class:`scrapl.SCRAPLLoss` that are not part of a plugin.

    Attributes:
        p: order of the norm of each path's coefficient difference (> 0).
        use_rho_log1p: compare ``log1p(S / log1p_eps)`` instead of ``S``.
        log1p_eps: scale of the log1p compression (> 0).
        reduction: ``"mean"`` over batch and channels (default), ``"sum"``, or
            ``"none"`` (one distance per example, shape ``(batch, channels)``).
        crop_time: crop padded time frames as the full transform does.  ``False``
            (default) keeps them, which gives scrapl-loss 0.1.0's loss values.
        path_per_step: draw one path per optimizer step: training forwards reuse the
            drawn path until the optimizer consumes it (gradient accumulation, several
            loss terms and two forwards per backward then stay consistent).  ``False``
            draws a new path at every training forward.
        eval_paths: what an ``eval()``-mode forward computes: ``"sample"`` (a random
            path) or ``"all"`` (the deterministic full-tree
            distance, the mean over all paths).
        check_finite: raise ``ValueError`` on NaN/inf input values.
    """

    p: float = 2.0
    use_rho_log1p: bool = False
    log1p_eps: float = 1e-3
    reduction: Literal["mean", "sum", "none"] = "mean"
    crop_time: bool = False
    path_per_step: bool = True
    eval_paths: Literal["sample", "all"] = "sample"
    check_finite: bool = True

    @field_validator("p")
    @classmethod
    def _check_p(cls, value: float) -> float:
        if not value > 0:  # NaN fails too
            raise ValueError(f"p must be a number > 0 (the order of the norm; inf allowed), got {value!r}")
        return value

    @field_validator("log1p_eps")
    @classmethod
    def _check_log1p_eps(cls, value: float) -> float:
        if not (value > 0 and value < float("inf")):
            raise ValueError(f"log1p_eps must be a finite number > 0, got {value!r}")
        return value
