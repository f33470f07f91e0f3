"""The built-in plugins of scrapl, registered explicitly (like pytest's default plugins).

Each module named in :data:`BUILTIN_MODULES` exposes ``PLUGINS: list[PluginSpec]``.
:class:`scrapl.registry.Registry` imports every one of them separately, so a module
that fails to import marks only its own plugins as broken (source name
``"builtin:<module>"``) and the others stay usable.

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

BUILTIN_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "scrapl.transforms.jtfs": {"transform": ("jtfs",)},
    "scrapl.transforms.scattering1d": {"transform": ("scattering1d",)},
    "scrapl.transforms.scattering2d": {"transform": ("scattering2d",)},
    "scrapl.samplers": {"sampler": ("uniform", "theta_is")},
    "scrapl.optim": {"optimizer": ("p_adam", "p_saga", "p_adam_saga", "sgd")},
}
"""The (kind, names) each built-in module is expected to provide.

Used only to explain failures: when a built-in module cannot be imported, asking for
one of these names raises :class:`scrapl.errors.BrokenPluginError` carrying the import
error, instead of a bare "unknown plugin".  The names actually registered are always
the ones the module's ``PLUGINS`` list declares.
"""

__all__ = ["BUILTIN_MODULES", "BUILTIN_NAMES"]
