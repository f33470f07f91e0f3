"""``scrapl warmup`` never reuses results of other settings: it resumes only when the
folder's warmup.json matches, stops naming what differs otherwise (``--overwrite``
starts again), reports stray files by name before any work, and counts only the
paths it computed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrapl.cli import main

#: A small transform (P = 10 paths), so that each run takes a few seconds.
SMALL = ("transform: {name: jtfs, shape: 2048, J: 5, Q1: 2, Q2: 1, J_fr: 1, Q_fr: 1}\n"
         "sampler: {name: theta_is, n_theta: 2}\nseed: 0\n")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


def _warmup(out: Path, *extra: str) -> list[str]:
    return ["warmup", str(out.parent / "small.yaml"), "--out", str(out), "--n-iter", "2", "--batch-size", "2", "--no-progress",
            "--quiet", *extra]


def test_warmup_resumes_only_with_the_same_settings(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    assert main(_warmup(out, "--paths", "0:2")) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["paths_in_this_run"] == 2 and first["paths_resumed"] == 0
    assert main(_warmup(out, "--paths", "0:3")) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["paths_in_this_run"] == 1 and second["paths_resumed"] == 2  # true counts
    stamp = (out / "vals_0.pt").stat().st_mtime_ns
    for extra, what in ((["--seed", "7"], "seed"), (["--n-iter", "3"], "n_iter"),
                        (["--batch-size", "3"], "warmup signals")):
        argv = _warmup(out, "--paths", "0:3") + extra
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "other settings" in err and what in err, err
        assert (out / "vals_0.pt").stat().st_mtime_ns == stamp  # nothing recomputed
    assert main(_warmup(out, "--paths", "0:1", "--seed", "7", "--overwrite")) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["paths_in_this_run"] == 1 and third["paths_done_in_dir"] == 1


def test_a_stray_file_is_named_before_any_work(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / "vals_old.pt").write_bytes(b"")
    assert main(_warmup(out, "--paths", "0:1")) != 0
    err = capsys.readouterr().err.strip()
    assert "vals_old.pt" in err and err.count("\n") == 0
    assert sorted(p.name for p in out.iterdir()) == ["vals_old.pt"]


def test_demo_settings_file_keeps_its_warmup_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scrapl demo --settings FILE` reads the whole file (or its `demo:` section) as
    demo settings, a `warmup:` key included; a config's `task:` section is not a
    scrapl setting of the demo and is refused by the config's validation."""
    import scrapl.demo.train as train

    seen = {}

    def fake_run_demo(cfg, settings, **kwargs):  # records what the command built
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr(train, "run_demo", fake_run_demo)
    settings = tmp_path / "s.yaml"
    settings.write_text("warmup: {n_iter: 3}\nsteps: 7\n")
    with pytest.raises(SystemExit):
        main(["demo", "--settings", str(settings), "--out", str(tmp_path / "o"), "--no-progress"])
    assert seen["settings"].warmup.n_iter == 3 and seen["settings"].steps == 7
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SMALL + "task: {name: chirplet}\n")
    assert main(["demo", "--config", str(cfg), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
