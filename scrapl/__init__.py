"""scrapl: scattering transforms with random paths (SCRAPL) as PyTorch losses.

The public facade.  Heavy modules are imported lazily so that ``import scrapl`` is
cheap and a third-party plugin can import :data:`hookimpl` and :class:`PluginSpec`
without pulling in the transforms.

Quick start::

    import scrapl
    loss = scrapl.SCRAPLLoss(shape=32768, J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2)
    built = scrapl.build({"transform": {"name": "jtfs", "shape": 8192, "J": 8,
                                        "Q1": 8, "Q2": 2, "J_fr": 3, "Q_fr": 2}})
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from scrapl.configs import PluginConfig, StrictModel
from scrapl.errors import (
    BrokenPluginError,
    DuplicatePluginError,
    PluginError,
    ScraplError,
    UnknownPluginError,
    WarmupError,
)
from scrapl.hookspecs import hookimpl, plugins_hook
from scrapl.interfaces import PathAwareOptimizer, PathInfo, PathSampler, PluginSpec, ScatteringTransform

__version__ = "0.2.0"

_LAZY = {
    "SCRAPLLoss": "scrapl.compat",
    "PathLoss": "scrapl.loss",
    "build": "scrapl.builder",
    "Built": "scrapl.builder",
    "ScraplConfig": "scrapl.builder",
    "load_config": "scrapl.builder",
    "save_config": "scrapl.builder",
    "config_json_schema": "scrapl.builder",
    "reset_registry": "scrapl.registry",
    "get_registry": "scrapl.registry",
    "Registry": "scrapl.registry",
    "JTFS": "scrapl.transforms.jtfs",
    "JTFSConfig": "scrapl.transforms.jtfs",
    "ablate": "scrapl.ablation",
    "AblationSpec": "scrapl.ablation",
}

__all__ = [
    "BrokenPluginError",
    "DuplicatePluginError",
    "PathAwareOptimizer",
    "PathInfo",
    "PathSampler",
    "PluginConfig",
    "PluginError",
    "PluginSpec",
    "ScatteringTransform",
    "ScraplError",
    "StrictModel",
    "UnknownPluginError",
    "WarmupError",
    "hookimpl",
    "plugins_hook",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scrapl' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
