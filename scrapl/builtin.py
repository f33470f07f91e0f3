"""The built-in plugins of scrapl, registered explicitly (like pytest's default plugins).

Each module named in :data:`BUILTIN_MODULES` is a plugin like any third-party one: its
``@scrapl.hookimpl`` ``scrapl_register_plugins()`` returns its specs (kept in its
``PLUGINS`` list).  :class:`scrapl.registry.Registry` imports and registers every one
of them separately, so a module that fails to import marks only itself as broken
(source name ``"builtin:<module>"``) and the others stay usable.  No list of the
built-in plugin names is kept anywhere else: the modules declare them.

This module imports nothing heavy: it only names the modules.
"""

from __future__ import annotations

BUILTIN_MODULES: tuple[str, ...] = (
    "scrapl.transforms.jtfs",
    "scrapl.transforms.scattering1d",
    "scrapl.transforms.scattering2d",
    "scrapl.samplers",
    "scrapl.optim",
)
"""Modules registered as built-in plugins, in registration order."""

__all__ = ["BUILTIN_MODULES"]
