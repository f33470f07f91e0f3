"""Pydantic config of the ``stft_bands`` transform."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from scrapl.configs import PluginConfig
from scrapl_plugin_template.transform import band_edges


class StftBandsConfig(PluginConfig):
    """Settings of :class:`~scrapl_plugin_template.transform.StftBands`.

    Attributes:
        name: always ``"stft_bands"`` (the registry looks the plugin up by it).
        shape: signal length in samples.
        n_fft: STFT window length in samples (at most ``shape``).
        hop_length: STFT hop in samples (default ``n_fft // 4``; at most ``n_fft``).
        n_bands: number of frequency bands = number of SCRAPL paths.
        scale: ``"log"`` (geometric band edges, DC excluded) or ``"linear"`` band edges.
    """

    name: Literal["stft_bands"] = "stft_bands"
    shape: int = Field(gt=0)
    n_fft: int = Field(default=256, ge=4)
    hop_length: int | None = Field(default=None, gt=0)
    n_bands: int = Field(default=8, ge=1)
    scale: Literal["log", "linear"] = "log"

    @model_validator(mode="after")
    def _check_sizes(self) -> "StftBandsConfig":
        if self.n_fft > self.shape:
            raise ValueError(f"n_fft ({self.n_fft}) must not exceed shape ({self.shape})")
        if self.hop_length is not None and self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        band_edges(self.n_fft, self.n_bands, self.scale)  # raises ValueError if infeasible
        return self
