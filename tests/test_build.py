"""scrapl.build: config -> transform, sampler, loss and optimizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FakeOptimizer, FakeSampler, FakeTransform, train_gain
from pydantic import ValidationError

import scrapl
from scrapl.builder import Built, ScraplConfig, build, load_config
from scrapl.registry import Registry


def _missing(*modules: str) -> list[str]:
    """Modules whose source file does not exist yet (written by other work in flight)."""
    out = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None or spec.origin is None:
            out.append(name)
    return out


def _require(*modules: str) -> None:
    missing = _missing(*modules)
    if missing:
        pytest.skip(f"not written yet: {missing}")


@pytest.fixture(autouse=True)
def _needs_loss() -> None:
    _require("scrapl.loss")


def test_build_with_fake_plugins(fake_registry: Registry, fake_config_dict) -> None:
    built = build(fake_config_dict, registry=fake_registry)
    assert isinstance(built.transform, FakeTransform) and built.transform.n_paths == 3
    assert isinstance(built.sampler, FakeSampler) and built.sampler.n_paths == 3
    assert isinstance(built.loss, torch.nn.Module)
    assert built.config == ScraplConfig.model_validate(fake_config_dict, context={"registry": fake_registry})
    assert built.registry is fake_registry
    text = repr(built)
    assert "fake_transform" in text and "3 paths" in text and "fake_sampler" in text and "seed=3" in text


def test_build_accepts_config_object_and_files(fake_registry: Registry, fake_config_dict, tmp_path: Path) -> None:
    cfg = load_config(fake_config_dict, registry=fake_registry)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(fake_config_dict))
    for source in (cfg, path, str(path)):
        assert build(source, registry=fake_registry).config == cfg
    assert build(cfg, registry=fake_registry).config is cfg


def test_facade_build_is_the_function(fake_registry: Registry, fake_config_dict) -> None:
    import scrapl.builder  # importing the submodule must not shadow the function

    assert scrapl.build is scrapl.builder.build
    assert isinstance(scrapl.build(fake_config_dict, registry=fake_registry), Built)


def test_seed_drives_the_sampler(fake_registry: Registry, fake_config_dict) -> None:
    def draws(seed: int) -> list[int]:
        fake_config_dict["seed"] = seed
        sampler = build(fake_config_dict, registry=fake_registry).sampler
        return [sampler.sample() for _ in range(40)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    assert set(draws(5)) == {0, 1, 2}


def test_optimizer_gets_paths_and_overrides(fake_registry: Registry, fake_config_dict) -> None:
    built = build(fake_config_dict, registry=fake_registry)
    losses, w, opt = train_gain(built, steps=4, lr=0.05)
    assert isinstance(opt, FakeOptimizer)
    assert opt.n_paths == 3
    assert opt.param_groups[0]["lr"] == 0.05  # the override beats the config's lr=0.1
    assert len(opt.paths_seen) == 4 and all(p in (0, 1, 2) for p in opt.paths_seen)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert float(w.detach()) != 1.0


def test_build_rejects_invalid_configs(fake_registry: Registry, fake_config_dict) -> None:
    fake_config_dict["sampler"] = {"name": "nope"}
    with pytest.raises(ValidationError) as info:
        build(fake_config_dict, registry=fake_registry)
    assert info.value.errors()[0]["loc"] == ("sampler", "name")
    with pytest.raises(TypeError):
        build(3.5, registry=fake_registry)  # type: ignore[arg-type]


# --------------------------------------------------------------- real built-ins
REAL_CONFIG = {
    # a configuration of the JTFS spec (28 paths)
    "transform": {"name": "jtfs", "shape": 4096, "J": 6, "Q1": 8, "Q2": 1, "J_fr": 2, "Q_fr": 1},
    "seed": 1,
}


def test_build_real_builtins_and_train() -> None:
    _require("scrapl.transforms.jtfs", "scrapl.samplers", "scrapl.optim")
    registry = Registry(autoload=False)
    built = build(REAL_CONFIG, registry=registry)
    assert built.config.sampler.name == "uniform"
    assert built.config.optimizer.name == "p_adam_saga"
    assert built.transform.n_paths == 28
    assert built.sampler.n_paths == built.transform.n_paths
    losses, w, opt = train_gain(built, steps=3, lr=1e-3)
    assert isinstance(opt, scrapl.PathAwareOptimizer)
    assert opt.n_paths == built.transform.n_paths
    assert all(torch.isfinite(torch.tensor(losses)))
    assert float(w.detach()) != 1.0
    # same seed, same paths
    first = build(REAL_CONFIG, registry=registry).sampler
    second = build(REAL_CONFIG, registry=registry).sampler
    assert [first.sample() for _ in range(20)] == [second.sample() for _ in range(20)]
