"""ScraplConfig: per-plugin validation with locations, round trips, files, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
import yaml
from conftest import FakeSamplerConfig, FakeTransformConfig
from pydantic import ValidationError

from scrapl.builder import ScraplConfig, config_json_schema, load_config, save_config
from scrapl.configs import LossConfig, PluginConfig
from scrapl.interfaces import PluginSpec
from scrapl.registry import Registry

THIRD_PARTY_PLUGIN = """
from typing import Literal
import scrapl
from scrapl.configs import PluginConfig
from pydantic import Field

class BandsConfig(PluginConfig):
    name: Literal["third_party_sampler"] = "third_party_sampler"
    bands: tuple[int, ...] = (1, 2)
    temperature: float = Field(default=1.0, gt=0)

@scrapl.hookimpl
def scrapl_register_plugins():
    return [scrapl.PluginSpec("sampler", "third_party_sampler", BandsConfig, lambda c, **kw: None)]
"""


def validate(data, registry: Registry) -> ScraplConfig:
    return ScraplConfig.model_validate(data, context={"registry": registry})


def test_components_validated_by_their_own_class(fake_registry: Registry, fake_config_dict) -> None:
    cfg = validate(fake_config_dict, fake_registry)
    assert type(cfg.transform) is FakeTransformConfig
    assert type(cfg.sampler) is FakeSamplerConfig
    assert cfg.transform.shape == 64 and cfg.seed == 3
    assert cfg.loss == LossConfig()


def test_error_location_inside_component(fake_registry: Registry, fake_config_dict) -> None:
    fake_config_dict["sampler"] = {"name": "fake_sampler", "min_prob_frac": 1.5}
    with pytest.raises(ValidationError) as info:
        validate(fake_config_dict, fake_registry)
    (error,) = info.value.errors()
    assert error["loc"] == ("sampler", "min_prob_frac")
    assert error["type"] == "less_than_equal"
    assert "sampler.min_prob_frac" in str(info.value)


def test_unknown_key_forbidden_with_location(fake_registry: Registry, fake_config_dict) -> None:
    fake_config_dict["transform"] = {"name": "fake_transform", "shpae": 64}
    fake_config_dict["sed"] = 1
    with pytest.raises(ValidationError) as info:
        validate(fake_config_dict, fake_registry)
    locs = {(e["loc"], e["type"]) for e in info.value.errors()}
    assert locs == {(("transform", "shpae"), "extra_forbidden"), (("sed",), "extra_forbidden")}


def test_unknown_plugin_name_lists_known_names(fake_registry: Registry, fake_config_dict) -> None:
    fake_config_dict["optimizer"] = {"name": "adamw"}
    with pytest.raises(ValidationError) as info:
        validate(fake_config_dict, fake_registry)
    (error,) = info.value.errors()
    assert error["loc"] == ("optimizer", "name")
    assert error["type"] == "unknown_plugin"
    assert "unknown optimizer plugin 'adamw'; known optimizer plugins: fake_optimizer" in error["msg"]


def test_missing_name_and_wrong_types(fake_registry: Registry) -> None:
    with pytest.raises(ValidationError) as info:
        validate({"transform": {"shape": 64}, "sampler": 3, "optimizer": {"name": 7}}, fake_registry)
    errors = {e["loc"]: e for e in info.value.errors()}
    assert set(errors) == {("transform",), ("sampler",), ("optimizer", "name")}
    assert "known transform plugins: fake_transform" in errors[("transform",)]["msg"]
    assert errors[("sampler",)]["type"] == "plugin_config_type"
    with pytest.raises(ValidationError) as info:
        validate({"sampler": "fake_sampler", "optimizer": "fake_optimizer"}, fake_registry)
    assert [e["loc"] for e in info.value.errors()] == [("transform",)]


def test_string_shorthand_and_config_objects(fake_registry: Registry) -> None:
    cfg = validate(
        {"transform": FakeTransformConfig(shape=32), "sampler": "fake_sampler", "optimizer": "fake_optimizer"},
        fake_registry,
    )
    assert cfg.transform == FakeTransformConfig(shape=32)
    assert cfg.sampler == FakeSamplerConfig()


def test_config_object_of_another_class_is_revalidated(fake_registry: Registry) -> None:
    class LookAlike(PluginConfig):  # same name, different class (e.g. from another registry)
        name: Literal["fake_transform"] = "fake_transform"
        shape: int = 4  # invalid for the registered class (gt=8)

    with pytest.raises(ValidationError) as info:
        validate({"transform": LookAlike(), "sampler": "fake_sampler", "optimizer": "fake_optimizer"}, fake_registry)
    assert [e["loc"] for e in info.value.errors()] == [("transform", "shape")]


def test_frozen_and_seed_bounds(fake_registry: Registry, fake_config_dict) -> None:
    cfg = validate(fake_config_dict, fake_registry)
    with pytest.raises(ValidationError):
        cfg.seed = 4  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.transform.shape = 128  # type: ignore[misc]
    fake_config_dict["seed"] = -1
    with pytest.raises(ValidationError) as info:
        validate(fake_config_dict, fake_registry)
    assert [e["loc"] for e in info.value.errors()] == [("seed",)]


def test_loss_settings_validated(fake_registry: Registry, fake_config_dict) -> None:
    fake_config_dict["loss"] = {"p": 1, "reduction": "avg"}
    with pytest.raises(ValidationError) as info:
        validate(fake_config_dict, fake_registry)
    assert [e["loc"] for e in info.value.errors()] == [("loss", "reduction")]


def test_default_registry_used_without_context(fake_registry: Registry, fake_config_dict, monkeypatch) -> None:
    monkeypatch.setattr("scrapl.registry._default_registry", fake_registry)
    cfg = ScraplConfig.model_validate(fake_config_dict)
    assert type(cfg.transform) is FakeTransformConfig
    assert load_config(fake_config_dict) == cfg


def test_cross_component_hook(fake_registry: Registry, fake_config_dict) -> None:
    class PickySamplerConfig(PluginConfig):
        name: Literal["picky"] = "picky"

        def check_compatible(self, config: ScraplConfig) -> None:
            if config.transform.name != "fake_transform" or config.transform.shape < 128:
                raise ValueError("picky needs a fake_transform with shape >= 128")

    fake_registry.register(PluginSpec("sampler", "picky", PickySamplerConfig, lambda c, **kw: None))
    fake_config_dict["sampler"] = {"name": "picky"}
    with pytest.raises(ValidationError) as info:
        validate(fake_config_dict, fake_registry)
    (error,) = info.value.errors()
    assert error["loc"] == ("sampler",) and error["type"] == "incompatible_config"
    assert "shape >= 128" in error["msg"]
    fake_config_dict["transform"]["shape"] = 128
    assert validate(fake_config_dict, fake_registry).sampler.name == "picky"


# ------------------------------------------------------------------ round trips
def _third_party_registry(plugin_site, fake_registry_specs) -> Registry:
    plugin_site("scrapl-third", {"scrapl_test_third": THIRD_PARTY_PLUGIN}, {"third": "scrapl_test_third"})
    registry = Registry(autoload=True, builtins=())
    registry.register(fake_registry_specs, source="tests:fakes")
    return registry


@pytest.fixture
def third_party_config(plugin_site) -> tuple[ScraplConfig, Registry]:
    from conftest import FAKE_SPECS

    registry = _third_party_registry(plugin_site, FAKE_SPECS)
    cfg = validate(
        {
            "transform": {"name": "fake_transform", "shape": 96},
            "sampler": {"name": "third_party_sampler", "bands": [3, 4, 5], "temperature": 0.5},
            "optimizer": {"name": "fake_optimizer", "lr": 0.25},
            "loss": {"p": 1.0, "reduction": "sum"},
            "seed": 11,
        },
        registry,
    )
    return cfg, registry


def test_third_party_config_validated_by_its_class(third_party_config) -> None:
    cfg, registry = third_party_config
    assert type(cfg.sampler) is registry.config_class("sampler", "third_party_sampler")
    assert cfg.sampler.bands == (3, 4, 5)
    with pytest.raises(ValidationError) as info:
        validate(
            {
                "transform": "fake_transform",
                "sampler": {"name": "third_party_sampler", "temperature": 0},
                "optimizer": "fake_optimizer",
            },
            registry,
        )
    assert [e["loc"] for e in info.value.errors()] == [("sampler", "temperature")]


def test_dict_round_trip_keeps_third_party_fields(third_party_config) -> None:
    cfg, registry = third_party_config
    dumped = cfg.model_dump()
    assert dumped["sampler"] == {"name": "third_party_sampler", "bands": (3, 4, 5), "temperature": 0.5}
    assert dumped["optimizer"] == {"name": "fake_optimizer", "lr": 0.25}
    assert validate(dumped, registry) == cfg
    assert validate(cfg.to_dict(), registry) == cfg
    assert validate(json.loads(cfg.model_dump_json()), registry) == cfg


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip(third_party_config, tmp_path: Path, suffix: str) -> None:
    cfg, registry = third_party_config
    path = save_config(cfg, tmp_path / f"config{suffix}")
    text = path.read_text()
    data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert data["sampler"]["bands"] == [3, 4, 5]
    assert load_config(path, registry=registry) == cfg
    assert load_config(str(path), registry=registry) == cfg


def test_hand_written_yaml(fake_registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "# experiment\n"
        "transform: {name: fake_transform, shape: 32}\n"
        "sampler: fake_sampler\n"
        "optimizer:\n  name: fake_optimizer\n  lr: 0.001\n"
        "loss: {p: 1}\n"
        "seed: 7\n"
    )
    cfg = load_config(path, registry=fake_registry)
    assert (cfg.transform.shape, cfg.optimizer.lr, cfg.loss.p, cfg.seed) == (32, 0.001, 1.0, 7)


def test_file_errors_locate_field(fake_registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "transform": {"name": "fake_transform", "shape": 2},
                "sampler": "fake_sampler",
                "optimizer": "fake_optimizer",
            }
        )
    )
    with pytest.raises(ValidationError) as info:
        load_config(path, registry=fake_registry)
    assert [e["loc"] for e in info.value.errors()] == [("transform", "shape")]


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("missing.yaml", None, FileNotFoundError, "config file not found"),
        ("config.toml", "x = 1", ValueError, "allowed suffixes: .yaml, .yml, .json"),
        ("broken.yaml", "transform: [unclosed", ValueError, "not valid YAML"),
        ("broken.json", "{", ValueError, "not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", ValueError, "must hold a mapping.*got list"),
        ("empty.yaml", "", ValueError, "must hold a mapping.*got NoneType"),
    ],
)
def test_load_config_file_errors(fake_registry, tmp_path: Path, name, content, error, match) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=match):
        load_config(path, registry=fake_registry)


def test_load_config_rejects_other_types(fake_registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="config must be a ScraplConfig, a mapping, or a path"):
        load_config(42, registry=fake_registry)  # type: ignore[arg-type]
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ValueError, match="is not a file"):
        load_config(tmp_path / "folder.yaml", registry=fake_registry)


def test_save_config_rejects_bad_suffix(fake_registry, fake_config_dict, tmp_path: Path) -> None:
    cfg = validate(fake_config_dict, fake_registry)
    with pytest.raises(ValueError, match="must end with one of"):
        save_config(cfg, tmp_path / "cfg.txt")


# ------------------------------------------------------------------------ schema
def test_json_schema_lists_every_registered_config(third_party_config) -> None:
    _, registry = third_party_config
    schema = config_json_schema(registry)
    assert schema["title"] == "ScraplConfig"
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert set(props) == {"transform", "sampler", "optimizer", "loss", "seed"}
    assert schema["required"] == ["transform"]
    sampler_refs = {item["$ref"].rsplit("/", 1)[1] for item in props["sampler"]["anyOf"]}
    assert sampler_refs == {"FakeSamplerConfig", "BandsConfig"}
    assert props["transform"]["$ref"].endswith("/FakeTransformConfig")
    defs = schema["$defs"]
    assert defs["BandsConfig"]["properties"]["name"]["const"] == "third_party_sampler"
    assert defs["BandsConfig"]["properties"]["temperature"]["exclusiveMinimum"] == 0
    assert "third_party_sampler" in props["sampler"]["description"]
    json.dumps(schema)  # serializable
