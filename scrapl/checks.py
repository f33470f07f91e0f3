"""Runtime checks of values that pydantic configs cannot see (a leaf: torch only).

Configs are validated once by pydantic at construction.  What arrives at call time
(signals, path indices, numbers passed to plain constructors) is checked here, by
the one layer that receives it from the user:

* :func:`check_signals` -- the loss's ``(x, x_target)`` pair, finite values included
  (one reduction and one device sync per call for both tensors);
* :func:`path_index` -- a path index in ``[0, n)``;
* :func:`check_number`, :func:`check_int`, :func:`check_bool` -- scalar arguments.

A transform called by the loss must not repeat the loss's checks: the loss runs the
transform inside :func:`caller_checked`, and a transform asks
:func:`inputs_checked` before checking finiteness or the path index itself.
"""

from __future__ import annotations

import math
import operator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

import torch
from torch import Tensor

__all__ = [
    "caller_checked",
    "check_bool",
    "check_int",
    "check_number",
    "check_signals",
    "inputs_checked",
    "path_index",
    "peak_abs",
    "require_finite",
]

_CHECKED: ContextVar[bool] = ContextVar("scrapl_inputs_checked", default=False)


@contextmanager
def caller_checked() -> Iterator[None]:
    """Within this block, inputs were already checked by the caller (the loss):
    transforms skip their finite and path-index checks."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def inputs_checked() -> bool:
    """Whether the current call runs inside :func:`caller_checked`."""
    return _CHECKED.get()


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds, or ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok):
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {lo}, {hi}, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (``TypeError`` / ``ValueError`` naming ``name``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def path_index(value: Any, n: int, name: str = "path index") -> int:
    """``value`` as an int in ``[0, n)``: Python/numpy integers and one-element
    integer tensors are accepted; bools, floats and other types are a ``TypeError``,
    an out-of-range index a ``ValueError``."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer in [0, {n}), got a tensor of shape {tuple(value.shape)} "
                            f"and dtype {value.dtype}")
        value = int(value.item())
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer in [0, {n}), got {value!r}")
    try:
        idx = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer in [0, {n}), got {type(value).__name__} {value!r}") from None
    if not 0 <= idx < n:
        raise ValueError(f"{name} must be in [0, {n}), got {idx}")
    return idx


#: Up to this many elements :func:`peak_abs` takes ``abs()`` then ``amax`` (two
#: operations; the copy is small and comes from the heap), above it ``max(amax,
#: -amin)``: four operations but no copy (``abs()`` of 32 x 44100 samples is a fresh
#: 5.6 MB allocation, faulted in page by page: about 20x slower than the reductions).
ABS_COPY_MAX_ELEMENTS: int = 1 << 16


def peak_abs(x: Tensor, dim: int | None = None) -> Tensor:
    """``max |x|`` over all of ``x`` (0-d) or over ``dim``, NaN where ``x`` holds a
    NaN and inf where it holds an infinity (``amax`` propagates NaN): the finite
    check in one pass, several times cheaper than ``isfinite(x).all()``, which writes
    a boolean tensor first; without a full-size copy for large tensors
    (:data:`ABS_COPY_MAX_ELEMENTS`).  Not differentiable (``x`` is detached)."""
    x = x.detach()
    kw = {} if dim is None else {"dim": dim}
    if x.numel() <= ABS_COPY_MAX_ELEMENTS:
        return x.abs().amax(**kw)
    return torch.maximum(x.amax(**kw), x.amin(**kw).neg_())


def require_finite(x: Tensor, name: str = "x", hint: str = "pass check_finite=False to skip this check") -> None:
    """``ValueError`` if ``x`` (non-empty) holds NaN or infinite values (one
    reduction, one device sync)."""
    if not bool(torch.isfinite(peak_abs(x))):
        raise ValueError(f"{name} contains NaN or infinite values ({hint})")


def check_transform_input(x: Any, filters: Tensor, dtype_hint: str = "", name: str = "x") -> None:
    """The type, dtype and device checks of a transform's input ``x`` (called
    ``name`` in errors): a float32 or float64 tensor on the device of the
    transform's ``filters`` (its shape is the transform's own check)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64{dtype_hint}, got dtype {x.dtype}")
    if x.device != filters.device:
        raise ValueError(
            f"{name} is on {x.device} but the transform's filters are on {filters.device}; "
            "move one of them (transform.to(device))"
        )


def check_signals(x: Any, x_target: Any, signal_shape: tuple[int, ...], *, finite: bool) -> None:
    """Check the loss inputs: two floating-point tensors of the same shape
    ``(batch, channels, *signal_shape)`` (``(samples,)`` for signals, ``(height,
    width)`` for images), dtype and device, with ``batch, channels >= 1``; with
    ``finite``, both hold only finite values (checked in one reduction)."""
    sig = tuple(int(n) for n in signal_shape)
    names = "samples" if len(sig) == 1 else "height, width" if len(sig) == 2 else f"{len(sig)} signal axes"
    layout = f"(batch, channels, {names})"
    for name, t in (("x", x), ("x_target", x_target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {t.dtype}")
        if t.ndim != 2 + len(sig):
            raise ValueError(f"{name} must have shape {layout} ({2 + len(sig)} dimensions), "
                             f"got shape {tuple(t.shape)}")
    if x.shape != x_target.shape:
        raise ValueError(f"x and x_target must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(x_target.shape)}")
    if x.dtype != x_target.dtype:
        raise TypeError(f"x and x_target must have the same dtype, got {x.dtype} and {x_target.dtype}")
    if x.device != x_target.device:
        raise ValueError(f"x and x_target must be on the same device, got {x.device} and {x_target.device}")
    if len(sig) == 1 and x.shape[-1] != sig[0]:
        raise ValueError(f"x and x_target must have {sig[0]} samples (the loss's shape), got {x.shape[-1]}")
    if tuple(x.shape[2:]) != sig:
        raise ValueError(f"x and x_target must have ({names}) = {sig} (the transform's shape), "
                         f"got {tuple(x.shape[2:])}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have at least one example and one channel, got shape {tuple(x.shape)}")
    if finite and not bool(torch.isfinite(torch.maximum(peak_abs(x), peak_abs(x_target)))):
        require_finite(x_target, "x_target")  # error path only: name the culprit
        require_finite(x, "x")
