"""The reference's names for the JTFS of a drop-in loss: ``loss.jtfs`` and ``loss.meta``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scrapl.transforms.jtfs import JTFS

__all__ = ["ReferenceJTFSNames", "jtfs_meta"]


class ReferenceJTFSNames:
    """A view of a :class:`~scrapl.transforms.jtfs.JTFS` with the reference's
    attribute names: ``Q = (Q1, Q2)``, ``Q_fr = (Q_fr,)``, ``J``, ``J_fr``, ``T``,
    ``F`` and ``shape = (N,)``.  Every other attribute is the module's own (the module
    itself: :attr:`module`)."""

    def __init__(self, module: JTFS) -> None:
        self.module = module
        c = module.config
        self.Q = (c.Q1, c.Q2)
        self.Q_fr = (c.Q_fr,)
        self.J = c.J
        self.J_fr = c.J_fr
        self.T = module.T
        self.F = module.F
        self.shape = (c.shape,)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"ReferenceJTFSNames({self.module!r})"


def jtfs_meta(module: JTFS) -> dict[str, Any]:
    """The reference's ``meta`` columns for every output channel of ``module``: the
    first-order channels ``(n_fr,)``, then the paths ``(n2, n_fr)``."""
    nan = math.nan
    by_fr: dict[int, Any] = {}
    rows = []
    for info in module.path_infos:
        e = info.extra
        fr = (e["xi_fr"], e["sigma_fr"], e["j_fr"], info.spin)
        by_fr.setdefault(e["n_fr"], fr)
        rows.append((tuple(info.key), 2, e["n_fr"], (nan, e["xi2"]), (nan, e["sigma2"]), (nan, e["j2"]), fr))
    first = [((k[0],), 1, k[0], (nan, nan), (nan, nan), (nan, nan), by_fr[k[0]]) for k in module.first_order_keys]
    table = first + rows
    return {
        "key": [r[0] for r in table],
        "order": np.array([r[1] for r in table], dtype=np.float64),
        "n_fr": np.array([r[2] for r in table], dtype=np.float64),
        "xi": np.array([r[3] for r in table], dtype=np.float64),
        "sigma": np.array([r[4] for r in table], dtype=np.float64),
        "j": np.array([r[5] for r in table], dtype=np.float64),
        "xi_fr": np.array([r[6][0] for r in table], dtype=np.float64),
        "sigma_fr": np.array([r[6][1] for r in table], dtype=np.float64),
        "j_fr": np.array([r[6][2] for r in table], dtype=np.float64),
        "spin": np.array([r[6][3] for r in table], dtype=np.float64),
    }
