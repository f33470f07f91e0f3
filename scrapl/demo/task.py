"""The chirplet sound-matching task of the demo, as an ablation task.

Targets ``x = synth(theta, delay)`` with ``theta ~ U[0, 1]^2`` (AM rate, FM rate) and a
random delay; the encoder predicts ``theta_hat`` from ``x``; the reconstruction
``synth(theta_hat, delay_hat)`` gets an independent random delay (what defeats
frame-wise spectral losses).  Registered as the built-in task ``chirplet`` of
:mod:`scrapl.ablation`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from pydantic import Field
from torch import Tensor, nn

from scrapl.ablation.tasks import Task
from scrapl.configs import StrictModel
from scrapl.demo.model import ChirpletEncoder
from scrapl.demo.settings import EncoderSettings, SynthSettings
from scrapl.demo.synth import ChirpletSynth

__all__ = ["ChirpletSettings", "ChirpletTask"]


class ChirpletSettings(StrictModel):
    """Settings of the chirplet task.

    Attributes:
        synth: :class:`~scrapl.demo.settings.SynthSettings`.
        encoder: :class:`~scrapl.demo.settings.EncoderSettings`.
        n_val: held-out examples.
        val_seed: seed of the held-out set (independent of the run seeds).
    """

    synth: SynthSettings = SynthSettings()
    encoder: EncoderSettings = EncoderSettings()
    n_val: int = Field(default=128, ge=1)
    val_seed: int = 987654


_CHUNK_BYTES = 64 * 2**20  # cache storage is allocated in blocks of at least this size


class _ChunkedStore:
    """Equal-shaped tensors kept as views into large preallocated blocks.

    Caching thousands of separately allocated signals (a few hundred KiB each)
    between the large temporaries of every training step fragments glibc's heap:
    measured 5 MB of resident memory more per step (9.6 GB after 2000 steps of the
    demo configuration) where the cached data are 0.3 MB per step; keeping only the
    64-byte parameter tensors of each step did the same.  Blocks of 64 MiB
    or more are memory-mapped by the allocator and never interleave with them.
    """

    def __init__(self) -> None:
        self.blocks: list[Tensor] = []
        self.n = 0
        self.per_block = 0

    def append(self, t: Tensor) -> Tensor:
        if self.n == len(self.blocks) * self.per_block:
            self.per_block = max(1, _CHUNK_BYTES // max(1, t.numel() * t.element_size()))
            self.blocks.append(torch.empty((self.per_block, *t.shape), dtype=t.dtype))
        view = self.blocks[-1][self.n % self.per_block]
        view.copy_(t)
        self.n += 1
        return view


class _Stream:
    """Batches of one seed, generated in order and cached (one generator each for
    parameters, target delays and reconstruction delays)."""

    def __init__(self, task: "ChirpletTask", seed: int, batch_size: int) -> None:
        self.task, self.batch_size = task, batch_size
        self.g_theta = torch.Generator().manual_seed(seed * 3 + 1)
        self.g_shift = torch.Generator().manual_seed(seed * 3 + 2)
        self.g_shift_hat = torch.Generator().manual_seed(seed * 3 + 3)
        self.cache: list[dict[str, Tensor]] = []
        # every cached tensor, even the 64-byte ones, lives in a block: one small
        # tensor kept per step pins the heap as much as a large one
        self._x, self._features, self._theta, self._shifts = (_ChunkedStore() for _ in range(4))

    def get(self, index: int) -> dict[str, Tensor]:
        synth, b = self.task.synth, self.batch_size
        while len(self.cache) <= index:
            theta = torch.rand(b, 2, generator=self.g_theta)
            shifts = synth.sample_shifts(b, self.g_shift)
            shifts_hat = synth.sample_shifts(b, self.g_shift_hat)
            if not self.task.settings.synth.independent_shift:
                shifts_hat = shifts.clone()
            with torch.no_grad():
                x = synth(theta, shifts=shifts)
                feats = self.task.features(x)
            self.cache.append({"theta": self._theta.append(theta), "x": self._x.append(x),
                               "features": self._features.append(feats), "shifts_hat": self._shifts.append(shifts_hat)})
        return self.cache[index]


class _Model(nn.Module):
    """The encoder seen from precomputed features (``forward = head_from_features``)."""

    def __init__(self, encoder: ChirpletEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, features: Tensor) -> Tensor:
        return self.encoder.head_from_features(features)


class ChirpletTask(Task):
    """Chirplet sound matching (see the module docstring)."""

    Settings = ChirpletSettings
    param_names = ("am", "fm")

    def __init__(self, settings: ChirpletSettings, n_samples: int) -> None:  # type: ignore[override]
        super().__init__(settings, n_samples)
        s = settings.synth
        self.synth = ChirpletSynth(
            n_samples=n_samples, sr=s.sr, f0_hz=s.f0_hz, bw_oct=s.bw_oct, sigma0=s.sigma0,
            am_hz_range=s.am_hz_range, fm_oct_range=s.fm_oct_range, max_shift=s.max_shift,
        )
        self._front = self._encoder()  # the gradient-free front end (same for every seed)
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._val: dict[str, Tensor] | None = None

    def _encoder(self, stats_from: ChirpletEncoder | None = None) -> ChirpletEncoder:
        """An encoder (head weights from torch's generator) whose feature
        normalisation is fitted on ``norm_examples`` signals of ``norm_seed``, or
        copied from ``stats_from`` (an encoder fitted so: the same values)."""
        e = self.settings.encoder
        enc = ChirpletEncoder(self.n_samples, 2, hidden=e.hidden, n_octaves=e.n_octaves, Q=e.Q, hop=e.hop, n_mod=e.n_mod)
        with torch.no_grad():
            if stats_from is None:
                g = torch.Generator().manual_seed(e.norm_seed)
                enc.fit_normalisation(self.synth(torch.rand(e.norm_examples, 2, generator=g), generator=g))
            else:
                enc.feature_mean.copy_(stats_from.feature_mean)
                enc.feature_std.copy_(stats_from.feature_std)
        return enc

    def features(self, x: Tensor) -> Tensor:
        """Model input of audio ``x`` ``(B, 1, N)``: ``(B, K * n_mod)``."""
        return self._front.features(x)

    def make_model(self, seed: int) -> nn.Module:
        fork = torch.random.fork_rng(devices=[])
        with fork:  # weights from seed only; torch's global generator left untouched
            torch.manual_seed(seed)
            enc = self._encoder(stats_from=self._front)
        return _Model(enc)

    def batch(self, seed: int, index: int, batch_size: int) -> dict[str, Tensor]:
        key = (seed, batch_size)
        if key not in self._streams:
            self._streams[key] = _Stream(self, seed, batch_size)
        return self._streams[key].get(index)

    def render(self, theta: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return self.synth(theta, shifts=batch["shifts_hat"])

    def validation(self) -> dict[str, Tensor]:
        if self._val is None:
            g = torch.Generator().manual_seed(self.settings.val_seed)
            theta = torch.rand(self.settings.n_val, 2, generator=g)
            with torch.no_grad():
                x = self.synth(theta, generator=g)
                self._val = {"theta": theta, "features": self.features(x)}
        return self._val

    def warmup_batches(self, n_batches: int, batch_size: int, seed: int) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        g = torch.Generator().manual_seed(seed)
        model_kw, render_kw = [], []
        for _ in range(n_batches):
            theta = torch.rand(batch_size, 2, generator=g)
            with torch.no_grad():
                x = self.synth(theta, generator=g)
            shifts_hat = self.synth.sample_shifts(batch_size, g)
            if not self.settings.synth.independent_shift:
                shifts_hat = torch.zeros_like(shifts_hat)
            model_kw.append({"x": x})
            render_kw.append({"shifts": shifts_hat})
        return model_kw, render_kw

    def model_input(self, **kwargs: Tensor) -> Tensor:
        return self.features(kwargs["x"])

    def render_for_warmup(self, theta: Tensor, **kwargs: Any) -> Tensor:
        return self.synth(theta, shifts=kwargs["shifts"])
