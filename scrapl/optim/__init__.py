"""Path-aware optimizers: P-Adam, P-SAGA, P-Adam+SAGA and SGD as ``torch.optim``
optimizers whose ``step(closure=None, path=None)`` knows which SCRAPL path produced
the gradient, and :class:`PathGradHooks`, the gradient hooks of ``SCRAPLLoss.attach_params``.

Plugins (kind ``"optimizer"``), built by ``factory(config, params, *, n_paths,
path_source, **overrides)``:

============  ===============================================================
``p_adam_saga``  P-Adam moments, P-SAGA, then SGD (the paper's default)
``p_adam``       P-Adam moments, then SGD
``p_saga``       P-SAGA over raw gradients, then SGD
``sgd``          plain SGD (no per-path state)
============  ===============================================================
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from scrapl.hookspecs import plugins_hook
from scrapl.interfaces import PathSource, PluginSpec
from scrapl.optim.base import PathOptimizerBase
from scrapl.optim.config import PAdamConfig, PAdamSAGAConfig, PSAGAConfig, SGDConfig, merge_overrides
from scrapl.optim.p_adam import PAdam, PAdamSAGA
from scrapl.optim.p_saga import PSAGA
from scrapl.optim.sgd import PathSGD

__all__ = [
    "PLUGINS", "scrapl_register_plugins",
    "PAdam",
    "PAdamSAGA",
    "PSAGA",
    "PathSGD",
    "PathOptimizerBase",
    "PAdamConfig",
    "PAdamSAGAConfig",
    "PSAGAConfig",
    "SGDConfig",
    "make_p_adam_saga",
    "make_p_adam",
    "make_p_saga",
    "make_sgd",
]


def _factory(config_cls: type, optimizer_cls: type) -> Callable[..., Any]:
    """The plugin factory of ``optimizer_cls``: validate the config with the user's
    ``overrides`` on top (they win), then build the optimizer."""

    def factory(config: Any, params: Iterable[Any], *, n_paths: int, path_source: Optional[PathSource] = None,
                **overrides: Any) -> Any:
        cfg = merge_overrides(config, config_cls, overrides)
        return optimizer_cls(params, n_paths, path_source=path_source, **cfg.model_dump(exclude={"name"}))

    factory.__name__ = factory.__qualname__ = f"make_{config_cls.model_fields['name'].default}"
    factory.__doc__ = (f"Build :class:`{optimizer_cls.__name__}` from a :class:`{config_cls.__name__}` (or a dict); "
                       "keyword ``overrides`` (e.g. ``lr=...``) win over its fields.")
    return factory


make_p_adam_saga = _factory(PAdamSAGAConfig, PAdamSAGA)
make_p_adam = _factory(PAdamConfig, PAdam)
make_p_saga = _factory(PSAGAConfig, PSAGA)
make_sgd = _factory(SGDConfig, PathSGD)


PLUGINS: list[PluginSpec] = [
    PluginSpec.of("optimizer", PAdamSAGAConfig, make_p_adam_saga,
                  "P-Adam moments + P-SAGA, then SGD (the paper's default)"),
    PluginSpec.of("optimizer", PAdamConfig, make_p_adam, "P-Adam (per-path Adam moments), then SGD"),
    PluginSpec.of("optimizer", PSAGAConfig, make_p_saga, "P-SAGA (per-path SAGA over raw gradients), then SGD"),
    PluginSpec.of("optimizer", SGDConfig, make_sgd, "plain SGD (no per-path state)"),
]

scrapl_register_plugins = plugins_hook(PLUGINS)  # registered like any third-party plugin


def __getattr__(name: str) -> Any:
    # ``scrapl.optim.PathGradHooks`` predates the compat layer: a lazy alias.
    if name == "PathGradHooks":
        from scrapl.compat.hooks import PathGradHooks

        return PathGradHooks
    raise AttributeError(f"module 'scrapl.optim' has no attribute {name!r}")
