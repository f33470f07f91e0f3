"""examples/lightning/train_chirplet.py runs a few steps end to end (CSV logger,
checkpoints, the callback's per-path logs) and rejects bad arguments with exit 2."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "lightning" / "train_chirplet.py"
SMALL = ["--n-samples", "2048", "--J", "5", "--batch-size", "2", "--train-size", "4", "--val-size", "2",
         "--val-every", "2", "--warmup-batches", "0"]


def _run(args, **kw):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


def test_example_trains_logs_and_resumes(tmp_path):
    out = tmp_path / "run"
    proc = _run(["--out", str(out), "--max-steps", "2", *SMALL])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps 2" in proc.stdout
    metrics = next(out.glob("logs/version_*/metrics.csv"))
    with open(metrics, newline="") as f:
        keys = set(next(csv.reader(f)))
    assert {"scrapl/path", "scrapl/path_prob", "val/theta_l1", "train/loss"} <= keys
    assert (out / "checkpoints" / "last.ckpt").exists()
    proc = _run(["--out", str(out), "--max-steps", "3", "--ckpt-path", str(out / "checkpoints" / "last.ckpt"),
                 *SMALL])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps 3" in proc.stdout


def test_example_bad_arguments_exit_2(tmp_path):
    proc = _run(["--out", str(tmp_path), "--max-steps", "0"])
    assert proc.returncode == 2 and "--max-steps must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
