"""Plugin registry: built-in plugins plus third-party ``scrapl.plugins`` entry points.

A :class:`Registry` owns its own :class:`pluggy.PluginManager` (project name
``"scrapl"``, hook specifications from :mod:`scrapl.hookspecs`).  It is used at
*build time* only: :func:`scrapl.build` looks plugins up by ``(kind, name)`` and then
calls their typed factories; no hook is ever called during training.

Where plugins come from, in this order:

1. The built-in modules of :data:`scrapl.builtin.BUILTIN_MODULES`, each registered as
   its own plugin (source ``"builtin:<module>"``) exactly as an entry point's module:
   through its ``@scrapl.hookimpl`` ``scrapl_register_plugins()``.
2. Unless autoload is disabled, every entry point of the ``scrapl.plugins`` group
   (source ``"entrypoint:<distribution>:<entry point name>"``), in sorted order.  The
   entry point names a module or object whose ``@scrapl.hookimpl``
   ``scrapl_register_plugins()`` returns a list of :class:`~scrapl.interfaces.PluginSpec`.
3. Whatever is passed to :meth:`Registry.register` (tests, notebooks).

Failure isolation: a source that fails to import, whose hook raises, or that returns
an invalid spec is recorded as *broken*; the other sources are unaffected.  The error
is shown by :meth:`Registry.describe`, returned by :attr:`Registry.errors`, and
raised (as :class:`~scrapl.errors.BrokenPluginError`, chained to the original error)
when one of its plugins is asked for.  Two sources that register the same
``(kind, name)`` are never resolved silently: the first is kept, and looking the name
up raises :class:`~scrapl.errors.DuplicatePluginError` naming both sources.

Set the environment variable ``SCRAPL_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry
points (built-ins are still loaded), as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for
pytest.

Example::

    >>> from scrapl.registry import Registry
    >>> reg = Registry(autoload=False)
    >>> "uniform" in reg.names("sampler")
    True
    >>> print(reg.describe())  # doctest: +SKIP
    kind       name         status  source                          description
    transform  jtfs         ok      builtin:scrapl.transforms.jtfs  Joint time-frequency scattering ...
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import pluggy

from scrapl import hookspecs
from scrapl.builtin import BUILTIN_MODULES
from scrapl.configs import PluginConfig
from scrapl.errors import (
    BrokenPluginError,
    DuplicatePluginError,
    PluginError,
    UnknownPluginError,
)
from scrapl.interfaces import PLUGIN_KINDS, PluginSpec

__all__ = [
    "AUTOLOAD_ENV_VAR",
    "ENTRY_POINT_GROUP",
    "PluginEntry",
    "Registry",
    "autoload_disabled_by_env",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "scrapl.plugins"
"""Entry-point group scanned for third-party plugins."""

AUTOLOAD_ENV_VAR = "SCRAPL_DISABLE_PLUGIN_AUTOLOAD"
"""Environment variable that, when set to a true value, disables entry-point autoload."""

_FALSE_STRINGS = frozenset({"", "0", "false", "no", "off"})


def autoload_disabled_by_env() -> bool:
    """Whether :data:`AUTOLOAD_ENV_VAR` disables entry-point autoload.

    Any value other than empty, ``0``, ``false``, ``no`` or ``off`` (case-insensitive)
    disables it.
    """
    return os.environ.get(AUTOLOAD_ENV_VAR, "").strip().lower() not in _FALSE_STRINGS


@dataclass(frozen=True)
class PluginEntry:
    """One row of :meth:`Registry.list`.

    Attributes:
        source: where the plugin came from (``"builtin:<module>"``,
            ``"entrypoint:<dist>:<name>"`` or ``"register:<...>"``).
        kind: plugin kind, or ``None`` when the whole source failed before declaring any.
        name: plugin name, or ``None`` when the whole source failed.
        spec: the registered spec (``None`` for broken entries).
        error: why this entry is unusable (``None`` if it is usable).
    """

    source: str
    kind: str | None
    name: str | None
    spec: PluginSpec | None = None
    error: BaseException | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True if the plugin can be used."""
        return self.error is None

    @property
    def status(self) -> str:
        """``"ok"``, ``"duplicate"`` or ``"broken"``."""
        if self.error is None:
            return "ok"
        return "duplicate" if isinstance(self.error, DuplicatePluginError) else "broken"

    @property
    def detail(self) -> str:
        """The description of a usable plugin, or the error of an unusable one."""
        if self.error is not None:
            return _describe_exc(self.error)
        return self.spec.description if self.spec is not None else ""


@dataclass
class _BrokenSource:
    source: str
    error: BaseException
    hints: frozenset[tuple[str | None, str | None]]  # (kind or None for any, name or None for any) it may provide


@dataclass(frozen=True)
class _Blocked:
    """A (kind, name) that must raise when looked up (duplicate or invalid spec)."""

    exc_type: type[PluginError]
    message: str
    cause: BaseException | None


_ANY_NAME: frozenset[tuple[str | None, str | None]] = frozenset({(None, None)})
"""Hints of a built-in source: it may provide any name."""


class _SpecsPlugin:
    """pluggy adapter for specs passed to :meth:`Registry.register` directly (a spec,
    a list, or a module's ``PLUGINS`` list); built-ins and entry points are modules
    with their own hook implementation."""

    def __init__(self, specs: Any, origin: str) -> None:
        self._specs = specs
        self._origin = origin

    @hookspecs.hookimpl
    def scrapl_register_plugins(self) -> list:
        return list(self._specs)

    def __repr__(self) -> str:
        return f"<scrapl plugins of {self._origin}>"


def _describe_exc(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text


def _check_kind(kind: str) -> None:
    if kind not in PLUGIN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, PLUGIN_KINDS))}; got {kind!r}")


def _spec_problem(spec: Any) -> str | None:
    """Why ``spec`` is not a valid :class:`PluginSpec` (``None`` if it is valid)."""
    if not isinstance(spec, PluginSpec):
        return f"expected a scrapl.PluginSpec, got {type(spec).__name__} {spec!r:.80}"
    if spec.kind not in PLUGIN_KINDS:
        return f"kind must be one of {', '.join(map(repr, PLUGIN_KINDS))}, got {spec.kind!r}"
    if not isinstance(spec.name, str) or not spec.name or spec.name != spec.name.strip():
        return f"name must be a non-empty string without surrounding spaces, got {spec.name!r}"
    cls = spec.config_cls
    if not (isinstance(cls, type) and issubclass(cls, PluginConfig)):
        return f"config_cls must be a subclass of scrapl.PluginConfig, got {cls!r}"
    name_field = cls.model_fields.get("name")
    if name_field is None:  # pragma: no cover - PluginConfig always has it
        return f"config_cls {cls.__qualname__} has no 'name' field"
    annotation = name_field.annotation
    if get_origin(annotation) is Literal:
        if get_args(annotation) != (spec.name,):
            return (
                f"config_cls {cls.__qualname__}.name is {annotation!r}; it must be "
                f"Literal[{spec.name!r}] to match the plugin name"
            )
        if not name_field.is_required() and name_field.default != spec.name:
            return f"config_cls {cls.__qualname__}.name defaults to {name_field.default!r}, not {spec.name!r}"
    elif name_field.is_required() or name_field.default != spec.name:
        return f"config_cls {cls.__qualname__} must pin its name: declare name: Literal[{spec.name!r}] = {spec.name!r}"
    if not callable(spec.factory):
        return f"factory must be callable, got {spec.factory!r}"
    if not isinstance(spec.description, str):
        return f"description must be a string, got {type(spec.description).__name__}"
    return None


def _spec_label(spec: Any) -> tuple[str | None, str | None]:
    kind = getattr(spec, "kind", None)
    name = getattr(spec, "name", None)
    return (kind if isinstance(kind, str) else None, name if isinstance(name, str) else None)


class Registry:
    """Plugins by ``(kind, name)``: built-ins, entry points and programmatic ones.

    Args:
        autoload: load ``scrapl.plugins`` entry points.  ``None`` (default) loads them
            unless the environment variable ``SCRAPL_DISABLE_PLUGIN_AUTOLOAD`` is set;
            ``True``/``False`` decide regardless of the environment.
        builtins: modules to register as built-in plugins; ``None`` means
            :data:`scrapl.builtin.BUILTIN_MODULES`, ``()`` registers none (tests).

    Everything is loaded in the constructor.  Loading never raises because of a
    plugin: problems are recorded per source (see :attr:`errors`).
    """

    def __init__(self, autoload: bool | None = None, *, builtins: Iterable[str] | None = None) -> None:
        if autoload is not None and not isinstance(autoload, bool):
            raise TypeError(f"autoload must be True, False or None, got {autoload!r}")
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._specs: dict[tuple[str, str], tuple[PluginSpec, str]] = {}
        self._entries: list[PluginEntry] = []
        self._blocked: dict[tuple[str, str], _Blocked] = {}
        self._broken_sources: list[_BrokenSource] = []
        self.autoload: bool = (not autoload_disabled_by_env()) if autoload is None else autoload

        modules = BUILTIN_MODULES if builtins is None else tuple(builtins)
        for module_name in modules:
            self._load_builtin(module_name)
        if self.autoload:
            self._load_entry_points()

    # ------------------------------------------------------------------ loading
    def _load_builtin(self, module_name: str) -> None:
        """Import a built-in module and register it as a plugin, exactly as an entry
        point's module is (its ``@hookimpl scrapl_register_plugins``)."""
        source = f"builtin:{module_name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure marks the source broken
            # No name list is kept for the built-ins: any name not found is then
            # reported as possibly this module's (a broken installation).
            self._record_broken_source(source, exc, _ANY_NAME)
            return
        self._add_source(source, module, _ANY_NAME, strict=False)

    def _load_entry_points(self) -> None:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)

        def dist_name(ep: importlib.metadata.EntryPoint) -> str:
            dist = getattr(ep, "dist", None)
            return getattr(dist, "name", None) or "?"

        for ep in sorted(eps, key=lambda e: (dist_name(e), e.name, e.value)):
            source = f"entrypoint:{dist_name(ep)}:{ep.name}"
            hints = frozenset({(None, ep.name)})
            if self._pm.has_plugin(source):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
            except BaseException as exc:  # noqa: BLE001 - one broken plugin must not stop the others,
                # not even one that calls sys.exit or raises KeyboardInterrupt while importing
                self._record_broken_source(source, exc, hints)
                continue
            self._add_source(source, plugin, hints, strict=False)

    def _add_source(
        self,
        source: str,
        plugin: object,
        hints: frozenset[tuple[str | None, str | None]],
        *,
        strict: bool,
    ) -> None:
        """Register ``plugin`` with pluggy, call its hook, validate and add its specs.

        With ``strict`` (programmatic registration) any problem raises and nothing is
        added; otherwise problems are recorded and the valid specs are kept.
        """

        registered = False

        def fail(exc: BaseException) -> None:
            if registered:
                self._pm.unregister(plugin)
            if strict:
                if isinstance(exc, PluginError):
                    raise exc
                raise BrokenPluginError(f"plugin {source} is broken: {_describe_exc(exc)}") from exc
            self._record_broken_source(source, exc, hints)

        try:
            self._pm.register(plugin, name=source)
        except Exception as exc:  # noqa: BLE001 - pluggy validation errors, double registration
            fail(exc)
            return
        registered = True
        for caller in self._pm.get_hookcallers(plugin) or []:
            if not caller.has_spec():
                known = ", ".join(sorted(n for n in vars(hookspecs) if n.startswith("scrapl_")))
                fail(
                    BrokenPluginError(f"plugin {source} implements unknown hook {caller.name!r}; known hooks: {known}")
                )
                return
        impls = [i for i in self._pm.hook.scrapl_register_plugins.get_hookimpls() if i.plugin is plugin]
        if not impls:
            fail(
                BrokenPluginError(
                    f"plugin {source} ({plugin!r:.80}) implements no scrapl_register_plugins hook "
                    "(is the function decorated with @scrapl.hookimpl?)"
                )
            )
            return
        specs: list[Any] = []
        for impl in impls:
            if impl.hookwrapper or impl.wrapper:
                fail(BrokenPluginError(f"plugin {source}: scrapl_register_plugins must not be a hook wrapper"))
                return
            try:
                result = impl.function()
            except BaseException as exc:  # noqa: BLE001 - a raising hook (sys.exit included) breaks only this source
                fail(exc)
                return
            if isinstance(result, PluginSpec):
                result = [result]
            if not isinstance(result, (list, tuple)):
                fail(
                    BrokenPluginError(
                        f"plugin {source}: scrapl_register_plugins must return a list of PluginSpec, "
                        f"got {type(result).__name__}"
                    )
                )
                return
            specs.extend(result)

        valid: list[PluginSpec] = []
        invalid: list[tuple[Any, BrokenPluginError]] = []
        seen: dict[tuple[str, str], PluginSpec] = {}
        for spec in specs:
            problem = _spec_problem(spec)
            if problem is None and (spec.kind, spec.name) in seen:
                problem = f"{spec.kind} plugin {spec.name!r} is declared twice by the same source"
            if problem is not None:
                kind, name = _spec_label(spec)
                what = f"{kind} plugin {name!r}" if kind and name else "a plugin spec"
                invalid.append((spec, BrokenPluginError(f"{what} from {source} is invalid: {problem}")))
                continue
            seen[(spec.kind, spec.name)] = spec
            valid.append(spec)

        duplicates = [(s, self._specs[(s.kind, s.name)][1]) for s in valid if (s.kind, s.name) in self._specs]
        if strict and (invalid or duplicates):
            self._pm.unregister(plugin)
            if invalid:
                raise invalid[0][1]
            spec, first = duplicates[0]
            raise DuplicatePluginError(self._duplicate_message(spec, first, source))

        for spec, exc in invalid:
            kind, name = _spec_label(spec)
            self._entries.append(PluginEntry(source, kind, name, None, exc))
            if kind in PLUGIN_KINDS and name is not None and (kind, name) not in self._specs:
                self._blocked.setdefault((kind, name), _Blocked(BrokenPluginError, str(exc), None))
        for spec in valid:
            key = (spec.kind, spec.name)
            if key in self._specs:
                first = self._specs[key][1]
                exc = DuplicatePluginError(self._duplicate_message(spec, first, source))
                self._entries.append(PluginEntry(source, spec.kind, spec.name, spec, exc))
                self._blocked[key] = _Blocked(DuplicatePluginError, str(exc), None)
                continue
            self._specs[key] = (spec, source)
            self._entries.append(PluginEntry(source, spec.kind, spec.name, spec))

    @staticmethod
    def _duplicate_message(spec: PluginSpec, first: str, second: str) -> str:
        return (
            f"{spec.kind} plugin {spec.name!r} is registered twice: by {first} and by {second}; "
            "uninstall or rename one of them (scrapl never lets the last one win)"
        )

    def _record_broken_source(self, source: str, exc: BaseException, hints: frozenset[tuple[str | None, str | None]]) -> None:
        self._broken_sources.append(_BrokenSource(source, exc, hints))
        self._entries.append(PluginEntry(source, None, None, None, exc))

    # -------------------------------------------------------------- registration
    def register(self, plugin: PluginSpec | Iterable[PluginSpec] | object, *, source: str | None = None) -> None:
        """Register plugins programmatically (tests, notebooks).

        Args:
            plugin: a :class:`PluginSpec`, a list of them, a module/object with a
                ``@scrapl.hookimpl scrapl_register_plugins``, or a module with a
                ``PLUGINS`` list (like the built-ins).
            source: name shown in listings and error messages; default
                ``"register:<module or plugin name>"``.

        Raises:
            BrokenPluginError: a spec is invalid or the hook raised (nothing is added).
            DuplicatePluginError: a ``(kind, name)`` is already registered (nothing is
                added); the message names both sources.
            ValueError: ``source`` is already used.
        """
        if isinstance(plugin, PluginSpec):
            obj: object = _SpecsPlugin([plugin], f"{plugin.kind}:{plugin.name}")
            default_source = f"register:{plugin.kind}:{plugin.name}"
        elif isinstance(plugin, (list, tuple)):
            labels = ",".join(f"{k}:{n}" for k, n in map(_spec_label, plugin))
            obj = _SpecsPlugin(list(plugin), labels)
            default_source = f"register:{labels}"
        elif not self._has_hookimpl(plugin) and hasattr(plugin, "PLUGINS"):
            origin = getattr(plugin, "__name__", repr(plugin))
            obj = _SpecsPlugin(plugin.PLUGINS, origin)  # type: ignore[attr-defined]
            default_source = f"register:{origin}"
        else:
            obj = plugin
            default_source = f"register:{getattr(plugin, '__name__', type(plugin).__name__)}"
        if source is None:
            source, n = default_source, 2
            while self._pm.has_plugin(source):
                source, n = f"{default_source}#{n}", n + 1
        elif not isinstance(source, str) or not source:
            raise TypeError(f"source must be a non-empty string, got {source!r}")
        elif self._pm.has_plugin(source) or any(e.source == source for e in self._entries):
            raise ValueError(f"source {source!r} is already registered; pass another source name")
        self._add_source(source, obj, frozenset(), strict=True)

    def _has_hookimpl(self, plugin: object) -> bool:
        for attr in dir(plugin):
            try:
                if self._pm.parse_hookimpl_opts(plugin, attr) is not None:
                    return True
            except Exception:  # noqa: BLE001 - odd attributes are not hook implementations
                continue
        return False

    # ------------------------------------------------------------------- lookup
    def get(self, kind: str, name: str) -> PluginSpec:
        """The spec registered as ``(kind, name)``.

        Raises:
            ValueError: ``kind`` is not one of ``transform``, ``sampler``, ``optimizer``.
            DuplicatePluginError: two sources registered this name (both are named).
            BrokenPluginError: the plugin (or the source expected to provide it) failed
                to load; the original error is chained as ``__cause__``.
            UnknownPluginError: no such plugin; the message lists the known names of
                that kind and the sources that failed to load.
        """
        _check_kind(kind)
        key = (kind, name)
        blocked = self._blocked.get(key)
        if blocked is not None:
            raise blocked.exc_type(blocked.message) from blocked.cause
        found = self._specs.get(key)
        if found is not None:
            return found[0]
        for broken in self._broken_sources:
            if (kind, name) in broken.hints or (None, name) in broken.hints:
                raise BrokenPluginError(
                    f"{kind} plugin {name!r} is unavailable because {broken.source} failed to load: "
                    f"{_describe_exc(broken.error)}"
                ) from broken.error
        for broken in self._broken_sources:
            if (None, None) in broken.hints:
                raise BrokenPluginError(
                    f"unknown {kind} plugin {name!r}; the built-in plugin module {broken.source} failed to load "
                    f"and may provide it: {_describe_exc(broken.error)}"
                ) from broken.error
        raise UnknownPluginError(self._unknown_message(kind, name))

    def _unknown_message(self, kind: str, name: object) -> str:
        known = self.names(kind)
        message = f"unknown {kind} plugin {name!r}; known {kind} plugins: " + (", ".join(known) if known else "(none)")
        if self._broken_sources:
            message += "; plugin sources that failed to load: " + "; ".join(
                f"{b.source} ({_describe_exc(b.error)})" for b in self._broken_sources
            )
        return message

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and key in self._specs and key not in self._blocked

    def names(self, kind: str) -> list[str]:
        """Sorted names of the usable plugins of ``kind`` (duplicates excluded)."""
        _check_kind(kind)
        return sorted(n for (k, n) in self._specs if k == kind and (k, n) not in self._blocked)

    def specs(self, kind: str) -> list[PluginSpec]:
        """The usable specs of ``kind``, sorted by name."""
        return [self._specs[(kind, n)][0] for n in self.names(kind)]

    def source_of(self, kind: str, name: str) -> str:
        """The source that registered ``(kind, name)`` (raises like :meth:`get`)."""
        self.get(kind, name)
        return self._specs[(kind, name)][1]

    def config_class(self, kind: str, name: str) -> type[PluginConfig]:
        """The pydantic config class of ``(kind, name)`` (raises like :meth:`get`)."""
        return self.get(kind, name).config_cls

    # ------------------------------------------------------------------ listing
    def list(self) -> list[PluginEntry]:
        """Every entry, usable or not: plugins sorted by (kind, name, source), then the
        sources that failed as a whole."""
        order = {k: i for i, k in enumerate(PLUGIN_KINDS)}

        def key(e: PluginEntry) -> tuple:
            if e.kind is None or e.name is None:
                return (1, 0, "", e.source)
            return (0, order.get(e.kind, len(order)), e.name, e.source)

        return sorted(self._entries, key=key)

    @property
    def errors(self) -> list[PluginEntry]:
        """The unusable entries (broken sources, invalid specs, duplicates)."""
        return [e for e in self.list() if e.error is not None]

    def describe(self) -> str:
        """A plain-text table of :meth:`list`: kind, name, status, source, description
        or error."""
        rows = [("kind", "name", "status", "source", "description / error")]
        for e in self.list():
            rows.append((e.kind or "-", e.name or "-", e.status, e.source, e.detail))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows
        ).rstrip()

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for introspection; registration goes through
        :meth:`register`)."""
        return self._pm

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}s={len(self.names(k))}" for k in PLUGIN_KINDS)
        return f"Registry({counts}, errors={len(self.errors)}, autoload={self.autoload})"


_default_registry: Union[Registry, None] = None


def get_registry() -> Registry:
    """The default registry, created on first use.

    It is the one :func:`scrapl.build` and :class:`scrapl.builder.ScraplConfig` use when
    no registry is passed.  It reads ``SCRAPL_DISABLE_PLUGIN_AUTOLOAD`` once, when it
    is created; plugins installed afterwards appear after :func:`reset_registry`.
    """
    global _default_registry
    if _default_registry is None:
        _default_registry = Registry()
    return _default_registry


def reset_registry() -> None:
    """Forget the default registry; the next :func:`get_registry` builds a new one."""
    global _default_registry
    _default_registry = None
