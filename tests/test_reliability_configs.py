"""Config files are strict and cheap to read: duplicate keys are errors, YAML aliases
are refused (no "billion laughs"), deep nesting is refused; ``seed`` is as strict as
every other integer field and out-of-range seeds name the argument."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import scrapl
from scrapl import SCRAPLLoss
from scrapl.builder import read_mapping_file
from scrapl.demo.settings import DemoSettings

T = {"name": "jtfs", "shape": 1024, "J": 4, "Q1": 4, "Q2": 1, "J_fr": 1, "Q_fr": 1}
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("name,text,match", [
    ("dup.yaml", "transform: {name: jtfs, shape: 1024}\nseed: 0\nseed: 1\n", "duplicate key 'seed'"),
    ("dup_nested.yaml", "transform: {name: jtfs, shape: 1024, J: 4, J: 5}\n", "duplicate key 'J'"),
    ("dup.json", '{"transform": {"name": "jtfs"}, "seed": 0, "seed": 1}', "duplicate key 'seed'"),
    ("alias.yaml", "t: &t {name: jtfs}\ntransform: *t\n", "aliases"),
    ("bomb.yaml", BOMB, "aliases"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested"),
    ("deep.yaml", "a: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested"),
])
def test_config_files_are_strict(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    for read in (scrapl.build, read_mapping_file):  # the library's and the commands' reader
        t0 = time.process_time()
        with pytest.raises(ValueError, match=match):
            read(str(path))
        assert time.process_time() - t0 < 30  # a bound against exponential blow-up, not a timing claim


@pytest.mark.parametrize("seed", ["12", 3.0, True])
def test_seed_is_as_strict_as_other_integer_fields(seed: object) -> None:
    with pytest.raises(ValidationError, match="seed"):
        scrapl.build({"transform": T, "seed": seed})
    with pytest.raises(ValidationError, match="seed"):
        DemoSettings.model_validate({"seed": seed})
    with pytest.raises(ValidationError, match="shape"):
        scrapl.build({"transform": {**T, "shape": "1024"}})  # the strictness seed now follows


def test_a_seed_out_of_range_names_the_argument() -> None:
    with pytest.raises(ValidationError, match="seed"):
        scrapl.build({"transform": T, "seed": 2**64})
    with pytest.raises(ValidationError, match="seed"):
        DemoSettings.model_validate({"warmup": {"seed": 2**64}})
    loss = SCRAPLLoss(shape=1024, J=4, Q1=4, Q2=1, J_fr=1, Q_fr=1)
    x = torch.randn(1, 1, 1024)
    with pytest.raises(ValueError, match="seed must be"):
        loss(x, x, seed=2**64)
    with pytest.raises(ValueError, match="seed must be"):
        loss.sample_path(seed=2**64)
    with pytest.raises(ValueError, match="seed must be"):
        SCRAPLLoss(shape=1024, J=4, Q1=4, Q2=1, J_fr=1, Q_fr=1, seed=2**64)
