"""Reusable working memory for the chunk-by-chunk conversion.

Every chunk of a long conversion needs the same large tensors (the frame matrix of the chunk:
images, masks and target depth). Allocating them afresh each chunk costs more than the work on
small frames: the allocator maps fresh pages from the system and the kernel zeroes every one of
them on first touch (at 1080p well over a GB per chunk). A :class:`BufferPool` hands out the
same memory again instead, so the pages are touched once per conversion and the peak stays put.
"""

from __future__ import annotations

import math

import torch

__all__ = ["BufferPool"]


class BufferPool:
    """Named buffers, each reused by the next :meth:`take` of the same name.

    A taken tensor is valid until the next :meth:`take` of its name: the caller must be done
    with it (and with every view of it) by then. Buffers only grow; :meth:`clear` frees them.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A contiguous tensor of ``shape`` and ``dtype`` on ``device`` with undefined contents
        (like :func:`torch.empty`), on the memory of the last one of this name when it fits."""
        numel = math.prod(shape)
        device = torch.device(device)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.dtype != dtype
            or buffer.device != device
            or buffer.numel() < numel
        ):
            self._buffers.pop(name, None)  # freed before the larger one is allocated
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())
