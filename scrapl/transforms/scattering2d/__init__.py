"""Built-in transform plugin ``scattering2d``: second-order 2-D Morlet scattering.

Kymatio 0.3.0's ``Scattering2D`` with ``max_order=2`` on ``(height, width)`` images,
whose SCRAPL paths are the second-order channels ``(j1, theta1, j2, theta2)``
(``j1 < j2``) in Kymatio's output order.

Example::

    import scrapl
    built = scrapl.build({"transform": {"name": "scattering2d", "shape": [128, 128], "J": 3, "L": 8}})
"""

from __future__ import annotations

from scrapl.hookspecs import plugins_hook
from scrapl.interfaces import PluginSpec
from scrapl.transforms.scattering2d.config import Scattering2DConfig
from scrapl.transforms.scattering2d.module import ImageScattering

__all__ = ["PLUGINS", "scrapl_register_plugins", "ImageScattering", "Scattering2DConfig", "make_scattering2d"]


def make_scattering2d(config: Scattering2DConfig) -> ImageScattering:
    """Plugin factory: build an :class:`ImageScattering` from its validated config."""
    return ImageScattering(Scattering2DConfig.coerce(config))


PLUGINS: list[PluginSpec] = [
    PluginSpec.of("transform", Scattering2DConfig, make_scattering2d,
                  "second-order 2-D scattering of images (Kymatio 0.3.0 Scattering2D); paths are (j1, theta1, j2, theta2)"),
]

scrapl_register_plugins = plugins_hook(PLUGINS)  # registered like any third-party plugin
