"""Plain SGD with the path-aware ``step(closure=None, path=None)`` signature."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

import torch

from scrapl import checks
from scrapl.interfaces import PathAwareOptimizer, PathSource
from scrapl.optim.base import check_path_args, check_state_layout

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
        check_path_args(n_paths, path_source)
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

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.SGD.state_dict()`` plus ``n_paths`` (checked on load)."""
        sd = torch.optim.SGD.state_dict(self)
        sd["n_paths"] = self.n_paths
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict` (or a ``torch.optim.SGD`` one), validated first.

        Raises:
            ValueError: state for another ``n_paths`` or parameter layout, or saved by
                another optimizer (per-path buffers, or groups without SGD's
                hyperparameters).
        """
        check_state_layout(state_dict, self.param_groups, self.n_paths, "sgd", self.defaults,
                           "another optimizer (e.g. p_adam_saga), not by sgd")
        for key, st in state_dict["state"].items():
            foreign = sorted(k for k in (st if isinstance(st, Mapping) else {}) if k != "momentum_buffer")
            if not isinstance(st, Mapping) or foreign:
                raise ValueError(f"sgd state of parameter {key!r} holds {foreign or type(st).__name__}: "
                                 "it was saved by another optimizer, not by sgd")
        sd = dict(state_dict)
        sd.pop("n_paths", None)
        torch.optim.SGD.load_state_dict(self, sd)

    def __repr__(self) -> str:
        return f"PathSGD(P={self.n_paths})\n" + torch.optim.SGD.__repr__(self)
