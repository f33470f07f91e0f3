"""Module path ``scrapl.util`` of scrapl-loss 0.1.0: re-exports ``ReadOnlyTensorDict``."""

from scrapl.compat.tensor_dict import ReadOnlyTensorDict

__all__ = ["ReadOnlyTensorDict"]
