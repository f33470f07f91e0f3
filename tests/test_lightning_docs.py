"""Every Python block of docs/lightning.md runs as written (each in a fresh
namespace, in a temporary directory)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

DOC = Path(__file__).resolve().parents[1] / "docs" / "lightning.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_docs_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints about workers and log intervals
        exec(compile(BLOCKS[index], f"docs/lightning.md[python block {index}]", "exec"), {"__name__": "__docs__"})
