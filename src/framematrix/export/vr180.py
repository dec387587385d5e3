"""VR180: each eye mapped onto a 180-degree equirectangular half-sphere, side by side.

Projection (pure functions, frame stacks ``[F, H, W, 3]``):

The source eye is a pinhole image of ``W`` x ``H`` pixels with a horizontal field of view
``fov_deg``: focal length ``f = (W / 2) / tan(fov / 2)`` pixels, square pixels, principal point at
the image centre. Each output eye is a square ``S`` x ``S`` equirectangular image covering
longitude and latitude in [-90, 90] degrees (the front half-sphere). For output pixel ``(x, y)``
(centres at ``x + 0.5``):

    longitude  lam = ((x + 0.5) / S - 0.5) * pi        (-pi/2 at the left edge, +pi/2 right)
    latitude   phi = (0.5 - (y + 0.5) / S) * pi        (+pi/2 at the top)
    direction  d = (cos phi sin lam, -sin phi, cos phi cos lam)   (x right, y down, z forward)
    pinhole    u = W / 2 + f dx / dz,  v = H / 2 + f dy / dz       (pixel-edge coordinates)

and the colour is sampled bilinearly at ``(u - 0.5, v - 0.5)`` (OpenCV's pixel-centre
coordinates) with ``cv2.remap``. Directions behind the camera (``dz <= 0``) or outside the source
frame are black: the picture fills ``fov_deg`` of the 180 degrees across, the rest is a black
surround, which is how VR180 players show flat footage at its true angular size.

Default field of view: 70 degrees. Most video people convert comes from phones and consumer
cameras whose main lens is about 26 mm full-frame equivalent; its horizontal field of view on a
16:9 frame is 67-72 degrees. Stating a wider angle would stretch the picture and its parallax over
more of the view than the camera saw (objects look larger and closer than they were); a narrower
one shrinks it. Use :func:`fov_from_focal` when the focal length in pixels is known.

Metadata: FFmpeg's mov/mp4 muxer writes ``st3d``/``sv3d`` only from stream side data
(AV_PKT_DATA_STEREO3D / AV_PKT_DATA_SPHERICAL), and PyAV 18 cannot attach side data to an output
stream (it offers only the display matrix). :func:`add_vr180_metadata` therefore writes the two
boxes of Google's Spherical Video V2 specification itself into the video sample entry of a
finished .mp4/.mov: ``st3d`` (stereo_mode 2 = left-right) and ``sv3d`` { ``svhd``, ``proj`` {
``prhd`` (yaw, pitch, roll 0), ``equi`` (bounds left = right = 0.25, top = bottom = 0: the middle
180 of 360 degrees across, the full 180 degrees up and down) } }, the layout YouTube, DeoVR,
SKYBOX and Meta's player read for VR180. Matroska's Projection elements are not written.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from framematrix.errors import InputError, ShapeError
from framematrix.io.atomic import temporary_sibling

__all__ = [
    "DEFAULT_FOV_DEG",
    "MAX_EYE_SIZE",
    "add_vr180_metadata",
    "compose_vr180",
    "default_eye_size",
    "equirect_maps",
    "fov_from_focal",
    "read_spherical_metadata",
    "to_vr180_eye",
]

DEFAULT_FOV_DEG = 70.0
# 2048 per eye: a 4096 x 2048 frame, inside H.264 level 5.1 (what headsets decode in hardware).
MAX_EYE_SIZE = 2048


def fov_from_focal(width: int, focal_px: float) -> float:
    """Horizontal field of view in degrees of a pinhole camera ``width`` pixels wide."""
    if width <= 0 or focal_px <= 0:
        raise ValueError(f"width and focal must be positive, got {width}, {focal_px}")
    return math.degrees(2.0 * math.atan(width / 2.0 / focal_px))


def _check_fov(fov_deg: float) -> float:
    fov = float(fov_deg)
    if not 0.0 < fov < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180) degrees for a pinhole source, got {fov_deg}")
    return fov


def default_eye_size(
    width: int, fov_deg: float = DEFAULT_FOV_DEG, max_size: int = MAX_EYE_SIZE
) -> int:
    """Eye size that keeps the source's detail at the view centre: S = pi f (even), at most
    ``max_size``. At the centre the equirect image has S / pi pixels per radian and the pinhole
    image f."""
    fov = _check_fov(fov_deg)
    focal = width / 2.0 / math.tan(math.radians(fov) / 2.0)
    size = min(int(max_size), int(round(math.pi * focal)))
    return max(2, size - size % 2)


def equirect_maps(
    height: int, width: int, eye_size: int, fov_deg: float = DEFAULT_FOV_DEG
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps ``(map_x, map_y)``, each ``[S, S]`` float32, from a 180-degree equirect eye
    of size S to a ``width`` x ``height`` pinhole source with horizontal FOV ``fov_deg`` (module
    docstring). Directions outside the source are mapped to -1e4 (sampled as black)."""
    fov = _check_fov(fov_deg)
    if height < 1 or width < 1 or eye_size < 1:
        raise ValueError(f"sizes must be positive, got {height}x{width}, eye {eye_size}")
    focal = width / 2.0 / math.tan(math.radians(fov) / 2.0)
    centres = (np.arange(eye_size, dtype=np.float64) + 0.5) / eye_size
    lam = (centres - 0.5) * math.pi  # per column
    phi = (0.5 - centres) * math.pi  # per row
    lam, phi = np.meshgrid(lam, phi)
    dx = np.cos(phi) * np.sin(lam)
    dy = -np.sin(phi)
    dz = np.cos(phi) * np.cos(lam)
    front = dz > 1e-9
    safe = np.where(front, dz, 1.0)
    u = width / 2.0 + focal * dx / safe - 0.5
    v = height / 2.0 + focal * dy / safe - 0.5
    inside = front & (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)
    map_x = np.where(inside, u, -1.0e4).astype(np.float32)
    map_y = np.where(inside, v, -1.0e4).astype(np.float32)
    return map_x, map_y


def to_vr180_eye(
    frames: np.ndarray, fov_deg: float = DEFAULT_FOV_DEG, eye_size: int | None = None
) -> np.ndarray:
    """Map one eye ``[F, H, W, 3]`` (uint8, uint16 or float) onto ``[F, S, S, 3]`` of the same
    dtype; S = ``eye_size`` or :func:`default_eye_size`. Outside the field of view is black."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ShapeError(f"eye frames must be [F, H, W, 3], got shape {frames.shape}")
    if frames.dtype not in (np.uint8, np.uint16) and not np.issubdtype(frames.dtype, np.floating):
        raise ShapeError(f"eye frames must be uint8, uint16 or float, got dtype {frames.dtype}")
    height, width = frames.shape[1:3]
    size = int(eye_size) if eye_size is not None else default_eye_size(width, fov_deg)
    map_x, map_y = equirect_maps(height, width, size, fov_deg)
    work = frames if frames.dtype in (np.uint8, np.uint16) else frames.astype(np.float32)
    out = np.empty((frames.shape[0], size, size, 3), dtype=work.dtype)
    for i, frame in enumerate(work):
        out[i] = cv2.remap(
            frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
    return out


def compose_vr180(
    left: np.ndarray,
    right: np.ndarray,
    fov_deg: float = DEFAULT_FOV_DEG,
    eye_size: int | None = None,
) -> np.ndarray:
    """VR180 side by side: ``[F, H, W, 3]`` left and right eyes -> ``[F, S, 2S, 3]``, left eye in
    the left half (what ``st3d`` stereo_mode 2 states). Same dtype as the input."""
    left, right = np.asarray(left), np.asarray(right)
    if left.shape != right.shape or left.dtype != right.dtype:
        raise ShapeError(
            f"left and right eyes differ: {left.shape} {left.dtype} vs {right.shape} {right.dtype}"
        )
    if left.ndim != 4:
        raise ShapeError(f"eye frames must be [F, H, W, 3], got shape {left.shape}")
    size = int(eye_size) if eye_size is not None else default_eye_size(left.shape[2], fov_deg)
    return np.concatenate(
        [to_vr180_eye(left, fov_deg, size), to_vr180_eye(right, fov_deg, size)], axis=2
    )


# ----------------------------------------------------------------------------- mp4 boxes

_VISUAL_ENTRY_HEADER = 8 + 78  # box header + VisualSampleEntry fields before its child boxes
_CONTAINERS = (b"trak", b"mdia", b"minf", b"stbl")


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def _vr180_boxes(source: str = "framematrix") -> bytes:
    quarter = 1 << 30  # 0.25 in 0.32 fixed point
    st3d = _full_box(b"st3d", struct.pack(">B", 2))  # 2: stereoscopic left-right
    svhd = _full_box(b"svhd", source.encode() + b"\0")
    prhd = _full_box(b"prhd", struct.pack(">iii", 0, 0, 0))
    equi = _full_box(b"equi", struct.pack(">IIII", 0, 0, quarter, quarter))
    return st3d + _box(b"sv3d", svhd + _box(b"proj", prhd + equi))


def _children(buf: bytes | bytearray, start: int, end: int) -> list[tuple[int, int, bytes, int]]:
    """Boxes in buf[start:end]: (offset, size, type, header length)."""
    boxes, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"corrupt box {kind!r} at {pos}")
        boxes.append((pos, size, kind, header))
        pos += size
    return boxes


def _child(buf: bytes | bytearray, parent: tuple[int, int, bytes, int], kind: bytes):
    off, size, _, header = parent
    for box in _children(buf, off + header, off + size):
        if box[2] == kind:
            return box
    return None


def _video_chain(moov: bytes | bytearray) -> list[tuple[int, int, bytes, int]]:
    """[moov, trak, mdia, minf, stbl, stsd, sample entry] of the first video track."""
    root = (0, len(moov), b"moov", 8)
    for trak in _children(moov, 8, len(moov)):
        if trak[2] != b"trak":
            continue
        mdia = _child(moov, trak, b"mdia")
        hdlr = _child(moov, mdia, b"hdlr") if mdia else None
        if hdlr is None or moov[hdlr[0] + hdlr[3] + 8 : hdlr[0] + hdlr[3] + 12] != b"vide":
            continue
        minf = _child(moov, mdia, b"minf")
        stbl = _child(moov, minf, b"stbl") if minf else None
        stsd = _child(moov, stbl, b"stsd") if stbl else None
        if stsd is None:
            continue
        entries = _children(moov, stsd[0] + stsd[3] + 8, stsd[0] + stsd[1])
        if entries:
            return [root, trak, mdia, minf, stbl, stsd, entries[0]]
    raise ValueError("no video track")


def _shift_chunk_offsets(moov: bytearray, delta: int) -> None:
    """Add ``delta`` to every stco/co64 chunk offset (media data after a grown moov)."""
    for trak in _children(moov, 8, len(moov)):
        if trak[2] != b"trak":
            continue
        box = trak
        for kind in (b"mdia", b"minf", b"stbl"):
            box = _child(moov, box, kind) if box else None
        if box is None:
            continue
        for table in (_child(moov, box, b"stco"), _child(moov, box, b"co64")):
            if table is None:
                continue
            body = table[0] + table[3]
            (count,) = struct.unpack_from(">I", moov, body + 4)
            wide = table[2] == b"co64"
            fmt, step = (">Q", 8) if wide else (">I", 4)
            for i in range(count):
                at = body + 8 + i * step
                (value,) = struct.unpack_from(fmt, moov, at)
                if not wide and value + delta >= 1 << 32:
                    raise ValueError("chunk offset overflows stco")
                struct.pack_into(fmt, moov, at, value + delta)


def add_vr180_metadata(path: str | os.PathLike[str]) -> None:
    """Insert the VR180 ``st3d`` + ``sv3d`` boxes into the video sample entry of an .mp4/.mov.

    The file is rewritten under a temporary name beside it and moved back when complete (the
    media data is copied in chunks, never held in memory). Box sizes of the sample entry and its
    parents grow; when the index (moov) sits before the media data (faststart), every chunk
    offset is moved by the same number of bytes. Raises InputError if the file is not an
    ISO-BMFF with a video track, or already has an ``st3d``/``sv3d``.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        top, pos = [], 0
        while pos + 8 <= size:
            handle.seek(pos)
            head = handle.read(16)
            box_size, kind = struct.unpack_from(">I4s", head)
            if box_size == 1:
                (box_size,) = struct.unpack_from(">Q", head, 8)
            elif box_size == 0:
                box_size = size - pos
            if box_size < 8:
                raise InputError(f"{path}: corrupt MP4 box {kind!r} at byte {pos}")
            top.append((pos, box_size, kind))
            pos += box_size
        moovs = [box for box in top if box[2] == b"moov"]
        if len(moovs) != 1:
            raise InputError(f"{path}: not an MP4/MOV file with one moov box")
        moov_at, moov_size, _ = moovs[0]
        handle.seek(moov_at)
        moov = bytearray(handle.read(moov_size))
    if struct.unpack_from(">I", moov)[0] == 1:
        raise InputError(f"{path}: 64-bit moov size is not supported")
    try:
        chain = _video_chain(moov)
        entry = chain[-1]
        existing = {
            box[2] for box in _children(moov, entry[0] + _VISUAL_ENTRY_HEADER, entry[0] + entry[1])
        }
    except ValueError as exc:
        raise InputError(f"{path}: cannot add VR180 metadata: {exc}") from exc
    if existing & {b"st3d", b"sv3d"}:
        raise InputError(f"{path}: already has spherical/stereo metadata")
    boxes = _vr180_boxes()
    delta = len(boxes)
    end = entry[0] + entry[1]
    for off, _, _, header in chain:
        if header != 8:
            raise InputError(f"{path}: 64-bit box sizes in the video track are not supported")
        (old,) = struct.unpack_from(">I", moov, off)
        struct.pack_into(">I", moov, off, old + delta)
    moov[end:end] = boxes
    media_after = any(kind == b"mdat" and at > moov_at for at, _, kind in top)
    if media_after:
        try:
            _shift_chunk_offsets(moov, delta)
        except ValueError as exc:
            raise InputError(f"{path}: cannot add VR180 metadata: {exc}") from exc
    tmp = temporary_sibling(path, "vr180")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            _copy_range(src, dst, 0, moov_at)
            dst.write(moov)
            _copy_range(src, dst, moov_at + moov_size, size - moov_at - moov_size)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_range(src, dst, start: int, length: int) -> None:
    src.seek(start)
    remaining = length
    while remaining > 0:
        chunk = src.read(min(remaining, 1 << 22))
        if not chunk:
            raise InputError(f"{src.name}: file ended early while adding VR180 metadata")
        dst.write(chunk)
        remaining -= len(chunk)


def read_spherical_metadata(path: str | os.PathLike[str]) -> dict[str, object]:
    """The st3d / equi values of an .mp4/.mov video track as written by add_vr180_metadata:
    ``{"stereo_mode": int, "projection": "equirectangular", "bounds": (top, bottom, left, right)}``
    (bounds as fractions); {} when there are none. For checks and tests."""
    data = Path(path).read_bytes()
    top = _children(data, 0, len(data))
    moov = next((box for box in top if box[2] == b"moov"), None)
    if moov is None:
        return {}
    buf = data[moov[0] : moov[0] + moov[1]]
    entry = _video_chain(buf)[-1]
    info: dict[str, object] = {}
    for box in _children(buf, entry[0] + _VISUAL_ENTRY_HEADER, entry[0] + entry[1]):
        if box[2] == b"st3d":
            info["stereo_mode"] = buf[box[0] + box[3] + 4]
        if box[2] == b"sv3d":
            proj = _child(buf, box, b"proj")
            equi = _child(buf, proj, b"equi") if proj else None
            if equi is not None:
                bounds = struct.unpack_from(">IIII", buf, equi[0] + equi[3] + 4)
                info["projection"] = "equirectangular"
                info["bounds"] = tuple(b / 2**32 for b in bounds)
    return info
