"""``ReadOnlyTensorDict`` of the reference's ``scrapl.util`` (also ``scrapl.util``)."""

from __future__ import annotations

from typing import Iterator

from torch import Tensor, nn

__all__ = ["ReadOnlyTensorDict"]


class ReadOnlyTensorDict(nn.Module):
    """A mapping of names (str or int) to tensors held as buffers ``tensor_<key>``, so
    they follow ``.to(device)`` and, with ``persistent=True``, the ``state_dict``.

    As in the reference, ``keys`` is the set of keys (an attribute, not a method);
    ``d[key]``, ``key in d``, ``len(d)``, ``iter(d)``, ``values()`` and ``items()``
    work as for a dict.
    """

    def __init__(self, data: dict[str | int, Tensor], persistent: bool = True) -> None:
        super().__init__()
        self.persistent = persistent
        self.keys = set(data.keys())
        for k, v in data.items():
            self.register_buffer(f"tensor_{k}", v, persistent=persistent)

    def __getitem__(self, key: str | int) -> Tensor:
        return self.get_buffer(f"tensor_{key}")

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[str | int]:
        return iter(self.keys)

    def values(self) -> Iterator[Tensor]:
        for k in self.keys:
            yield self[k]

    def items(self) -> Iterator[tuple[str | int, Tensor]]:
        for k in self.keys:
            yield k, self[k]
