"""Encoder of the sound-matching demo: a log-scalogram front end and a small CNN.

The front end is a constant-Q wavelet filterbank (analytic Morlet-like filters
designed in the Fourier domain, as the first layer ``|x * psi1|`` of a scattering
transform), followed by a temporal moving average, subsampling and a log.  The CNN
maps this time-frequency image to the synthesizer parameters through a sigmoid,
so predictions lie in ``[0, 1]``.  A global average over time makes the
prediction nearly invariant to the random delays of the chirplets.

Example::

    >>> import torch
    >>> enc = ChirpletEncoder(n_samples=8192)
    >>> enc(torch.randn(3, 1, 8192)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["LogScalogram", "ModulationSpectrum", "ChirpletEncoder"]


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class LogScalogram(nn.Module):
    """Time-averaged log modulus of a constant-Q wavelet transform.

    Filter ``k`` (``k = 0 .. n_octaves * Q - 1``) is a Gaussian bump in the Fourier
    domain centred at ``xi_k = xi_max * 2**(-k / Q)`` cycles per sample with
    bandwidth ``sigma_k = xi_k * (1 - 2**(-1/Q)) / (1 + 2**(-1/Q)) / sqrt(ln 2)``
    (neighbours cross at half-power), zero on negative frequencies (analytic).
    The modulus ``|x * psi_k|`` is averaged over ``2 * hop`` samples, subsampled by
    ``hop`` and compressed with ``log(eps + .)``.

    Args:
        n_samples: signal length ``N``.
        n_octaves: number of octaves covered below ``xi_max``.
        Q: filters per octave.
        hop: subsampling factor of the time axis (samples per frame).
        xi_max: centre frequency of the highest filter, cycles per sample (< 0.5).
        eps: floor of the log.

    Shapes:
        input ``(batch, samples)`` or ``(batch, 1, samples)``; output
        ``(batch, n_octaves * Q, n_frames)`` (:attr:`n_frames` is ``N // hop`` for a
        hop dividing ``N``).
    """

    def __init__(
        self,
        n_samples: int,
        *,
        n_octaves: int = 6,
        Q: int = 8,
        hop: int = 128,
        xi_max: float = 0.4,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.n_samples = _positive_int("n_samples", n_samples, 2)
        self.n_octaves = _positive_int("n_octaves", n_octaves)
        self.Q = _positive_int("Q", Q)
        self.hop = _positive_int("hop", hop)
        if self.hop > n_samples:
            raise ValueError(f"hop must be <= n_samples = {n_samples}, got {hop!r}")
        if not (isinstance(xi_max, (int, float)) and 0 < xi_max < 0.5):
            raise ValueError(f"xi_max must be in (0, 0.5) cycles per sample, got {xi_max!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        n_filters = self.n_octaves * self.Q
        k = torch.arange(n_filters, dtype=torch.float64)
        xi = float(xi_max) * 2.0 ** (-k / self.Q)
        r = 2.0 ** (-1.0 / self.Q)
        sigma = xi * (1 - r) / (1 + r) / math.sqrt(math.log(2.0))
        freqs = torch.fft.fftfreq(n_samples, dtype=torch.float64)
        bank = torch.exp(-((freqs.unsqueeze(0) - xi.unsqueeze(1)) ** 2) / (2 * sigma.unsqueeze(1) ** 2))
        bank = bank * (freqs > 0).to(torch.float64)
        self.register_buffer("filters", bank.float(), persistent=False)  # (K, N), real
        self.register_buffer("xi", xi.float(), persistent=False)

    @property
    def n_filters(self) -> int:
        """Number of frequency bins ``K = n_octaves * Q``."""
        return self.n_octaves * self.Q

    @property
    def n_frames(self) -> int:
        """Number of output time frames."""
        return (self.n_samples + 2 * (self.hop // 2) - 2 * self.hop) // self.hop + 1

    def forward(self, x: Tensor) -> Tensor:
        """Log-scalogram of ``x``: ``(batch, [1,] samples)`` -> ``(batch, K, n_frames)``."""
        if x.ndim == 3:
            if x.shape[1] != 1:
                raise ValueError(f"x must be mono: shape (batch, 1, samples), got {tuple(x.shape)}")
            x = x[:, 0]
        if x.ndim != 2 or x.shape[-1] != self.n_samples:
            raise ValueError(f"x must have shape (batch, {self.n_samples}), got {tuple(x.shape)}")
        spec = torch.fft.fft(x.to(self.filters.dtype)).unsqueeze(1)
        # A few filters at a time: the (B, k, N) complex intermediates stay about 1 MiB,
        # in cache and reused by the allocator (all K at once: 25 MB for a batch of 8,
        # fresh pages at every call, 2.5x slower); the values do not depend on k.
        k = max(1, 2**20 // (8 * x.shape[0] * self.n_samples))
        pad = self.hop // 2 if self.hop > 1 else 0
        u = torch.cat([F.avg_pool1d(torch.fft.ifft(spec * f).abs(), kernel_size=2 * self.hop, stride=self.hop, padding=pad)
                       for f in self.filters.split(k)], dim=1)  # (B, K, n_frames)
        return torch.log(u + self.eps)


class ModulationSpectrum(nn.Module):
    """Delay-invariant modulation spectrum of a log-scalogram.

    For each frequency band of :class:`LogScalogram` the log-modulus is centred in
    time and its magnitude spectrum over time is kept up to ``n_mod`` modulation bins
    (fewer if the signal has fewer)
    (bin ``m`` is ``m * sr / (hop * n_frames)`` Hz: 1 Hz steps for the demo's 1 s
    signals), then compressed with ``log1p``.  The magnitude of a Fourier transform
    ignores (circular) delays, and the AM rate shows as a peak at its bin, which a
    time-averaged CNN over the scalogram does not pick up within a few hundred steps
    (measured: held-out AM error stayed at the predict-the-middle level even with
    supervised training).

    Shapes:
        input ``(batch, [1,] samples)``; output ``(batch, K, n_mod)``.
    """

    def __init__(self, n_samples: int, *, n_octaves: int = 6, Q: int = 8, hop: int = 128, n_mod: int = 33) -> None:
        super().__init__()
        self.scalogram = LogScalogram(n_samples, n_octaves=n_octaves, Q=Q, hop=hop)
        n_bins = self.scalogram.n_frames // 2 + 1
        self.n_mod = min(_positive_int("n_mod", n_mod), n_bins)  # at most the bins of the frames

    def forward(self, x: Tensor) -> Tensor:
        u = self.scalogram(x)
        m = torch.fft.rfft(u - u.mean(dim=-1, keepdim=True), dim=-1).abs()[..., : self.n_mod]
        return torch.log1p(m)


class ChirpletEncoder(nn.Module):
    """Predicts synthesizer parameters in ``[0, 1]`` from audio.

    Architecture: :class:`ModulationSpectrum` (computed without gradient), a fixed
    per-feature standardisation (``feature_mean`` / ``feature_std`` buffers, set from
    unlabeled signals with :meth:`fit_normalisation`; identity until then), a
    two-layer MLP and a sigmoid.

    Args:
        n_samples: signal length.
        n_params: number of outputs (2 for the chirplet synth).
        hidden: width of the hidden layer.
        n_octaves, Q, hop: front-end settings (see :class:`LogScalogram`).
        n_mod: modulation bins kept (see :class:`ModulationSpectrum`).

    Shapes:
        input ``(batch, 1, samples)`` or ``(batch, samples)``; output ``(batch, n_params)``.
    """

    def __init__(
        self,
        n_samples: int,
        n_params: int = 2,
        *,
        hidden: int = 64,
        n_octaves: int = 6,
        Q: int = 8,
        hop: int = 128,
        n_mod: int = 33,
    ) -> None:
        super().__init__()
        _positive_int("n_params", n_params)
        _positive_int("hidden", hidden)
        self.front_end = ModulationSpectrum(n_samples, n_octaves=n_octaves, Q=Q, hop=hop, n_mod=n_mod)
        n_in = self.front_end.scalogram.n_filters * self.front_end.n_mod
        self.head = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_params))
        self.n_params = n_params
        self.register_buffer("feature_mean", torch.zeros(n_in))
        self.register_buffer("feature_std", torch.ones(n_in))

    @torch.no_grad()
    def _raw_features(self, x: Tensor, chunk: int = 32) -> Tensor:
        """Unnormalised front-end features ``(batch, K * n_mod)``, computed ``chunk``
        signals at a time (the filterbank's ``(batch, K, samples)`` complex
        intermediate is 0.8 GB for 256 one-second signals at once)."""
        return torch.cat([self.front_end(part).flatten(1) for part in x.split(chunk)]) if len(x) else \
            self.front_end(x).flatten(1)

    @torch.no_grad()
    def fit_normalisation(self, x: Tensor) -> None:
        """Set the per-feature mean and standard deviation from signals ``x``
        ``(batch, 1, samples)`` (unlabeled; batch >= 2)."""
        u = self._raw_features(x)
        if u.shape[0] < 2:
            raise ValueError(f"fit_normalisation needs at least 2 signals, got {u.shape[0]}")
        self.feature_mean.copy_(u.mean(dim=0))
        self.feature_std.copy_(u.std(dim=0).clamp_min(1e-5))

    def features(self, x: Tensor) -> Tensor:
        """Standardised modulation spectrum, flattened: ``(batch, K * n_mod)`` (no gradient)."""
        with torch.no_grad():
            return (self._raw_features(x) - self.feature_mean) / self.feature_std

    def forward(self, x: Tensor) -> Tensor:
        """Parameters in ``[0, 1]``, shape ``(batch, n_params)``."""
        return self.head_from_features(self.features(x))

    def head_from_features(self, u: Tensor) -> Tensor:
        """Map precomputed :meth:`features` to parameters (``(batch, n_params)``)."""
        return torch.sigmoid(self.head(u))
