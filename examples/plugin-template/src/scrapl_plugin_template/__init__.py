"""Template of a third-party scrapl plugin: the ``stft_bands`` transform.

scrapl finds it through the ``scrapl.plugins`` entry point declared in this
package's ``pyproject.toml`` (see :mod:`scrapl_plugin_template.plugin`).
"""

from scrapl_plugin_template.config import StftBandsConfig
from scrapl_plugin_template.transform import StftBands, band_edges, build_stft_bands

__all__ = ["StftBands", "StftBandsConfig", "band_edges", "build_stft_bands"]
__version__ = "0.1.0"
