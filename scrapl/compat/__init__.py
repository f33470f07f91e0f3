"""Compatibility layer: the drop-in ``SCRAPLLoss`` of ``scrapl-loss`` 0.1.0 and its
gradient hooks (:mod:`scrapl.compat.hooks`).  The reference's module paths
``scrapl.scrapl_loss`` and ``scrapl.util`` re-export from here; docs/compat.md maps
every reference name."""

from __future__ import annotations

from scrapl.compat.hooks import PathGradHooks
from scrapl.compat.loss import SCRAPLLoss
from scrapl.compat.tensor_dict import ReadOnlyTensorDict

__all__ = ["PathGradHooks", "ReadOnlyTensorDict", "SCRAPLLoss"]
