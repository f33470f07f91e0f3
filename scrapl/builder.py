"""Top-level configuration (:class:`ScraplConfig`) and :func:`build`.

A config names one plugin of each kind by its ``name`` and carries that plugin's
settings; the registry supplies the plugin's own pydantic class, which validates them
(third-party plugins included).  :func:`build` turns a config into components::

    import scrapl

    built = scrapl.build({
        "transform": {"name": "jtfs", "shape": 4096, "J": 8, "Q1": 8, "Q2": 2,
                      "J_fr": 3, "Q_fr": 2},
        "sampler": {"name": "uniform"},
        "optimizer": {"name": "p_adam_saga"},
        "seed": 0,
    })
    loss_fn = built.loss                      # SCRAPLLoss (nn.Module)
    opt = built.optimizer(model.parameters(), lr=1e-4)

``build`` also accepts a path to a YAML (``.yaml``/``.yml``) or JSON (``.json``) file.

The module is named ``builder`` (not ``build``) so that the package attribute
``scrapl.build`` is always the function; import names from it with
``from scrapl.builder import ScraplConfig``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

import torch
from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from scrapl.configs import LossConfig, PluginConfig, SeedInt, StrictModel
from scrapl.errors import BrokenPluginError, DuplicatePluginError, PluginError
from scrapl.interfaces import PLUGIN_KINDS, PathSampler, ScatteringTransform
from scrapl.registry import Registry, get_registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "Built",
    "ConfigSource",
    "ScraplConfig",
    "build",
    "config_json_schema",
    "load_config",
    "save_config",
]

CONFIG_SUFFIXES: dict[str, str] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}

_COMPONENT_FIELDS: tuple[str, ...] = PLUGIN_KINDS  # field name == plugin kind


def _registry_from(info: ValidationInfo | None) -> Registry:
    context = info.context if info is not None else None
    if isinstance(context, Mapping) and context.get("registry") is not None:
        registry = context["registry"]
        if not isinstance(registry, Registry):
            raise TypeError(f"validation context 'registry' must be a scrapl Registry, got {registry!r}")
        return registry
    return get_registry()


def _plugin_error(kind: str, value: Any, exc: PluginError) -> ValidationError:
    """A ValidationError located at ``<kind>.name`` (the caller's field adds ``<kind>``)."""
    if isinstance(exc, DuplicatePluginError):
        error_type = "duplicate_plugin"
    elif isinstance(exc, BrokenPluginError):
        error_type = "broken_plugin"
    else:
        error_type = "unknown_plugin"
    detail: InitErrorDetails = {
        "type": PydanticCustomError(error_type, "{message}", {"message": str(exc)}),
        "loc": ("name",),
        "input": value,
    }
    return ValidationError.from_exception_data(f"{kind} config", [detail])


def _validate_component(kind: str, value: Any, info: ValidationInfo | None) -> Any:
    """Validate one component config with the registered plugin's own class."""
    registry = _registry_from(info)
    if isinstance(value, str):  # shorthand: ``sampler: uniform``
        value = {"name": value}
    if isinstance(value, PluginConfig):
        name = value.name
    elif isinstance(value, Mapping):
        if "name" not in value:
            raise PydanticCustomError(
                "missing_plugin_name",
                "a {kind} config needs a 'name'; known {kind} plugins: {known}",
                {"kind": kind, "known": ", ".join(registry.names(kind)) or "(none)"},
            )
        name = value["name"]
    else:
        raise PydanticCustomError(
            "plugin_config_type",
            "a {kind} config must be a mapping with a 'name', a plugin name, or a PluginConfig; got {type}",
            {"kind": kind, "type": type(value).__name__},
        )
    if not isinstance(name, str):
        raise _plugin_error(kind, name, PluginError(f"the {kind} name must be a string, got {name!r}"))
    try:
        cls = registry.config_class(kind, name)
    except PluginError as exc:
        raise _plugin_error(kind, name, exc) from None
    if isinstance(value, cls):
        return value
    if isinstance(value, PluginConfig):  # a config object of another class: revalidate its fields
        value = value.model_dump()
    return cls.model_validate(value, context=info.context if info is not None else None)


class ScraplConfig(StrictModel):
    """Everything :func:`build` needs: one plugin config per kind, loss settings, seed.

    Attributes:
        transform: config of a registered transform plugin (required), e.g.
            ``{"name": "jtfs", "shape": 4096, "J": 8, ...}``.
        sampler: config of a registered sampler plugin (default ``uniform``).
        optimizer: config of a registered path-aware optimizer (default
            ``p_adam_saga``: the paper's P-Adam + P-SAGA).
        loss: :class:`scrapl.configs.LossConfig` settings of the loss.
        seed: seeds the sampler's ``torch.Generator``; every random choice of the built
            components derives from it, so two builds of one config draw the same paths.

    The component fields accept a mapping with a ``name`` key, a bare plugin name, or
    a config object.  The name is looked up in the registry (the default one, or
    ``ScraplConfig.model_validate(data, context={"registry": reg})``) and the rest is
    validated by that plugin's own class, so errors point into the component, e.g.
    ``loc == ("sampler", "min_prob_frac")``.  Dumping keeps every field of the
    plugin's class (``SerializeAsAny``), so ``model_validate(cfg.model_dump())``
    gives an equal config.
    """

    transform: SerializeAsAny[PluginConfig]
    sampler: SerializeAsAny[PluginConfig] = Field(default_factory=lambda: {"name": "uniform"})  # type: ignore[assignment]
    optimizer: SerializeAsAny[PluginConfig] = Field(default_factory=lambda: {"name": "p_adam_saga"})  # type: ignore[assignment]
    loss: LossConfig = Field(default_factory=LossConfig)
    seed: SeedInt = 0

    @field_validator("transform", "sampler", "optimizer", mode="before")
    @classmethod
    def _validate_plugin_config(cls, value: Any, info: ValidationInfo) -> Any:
        return _validate_component(info.field_name, value, info)

    @model_validator(mode="after")
    def _cross_component_rules(self) -> "ScraplConfig":
        """Rules that involve more than one component.

        Each component config may define ``check_compatible(self, config)``, which
        receives the whole validated :class:`ScraplConfig` and raises ``ValueError``
        when the combination is invalid (e.g. a sampler that needs a particular
        transform).  Errors are reported at the component's location.
        """
        details: list[InitErrorDetails] = []
        for kind in _COMPONENT_FIELDS:
            component = getattr(self, kind)
            check: Callable[[ScraplConfig], Any] | None = getattr(component, "check_compatible", None)
            if check is None:
                continue
            try:
                check(self)
            except (ValueError, TypeError) as exc:
                details.append(
                    {
                        "type": PydanticCustomError("incompatible_config", "{message}", {"message": str(exc)}),
                        "loc": (kind,),
                        "input": component.model_dump(),
                    }
                )
        if details:
            raise ValidationError.from_exception_data(type(self).__name__, details)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (``model_dump(mode="json")``): validates back to an equal
        config."""
        return self.model_dump(mode="json")


ConfigSource = Union[ScraplConfig, Mapping[str, Any], str, Path]
"""What :func:`load_config` and :func:`build` accept."""


def _read_config_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    fmt = CONFIG_SUFFIXES.get(suffix)
    if fmt is None:
        raise ValueError(
            f"config file {str(path)!r} has suffix {suffix!r}; allowed suffixes: {', '.join(CONFIG_SUFFIXES)}"
        )
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"config path {str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read config file {str(path)!r}: {exc}") from exc
    from scrapl.config_text import parse_config_text

    return parse_config_text(text, fmt, str(path))


def read_mapping_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON file holding a mapping: the one
    config-file reader of the package (scrapl configs, demo settings, ablation specs).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unsupported suffix, unreadable file, syntax error, or a top
            level that is not a mapping (an empty file included).
    """
    path = Path(path).expanduser()
    data = _read_config_file(path)
    if not isinstance(data, Mapping):
        raise ValueError(f"config file {str(path)!r} must hold a mapping at its top level, got {type(data).__name__}")
    return dict(data)


def _components_from(config: ScraplConfig, registry: Registry) -> bool:
    """Whether every component of ``config`` is an instance of ``registry``'s class."""
    for kind in _COMPONENT_FIELDS:
        component = getattr(config, kind)
        try:
            cls = registry.config_class(kind, component.name)
        except PluginError:
            return False
        if not isinstance(component, cls):
            return False
    return True


def load_config(source: ConfigSource, *, registry: Registry | None = None) -> ScraplConfig:
    """Validate a config given as a :class:`ScraplConfig`, a mapping, or a file path.

    Args:
        source: a config object (re-checked against ``registry`` if its component
            classes differ), a mapping, or a ``str``/``Path`` of a ``.yaml``, ``.yml``
            or ``.json`` file holding a mapping.
        registry: where plugin names are looked up (default: :func:`get_registry`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unsupported suffix, unreadable file, syntax error, or a file whose
            top level is not a mapping.
        pydantic.ValidationError: invalid settings (``loc`` locates each error).
        TypeError: ``source`` is of another type.
    """
    reg = registry if registry is not None else get_registry()
    context = {"registry": reg}
    if isinstance(source, ScraplConfig):
        if _components_from(source, reg):
            return source
        return ScraplConfig.model_validate(source.model_dump(), context=context)
    if isinstance(source, (str, Path)):
        return ScraplConfig.model_validate(read_mapping_file(source), context=context)
    if isinstance(source, Mapping):
        return ScraplConfig.model_validate(dict(source), context=context)
    raise TypeError(
        f"config must be a ScraplConfig, a mapping, or a path to a YAML/JSON file; got {type(source).__name__}"
    )


def save_config(config: ScraplConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML or JSON (chosen by the suffix); :func:`load_config`
    reads it back to an equal config.  Returns the path written."""
    if not isinstance(config, ScraplConfig):
        raise TypeError(f"config must be a ScraplConfig, got {type(config).__name__}")
    path = Path(path).expanduser()
    fmt = CONFIG_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"path {str(path)!r} must end with one of {', '.join(CONFIG_SUFFIXES)}")
    data = config.to_dict()
    if fmt == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def config_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """JSON schema of :class:`ScraplConfig` with every registered plugin config.

    Each component property is an ``anyOf`` over the config schemas of the usable
    plugins of that kind (their ``name`` properties tell them apart); broken or
    duplicated plugins are left out.
    """
    reg = registry if registry is not None else get_registry()
    fields: dict[str, Any] = {}
    defaults = {"sampler": {"name": "uniform"}, "optimizer": {"name": "p_adam_saga"}}
    for kind in _COMPONENT_FIELDS:
        classes = tuple(spec.config_cls for spec in reg.specs(kind)) or (PluginConfig,)
        annotation: Any = Union[classes] if len(classes) > 1 else classes[0]  # type: ignore[valid-type]
        description = f"Config of a {kind} plugin; one of: {', '.join(reg.names(kind)) or '(none registered)'}"
        if kind in defaults:
            fields[kind] = (annotation, Field(default=defaults[kind], description=description))
        else:
            fields[kind] = (annotation, Field(description=description))
    fields["loss"] = (LossConfig, Field(default_factory=LossConfig, description="Loss settings"))
    fields["seed"] = (SeedInt, Field(default=0, description="Seed of every random choice"))
    schema_model = create_model("ScraplConfig", __base__=StrictModel, __doc__=ScraplConfig.__doc__, **fields)
    return schema_model.model_json_schema()


_EXPECTED: dict[str, type] = {"transform": ScatteringTransform, "sampler": PathSampler,
                               "optimizer": torch.optim.Optimizer}


def _make(reg: Registry, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the factory of plugin ``(kind, name)`` and check what it returns.

    ``ValueError`` / ``TypeError`` from the factory pass through (they name a bad
    setting); any other exception, and a result that is not the kind's interface
    (``None``, a wrong type, a sampler or transform with an unusable ``n_paths``),
    is that plugin's :class:`~scrapl.errors.BrokenPluginError`, naming its source.
    """
    spec = reg.get(kind, name)

    def broken(why: str) -> BrokenPluginError:
        return BrokenPluginError(f"{kind} plugin {name!r} (from {reg.source_of(kind, name)}) is broken: {why}")

    try:
        obj = spec.factory(*args, **kwargs)
    except (ValueError, TypeError, PluginError):
        raise
    except Exception as exc:
        raise broken(f"its factory raised {type(exc).__name__}: {exc}") from exc
    expected = _EXPECTED[kind]
    if not isinstance(obj, expected):
        got = "None" if obj is None else f"a {type(obj).__module__}.{type(obj).__qualname__}"
        raise broken(f"its factory returned {got}, expected a {expected.__module__}.{expected.__qualname__}")
    n_paths = getattr(obj, "n_paths", None)
    if kind != "optimizer" and (isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths < 1):
        raise broken(f"its {kind} has n_paths={n_paths!r}, expected an int >= 1")
    if kind == "sampler" and n_paths != kwargs["n_paths"]:
        raise broken(f"its sampler has n_paths={n_paths}, built for n_paths={kwargs['n_paths']}")
    return obj


@dataclass(repr=False)
class Built:
    """The components built from one :class:`ScraplConfig`.

    Attributes:
        config: the validated config.
        transform: the scattering transform (an ``nn.Module``).
        sampler: the path sampler (its generator is seeded with ``config.seed``).
        loss: :class:`scrapl.SCRAPLLoss` wrapping ``transform`` and ``sampler``.
        registry: the registry the plugins came from.
    """

    config: ScraplConfig
    transform: ScatteringTransform
    sampler: PathSampler
    loss: "nn.Module"
    registry: Registry = field(repr=False)

    def optimizer(self, params: Iterable[Any], **overrides: Any) -> torch.optim.Optimizer:
        """Build the configured path-aware optimizer over ``params``.

        Args:
            params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
            **overrides: settings that take precedence over the config's fields
                (e.g. ``lr=1e-4``).

        The optimizer learns which path produced each gradient from
        ``loss.consume_path`` (the path of the training forwards since its last step).
        """
        cfg = self.config.optimizer
        return _make(self.registry, "optimizer", cfg.name, cfg, params, n_paths=self.transform.n_paths,
                     path_source=self.loss.consume_path, **overrides)

    def path_table(self, *, sr: float, probs: "torch.Tensor | None" = None) -> list[dict[str, Any]]:
        """One JSON-able row per path: ``index``, ``key``, ``label``, ``temporal_rate``
        (cycles/sample), ``temporal_rate_hz``, ``freq_scale`` (cycles/octave), ``spin``,
        ``prob``.

        Args:
            sr: sample rate in Hz for ``temporal_rate_hz``.
            probs: probabilities to show (default: the sampler's).
        """
        infos = self.transform.path_infos
        pr = self.sampler.probs if probs is None else probs
        pr = pr.detach().double().cpu().tolist()
        rows = []
        for info, p in zip(infos, pr):
            rows.append(
                {
                    "index": info.index,
                    "key": list(info.key),
                    "label": info.label,
                    "temporal_rate": info.temporal_rate,
                    "temporal_rate_hz": info.temporal_rate_hz(sr),
                    "freq_scale": info.freq_scale,
                    "spin": info.spin,
                    "prob": float(p),
                }
            )
        return rows

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Built(transform={c.transform.name!r} ({self.transform.n_paths} paths), "
            f"sampler={c.sampler.name!r}, optimizer={c.optimizer.name!r}, seed={c.seed})"
        )


def build(config: ConfigSource, *, registry: Registry | None = None) -> Built:
    """Validate ``config`` and build its transform, sampler and loss.

    Args:
        config: a :class:`ScraplConfig`, a mapping, or a path (``str``/``Path``) to a
            YAML or JSON file (see :func:`load_config`).
        registry: where plugins are looked up (default: :func:`get_registry`).

    Returns:
        :class:`Built` with ``.loss``, ``.transform``, ``.sampler``, ``.config`` and
        ``.optimizer(params, **overrides)``.

    The sampler draws with a ``torch.Generator`` seeded with ``config.seed``; two
    builds of the same config draw the same paths.
    """
    from scrapl.compat import SCRAPLLoss  # lazy: the loss pulls in the heavy parts

    reg = registry if registry is not None else get_registry()
    cfg = load_config(config, registry=reg)
    transform = _make(reg, "transform", cfg.transform.name, cfg.transform)
    n_paths = transform.n_paths
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = _make(reg, "sampler", cfg.sampler.name, cfg.sampler, n_paths=n_paths, generator=generator)
    loss = SCRAPLLoss.from_components(transform, sampler, config=cfg.loss)
    return Built(config=cfg, transform=transform, sampler=sampler, loss=loss, registry=reg)
