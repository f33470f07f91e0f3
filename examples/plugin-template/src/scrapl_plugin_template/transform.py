"""``StftBands``: the SCRAPL paths are the frequency bands of an STFT magnitude.

Path ``b`` is the mean STFT magnitude over the frequency bins of band ``b``, one
value per frame: shape ``(*batch, 1, frames)``.  It is a small but complete
:class:`scrapl.ScatteringTransform`: ``forward_path`` computes one band and
``forward`` stacks all of them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from scrapl.interfaces import PathInfo, ScatteringTransform

if TYPE_CHECKING:  # pragma: no cover
    from scrapl_plugin_template.config import StftBandsConfig


def band_edges(n_fft: int, n_bands: int, scale: str) -> list[int]:
    """Bin edges of ``n_bands`` contiguous bands of an ``n_fft``-point real STFT.

    Returns ``n_bands + 1`` strictly increasing bin indices; band ``b`` holds bins
    ``edges[b] <= k < edges[b + 1]``.  ``"linear"`` splits bins ``0 .. n_fft // 2``
    evenly; ``"log"`` spaces edges geometrically from bin 1 (DC excluded), widening
    narrow low bands to one bin.

    Raises:
        ValueError: unknown ``scale`` or more bands than bins.
    """
    n_freq = n_fft // 2 + 1
    if scale == "linear":
        first = 0
    elif scale == "log":
        first = 1
    else:
        raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")
    available = n_freq - first
    if not 1 <= n_bands <= available:
        raise ValueError(
            f"n_bands must be between 1 and {available} for n_fft={n_fft} with scale={scale!r}, got {n_bands}"
        )
    if scale == "linear":
        raw = [first + available * b / n_bands for b in range(n_bands + 1)]
    else:
        raw = [first * (n_freq / first) ** (b / n_bands) for b in range(n_bands + 1)]
    edges = [int(round(e)) for e in raw]
    edges[0], edges[-1] = first, n_freq
    for b in range(1, n_bands + 1):  # every band at least one bin wide ...
        edges[b] = max(edges[b], edges[b - 1] + 1)
    for b in range(n_bands - 1, 0, -1):  # ... without running past the last bin
        edges[b] = min(edges[b], edges[b + 1] - 1)
    return edges


class StftBands(ScatteringTransform):
    """Band energies of an STFT magnitude, one SCRAPL path per band.

    Args:
        shape: signal length in samples (``n_samples``).
        n_fft: window length in samples (Hann window, centred frames).
        hop_length: hop in samples (default ``n_fft // 4``).
        n_bands: number of bands = number of paths.
        scale: ``"log"`` or ``"linear"`` band edges (see :func:`band_edges`).

    Example::

        >>> t = StftBands(shape=1024, n_fft=128, n_bands=4)
        >>> t(torch.randn(2, 1, 1024)).shape   # (batch, channels, paths, 1, frames)
        torch.Size([2, 1, 4, 1, 32])
    """

    def __init__(
        self, shape: int, n_fft: int = 256, hop_length: int | None = None, n_bands: int = 8, scale: str = "log"
    ) -> None:
        super().__init__()
        for arg, value in (("shape", shape), ("n_fft", n_fft), ("n_bands", n_bands)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        if n_fft > shape:
            raise ValueError(f"n_fft ({n_fft}) must not exceed shape ({shape})")
        hop = n_fft // 4 if hop_length is None else hop_length
        if not isinstance(hop, int) or not 1 <= hop <= n_fft:
            raise ValueError(f"hop_length must be an integer in [1, n_fft={n_fft}], got {hop_length!r}")
        self.n_samples = shape
        self.n_fft = n_fft
        self.hop_length = hop
        self.scale = scale
        self.edges = band_edges(n_fft, n_bands, scale)
        n_freq = n_fft // 2 + 1
        weights = torch.zeros(n_bands, n_freq)
        for b in range(n_bands):
            lo, hi = self.edges[b], self.edges[b + 1]
            weights[b, lo:hi] = 1.0 / (hi - lo)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("band_weights", weights, persistent=False)  # (n_bands, n_freq)
        # Centred frames: frame t is centred on sample t * hop; with crop_time the
        # frames centred at or past the end of the signal are dropped.
        self.n_frames = 1 + shape // hop
        self.n_frames_cropped = math.ceil(shape / hop)

    @property
    def paths(self) -> list[tuple[int, ...]]:
        """``(b,)`` for each band ``b``, lowest band first."""
        return [(b,) for b in range(len(self.edges) - 1)]

    @property
    def path_infos(self) -> list[PathInfo]:
        """Band limits in bins and in cycles per sample."""
        infos = []
        for b in range(self.n_paths):
            lo, hi = self.edges[b], self.edges[b + 1]
            f_lo, f_hi = lo / self.n_fft, (hi - 1) / self.n_fft
            infos.append(
                PathInfo(
                    index=b,
                    key=(b,),
                    label=f"band {b}: {f_lo:.4f}-{f_hi:.4f} cycles/sample",
                    extra={"bin_lo": lo, "bin_hi": hi, "f_lo": f_lo, "f_hi": f_hi},
                )
            )
        return infos

    def _magnitude(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """STFT magnitude ``(B, n_freq, frames)`` of ``x`` flattened to ``B`` signals."""
        if x.shape[-1] != self.n_samples:
            raise ValueError(f"x must have {self.n_samples} samples on its last axis, got shape {tuple(x.shape)}")
        batch = tuple(x.shape[:-1])
        spec = torch.stft(
            x.reshape(-1, self.n_samples),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window.to(x.dtype),
            center=True,
            return_complex=True,
        )
        return spec.abs(), batch

    def _crop(self, y: Tensor, crop_time: bool) -> Tensor:
        return y[..., : self.n_frames_cropped] if crop_time else y

    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        """Band ``i``: ``x`` of shape ``(*batch, shape)`` -> ``(*batch, 1, frames)``."""
        if not 0 <= i < self.n_paths:
            raise ValueError(f"path index i must be in [0, {self.n_paths}), got {i}")
        mag, batch = self._magnitude(x)
        w = self.band_weights[i : i + 1].to(mag.dtype)  # (1, n_freq)
        y = torch.einsum("kf,bft->bkt", w, mag)
        return self._crop(y.reshape(*batch, 1, y.shape[-1]), crop_time)

    def forward(self, x: Tensor) -> Tensor:
        """All bands: ``(*batch, shape)`` -> ``(*batch, n_bands, 1, frames)`` (cropped)."""
        mag, batch = self._magnitude(x)
        y = torch.einsum("kf,bft->bkt", self.band_weights.to(mag.dtype), mag)
        return self._crop(y.reshape(*batch, self.n_paths, 1, y.shape[-1]), True)


def build_stft_bands(config: "StftBandsConfig") -> StftBands:
    """Factory registered with scrapl: config -> transform."""
    return StftBands(
        shape=config.shape,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_bands=config.n_bands,
        scale=config.scale,
    )
