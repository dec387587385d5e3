"""Depth for the convert pass: given (a file, folder or depth video) or estimated per shot.

Either way the pipeline gets a :class:`ShotDepth`: ``read(start, stop)`` returns the raw depth
of any range of frames without holding the video's depth in memory, and ``normalizer(shot)``
the shot's normalisation (METHOD.md section 3.1 over each shot).

Estimated depth (:func:`estimate_into_store`) runs Depth Anything in batched windows and the
temporal stabilisation of METHOD.md section 2 with a halo of ``(w - 1) / 2`` frames that never
crosses a cut, writing both the raw and the steadied depth to on-disk stores keyed by the input's
fingerprint and the settings that decide them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from framematrix.depth.store import (
    DepthNormalizer,
    DepthStore,
    ShotDepthStats,
    StatsAccumulator,
)
from framematrix.progress import Progress

logger = logging.getLogger("framematrix")

Shots = Sequence[tuple[int, int]]
_HIST_STRIDE = 2  # the percentile pass looks at every 2nd pixel in each direction


class DepthReader(Protocol):
    """Anything that returns raw depth ``[n, H, W]`` float32 for frames ``start..stop-1``."""

    def read(self, start: int, stop: int) -> np.ndarray: ...


class ShotDepth:
    """Raw depth of a range of frames, with each shot's statistics and normalisation."""

    def __init__(
        self,
        reader: DepthReader,
        shots: Shots,
        stats: list[ShotDepthStats],
        *,
        kind: str,
        near: float | None,
        far: float | None,
        source: str = "depth",
    ) -> None:
        self.reader = reader
        self.shots = list(shots)
        self.stats = stats
        self.kind = kind
        self.near = near
        self.far = far
        self.source = source
        for shot in range(len(self.shots)):  # a shot that cannot be normalised fails now
            self.normalizer(shot)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.reader.read(start, stop)

    def shot_of(self, frame: int) -> int:
        for i, (a, b) in enumerate(self.shots):
            if a <= frame < b:
                return i
        raise IndexError(f"frame {frame} is outside every shot")

    def normalizer(self, shot: int) -> DepthNormalizer:
        return DepthNormalizer(
            self.kind, self.stats[shot], near=self.near, far=self.far, source=self.source
        )


def _chunks(reader: DepthReader, start: int, stop: int, chunk: int) -> Iterator[np.ndarray]:
    for a in range(start, stop, chunk):
        yield reader.read(a, min(stop, a + chunk))


def compute_shot_stats(
    reader: DepthReader,
    shots: Shots,
    *,
    kind: str,
    near: float | None,
    far: float | None,
    chunk: int = 32,
    progress: Progress | bool = False,
) -> list[ShotDepthStats]:
    """Per-shot statistics from two streamed reads of each shot's depth (range, percentiles)."""
    import warnings

    prog = Progress.of(progress)
    out = []
    total = sum(b - a for a, b in shots)
    with prog.task("depth stats", total) as task:
        for a, b in shots:
            acc = StatsAccumulator(a, b, kind, near, far)
            for depth in _chunks(reader, a, b, chunk):
                acc.add_range(depth)
                task.update(depth.shape[0])
            if acc.begin_hist():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    for depth in _chunks(reader, a, b, chunk):
                        acc.add_hist(depth[:, ::_HIST_STRIDE, ::_HIST_STRIDE])
            out.append(acc.finish())
    return out


def stats_from_store(store: DepthStore, shots: Shots, **kwargs) -> list[ShotDepthStats]:
    """Per-shot statistics, computed once and kept in the store's metadata."""
    cached = [store.shot_stats(a, b) for a, b in shots]
    kind = kwargs["kind"]
    key_ok = store.meta.get("stats_for") == [kind, kwargs.get("near"), kwargs.get("far")]
    if key_ok and all(s is not None for s in cached):
        return cached  # type: ignore[return-value]
    stats = compute_shot_stats(store, shots, **kwargs)
    store.meta["stats_for"] = [kind, kwargs.get("near"), kwargs.get("far")]
    for s in stats:
        store.set_shot_stats(s)
    return stats


def estimate_into_store(
    source,  # framematrix.io.source.FrameSource  # noqa: ANN001
    shots: Shots,
    config,  # DepthConfig  # noqa: ANN001
    raw_store: DepthStore,
    stable_store: DepthStore | None,
    *,
    session=None,  # ModelSession  # noqa: ANN001
    chunk: int = 32,
    progress: Progress | bool = True,
) -> DepthStore:
    """Depth Anything (and, with ``stable_store``, the stabilisation) for every shot.

    Frames are decoded once, in order, ``chunk`` at a time. The raw depth of a chunk is
    estimated and stored; a chunk is stabilised once the raw depth of the next ``half`` frames
    of its shot exists, reading ``half`` frames of halo on each side, never across the shot's
    ends, so the result equals the stabilisation of the whole shot at once. Chunks already in
    the stores (an interrupted earlier run) are not recomputed. Returns the store to read.
    """
    from framematrix.depth.estimate import estimate_depth
    from framematrix.models import ModelSession

    session = session or ModelSession()
    prog = Progress.of(progress)
    half = (config.window - 1) // 2
    target = stable_store if stable_store is not None else raw_store
    total = sum(b - a for a, b in shots)
    if all(target.covered(a, b) for a, b in shots):
        return target
    with prog.task("depth", total) as task:
        for a, b in shots:
            if target.covered(a, b):
                task.update(b - a)
                continue
            # recent frames of the shot: index -> frame, for the halo of the stabilisation
            recent: dict[int, np.ndarray] = {}
            pending = a  # first frame not yet stabilised
            for start, frames in source.iter_chunks(a, b, chunk):
                stop = start + frames.shape[0]
                for i in range(frames.shape[0]):
                    recent[start + i] = frames[i]
                if not raw_store.covered(start, stop):
                    model = session.depth_model(config)
                    raw = estimate_depth(
                        frames,
                        model,
                        config.batch_size,
                        False,
                        config.input_size,
                        config.multiple,
                    )
                    raw_store.write(start, raw)
                if stable_store is None:
                    task.update(stop - start)
                    continue
                # stabilise every frame whose forward halo is now available
                ready = stop - half if stop < b else b
                if ready > pending:
                    _stabilize_range(
                        pending, ready, a, b, half, recent, raw_store, stable_store, config, session
                    )
                    task.update(ready - pending)
                    pending = ready
                for k in [k for k in recent if k < pending - half]:
                    del recent[k]
    return target


def _stabilize_range(
    lo: int,
    hi: int,
    shot_start: int,
    shot_end: int,
    half: int,
    recent: dict[int, np.ndarray],
    raw_store: DepthStore,
    stable_store: DepthStore,
    config,  # noqa: ANN001
    session,  # noqa: ANN001
) -> None:
    from framematrix.depth.stabilize import stabilize_depth

    if stable_store.covered(lo, hi):
        return
    a0, b0 = max(shot_start, lo - half), min(shot_end, hi + half)
    frames = np.stack([recent[i] for i in range(a0, b0)])
    raw = raw_store.read(a0, b0)
    if b0 - a0 < 2:
        steady = np.maximum(raw, 0.0)
    else:
        steady = stabilize_depth(frames, raw, session.flow(config), config, progress=False)
    stable_store.write(lo, steady[lo - a0 : hi - a0])


def depth_store_root(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key
