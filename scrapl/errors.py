"""Exceptions raised by scrapl (a leaf module: standard library only)."""

from __future__ import annotations


class ScraplError(Exception):
    """Base class of every scrapl-specific error."""


class PluginError(ScraplError, LookupError):
    """A plugin could not be found, loaded or registered."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of the requested (kind, name) is registered.

    The message lists the known names of that kind.
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DuplicatePluginError(PluginError, ValueError):
    """Two plugins registered the same (kind, name)."""


class BrokenPluginError(PluginError, RuntimeError):
    """A plugin failed to import or to register; its original error is kept."""


class WarmupError(ScraplError, RuntimeError):
    """The theta-IS warmup could not run or its files are invalid."""


class InvalidWarmupFileError(WarmupError, ValueError):
    """A probabilities or warmup file exists but cannot be used (unreadable, wrong
    type, shape or values).  Both a :class:`WarmupError` and a
    ``ValueError``; the message names the file and what was expected."""
