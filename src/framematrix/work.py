"""Resumable work: segments of a conversion, their manifest, and the work folder beside the output.

A conversion to a video file is split into **segments**: a shot, or a run of frames inside a
long shot (cut at diffusion-window boundaries when the generative fill runs). Each finished
segment is encoded to its own file in the work folder ``.<output name>.framematrix/`` beside
the output and recorded in ``manifest.json`` with its checksum; when every segment is done they
are joined by remuxing into the output and the folder is removed.

Running the same command again after Ctrl-C, SIGTERM, SIGKILL or a power cut continues at the
first unfinished segment: the manifest is written atomically after each segment, and a segment
file is only recorded once it is complete. Other settings or another input start afresh, with one
line saying why; ``restart`` discards the folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from framematrix.errors import InputError
from framematrix.fingerprint import file_sha256

logger = logging.getLogger("framematrix")

MANIFEST = "manifest.json"
_VERSION = 1


@dataclass
class Segment:
    """Frames ``start..end-1`` of shot ``shot``, written to ``file`` in the work folder.

    window_start: the first frame the segment's diffusion windows read (before ``start`` when
    the first window overlaps frames of the previous segment); equal to ``start`` otherwise.
    """

    index: int
    start: int
    end: int
    shot: int
    window_start: int
    file: str
    sha256: str | None = None

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def plan_segments(
    shots: Sequence[tuple[int, int]],
    max_frames: int,
    *,
    windows: Callable[[int, int], list[tuple[int, int]]] | None = None,
    suffix: str = ".mp4",
) -> list[Segment]:
    """Split shots ``[(start, end), ...]`` into segments of at most ``max_frames`` new frames.

    windows: when given (the diffusion fill), ``windows(start, end)`` returns the shot's
    windows and segments are cut at window boundaries only (each holds whole windows, at least
    one), so a resumed segment continues the seamless windows of its shot.
    """
    max_frames = max(1, int(max_frames))
    segments: list[Segment] = []

    def add(start: int, end: int, shot: int, window_start: int) -> None:
        index = len(segments)
        segments.append(Segment(index, start, end, shot, window_start, f"seg{index:05d}{suffix}"))

    for shot_index, (s, e) in enumerate(shots):
        if windows is None:
            for a in range(s, e, max_frames):
                add(a, min(e, a + max_frames), shot_index, a)
            continue
        plan = windows(s, e)
        new_start = s  # first frame not yet output
        seg_start, seg_window_start = s, plan[0][0]
        for k, (a, b) in enumerate(plan):
            new = b - new_start
            if b - seg_start > max_frames and new_start > seg_start:
                add(seg_start, new_start, shot_index, seg_window_start)
                seg_start, seg_window_start = new_start, a
            new_start = b
            if k == len(plan) - 1:
                add(seg_start, b, shot_index, seg_window_start)
            del new
    return segments


def work_folder_for(output: str | os.PathLike[str]) -> Path:
    """The work folder of an output: ``.<name>.framematrix`` beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.framematrix")


class WorkFolder:
    """The segments of one conversion and their manifest.

    identity: what must match for a resume (input fingerprint, settings, range, plan).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        identity: dict,
        segments: list[Segment],
        output: str | os.PathLike[str] | None = None,
    ):
        self.root = Path(root)
        self.output = Path(output) if output is not None else None
        self.identity = identity
        self.segments = segments

    # -- opening
    def open(self, *, restart: bool = False) -> str | None:
        """Create or resume the folder. Returns a one-line reason when an earlier run's work
        was discarded (other settings or input), else None."""
        reason = None
        if self.root.exists():
            if restart:
                reason = "--restart: discarded the earlier run's work"
                self._wipe()
            else:
                reason = self._resume()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            owner = f"{self.output}: " if self.output is not None else ""
            raise InputError(
                f"{owner}cannot write the work folder {self.root}: {exc.strerror or exc}"
            ) from None
        for leftover in self.root.glob(".*tmp*"):
            _remove(leftover)
        self._save()
        return reason

    def _wipe(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _resume(self) -> str | None:
        try:
            data = json.loads((self.root / MANIFEST).read_text())
        except (OSError, ValueError):
            self._wipe()
            return "the earlier run's work folder had no readable manifest; starting afresh"
        old = data.get("identity", {})
        if data.get("version") != _VERSION or old != self.identity:
            changed = sorted(
                k for k in set(old) | set(self.identity) if old.get(k) != self.identity.get(k)
            )
            what = ", ".join(changed) or "format"
            self._wipe()
            return f"{what} changed since the interrupted run; starting afresh"
        done = {s["index"]: s for s in data.get("segments", []) if s.get("sha256")}
        for seg in self.segments:
            old_seg = done.get(seg.index)
            if old_seg and (old_seg["start"], old_seg["end"]) == (seg.start, seg.end):
                path = self.root / seg.file
                if path.is_file() and file_sha256(path) == old_seg["sha256"]:
                    seg.sha256 = old_seg["sha256"]
        return None

    def _save(self) -> None:
        data = {
            "version": _VERSION,
            "identity": self.identity,
            "segments": [asdict(s) for s in self.segments],
        }
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.root / MANIFEST)

    # -- segments
    def done(self, segment: Segment) -> bool:
        return segment.sha256 is not None

    def pending(self) -> list[Segment]:
        return [s for s in self.segments if not self.done(s)]

    def path(self, segment: Segment) -> Path:
        return self.root / segment.file

    def temporary(self, segment: Segment) -> Path:
        return self.root / f".{Path(segment.file).stem}.tmp{Path(segment.file).suffix}"

    def finish(self, segment: Segment, written: Path) -> None:
        """Move a completely written segment into place and record it."""
        final = self.path(segment)
        os.replace(written, final)
        segment.sha256 = file_sha256(final)
        self._save()

    def side_file(self, name: str) -> Path:
        return self.root / name

    def remove(self) -> None:
        self._wipe()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temporaries(output: str | os.PathLike[str]) -> list[Path]:
    """Remove hidden temporaries of ``output`` left by a killed run (``.name.tmp-XXXX.ext``)."""
    output = Path(output)
    removed = []
    if not output.parent.is_dir():
        return removed
    for path in output.parent.glob(f".{output.stem}.tmp-*{output.suffix}"):
        _remove(path)
        removed.append(path)
    return removed
