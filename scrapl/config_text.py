"""Strict, cheap parsing of config files (a leaf module: json and PyYAML only).

* A key repeated in one mapping is an error naming the key and its line (JSON and
  YAML parsers keep the last value silently).
* YAML aliases (``*name``) are refused: a 1 KB file of nested aliases ("billion
  laughs") expands to billions of nodes (134 s of CPU measured with ``safe_load``).
  Anchors without aliases are harmless and allowed.
* Nesting deeper than :data:`MAX_DEPTH` is refused (a 100 000-deep JSON list hit
  Python's recursion limit with a traceback).

Errors are ``ValueError`` with one line naming the file.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "parse_config_text"]

#: Deepest nesting of mappings/lists a config file may have.
MAX_DEPTH: int = 64


def _json_pairs(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"config file {source!r}: duplicate key {k!r}")
            out[k] = v
        return out

    return hook


def _depth_check(text: str, source: str) -> None:
    """Bracket depth of a JSON text (outside strings), before parsing it."""
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"config file {source!r} is nested more than {MAX_DEPTH} levels deep")
        elif ch in "]}":
            depth -= 1


def _yaml_loader():
    import yaml

    class Refused(yaml.YAMLError):
        """Valid YAML that a config file may not use."""

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader refusing aliases, duplicate keys and deep nesting."""

        def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise Refused(f"YAML aliases (*{event.anchor}) are not allowed in config files "
                                     f"(line {event.start_mark.line + 1}); write the values out")
            self._depth = getattr(self, "_depth", 0) + 1
            try:
                if self._depth > MAX_DEPTH:
                    raise Refused(f"nested more than {MAX_DEPTH} levels deep")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # noqa: D102
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:
                    dup = False
                if dup:
                    raise Refused(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
                try:
                    seen.add(key)
                except TypeError:
                    pass
            return super().construct_mapping(node, deep=deep)

    StrictLoader.Refused = Refused
    return StrictLoader


def parse_config_text(text: str, fmt: str, source: str) -> Any:
    """Parse ``text`` as ``fmt`` (``"json"`` or ``"yaml"``) strictly (see the module
    docs); ``source`` names the file in errors."""
    if fmt == "json":
        _depth_check(text, source)
        try:
            return json.loads(text, object_pairs_hook=_json_pairs(source))
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {source!r} is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError(f"config file {source!r} is nested too deeply") from None
    if fmt != "yaml":
        raise ValueError(f"unknown config format {fmt!r} (json or yaml)")
    import yaml

    loader = _yaml_loader()
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except loader.Refused as exc:
        raise ValueError(f"config file {source!r}: {exc}") from None
    except yaml.YAMLError as exc:
        lines = str(exc).strip().splitlines()
        raise ValueError(f"config file {source!r} is not valid YAML: {' '.join(s.strip() for s in lines)}") from None
    except RecursionError:
        raise ValueError(f"config file {source!r} is nested too deeply") from None
