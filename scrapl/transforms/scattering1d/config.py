"""Pydantic config of the ``scattering1d`` transform plugin."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from scrapl.configs import PluginConfig

__all__ = ["Scattering1DConfig", "normalize_q", "normalize_shape"]


def normalize_shape(shape: object) -> int:
    """Signal length from ``shape`` (an int or a 1-tuple/list), as Kymatio 0.3.0 reads it.

    Raises:
        TypeError: ``shape`` is neither an integer nor a 1-sequence of one.
        ValueError: the length is not a positive integer.
    """
    if isinstance(shape, (tuple, list)):
        if len(shape) != 1:
            raise ValueError(f"shape must be an integer or a 1-tuple (the signal length), got {shape!r}")
        shape = shape[0]
    if isinstance(shape, bool) or not isinstance(shape, int):
        raise TypeError(f"shape must be an integer number of samples (or a 1-tuple of one), got {shape!r}")
    if shape < 1:
        raise ValueError(f"shape must be a positive number of samples, got {shape}")
    return int(shape)


def normalize_q(q: object) -> tuple[int, int]:
    """``(Q1, Q2)`` from ``Q`` following Kymatio 0.3.0: an int ``q`` means ``(q, 1)``, a
    1-tuple ``(q,)`` means ``(q, 1)``, a 2-tuple is used as is.  Every entry must be an
    integer >= 1.

    Raises:
        TypeError: an entry is not an integer.
        ValueError: wrong number of entries or an entry < 1.
    """
    if isinstance(q, (tuple, list)):
        entries = tuple(q)
        if len(entries) not in (1, 2):
            raise ValueError(
                f"Q must be an integer, a 1-tuple or a 2-tuple (Q1, Q2) (max_order is 2), got {q!r}"
            )
    else:
        entries = (q,)
    for e in entries:
        if isinstance(e, bool) or not isinstance(e, int):
            raise TypeError(f"Q entries must be integers >= 1 (wavelets per octave), got {q!r}")
        if e < 1:
            raise ValueError(f"Q entries must be integers >= 1 (wavelets per octave), got {q!r}")
    if len(entries) == 1:
        entries = (entries[0], 1)
    return int(entries[0]), int(entries[1])


def _checked(normalize: Any, value: object) -> object:
    """``value`` (a list as a tuple) once ``normalize`` accepts it; its TypeError
    becomes the ValueError pydantic reports with the field location."""
    if isinstance(value, list):
        value = tuple(value)
    try:
        normalize(value)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return value


class Scattering1DConfig(PluginConfig):
    """Second-order time scattering (Kymatio 0.3.0 ``Scattering1D``, ``max_order=2``).

    Attributes:
        name: ``"scattering1d"``.
        shape: signal length N in samples (an int, or a 1-tuple as Kymatio allows).
        J: log2 of the largest wavelet scale (>= 1); the default averaging scale is
            ``T = 2**J`` samples, so ``2**J <= shape`` unless ``T`` is given.
        Q: wavelets per octave: an int ``Q1`` (then ``Q2 = 1``, Kymatio's default) or
            ``(Q1, Q2)``; integers >= 1.
        T: averaging scale in samples: ``None`` for ``2**J``, or an integer
            ``1 <= T <= shape`` (a non-power of two is allowed; the output is decimated
            by ``2**floor(log2 T)``).  ``T=0`` (Kymatio's un-averaged mode) is not
            supported: its paths have different lengths, like Kymatio 0.3.0, which
            refuses ``out_type='array'`` without averaging.
        oversampling: Kymatio's ``oversampling`` (>= 0): decimate every stage
            ``2**oversampling`` times less, so the output has ``2**oversampling`` times
            more frames.
        check_finite: raise ``ValueError`` when an input contains NaN or inf.

    Example:
        >>> Scattering1DConfig(shape=4096, J=6, Q=8).Q
        8
    """

    name: Literal["scattering1d"] = "scattering1d"
    shape: Union[int, tuple[int]]
    J: int = Field(ge=1, le=30)
    Q: Union[int, tuple[int], tuple[int, int]] = 1
    T: Optional[int] = None
    oversampling: int = Field(default=0, ge=0, le=30)
    check_finite: bool = True

    @field_validator("shape", mode="before")
    @classmethod
    def _check_shape(cls, value: object) -> object:
        return _checked(normalize_shape, value)

    @field_validator("Q", mode="before")
    @classmethod
    def _check_q(cls, value: object) -> object:
        return _checked(normalize_q, value)

    @property
    def n_samples(self) -> int:
        """The signal length N."""
        return normalize_shape(self.shape)

    @property
    def q_pair(self) -> tuple[int, int]:
        """``(Q1, Q2)``."""
        return normalize_q(self.Q)

    @model_validator(mode="after")
    def _check_scales(self) -> "Scattering1DConfig":
        n = self.n_samples
        if self.T is None:
            if 2**self.J > n:
                raise ValueError(
                    f"J={self.J} gives the default averaging scale T = 2**J = {2**self.J} samples, "
                    f"more than the signal length shape={n}; lower J or pass T <= {n}"
                )
        elif self.T == 0:
            raise ValueError(
                "T=0 (no time averaging) is not supported by the scattering1d plugin: un-averaged "
                "second-order paths have different lengths (Kymatio 0.3.0 likewise refuses "
                "out_type='array' without averaging); use T=None (2**J) or 1 <= T <= shape"
            )
        elif not 1 <= self.T <= n:
            raise ValueError(f"T must be None or an integer with 1 <= T <= shape={n}, got T={self.T}")
        return self
