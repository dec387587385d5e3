"""Stereo output layouts (side-by-side, top-bottom, anaglyph, ...) and multi-view grids.

Pure array functions on frame stacks [F, H, W, 3]: uint8 in [0, 255] or float in [0, 1]. The
output has the input's kind: uint8 stays uint8 (rounded), floats come back as float32.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from framematrix.errors import ShapeError

__all__ = [
    "ANAGLYPH_DUBOIS_LEFT",
    "ANAGLYPH_DUBOIS_RIGHT",
    "EXTRA_FORMATS",
    "EXTRA_FORMAT_NAMES",
    "FORMATS",
    "FORMAT_NAMES",
    "compose_stereo",
    "format_help",
    "views_grid",
]

FORMATS: tuple[tuple[str, str], ...] = (
    ("sbs", "full side-by-side: left eye | right eye, twice the width"),
    ("half-sbs", "half side-by-side: each eye squeezed to half width, same size as the input"),
    ("tb", "full top-bottom: left eye above the right eye, twice the height"),
    ("half-tb", "half top-bottom: each eye squeezed to half height, same size as the input"),
    ("anaglyph", "red-cyan anaglyph, Dubois least-squares (for red-cyan glasses)"),
    ("anaglyph-color", "colour anaglyph: red from the left eye, green and blue from the right"),
    ("cross", "cross-eyed side-by-side: right eye | left eye, twice the width"),
    ("left", "the left eye only"),
    ("right", "the right eye only"),
)
FORMAT_NAMES: tuple[str, ...] = tuple(name for name, _ in FORMATS)

# Red-cyan least-squares anaglyph matrices of E. Dubois, "Conversion of a stereo pair to anaglyph
# with the least-squares projection method" (technical note, March 2009, Univ. of Ottawa; the
# method is from his ICASSP 2001 paper "A projection method to generate anaglyph stereo images").
# Rows give the output R, G, B; columns weigh the eye's input R, G, B. Dubois derives them for
# linear (not gamma-encoded) RGB, so they are applied in linear light here.
ANAGLYPH_DUBOIS_LEFT = np.array(
    [
        [0.437, 0.449, 0.164],
        [-0.062, -0.062, -0.024],
        [-0.048, -0.050, -0.017],
    ],
    dtype=np.float32,
)
ANAGLYPH_DUBOIS_RIGHT = np.array(
    [
        [-0.011, -0.032, -0.007],
        [0.377, 0.761, 0.009],
        [-0.026, -0.093, 1.234],
    ],
    dtype=np.float32,
)


def format_help() -> str:
    """One line per format, ``name: description``, for a CLI ``--help`` text."""
    return "\n".join(f"{name}: {description}" for name, description in FORMATS)


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ShapeError(f"{what} must be [F, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise ShapeError(f"{what} must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    return frames


def _to_float(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32, copy=False)


def _like(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A result back to the reference's kind: uint8 stays, float [0, 1] -> uint8 is rounded."""
    if result.dtype == np.uint8:
        return result
    if reference.dtype == np.uint8:
        return np.clip(np.rint(result * 255.0), 0, 255).astype(np.uint8)
    return result.astype(np.float32, copy=False)


def _squeeze(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize every frame to height x width with area averaging (no aliasing when shrinking).

    An exact halving (the half layouts of even sizes) is the mean of each pair of pixels: a
    bilinear resize at exactly 2:1 samples the pair midpoints, i.e. that mean (uint8 rounded
    half up), about 5x faster than OpenCV's area path; other sizes average areas."""
    work = frames if frames.dtype == np.uint8 else frames.astype(np.float32)
    out = np.empty((frames.shape[0], height, width, 3), dtype=work.dtype)
    src_h, src_w = frames.shape[1:3]
    halving = (src_w == 2 * width and src_h == height) or (src_h == 2 * height and src_w == width)
    method = cv2.INTER_LINEAR if halving else cv2.INTER_AREA
    for i, frame in enumerate(work):
        cv2.resize(frame, (width, height), dst=out[i], interpolation=method)
    return out


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


# uint8 fast path: decode by table, encode through a 16-bit table of linear values (the
# quantisation costs under 0.06 of a grey level); about 10x faster than the pow() per pixel.
_DECODE_U8 = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
_ENCODE_U16 = np.rint(_linear_to_srgb(np.arange(65536) / 65535.0) * 255.0).astype(np.uint8)


def _dubois(left: np.ndarray, right: np.ndarray, linear_light: bool) -> np.ndarray:
    """[F, H, W, 3] anaglyph, dtype of the input kind (uint8, else float32 in [0, 1])."""
    as_uint8 = left.dtype == np.uint8
    out = np.empty(left.shape, dtype=np.uint8 if as_uint8 else np.float32)
    for i in range(left.shape[0]):  # frame by frame: float temporaries stay small
        if as_uint8 and linear_light:
            lf, rf = _DECODE_U8[left[i]], _DECODE_U8[right[i]]
        else:
            lf = np.clip(_to_float(left[i]), 0.0, 1.0)
            rf = np.clip(_to_float(right[i]), 0.0, 1.0)
            if linear_light:
                lf, rf = _srgb_to_linear(lf), _srgb_to_linear(rf)
        mixed = np.clip(lf @ ANAGLYPH_DUBOIS_LEFT.T + rf @ ANAGLYPH_DUBOIS_RIGHT.T, 0.0, 1.0)
        if as_uint8 and linear_light:
            out[i] = _ENCODE_U16[np.rint(mixed * 65535.0).astype(np.uint16)]
        elif as_uint8:
            out[i] = np.rint(mixed * 255.0).astype(np.uint8)
        else:
            out[i] = _linear_to_srgb(mixed) if linear_light else mixed
    return out


def compose_stereo(
    left: np.ndarray, right: np.ndarray, fmt: str, linear_light: bool = True
) -> np.ndarray:
    """Arrange a left and a right eye video into one stereo video.

    left, right: [F, H, W, 3], the same shape and dtype; uint8 or float in [0, 1].
    fmt: one of FORMAT_NAMES:
        sbs [F, H, 2W, 3] left | right; cross [F, H, 2W, 3] right | left;
        half-sbs [F, H, 2*(W//2), 3] each eye squeezed to W//2 (an odd W loses one column);
        tb [F, 2H, W, 3] left above right; half-tb [F, 2*(H//2), W, 3];
        anaglyph / anaglyph-color / left / right [F, H, W, 3].
    linear_light: apply the Dubois anaglyph matrices to linear RGB (sRGB decoded, as Dubois
        intends) instead of the gamma-encoded values.

    Returns uint8 for uint8 input, float32 in [0, 1] for float input.
    """
    left = _check_frames(left, "left")
    right = _check_frames(right, "right")
    if left.shape != right.shape or left.dtype != right.dtype:
        raise ShapeError(
            f"left and right eyes differ: {left.shape} {left.dtype} vs {right.shape} {right.dtype}"
        )
    if fmt not in FORMAT_NAMES:
        raise ValueError(f"unknown stereo format {fmt!r}; choose one of {', '.join(FORMAT_NAMES)}")
    height, width = left.shape[1:3]
    if fmt == "sbs":
        return _like(np.concatenate([left, right], axis=2), left)
    if fmt == "cross":
        return _like(np.concatenate([right, left], axis=2), left)
    if fmt == "tb":
        return _like(np.concatenate([left, right], axis=1), left)
    if fmt == "half-sbs":
        half = max(width // 2, 1)
        eyes = [_squeeze(eye, height, half) for eye in (left, right)]
        return _like(np.concatenate(eyes, axis=2), left)
    if fmt == "half-tb":
        half = max(height // 2, 1)
        eyes = [_squeeze(eye, half, width) for eye in (left, right)]
        return _like(np.concatenate(eyes, axis=1), left)
    if fmt == "anaglyph":
        return _like(_dubois(left, right, linear_light), left)
    if fmt == "anaglyph-color":
        out = right.copy()
        out[..., 0] = left[..., 0]
        return _like(out, left)
    return _like((left if fmt == "left" else right).copy(), left)


def views_grid(views: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tile V views of a video into one video, row by row: [V, F, H, W, 3] -> [F, R*H, C*W, 3].

    cols: views per row C (default ceil(sqrt(V))); R = ceil(V / C) rows. Unused cells are black.
    Keeps the dtype kind like compose_stereo (uint8 or float32).
    """
    views = np.asarray(views)
    if views.ndim != 5 or views.shape[-1] != 3:
        raise ShapeError(f"views must be [V, F, H, W, 3], got shape {views.shape}")
    _check_frames(views[0], "views")
    count, frames, height, width = views.shape[:4]
    if cols is None:
        cols = math.ceil(math.sqrt(count))
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    cols = min(cols, count)
    rows = math.ceil(count / cols)
    cells = np.zeros((rows * cols, frames, height, width, 3), dtype=views.dtype)
    cells[:count] = views
    # [R, C, F, H, W, 3] -> [F, R, H, C, W, 3]: rows of cells stacked, cells of a row side by side.
    grid = cells.reshape(rows, cols, frames, height, width, 3).transpose(2, 0, 3, 1, 4, 5)
    return _like(grid.reshape(frames, rows * height, cols * width, 3), views)


# ----------------------------------------------------------------------------- further formats
# Output formats with their own module and parameters (not compose_stereo), kept in a registry of
# their own: vr180 needs the source's field of view (framematrix.export.vr180.compose_vr180),
# quilt takes every view of the matrix (framematrix.export.quilt.quilt_video).
EXTRA_FORMATS: tuple[tuple[str, str], ...] = (
    (
        "vr180",
        "VR180: each eye mapped onto a 180-degree equirectangular half-sphere from --fov, side "
        "by side, with the st3d/sv3d metadata headset players read (.mp4/.mov)",
    ),
    (
        "quilt",
        "Looking Glass quilt: every view tiled, view 0 (leftmost camera) at the bottom left, "
        "rows upward",
    ),
)
EXTRA_FORMAT_NAMES: tuple[str, ...] = tuple(name for name, _ in EXTRA_FORMATS)
