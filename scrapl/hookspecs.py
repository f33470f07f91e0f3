"""Hook specifications of scrapl's plugin system (a leaf module).

A plugin is a module (or object) with functions marked ``@scrapl.hookimpl``.  It is
found either among scrapl's built-ins or through the ``scrapl.plugins`` entry-point
group of an installed distribution::

    # pyproject.toml of a third-party package
    [project.entry-points."scrapl.plugins"]
    my_transform = "my_package.scrapl_plugin"

    # my_package/scrapl_plugin.py
    import scrapl

    @scrapl.hookimpl
    def scrapl_register_plugins():
        return [scrapl.PluginSpec(kind="transform", name="my_transform",
                                  config_cls=MyConfig, factory=build_my_transform)]
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "scrapl"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


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
