"""Plain SGD with the path-aware ``step(closure=None, path=None)`` signature."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import torch

from scrapl import checks
from scrapl.interfaces import PathAwareOptimizer, PathSource

__all__ = ["PathSGD"]


class PathSGD(PathAwareOptimizer, torch.optim.SGD):
    """``torch.optim.SGD`` that accepts (and otherwise ignores) the path.

    It keeps no per-path state.  Like the other path-aware optimizers it calls
    ``path_source()`` exactly once per step (after the closure) when no ``path`` is
    given, so a loss that hands out one path per optimizer step sees it consumed;
    a ``None`` path is accepted.  ``last_path`` holds the path of the last step.

    Args:
        params: parameters or parameter groups.
        n_paths: number of paths ``P`` (only used to validate paths).
        path_source: optional callable returning the current path.
        lr, momentum, nesterov, weight_decay: as ``torch.optim.SGD``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        n_paths: int,
        *,
        path_source: Optional[PathSource] = None,
        lr: float = 1e-3,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths < 1:
            raise ValueError(f"n_paths must be an int >= 1, got {n_paths!r}")
        if path_source is not None and not callable(path_source):
            raise TypeError(f"path_source must be a callable returning int | None, got {type(path_source).__name__}")
        self.n_paths = n_paths
        self.path_source = path_source
        self.last_path: Optional[int] = None
        torch.optim.SGD.__init__(
            self, params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )

    def step(self, closure: Optional[Callable[[], Any]] = None, path: Optional[int] = None) -> Any:  # type: ignore[override]
        """One SGD step; ``path`` (or ``path_source()``) is validated and recorded."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if path is None and self.path_source is not None:
            path = self.path_source()
        self.last_path = None if path is None else checks.path_index(path, self.n_paths, "path")
        torch.optim.SGD.step(self)
        return loss

    def __repr__(self) -> str:
        return f"PathSGD(P={self.n_paths})\n" + torch.optim.SGD.__repr__(self)
