"""Path bookkeeping shared by the loss and the path-aware optimizers (a leaf).

A :class:`PathTracker` records which path each training forward of the loss used
and hands the step's path to the optimizer once (:meth:`PathTracker.consume_path`,
the optimizers' ``path_source``).  It holds no tensors and no randomness.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any, Mapping, Optional

__all__ = ["PathTracker", "HELD_PATH_WARN_AFTER"]

HELD_PATH_WARN_AFTER = 1000
"""Warn (once) when one held path served this many training forwards without
:meth:`PathTracker.consume_path` (usually a plain optimizer that never consumes it,
so the loss is stuck on one path)."""


class PathTracker:
    """What the training forwards did, per optimizer step and overall.

    Attributes:
        curr_path_idx: path of the last forward (any mode), ``None`` before.
        path_counts: training forwards per path.
        scrapl_t: number of training forwards.
        last_train_path: path of the last training forward whose result required
            grad (the path the ``attach_params`` gradient hooks attribute gradients to).
        step_paths: distinct paths of such forwards since the last
            :meth:`consume_path`, in order.
        held_path: with ``path_per_step``, the path reused until
            :meth:`consume_path`.
    """

    def __init__(self, path_per_step: bool) -> None:
        self.path_per_step = path_per_step
        self.curr_path_idx: Optional[int] = None
        self.path_counts: defaultdict[int, int] = defaultdict(int)
        self.scrapl_t = 0
        self.last_train_path: Optional[int] = None
        self.step_paths: list[int] = []
        self.held_path: Optional[int] = None
        self._held_uses = 0
        self._warned_held = False

    def held(self) -> Optional[int]:
        """The path to reuse for an unseeded training forward, or ``None`` (draw one).
        Warns once if it has been reused :data:`HELD_PATH_WARN_AFTER` times."""
        if not self.path_per_step or self.held_path is None:
            return None
        self._held_uses += 1
        if self._held_uses >= HELD_PATH_WARN_AFTER and not self._warned_held:
            self._warned_held = True
            warnings.warn(
                f"SCRAPLLoss(path_per_step=True) has reused path {self.held_path} for {self._held_uses} training "
                "forwards: nothing called consume_path(). Use the optimizer from scrapl.build(...).optimizer (it "
                "consumes the path at each step), call loss.consume_path() after each optimizer step, or use "
                "path_per_step=False",
                RuntimeWarning,
                stacklevel=4,
            )
        return self.held_path

    def record_train(self, i: int, feeds_grad: bool) -> None:
        """Record a training forward on path ``i`` (``feeds_grad``: its result
        requires grad, so it contributes to the step's gradient)."""
        self.curr_path_idx = i
        self.path_counts[i] += 1
        self.scrapl_t += 1
        if self.path_per_step and self.held_path is None:
            self.held_path = i
            self._held_uses = 1
        if feeds_grad:
            self.last_train_path = i
            if i not in self.step_paths:
                self.step_paths.append(i)

    def consume_path(self) -> Optional[int]:
        """The path of the training forwards since the last call, and release it.

        Returns:
            the path index, or ``None`` if no forward fed a gradient.

        Raises:
            RuntimeError: those forwards used different paths (the accumulated
                gradient mixes paths); the record is cleared first.
        """
        paths, self.step_paths = self.step_paths, []
        self.held_path = None
        self._held_uses = 0
        if not paths:
            return None
        if len(paths) > 1:
            raise RuntimeError(
                f"the gradient of this step mixes SCRAPL paths {paths}: several training forwards since the "
                "last optimizer step used different paths, so the path-aware optimizer cannot attribute the "
                "gradient to one path. Use path_per_step=True (training forwards then reuse one path until the "
                "optimizer step), or run one loss forward per optimizer step; with path_idx=/seed= forwards, "
                "pass the same path to every forward of a step"
            )
        return paths[0]

    def clear(self) -> None:
        """Forget everything recorded."""
        self.__init__(self.path_per_step)  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        """Plain ints, lists and dicts (``torch.load(weights_only=True)`` reads them)."""
        return {
            "path_counts": {int(k): int(v) for k, v in self.path_counts.items()},
            "scrapl_t": int(self.scrapl_t),
            "curr_path_idx": self.curr_path_idx,
            "last_train_path": self.last_train_path,
            "step_paths": list(self.step_paths),
            "held_path": self.held_path,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated first, then applied).

        Raises:
            ValueError: missing keys or values of the wrong kind, naming the key.
        """
        missing = [k for k in ("path_counts", "scrapl_t", "curr_path_idx") if k not in state]
        if missing:
            raise ValueError(f"path tracker state is missing keys {missing}")

        def index(key: str) -> Optional[int]:
            value = state.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"path tracker state[{key!r}] must be a path index or None, got {value!r}")
            return value

        try:
            counts = defaultdict(int, {int(k): int(v) for k, v in dict(state["path_counts"]).items()})
            scrapl_t = int(state["scrapl_t"])
            step_paths = [int(i) for i in state.get("step_paths", [])]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path tracker state: path_counts, scrapl_t and step_paths must hold integers ({exc})") from None
        curr, last, held = index("curr_path_idx"), index("last_train_path"), index("held_path")
        self.path_counts, self.scrapl_t, self.step_paths = counts, scrapl_t, step_paths
        self.curr_path_idx, self.last_train_path, self.held_path = curr, last, held
        self._held_uses = 0
