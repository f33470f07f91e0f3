"""Base pydantic configuration models (a leaf module).

Every plugin has one config class deriving from :class:`PluginConfig` that pins its
``name`` with ``Literal["..."]``.  Configs are frozen and forbid unknown keys, so a
typo is an error that names the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class PluginConfig(StrictModel):
    """Base class of plugin configs; subclasses set ``name: Literal["<plugin>"]``."""

    name: str
