"""Depth in and out for long videos, streamed: a lossless 16-bit depth video or a folder of PNGs.

:class:`DepthWriter` quantises float depth chunk by chunk to 16 (or 8) bits over a value range
``[lo, hi]`` and writes an FFV1 ``gray16le`` .mkv or a folder of 16-bit PNGs, atomically; the range
is stored in the file (Matroska tag ``FRAMEMATRIX_DEPTH``) and in a JSON sidecar, so that
:func:`open_depth` gives back ``lo + q * (hi - lo) / (2**bits - 1)``, exact to half a step.

:func:`open_depth` reads every depth input the project takes, lazily and in step with the frames:
a depth video (gray 8/16 bit, any container PyAV reads), a folder of per-frame maps (.png 8/16 bit,
.npy, .npz, .pfm), a stacked .npy (memory-mapped) or .npz, or one map for a single image. Maps of
another size with the same aspect ratio are resized to the frame size as
:func:`framematrix.io.depth_files.read_depth` does.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from framematrix.errors import InputError, ShapeError
from framematrix.io.atomic import atomic_dir, atomic_path
from framematrix.io.depth_files import (
    DEPTH_EXTENSIONS,
    fit_size,
    read_depth_file,
    squeeze_maps,
)
from framematrix.io.source import VIDEO_EXTENSIONS, VideoReader, list_image_files

__all__ = [
    "DEPTH_SIDECAR",
    "DEPTH_TAG",
    "DepthSource",
    "DepthWriter",
    "open_depth",
    "sidecar_path",
]

DEPTH_TAG = "FRAMEMATRIX_DEPTH"  # Matroska tag holding the JSON range record
DEPTH_SIDECAR = "depth.json"  # the range record inside a PNG folder
_FORMAT = "framematrix-depth"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the range record of a depth output lives: ``folder/depth.json`` for a folder,
    ``<file>.json`` (e.g. ``depth.mkv.json``) for a video."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return path.with_name(path.name + ".json")
    return path / DEPTH_SIDECAR


def _record(lo: float, hi: float, bits: int, **extra: object) -> dict:
    return {"format": _FORMAT, "version": 1, "lo": lo, "hi": hi, "bits": bits, **extra}


def _parse_record(text: str | None, where: Path) -> tuple[float, float, int] | None:
    """(lo, hi, bits) from a range record, None when ``text`` is None; InputError if malformed."""
    if text is None:
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            return None
        lo, hi, bits = float(record["lo"]), float(record["hi"]), int(record["bits"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: malformed depth range record: {exc}") from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo and bits in (8, 16)):
        raise InputError(f"{where}: bad depth range record (lo {lo}, hi {hi}, bits {bits})")
    return lo, hi, bits


# ----------------------------------------------------------------------------- writing


class DepthWriter:
    """Streamed, atomic, lossless depth output; a context manager.

    path: ``*.mkv`` -> an FFV1 video (``gray16le``, or ``gray`` for bits=8), one frame per map;
        any path without a suffix -> a folder of PNGs ``00000.png``, ``00001.png``... (16 or 8 bit).
    width, height: size of every map. fps: frame rate of the video (kept in the sidecar of a
        folder). lo, hi: the value range mapped linearly onto 0 .. 2**bits - 1 (hi >= lo, finite).
    bits: 16 (default) or 8. overwrite: replace an existing output (else InputError).

    The output is written under a hidden temporary name and moved into place by a successful
    ``close()`` (or the end of the ``with`` block); on an exception nothing is left. The range is
    stored as a JSON record in the Matroska tag ``FRAMEMATRIX_DEPTH`` and in :func:`sidecar_path`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: float,
        lo: float,
        hi: float,
        bits: int = 16,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {bits}")
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        lo, hi = float(lo), float(hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
            raise ValueError(f"lo and hi must be finite with hi >= lo, got {lo}, {hi}")
        suffix = self.path.suffix.lower()
        if suffix != ".mkv" and suffix in VIDEO_EXTENSIONS + DEPTH_EXTENSIONS:
            raise InputError(
                f"{self.path}: depth output must be a .mkv file (FFV1, lossless) or a folder "
                f"(16-bit PNGs), not a {suffix} file"
            )
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.lo, self.hi, self.bits = lo, hi, bits
        self.kind = "video" if suffix == ".mkv" else "folder"
        self.count = 0
        self._qmax = (1 << bits) - 1
        self._stack = ExitStack()
        self._closed = False
        sidecar = sidecar_path(self.path)
        if self.kind == "video":
            for target in (self.path, sidecar):
                if os.path.lexists(target) and not overwrite:
                    raise InputError(
                        f"{target}: output exists; choose a new name or pass --overwrite to "
                        "replace it"
                    )
            self._tmp = self._stack.enter_context(atomic_path(self.path))
            try:
                self._open_video()
            except BaseException:
                self._stack.__exit__(*_exc_info())
                raise
        else:
            self._tmp = self._stack.enter_context(atomic_dir(self.path, overwrite=overwrite))

    def _open_video(self) -> None:
        record = json.dumps(_record(self.lo, self.hi, self.bits))
        try:
            self._container = av.open(str(self._tmp), "w", format="matroska")
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{self.path}: cannot write depth video: {exc}") from exc
        self._container.metadata[DEPTH_TAG] = record
        stream = self._container.add_stream(
            "ffv1", rate=Fraction(self.fps).limit_denominator(1001000)
        )
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = "gray16le" if self.bits == 16 else "gray"
        # FFV1 version 3: intra-only (every frame a keyframe, so reads seek exactly), 4 CRC-checked
        # slices that decoders can run in parallel, Golomb-Rice coding (faster than the range
        # coder at about the same size on smooth depth).
        stream.options = {"level": "3", "coder": "0", "slices": "4", "slicecrc": "1", "g": "1"}
        self._stream = stream
        self._format = stream.pix_fmt

    def __enter__(self) -> DepthWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc_type, exc, tb)

    def _quantise(self, depth: np.ndarray) -> np.ndarray:
        """[n, H, W] float -> [n, H, W] uint16 (uint8 for bits=8): round((d - lo) / step)."""
        low, high = float(depth.min()), float(depth.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ShapeError(f"{self.path}: depth to write has NaN or inf values")
        span = self.hi - self.lo
        tolerance = 1e-6 * max(span, abs(self.lo), abs(self.hi), 1e-12)
        if low < self.lo - tolerance or high > self.hi + tolerance:
            raise ShapeError(
                f"{self.path}: depth values {low:g}..{high:g} lie outside the range "
                f"lo={self.lo:g}, hi={self.hi:g} given to the writer"
            )
        dtype = np.uint16 if self.bits == 16 else np.uint8
        out = np.empty(depth.shape, dtype)
        if span == 0:
            out.fill(0)
            return out
        # float64 one map at a time: exact rounding to the nearest step, memory of one map.
        scale = self._qmax / span
        for i, plane in enumerate(depth):
            q = np.subtract(plane, self.lo, dtype=np.float64)
            q *= scale
            np.rint(q, out=q)
            np.clip(q, 0, self._qmax, out=q)
            out[i] = q
        return out

    def write(self, depth: np.ndarray) -> None:
        """Append maps: [n, H, W] (or one [H, W]) float, finite, within [lo, hi]."""
        if self._closed:
            raise ValueError(f"{self.path}: depth writer is closed")
        depth = np.asarray(depth)
        if depth.ndim == 2:
            depth = depth[None]
        if depth.ndim != 3 or depth.shape[1:] != (self.height, self.width):
            raise ShapeError(
                f"depth must be [n, {self.height}, {self.width}] or [{self.height}, "
                f"{self.width}], got {depth.shape}"
            )
        q = self._quantise(depth)
        try:
            for plane in q:
                if self.kind == "video":
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), self._format)
                    frame.pts = self.count
                    for packet in self._stream.encode(frame):
                        self._container.mux(packet)
                else:
                    name = self._tmp / f"{self.count:05d}.png"
                    if not cv2.imwrite(str(name), plane):
                        raise OSError(f"cv2.imwrite failed for {name.name}")
                self.count += 1
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{self.path}: cannot write depth: {exc}") from exc

    def close(self) -> None:
        """Finish the output and move it into place (idempotent). No maps written is an error."""
        if self._closed:
            return
        try:
            if self.count == 0:
                raise ValueError(f"{self.path}: no depth maps were written")
            record = _record(
                self.lo,
                self.hi,
                self.bits,
                width=self.width,
                height=self.height,
                fps=self.fps,
                num_frames=self.count,
            )
            text = json.dumps(record, indent=1) + "\n"
            if self.kind == "video":
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            else:
                (self._tmp / DEPTH_SIDECAR).write_text(text)
        except BaseException:
            self._abort(*_exc_info())
            raise
        self._closed = True
        self._stack.close()  # moves the video / folder into place
        if self.kind == "video":
            with atomic_path(sidecar_path(self.path)) as tmp:
                tmp.write_text(text)

    def _abort(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        if self.kind == "video":
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                pass
        self._stack.__exit__(exc_type, exc, tb)


def _exc_info() -> tuple:
    return sys.exc_info()


# ----------------------------------------------------------------------------- reading


class DepthSource:
    """Depth maps read on demand, in step with the frames of a clip.

    num_frames, height, width: those of the clip (maps are resized to it). kind: "video",
    "folder", "array" (a stacked .npy/.npz) or "file" (one map for a single image).
    ``scaled``: the file carried our range record (values are lo..hi), else values are as stored.
    """

    num_frames: int
    height: int
    width: int
    kind: str
    path: Path
    scaled: bool = False

    def read(self, start: int, stop: int) -> np.ndarray:
        """Maps ``start .. stop-1`` as [stop - start, H, W] float32; with a range record
        ``lo + q * (hi - lo) / (2**bits - 1)``, else the stored values (NaN/inf kept)."""
        raise NotImplementedError

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(
                f"depth range {start}:{stop} outside 0:{self.num_frames} of {self.path}"
            )

    def __enter__(self) -> DepthSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (idempotent)."""


def _scale(q: np.ndarray, record: tuple[float, float, int] | None) -> np.ndarray:
    if record is None:
        return q.astype(np.float32, copy=False)
    lo, hi, bits = record
    out = q.astype(np.float32)
    out *= np.float32((hi - lo) / ((1 << bits) - 1))
    out += np.float32(lo)
    return out


def _gray_plane(frame: av.VideoFrame) -> np.ndarray:
    """The stored samples of a grey (or the luma of a YUV) frame as [H, W] uint8/uint16; the red
    channel for RGB formats."""
    fmt = frame.format
    name = fmt.name
    if name.startswith("gray") or (name.startswith("yuv") and fmt.is_planar):
        if name.startswith("gray"):
            return frame.to_ndarray()
        bits = fmt.components[0].bits
        dtype = np.dtype(np.uint8) if bits <= 8 else np.dtype(">u2" if fmt.is_big_endian else "<u2")
        plane = frame.planes[0]
        row = plane.line_size // dtype.itemsize
        samples = np.frombuffer(plane, dtype).reshape(-1, row)[: frame.height, : frame.width]
        return samples.astype(np.uint16 if bits > 8 else np.uint8)
    bits = fmt.components[0].bits
    rgb = frame.to_ndarray(format="rgb48le" if bits > 8 else "rgb24")
    return np.ascontiguousarray(rgb[..., 0])


class _VideoDepth(DepthSource):
    def __init__(self, path: Path, num_frames: int, height: int, width: int, label: str) -> None:
        self.path, self.kind = path, "video"
        self.num_frames, self.height, self.width = num_frames, height, width
        self._reader = VideoReader(path, _gray_plane)
        try:
            if self._reader.num_frames != num_frames:
                raise InputError(
                    f"{label}{path}: depth video has {self._reader.num_frames} frames but the clip "
                    f"has {num_frames} frames"
                )
            tag = self._reader.container.metadata.get(DEPTH_TAG)
            sidecar = sidecar_path(path)
            if tag is None and sidecar.is_file():
                tag = sidecar.read_text()
                self._record = _parse_record(tag, sidecar)
            else:
                self._record = _parse_record(tag, path)
            self.scaled = self._record is not None
            fit_size(self._reader.first[None].astype(np.float32), height, width, path)
        except BaseException:
            self._reader.close()
            raise

    def read(self, start: int, stop: int) -> np.ndarray:
        self._check_range(start, stop)
        if start == stop:
            return np.empty((0, self.height, self.width), np.float32)
        q = np.stack(self._reader.read(start, stop))
        return fit_size(_scale(q, self._record), self.height, self.width, self.path)

    def close(self) -> None:
        self._reader.close()


class _FolderDepth(DepthSource):
    def __init__(self, path: Path, num_frames: int, height: int, width: int, label: str) -> None:
        self.path, self.kind = path, "folder"
        self.num_frames, self.height, self.width = num_frames, height, width
        files = list_image_files(path, DEPTH_EXTENSIONS)
        if not files:
            raise InputError(
                f"{label}{path}: folder has no depth files ({', '.join(DEPTH_EXTENSIONS)})"
            )
        suffixes = sorted({f.suffix.lower() for f in files})
        if len(suffixes) > 1:
            raise InputError(
                f"{label}{path}: folder mixes depth formats ({', '.join(suffixes)}); keep one per "
                "folder"
            )
        if len(files) != num_frames:
            raise InputError(
                f"{label}{path}: {len(files)} depth files but the clip has {num_frames} frames"
            )
        sidecar = path / DEPTH_SIDECAR
        self._record = _parse_record(sidecar.read_text(), sidecar) if sidecar.is_file() else None
        self.scaled = self._record is not None
        self._files = files
        self._read_one(0)  # checks the first map now: readable, one map, a size that fits

    def _read_one(self, i: int) -> np.ndarray:
        file = self._files[i]
        depth = read_depth_file(file)
        if depth.shape[0] != 1:
            raise InputError(
                f"{file}: holds {depth.shape[0]} depth maps; a folder needs one per file"
            )
        return fit_size(_scale(depth, self._record), self.height, self.width, file)[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        self._check_range(start, stop)
        out = np.empty((stop - start, self.height, self.width), np.float32)
        for i in range(start, stop):
            out[i - start] = self._read_one(i)
        return out


class _ArrayDepth(DepthSource):
    def __init__(
        self, path: Path, array: np.ndarray, num_frames: int, height: int, width: int, label: str
    ) -> None:
        self.path = path
        self.kind = (
            "array" if array.shape[0] > 1 or path.suffix.lower() in (".npy", ".npz") else "file"
        )
        self.num_frames, self.height, self.width = num_frames, height, width
        if array.shape[0] != num_frames:
            raise InputError(
                f"{label}{path}: {array.shape[0]} depth maps but the clip has {num_frames} frames"
            )
        self._array = array
        fit_size(np.asarray(array[:1], np.float32), height, width, path)

    def read(self, start: int, stop: int) -> np.ndarray:
        self._check_range(start, stop)
        chunk = np.asarray(self._array[start:stop], dtype=np.float32)
        return fit_size(chunk, self.height, self.width, self.path)

    def close(self) -> None:
        self._array = np.empty((0, 1, 1), np.float32)


def _load_npy(path: Path) -> np.ndarray:
    """A .npy memory-mapped (an .npz is loaded: zip members cannot be mapped), as [F, H, W]."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read depth array: {exc}") from exc
    if not isinstance(array, np.ndarray):
        array.close()
        return read_depth_file(path)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"{path}: depth array has non-numeric dtype {array.dtype}")
    return squeeze_maps(array, path)


def open_depth(
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    height: int,
    width: int,
    name: str | None = None,
) -> DepthSource:
    """Open the depth of a clip of ``num_frames`` frames of ``height`` x ``width`` for lazy reads.

    path: a depth video (.mkv .mp4 .mov .avi .webm; gray 8/16-bit samples, e.g. FFV1 gray16le;
        the luma plane of a YUV video; the red channel of an RGB one); a folder of per-frame maps
        (.png 8/16 bit, .npy, .npz, .pfm; one extension, natural order, hidden files skipped); a
        stacked .npy [F, H, W] (memory-mapped) or .npz (loaded whole); or one map (.png .pfm
        .npy [H, W]) when ``num_frames`` is 1.
    name: what the path is to the user (e.g. ``--depth``), put before it in error messages.

    Values: with our range record (the Matroska tag or the sidecar JSON of :class:`DepthWriter`)
    ``lo + q * (hi - lo) / (2**bits - 1)``, else the stored values as float32. Maps of another size
    with the same aspect ratio (within 1 %) are resized bilinearly to ``height`` x ``width``.
    Raises InputError naming the file for a missing or unreadable input, a count other than
    ``num_frames`` (both counts named) or a size of another aspect ratio.
    """
    path = Path(path)
    if num_frames < 1 or height < 1 or width < 1:
        raise ValueError(
            f"num_frames, height and width must be positive: {num_frames}, {height}, {width}"
        )
    label = f"{name} " if name else ""
    if not path.exists():
        raise InputError(f"{label}{path}: no such depth file or folder")
    if path.is_dir():
        return _FolderDepth(path, num_frames, height, width, label)
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return _VideoDepth(path, num_frames, height, width, label)
    if suffix == ".npy":
        return _ArrayDepth(path, _load_npy(path), num_frames, height, width, label)
    if suffix not in DEPTH_EXTENSIONS:
        raise InputError(
            f"{label}{path}: unsupported depth file type '{path.suffix or '(none)'}' (expected a "
            f"depth video {', '.join(VIDEO_EXTENSIONS)}, {', '.join(DEPTH_EXTENSIONS)} or a "
            "folder of them)"
        )
    return _ArrayDepth(path, read_depth_file(path), num_frames, height, width, label)
