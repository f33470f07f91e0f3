"""JTFSConfig validation: every bad value is rejected with an error naming it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from scrapl.transforms.jtfs import JTFS, JTFSConfig

GOOD: dict[str, Any] = dict(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2)


def make(**kw: Any) -> JTFSConfig:
    return JTFSConfig(**{**GOOD, **kw})


def test_valid_config_defaults_and_round_trip() -> None:
    cfg = make()
    assert cfg.name == "jtfs" and cfg.T is None and cfg.F is None and cfg.check_finite is True
    assert JTFSConfig.model_validate(cfg.model_dump()) == cfg
    assert JTFSConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValidationError):
        cfg.J = 5  # frozen
    assert make(T=4096, F=8).T == 4096


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("shape", 0, "shape"),
        ("shape", -5, "shape"),
        ("J", 0, "J"),
        ("Q1", 0, "Q1"),
        ("Q2", -1, "Q2"),
        ("J_fr", 0, "J_fr"),
        ("Q_fr", 0, "Q_fr"),
        ("T", 0, "no averaging"),
        ("T", -3, "T"),
        ("F", 0, "no averaging"),
        ("T", "global", "global"),
        ("F", "global", "global"),
        ("T", 5000, r"T must be in \[1, shape=4096\]"),
        ("F", 9, r"F must be in \[1, 2\*\*J_fr=8\]"),
        ("J", 13, r"J=13 is too large for shape=4096"),
        ("T", 8, r"need floor\(log2 T\) >= max j2"),
        ("J", True, "bool"),
        ("shape", 4096.5, "shape"),
        ("name", "scattering1d", "name"),
    ],
)
def test_invalid_values_are_named(field: str, value: Any, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern) as info:
        make(**{field: value})
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Q"):
        JTFSConfig(**GOOD, Q=8)


def test_configuration_without_second_order_paths() -> None:
    with pytest.raises(ValidationError, match="no second-order path"):
        JTFSConfig(shape=64, J=2, Q1=1, Q2=1, J_fr=1, Q_fr=1)


def test_frequency_padding_too_short() -> None:
    # F = 1 pads the log-frequency axis by only 8 bins before rounding down to 2**J_fr
    with pytest.raises(ValidationError, match="N_fr"):
        JTFSConfig(shape=2048, J=10, Q1=2, Q2=1, J_fr=5, Q_fr=1, F=1)


def test_constructor_uses_the_same_validation() -> None:
    with pytest.raises(ValidationError, match="T must be in"):
        JTFS(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2, T=5000)
    with pytest.raises(ValueError, match="J_fr"):
        JTFS(shape=4096, J=6, Q1=8, Q2=2, J_fr=0, Q_fr=2)
