"""Configuration of the JTFS transform plugin (pydantic, validated at construction).

Every hyperparameter check of the JTFS lives here; :class:`scrapl.transforms.jtfs.JTFS`
validates its constructor arguments by building a :class:`JTFSConfig`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from scrapl.configs import PluginConfig
from scrapl.transforms import filterbank as fb

__all__ = ["JTFSConfig", "joint_geometry"]


def joint_geometry(shape: int, J: int, Q1: int, Q2: int, J_fr: int, Q_fr: int, T: int | None, F: int | None) -> dict:
    """Cheap (no filter arrays) derived sizes of a JTFS configuration.

    Returns a dict with ``T`` and ``F`` (defaults resolved: ``2**J`` and
    ``2**J_fr``), ``log2_T``, ``log2_F``, ``n1`` (number of first-order wavelets),
    ``j1`` / ``j2`` (their maximal subsamplings), ``N_fr`` (padded frequency length)
    and ``n_paths`` (number of second-order (n2, n_fr) paths).
    """
    T_ = 2**J if T is None else T
    F_ = 2**J_fr if F is None else F
    psi1 = fb.wavelet_params(J, Q1)
    psi2 = fb.wavelet_params(J, Q2)
    psi_fr = fb.wavelet_params(J_fr, Q_fr)
    j1 = [fb.max_subsampling(xi, sigma) for xi, sigma in psi1]
    j2 = [fb.max_subsampling(xi, sigma) for xi, sigma in psi2]
    n_in_fr = (J + 1) * Q1
    min_pad_fr = 8 * min(F_, 2**J_fr)
    n_fr = ((n_in_fr + min_pad_fr) // 2**J_fr) * 2**J_fr
    active = [b for b in j2 if any(a < b for a in j1)]
    return {
        "T": T_,
        "F": F_,
        "log2_T": int(math.floor(math.log2(T_))),
        "log2_F": int(math.floor(math.log2(F_))),
        "n1": len(psi1),
        "j1": j1,
        "j2": j2,
        "N_fr": n_fr,
        "n_paths": len(active) * (1 + 2 * len(psi_fr)),
    }


class JTFSConfig(PluginConfig):
    """Joint time-frequency scattering (JTFS) settings.

    Matches ``kymatio.torch.TimeFrequencyScattering(shape, J, Q=(Q1, Q2), J_fr, Q_fr,
    T, F, format='joint', out_type='array')`` as bundled with scrapl-loss 0.1.0.

    Attributes:
        name: always ``"jtfs"``.
        shape: signal length ``N`` in samples (``2**J <= N``).
        J: log2 of the largest temporal wavelet scale (>= 1).
        Q1: first-order wavelets per octave (>= 1).
        Q2: second-order wavelets per octave (>= 1).
        J_fr: log2 of the largest frequential wavelet scale, in first-order channels
            (>= 1).
        Q_fr: frequential wavelets per octave (>= 1).
        T: temporal averaging scale in samples, ``1 <= T <= shape``; ``None`` means
            ``2**J``.  The output is decimated by ``2**floor(log2 T)``, which must be
            at least ``2**max(j2)`` (the joint format cannot stack otherwise).
        F: frequential averaging scale in first-order channels,
            ``1 <= F <= 2**J_fr``; ``None`` means ``2**J_fr``.
        check_finite: raise ``ValueError`` on NaN/inf input values.

    'global' or 0 (no averaging) values of T / F are not supported: the joint array
    output cannot represent them.
    """

    name: Literal["jtfs"] = "jtfs"
    shape: int = Field(gt=0)
    J: int = Field(ge=1)
    Q1: int = Field(ge=1)
    Q2: int = Field(ge=1)
    J_fr: int = Field(ge=1)
    Q_fr: int = Field(ge=1)
    T: int | None = None
    F: int | None = None
    check_finite: bool = True

    @field_validator("shape", "J", "Q1", "Q2", "J_fr", "Q_fr", "T", "F", mode="before")
    @classmethod
    def _no_bool_or_str(cls, v: object, info) -> object:  # noqa: ANN001 - pydantic signature
        if isinstance(v, bool):
            raise ValueError(f"{info.field_name} must be an integer, got a bool ({v!r})")
        if isinstance(v, str):
            if v.strip().lower() == "global":
                raise ValueError(
                    f"{info.field_name}='global' (global averaging) is not supported by the joint "
                    "JTFS output; give an integer averaging scale or None"
                )
            raise ValueError(f"{info.field_name} must be an integer, got the string {v!r}")
        return v

    @field_validator("T", "F")
    @classmethod
    def _positive_scale(cls, v: int | None, info) -> int | None:  # noqa: ANN001
        if v is not None and v < 1:
            extra = " (0 = no averaging is not supported by the joint JTFS output)" if v == 0 else ""
            raise ValueError(f"{info.field_name} must be None or an integer >= 1, got {v}{extra}")
        return v

    @model_validator(mode="after")
    def _check_geometry(self) -> "JTFSConfig":
        if 2**self.J > self.shape:
            raise ValueError(
                f"J={self.J} is too large for shape={self.shape}: need 2**J <= shape "
                f"(J <= {int(math.floor(math.log2(self.shape)))})"
            )
        if self.T is not None and self.T > self.shape:
            raise ValueError(f"T must be in [1, shape={self.shape}], got T={self.T}")
        if self.F is not None and self.F > 2**self.J_fr:
            raise ValueError(
                f"F must be in [1, 2**J_fr={2**self.J_fr}] for the joint JTFS output, got F={self.F}"
            )
        geo = joint_geometry(self.shape, self.J, self.Q1, self.Q2, self.J_fr, self.Q_fr, self.T, self.F)
        if geo["n_paths"] == 0:
            raise ValueError(
                f"J={self.J} with Q1={self.Q1}, Q2={self.Q2} has no second-order path "
                "(no second-order wavelet is coarser than a first-order one); increase J"
            )
        max_j2 = max(geo["j2"])
        if geo["log2_T"] < max_j2:
            raise ValueError(
                f"T={geo['T']} is too small for the joint JTFS output: need floor(log2 T) >= "
                f"max j2 = {max_j2}, i.e. T >= {2**max_j2} (or T=None)"
            )
        if geo["N_fr"] < geo["n1"]:
            raise ValueError(
                f"the padded frequency axis (N_fr={geo['N_fr']}) is shorter than the number of "
                f"first-order channels ({geo['n1']}); increase F or decrease J_fr (J_fr={self.J_fr}, "
                f"F={geo['F']})"
            )
        return self
