"""examples/plugin-template: installed as a real distribution, found through its
``scrapl.plugins`` entry point, its config validated by its own class."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from conftest import train_gain
from pydantic import ValidationError

from scrapl.builder import ScraplConfig, build, load_config, save_config
from scrapl.interfaces import ScatteringTransform
from scrapl.registry import Registry

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin-template"
PACKAGE = "scrapl_plugin_template"


def _setuptools_builds_without_isolation() -> bool:
    """pip --no-build-isolation needs setuptools >= 70.1 (bdist_wheel built in) or wheel."""
    try:
        import setuptools
    except ImportError:
        return False
    try:
        major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _install_by_hand(source: Path, site: Path) -> None:
    """What pip would do for this pure-Python package: copy it and write its
    dist-info with the entry points declared in pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    shutil.copytree(source / "src" / PACKAGE, site / PACKAGE)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
        for group, eps in project.get("entry-points", {}).items()
    ]
    (info / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def template_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template installed into a temporary site directory (not yet on sys.path).

    Uses ``pip install --no-deps --no-build-isolation --target`` when this
    environment's setuptools can build a wheel offline; otherwise installs by hand.
    The source is copied first so that no build files land in the repository.
    """
    root = tmp_path_factory.mktemp("template")
    source, site = root / "src", root / "site"
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    if _setuptools_builds_without_isolation():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        site.mkdir()
        _install_by_hand(source, site)
    return site


@pytest.fixture
def installed(template_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed template on sys.path for one test."""
    monkeypatch.syspath_prepend(str(template_site))
    yield template_site
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_template_declares_its_entry_point(template_site: Path) -> None:
    (entry_points,) = template_site.glob("scrapl_plugin_template-*.dist-info/entry_points.txt")
    text = entry_points.read_text()
    assert "[scrapl.plugins]" in text and "stft_bands = scrapl_plugin_template.plugin" in text


def test_template_discovered_through_entry_point(installed: Path) -> None:
    registry = Registry(autoload=True, builtins=())
    spec = registry.get("transform", "stft_bands")
    assert registry.source_of("transform", "stft_bands") == "entrypoint:scrapl-plugin-template:stft_bands"
    config_module = sys.modules[f"{PACKAGE}.config"]
    assert spec.config_cls is config_module.StftBandsConfig
    assert Path(config_module.__file__).is_relative_to(installed)
    assert [e for e in registry.errors if "plugin-template" in e.source] == []
    assert "stft_bands" in registry.describe()


def test_template_not_loaded_when_autoload_disabled(installed: Path) -> None:
    registry = Registry(autoload=False, builtins=())
    assert "stft_bands" not in registry.names("transform")


def test_template_config_validated_by_its_class(installed: Path, fake_config_dict, tmp_path: Path) -> None:
    from conftest import FAKE_SPECS

    registry = Registry(autoload=True, builtins=())
    registry.register(FAKE_SPECS, source="tests:fakes")
    context = {"registry": registry}
    fake_config_dict["transform"] = {"name": "stft_bands", "shape": 1024, "n_fft": 128, "n_bands": 4}
    cfg = ScraplConfig.model_validate(fake_config_dict, context=context)
    assert type(cfg.transform).__module__ == f"{PACKAGE}.config"
    assert cfg.transform.scale == "log"

    bad = dict(fake_config_dict, transform={"name": "stft_bands", "shape": 1024, "n_bands": 0})
    with pytest.raises(ValidationError) as info:
        ScraplConfig.model_validate(bad, context=context)
    assert [e["loc"] for e in info.value.errors()] == [("transform", "n_bands")]
    bad = dict(fake_config_dict, transform={"name": "stft_bands", "shape": 1024, "window": "hann"})
    with pytest.raises(ValidationError) as info:
        ScraplConfig.model_validate(bad, context=context)
    assert [e["loc"] for e in info.value.errors()] == [("transform", "window")]

    # lossless round trips, third-party fields included
    assert ScraplConfig.model_validate(cfg.model_dump(), context=context) == cfg
    for suffix in (".yaml", ".json"):
        path = save_config(cfg, tmp_path / f"cfg{suffix}")
        assert load_config(path, registry=registry) == cfg


def test_template_transform_contract(installed: Path) -> None:
    registry = Registry(autoload=True, builtins=())
    spec = registry.get("transform", "stft_bands")
    transform = spec.factory(spec.config_cls(shape=1024, n_fft=128, n_bands=5))
    assert isinstance(transform, ScatteringTransform)
    assert transform.n_paths == 5 and transform.paths == [(b,) for b in range(5)]
    assert [p.index for p in transform.path_infos] == list(range(5))
    x = torch.randn(3, 2, 1024, generator=torch.Generator().manual_seed(0))
    full = transform(x)
    assert full.shape == (3, 2, 5, 1, 1024 // 32)
    for i in range(transform.n_paths):
        torch.testing.assert_close(transform.forward_path(x, i), full[..., i, :, :])
    assert transform.forward_path(x, 0, crop_time=False).shape[-1] == 1024 // 32 + 1
    # a sine lands in the band holding its frequency
    t = torch.arange(1024, dtype=torch.float32)
    sine = torch.sin(2 * torch.pi * 0.3 * t)
    energies = transform(sine).mean(dim=(-1, -2))
    band = next(p.index for p in transform.path_infos if p.extra["f_lo"] <= 0.3 <= p.extra["f_hi"])
    assert int(energies.argmax()) == band
    with pytest.raises(ValueError, match="samples"):
        transform(torch.randn(1, 1000))


def test_template_trains_through_build(installed: Path) -> None:
    for module in ("scrapl.loss", "scrapl.samplers", "scrapl.optim"):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            pytest.skip(f"not written yet: {module}")
    registry = Registry(autoload=True)
    built = build(
        {"transform": {"name": "stft_bands", "shape": 2048, "n_fft": 256, "n_bands": 6}, "seed": 2},
        registry=registry,
    )
    assert built.transform.n_paths == 6
    losses, w, opt = train_gain(built, steps=4, lr=1e-2)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert float(w.detach()) != 1.0
