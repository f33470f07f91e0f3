"""Registry: built-ins, entry points, broken plugins, duplicates, autoload switch."""

from __future__ import annotations

import re
import importlib.util
import sys
import types
from typing import Literal

import pytest
import torch
from conftest import FakeSampler

import scrapl
from scrapl.builtin import BUILTIN_MODULES
from scrapl.configs import PluginConfig
from scrapl.errors import (
    BrokenPluginError,
    DuplicatePluginError,
    PluginError,
    UnknownPluginError,
)
from scrapl.interfaces import PluginSpec
from scrapl.registry import AUTOLOAD_ENV_VAR, Registry, get_registry, reset_registry

GOOD_PLUGIN = """
from typing import Literal
import scrapl
from scrapl.configs import PluginConfig

class GoodConfig(PluginConfig):
    name: Literal["good_tf"] = "good_tf"
    width: int = 4

def make(config):
    return ("built", config.width)

@scrapl.hookimpl
def scrapl_register_plugins():
    return [scrapl.PluginSpec("transform", "good_tf", GoodConfig, make, "a good transform")]
"""

IMPORT_ERROR_PLUGIN = """
import scrapl_module_that_does_not_exist_42
"""

HOOK_ERROR_PLUGIN = """
import scrapl

@scrapl.hookimpl
def scrapl_register_plugins():
    raise RuntimeError("hook exploded on purpose")
"""

INVALID_SPEC_PLUGIN = """
from typing import Literal
import scrapl
from scrapl.configs import PluginConfig

class WrongNameConfig(PluginConfig):
    name: Literal["something_else"] = "something_else"

class FineConfig(PluginConfig):
    name: Literal["fine_sampler"] = "fine_sampler"

@scrapl.hookimpl
def scrapl_register_plugins():
    return [
        scrapl.PluginSpec("sampler", "mismatched", WrongNameConfig, lambda c, **kw: None),
        scrapl.PluginSpec("sampler", "fine_sampler", FineConfig, lambda c, **kw: None),
    ]
"""

NO_HOOK_PLUGIN = """
def scrapl_register_plugins():  # forgot @scrapl.hookimpl
    return []
"""

TYPO_HOOK_PLUGIN = """
import scrapl

@scrapl.hookimpl
def scrapl_register_plugin():
    return []
"""


def dup_plugin(tag: str) -> str:
    return f'''
from typing import Literal
import scrapl
from scrapl.configs import PluginConfig

class DupConfig(PluginConfig):
    name: Literal["dup_tf"] = "dup_tf"
    tag: str = "{tag}"

@scrapl.hookimpl
def scrapl_register_plugins():
    return [scrapl.PluginSpec("transform", "dup_tf", DupConfig, lambda c: c, "from {tag}")]
'''


def _real_module_missing(name: str) -> bool:
    """True if a built-in plugin package has not been written yet (no __init__.py)."""
    spec = importlib.util.find_spec(name)
    return spec is None or spec.origin is None


class _Cfg(PluginConfig):
    name: Literal["prog"] = "prog"


def _spec(kind: str = "transform", name: str = "prog", cls: type = _Cfg, factory=lambda c: c) -> PluginSpec:
    return PluginSpec(kind, name, cls, factory, "programmatic")


# --------------------------------------------------------------------- built-ins
def test_builtin_plugins_present() -> None:
    missing = [m for m in BUILTIN_MODULES if _real_module_missing(m)]
    if missing:
        pytest.skip(f"built-in plugin packages not written yet: {missing}")
    registry = Registry(autoload=False)
    builtin_errors = [e for e in registry.errors if e.source.startswith("builtin:")]
    assert builtin_errors == [], registry.describe()
    assert "jtfs" in registry.names("transform")
    assert {"uniform", "theta_is"} <= set(registry.names("sampler"))
    assert {"p_adam", "p_saga", "p_adam_saga", "sgd"} <= set(registry.names("optimizer"))
    expected = {  # written out here on purpose: the library keeps no such list
        "scrapl.transforms.jtfs": {"transform": ("jtfs",)},
        "scrapl.transforms.scattering1d": {"transform": ("scattering1d",)},
        "scrapl.transforms.scattering2d": {"transform": ("scattering2d",)},
        "scrapl.samplers": {"sampler": ("uniform", "theta_is")},
        "scrapl.optim": {"optimizer": ("p_adam", "p_saga", "p_adam_saga", "sgd")},
    }
    assert set(expected) == set(BUILTIN_MODULES)
    for module, kinds in expected.items():
        for kind, names in kinds.items():
            for name in names:
                assert registry.source_of(kind, name) == f"builtin:{module}"
                assert issubclass(registry.config_class(kind, name), PluginConfig)


def test_broken_builtin_module_is_isolated(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_site("unused-dist", {"broken_builtin_mod": "raise ImportError('no scipy here')"}, {})
    registry = Registry(autoload=False, builtins=("broken_builtin_mod",))
    registry.register(_spec())
    assert registry.get("transform", "prog").name == "prog"
    with pytest.raises(BrokenPluginError, match="builtin:broken_builtin_mod.*no scipy here") as info:
        registry.get("transform", "shiny")
    assert isinstance(info.value.__cause__, ImportError)
    (entry,) = registry.errors
    assert entry.source == "builtin:broken_builtin_mod" and entry.status == "broken"
    assert "no scipy here" in registry.describe()


def test_builtin_module_without_plugins_list(plugin_site) -> None:
    plugin_site("unused-dist", {"empty_builtin_mod": "X = 1"}, {})
    registry = Registry(autoload=False, builtins=("empty_builtin_mod",))
    with pytest.raises(BrokenPluginError, match="implements no scrapl_register_plugins hook"):
        registry.get("transform", "empty_builtin_mod")


# ------------------------------------------------------------------ entry points
def test_entry_point_plugin_discovered(plugin_site) -> None:
    plugin_site("scrapl-good", {"scrapl_test_good": GOOD_PLUGIN}, {"good_tf": "scrapl_test_good"})
    registry = Registry(autoload=True, builtins=())
    spec = registry.get("transform", "good_tf")
    assert spec.description == "a good transform"
    assert registry.source_of("transform", "good_tf") == "entrypoint:scrapl-good:good_tf"
    cls = registry.config_class("transform", "good_tf")
    assert cls is sys.modules["scrapl_test_good"].GoodConfig
    assert spec.factory(cls(width=7)) == ("built", 7)
    assert registry.errors == []
    assert registry.plugin_manager.has_plugin("entrypoint:scrapl-good:good_tf")


def test_broken_plugins_do_not_stop_the_others(plugin_site) -> None:
    plugin_site("a-import-error", {"scrapl_test_imperr": IMPORT_ERROR_PLUGIN}, {"imperr": "scrapl_test_imperr"})
    plugin_site("b-hook-error", {"scrapl_test_hookerr": HOOK_ERROR_PLUGIN}, {"hookerr": "scrapl_test_hookerr"})
    plugin_site("c-invalid", {"scrapl_test_invalid": INVALID_SPEC_PLUGIN}, {"invalid": "scrapl_test_invalid"})
    plugin_site("d-nohook", {"scrapl_test_nohook": NO_HOOK_PLUGIN}, {"nohook": "scrapl_test_nohook"})
    plugin_site("e-typo", {"scrapl_test_typo": TYPO_HOOK_PLUGIN}, {"typo": "scrapl_test_typo"})
    plugin_site("f-missing-attr", {}, {"missing_attr": "scrapl_test_good:nothing_here"})
    plugin_site("z-good", {"scrapl_test_good": GOOD_PLUGIN}, {"good_tf": "scrapl_test_good"})
    registry = Registry(autoload=True, builtins=())

    # the good plugin (loaded after all the broken ones) still works
    assert registry.get("transform", "good_tf").name == "good_tf"
    # so does the valid spec of a source that also returned an invalid one
    assert registry.names("sampler") == ["fine_sampler"]

    errors = {e.source: e for e in registry.errors}
    assert set(errors) == {
        "entrypoint:a-import-error:imperr",
        "entrypoint:b-hook-error:hookerr",
        "entrypoint:c-invalid:invalid",
        "entrypoint:d-nohook:nohook",
        "entrypoint:e-typo:typo",
        "entrypoint:f-missing-attr:missing_attr",
    }
    assert isinstance(errors["entrypoint:a-import-error:imperr"].error, ImportError)
    assert isinstance(errors["entrypoint:b-hook-error:hookerr"].error, RuntimeError)
    assert "@scrapl.hookimpl" in str(errors["entrypoint:d-nohook:nohook"].error)
    assert "unknown hook 'scrapl_register_plugin'" in str(errors["entrypoint:e-typo:typo"].error)
    assert isinstance(errors["entrypoint:f-missing-attr:missing_attr"].error, AttributeError)

    # asking for a broken plugin raises with the original error chained
    with pytest.raises(BrokenPluginError, match="entrypoint:a-import-error:imperr") as info:
        registry.get("transform", "imperr")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(BrokenPluginError, match="hook exploded on purpose") as info:
        registry.get("sampler", "hookerr")
    assert isinstance(info.value.__cause__, RuntimeError)
    # an invalid spec is named, with the reason
    with pytest.raises(BrokenPluginError, match=r"sampler plugin 'mismatched' from entrypoint:c-invalid:invalid"):
        registry.get("sampler", "mismatched")
    entry = next(e for e in registry.list() if e.name == "mismatched")
    assert entry.kind == "sampler" and entry.status == "broken"
    assert "Literal['mismatched']" in str(entry.error)
    # an unknown name mentions the broken sources
    with pytest.raises(UnknownPluginError, match="failed to load.*entrypoint:a-import-error:imperr"):
        registry.get("transform", "nothing_like_it")

    text = registry.describe()
    for source in errors:
        assert source in text
    assert "hook exploded on purpose" in text and "good_tf" in text


def test_duplicate_entry_points_rejected_naming_both_sources(plugin_site) -> None:
    plugin_site("dist-one", {"scrapl_test_dup1": dup_plugin("one")}, {"dup_tf": "scrapl_test_dup1"})
    plugin_site("dist-two", {"scrapl_test_dup2": dup_plugin("two")}, {"dup_tf": "scrapl_test_dup2"})
    registry = Registry(autoload=True, builtins=())
    with pytest.raises(DuplicatePluginError) as info:
        registry.get("transform", "dup_tf")
    message = str(info.value)
    assert "entrypoint:dist-one:dup_tf" in message and "entrypoint:dist-two:dup_tf" in message
    assert "dup_tf" not in registry.names("transform")
    assert ("transform", "dup_tf") not in registry
    statuses = sorted((e.source, e.status) for e in registry.list() if e.name == "dup_tf")
    assert statuses == [("entrypoint:dist-one:dup_tf", "ok"), ("entrypoint:dist-two:dup_tf", "duplicate")]
    assert "duplicate" in registry.describe()


def test_programmatic_duplicate_raises_naming_both_sources() -> None:
    registry = Registry(autoload=False, builtins=())
    registry.register(_spec(), source="first-source")
    with pytest.raises(DuplicatePluginError, match="first-source.*second-source"):
        registry.register(_spec(), source="second-source")
    assert registry.source_of("transform", "prog") == "first-source"
    assert registry.errors == []

    # same name in another kind is fine
    class _SamplerCfg(PluginConfig):
        name: Literal["prog"] = "prog"

    registry.register(_spec(kind="sampler", cls=_SamplerCfg))
    assert registry.names("sampler") == ["prog"]


# ----------------------------------------------------------------- autoload switch
@pytest.mark.parametrize(
    ("env", "autoload", "expected"),
    [
        (None, None, True),
        ("1", None, False),
        ("true", None, False),
        ("0", None, True),
        ("", None, True),
        ("1", True, True),
        (None, False, False),
    ],
)
def test_autoload_switch(plugin_site, monkeypatch: pytest.MonkeyPatch, env, autoload, expected) -> None:
    plugin_site("scrapl-good", {"scrapl_test_good": GOOD_PLUGIN}, {"good_tf": "scrapl_test_good"})
    if env is None:
        monkeypatch.delenv(AUTOLOAD_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(AUTOLOAD_ENV_VAR, env)
    registry = Registry(autoload=autoload, builtins=())
    assert registry.autoload is expected
    assert ("good_tf" in registry.names("transform")) is expected


def test_autoload_disabled_keeps_builtins(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_site("unused-dist", {"fine_builtin_mod": "import scrapl\nfrom conftest import FAKE_SPECS\n\n@scrapl.hookimpl\n"
                                             "def scrapl_register_plugins():\n    return FAKE_SPECS\n"}, {})
    monkeypatch.setenv(AUTOLOAD_ENV_VAR, "1")
    registry = Registry(builtins=("fine_builtin_mod",))
    assert registry.names("transform") == ["fake_transform"]
    assert registry.source_of("transform", "fake_transform") == "builtin:fine_builtin_mod"


# ------------------------------------------------------------------------- lookup
def test_unknown_name_lists_known_names(fake_registry: Registry) -> None:
    with pytest.raises(UnknownPluginError) as info:
        fake_registry.get("sampler", "unifrom")
    assert str(info.value) == "unknown sampler plugin 'unifrom'; known sampler plugins: fake_sampler"
    assert isinstance(info.value, KeyError) and isinstance(info.value, PluginError)


def test_bad_kind_is_value_error(fake_registry: Registry) -> None:
    with pytest.raises(ValueError, match="kind must be one of 'transform', 'sampler', 'optimizer'"):
        fake_registry.get("loss", "x")
    with pytest.raises(ValueError, match="kind must be one of"):
        fake_registry.names("transforms")


def test_listing(fake_registry: Registry) -> None:
    entries = fake_registry.list()
    assert [(e.kind, e.name, e.status) for e in entries] == [
        ("transform", "fake_transform", "ok"),
        ("sampler", "fake_sampler", "ok"),
        ("optimizer", "fake_optimizer", "ok"),
    ]
    assert all(e.source == "tests:fakes" for e in entries)
    lines = fake_registry.describe().splitlines()
    assert lines[0].split() == ["kind", "name", "status", "source", "description", "/", "error"]
    assert lines[1].split()[:4] == ["transform", "fake_transform", "ok", "tests:fakes"]
    assert "transforms=1" in repr(fake_registry)
    assert [s.name for s in fake_registry.specs("optimizer")] == ["fake_optimizer"]


# ------------------------------------------------------------------- registration
class _NotPinned(PluginConfig):
    pass  # name: str, no default


class _OtherLiteral(PluginConfig):
    name: Literal["other"] = "other"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (_spec(kind="loss"), "kind must be one of"),
        (_spec(name=""), "name must be a non-empty string"),
        (_spec(cls=dict), "config_cls must be a subclass of scrapl.PluginConfig"),
        (_spec(cls=_NotPinned), "must pin its name"),
        (_spec(cls=_OtherLiteral), r"must be Literal\['prog'\]"),
        (_spec(factory="not callable"), "factory must be callable"),
        ("not a spec", "expected a scrapl.PluginSpec"),
    ],
)
def test_invalid_specs_rejected(spec, match) -> None:
    registry = Registry(autoload=False, builtins=())
    with pytest.raises(BrokenPluginError, match=match):
        registry.register([spec] if isinstance(spec, str) else spec)
    assert registry.list() == []


def test_register_module_and_hook_object() -> None:
    registry = Registry(autoload=False, builtins=())
    module = types.ModuleType("my_notebook_plugins")
    module.PLUGINS = [_spec()]
    registry.register(module)
    assert registry.source_of("transform", "prog") == "register:my_notebook_plugins"

    class _SamplerCfg(PluginConfig):
        name: Literal["hooked"] = "hooked"

    class HookObject:
        @scrapl.hookimpl
        def scrapl_register_plugins(self):
            return [PluginSpec("sampler", "hooked", _SamplerCfg, lambda c, **kw: None)]

    registry.register(HookObject(), source="hook-object")
    assert registry.source_of("sampler", "hooked") == "hook-object"
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_spec(name="x"), source="hook-object")

    class Raising:
        @scrapl.hookimpl
        def scrapl_register_plugins(self):
            raise KeyError("boom")

    with pytest.raises(BrokenPluginError, match="boom") as info:
        registry.register(Raising())
    assert isinstance(info.value.__cause__, KeyError)
    assert registry.errors == []


def test_default_registry_is_cached_and_resettable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scrapl.registry._default_registry", None)
    first = get_registry()
    assert get_registry() is first
    assert scrapl.get_registry() is first
    reset_registry()
    assert get_registry() is not first


def test_same_module_under_two_entry_points(plugin_site) -> None:
    plugin_site(
        "scrapl-twice",
        {"scrapl_test_good": GOOD_PLUGIN},
        {"good_tf": "scrapl_test_good", "good_again": "scrapl_test_good"},
    )
    registry = Registry(autoload=True, builtins=())
    # the first registration stays usable; the second one is reported, not silently merged
    assert registry.source_of("transform", "good_tf") == "entrypoint:scrapl-twice:good_again"
    (entry,) = registry.errors
    assert entry.source == "entrypoint:scrapl-twice:good_tf"
    assert "already registered" in str(entry.error)
    assert registry.plugin_manager.has_plugin("entrypoint:scrapl-twice:good_again")


@pytest.mark.parametrize(
    "body, error_type",
    [
        ("import sys\nsys.exit(3)\n", SystemExit),
        ("raise KeyboardInterrupt('at import')\n", KeyboardInterrupt),
        ("class Odd(BaseException):\n    pass\nraise Odd('odd')\n", BaseException),
    ],
)
def test_plugin_exiting_at_import_does_not_stop_the_others(plugin_site, body: str, error_type: type) -> None:
    plugin_site("a-exits", {"scrapl_test_exits": body}, {"exits": "scrapl_test_exits"})
    plugin_site("z-good", {"scrapl_test_good": GOOD_PLUGIN}, {"good_tf": "scrapl_test_good"})
    registry = Registry(autoload=True, builtins=())
    assert registry.get("transform", "good_tf").name == "good_tf"
    errors = {e.source: e for e in registry.errors}
    assert set(errors) == {"entrypoint:a-exits:exits"}
    assert isinstance(errors["entrypoint:a-exits:exits"].error, error_type)


def test_plugin_hook_calling_sys_exit_is_reported(plugin_site) -> None:
    source = """
        import sys
        import scrapl

        @scrapl.hookimpl
        def scrapl_register_plugins():
            sys.exit(4)
    """
    plugin_site("a-hook-exits", {"scrapl_test_hook_exits": source}, {"hookexits": "scrapl_test_hook_exits"})
    plugin_site("z-good", {"scrapl_test_good": GOOD_PLUGIN}, {"good_tf": "scrapl_test_good"})
    registry = Registry(autoload=True, builtins=())
    assert registry.get("transform", "good_tf").name == "good_tf"
    errors = {e.source: e for e in registry.errors}
    assert isinstance(errors["entrypoint:a-hook-exits:hookexits"].error, SystemExit)


# --------------------------------------------------------------------- factories
class _BadSamplerCfg(PluginConfig):
    name: Literal["bad_sampler"] = "bad_sampler"


class _BadTransformCfg(PluginConfig):
    name: Literal["bad_transform"] = "bad_transform"


def _bad_registry(fake_registry: Registry, kind: str, factory) -> Registry:
    cls = _BadSamplerCfg if kind == "sampler" else _BadTransformCfg
    fake_registry.register(PluginSpec(kind, f"bad_{kind}", cls, factory, "broken"), source="tests:bad")
    return fake_registry


@pytest.mark.parametrize(
    ("kind", "factory", "message"),
    [
        ("transform", lambda c: None, "its factory returned None, expected a scrapl.interfaces.ScatteringTransform"),
        ("transform", lambda c: torch.nn.Linear(2, 2), "returned a torch.nn.modules.linear.Linear"),
        ("transform", lambda c: 1 / 0, "its factory raised ZeroDivisionError"),
        ("sampler", lambda c, *, n_paths, generator: None, "its factory returned None, expected a scrapl.interfaces.PathSampler"),
        ("sampler", lambda c, *, n_paths, generator: FakeSampler(n_paths + 1, generator), "n_paths=4, built for n_paths=3"),
    ],
)
def test_factory_returning_a_wrong_object_is_that_plugins_error(fake_registry, fake_config_dict, kind, factory, message) -> None:
    reg = _bad_registry(fake_registry, kind, factory)
    cfg = {**fake_config_dict, kind: {"name": f"bad_{kind}"}}
    with pytest.raises(BrokenPluginError, match=re.escape(f"{kind} plugin 'bad_{kind}' (from tests:bad) is broken: ") + ".*" + re.escape(message)):
        scrapl.build(cfg, registry=reg)
    scrapl.build(fake_config_dict, registry=reg)  # the other plugins still build


def test_optimizer_factory_returning_none_is_that_plugins_error(fake_registry, fake_config_dict) -> None:
    class _BadOptCfg(PluginConfig):
        name: Literal["bad_opt"] = "bad_opt"

    fake_registry.register(PluginSpec("optimizer", "bad_opt", _BadOptCfg, lambda c, params, **kw: None, "broken"),
                           source="tests:bad")
    built = scrapl.build({**fake_config_dict, "optimizer": {"name": "bad_opt"}}, registry=fake_registry)
    with pytest.raises(BrokenPluginError, match=r"optimizer plugin 'bad_opt' \(from tests:bad\) is broken: its factory returned None"):
        built.optimizer([torch.nn.Parameter(torch.ones(2))])
    assert isinstance(scrapl.build(fake_config_dict, registry=fake_registry).optimizer([torch.nn.Parameter(torch.ones(2))]),
                      torch.optim.Optimizer)


def test_plugin_spec_of_takes_the_name_from_the_config_literal() -> None:
    from scrapl.transforms.jtfs import JTFSConfig, make_jtfs

    spec = scrapl.PluginSpec.of("transform", JTFSConfig, make_jtfs, "d")
    assert (spec.kind, spec.name, spec.config_cls, spec.factory, spec.description) == \
        ("transform", "jtfs", JTFSConfig, make_jtfs, "d")
    with pytest.raises(TypeError, match="no default 'name'"):
        scrapl.PluginSpec.of("transform", dict, make_jtfs)
