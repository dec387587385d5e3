"""Batch conversion: a folder of videos into a folder of stereo videos.

``convert_folder(IN_DIR, OUT_DIR, config=...)`` converts every video in ``IN_DIR`` (top level,
sorted by name) with :func:`framematrix.pipeline.convert`, one after the other, sharing one
:class:`framematrix.models.ModelSession` so the models load once. An output that already exists
is complete (outputs are only ever moved into place when finished) and is skipped; an
interrupted file resumes from its work folder like a single convert. A file that fails is
reported in one line; with ``keep_going`` the others go on, without it the batch stops there.
The CLI runs this when the input of ``framematrix convert`` is a folder of videos.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from framematrix.config import ConvertConfig
from framematrix.errors import FramematrixError, InputError
from framematrix.models import ModelSession

__all__ = [
    "VIDEO_INPUT_SUFFIXES",
    "BatchItem",
    "BatchResult",
    "batch_plan",
    "convert_folder",
    "is_video_folder",
]

VIDEO_INPUT_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr")


def _videos(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_INPUT_SUFFIXES
    )


def is_video_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of videos (a batch) rather than a folder of frames: it holds
    at least one video file and no image file at its top level."""
    path = Path(path)
    if not path.is_dir():
        return False
    names = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    has_images = any(p.suffix.lower() in _IMAGE_SUFFIXES for p in names)
    return not has_images and any(p.suffix.lower() in VIDEO_INPUT_SUFFIXES for p in names)


def _output_suffix(config: ConvertConfig) -> str:
    if config.format == "spatial":
        return ".mov"
    if config.codec == "ffv1":
        return ".mkv"
    return ".mp4"


def batch_plan(
    input_dir: str | Path, output_dir: str | Path, config: ConvertConfig
) -> list[tuple[Path, Path]]:
    """``(input, output)`` of every video of ``input_dir``: ``output_dir/<stem><suffix>``
    (``.mp4``; ``.mov`` for spatial video, ``.mkv`` for FFV1), with the player tag when
    ``config.name_tags``."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: not a folder")
    videos = _videos(input_dir)
    if not videos:
        raise InputError(f"{input_dir}: no video files ({', '.join(VIDEO_INPUT_SUFFIXES)})")
    out = []
    for video in videos:
        target = output_dir / f"{video.stem}{_output_suffix(config)}"
        if config.name_tags and config.format != "quilt":
            from framematrix.export.names import tagged_name

            target = tagged_name(target, config.format)
        out.append((video, target))
    stems = [o.name for _, o in out]
    clash = sorted({n for n in stems if stems.count(n) > 1})
    if clash:
        raise InputError(
            f"{input_dir}: videos with the same name would share the output {clash[0]}"
        )
    return out


def _depth_for(video: Path, depth_dir: Path) -> Path:
    """The depth of ``video`` in ``depth_dir``: a file or folder of the same stem."""
    matches = sorted(p for p in depth_dir.iterdir() if p.stem == video.stem)
    if not matches:
        raise InputError(f"{video}: no depth named {video.stem}.* in {depth_dir}")
    return matches[0]


@dataclass
class BatchItem:
    """One file of a batch: ``status`` is ``converted``, ``skipped`` (its output was already
    complete) or ``failed`` (``message`` says why, in one line)."""

    input: Path
    output: Path
    status: str
    message: str = ""
    seconds: float = 0.0
    frames: int = 0


@dataclass
class BatchResult:
    items: list[BatchItem] = field(default_factory=list)
    stopped: bool = False  # a failure ended the batch before every file was tried

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def failed(self) -> list[BatchItem]:
        return [item for item in self.items if item.status == "failed"]

    def summary(self) -> str:
        """One line: how many converted, skipped and failed (and not tried after a stop)."""
        parts = [
            f"{self.count('converted')} converted",
            f"{self.count('skipped')} skipped (already done)",
            f"{self.count('failed')} failed",
        ]
        frames = sum(item.frames for item in self.items if item.status == "converted")
        seconds = sum(item.seconds for item in self.items)
        line = f"batch: {', '.join(parts)}; {frames} frames in {seconds:.1f} s"
        if self.stopped:
            line += " (stopped at the first failure; --keep-going tries the others)"
        return line


def convert_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    depth: str | Path | None = None,
    config: ConvertConfig | None = None,
    keep_going: bool = False,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool | object = True,
    session: ModelSession | None = None,
    report: Callable[[BatchItem], None] | None = None,
    **convert_kwargs: object,
) -> BatchResult:
    """Convert every video of ``input_dir`` into ``output_dir`` (created if needed).

    depth: a folder holding each video's depth under the same stem (``clip.mkv`` for
        ``clip.mp4``), or None to estimate it.
    keep_going: after a failed file, go on with the next (else stop there).
    overwrite: convert again files whose output exists (else they are skipped).
    report: called with each finished :class:`BatchItem` (the CLI prints one line each).
    convert_kwargs: passed to :func:`framematrix.pipeline.convert` (``start``, ``end``,
        ``ray``, ``cache_dir``, ...).
    """

    config = config or ConvertConfig()
    config.validate()
    plan = batch_plan(input_dir, output_dir, config)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: a batch needs an output folder, this is a file")
    output_dir.mkdir(parents=True, exist_ok=True)
    depth_dir = Path(depth) if depth is not None else None
    if depth_dir is not None and not depth_dir.is_dir():
        raise InputError(f"{depth_dir}: the depth of a batch is a folder of depth files")
    session = session or ModelSession()
    result = BatchResult()
    cfg = config.copy()
    cfg.name_tags = False  # batch_plan has already tagged the names
    connection = contextlib.nullcontext()
    if convert_kwargs.get("ray") is not None:  # one connection for the folder, not one a file
        from framematrix.cluster import connected

        connection = connected(str(convert_kwargs["ray"]))
    with connection:
        _convert_each(plan, result, cfg, depth_dir, overwrite, restart, progress, session,
                      report, keep_going, convert_kwargs)  # fmt: skip
    return result


def _convert_each(  # noqa: ANN202
    plan, result, cfg, depth_dir, overwrite, restart, progress, session, report, keep_going,  # noqa: ANN001
    convert_kwargs,  # noqa: ANN001
):  # fmt: skip
    """The files of ``plan`` one after the other, each recorded in ``result``."""
    from framematrix.pipeline import convert

    for video, target in plan:
        started = time.perf_counter()
        if target.exists() and not overwrite:
            item = BatchItem(video, target, "skipped", "output exists")
        else:
            try:
                item_depth = _depth_for(video, depth_dir) if depth_dir is not None else None
                done = convert(
                    video,
                    target,
                    depth=item_depth,
                    config=cfg,
                    overwrite=overwrite,
                    restart=restart,
                    progress=progress,
                    session=session,
                    **convert_kwargs,
                )
                item = BatchItem(
                    video, target, "converted", seconds=done.seconds, frames=done.frames
                )
            except (FramematrixError, OSError, ValueError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if str(video) not in message:
                    message = f"{video}: {message}"
                item = BatchItem(
                    video, target, "failed", message, seconds=time.perf_counter() - started
                )
        result.items.append(item)
        if report is not None:
            report(item)
        if item.status == "failed" and not keep_going:
            result.stopped = len(result.items) < len(plan)
            break
