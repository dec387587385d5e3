"""Depth: Depth Anything estimation and temporal stabilisation (METHOD.md sections 1-2)."""

from __future__ import annotations

from framematrix.depth.cache import (
    compute_depth,
    depth_cache_key,
    load_cached_depth,
    save_cached_depth,
    stabilize_only,
)
from framematrix.depth.config import DEPTH_MODEL_ALIASES, DepthConfig
from framematrix.depth.estimate import (
    DepthModel,
    depth_input_size,
    estimate_depth,
    load_depth_model,
    preprocess,
)
from framematrix.depth.flow import DisFlow, FlowEstimator, RaftFlow, load_raft, make_flow
from framematrix.depth.stabilize import consecutive_flows, stabilize_depth, temporal_flicker

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
