"""Depth of a whole video on disk, per shot, with each shot's statistics.

The depth of a long video does not fit in memory (about 3.7 MB a frame at 720p in float32), so
it lives in a :class:`DepthStore`: a folder of ``.npy`` shards, one per chunk of frames (never
crossing a shot), memory-mapped when read back, and a ``meta.json`` with each shot's
statistics. A store is keyed by a fingerprint of the input file and the depth settings
(:mod:`framematrix.fingerprint`), so a second convert with other stereo settings reuses it.

:class:`ShotDepthStats` holds what the warp needs from a whole shot: the range of the raw
values (the normalisation of METHOD.md section 3.1 is computed over each shot, the paper's
"clip") and percentiles of the normalised inverse depth (for the depth budget and the comfort
report). :class:`DepthNormalizer` applies a shot's normalisation to any chunk of it, with the
same float32 arithmetic as :func:`framematrix.geometry.normalize.depth_to_z` on the whole shot.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from framematrix.errors import InputError, ShapeError

HIST_BINS = 4096  # histogram bins of a shot's normalised depth (percentiles to 1/4096 of range)
_META = "meta.json"
_STORE_VERSION = 1


@dataclass
class ShotDepthStats:
    """Statistics of one shot's depth ``[start, end)``.

    low, high: min and max of the finite raw values (None when the shot has none).
    inv_p1, inv_p50, inv_p99: percentiles of the inverse depth the warp uses (for ``relative``
        depth the normalised ``d`` of METHOD.md 3.1 (z = 1 / (d + 1e-6)), for ``metric`` 1/z,
        for ``disparity-px`` the disparity), from a histogram of :data:`HIST_BINS` bins.
    inv_min, inv_max: the extremes of that inverse depth.
    """

    start: int
    end: int
    low: float | None = None
    high: float | None = None
    inv_min: float | None = None
    inv_p1: float | None = None
    inv_p50: float | None = None
    inv_p99: float | None = None
    inv_max: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ShotDepthStats:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


class DepthNormalizer:
    """One shot's depth normalisation (METHOD.md 3.1), applied chunk by chunk.

    kind: ``relative`` (inverse depth, normalised by the shot's ``low``/``high``, then
    ``near``/``far``), ``metric`` (z as given) or ``disparity-px`` (passed through).
    """

    def __init__(
        self,
        kind: str,
        stats: ShotDepthStats,
        *,
        near: float | None = None,
        far: float | None = 10.0,
        source: str = "depth",
    ) -> None:
        self.kind = kind
        self.stats = stats
        self.near = near
        self.far = far
        if kind == "relative":
            if stats.low is None or stats.high is None:
                raise InputError(f"{source}: depth has no finite value (all NaN/inf)")
            if stats.high == stats.low:
                raise InputError(
                    f"{source}: depth has zero range over frames {stats.start}-{stats.end - 1} "
                    f"(min == max == {stats.low:g}); relative depth cannot be normalised"
                )

    def inverse(self, depth, *, inplace: bool = False):  # noqa: ANN001, ANN201 - torch in, torch out
        """Inverse depth ``[n, H, W]`` float32 torch (NaN kept): normalised d for ``relative``,
        1/z for ``metric``, the disparity for ``disparity-px``. ``inplace``: a writable float32
        tensor ``depth`` may be overwritten with the result (relative depth is)."""
        import torch

        depth = _tensor(depth)
        if self.kind == "relative":
            low = torch.tensor(self.stats.low, dtype=torch.float32)
            high = torch.tensor(self.stats.high, dtype=torch.float32)
            if inplace and depth.dtype == torch.float32:
                d = depth.sub_(low).div_(high - low)  # the same steps, in depth's memory
            else:
                d = (depth - low).div_(high - low)  # one new tensor, then in place
            if self.near is not None and self.near > 0:
                d.div_(self.near)
            if self.far is not None and self.far > 0:
                d.add_(1.0 / self.far)
            return d
        if self.kind == "metric":
            return 1.0 / depth
        return depth

    def z(self, depth):  # noqa: ANN001, ANN201
        """Camera depth z ``[n, H, W]`` float32 torch, NaN where unknown; equal to
        ``depth_to_z`` of the whole shot restricted to this chunk (it is that function, given
        the shot's range). May reuse ``depth``'s memory when it is a float32 tensor."""
        import warnings

        from framematrix.geometry.normalize import depth_to_z

        depth = _tensor(depth)
        value_range = None
        if self.kind == "relative":
            value_range = (self.stats.low, self.stats.high)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN is reported once, per input
            return depth_to_z(
                depth, self.kind, near=self.near, far=self.far, value_range=value_range
            )


def _tensor(depth):  # noqa: ANN001, ANN202
    import torch

    if isinstance(depth, np.ndarray):
        if not depth.flags.writeable:
            depth = np.array(depth, np.float32)
        return torch.from_numpy(np.ascontiguousarray(depth, np.float32))
    return torch.as_tensor(depth).to(torch.float32)


class StatsAccumulator:
    """Shot statistics from streamed chunks: a first pass for the range, a second for the
    percentiles (:meth:`add_range`, then :meth:`add_hist`, then :meth:`finish`)."""

    def __init__(self, start: int, end: int, kind: str, near: float | None, far: float | None):
        self.stats = ShotDepthStats(start, end)
        self.kind = kind
        self.near = near
        self.far = far
        self._hist: np.ndarray | None = None
        self._edges: tuple[float, float] | None = None

    def add_range(self, depth: np.ndarray) -> None:
        if depth.size == 0:
            return
        lo, hi = float(depth.min()), float(depth.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            # NaN or inf somewhere (a finite min and max exclude both): only the finite values
            finite = depth[np.isfinite(depth)]
            if finite.size == 0:
                return
            lo, hi = float(finite.min()), float(finite.max())
        s = self.stats
        s.low = lo if s.low is None else min(s.low, lo)
        s.high = hi if s.high is None else max(s.high, hi)

    def _inverse(self, depth: np.ndarray) -> np.ndarray:
        s = self.stats
        normalizer = DepthNormalizer(self.kind, s, near=self.near, far=self.far)
        inv = normalizer.inverse(depth).numpy()
        return inv[np.isfinite(inv)]

    def begin_hist(self) -> bool:
        """Prepare the second pass; False when the shot has no finite depth."""
        s = self.stats
        if s.low is None or (self.kind == "relative" and s.high == s.low):
            return False
        if self.kind == "relative":
            lo = 0.0 + (1.0 / self.far if self.far else 0.0)
            hi = (1.0 / self.near if self.near else 1.0) + (1.0 / self.far if self.far else 0.0)
        elif self.kind == "metric":
            lo, hi = 1.0 / max(s.high, 1e-12), 1.0 / max(s.low, 1e-12)
        else:
            lo, hi = s.low, s.high
        if not hi - lo > abs(lo) * 1e-4:  # a (nearly) constant shot still gets finite bins
            hi = lo + max(1e-6, abs(lo) * 1e-3)
        self._edges = (lo, hi)
        self._hist = np.zeros(HIST_BINS, np.int64)
        self.stats.inv_min, self.stats.inv_max = None, None
        return True

    def add_hist(self, depth: np.ndarray) -> None:
        if self._hist is None or self._edges is None:
            return
        inv = self._inverse(depth)
        if inv.size == 0:
            return
        s = self.stats
        lo, hi = float(inv.min()), float(inv.max())
        s.inv_min = lo if s.inv_min is None else min(s.inv_min, lo)
        s.inv_max = hi if s.inv_max is None else max(s.inv_max, hi)
        counts, _ = np.histogram(inv, bins=HIST_BINS, range=self._edges)
        self._hist += counts

    def finish(self) -> ShotDepthStats:
        if self._hist is not None and self._edges is not None and self._hist.sum() > 0:
            lo, hi = self._edges
            cdf = np.cumsum(self._hist) / self._hist.sum()
            centres = lo + (np.arange(HIST_BINS) + 0.5) * (hi - lo) / HIST_BINS

            def pct(q: float) -> float:
                return float(centres[min(HIST_BINS - 1, int(np.searchsorted(cdf, q)))])

            s = self.stats
            s.inv_p1, s.inv_p50, s.inv_p99 = pct(0.01), pct(0.50), pct(0.99)
        return self.stats


class DepthStore:
    """Per-frame depth ``[H, W]`` float32 of one input on disk, in shards, with shot statistics.

    root: the store's folder (created). A shard ``d{start:07d}-{stop:07d}.npy`` holds frames
    ``start..stop-1``; shards are written atomically, so an interrupted run keeps the finished
    ones and a resumed run computes only what is missing.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        num_frames: int,
        height: int,
        width: int,
        *,
        clean: bool = True,
    ):
        """clean: remove the temporary files an interrupted earlier writer left; False where
        other processes may be writing shards at the same time (a cluster's workers)."""
        self.root = Path(root)
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"{self.root}: cannot create the depth store: {exc.strerror}"
            ) from None
        meta = self._read_meta()
        shape = [self.num_frames, self.height, self.width]
        if meta is not None and meta.get("shape") != shape:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)
            meta = None
        self.meta = meta or {"version": _STORE_VERSION, "shape": shape, "shots": {}}
        self._shards = self._scan(clean)

    # -- metadata
    def _read_meta(self) -> dict | None:
        path = self.root / _META
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _write_meta(self) -> None:
        tmp = self.root / f".{_META}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(self.meta, indent=1))
        os.replace(tmp, self.root / _META)

    def shot_stats(self, start: int, end: int) -> ShotDepthStats | None:
        data = self.meta["shots"].get(f"{start}-{end}")
        return ShotDepthStats.from_dict(data) if data else None

    def set_shot_stats(self, stats: ShotDepthStats) -> None:
        self.meta["shots"][f"{stats.start}-{stats.end}"] = stats.to_dict()
        self._write_meta()

    # -- shards
    def _scan(self, clean: bool = True) -> list[tuple[int, int]]:
        shards = []
        for path in self.root.glob("d*-*.npy"):
            try:
                a, b = path.stem[1:].split("-")
                shards.append((int(a), int(b)))
            except ValueError:
                continue
        if clean:
            for leftover in self.root.glob(".*.tmp*"):
                leftover.unlink(missing_ok=True)
        return sorted(shards)

    def _shard_path(self, start: int, stop: int) -> Path:
        return self.root / f"d{start:07d}-{stop:07d}.npy"

    def covered(self, start: int, stop: int) -> bool:
        """Whether every frame of ``start..stop-1`` is stored."""
        pos = start
        for a, b in self._shards:
            if a <= pos < b:
                pos = b
            if pos >= stop:
                return True
        return pos >= stop

    def write(self, start: int, depth: np.ndarray) -> None:
        """Store ``depth`` ``[n, H, W]`` float32 as frames ``start..start+n-1``."""
        depth = np.asarray(depth, np.float32)
        if depth.ndim != 3 or depth.shape[1:] != (self.height, self.width):
            raise ShapeError(
                f"depth chunk must be [n, {self.height}, {self.width}], got {depth.shape}"
            )
        stop = start + depth.shape[0]
        final = self._shard_path(start, stop)
        tmp = self.root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with tmp.open("wb") as handle:
            np.save(handle, depth)
        os.replace(tmp, final)
        self._shards = sorted({*self._shards, (start, stop)})

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start..stop-1`` as ``[n, H, W]`` float32 (a copy)."""
        out = np.empty((stop - start, self.height, self.width), np.float32)
        pos = start
        for a, b in self._shards:
            if b <= pos or a >= stop:
                continue
            if a > pos:
                break
            shard = np.load(self._shard_path(a, b), mmap_mode="r")
            take = min(b, stop)
            out[pos - start : take - start] = shard[pos - a : take - a]
            pos = take
            if pos >= stop:
                return out
        raise InputError(f"{self.root}: depth of frames {pos}-{stop - 1} is missing from the store")

    def iter_chunks(
        self, start: int, stop: int, chunk: int = 32
    ) -> Iterator[tuple[int, np.ndarray]]:
        for a in range(start, stop, chunk):
            b = min(stop, a + chunk)
            yield a, self.read(a, b)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.npy"))


def shot_stats_from_chunks(
    chunks: Iterable[np.ndarray] | None,
    rechunks: Iterable[np.ndarray],
    start: int,
    end: int,
    *,
    kind: str,
    near: float | None,
    far: float | None,
) -> ShotDepthStats:
    """Statistics of a shot from two streamed passes over its depth chunks.

    chunks: the first pass (range); None when ``rechunks`` can be iterated twice (a list).
    rechunks: the second pass (histogram of the normalised inverse depth).
    """
    acc = StatsAccumulator(start, end, kind, near, far)
    first = rechunks if chunks is None else chunks
    for depth in first:
        acc.add_range(depth)
    if acc.begin_hist():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for depth in rechunks:
                acc.add_hist(depth)
    return acc.finish()
