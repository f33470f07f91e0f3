"""Warmup and probability files (same format as scrapl-loss 0.1.0's, readable both ways).

``<warmup_dir>/vals_{p}.pt``: tensor ``(G, U)`` of curvatures of path ``p`` (``G = 1``
unless the warmup used ``agg != "none"``, then one row per parameter tensor);
``<warmup_dir>/probs.pt`` / any ``probs_path``: float64 tensor ``(P,)``.  Written
with ``torch.save`` (atomically: temporary file + ``os.replace``), read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scrapl import checks
from scrapl.atomic import atomic_write
from scrapl.errors import InvalidWarmupFileError, WarmupError
from scrapl.samplers.base import validate_probs
from scrapl.samplers.probs import Agg, aggregate_vals, check_agg, probs_from_curvatures

__all__ = ["InvalidWarmupFileError", "atomic_save", "load_probs_file", "load_vals_file", "load_warmup_dir",
           "probs_file", "read_probs", "save_probs_file", "vals_file"]

_VALS_RE = re.compile(r"^vals_(\d+)\.pt$")


def vals_file(warmup_dir: str | os.PathLike, path_idx: int) -> str:
    """``<warmup_dir>/vals_{path_idx}.pt``."""
    return os.path.join(os.fspath(warmup_dir), f"vals_{path_idx}.pt")


def probs_file(warmup_dir: str | os.PathLike) -> str:
    """``<warmup_dir>/probs.pt``."""
    return os.path.join(os.fspath(warmup_dir), "probs.pt")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same directory and
    ``os.replace``: readers (and an interrupted run) never see a partial file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def _load_tensor(path: str, what: str) -> Tensor:
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise InvalidWarmupFileError(f"{what} {path!r} is not a regular file")
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors vary; the file is unusable either way
        raise InvalidWarmupFileError(f"{what} {path!r} could not be read with torch.load(weights_only=True) (corrupt or not a tensor file): {exc}") from exc
    if not isinstance(obj, Tensor):
        raise InvalidWarmupFileError(f"{what} {path!r} holds a {type(obj).__name__}, expected a tensor")
    return obj


def load_vals_file(path: str | os.PathLike, n_theta: int) -> Tensor:
    """Read one ``vals_{p}.pt``: a non-negative finite tensor of shape ``(G, n_theta)``.

    Returns it as float64.  Raises ``FileNotFoundError`` or
    :class:`InvalidWarmupFileError` (naming the file and the expected shape).
    """
    path = os.fspath(path)
    t = _load_tensor(path, "warmup file")
    if t.ndim != 2 or t.size(0) < 1 or t.size(1) != n_theta or not t.is_floating_point():
        raise InvalidWarmupFileError(
            f"warmup file {path!r} holds a {t.dtype} tensor of shape {tuple(t.shape)}, expected a float tensor of shape "
            f"(n_groups, n_theta) = (1, {n_theta}) (n_groups > 1 only for agg != 'none')"
        )
    t = t.double()
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise InvalidWarmupFileError(f"warmup file {path!r} must hold finite non-negative curvatures")
    return t


def load_probs_file(path: str | os.PathLike, n_paths: int) -> Tensor:
    """Read a probabilities file: float64 ``(n_paths,)``, non-negative, summing to one.

    Raises ``FileNotFoundError`` or :class:`InvalidWarmupFileError` (a ``ValueError``).
    """
    path = os.fspath(path)
    t = _load_tensor(path, "probabilities file")
    try:
        return validate_probs(t, n_paths, name=f"probabilities file {path!r}")
    except (ValueError, TypeError) as exc:
        raise InvalidWarmupFileError(str(exc)) from exc


def save_probs_file(probs: Tensor, path: str | os.PathLike) -> None:
    """Validate ``probs`` (``(P,)``) and write it atomically as float64."""
    probs = validate_probs(probs, int(probs.numel()) if isinstance(probs, Tensor) else len(probs))
    atomic_save(probs, path)


def load_warmup_dir(
    warmup_dir: str | os.PathLike,
    n_paths: int,
    n_theta: int,
    agg: Agg = "none",
    *,
    require_complete: bool = False,
) -> Tensor:
    """Read every ``vals_{p}.pt`` of a warmup directory.

    Args:
        warmup_dir: the directory (must exist).
        n_paths, n_theta: expected ``P`` and ``U``.
        agg: how multi-row files are reduced (:func:`aggregate_vals`).
        require_complete: raise :class:`~scrapl.errors.WarmupError` listing the
            missing paths instead of warning about them.

    Returns:
        ``(P, U)`` float64 tensor; rows of missing paths are NaN.
    """
    checks.check_int("n_paths", n_paths, 1)
    checks.check_int("n_theta", n_theta, 1)
    check_agg(agg)
    d = os.fspath(warmup_dir)
    if not os.path.exists(d):
        raise FileNotFoundError(f"warmup_dir {d!r} does not exist")
    if not os.path.isdir(d):
        raise NotADirectoryError(f"warmup_dir {d!r} is not a directory")
    extra = sorted(int(m.group(1)) for m in map(_VALS_RE.match, os.listdir(d)) if m and int(m.group(1)) >= n_paths)
    if extra:
        raise WarmupError(f"warmup_dir {d!r} has curvature files for path(s) {extra[:5]} but n_paths={n_paths}: wrong directory or configuration?")
    out = torch.full((n_paths, n_theta), math.nan, dtype=torch.float64)
    missing = []
    for p in range(n_paths):
        f = vals_file(d, p)
        if not os.path.exists(f):
            missing.append(p)
            continue
        out[p] = aggregate_vals(load_vals_file(f, n_theta), agg, name=f"warmup file {f!r}")
    if missing:
        msg = f"warmup_dir {d!r} has no curvature file for {len(missing)} of {n_paths} paths (e.g. {missing[:5]})"
        if require_complete:
            raise WarmupError(msg)
        warnings.warn(msg + "; those paths keep the uniform probability", RuntimeWarning, stacklevel=2)
    return out


def read_probs(path: str | os.PathLike, n_paths: int) -> Tensor:
    """Probabilities from a ``.pt`` file or a warmup directory.

    A directory is read from its ``vals_{p}.pt`` files (missing paths keep the
    uniform probability), never from its ``probs.pt`` (the rule of
    :mod:`scrapl.samplers.warmup`); ``n_theta`` is taken from the first file.

    Returns:
        float64 ``(n_paths,)``.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in os.listdir(p) if _VALS_RE.match(f))
        if not files:
            raise ValueError(f"warmup folder {str(path)!r} holds no vals_<path>.pt files")
        first = _load_tensor(str(p / files[0]), "warmup file")
        if first.ndim != 2:
            raise ValueError(f"warmup file {str(p / files[0])!r} holds a tensor of shape {tuple(first.shape)}, "
                             "expected (n_groups, n_theta)")
        n_theta = int(first.shape[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            vals = load_warmup_dir(p, n_paths, n_theta)
        return probs_from_curvatures(vals, 0.0, 1e-12)
    if not p.is_file():
        raise FileNotFoundError(f"probabilities file or warmup folder not found: {str(path)!r}")
    return load_probs_file(p, n_paths)
