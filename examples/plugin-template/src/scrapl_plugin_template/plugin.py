"""The module named by the ``scrapl.plugins`` entry point.

scrapl imports it, finds the ``@scrapl.hookimpl`` function below and registers the
returned :class:`scrapl.PluginSpec`.  Keep imports here light and never import
``scrapl.registry`` or ``scrapl.build`` (they import plugins, not the reverse).
"""

from __future__ import annotations

import scrapl
from scrapl_plugin_template.config import StftBandsConfig
from scrapl_plugin_template.transform import build_stft_bands


@scrapl.hookimpl
def scrapl_register_plugins() -> list[scrapl.PluginSpec]:
    """Declare the ``stft_bands`` transform."""
    return [
        scrapl.PluginSpec(
            kind="transform",
            name="stft_bands",
            config_cls=StftBandsConfig,
            factory=build_stft_bands,
            description="STFT band energies (template plugin)",
        )
    ]
