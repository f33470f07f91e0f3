"""The chirplet synthesizer of the SCRAPL paper, as a differentiable torch module.

A chirplet is a Gaussian-windowed exponential chirp (a sinusoid whose frequency
rises by ``fm`` octaves per second from ``f0`` at the signal centre), amplitude
modulated by a sinusoid whose envelope ``|sin(pi a t)|`` has ``a`` bumps per second,
and delayed by a random integer number of samples (zero-filled).  Its two
parameters, AM rate ``a`` (Hz) and FM rate ``fm`` (octaves per second), are what an
encoder must recover in the unsupervised sound-matching demo; the random delay is
what defeats frame-wise spectral losses and what the time invariance of JTFS
absorbs.

With ``t`` the time axis in seconds centred on zero (``t[n] = (n - N//2) / sr``) and
``s`` the sample axis centred on zero (``s[n] = n - (N - 1) / 2``)::

    phase(t)  = f0 / (fm ln 2) * (2**(fm t) - 1)      (= f0 t when fm = 0)
    carrier   = sin(2 pi phase(t))
    window    = exp(-(s / (std sqrt 2))**2),  std = sigma0 * bw / fm   (sigma0 * bw if fm = 0)
    chirplet  = carrier * fm * window * sin(2 pi (a / 2) t)           (fm factor only if fm != 0)

with ``bw = bw_oct * sr`` samples.  Everything is batched and differentiable with
respect to the parameters (the delay is an integer and is not).

Example::

    >>> import torch
    >>> synth = ChirpletSynth(n_samples=8192, sr=8192.0)
    >>> theta = torch.tensor([[0.2, 0.7], [0.9, 0.1]])       # (batch, 2) in [0, 1]
    >>> g = torch.Generator().manual_seed(0)
    >>> synth(theta, generator=g).shape
    torch.Size([2, 1, 8192])
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ChirpletSynth", "chirplet", "shift_zero_fill"]

_LN2 = math.log(2.0)


def _check_range(name: str, value: Sequence[float], *, allow_zero: bool) -> tuple[float, float]:
    """Validate a ``(low, high)`` range for log-uniform mapping."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (low, high), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low == high == 0.0 and allow_zero:
        return low, high
    if not (0.0 < low <= high):
        extra = " (or (0, 0) to switch it off)" if allow_zero else ""
        raise ValueError(f"{name} must satisfy 0 < low <= high{extra}, got {value!r}")
    return low, high


def shift_zero_fill(x: Tensor, shifts: Tensor) -> Tensor:
    """Delay each signal by an integer number of samples, filling with zeros.

    Unlike ``torch.roll`` nothing wraps around: a positive shift ``d`` moves sample
    ``n`` to ``n + d`` and zeroes the first ``d`` samples; a negative shift advances
    the signal and zeroes the last ``|d|`` samples.

    Args:
        x: signals, shape ``(batch, samples)``.
        shifts: integer shifts in samples, shape ``(batch,)``; ``|shift| <= samples``.

    Returns:
        Shifted signals, shape ``(batch, samples)``; differentiable w.r.t. ``x``.
    """
    if x.ndim != 2:
        raise ValueError(f"x must have shape (batch, samples), got {tuple(x.shape)}")
    if shifts.shape != (x.shape[0],):
        raise ValueError(f"shifts must have shape ({x.shape[0]},), got {tuple(shifts.shape)}")
    n = x.shape[-1]
    src = torch.arange(n, device=x.device).unsqueeze(0) - shifts.to(x.device).long().unsqueeze(1)
    valid = (src >= 0) & (src < n)
    gathered = torch.gather(x, 1, src.clamp(0, n - 1))
    return gathered * valid.to(x.dtype)


def chirplet(
    am_hz: Tensor,
    fm_oct_per_s: Tensor,
    *,
    t: Tensor,
    s: Tensor,
    f0_hz: float,
    bw_samples: float,
    sigma0: float,
) -> Tensor:
    """Render unshifted chirplets (the paper's formula, batched).

    Args:
        am_hz: AM rate ``a`` in Hz, shape ``(batch,)``, ``>= 0`` (0 disables AM).
        fm_oct_per_s: FM rate in octaves per second, shape ``(batch,)``; an entry of
            exactly 0 selects the pure-tone branch (``phase = f0 t``, no fm factor).
        t: time axis in seconds centred on zero, shape ``(samples,)``.
        s: sample axis centred on zero, shape ``(samples,)``.
        f0_hz: carrier frequency at ``t = 0`` in Hz.
        bw_samples: bandwidth parameter ``bw`` in samples.
        sigma0: relative window width.

    Returns:
        Chirplets, shape ``(batch, samples)``, same dtype as ``t``.
    """
    a = am_hz.unsqueeze(-1).to(t.dtype)
    f = fm_oct_per_s.unsqueeze(-1).to(t.dtype)
    is_zero = f == 0
    # A "safe" rate keeps the unused branch of torch.where finite (and its gradient too).
    f_safe = torch.where(is_zero, torch.ones_like(f), f)
    # f0 / (f ln2) * (2**(f t) - 1), written with expm1 for accuracy at small f t.
    phase_fm = f0_hz * torch.expm1(f_safe * t * _LN2) / (f_safe * _LN2)
    phase = torch.where(is_zero, f0_hz * t.expand_as(phase_fm), phase_fm)
    carrier = torch.sin(2.0 * math.pi * phase)
    std = sigma0 * bw_samples / f_safe.abs()
    std = torch.where(is_zero, torch.full_like(std, sigma0 * bw_samples), std)
    window = torch.exp(-((s / (std * math.sqrt(2.0))) ** 2))
    amp = torch.where(is_zero, torch.ones_like(f), f)
    modulator = torch.where(a > 0, torch.sin(2.0 * math.pi * (a / 2.0) * t), torch.ones_like(a))
    return carrier * amp * window * modulator


class ChirpletSynth(nn.Module):
    """Differentiable chirplet synthesizer with two parameters (AM rate, FM rate).

    Parameters ``theta[:, 0]`` (AM) and ``theta[:, 1]`` (FM) lie in ``[0, 1]`` and are
    mapped log-uniformly to ``am_hz_range`` and ``fm_oct_range``:
    ``value = low * (high / low) ** theta``.  A range ``(0, 0)`` switches that
    modulation off (AM: no modulator; FM: the pure-tone ``fm = 0`` branch).

    Args:
        n_samples: signal length ``N`` in samples.
        sr: sample rate in Hz.
        f0_hz: carrier frequency at the signal centre, Hz.
        bw_oct: bandwidth parameter in octaves; ``bw = bw_oct * sr`` samples.
        sigma0: relative window width.
        am_hz_range: ``(low, high)`` AM rate in Hz.
        fm_oct_range: ``(low, high)`` FM rate in octaves per second.
        max_shift: the random delay is uniform over the integers
            ``[-max_shift, max_shift]`` (samples, zero-filled); 0 disables it.

    Shapes:
        ``forward(theta)``: ``theta`` is ``(batch, 2)``; the output is
        ``(batch, 1, n_samples)``.
    """

    n_params: int = 2
    param_names: tuple[str, str] = ("am", "fm")

    def __init__(
        self,
        n_samples: int = 8192,
        sr: float = 8192.0,
        *,
        f0_hz: float = 512.0,
        bw_oct: float = 2.0,
        sigma0: float = 0.1,
        am_hz_range: Sequence[float] = (4.0, 16.0),
        fm_oct_range: Sequence[float] = (0.5, 4.0),
        max_shift: int = 1024,
    ) -> None:
        super().__init__()
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
        for name, value in (("sr", sr), ("f0_hz", f0_hz), ("bw_oct", bw_oct), ("sigma0", sigma0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if f0_hz >= sr / 2:
            raise ValueError(f"f0_hz must be below the Nyquist frequency sr/2 = {sr / 2}, got {f0_hz!r}")
        if not isinstance(max_shift, int) or isinstance(max_shift, bool) or not (0 <= max_shift < n_samples):
            raise ValueError(f"max_shift must be an integer in [0, n_samples), got {max_shift!r}")
        self.n_samples = n_samples
        self.sr = float(sr)
        self.f0_hz = float(f0_hz)
        self.bw_oct = float(bw_oct)
        self.bw_samples = float(bw_oct) * float(sr)
        self.sigma0 = float(sigma0)
        self.am_hz_range = _check_range("am_hz_range", am_hz_range, allow_zero=True)
        self.fm_oct_range = _check_range("fm_oct_range", fm_oct_range, allow_zero=True)
        self.max_shift = max_shift
        t = (torch.arange(n_samples, dtype=torch.float64) - n_samples // 2) / self.sr
        s = torch.arange(n_samples, dtype=torch.float64) - (n_samples - 1) / 2.0
        self.register_buffer("t", t.float(), persistent=False)
        self.register_buffer("s", s.float(), persistent=False)

    # ------------------------------------------------------------------ mapping
    @staticmethod
    def _log_uniform(theta: Tensor, rng: tuple[float, float]) -> Tensor:
        low, high = rng
        if low == high == 0.0:
            return torch.zeros_like(theta)
        return low * (high / low) ** theta

    def params_to_physical(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``theta`` (``(batch, 2)`` in ``[0, 1]``) to (AM rate in Hz, FM rate in
        octaves per second), each of shape ``(batch,)``."""
        self._check_theta(theta)
        return self._log_uniform(theta[:, 0], self.am_hz_range), self._log_uniform(theta[:, 1], self.fm_oct_range)

    def _check_theta(self, theta: Tensor) -> None:
        if not isinstance(theta, Tensor):
            raise TypeError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
        if theta.ndim != 2 or theta.shape[-1] != self.n_params:
            raise ValueError(f"theta must have shape (batch, {self.n_params}), got {tuple(theta.shape)}")

    # ------------------------------------------------------------------ shifts
    def sample_shifts(self, batch: int, generator: torch.Generator | None) -> Tensor:
        """Draw ``batch`` integer delays uniformly in ``[-max_shift, max_shift]``.

        Args:
            batch: number of delays.
            generator: CPU ``torch.Generator`` (required when ``max_shift > 0``).

        Returns:
            int64 CPU tensor of shape ``(batch,)``.
        """
        if self.max_shift == 0:
            return torch.zeros(batch, dtype=torch.long)
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                "generator must be a torch.Generator when max_shift > 0 "
                "(every random choice takes an explicit generator); pass shifts= to fix them"
            )
        return torch.randint(-self.max_shift, self.max_shift + 1, (batch,), generator=generator)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        theta: Tensor,
        *,
        generator: torch.Generator | None = None,
        shifts: Tensor | None = None,
    ) -> Tensor:
        """Render chirplets.

        Args:
            theta: parameters in ``[0, 1]``, shape ``(batch, 2)`` (AM, FM).
            generator: draws the random delays when ``shifts`` is not given.
            shifts: explicit integer delays in samples, shape ``(batch,)``.

        Returns:
            Audio, shape ``(batch, 1, n_samples)``, dtype of ``theta`` (float32 buffers
            are cast to it).
        """
        self._check_theta(theta)
        batch = theta.shape[0]
        if shifts is None:
            shifts = self.sample_shifts(batch, generator)
        else:
            if not isinstance(shifts, Tensor) or shifts.shape != (batch,):
                raise ValueError(f"shifts must be a tensor of shape ({batch},)")
            if shifts.dtype.is_floating_point or shifts.dtype == torch.bool:
                raise TypeError(f"shifts must be an integer tensor, got {shifts.dtype}")
            if shifts.abs().max().item() > self.n_samples:
                raise ValueError(f"|shifts| must be <= n_samples = {self.n_samples}")
        am, fm = self.params_to_physical(theta)
        t = self.t.to(theta.dtype)
        s = self.s.to(theta.dtype)
        x = chirplet(am, fm, t=t, s=s, f0_hz=self.f0_hz, bw_samples=self.bw_samples, sigma0=self.sigma0)
        if bool((shifts != 0).any()):
            x = shift_zero_fill(x, shifts)
        return x.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"n_samples={self.n_samples}, sr={self.sr}, f0_hz={self.f0_hz}, bw_oct={self.bw_oct}, "
            f"am_hz_range={self.am_hz_range}, fm_oct_range={self.fm_oct_range}, max_shift={self.max_shift}"
        )
