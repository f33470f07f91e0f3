"""Every ```python block of docs/*.md runs as written (README.md: tests/test_readme.py).

Blocks of one file run in order in one namespace (as a reader pastes them into one
session), in a temporary directory.  A ```yaml or ```json block whose first line is
``# <file name>`` is written to that file first, so the Python blocks can read it.  A
Python block whose first line is ``# fragment: <reason>`` is not run (it needs
something outside the repository, e.g. a plugin package installed).  Docs cite only
files that exist in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"```(python|yaml|json)\n(.*?)```", flags=re.S)
FILE_HEADER = re.compile(r"#\s*([\w.-]+\.(?:ya?ml|json))\s*\n")


def blocks(path: Path) -> list[tuple[str, str]]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_doc_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"__doc_{path.stem}__"}
    for i, (lang, code) in enumerate(blocks(path)):
        if lang != "python":
            header = FILE_HEADER.match(code)
            if header:
                (tmp_path / header.group(1)).write_text(code, encoding="utf-8")
            continue
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        if first.startswith("# fragment"):
            assert len(first) > len("# fragment: "), f"{path.name} block {i}: say why it is a fragment"
            continue
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
        except ModuleNotFoundError as exc:  # an optional extra (CI installs them)
            if (exc.name or "").split(".")[0] in ("scrapl", "scrapl_plugin_template"):
                raise
            pytest.skip(f"{path.name} block {i} needs the optional package {exc.name!r}")


def test_docs_cite_only_files_in_the_repository() -> None:
    cited = re.compile(r"`((?:docs|scrapl|tests|scripts|benchmarks|examples|configs)/[\w./-]+\.(?:py|md|yaml|json|pt|c))`")
    for path in [ROOT / "README.md", *DOCS]:
        text = path.read_text(encoding="utf-8")
        missing = [f for f in cited.findall(text) if not (ROOT / f).exists()]
        assert not missing, f"{path.name} cites files that are not in the repository: {missing}"
        links = re.findall(r"\]\(([^)#\s]+\.md)\)", text) + re.findall(r"\b(docs/[\w-]+\.md)\b", text)
        base = path.parent
        unknown = sorted({f for f in links if not (base / f).exists() and not (ROOT / f).exists()})
        assert not unknown, f"{path.name} cites documents that are not in the repository: {unknown}"


def test_plugins_doc_lists_every_builtin() -> None:
    from scrapl.registry import Registry

    table = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8").split("## ", 1)[0]
    registry = Registry(autoload=False)
    for kind in ("transform", "sampler", "optimizer"):
        for name in registry.names(kind):
            assert f"`{name}`" in table, f"docs/plugins.md's table does not list the built-in {kind} {name!r}"
