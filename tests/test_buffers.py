"""BufferPool: the chunk buffers a conversion reuses (memory that does not grow per chunk)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framematrix.buffers import BufferPool
from framematrix.geometry.build import build_frame_matrix


def test_same_name_reuses_memory_and_grows_only_when_needed() -> None:
    pool = BufferPool()
    a = pool.take("x", (4, 5), torch.float32)
    ptr = a.data_ptr()
    b = pool.take("x", (2, 3), torch.float32)  # smaller: the same memory
    assert b.shape == (2, 3) and b.data_ptr() == ptr and b.is_contiguous()
    assert pool.nbytes == 4 * 5 * 4
    c = pool.take("x", (10, 10), torch.float32)  # larger: a new buffer replaces the old
    assert c.shape == (10, 10) and pool.nbytes == 100 * 4
    d = pool.take("x", (10, 10), torch.bool)  # another dtype: not reinterpreted memory
    assert d.dtype == torch.bool and pool.nbytes == 100
    other = pool.take("y", (3,), torch.float32)
    assert other.data_ptr() != d.data_ptr()
    pool.clear()
    assert pool.nbytes == 0


@pytest.mark.parametrize("kind", ["metric", "disparity-px", "relative"])
def test_a_matrix_built_in_a_pool_equals_one_built_without(kind: str) -> None:
    """Chunks of other sizes one after the other through one pool give the matrices built
    without it (stale contents of a reused buffer never leak into a chunk)."""
    rng = np.random.default_rng(3)
    pool = BufferPool()
    for frames_n, h, w in ((3, 24, 32), (2, 24, 32), (3, 16, 40)):
        frames = rng.integers(0, 255, (frames_n, h, w, 3), dtype=np.uint8)
        low = -2.0 if kind == "disparity-px" else 1.0  # signed disparity: some behind the knee
        depth = rng.uniform(low, 5.0, (frames_n, h, w)).astype(np.float32)
        kwargs = {"views": 4, "baseline": 0.08, "focal": 300.0, "depth_kind": kind}
        plain = build_frame_matrix(frames, depth, **kwargs)
        pooled = build_frame_matrix(frames, depth, buffers=pool, **kwargs)
        torch.testing.assert_close(pooled.images, plain.images, rtol=0, atol=0)
        assert torch.equal(pooled.masks, plain.masks)
    assert pool.nbytes > 0
