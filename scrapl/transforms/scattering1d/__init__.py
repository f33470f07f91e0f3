"""Built-in transform plugin ``scattering1d``: second-order time scattering.

Kymatio 0.3.0's ``Scattering1D`` with ``max_order=2``, whose SCRAPL paths are the
second-order coefficients ``(n1, n2)`` (``j1 < j2``) in Kymatio's output order.
The Morlet filter design is shared with JTFS (:mod:`scrapl.transforms.filterbank`).

Example::

    import scrapl
    built = scrapl.build({"transform": {"name": "scattering1d", "shape": 4096, "J": 6, "Q": 8}})
"""

from __future__ import annotations

from scrapl.hookspecs import plugins_hook
from scrapl.interfaces import PluginSpec
from scrapl.transforms.scattering1d.config import Scattering1DConfig
from scrapl.transforms.scattering1d.module import TimeScattering

Scattering1D = TimeScattering
"""The class under the scheme ``<Class>`` / ``<Class>Config`` / plugin ``scattering1d``."""

__all__ = ["PLUGINS", "scrapl_register_plugins", "Scattering1D", "Scattering1DConfig", "TimeScattering", "make_scattering1d"]


def make_scattering1d(config: Scattering1DConfig) -> TimeScattering:
    """Plugin factory: build a :class:`TimeScattering` from its validated config."""
    return TimeScattering(Scattering1DConfig.coerce(config))


PLUGINS: list[PluginSpec] = [
    PluginSpec.of("transform", Scattering1DConfig, make_scattering1d,
                  "second-order time scattering (Kymatio 0.3.0 Scattering1D); paths are (n1, n2)"),
]

scrapl_register_plugins = plugins_hook(PLUGINS)  # registered like any third-party plugin
