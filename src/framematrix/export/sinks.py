"""Where converted frames go: output-path rules and sinks (video by segments, folder, views, image).

A sink receives output frames chunk by chunk and never holds the video. The video sink is
resumable: it encodes each segment to its own file in the work folder
(:class:`framematrix.work.WorkFolder`) and joins them by remuxing, with the source's audio,
into the output when all are done. The other sinks write into a temporary folder or file that is
moved into place when complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from framematrix.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Formats that need every view of the matrix rather than the two eyes.
MULTIVIEW_FORMATS = ("grid", "views", "quilt")


def output_kind(output: Path, fmt: str) -> str:
    """``video``, ``image`` or ``folder``, from the output path's suffix."""
    suffix = output.suffix.lower()
    if fmt == "views":
        if suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
            raise InputError(f"{output}: format 'views' writes a folder; give a folder path")
        return "folder"
    if fmt == "spatial" and suffix != ".mov":
        raise InputError(f"{output}: format 'spatial' (Apple spatial video) writes a .mov file")
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix:
        raise InputError(
            f"{output}: unsupported output type {suffix!r} "
            f"(use {', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)} or a folder)"
        )
    return "folder"


def check_output(output: Path, kind: str, *, inputs: list[Path], overwrite: bool = False) -> None:
    """Fail before any work if writing ``output`` would destroy an input or a user's folder,
    or if its folder cannot be written."""
    from framematrix.io.atomic import check_folder_output

    if not output.resolve().name:
        raise InputError(f"{output}: give an output file or folder name")
    target = output.resolve()
    for path in inputs:
        source = path.resolve()
        if target == source or source.is_relative_to(target):
            raise InputError(f"{output}: the output would overwrite the input {path}")
    if kind == "folder":
        check_folder_output(output, overwrite)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{output}: cannot write here: permission denied for {parent}")


def write_video_file(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float,
    encoding,  # VideoEncoding  # noqa: ANN001
    audio_from: Path | None = None,
) -> Path:
    """Encode ``frames`` (``[H, W, 3]`` uint8 each) to ``path`` atomically."""
    from framematrix.export.writers import write_video

    return write_video(path, frames, fps=fps, encoding=encoding, audio_from=audio_from)


def join_video(
    segments: list[Path],
    output: Path,
    *,
    audio_from: Path | None,
    audio_start_s: float = 0.0,
    audio_end_s: float | None = None,
    spherical: str | None = None,
) -> Path:
    """Join segment files by remuxing (no re-encoding), with the source's audio, atomically."""
    from framematrix.export.join import join_segments

    return join_segments(
        segments,
        output,
        audio_from=audio_from,
        audio_start_s=audio_start_s,
        audio_end_s=audio_end_s,
        spherical=spherical,
        overwrite=True,
    )


def frames_of(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Flatten chunks ``[n, H, W, 3]`` into frames ``[H, W, 3]``."""
    for chunk in chunks:
        yield from chunk


def color_codes(color: dict) -> dict[str, int] | None:
    """A source's colour tags by name (``SourceInfo.color``) as the FFmpeg code points a
    :class:`framematrix.export.writers.VideoEncoding` takes; None when the source is untagged."""
    from framematrix.io import source as src

    tables = {
        "primaries": src._PRIMARIES,
        "transfer": src._TRANSFER,
        "matrix": src._MATRIX,
        "range": src._RANGE,
    }
    codes = {}
    for key, table in tables.items():
        name = (color or {}).get(key)
        if name is None:
            continue
        inverse = {v: k for k, v in table.items()}
        if name in inverse:
            codes[key] = inverse[name]
        elif name.startswith("unknown-"):
            codes[key] = int(name.split("-", 1)[1])
    return codes or None
