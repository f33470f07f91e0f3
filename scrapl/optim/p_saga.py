"""P-SAGA over raw gradients, then SGD."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from scrapl.interfaces import PathSource
from scrapl.optim.base import PathOptimizerBase

__all__ = ["PSAGA"]


class PSAGA(PathOptimizerBase):
    """P-SAGA: SAGA variance reduction across paths on the raw gradient, then SGD.

    With ``G`` the paths seen before this step and ``g_hat_q`` the last gradient of
    path ``q``::

        d = g - g_hat_p + sum_{q in G} g_hat_q / max(1, |G|)
        w <- w - lr * (d + weight_decay * w);   g_hat_p = g

    The step is proportional to the gradient: ``lr`` depends on the loss scale.

    Args:
        params: parameters or parameter groups.
        n_paths: number of paths ``P``.
        path_source: callable returning the current path (or ``None``).
        lr: learning rate (>= 0).
        weight_decay: L2 weight decay (>= 0).
        state_dtype: dtype of the stored per-path gradients.
        state_device: their device (``None``: the parameter's).
    """

    use_p_adam = False
    use_p_saga = True
    display_name = "P-SAGA"

    def __init__(
        self,
        params: Iterable[Any],
        n_paths: int,
        *,
        path_source: Optional[PathSource] = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        state_dtype: str = "float32",
        state_device: Optional[str] = None,
    ) -> None:
        super().__init__(
            params,
            n_paths,
            path_source=path_source,
            lr=lr,
            weight_decay=weight_decay,
            state_dtype=state_dtype,
            state_device=state_device,
        )
