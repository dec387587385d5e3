"""The left and right frame edges of a stereo pair: floating window and the entering band.

**Floating window.** Content in front of the screen (crossed parallax) that the frame edge cuts
looks wrong: the edge of the screen, which is *at* the screen, hides something that is *in front*
of it (a "window violation"). A floating window moves the edge forward by masking the left edge
of the LEFT eye and the right edge of the RIGHT eye: an edge masked ``p`` pixels wide in one eye
only has ``p`` pixels of crossed disparity, so the window stands as far in front of the screen as
the content it cuts.

**Entering band.** With the source as the left eye, the right eye sees, at its right edge, a band
as wide as the crossed disparity there (at its left edge, as wide as the uncrossed disparity) of
content that the source never showed: holes that a fill can only smear, ending in a hard seam.
:func:`edge_band` removes that band so it does not draw the eye: ``crop`` cuts the band's width
from BOTH eyes alike (and the same share of the height, to keep the aspect) and scales back to
the output size, so the pair keeps its relative disparities (scaled by the zoom, well under 5 %);
``mirror`` fills the band of the warped eye with its own content reflected at the band's inner
edge, increasingly blurred towards the frame edge (no seam, no smear, nothing lost).

Arrays are frame stacks ``[F, H, W, 3]``, uint8 or float in [0, 1]; outputs keep the dtype.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from framematrix.errors import ShapeError
from framematrix.geometry.parallax import ParallaxPlan

__all__ = [
    "EDGE_BAND_MODES",
    "band_from_masks",
    "band_from_plan",
    "edge_band",
    "edge_crossed_disparity",
    "finish_eyes",
    "floating_window",
]

EDGE_BAND_MODES = ("crop", "mirror", "none")


def _check_pair(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    left = np.asarray(left)
    right = np.asarray(right)
    for name, eye in (("left", left), ("right", right)):
        if eye.ndim != 4 or eye.shape[-1] != 3:
            raise ShapeError(f"{name} eye must be [F, H, W, 3], got shape {eye.shape}")
        if eye.dtype != np.uint8 and not np.issubdtype(eye.dtype, np.floating):
            raise ShapeError(f"{name} eye must be uint8 or float in [0, 1], got {eye.dtype}")
    if left.shape != right.shape or left.dtype != right.dtype:
        raise ShapeError(
            f"left and right eyes differ: {left.shape} {left.dtype} vs {right.shape} {right.dtype}"
        )
    return left, right


def _per_frame(values: float | np.ndarray, frames: int, name: str) -> np.ndarray:
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), (frames,))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ShapeError(f"{name} must be finite pixel widths >= 0")
    return values


def edge_crossed_disparity(
    disparity: np.ndarray, band_px: int, quantile: float = 0.99
) -> tuple[np.ndarray, np.ndarray]:
    """Crossed disparity that touches the left and the right frame edge, per frame.

    Args:
        disparity: ``[F, H, W]`` signed pixel disparity ``u_left - u_right`` (> 0 = in front),
            NaN = unknown.
        band_px: width of the edge band looked at, in pixels (>= 1).
        quantile: the share of the band's pixels whose disparity is counted (0.99: the 1 % most
            crossed pixels are ignored as speckle).

    Returns:
        ``(left, right)``: ``[F]`` float64 >= 0, the band's ``quantile`` of crossed disparity
        (0 where nothing in the band is in front of the screen).
    """
    disparity = np.asarray(disparity)
    if disparity.ndim != 3:
        raise ShapeError(f"disparity must be [F, H, W], got shape {disparity.shape}")
    width = disparity.shape[2]
    band = int(min(max(1, band_px), width))
    out = []
    for part in (disparity[:, :, :band], disparity[:, :, width - band :]):
        flat = part.reshape(part.shape[0], -1).astype(np.float64)
        flat = np.where(np.isfinite(flat), flat, -np.inf)
        q = np.quantile(flat, quantile, axis=1) if flat.shape[1] else np.zeros(part.shape[0])
        out.append(np.maximum(np.nan_to_num(q, nan=0.0, neginf=0.0), 0.0))
    return out[0], out[1]


def _mask_columns(eye: np.ndarray, width_px: float, side: str) -> np.ndarray:
    """[H, W, 3] with ``width_px`` columns at ``side`` black; a fractional column is dimmed."""
    if width_px <= 0:
        return eye
    w = eye.shape[1]
    full = min(int(math.floor(width_px)), w)
    part = width_px - full
    out = eye.copy()
    if side == "left":
        out[:, :full] = 0
        if part > 0 and full < w:
            out[:, full] = (out[:, full] * (1.0 - part)).astype(eye.dtype)
    else:
        out[:, w - full :] = 0
        if part > 0 and full < w:
            out[:, w - full - 1] = (out[:, w - full - 1] * (1.0 - part)).astype(eye.dtype)
    return out


def floating_window(
    left: np.ndarray,
    right: np.ndarray,
    left_edge_px: float | np.ndarray,
    right_edge_px: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask the frame edges so the window stands in front of the content it cuts.

    Args:
        left, right: ``[F, H, W, 3]`` the two eyes (uint8 or float in [0, 1]).
        left_edge_px: ``[F]`` (or one value) crossed disparity at the left frame edge, e.g. from
            :func:`edge_crossed_disparity`: that many columns of the LEFT eye's left edge go
            black.
        right_edge_px: the same at the right frame edge: columns of the RIGHT eye's right edge.

    A window that jumps from frame to frame is itself distracting; pass a per-shot value (the
    maximum over the shot) for a still window. Fractions of a pixel dim one column.

    Returns:
        ``(left, right)`` masked copies, same shapes and dtype.
    """
    left, right = _check_pair(left, right)
    frames = left.shape[0]
    lpx = _per_frame(left_edge_px, frames, "left_edge_px")
    rpx = _per_frame(right_edge_px, frames, "right_edge_px")
    out_l = np.empty_like(left)
    out_r = np.empty_like(right)
    for i in range(frames):
        out_l[i] = _mask_columns(left[i], float(lpx[i]), "left")
        out_r[i] = _mask_columns(right[i], float(rpx[i]), "right")
    return out_l, out_r


def band_from_masks(masks: np.ndarray, quantile: float = 0.99) -> tuple[int, int]:
    """Width of the hole band at the left and right frame edges of a warped eye.

    masks: ``[F, H, W]`` bool, True = known (the warp's mask of the eye). For each row the run of
    holes that starts at the edge is measured; the ``quantile`` over all rows and frames is the
    band (0.99: a few rows of a hole that happens to touch the edge do not widen it).

    Returns ``(left_px, right_px)``, integers >= 0.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ShapeError(f"masks must be [F, H, W], got shape {masks.shape}")
    width = masks.shape[2]
    out = []
    for known in (masks, masks[:, :, ::-1]):
        any_known = known.any(axis=2)
        run = np.where(any_known, np.argmax(known, axis=2), width)
        out.append(int(math.ceil(np.quantile(run, quantile))) if run.size else 0)
    return out[0], out[1]


def band_from_plan(
    plan: ParallaxPlan, mode: str = "left2right", robust: bool = False
) -> tuple[int, int]:
    """The entering band of a shot from its plan alone (before any warp).

    With ``left2right`` the right eye is warped (``u' = u - disparity``): its right edge lacks
    at most the largest crossed disparity, ``s (d_max - d_c)``, its left edge the largest
    uncrossed one, ``s (d_c - d_min)``; ``right2left`` mirrors that. With the shot's min / max
    this bounds every frame of the shot; ``robust`` uses its 1st / 99th percentiles instead
    (the depth budget's own range: a few outlying pixels do not widen the band, and the 1 %
    nearest or farthest that reach an edge are left to the fill). Returns
    ``(left_px, right_px)``.
    """
    if plan.stats is None:
        raise ShapeError("the plan has no shot statistics (paper rig?): measure the band instead")
    near, far = (
        (plan.stats.d_p99, plan.stats.d_p1) if robust else (plan.stats.d_max, plan.stats.d_min)
    )
    crossed = max(0.0, plan.scale_px * (near - plan.d_c))
    uncrossed = max(0.0, plan.scale_px * (plan.d_c - far))
    if mode == "left2right":
        return int(math.ceil(uncrossed)), int(math.ceil(crossed))
    if mode == "right2left":
        return int(math.ceil(crossed)), int(math.ceil(uncrossed))
    raise ShapeError(f"band_from_plan supports left2right and right2left, got {mode!r}")


def _crop_and_scale(eye: np.ndarray, x0: int, x1: int, y0: int, y1: int, out: np.ndarray) -> None:
    """``out`` (C-contiguous, the shape and dtype of ``eye``) = the crop, scaled back."""
    height, width = eye.shape[:2]
    part = np.ascontiguousarray(eye[y0:y1, x0:x1])
    if eye.dtype == np.uint8:
        # straight into out (cv2 writes into a dst of the right size and type)
        scaled = cv2.resize(part, (width, height), dst=out, interpolation=cv2.INTER_CUBIC)
        if not np.shares_memory(scaled, out):
            out[...] = scaled
        return
    scaled = cv2.resize(part.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    out[...] = np.clip(scaled, 0.0, 1.0)


def _mirror_band(eye: np.ndarray, band: int, side: str) -> np.ndarray:
    """[H, W, 3]: the ``band`` edge columns replaced by the reflection of the columns inside."""
    height, width = eye.shape[:2]
    band = min(band, width // 2)
    if band <= 0:
        return eye
    work = eye.astype(np.float32)
    if side == "right":
        work = work[:, ::-1]
    # column k < band of the band takes column 2 * band - 1 - k (reflection at the inner edge)
    inner = work[:, band : 2 * band][:, ::-1]
    # blur growing towards the frame edge: blend of the sharp reflection and a strong blur
    sigma = max(1.0, band / 4.0)
    blurred = cv2.GaussianBlur(np.ascontiguousarray(inner), (0, 0), sigma)
    ramp = (1.0 - (np.arange(band, dtype=np.float32) + 0.5) / band)[None, :, None]
    filled = inner * (1.0 - ramp) + blurred * ramp
    work = work.copy()
    work[:, :band] = filled
    if side == "right":
        work = work[:, ::-1]
    if eye.dtype == np.uint8:
        return np.clip(np.rint(work), 0, 255).astype(np.uint8)
    return np.clip(work, 0.0, 1.0)


def edge_band(
    left: np.ndarray,
    right: np.ndarray,
    band_px: int | tuple[int, int],
    mode: str = "crop",
    warped_eye: str = "right",
) -> tuple[np.ndarray, np.ndarray]:
    """Hide the band that enters the warped eye at the frame edges.

    Args:
        left, right: ``[F, H, W, 3]`` filled eyes (uint8 or float in [0, 1]).
        band_px: band width in pixels at the ``(left, right)`` frame edges (one int = both),
            e.g. from :func:`band_from_masks` of the warped eye's masks, or the shot's largest
            uncrossed / crossed disparity. Use one value per shot: a crop that changes from frame
            to frame would zoom in and out.
        mode: ``crop``: both eyes lose the band columns at each edge and the same share of the
            height (top and bottom alike, so the aspect stays), then are scaled back to H x W
            (bicubic); ``mirror``: only ``warped_eye`` gets its band replaced by its own content
            reflected at the band's inner edge and progressively blurred; ``none``: unchanged.
        warped_eye: ``right`` (the source is the left eye, ``left2right``) or ``left``.

    Returns:
        ``(left, right)`` of the input's shape and dtype.
    """
    left, right = _check_pair(left, right)
    if mode not in EDGE_BAND_MODES:
        raise ShapeError(f"edge band mode must be one of {EDGE_BAND_MODES}, got {mode!r}")
    if warped_eye not in ("left", "right"):
        raise ShapeError(f"warped_eye must be 'left' or 'right', got {warped_eye!r}")
    if isinstance(band_px, (tuple, list)):
        band_l, band_r = (int(b) for b in band_px)
    else:
        band_l = band_r = int(band_px)
    if band_l < 0 or band_r < 0:
        raise ShapeError(f"band widths must be >= 0, got {band_px!r}")
    _, height, width, _ = left.shape
    if band_l + band_r >= width // 2:
        raise ShapeError(
            f"edge band {band_l}+{band_r} px is too wide for a {width}-pixel frame "
            "(at most half the width)"
        )
    if mode == "none" or band_l + band_r == 0:
        return left.copy(), right.copy()
    if mode == "crop":
        kept_w = width - band_l - band_r
        kept_h = max(1, int(round(height * kept_w / width)))
        y0 = (height - kept_h) // 2
        args = (band_l, width - band_r, y0, y0 + kept_h)
        dtype = np.uint8 if left.dtype == np.uint8 else np.float32
        out_l, out_r = np.empty(left.shape, dtype), np.empty(right.shape, dtype)
        for eye, out in ((left, out_l), (right, out_r)):
            for i in range(eye.shape[0]):
                _crop_and_scale(eye[i], *args, out=out[i])
        return out_l, out_r
    out_l, out_r = left.copy(), right.copy()
    target = out_r if warped_eye == "right" else out_l
    for i in range(target.shape[0]):
        frame = target[i]
        if band_l:
            frame = _mirror_band(frame, band_l, "left")
        if band_r:
            frame = _mirror_band(frame, band_r, "right")
        target[i] = frame
    return out_l, out_r


def finish_eyes(
    left: np.ndarray,
    right: np.ndarray,
    plan: ParallaxPlan,
    *,
    band_mode: str = "crop",
    band_px: tuple[int, int] | None = None,
    floating: bool = False,
    disparity: np.ndarray | None = None,
    window_px: tuple[float, float] | None = None,
    edge_pct: float = 1.0,
    mode: str = "left2right",
) -> tuple[np.ndarray, np.ndarray]:
    """The frame-edge treatment of a chunk of filled eyes: edge band, then floating window.

    Args:
        left, right: ``[F, H, W, 3]`` filled eyes of one shot's chunk.
        plan: the shot's plan (for the band bound :func:`band_from_plan`).
        band_mode: :data:`EDGE_BAND_MODES` (``crop`` default, ``mirror``, ``none``).
        band_px: ``(left, right)`` band widths for the whole shot (default from the plan).
        floating: mask the edges for crossed parallax (floating window).
        disparity: ``[F, H, W]`` signed disparity of the chunk (``disparity_px(d, plan)``);
            used when ``floating`` and ``window_px`` is None: per-frame window widths from the
            ``edge_pct`` %-wide edge bands (:func:`edge_crossed_disparity`).
        window_px: ``(left, right)`` fixed window widths for the shot (a still window).
        mode: the rig (the warped eye is the right one for ``left2right``).

    With ``crop`` the window widths are scaled by the crop's zoom, like the disparities.
    """
    left, right = _check_pair(left, right)
    width = left.shape[2]
    if band_px is None:
        band_px = band_from_plan(plan, mode) if band_mode != "none" else (0, 0)
    warped_eye = "right" if mode == "left2right" else "left"
    out_l, out_r = edge_band(left, right, band_px, band_mode, warped_eye=warped_eye)
    if not floating:
        return out_l, out_r
    if window_px is not None:
        win_l, win_r = (np.full(left.shape[0], float(w)) for w in window_px)
    else:
        if disparity is None:
            raise ShapeError("the floating window needs the chunk's disparity or window_px")
        band = max(1, int(round(edge_pct / 100.0 * width)))
        win_l, win_r = edge_crossed_disparity(disparity, band)
    if band_mode == "crop":
        zoom = width / max(1, width - sum(band_px))
        win_l, win_r = win_l * zoom, win_r * zoom
    return floating_window(out_l, out_r, win_l, win_r)
