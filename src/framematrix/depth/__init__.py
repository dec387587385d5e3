"""Depth: Depth Anything estimation and temporal stabilisation (METHOD.md sections 1-2)."""

from __future__ import annotations

import importlib
from typing import Any

# Public names and their modules, imported on first use so that a light import (the
# CLI's --help, a config) does not pull in torch.
_LAZY = {
    "compute_depth": "framematrix.depth.cache",
    "depth_cache_key": "framematrix.depth.cache",
    "load_cached_depth": "framematrix.depth.cache",
    "save_cached_depth": "framematrix.depth.cache",
    "stabilize_only": "framematrix.depth.cache",
    "DEPTH_MODEL_ALIASES": "framematrix.depth.config",
    "DepthConfig": "framematrix.depth.config",
    "DepthModel": "framematrix.depth.estimate",
    "depth_input_size": "framematrix.depth.estimate",
    "estimate_depth": "framematrix.depth.estimate",
    "load_depth_model": "framematrix.depth.estimate",
    "preprocess": "framematrix.depth.estimate",
    "DisFlow": "framematrix.depth.flow",
    "FlowEstimator": "framematrix.depth.flow",
    "RaftFlow": "framematrix.depth.flow",
    "load_raft": "framematrix.depth.flow",
    "make_flow": "framematrix.depth.flow",
    "consecutive_flows": "framematrix.depth.stabilize",
    "stabilize_depth": "framematrix.depth.stabilize",
    "temporal_flicker": "framematrix.depth.stabilize",
}

__all__ = [
    "DEPTH_MODEL_ALIASES",
    "DepthConfig",
    "DepthModel",
    "DisFlow",
    "FlowEstimator",
    "RaftFlow",
    "compute_depth",
    "consecutive_flows",
    "depth_cache_key",
    "depth_input_size",
    "estimate_depth",
    "load_cached_depth",
    "load_depth_model",
    "load_raft",
    "make_flow",
    "preprocess",
    "save_cached_depth",
    "stabilize_depth",
    "stabilize_only",
    "temporal_flicker",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
