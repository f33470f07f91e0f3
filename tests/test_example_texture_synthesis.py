"""The texture-synthesis example (examples/texture_synthesis.py) on a tiny setting."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "texture_synthesis.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("texture_synthesis_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_brick_texture_is_deterministic_and_in_range() -> None:
    ex = load()
    a, b = ex.brick_texture(64, seed=3), ex.brick_texture(64, seed=3)
    assert a.shape == (64, 64) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and float(a.std()) > 0.1
    assert not torch.equal(a, ex.brick_texture(64, seed=4))
    with pytest.raises(ValueError, match="size"):
        ex.brick_texture(4)


def run(tmp_path: Path, *extra: str) -> dict:
    ex = load()
    rc = ex.main(["--out", str(tmp_path), "--size", "32", "--J", "2", "--L", "4", "--steps", "2", "--evals", "2",
                  "--cost-ratio", "2.5", "--threads", "1", *extra])
    assert rc == 0
    return json.loads((tmp_path / "results.json").read_text())


def test_equal_compute_arms_and_results(tmp_path: Path) -> None:
    res = run(tmp_path, "--no-plots")
    assert res["cost_ratio_full_over_path"] == 2.5 and res["cost_ratio_measured"] is False
    arms = res["arms"]
    assert set(arms) == {"full", "scrapl_adam", "p_adam", "p_saga"}
    assert arms["full"]["steps"] == 2
    for arm in ("scrapl_adam", "p_adam", "p_saga"):
        assert arms[arm]["steps"] == 5  # round(2 * 2.5)
    for arm, r in arms.items():
        pts = r["distance_vs_compute"]
        assert pts[0][0] == 0 and pts[-1][0] == pytest.approx(2.0)  # equal compute at the end
        assert all(math.isfinite(d) and d > 0 for _, d in pts)
        assert r["final_distance"] == pts[-1][1]
    assert arms["full"]["final_distance"] < arms["full"]["distance_vs_compute"][0][1]  # the full arm descends
    assert res["files"] == []


def test_pictures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = run(tmp_path, "--arms", "full", "p_adam")
    assert res["files"] == ["texture_grid.png", "distance_vs_compute.png"]
    for name in res["files"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = load()
    assert ex.main(["--out", str(tmp_path), "--size", "32", "--J", "6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "J=6" in err and len(err.strip().splitlines()) == 1
    assert ex.main(["--out", str(tmp_path), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
