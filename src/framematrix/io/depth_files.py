"""Depth or disparity maps from .npy, .npz, 8/16-bit .png and .pfm files (per frame or stacked).

Values are returned as stored (no scaling, no inversion): a 16-bit PNG gives 0..65535. Whether
the maps are relative inverse depth or metric depth is the caller's choice (StereoConfig), and the
clip-wide normalisation of the frame matrix removes any constant scale. NaN and inf pass through
unchanged; geometry treats non-finite values as unknown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from framematrix.errors import InputError
from framematrix.io.atomic import atomic_path
from framematrix.io.source import list_image_files

__all__ = [
    "DEPTH_EXTENSIONS",
    "fit_size",
    "read_depth",
    "read_depth_file",
    "read_pfm",
    "squeeze_maps",
    "write_pfm",
]

DEPTH_EXTENSIONS = (".npy", ".npz", ".png", ".pfm")

# A depth map whose aspect ratio is within this relative tolerance of the frames' is resized
# (depth models often predict at a slightly different, rounded resolution).
ASPECT_TOLERANCE = 0.01


# ----------------------------------------------------------------------------- PFM


def _pfm_header(data: bytes, path: Path) -> tuple[list[bytes], int]:
    """The four whitespace-separated header tokens and the offset where pixel data begins."""
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise InputError(f"{path}: truncated PFM header")
        tokens.append(data[start:pos])
    # Exactly one whitespace byte ends the header: the data may start with a byte that looks like
    # whitespace, so no more may be skipped.
    return tokens, pos + 1


def read_pfm(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PFM image: [H, W] float32 for ``Pf`` (grey), [H, W, 3] float32 for ``PF`` (colour).

    The sign of the scale field gives the byte order (negative = little-endian); its magnitude is
    not applied (values are returned as stored: the Middlebury sample says 1/255 yet stores pixel
    disparities). PFM stores rows bottom to top, so the rows are flipped to the usual top-to-bottom
    order. inf/NaN are kept (Middlebury marks invalid disparity with inf).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such PFM file")
    data = path.read_bytes()
    tokens, offset = _pfm_header(data, path)
    kind = tokens[0]
    if kind not in (b"PF", b"Pf"):
        raise InputError(f"{path}: not a PFM file (header {kind[:8]!r}, expected PF or Pf)")
    channels = 3 if kind == b"PF" else 1
    try:
        width, height, scale = int(tokens[1]), int(tokens[2]), float(tokens[3])
    except ValueError as exc:
        raise InputError(f"{path}: bad PFM header: {exc}") from exc
    if width <= 0 or height <= 0 or scale == 0:
        raise InputError(f"{path}: bad PFM header (size {width}x{height}, scale {scale})")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    count = width * height * channels
    if len(data) - offset < count * 4:
        raise InputError(
            f"{path}: truncated PFM ({len(data) - offset} data bytes, need {count * 4})"
        )
    pixels = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    shape = (height, width, channels) if channels == 3 else (height, width)
    return np.ascontiguousarray(pixels.reshape(shape)[::-1]).astype(np.float32, copy=False)


def write_pfm(
    path: str | os.PathLike[str], image: np.ndarray, little_endian: bool | None = None
) -> Path:
    """Write [H, W] (``Pf``) or [H, W, 3] (``PF``) floats as PFM, atomically; returns the path.

    little_endian: byte order of the data (None: this machine's); written as the sign of the scale
    field (-1.0 little-endian, 1.0 big-endian). Rows are stored bottom to top, as PFM requires.
    """
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"write_pfm expects [H, W] or [H, W, 3], got shape {image.shape}")
    if little_endian is None:
        little_endian = sys.byteorder == "little"
    height, width = image.shape[:2]
    kind = "PF" if image.ndim == 3 else "Pf"
    scale = -1.0 if little_endian else 1.0
    dtype = "<f4" if little_endian else ">f4"
    header = f"{kind}\n{width} {height}\n{scale}\n".encode("ascii")
    payload = np.ascontiguousarray(image[::-1], dtype=dtype).tobytes()
    final = Path(path)
    with atomic_path(final) as tmp:
        tmp.write_bytes(header + payload)
    return final


# ----------------------------------------------------------------------------- one file


def squeeze_maps(array: np.ndarray, path: Path) -> np.ndarray:
    """[H, W] -> [1, H, W]; [F, H, W] kept; a singleton channel ([F,1,H,W], [F,H,W,1]) dropped."""
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 4 and array.shape[3] == 1:
        return array[..., 0]
    raise InputError(f"{path}: depth array has shape {array.shape}, expected [H, W] or [F, H, W]")


def read_depth_file(path: str | os.PathLike[str]) -> np.ndarray:
    """One depth file as [N, H, W] float32 (N = 1 except for stacked .npy/.npz arrays).

    .npz: the array named ``depth`` if present, else the first one. .png: read unchanged (8 or
    16 bit); a colour PNG uses its first (red) channel. .pfm: a colour PFM uses its first channel.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such depth file")
    suffix = path.suffix.lower()
    if suffix not in DEPTH_EXTENSIONS:
        raise InputError(
            f"{path}: unsupported depth file type '{path.suffix or '(none)'}' "
            f"(expected {', '.join(DEPTH_EXTENSIONS)} or a folder of them)"
        )
    if suffix == ".pfm":
        array = read_pfm(path)
        if array.ndim == 3:
            array = array[..., 0]
    elif suffix == ".png":
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise InputError(f"{path}: cannot read PNG depth (corrupt or not a PNG)")
        if array.ndim == 3:
            # OpenCV orders channels BGR(A): index 2 is the file's first (red) channel.
            array = array[..., 2] if array.shape[2] >= 3 else array[..., 0]
    else:
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                array = loaded
            else:
                with loaded:
                    keys = list(loaded.keys())
                    if not keys:
                        raise InputError(f"{path}: .npz file holds no arrays")
                    array = loaded["depth" if "depth" in keys else keys[0]]
        except InputError:
            raise
        except (ValueError, OSError, EOFError, KeyError) as exc:
            raise InputError(f"{path}: cannot read depth array: {exc}") from exc
        array = np.asarray(array)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"{path}: depth array has non-numeric dtype {array.dtype}")
    return squeeze_maps(np.asarray(array), path).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- resizing


def _resize_map(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one [h, w] float32 map that keeps NaN/inf regions unknown.

    Finite values are interpolated only among finite neighbours (normalised by the interpolated
    validity weight); a target pixel whose nearest source pixel is non-finite takes that value
    (inf stays inf, NaN stays NaN), so unknown regions keep their extent instead of bleeding.
    """
    size = (width, height)
    finite = np.isfinite(depth)
    if finite.all():
        return cv2.resize(depth, size, interpolation=cv2.INTER_LINEAR)
    weight = cv2.resize(finite.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    filled = np.where(finite, depth, 0).astype(np.float32)
    summed = cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR)
    nearest = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = summed / weight
    keep_unknown = ~np.isfinite(nearest) | (weight <= 1e-6)
    return np.where(keep_unknown, nearest, out).astype(np.float32)


def fit_size(depth: np.ndarray, height: int, width: int, path: Path) -> np.ndarray:
    """[N, h, w] -> [N, height, width] float32: resized bilinearly (NaN/inf kept unknown) when the
    aspect ratio matches within 1 %; any other size is an InputError naming ``path``."""
    h, w = depth.shape[1:]
    if (h, w) == (height, width):
        return depth
    aspect, target = w / h, width / height
    if abs(aspect - target) > ASPECT_TOLERANCE * target:
        raise InputError(
            f"{path}: depth size {w}x{h} does not match frame size {width}x{height} "
            f"(aspect {aspect:.4f} vs {target:.4f}; only same-aspect maps are resized)"
        )
    return np.stack([_resize_map(d, height, width) for d in depth])


# ----------------------------------------------------------------------------- public entry


def read_depth(
    path: str | os.PathLike[str], frames_shape: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Depth maps for a clip: [F, H, W] float32, values as stored, NaN/inf kept.

    path: a folder with one depth file per frame (.npy .npz .png .pfm, one extension, natural
        order, hidden files skipped), or one file: an image-like map (F = 1) or an .npy/.npz
        holding [F, H, W] (also [H, W], [F, 1, H, W], [F, H, W, 1]).
    frames_shape: (F, H, W) of the clip. The count must match exactly (InputError naming the path
        and both counts); maps of another size with the same aspect ratio (within 1 %) are resized
        bilinearly to H x W, any other size is an InputError naming both sizes. None: no checks.
    """
    path = Path(path)
    if frames_shape is not None:
        if len(frames_shape) != 3 or min(int(n) for n in frames_shape) < 1:
            raise ValueError(f"frames_shape must be (F, H, W) with positive sizes: {frames_shape}")
        frames_shape = (int(frames_shape[0]), int(frames_shape[1]), int(frames_shape[2]))
    if not path.exists():
        raise InputError(f"{path}: no such depth file or folder")
    if path.is_dir():
        files = list_image_files(path, DEPTH_EXTENSIONS)
        if not files:
            raise InputError(f"{path}: folder has no depth files ({', '.join(DEPTH_EXTENSIONS)})")
        suffixes = sorted({f.suffix.lower() for f in files})
        if len(suffixes) > 1:
            raise InputError(
                f"{path}: folder mixes depth formats ({', '.join(suffixes)}); keep one per folder"
            )
        if frames_shape is not None and len(files) != frames_shape[0]:
            raise InputError(
                f"{path}: {len(files)} depth files but the clip has {frames_shape[0]} frames"
            )
        maps = []
        for file in files:
            depth = read_depth_file(file)
            if depth.shape[0] != 1:
                raise InputError(
                    f"{file}: holds {depth.shape[0]} depth maps; a folder needs one per file"
                )
            if frames_shape is not None:
                depth = fit_size(depth, frames_shape[1], frames_shape[2], file)
            elif maps and depth.shape[1:] != maps[0].shape[1:]:
                raise InputError(
                    f"{file}: depth size {depth.shape[2]}x{depth.shape[1]} differs from "
                    f"{maps[0].shape[2]}x{maps[0].shape[1]} of {files[0].name}"
                )
            maps.append(depth)
        return np.concatenate(maps, axis=0)
    depth = read_depth_file(path)
    if frames_shape is not None:
        if depth.shape[0] != frames_shape[0]:
            raise InputError(
                f"{path}: {depth.shape[0]} depth maps but the clip has {frames_shape[0]} frames"
            )
        depth = fit_size(depth, frames_shape[1], frames_shape[2], path)
    return depth
