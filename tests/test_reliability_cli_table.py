"""The command line as a whole: for every subcommand, bad arguments, bad files and
failing file systems give one line on stderr, no traceback, and exit status 2 (usage,
config or input error) or 1 (runtime failure: a full disk, a read-only folder)."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path
from typing import Callable

import pytest
import torch

from scrapl.cli import main

SMALL = ("transform: {name: jtfs, shape: 2048, J: 5, Q1: 2, Q2: 1, J_fr: 1, Q_fr: 1}\n"
         "sampler: {name: theta_is, n_theta: 2}\nseed: 0\n")
FAST = ["--n-iter", "1", "--batch-size", "1", "--no-progress", "--quiet"]


def _files(d: Path) -> dict[str, Path]:
    """Inputs the cases refer to by name."""
    (d / "small.yaml").write_text(SMALL)
    (d / "theta3.yaml").write_text(SMALL.replace("n_theta: 2", "n_theta: 3"))
    (d / "no_warmup_dir.yaml").write_text(SMALL.replace("n_theta: 2", f"n_theta: 2, warmup_dir: {d / 'nowhere'}"))
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "dup.yaml").write_text(SMALL + "seed: 1\n")
    (d / "bad.yaml").write_text("transform: [unclosed\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "typo.yaml").write_text(SMALL + "sampler_typo: 1\n")
    (d / "a_file").write_text("")
    for name, writer in {
        "corrupt": lambda p: p.write_bytes(b"not a torch file"),
        "pickled": lambda p: p.write_bytes(pickle.dumps({"x": 1})),
        "listval": lambda p: torch.save([1.0, 2.0], p),
        "badshape": lambda p: torch.save(torch.ones(3), p),
    }.items():
        folder = d / f"vals_{name}"
        folder.mkdir()
        writer(folder / "vals_0.pt")
    stray = d / "stray"
    stray.mkdir()
    (stray / "vals_old.pt").write_bytes(b"")
    return {}


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)


def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.makedirs

    def erofs(path, *args, **kwargs):
        if "ro_out" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", erofs)


#: (id, argv with {d} for the case folder, expected exit status, optional setup)
CASES: list[tuple[str, list[str], int, Callable | None]] = [
    # top level
    ("no-subcommand", [], 2, None),
    ("unknown-subcommand", ["frobnicate"], 2, None),
    ("unknown-option", ["--frob"], 2, None),
    # demo
    ("demo-missing-config", ["demo", "--config", "{d}/missing.yaml", "--out", "{d}/o"], 2, None),
    ("demo-bad-yaml", ["demo", "--config", "{d}/bad.yaml", "--out", "{d}/o"], 2, None),
    ("demo-list-yaml", ["demo", "--config", "{d}/list.yaml", "--out", "{d}/o"], 2, None),
    ("demo-dup-key", ["demo", "--config", "{d}/dup.yaml", "--out", "{d}/o"], 2, None),
    ("demo-deep-json", ["demo", "--config", "{d}/deep.json", "--out", "{d}/o"], 2, None),
    ("demo-typo-key", ["demo", "--config", "{d}/typo.yaml", "--out", "{d}/o"], 2, None),
    ("demo-steps-0", ["demo", "--steps", "0"], 2, None),
    ("demo-steps-text", ["demo", "--steps", "many"], 2, None),
    ("demo-methods", ["demo", "--methods", "nope"], 2, None),
    ("demo-missing-probs", ["demo", "--config", "{d}/small.yaml", "--probs", "{d}/missing.pt", "--out", "{d}/o",
                            "--steps", "1", "--no-progress", "--quiet"], 2, None),
    ("demo-out-is-file", ["demo", "--config", "{d}/small.yaml", "--out", "{d}/a_file", "--steps", "1",
                          "--methods", "mss", "--no-progress", "--quiet"], 2, None),
    # bench
    ("bench-shape-100", ["bench", "--shape", "100", "--no-progress"], 2, None),
    ("bench-repeats-0", ["bench", "--repeats", "0"], 2, None),
    ("bench-methods", ["bench", "--methods", "nope", "--no-progress"], 2, None),
    ("bench-missing-config", ["bench", "--config", "{d}/missing.yaml"], 2, None),
    # warmup
    ("warmup-no-config", ["warmup"], 2, None),
    ("warmup-missing-config", ["warmup", "{d}/missing.yaml"], 2, None),
    ("warmup-deep-json", ["warmup", "{d}/deep.json", "--out", "{d}/w"], 2, None),
    ("warmup-theta-3", ["warmup", "{d}/theta3.yaml", "--out", "{d}/w", *FAST], 2, None),
    ("warmup-paths-0-999", ["warmup", "{d}/small.yaml", "--paths", "0:999", "--out", "{d}/w", *FAST], 2, None),
    ("warmup-paths-text", ["warmup", "{d}/small.yaml", "--paths", "a:b"], 2, None),
    ("warmup-shard-3-2", ["warmup", "{d}/small.yaml", "--shard", "3/2"], 2, None),
    ("warmup-out-is-file", ["warmup", "{d}/small.yaml", "--out", "{d}/a_file", *FAST], 2, None),
    ("warmup-stray-file", ["warmup", "{d}/small.yaml", "--out", "{d}/stray", *FAST], 2, None),
    ("warmup-missing-warmup-dir", ["warmup", "{d}/no_warmup_dir.yaml", "--out", "{d}/w", *FAST], 2, None),
    ("warmup-seed-2**64", ["warmup", "{d}/small.yaml", "--seed", str(2**64), "--out", "{d}/w", *FAST], 2, None),
    ("warmup-read-only", ["warmup", "{d}/small.yaml", "--out", "{d}/ro_out", "--paths", "0:1", *FAST], 1,
     _read_only),
    ("warmup-full-disk", ["warmup", "{d}/small.yaml", "--out", "{d}/w", "--paths", "0:1", *FAST], 1, _full_disk),
    # paths
    ("paths-missing-config", ["paths", "{d}/missing.yaml"], 2, None),
    ("paths-missing-probs", ["paths", "{d}/small.yaml", "--probs", "{d}/missing.pt"], 2, None),
    ("paths-corrupt-vals", ["paths", "{d}/small.yaml", "--probs", "{d}/vals_corrupt"], 2, None),
    ("paths-pickled-vals", ["paths", "{d}/small.yaml", "--probs", "{d}/vals_pickled"], 2, None),
    ("paths-list-vals", ["paths", "{d}/small.yaml", "--probs", "{d}/vals_listval"], 2, None),
    ("paths-badshape-vals", ["paths", "{d}/small.yaml", "--probs", "{d}/vals_badshape"], 2, None),
    ("paths-stray-only", ["paths", "{d}/small.yaml", "--probs", "{d}/stray"], 2, None),
    ("paths-probs-is-config", ["paths", "{d}/small.yaml", "--probs", "{d}/small.yaml"], 2, None),
    ("paths-sr-negative", ["paths", "{d}/small.yaml", "--sr", "-1"], 2, None),
    ("paths-deep-json", ["paths", "{d}/deep.json"], 2, None),
    ("paths-dup-key", ["paths", "{d}/dup.yaml"], 2, None),
    # ablate
    ("ablate-missing-spec", ["ablate", "{d}/missing.yaml", "--out", "{d}/ab"], 2, None),
    ("ablate-dup-key", ["ablate", "{d}/dup.yaml", "--out", "{d}/ab"], 2, None),
    ("ablate-deep-json", ["ablate", "{d}/deep.json", "--out", "{d}/ab"], 2, None),
    ("ablate-no-out", ["ablate", "{d}/small.yaml"], 2, None),
    ("ablate-workers-text", ["ablate", "{d}/small.yaml", "--out", "{d}/ab", "--workers", "x"], 2, None),
    # plugins / schema
    ("plugins-extra-arg", ["plugins", "extra"], 2, None),
    ("schema-bad-kind", ["schema", "--kind", "nope"], 2, None),
    ("schema-bad-name", ["schema", "--kind", "transform:nope"], 2, None),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    _files(d)
    return d


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_cli_error_is_one_line(case, folder: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, argv, status, setup = case
    if setup is not None:
        setup(monkeypatch)
    argv = [a.replace("{d}", str(folder)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if argv:  # a bare `scrapl` prints its usage (several lines) with status 2
        assert len(lines) >= 1 and lines[-1].startswith("scrapl") and "error" in lines[-1], err
        assert len([line for line in lines if "error" in line]) == 1, err
        if argv[0] not in ("frobnicate", "--frob") and "usage:" not in err:
            assert len(lines) == 1, err
    assert code == status, err


def test_the_table_covers_every_subcommand() -> None:
    from scrapl.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    covered = {c[1][0] for c in CASES if c[1] and not c[1][0].startswith("-")}
    assert set(sub.choices) <= covered | {"frobnicate"}, set(sub.choices) - covered
    assert json.dumps(CASES[0][1]) == "[]"
