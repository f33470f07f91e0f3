"""Reusable CPU work buffers of one JTFS module (:class:`BufferPool`).

A one-path training step allocates and frees a few hundred MiB of large temporaries
(the scaled and padded input, its spectra, inverse-FFT planes, second-order rows,
their gradients).  With glibc's
default ``malloc`` the freed memory at the top of the heap is returned to the
kernel at the end of each step and faulted in again, page by page, in the next one:
measured on the paper configuration, 5 000 to 14 000 page faults and 10-25 % of the
step.  The pool keeps those buffers instead and hands them out again once nothing
uses them any more.

"Nothing uses them": a buffer is handed out as a *view* of a pooled base tensor; the
base is free again when no other tensor shares its storage, i.e. when every view
(including those autograd saved for the backward pass, which are released when the
graph is freed) is gone.  So a buffer can never be handed out twice while in use,
whatever the caller keeps, and ``retain_graph=True`` is safe.

Sizes are rounded up to eight classes per octave, and a request takes the smallest
free buffer of up to twice its size, so buffers are shared between the different
shapes of different paths.  The
pool grows to the buffers of the largest calls, in a few sizes (about 260 MiB over all
paths of the paper setting at batch 4); :meth:`BufferPool.clear` releases it.  Accelerator tensors are never pooled (their caching allocators do
this already).

Grad modes: the pool only ever holds normal tensors (a base allocated under
``torch.inference_mode()`` is made outside it), so calls under ``inference_mode``,
``no_grad`` and with gradients can follow each other in any order.
"""

from __future__ import annotations

import functools
import math
import threading

import torch
from torch import Tensor

__all__ = ["BufferPool"]

#: Buffers smaller than this many bytes are allocated normally (malloc reuses them
#: well, and pooling costs a lookup).
MIN_POOLED_BYTES: int = 1 << 16


def _storage_users(t: Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


@functools.lru_cache(maxsize=1)
def _alone() -> int:
    """Users of the storage of a tensor that nothing else shares (the tensor itself
    and the temporary storage object of the query).  Measured on first use, not at
    import: a tensor created while the package is imported made spawned
    ``torch.distributed`` workers abort at exit now and then."""
    return _storage_users(torch.empty(1))


def _size_class(n: int) -> int:
    """Smallest ``m * 2**k`` with ``8 <= m < 16`` that is at least ``n``."""
    if n <= 16:
        return 16
    k = max(0, (n - 1).bit_length() - 4)
    return -(-n // (1 << k)) << k


@functools.lru_cache(maxsize=4096)
def _candidates(n: int) -> tuple[int, ...]:
    """The size classes a request for ``n`` elements may use: from its own class up to
    ``2 n``, ascending."""
    size, out = _size_class(n), []
    while size <= max(2 * n, _size_class(n)):
        out.append(size)
        size = _size_class(size + 1)
    return tuple(out)


class BufferPool:
    """Per-module pool of reusable CPU buffers (see the module docs).

    Thread-safe: a buffer is taken under a lock, so two threads never get the same
    one.  Copying a module (``deepcopy``, pickling) gives the copy an empty pool.
    """

    def __init__(self) -> None:
        self._bases: dict[tuple[torch.dtype, int], list[Tensor]] = {}
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...] | list[int], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Uninitialised contiguous tensor of ``shape`` on ``like``'s device with
        ``dtype`` (default ``like.dtype``); from the pool on the CPU."""
        dtype = like.dtype if dtype is None else dtype
        n = math.prod(shape)
        if like.device.type != "cpu" or n * dtype.itemsize < MIN_POOLED_BYTES:
            return torch.empty(shape, dtype=dtype, device=like.device)
        classes = _candidates(n)
        alone = _alone()
        with self._lock:
            # best fit: the smallest free buffer of up to twice the size
            for c in classes:
                for base in self._bases.get((dtype, c), ()):
                    if _storage_users(base) == alone:
                        return base[:n].view(shape)  # the view marks it as used
            # a normal tensor even under ``torch.inference_mode()``: an inference-mode
            # base would poison the pool for every later grad-mode call ("Inplace
            # update to inference tensor outside InferenceMode")
            with torch.inference_mode(False):
                base = torch.empty(classes[0], dtype=dtype)
            self._bases.setdefault((dtype, classes[0]), []).append(base)
            return base[:n].view(shape)

    @property
    def nbytes(self) -> int:
        """Bytes held by the pool (free and in use)."""
        with self._lock:
            return sum(b.numel() * b.element_size() for bases in self._bases.values() for b in bases)

    def clear(self) -> None:
        """Forget every buffer (those still in use stay valid until their users let
        them go; the memory then returns to the allocator)."""
        with self._lock:
            self._bases.clear()

    def __deepcopy__(self, memo: dict) -> "BufferPool":
        return BufferPool()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def __repr__(self) -> str:
        return f"BufferPool({self.nbytes / 2**20:.1f} MiB)"


def empty(pool: BufferPool | None, shape: tuple[int, ...] | list[int], like: Tensor,
          dtype: torch.dtype | None = None) -> Tensor:
    """``pool.empty(...)``, or a plain allocation when ``pool`` is ``None``."""
    if pool is None:
        return torch.empty(shape, dtype=like.dtype if dtype is None else dtype, device=like.device)
    return pool.empty(shape, like, dtype)


def zeros(pool: BufferPool | None, shape: tuple[int, ...] | list[int], like: Tensor,
          dtype: torch.dtype | None = None) -> Tensor:
    """:func:`empty`, zero-filled."""
    return empty(pool, shape, like, dtype).zero_()
