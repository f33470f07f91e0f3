"""The README's main job, end to end with tiny settings: ``scrapl demo`` (a one-seed
preset of ``scrapl ablate``) trains SCRAPL (theta-IS warmup, P-Adam + P-SAGA), the full
JTFS, MSS and supervised arms, writes the sweep report and the plots, and bad arguments
exit with status 2 and one line, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrapl.cli import main

pytest.importorskip("auraloss")
pytest.importorskip("matplotlib")


def test_demo_end_to_end_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--steps", "3", "--batch-size", "2", "--n-val", "4",
            "--val-every", "1", "--warmup-iters", "2", "--warmup-batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for needle in ("theta_l1", "scrapl", "full_jtfs", "mss", "supervised", "predict the middle"):
        assert needle in printed
    summary = json.loads((out / "summary.json").read_text())
    arms = {row["arm"]: row for row in summary["arms"]}
    assert set(arms) == {"scrapl", "full_jtfs", "mss", "supervised"}
    for arm in arms.values():
        assert 0.0 <= arm["theta_l1"] <= 1.0 and arm["steps"] == 3 and arm["n"] == 1
    assert 0.0 < summary["baseline_predict_middle"]["theta_l1"] < 0.5
    scrapl_run = json.loads((out / "runs" / "scrapl__seed0.json").read_text())
    assert scrapl_run["info"]["sampler"] == "theta_is" and len(scrapl_run["info"]["probs"]) == 72
    assert scrapl_run["info"]["optimizer"] == "p_adam_saga"
    for png in ("val_error_vs_steps.png", "val_error_vs_time.png", "error_vs_cost.png", "path_probs.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    # the same command again finds every run finished
    stamp = (out / "runs" / "scrapl__seed0.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs" / "scrapl__seed0.json").stat().st_mtime_ns == stamp
    assert len(list((out / "runs").glob("*.json"))) == 4


def test_demo_is_reproducible_for_mss(tmp_path: Path) -> None:
    def run(folder: str) -> float:
        out = tmp_path / folder
        argv = ["demo", "--out", str(out), "--methods", "mss", "--steps", "3", "--batch-size", "2",
                "--n-val", "4", "--val-every", "3", "--no-progress", "--quiet"]
        assert main(argv) == 0
        return json.loads((out / "runs" / "mss__seed0.json").read_text())["final"]["theta_l1"]

    assert run("a") == run("b")


def test_demo_refuses_a_folder_of_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    common = ["demo", "--out", str(out), "--methods", "supervised", "--batch-size", "2", "--n-val", "4",
              "--no-progress", "--quiet"]
    assert main([*common, "--steps", "2"]) == 0
    capsys.readouterr()
    assert main([*common, "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "another spec" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--steps", "-3"], "--steps"),
        (["paths", "/no/such/config.yaml"], "not found"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_paths_lists_labels_and_probabilities(capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert main(["paths", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["paths"] if isinstance(rows, dict) else rows
    assert len(rows) == 72
    probs = [row["prob"] for row in rows]
    assert abs(sum(probs) - 1.0) < 1e-9


def test_plugins_and_schema_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    for name in ("jtfs", "scattering1d", "uniform", "theta_is", "p_adam_saga", "sgd"):
        assert name in listing
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "jtfs" in json.dumps(schema)


def test_warmup_command_shards_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    out = tmp_path / "warmup"
    common = ["--out", str(out), "--n-iter", "2", "--batch-size", "2", "--no-progress", "--quiet"]
    assert main(["warmup", str(config), "--paths", "0:1", *common]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["paths_done_in_dir"] == 1 and first["complete"] is False
    stamp = (out / "vals_0.pt").stat().st_mtime_ns
    assert main(["warmup", str(config), "--paths", "0:2", *common]) == 0  # resumes: path 0 kept
    second = json.loads(capsys.readouterr().out)
    assert second["paths_done_in_dir"] == 2
    assert (out / "vals_0.pt").stat().st_mtime_ns == stamp


def test_bench_command_writes_json(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    argv = ["bench", "--shape", "4096", "--J", "6", "--Q1", "8", "--Q2", "1", "--J-fr", "2", "--Q-fr", "1",
            "--T", "64", "--F", "4", "--batch-size", "1", "--repeats", "2", "--full-repeats", "1",
            "--json", str(target), "--no-progress"]
    assert main(argv) == 0
    report = json.loads(target.read_text())
    assert set(report["results"]) == {"scrapl", "jtfs", "mss"}
    assert report["n_paths"] == 28 and report["batch_size"] == 1
    assert report["ratios"]["jtfs_time_over_scrapl"] > 0
