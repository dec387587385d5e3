"""Depth maps to camera depth z (METHOD.md 3.1)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from framematrix.errors import InputError, ShapeError

DEPTH_KINDS = ("relative", "metric", "disparity-px")

# keeps z = 1 / disparity finite for zero or negative disparity (such pixels do not move)
DISPARITY_EPS = 1e-6


def _as_float_tensor(depth: torch.Tensor | np.ndarray) -> torch.Tensor:
    depth = torch.as_tensor(depth)
    if depth.ndim != 3:
        raise ShapeError(f"depth must be [F, H, W], got shape {tuple(depth.shape)}")
    integer = (torch.uint8, torch.int16, torch.int32, torch.int64)
    if not (depth.dtype.is_floating_point or depth.dtype in integer):
        raise ShapeError(f"depth must be a float or integer map, got dtype {depth.dtype}")
    return depth.to(torch.float32)


def _warn_unknown(finite: torch.Tensor) -> None:
    unknown = int((~finite).sum().item())
    if unknown:
        warnings.warn(
            f"depth has {unknown} NaN/inf values; those source pixels are treated as unknown "
            "and are not warped (they become holes)",
            RuntimeWarning,
            stacklevel=3,
        )


def depth_to_z(
    depth: torch.Tensor | np.ndarray,
    kind: str = "relative",
    near: float | None = None,
    far: float | None = 10.0,
) -> torch.Tensor:
    """Camera depth z of every source pixel, ``[F, H, W]`` float32 (NaN = unknown).

    Args:
        depth: ``[F, H, W]`` depth maps of one clip.
        kind: ``relative``: inverse depth (large = near), e.g. Depth Anything. It is normalised
            over the WHOLE clip, ``d = (d - min) / (max - min)``; then ``d /= near`` if near > 0,
            ``d += 1 / far`` if far > 0, and ``z = 1 / (d + 1e-6)`` (defaults: z in [0.91, 10]).
            ``metric``: depth z in scene units, used as given (must be > 0).
            ``disparity-px``: pixel disparity between the two end eyes; z = 1 / max(d, 1e-6)
            only orders surfaces (the warp uses the disparity itself, see ``warp_to_offsets``).
        near, far: normalisation of ``relative`` depth (ignored otherwise).

    NaN/inf values are unknown: they stay NaN in z, the warp skips them (holes), and one
    ``RuntimeWarning`` is emitted. A relative depth with zero range raises ``InputError``.
    """
    if kind not in DEPTH_KINDS:
        raise ShapeError(f"depth kind must be one of {DEPTH_KINDS}, got {kind!r}")
    depth = _as_float_tensor(depth)
    finite = torch.isfinite(depth)
    all_finite = bool(finite.all().item())
    if not all_finite:
        if not bool(finite.any().item()):
            raise InputError("depth has no finite value (all NaN/inf)")
        _warn_unknown(finite)
    nan = torch.tensor(float("nan"), dtype=torch.float32, device=depth.device)

    if kind == "relative":
        valid = depth if all_finite else depth[finite]
        low, high = valid.min(), valid.max()
        if bool((high == low).item()):
            raise InputError(
                f"depth has zero range (min == max == {float(low):g}); relative depth cannot "
                "be normalised"
            )
        d = (depth - low) / (high - low)
        if near is not None and near > 0:
            d = d / near
        if far is not None and far > 0:
            d = d + 1.0 / far
        z = 1.0 / (d + 1e-6)
    elif kind == "metric":
        if bool((depth[finite] <= 0).any().item()):
            raise InputError("metric depth must be > 0 everywhere it is finite")
        z = depth.clone()
    else:
        z = 1.0 / depth.clamp_min(DISPARITY_EPS)
    if not all_finite:
        z = torch.where(finite, z, nan)
    return z
