"""Module path ``scrapl.scrapl_loss`` of scrapl-loss 0.1.0 (``from scrapl.scrapl_loss import
SCRAPLLoss``, also a ``class_path`` in YAML configs): the drop-in of :mod:`scrapl.compat`."""

from scrapl.compat.loss import SCRAPLLoss

__all__ = ["SCRAPLLoss"]
