"""Import rules of docs/architecture.md, checked on the source (ast, no import).

Every module of ``scrapl/`` belongs to a layer by its path (rules are per directory,
so a new subpackage is covered the day it is added); a module may import only
layers at or below its own, as the table of docs/architecture.md says.  Imports
inside a module-level ``__getattr__`` are lazy backward-compatibility aliases
(``scrapl.loss.SCRAPLLoss``, ``scrapl.optim.PathGradHooks``) and are listed
explicitly in :data:`LAZY_ALIASES`.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "scrapl"

LEAVES = {"scrapl.errors", "scrapl.configs", "scrapl.hookspecs", "scrapl.interfaces", "scrapl.checks",
          "scrapl.tracker", "scrapl.config_text", "scrapl.transforms.scale", "scrapl.atomic"}
PLUGIN_DIRS = ("transforms", "samplers", "optim")
APPS = ("scrapl.cli", "scrapl.bench", "scrapl.demo", "scrapl.ablation", "scrapl.integrations", "scrapl.__main__")
LAZY_ALIASES = {("scrapl.loss", "scrapl.compat.loss"), ("scrapl.optim", "scrapl.compat.hooks")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _exists(mod: str) -> bool:
    p = ROOT.joinpath(*mod.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported scrapl module, line) for every import of ``path``, lazy aliases out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mod = module_name(path)
    skip: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            skip.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "scrapl"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_package(path) else mod.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "scrapl":
                continue
            for a in node.names:  # ``from scrapl import checks``: the submodule
                sub = f"{target}.{a.name}"
                out.append((sub if _exists(sub) else target, node.lineno))
    return out


def layer(mod: str) -> tuple[int, str]:
    """(rank, group) of a module: a module may import ranks <= its own, and within
    the plugin rank only its own group (plus the shared ``scrapl.transforms`` modules
    for transforms)."""
    if mod in LEAVES:
        return 0, "leaf"
    parts = mod.split(".")
    if len(parts) > 1 and parts[1] in PLUGIN_DIRS:
        if parts[1] == "transforms" and len(parts) > 2 and _exists(".".join(parts[:3])) and \
                (ROOT / "scrapl" / "transforms" / parts[2]).is_dir():
            return 1, ".".join(parts[:3])  # one transform package
        return 1, ".".join(parts[:2])
    if mod == "scrapl.loss":
        return 1, "scrapl.loss"
    if mod in ("scrapl.registry", "scrapl.builtin"):
        return 2, "registry"
    if mod.startswith("scrapl.compat") or mod in ("scrapl.scrapl_loss", "scrapl.util"):
        return 3, "compat"
    if mod == "scrapl.builder":
        return 4, "builder"
    if mod == "scrapl":
        return 5, "facade"
    if any(mod == a or mod.startswith(a + ".") for a in APPS):
        return 6, "app"
    raise AssertionError(f"{mod}: no layer in docs/architecture.md; add its directory to tests/test_architecture.py")


def allowed(src: str, dst: str) -> bool:
    if (src, dst) in LAZY_ALIASES:
        return True
    (rs, gs), (rd, gd) = layer(src), layer(dst)
    if src == "scrapl.__main__":
        return True
    if rd == 6:
        return rs == 6 and not dst.startswith("scrapl.cli")  # only __main__ runs the CLI
    if rd < rs:
        if rs == 1 and rd == 1:
            # transforms share scrapl.transforms.<module>; plugin groups never mix
            return gs.startswith("scrapl.transforms") and gd == "scrapl.transforms"
        return True
    if rd == rs:
        if rs == 1:
            if gs == gd:
                return True
            return gs.startswith("scrapl.transforms.") and gd == "scrapl.transforms"
        return rs in (0, 3, 6) or gs == gd  # leaves, compat and apps among themselves
    return False


SOURCES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in SOURCES:
        layer(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downward(path: Path) -> None:
    src = module_name(path)
    bad = [f"line {line}: {dst}" for dst, line in imports(path) if dst != src and not allowed(src, dst)]
    assert not bad, f"{src} ({layer(src)}) imports upward or sideways: {bad}"


def test_library_never_imports_applications() -> None:
    for path in SOURCES:
        src = module_name(path)
        if layer(src)[0] == 6:
            continue
        for dst, line in imports(path):
            assert layer(dst)[0] != 6, f"{src}:{line} imports the application module {dst}"


def test_the_rules_catch_violations() -> None:
    assert not allowed("scrapl.loss", "scrapl.transforms.jtfs")
    assert not allowed("scrapl.samplers.theta_is", "scrapl.transforms.jtfs.module")
    assert not allowed("scrapl.transforms.scattering2d.module", "scrapl.transforms.jtfs.core")
    assert allowed("scrapl.transforms.scattering2d.module", "scrapl.transforms.ops")
    assert not allowed("scrapl.interfaces", "scrapl.registry")
    assert not allowed("scrapl.builder", "scrapl.demo.settings")
    assert not allowed("scrapl.integrations.lightning", "scrapl.cli")
    assert allowed("scrapl.ablation.run", "scrapl.demo.train")
    assert allowed("scrapl.compat.loss", "scrapl.transforms.jtfs")


def test_architecture_doc_names_every_top_level_part() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for path in sorted(PKG.iterdir()):
        if path.name.startswith("_") or path.suffix not in (".py", "") or path.name == "py.typed":
            continue
        name = path.stem if path.suffix == ".py" else path.name + "/"
        assert re.search(rf"`{re.escape(name)}", doc), f"docs/architecture.md does not mention {name}"


def _cli_without(argv: list[str], forbidden: tuple[str, ...], setup: str = "", timeout: int = 120) -> str:
    """Run ``scrapl.cli.main(argv)`` in a fresh interpreter (after ``setup``); assert it
    succeeds without importing a module under ``forbidden``; returns its stdout."""
    import subprocess
    import sys

    code = (f"import contextlib, io, sys\n{setup}from scrapl.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()) as out:\n    rc = main({argv!r})\n"
            "assert rc == 0, rc\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({forbidden!r}))\n"
            "assert not bad, bad\n"
            "print(out.getvalue())\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("argv", [["paths", "{cfg}", "--json"], ["plugins", "--no-autoload"], ["schema"],
                                  ["bench", "--config", "{cfg}", "--methods", "scrapl", "--repeats", "1", "--no-progress"]])
def test_library_commands_import_no_demo_code(tmp_path, argv) -> None:
    """`scrapl paths`, `plugins`, `schema` and `bench` run on library functions only."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("transform: {name: jtfs, shape: 1024, J: 4, Q1: 2, Q2: 1, J_fr: 2, Q_fr: 1}\n"
                   "demo: {synth: {sr: 16000}}\n")
    out = _cli_without([a.replace("{cfg}", str(cfg)) for a in argv], ("scrapl.demo", "scrapl.ablation"))
    if argv[0] == "paths":
        assert '"sample_rate": 16000' in out


def test_warmup_command_runs_any_registered_task_without_demo_code(tmp_path) -> None:
    """`scrapl warmup` takes a third-party task (registered in the process, as an entry
    point would) and imports no demo module; the probabilities it writes sum to one."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("transform: {name: jtfs, shape: 1024, J: 4, Q1: 2, Q2: 1, J_fr: 2, Q_fr: 1}\n"
                   "task: {name: toy_for_test, settings: {hop: 32}}\nwarmup: {n_iter: 2, batch_size: 2}\n")
    setup = (f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
             "from toy_task import ToyTask\nfrom scrapl.ablation import register_task\n"
             "register_task('toy_for_test', ToyTask)\n")
    out = _cli_without(["warmup", str(cfg), "--out", str(tmp_path / "w"), "--no-progress", "--quiet"],
                       ("scrapl.demo",), setup, timeout=300)
    summary = json.loads(out)
    assert summary["task"] == "toy_for_test" and summary["complete"] is True
    import torch

    probs = torch.load(tmp_path / "w" / "probs.pt", weights_only=True)
    assert probs.shape == (summary["n_paths"],) and abs(float(probs.sum()) - 1.0) < 1e-6


def test_bench_default_is_the_demo_transform() -> None:
    from scrapl.bench import DEFAULT_BENCH_CONFIG
    from scrapl.demo.settings import DEFAULT_SCRAPL_CONFIG

    assert DEFAULT_BENCH_CONFIG["transform"] == DEFAULT_SCRAPL_CONFIG["transform"]
