"""The fast CPU paths give exactly the results of the plain ones."""

from __future__ import annotations

import numpy as np
import torch

import framematrix.geometry.cleanup as cleanup
from framematrix.matrix import to_uint8_rounded


def test_opencv_cleanup_decisions_equal_the_torch_ones(monkeypatch):
    rng = np.random.default_rng(0)
    for trial in range(12):
        planes = int(rng.integers(1, 7))
        shape = (2, int(rng.integers(2, 30)), int(rng.integers(2, 30)))
        ids = rng.integers(0, planes + 1, shape)
        if trial % 2:  # blocky layers, as real warps give
            ids = np.repeat(ids[:, :, ::4], 4, axis=2)[:, :, : shape[2]]
        ids = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.uint8))
        monkeypatch.setattr(cleanup, "_USE_OPENCV", False)
        plain = cleanup.plan_cleanup(ids, planes)
        monkeypatch.setattr(cleanup, "_USE_OPENCV", True)
        fast = cleanup.plan_cleanup(ids, planes)
        for field in ("covered", "own", "fill_index", "fill_neighbours", "fill_weights"):
            assert torch.equal(getattr(plain, field), getattr(fast, field)), (trial, field)


def test_opencv_layer_ids_equal_the_torch_ones(monkeypatch):
    rng = np.random.default_rng(1)
    for trial in range(10):
        planes = int(rng.integers(1, 9))
        z = rng.uniform(0.5, 4.0, (3, int(rng.integers(2, 40)), int(rng.integers(2, 40))))
        z = z.astype(np.float32)
        z[rng.random(z.shape) < 0.2] = np.inf  # holes
        z[1, 0, :2] = (1.0, 2.0)  # repeated values: some land exactly on a split
        z[1, 1:, :] = np.where(rng.random(z[1, 1:].shape) < 0.5, 1.0, 2.0)
        if trial == 3:
            z[2] = np.inf  # an image where nothing landed
        target = torch.from_numpy(z)
        monkeypatch.setattr(cleanup, "_USE_OPENCV", False)
        plain = cleanup.layer_ids(target, planes)
        monkeypatch.setattr(cleanup, "_USE_OPENCV", True)
        fast = cleanup.layer_ids(target, planes)
        assert fast.dtype == torch.uint8 and fast.shape == target.shape
        assert torch.equal(plain, fast), trial
        assert int(fast.max()) == planes  # holes are the uncovered slot


def test_to_uint8_rounded_is_the_torch_expression_bit_for_bit():
    edges = torch.tensor([k / 255 for k in range(256)] + [(k + 0.5) / 255 for k in range(255)])
    values = torch.cat([torch.rand(300_001), edges, torch.tensor([-0.5, 1.5, 0.0, 1.0])])
    values = values.view(-1, 1).expand(-1, 3).contiguous()
    expected = (values.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    assert np.array_equal(to_uint8_rounded(values), expected)
    assert np.array_equal(to_uint8_rounded(values.numpy().astype(np.float64)), expected)
