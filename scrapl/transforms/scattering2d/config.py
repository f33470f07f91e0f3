"""Pydantic config of the ``scattering2d`` transform plugin."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from scrapl.configs import PluginConfig

__all__ = ["Scattering2DConfig", "max_J"]


def max_J(M: int, N: int) -> int:
    """Largest ``J`` Kymatio 0.3.0 accepts for an ``(M, N)`` image: ``2**J <= min(M, N)``."""
    return min(M, N).bit_length() - 1


class Scattering2DConfig(PluginConfig):
    """Second-order 2-D Morlet scattering (Kymatio 0.3.0 ``Scattering2D``, ``max_order=2``).

    Attributes:
        name: ``"scattering2d"``.
        shape: image size ``(height, width)`` in pixels (``(M, N)`` in Kymatio).
        J: number of dyadic scales; the wavelets have scales ``2**j`` pixels,
            ``j = 0 .. J-1``, and the output is decimated by ``2**J``.  Needs
            ``2 <= J`` (second-order paths need ``j1 < j2``) and
            ``2**J <= min(height, width)`` (Kymatio's bound).
        L: number of orientations (>= 1; Kymatio's design is tuned for 8).
        max_order: must be 2 (the SCRAPL paths are the second-order channels).
        check_finite: raise ``ValueError`` when an input contains NaN or inf.

    Example:
        >>> Scattering2DConfig(shape=(128, 128), J=3).L
        8
    """

    name: Literal["scattering2d"] = "scattering2d"
    shape: tuple[int, int]
    J: int = Field(ge=2, le=30)
    L: int = Field(default=8, ge=1, le=128)
    max_order: Literal[2] = 2
    check_finite: bool = True

    @field_validator("shape", mode="before")
    @classmethod
    def _check_shape(cls, value: object) -> object:
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple) or len(value) != 2:
            raise ValueError(f"shape must be a pair (height, width) of pixel counts, got {value!r}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"shape must be a pair (height, width) of positive integers, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_scales(self) -> "Scattering2DConfig":
        M, N = self.shape
        top = max_J(M, N)
        if self.J > top:
            raise ValueError(
                f"J={self.J} is too large for shape={self.shape}: Kymatio's Scattering2D needs "
                f"2**J <= min(height, width) = {min(M, N)}, so J must be in [2, {top}]"
                + ("" if top >= 2 else " (the image is too small for any second-order path: min side >= 4)")
            )
        return self
