"""Depth maps to camera depth z (METHOD.md 3.1)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from framematrix.buffers import BufferPool
from framematrix.errors import InputError, ShapeError

DEPTH_KINDS = ("relative", "metric", "disparity-px")

# signed pixel disparity: z = 1 / d above this many pixels, e^(1 - d) (scaled) below
DISPARITY_KNEE = 1.0


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
    *,
    value_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Camera depth z of every source pixel, ``[F, H, W]`` float32 (NaN = unknown).

    Args:
        depth: ``[F, H, W]`` depth maps of one clip.
        kind: ``relative``: inverse depth (large = near), e.g. Depth Anything. It is normalised
            over the WHOLE clip, ``d = (d - min) / (max - min)``; then ``d /= near`` if near > 0,
            ``d += 1 / far`` if far > 0, and ``z = 1 / (d + 1e-6)`` (defaults: z in [0.91, 10]).
            ``metric``: depth z in scene units, used as given (must be > 0).
            ``disparity-px``: signed pixel disparity between the two end eyes (larger = nearer;
            0 = the screen plane when the views are converged, negative = behind it). z only
            orders surfaces (the warp uses the disparity itself, see ``warp_to_offsets``):
            ``z = 1 / d`` for ``d >= 1`` px (the depth of a parallel rig up to scale) and
            ``e^(1 - d)`` below, which continues it smoothly and strictly decreasing to any
            negative disparity.
        near, far: normalisation of ``relative`` depth (ignored otherwise).
        value_range: ``(min, max)`` of the relative depth to normalise with instead of this
            array's own (e.g. the statistics of a whole shot applied to one chunk of it; with
            the array's own min and max the result is identical). Only for ``relative``.

    NaN/inf values are unknown: they stay NaN in z, the warp skips them (holes), and one
    ``RuntimeWarning`` is emitted. A relative depth with zero range raises ``InputError``.
    """
    return _depth_to_z(depth, kind, near, far, value_range=value_range, copy=True)


def _depth_to_z(
    depth: torch.Tensor | np.ndarray,
    kind: str,
    near: float | None,
    far: float | None,
    *,
    value_range: tuple[float, float] | None = None,
    copy: bool = True,
) -> torch.Tensor:
    """:func:`depth_to_z`; with ``copy=False`` a float32 metric depth that is all valid is
    returned as is (no copy; the caller must not modify it)."""
    return _depth_to_z_checked(depth, kind, near, far, value_range=value_range, copy=copy)[0]


def _depth_to_z_checked(
    depth: torch.Tensor | np.ndarray,
    kind: str,
    near: float | None,
    far: float | None,
    *,
    value_range: tuple[float, float] | None = None,
    copy: bool = True,
    buffers: BufferPool | None = None,
) -> tuple[torch.Tensor, bool]:
    """:func:`_depth_to_z` and whether every depth value was finite; with ``buffers`` the
    pixel disparity's z is made in the pool's memory (``z`` and ``z_work``)."""
    if kind not in DEPTH_KINDS:
        raise ShapeError(f"depth kind must be one of {DEPTH_KINDS}, got {kind!r}")
    if value_range is not None and kind != "relative":
        raise ShapeError(f"value_range is only for relative depth, not {kind!r}")
    depth = _as_float_tensor(depth)
    # min and max in one pass; both finite <=> every value is (NaN propagates)
    extremes = torch.aminmax(depth) if depth.numel() else None
    all_finite = extremes is not None and bool(torch.isfinite(torch.stack(extremes)).all())
    finite = None
    if not all_finite:
        finite = torch.isfinite(depth)
        if not bool(finite.any().item()):
            raise InputError("depth has no finite value (all NaN/inf)")
        _warn_unknown(finite)

    # in-place float32 steps: the same operations (and values) as the plain expressions in the
    # comments, without a full-size temporary per step
    if kind == "relative":
        if value_range is not None:
            low, high = (torch.tensor(float(v), dtype=torch.float32) for v in value_range)
            if not (torch.isfinite(low) and torch.isfinite(high)):
                raise ShapeError(f"value_range must be finite, got {value_range!r}")
        elif all_finite:
            low, high = extremes
        else:
            valid = depth[finite]
            low, high = valid.min(), valid.max()
        low, high = low.to(depth.device), high.to(depth.device)
        if bool((high == low).item()):
            raise InputError(
                f"depth has zero range (min == max == {float(low):g}); relative depth cannot "
                "be normalised"
            )
        z = torch.sub(depth, low).div_(high - low)  # (depth - low) / (high - low)
        if near is not None and near > 0:
            z.div_(near)  # d / near
        if far is not None and far > 0:
            z.add_(1.0 / far)  # d + 1 / far
        z.add_(1e-6).reciprocal_()  # 1 / (d + 1e-6)
    elif kind == "metric":
        if all_finite:
            nonpositive = bool((extremes[0] <= 0).item())
        else:
            nonpositive = bool(((depth <= 0) & finite).any().item())
        if nonpositive:
            raise InputError("metric depth must be > 0 everywhere it is finite")
        z = depth.clone() if copy or not all_finite else depth
    else:
        z = _disparity_to_z(depth, buffers)
    if not all_finite:
        z.masked_fill_(~finite, float("nan"))
    return z, all_finite


def _disparity_to_z(disparity: torch.Tensor, buffers: BufferPool | None = None) -> torch.Tensor:
    """Signed disparity -> ordering depth ``z = 1 / d`` for ``d >= k``, ``e^((k - d) / k) / k``
    below (k = DISPARITY_KNEE; value and slope continuous at k, strictly decreasing in d)."""
    knee = DISPARITY_KNEE

    def empty(name: str) -> torch.Tensor:
        if buffers is None:
            return torch.empty_like(disparity)
        return buffers.take(name, tuple(disparity.shape), disparity.dtype, disparity.device)

    # one expression for both sides: e^((k - min(d, k)) / k) / max(d, k) is e^0 / d = 1 / d
    # above the knee and e^((k - d) / k) / k below, with the same float steps as either alone
    work = torch.clamp_max(disparity, knee, out=empty("z"))
    work = torch.sub(knee, work, out=work).div_(knee).exp_()
    return torch.div(work, torch.clamp_min(disparity, knee, out=empty("z_work")), out=work)
