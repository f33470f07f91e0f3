"""scrapl.checks: one layer per check, the finite check once per loss call."""

from __future__ import annotations

import pytest
import torch

import scrapl
from scrapl import checks

CFGS = {
    "jtfs": ({"name": "jtfs", "shape": 1024, "J": 4, "Q1": 2, "Q2": 1, "J_fr": 2, "Q_fr": 1}, (1024,)),
    "scattering1d": ({"name": "scattering1d", "shape": 1024, "J": 4, "Q": 2}, (1024,)),
    "scattering2d": ({"name": "scattering2d", "shape": (16, 16), "J": 2, "L": 4}, (16, 16)),
}


@pytest.mark.parametrize("name", sorted(CFGS))
def test_finite_check_runs_once_per_loss_call(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    transform, signal = CFGS[name]
    built = scrapl.build({"transform": transform})  # the transform's own check_finite is on
    shape = (2, 1, *signal)
    x, y = torch.randn(shape), torch.randn(shape)
    calls = []
    real = torch.isfinite

    def counting(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return real(t)

    monkeypatch.setattr(torch, "isfinite", counting)
    built.loss(x, y)
    assert calls == [()]  # x and x_target: one check of their peak amplitude, no repeat
    calls.clear()
    built.transform.forward_path(x, 0)  # called directly, the transform checks its input
    assert calls == [()]
    bad = x.clone()
    bad.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        built.transform.forward_path(bad, 0)
    for value in (float("inf"), float("-inf"), float("nan")):  # each caught by the peak check
        bad.view(-1)[0] = value
        with pytest.raises(ValueError, match="x_target contains NaN"):
            built.loss(x, bad)
        with pytest.raises(ValueError, match="x contains NaN"):
            checks.require_finite(bad)
    checks.require_finite(torch.full((3,), 3e38))  # large but finite


@pytest.mark.parametrize("value", [True, 1.5, "2", torch.tensor([1, 2]), torch.tensor(1.0), torch.tensor(True)])
def test_path_index_type_errors(value: object) -> None:
    with pytest.raises(TypeError, match=r"my index must be an integer in \[0, 4\)"):
        checks.path_index(value, 4, "my index")


def test_path_index_values() -> None:
    import numpy as np

    assert checks.path_index(np.int64(3), 4) == 3 and checks.path_index(torch.tensor(2), 4) == 2
    for bad in (-1, 4):
        with pytest.raises(ValueError, match=r"path index must be in \[0, 4\)"):
            checks.path_index(bad, 4)


def test_check_number_and_int() -> None:
    assert checks.check_number("a", 2, low=0, low_open=True) == 2.0
    with pytest.raises(ValueError, match=r"a must be in \(0, 1\)"):
        checks.check_number("a", 1.0, low=0, high=1, low_open=True, high_open=True)
    with pytest.raises(ValueError, match="finite"):
        checks.check_number("a", float("nan"))
    with pytest.raises(TypeError, match="n must be an int"):
        checks.check_int("n", 1.0, 1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        checks.check_int("n", 0, 1)
    with pytest.raises(TypeError, match="flag must be a bool"):
        checks.check_bool("flag", 1)


def test_tracker_round_trip() -> None:
    from scrapl.tracker import PathTracker

    t = PathTracker(path_per_step=True)
    t.record_train(3, feeds_grad=True)
    assert t.held() == 3 and t.path_counts == {3: 1} and t.scrapl_t == 1
    u = PathTracker(path_per_step=True)
    u.load_state_dict(t.state_dict())
    assert u.consume_path() == 3 and u.held() is None and u.path_counts == {3: 1}
    t.record_train(1, feeds_grad=True)  # held path 3 still set: a forward on another path mixes
    with pytest.raises(RuntimeError, match=r"mixes SCRAPL paths \[3, 1\]"):
        t.consume_path()
