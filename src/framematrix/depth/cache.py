"""Depth for a clip, with an on-disk cache so stereo settings can change without recomputing.

``compute_depth`` is the entry point of the pipeline: Depth Anything, then (optionally) the
temporal stabilisation, each result cached under a key of everything it depends on. The raw
depth and the stabilised depth are cached separately, so changing only the stabilisation
settings does not rerun Depth Anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from framematrix.depth.config import DepthConfig, resolve_device, resolve_dtype
from framematrix.depth.estimate import DepthModel, estimate_depth, load_depth_model
from framematrix.depth.flow import FlowEstimator, make_flow
from framematrix.depth.stabilize import stabilize_depth
from framematrix.errors import InputError, ShapeError

_CONTENT_HASH_LIMIT = 64 * 1024 * 1024  # inputs up to this size are hashed by content
_CACHE_VERSION = 1  # bump when the algorithm changes what a key's depth would be


def _hash_file(path: Path, digest: Any) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _fingerprint_input(path: Path, digest: Any) -> None:
    stat = path.stat()
    if path.is_file() and stat.st_size <= _CONTENT_HASH_LIMIT:
        digest.update(b"content:")
        _hash_file(path, digest)
    else:
        digest.update(f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())


def depth_cache_key(input_path: str | os.PathLike, settings: dict) -> str:
    """Cache key (hex) of an input and the settings that decide its depth.

    A file up to 64 MiB is identified by its content, a larger one by its resolved path, size
    and modification time; a folder (image sequence) by every file in it the same way.
    settings: JSON-serialisable dict (non-JSON values are converted with str).
    Raises InputError when the input does not exist.
    """
    path = Path(input_path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    digest = hashlib.sha256(f"framematrix-depth-v{_CACHE_VERSION}".encode())
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            _fingerprint_input(child, digest)
    else:
        _fingerprint_input(path, digest)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _cache_file(cache_dir: str | os.PathLike, key: str) -> Path:
    if not key or not all(c.isalnum() or c in "-_" for c in key):
        raise ValueError(f"cache key must be alphanumeric, got {key!r}")
    return Path(cache_dir) / f"depth-{key}.npy"


def load_cached_depth(cache_dir: str | os.PathLike, key: str) -> np.ndarray | None:
    """The cached [F, H, W] float32 depth of ``key``, or None when absent or unreadable."""
    path = _cache_file(cache_dir, key)
    if not path.is_file():
        return None
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a truncated or foreign file is a cache miss, recomputed and replaced
    if depth.ndim != 3 or depth.dtype != np.float32:
        return None
    return depth


def save_cached_depth(cache_dir: str | os.PathLike, key: str, depth: np.ndarray) -> Path:
    """Write [F, H, W] depth as float32 .npy atomically (temporary name, then os.replace)."""
    if not isinstance(depth, np.ndarray) or depth.ndim != 3:
        raise ShapeError(f"depth must be a [F, H, W] array, got {getattr(depth, 'shape', '')}")
    path = _cache_file(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            np.save(tmp, np.ascontiguousarray(depth, np.float32), allow_pickle=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _weights_identity(path: str | os.PathLike | None) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        return str(p)
    stat = p.stat()
    return f"{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def estimation_settings(config: DepthConfig) -> dict:
    """Settings that decide the raw Depth Anything output."""
    device = resolve_device(config.device)
    return {
        "model": config.model_name,
        "input_size": config.input_size,
        "multiple": config.multiple,
        "dtype": str(resolve_dtype(config.dtype, device)),
        "device_type": device.type,
    }


def stabilization_settings(config: DepthConfig, flow_name: str | None = None) -> dict:
    """Settings that decide the stabilisation of a given raw depth."""
    return {
        "flow": flow_name or config.flow,
        "flow_weights": _weights_identity(config.flow_weights),
        "raft_iters": config.raft_iters,
        "window": config.window,
        "rgb_threshold": config.rgb_threshold,
        "depth_threshold": config.depth_threshold,
        "weight_base": config.weight_base,
        "guided_radius": config.guided_radius,
        "guided_eps": config.guided_eps,
    }


def _frames_digest(frames: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(str(frames.shape).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def _key(settings: dict, frames_digest: str, input_id: str | os.PathLike | None) -> str:
    full = {"settings": settings, "frames": frames_digest}
    if input_id is not None and Path(input_id).exists():
        return depth_cache_key(input_id, full)
    full["input_id"] = None if input_id is None else str(input_id)
    payload = f"framematrix-depth-v{_CACHE_VERSION}" + json.dumps(full, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ShapeError(
            "frames must be a [F, H, W, 3] uint8 array, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    if frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ShapeError(f"frames must be [F >= 1, H, W, 3], got shape {frames.shape}")


def flow_for(config: DepthConfig, progress: bool = False) -> FlowEstimator:
    """The flow estimator that ``config`` asks for (see make_flow for ``auto``)."""
    return make_flow(
        config.flow,
        config.flow_weights,
        device=resolve_device(config.device),
        iters=config.raft_iters,
        batch_size=config.flow_batch_size,
        progress=progress,
    )


def stabilize_only(
    frames: np.ndarray,
    depth: np.ndarray,
    config: DepthConfig | None = None,
    progress: bool = True,
    flow: FlowEstimator | None = None,
) -> np.ndarray:
    """Stabilise a given depth clip with the flow that ``config`` names.

    frames: [F, H, W, 3] uint8; depth: [F, H, W] float (e.g. a user-supplied depth sequence).
    Returns [F, H, W] float32 >= 0.
    """
    config = config or DepthConfig()
    flow = flow or flow_for(config, progress=False)
    return stabilize_depth(frames, depth, flow, config, progress=progress)


def compute_depth(
    frames: np.ndarray,
    config: DepthConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    input_id: str | os.PathLike | None = None,
    progress: bool = True,
    model: DepthModel | None = None,
    flow: FlowEstimator | None = None,
) -> np.ndarray:
    """Depth of a clip: Depth Anything, then the temporal stabilisation if config.stabilize.

    frames: [F, H, W, 3] uint8 RGB. config: DepthConfig (paper defaults).
    cache_dir: folder of cached results (None = no cache). A result is reused only when the
        frames (hashed), the relevant settings and ``input_id`` all match.
    input_id: the input file or folder (fingerprinted with depth_cache_key) or any string.
    model / flow: already loaded ones to reuse (else loaded from config; the model only when
        the raw depth is not cached).
    Returns [F, H, W] float32 relative inverse depth (large = near), >= 0.
    """
    _check_frames(frames)
    config = config or DepthConfig()
    digest = _frames_digest(frames) if cache_dir is not None else ""

    raw_key = _key(estimation_settings(config), digest, input_id) if cache_dir else None
    raw = load_cached_depth(cache_dir, raw_key) if raw_key else None
    if raw is not None and raw.shape != frames.shape[:3]:
        raw = None
    if raw is None:
        model = model or load_depth_model(
            config.model,
            config.device,
            config.dtype,
            local_files_only=None if config.allow_download else True,
        )
        raw = estimate_depth(
            frames, model, config.batch_size, progress, config.input_size, config.multiple
        )
        if raw_key:
            save_cached_depth(cache_dir, raw_key, raw)
    if not config.stabilize or frames.shape[0] < 2:
        return raw

    flow = flow or flow_for(config, progress=False)
    stab_key = None
    if cache_dir:
        settings = {"raw": raw_key, **stabilization_settings(config, flow.name)}
        stab_key = _key(settings, digest, input_id)
        cached = load_cached_depth(cache_dir, stab_key)
        if cached is not None and cached.shape == frames.shape[:3]:
            return cached
    stable = stabilize_depth(frames, raw, flow, config, progress=progress)
    if stab_key:
        save_cached_depth(cache_dir, stab_key, stable)
    return stable
