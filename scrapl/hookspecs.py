"""Hook specifications of scrapl's plugin system (a leaf module).

A plugin is a module (or object) with functions marked ``@scrapl.hookimpl``.  It is
found either among scrapl's built-ins (:data:`scrapl.builtin.BUILTIN_MODULES`) or
through the ``scrapl.plugins`` entry-point group of an installed distribution::

    # pyproject.toml of a third-party package
    [project.entry-points."scrapl.plugins"]
    my_transform = "my_package.scrapl_plugin"

    # my_package/scrapl_plugin.py
    import scrapl

    @scrapl.hookimpl
    def scrapl_register_plugins():
        return [scrapl.PluginSpec(kind="transform", name="my_transform",
                                  config_cls=MyConfig, factory=build_my_transform)]

How the registry (:mod:`scrapl.registry`) treats plugins:

* Each built-in module and each entry point is its own *source*, loaded and called
  on its own: a source that fails to import, whose hook raises, or that returns an
  invalid :class:`~scrapl.interfaces.PluginSpec` is recorded as broken with its error
  (shown by ``Registry.describe()``, raised when one of its plugins is asked for);
  the other sources are unaffected.
* Every spec is validated when it is registered: ``kind`` is one of
  ``"transform"``, ``"sampler"``, ``"optimizer"``; ``name`` is a non-empty string;
  ``config_cls`` subclasses :class:`scrapl.configs.PluginConfig` and pins
  ``name: Literal["<name>"]``; ``factory`` is callable.
* Names are unique per kind across all sources: a second registration of the same
  ``(kind, name)`` is rejected with a :class:`~scrapl.errors.DuplicatePluginError`
  that names both sources; the last one never silently wins.
* A function marked ``@hookimpl`` whose name is not a hook below (a typo) makes the
  plugin broken instead of being ignored.
* Setting ``SCRAPL_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (built-ins still
  load), like pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.

Hooks run once, when a registry is created (or on ``Registry.register``); they are
never called while training.  Hook implementations take no arguments.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT_NAME = "scrapl"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks the hook specifications below (used by scrapl only)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's hook implementations: ``@scrapl.hookimpl`` (also exported as
``scrapl.hookimpl``)."""


@hookspec
def scrapl_register_plugins() -> list:  # pragma: no cover - specification only
    """Return the plugins this module provides.

    Returns:
        A list of :class:`scrapl.interfaces.PluginSpec`, each naming its ``kind``
        (``"transform"``, ``"sampler"`` or ``"optimizer"``), a ``name`` unique within
        the kind, a pydantic ``config_cls`` whose ``name`` field is
        ``Literal[name]``, and a ``factory`` (signatures in
        :mod:`scrapl.interfaces`).  Called once per plugin when the registry loads;
        an exception raised here marks only this plugin as broken.
    """


def plugins_hook(specs: "list[Any]") -> "Callable[[], list[Any]]":
    """A ``scrapl_register_plugins`` hook implementation returning ``specs``.

    A plugin module keeps its specs in a list and exposes them with one line::

        scrapl_register_plugins = scrapl.plugins_hook(PLUGINS)
    """

    def scrapl_register_plugins() -> list[Any]:
        return list(specs)

    return hookimpl(scrapl_register_plugins)
