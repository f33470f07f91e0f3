"""Pydantic configs of the optimizer plugins (``p_adam_saga``, ``p_adam``, ``p_saga``,
``sgd``) and the merge of user overrides."""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional, TypeVar

import torch
from pydantic import Field, field_validator

from scrapl.configs import PluginConfig

__all__ = [
    "StateDtype",
    "EpsMode",
    "PAdamSAGAConfig",
    "PAdamConfig",
    "PSAGAConfig",
    "SGDConfig",
    "merge_overrides",
]

StateDtype = Literal["float32", "bfloat16", "float64"]
EpsMode = Literal["relative", "absolute"]

STATE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def check_state_device(value: Optional[str]) -> Optional[str]:
    """Validate a ``state_device`` string (``None`` = each parameter's own device)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"state_device must be a device string such as 'cpu' or 'cuda:0', or None; got {value!r}")
    try:
        torch.device(value)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"state_device must be a torch device string such as 'cpu' or 'cuda:0', got {value!r}") from exc
    return value


class _StateOptions(PluginConfig):
    """Where and how the per-path state is stored."""

    state_dtype: StateDtype = "float32"
    state_device: Optional[str] = None

    @field_validator("state_device")
    @classmethod
    def _check_device(cls, value: Optional[str]) -> Optional[str]:
        return check_state_device(value)


class _PAdamOptions(_StateOptions):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    eps_mode: EpsMode = "relative"

    @field_validator("betas")
    @classmethod
    def _check_betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        for i, b in enumerate(value):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b}")
        return value


class PAdamSAGAConfig(_PAdamOptions):
    """P-Adam moments, then P-SAGA variance reduction, then an SGD step (the paper's
    default).

    Attributes:
        lr: learning rate of the outer SGD step (>= 0).  The P-Adam direction is
            normalised (about +-1 per weight, like Adam), so Adam-like values apply;
            default 1e-3.
        betas: ``(beta1, beta2)`` of P-Adam, each in ``[0, 1)``.
        eps: P-Adam epsilon (> 0), inside the square root as in the paper.
        eps_mode: ``"relative"`` (default): ``eps`` is measured in units of each
            parameter's gradient scale ``s`` (the RMS of its first non-zero
            gradient), i.e. ``eps_eff = eps * s**2``, which makes the trajectory
            invariant to the loss scale; ``"absolute"``: the paper's formula as is.
        weight_decay: L2 weight decay of the outer SGD step (>= 0), applied like
            ``torch.optim.SGD(weight_decay=...)`` after P-Adam/P-SAGA.
        state_dtype: dtype of the per-path buffers (``"float32"``, ``"bfloat16"``,
            ``"float64"``).
        state_device: device of the per-path buffers (e.g. ``"cpu"``); ``None`` =
            each parameter's own device.
    """

    name: Literal["p_adam_saga"] = "p_adam_saga"
    lr: float = Field(default=1e-3, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)


class PAdamConfig(_PAdamOptions):
    """P-Adam moments, then an SGD step.  Fields as :class:`PAdamSAGAConfig`."""

    name: Literal["p_adam"] = "p_adam"
    lr: float = Field(default=1e-3, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)


class PSAGAConfig(_StateOptions):
    """P-SAGA over the raw gradients, then an SGD step.

    Attributes:
        lr: SGD learning rate (>= 0).  The step is proportional to the gradient, so
            the right value depends on the loss scale (per-path JTFS gradients are
            tiny); default 1e-3 is only a placeholder to tune.
        weight_decay: L2 weight decay (>= 0).
        state_dtype, state_device: as :class:`PAdamSAGAConfig`.
    """

    name: Literal["p_saga"] = "p_saga"
    lr: float = Field(default=1e-3, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)


class SGDConfig(PluginConfig):
    """Plain SGD (no per-path state): the outer optimizer of SCRAPL without
    P-Adam/P-SAGA.

    Attributes:
        lr: learning rate (>= 0); depends on the loss scale, default 1e-3.
        momentum: momentum factor (>= 0).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 weight decay (>= 0).
    """

    name: Literal["sgd"] = "sgd"
    lr: float = Field(default=1e-3, ge=0)
    momentum: float = Field(default=0.0, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)

    @field_validator("nesterov")
    @classmethod
    def _check_nesterov(cls, value: bool, info: Any) -> bool:
        if value and info.data.get("momentum", 0.0) <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
        return value


C = TypeVar("C", bound=PluginConfig)


def merge_overrides(config: C | Mapping[str, Any], config_cls: type[C], overrides: Mapping[str, Any]) -> C:
    """Validate ``config`` (an instance or a dict) with user ``overrides`` on top.

    Overrides win over the config's fields and are validated like them (a pydantic
    ``ValidationError`` names a bad or unknown field).

    Raises:
        TypeError: if ``config`` is neither a ``config_cls`` nor a mapping.
        ValueError: if ``overrides`` tries to change ``name``.
    """
    if isinstance(config, config_cls):
        base = config.model_dump()
    elif isinstance(config, Mapping):
        base = dict(config)
        base.setdefault("name", config_cls.model_fields["name"].default)
    else:
        raise TypeError(f"config must be a {config_cls.__name__} or a dict, got {type(config).__name__}")
    if "name" in overrides and overrides["name"] != base.get("name"):
        raise ValueError(f"overrides cannot change the optimizer name ({base.get('name')!r})")
    if not overrides and isinstance(config, config_cls):
        return config
    return config_cls.model_validate({**base, **overrides})
