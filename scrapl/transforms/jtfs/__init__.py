"""Joint time-frequency scattering (JTFS) transform plugin ``"jtfs"``.

Exports :class:`JTFS` (the ``nn.Module``), :class:`JTFSConfig` (its pydantic config)
and ``PLUGINS``, the plugin specs registered by scrapl's registry.

Layout: :mod:`.config` (validation), :mod:`.filterbank` (numpy filter design and
precomputed operators), :mod:`.core` (pure torch functions), :mod:`.module`
(the ``nn.Module``).
"""

from __future__ import annotations

from scrapl.hookspecs import plugins_hook
from scrapl.interfaces import PluginSpec
from scrapl.transforms.jtfs.config import JTFSConfig
from scrapl.transforms.jtfs.module import JTFS

__all__ = ["JTFS", "JTFSConfig", "PLUGINS", "scrapl_register_plugins", "build_jtfs", "make_jtfs"]


def make_jtfs(cfg: JTFSConfig) -> JTFS:
    """Plugin factory (``make_<plugin name>``, like every built-in): the
    :class:`JTFS` described by ``cfg``."""
    return JTFS.from_config(cfg)


build_jtfs = make_jtfs
"""Earlier name of :func:`make_jtfs`."""


PLUGINS: list[PluginSpec] = [
    PluginSpec.of("transform", JTFSConfig, make_jtfs,
                  "Joint time-frequency scattering (Kymatio-compatible); paths are (n2, n_fr) channels"),
]

scrapl_register_plugins = plugins_hook(PLUGINS)  # registered like any third-party plugin
