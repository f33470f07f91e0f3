"""Settings of the sound-matching demo and the layout of demo config files.

A demo config file is a scrapl config (top-level ``transform``, ``sampler``,
``optimizer``, ``loss``, ``seed``; what :func:`scrapl.build` reads) with an optional
extra top-level ``demo:`` mapping holding :class:`DemoSettings`.  The command line
takes the ``demo:`` section out before calling ``scrapl.build``, so a file without
``demo:`` is a plain scrapl config and a file with it only differs by that key.
Example::

    transform: {name: jtfs, shape: 8192, J: 10, Q1: 8, Q2: 2, J_fr: 3, Q_fr: 2, T: 4096, F: 8}
    sampler: {name: theta_is}
    optimizer: {name: p_adam_saga, lr: 0.003}
    seed: 0
    demo:
      steps: 300
      batch_size: 8
      synth: {am_hz_range: [4, 16], fm_oct_range: [0.5, 4]}
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, field_validator

from scrapl.ablation.spec import WarmupSpec
from scrapl.configs import SeedInt, StrictModel

__all__ = [
    "SynthSettings",
    "EncoderSettings",
    "WarmupSettings",
    "DemoSettings",
    "DEFAULT_SCRAPL_CONFIG",
    "default_scrapl_config",
]


class SynthSettings(StrictModel):
    """Chirplet synthesizer settings (see :class:`scrapl.demo.synth.ChirpletSynth`).

    Attributes:
        sr: sample rate in Hz.
        f0_hz: carrier frequency at the signal centre (Hz).
        bw_oct: bandwidth parameter in octaves.
        sigma0: relative window width.
        am_hz_range: AM rate range (Hz), mapped log-uniformly from ``theta_am``.
        fm_oct_range: FM rate range (octaves/s), mapped log-uniformly from ``theta_fm``.
        max_shift: random delays are uniform in ``[-max_shift, max_shift]`` samples.
        independent_shift: render the reconstruction with its own random delay (the
            paper's setting that defeats spectral losses); ``False`` reuses the
            target's delay.
    """

    sr: float = Field(default=8192.0, gt=0)
    f0_hz: float = Field(default=512.0, gt=0)
    bw_oct: float = Field(default=2.0, gt=0)
    sigma0: float = Field(default=0.1, gt=0)
    am_hz_range: tuple[float, float] = (4.0, 16.0)
    fm_oct_range: tuple[float, float] = (0.5, 4.0)
    max_shift: int = Field(default=1024, ge=0)
    independent_shift: bool = True


class EncoderSettings(StrictModel):
    """Encoder settings (see :class:`scrapl.demo.model.ChirpletEncoder`)."""

    hidden: int = Field(default=64, ge=1)
    n_octaves: int = Field(default=6, ge=1)
    Q: int = Field(default=8, ge=1)
    hop: int = Field(default=128, ge=1)
    n_mod: int = Field(default=33, ge=1)
    norm_examples: int = Field(default=256, ge=2)
    norm_seed: int = 2024


WarmupSettings = WarmupSpec
"""The demo's theta-IS warmup settings: :class:`scrapl.ablation.WarmupSpec`."""


class DemoSettings(StrictModel):
    """Everything about the demo that is not the scrapl config itself.

    Attributes:
        task: the built-in task (only ``"chirplet"``).
        seed: seed of weight initialisation and of the training data stream.
        steps: optimizer steps of every arm but the full-JTFS one.
        full_steps: steps of the full-JTFS arm, at most ``steps`` (its step costs
            about 18x a SCRAPL step here: its 300 steps use more compute than
            SCRAPL's 2000; ``None``: ``steps``).
        workers: local worker processes the arms run in (0: this process); torch
            threads are split among them unless ``threads`` is set.
        batch_size: training batch size.
        scrapl_lr: learning rate of the SCRAPL arms; ``None`` keeps the config's
            ``optimizer.lr``.
        full_lr, mss_lr, supervised_lr: Adam learning rates of the baselines.
        n_val: held-out examples for the parameter error.
        val_every: evaluate every this many steps (and at the end).
        val_seed: seed of the held-out set (different from the training stream).
        methods: the arms, among ``"scrapl"`` (the config's sampler and optimizer,
            theta-IS warmup when it is ``theta_is``), ``"scrapl_uniform"`` (uniform
            paths), ``"full_jtfs"``, ``"mss"``, ``"supervised"``.
        synth: :class:`SynthSettings`.
        encoder: :class:`EncoderSettings`.
        warmup: :class:`~scrapl.ablation.WarmupSpec` (8 power iterations by default, as in the
            shipped ablation, where theta-IS gave its gain with them).
        threads: torch CPU threads (``None``: torch's default).
    """

    task: Literal["chirplet"] = "chirplet"
    seed: SeedInt = 0
    steps: int = Field(default=2000, ge=1)
    full_steps: int | None = Field(default=300, ge=1)
    workers: int = Field(default=2, ge=0)
    batch_size: int = Field(default=8, ge=1)
    scrapl_lr: float | None = Field(default=None, gt=0)
    full_lr: float = Field(default=3e-4, gt=0)
    mss_lr: float = Field(default=1e-4, gt=0)
    supervised_lr: float = Field(default=1e-3, gt=0)
    n_val: int = Field(default=128, ge=1)
    val_every: int = Field(default=25, ge=1)
    val_seed: SeedInt = 987654
    methods: tuple[Literal["scrapl", "scrapl_uniform", "full_jtfs", "mss", "supervised"], ...] = (
        "scrapl", "full_jtfs", "mss", "supervised")
    synth: SynthSettings = SynthSettings()
    encoder: EncoderSettings = EncoderSettings()
    warmup: WarmupSpec = WarmupSpec(n_iter=8)  # 8 power iterations: the shipped ablation's
    threads: int | None = Field(default=None, ge=1)

    def task_spec(self) -> dict[str, Any]:
        """The ``task`` of an ablation spec (or a warmup job) these settings describe."""
        return {"name": self.task, "settings": {"synth": self.synth.model_dump(), "encoder": self.encoder.model_dump(),
                                                "n_val": self.n_val, "val_seed": self.val_seed}}

    def warmup_job(self) -> dict[str, Any]:
        """The :class:`scrapl.ablation.warmup.WarmupJob` of ``scrapl warmup`` for a
        config with a ``demo:`` section: the task, the warmup and the model seed."""
        return {"task": self.task_spec(), "warmup": self.warmup.model_dump(), "seed": self.seed}

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("methods must name at least one arm")
        if len(set(value)) != len(value):
            raise ValueError(f"methods must not repeat a name, got {list(value)}")
        return value


#: The scrapl config of the demo (identical to ``configs/demo.yaml``).
DEFAULT_SCRAPL_CONFIG: dict[str, Any] = {
    "transform": {"name": "jtfs", "shape": 8192, "J": 10, "Q1": 8, "Q2": 1, "J_fr": 3, "Q_fr": 1, "T": 4096, "F": 8},
    "sampler": {"name": "theta_is", "n_theta": 2},
    "optimizer": {"name": "p_adam_saga", "lr": 0.0001},
    "seed": 0,
}


def default_scrapl_config() -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_SCRAPL_CONFIG`."""
    return copy.deepcopy(DEFAULT_SCRAPL_CONFIG)
