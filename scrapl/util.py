"""The reference's module path ``scrapl.util`` (``ReadOnlyTensorDict``)."""

from scrapl.compat.tensor_dict import ReadOnlyTensorDict

__all__ = ["ReadOnlyTensorDict"]
