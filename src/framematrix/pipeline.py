"""The conversion pipeline: frame source -> shots -> depth store -> matrix chunks -> fill -> sink.

This module only orchestrates; each stage lives in its own module and takes its own config:

- :mod:`framematrix.io.source`: the frames, streamed in chunks or read by range;
- :mod:`framematrix.shots`: the cuts (a shot is the paper's "clip");
- :mod:`framematrix.depth.provider`: depth given or estimated per shot, on disk, with each
  shot's statistics and normalisation (METHOD.md sections 1-3.1);
- :mod:`framematrix.geometry`: the frame matrix of each chunk (section 3);
- :mod:`framematrix.fill`: the holes (fast, or the diffusion fill in seamless windows);
- :mod:`framematrix.export`: layouts and sinks; a video is written in resumable segments
  (:mod:`framematrix.work`) joined by remuxing.

Memory does not grow with the length of the video: frames, depth and output are streamed a
chunk at a time, with bounded queues between the decode, compute and encode threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from framematrix.buffers import BufferPool
from framematrix.config import FILL_METHODS, ConvertConfig
from framematrix.device import resolve_device
from framematrix.errors import InputError
from framematrix.export.formats import compose_stereo, views_grid
from framematrix.export.sinks import (
    IMAGE_SUFFIXES,
    MULTIVIEW_FORMATS,
    VIDEO_SUFFIXES,
    check_output,
    color_codes,
    frames_of,
    join_video,
    output_kind,
    write_video_file,
)
from framematrix.fingerprint import input_fingerprint, settings_fingerprint
from framematrix.geometry.build import build_frame_matrix
from framematrix.io.source import FrameSource
from framematrix.matrix import FrameMatrix
from framematrix.models import ModelSession
from framematrix.progress import Progress
from framematrix.stream import BackgroundConsumer, prefetch

logger = logging.getLogger("framematrix")

__all__ = [
    "IMAGE_SUFFIXES",
    "MULTIVIEW_FORMATS",
    "VIDEO_SUFFIXES",
    "ConvertResult",
    "build_chunk",
    "convert",
    "estimate_depth_files",
    "find_shots",
    "make_matrix",
    "prepare_depth",
    "stabilize_depth_files",
]


@dataclass
class ConvertResult:
    """What :func:`convert` wrote and what it cost."""

    output: Path
    frames: int
    fps: float
    views: int
    hole_fraction: float
    seconds: float
    shots: list[tuple[int, int]] = field(default_factory=list)
    segments: int = 0
    segments_reused: int = 0
    summary: str = ""


# ----------------------------------------------------------------------------- stages


def frame_range(num_frames: int, fps: float, start=None, end=None) -> tuple[int, int]:  # noqa: ANN001
    """``[start, end)`` in frame indices from ``start``/``end`` given as frame indices or the
    strings ``--start``/``--end`` take (``120f``, ``12.5``, ``1:02.5``)."""
    from framematrix.io.source import parse_position

    def pos(value, default: int) -> int:  # noqa: ANN001
        if value is None:
            return default
        if isinstance(value, (int, np.integer)):
            return int(value)
        try:
            return parse_position(str(value), fps, num_frames)
        except ValueError as exc:
            raise InputError(f"--start/--end {value!r}: {exc}") from None

    a, b = pos(start, 0), pos(end, num_frames)
    a, b = max(0, a), min(num_frames, b)
    if a >= b:
        raise InputError(
            f"--start/--end select no frames ({start!r} .. {end!r} of {num_frames} frames)"
        )
    return a, b


def find_shots(
    source,  # FrameSource  # noqa: ANN001
    start: int,
    end: int,
    config: ConvertConfig,
    *,
    progress: Progress | bool = False,
    cache_dir: Path | None = None,
) -> list[tuple[int, int]]:
    """The shots of frames ``[start, end)`` as ``[(start, end), ...]`` (absolute indices)."""
    from framematrix.shots import detect_shots, parse_shots_option, resolve_method, shot_frame_size
    from framematrix.shots.frames import downscale

    method, cuts_file = parse_shots_option(config.shots)
    if method == "none" or end - start < 2:
        return [(start, end)]
    cache = None
    if cache_dir is not None and cuts_file is None and source.info.kind == "video":
        key = settings_fingerprint([source_fingerprint(source), method, start, end])
        cache = Path(cache_dir) / f"shots-{key}.json"
        if cache.is_file():
            try:
                return [tuple(s) for s in json.loads(cache.read_text())]
            except (OSError, ValueError):
                pass
    size = None
    if cuts_file is None:
        method = resolve_method(method)
        size = shot_frame_size(method)
    chunks: Iterator[np.ndarray] = iter(())
    if size is not None:
        # downscaled in the decode thread, chunk by chunk: the detector's small frames are all
        # that queue up (not chunks of full-size frames), and the scaling overlaps the detector
        if hasattr(source, "iter_small"):
            # TransNetV2's own inference scales with FFmpeg's default (bicubic); the content
            # detector's scores want plain area averages
            scaler = "BICUBIC" if method == "transnet" else "AREA"
            small = source.iter_small(size, start, end, 16, interpolation=scaler)
            chunks = (frames for _, frames in small)
        else:  # a source of the user's with only iter_chunks
            chunks = (downscale(f, *size) for _, f in source.iter_chunks(start, end, 16))
        chunks = prefetch(chunks, 8, "shots-decode")
    found = detect_shots(
        chunks,
        end - start,
        method,
        cuts_file=cuts_file,
        device=config.device,
        progress=progress,
        small=size is not None,
    )
    shots = [(start + s.start, start + s.end) for s in found]
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(shots))
        except OSError:
            pass
    return shots


def source_fingerprint(source) -> str:  # noqa: ANN001
    """The identity of a frame source: its own ``fingerprint``, or its file's."""
    return getattr(source, "fingerprint", None) or input_fingerprint(source.info.path)


def open_input(input, fps: float | None = None, config: ConvertConfig | None = None):  # noqa: ANN001, ANN201
    """A frame source from a path, or the given source object itself; scaled down to the
    config's ``max_width`` / ``max_height`` (:class:`framematrix.io.scaled.ScaledSource`)."""
    from framematrix.io.source import open_source

    if hasattr(input, "iter_chunks") and hasattr(input, "info"):
        source = input
    else:
        source = open_source(Path(input), fps=fps)
    if config is not None and (config.max_width or config.max_height):
        from framematrix.io.scaled import scaled_source

        return scaled_source(source, config.max_width, config.max_height)
    return source


class _ArrayDepth:
    def __init__(self, depth: np.ndarray) -> None:
        self.depth = depth

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.depth[start:stop], np.float32)


def _given_depth_reader(depth, source, kind: str = "relative"):  # noqa: ANN001, ANN202
    """A lazy reader of the given depth at the source's size: depth of the input's own size,
    resized with the frames when the source is scaled (``--max-width``)."""
    info = source.info
    native = getattr(source, "native", info)
    shape = (native.num_frames, native.height, native.width)
    if isinstance(depth, (str, Path)):
        from framematrix.io.depth_video import open_depth

        reader = open_depth(
            Path(depth), num_frames=native.num_frames, height=native.height, width=native.width
        )
    else:
        array = np.asarray(depth, dtype=np.float32)
        if array.shape != shape:
            raise InputError(f"depth array has shape {array.shape}, expected {shape}")
        reader = _ArrayDepth(array)
    if (native.width, native.height) == (info.width, info.height):
        return reader
    from framematrix.io.scaled import ScaledDepth

    scale = info.width / native.width if kind == "disparity-px" else 1.0
    return ScaledDepth(reader, (info.width, info.height), disparity_scale=scale)


def _estimated_stores(  # noqa: ANN202
    source,  # noqa: ANN001
    shots,  # noqa: ANN001
    config: ConvertConfig,
    session,  # noqa: ANN001
    cache_dir,  # noqa: ANN001
    *,
    clean: bool = True,
    check_model: bool = False,
):
    """The raw and the stabilised depth stores of estimated depth (keyed by the input's
    fingerprint, the depth settings and, for the stabilised one, the shots). check_model:
    load the depth model now (a missing one fails in one line) if some raw depth is missing."""
    from framematrix.depth.cache import estimation_settings, stabilization_settings
    from framematrix.depth.store import DepthStore

    if config.stereo.depth_kind != "relative":
        raise InputError(
            f"--depth-kind {config.stereo.depth_kind}: estimated depth is relative; give --depth "
            f"with {config.stereo.depth_kind} depth"
        )
    if cache_dir is None:
        raise ValueError("estimated depth needs a cache_dir for its on-disk store")
    info = source.info
    dcfg = config.depth
    fingerprint = source_fingerprint(source)
    raw_key = settings_fingerprint(["raw", fingerprint, estimation_settings(dcfg)])
    shape = (info.num_frames, info.height, info.width)
    raw_store = DepthStore(Path(cache_dir) / f"depth-{raw_key}", *shape, clean=clean)
    if check_model and not all(raw_store.covered(a, b) for a, b in shots):
        session.depth_model(dcfg)
    stable_store = None
    if dcfg.stabilize and info.num_frames > 1:
        flow_name = session.flow(dcfg).name
        stable_key = settings_fingerprint(
            ["stable", raw_key, stabilization_settings(dcfg, flow_name), list(shots)]
        )
        stable_store = DepthStore(Path(cache_dir) / f"depth-{stable_key}", *shape, clean=clean)
    return raw_store, stable_store


def missing_depth_shots(source, shots, config: ConvertConfig, cache_dir, session=None) -> list[int]:  # noqa: ANN001
    """Indices of the shots whose estimated depth is not yet in the store of ``cache_dir``.

    Also clears what an interrupted earlier run left half-written in the stores, so call it
    before workers start writing to them."""
    session = session or ModelSession()
    raw, stable = _estimated_stores(source, shots, config, session, cache_dir)
    target = stable if stable is not None else raw
    return [i for i, (a, b) in enumerate(shots) if not target.covered(a, b)]


def estimate_shot_depth(
    source,  # FrameSource  # noqa: ANN001
    shots: Sequence[tuple[int, int]],
    which: Sequence[int],
    config: ConvertConfig,
    *,
    session: ModelSession | None = None,
    cache_dir: Path,
    progress: Progress | bool = False,
) -> None:
    """Estimate (and stabilise) the depth of the shots ``which`` (indices into ``shots``) into
    the store of ``cache_dir``, as :func:`prepare_depth` does for all of them. Several processes
    may do this at once for different shots (a cluster's workers): each writes its own shards
    and none clears another's temporary files."""
    from framematrix.depth.provider import estimate_into_store

    session = session or ModelSession()
    raw, stable = _estimated_stores(source, shots, config, session, cache_dir, clean=False)
    subset = [tuple(shots[i]) for i in which]
    estimate_into_store(
        source, subset, config.depth, raw, stable, session=session, progress=progress
    )


def prepare_depth(
    source,  # FrameSource  # noqa: ANN001
    shots: Sequence[tuple[int, int]],
    depth,  # path, array or None  # noqa: ANN001
    config: ConvertConfig,
    *,
    session: ModelSession | None = None,
    cache_dir: Path | None = None,
    progress: Progress | bool = False,
    stats: list | None = None,
):  # noqa: ANN201 - ShotDepth
    """Depth of every shot: the given depth read lazily, or estimated into an on-disk store.

    stats: the shots' statistics when already known (a cluster worker gets the driver's), so
        that neither the given depth nor the store is read through again; estimated depth must
        then be in the store already.
    """
    from framematrix.depth.provider import (
        ShotDepth,
        compute_shot_stats,
        estimate_into_store,
        stats_from_store,
    )

    stereo = config.stereo
    info = source.info
    kind = stereo.depth_kind
    kwargs = {"kind": kind, "near": stereo.near, "far": stereo.far}
    if depth is not None:
        reader = _given_depth_reader(depth, source, kind)
        name = str(depth) if isinstance(depth, (str, Path)) else f"depth of {info.path}"
        if stats is None:
            stats = compute_shot_stats(reader, shots, progress=progress, **kwargs)
        return ShotDepth(reader, shots, stats, source=name, **kwargs)
    session = session or ModelSession()
    raw_store, stable_store = _estimated_stores(
        source, shots, config, session, cache_dir, clean=stats is None, check_model=stats is None
    )
    target = stable_store if stable_store is not None else raw_store
    if stats is not None:
        return ShotDepth(target, shots, stats, source=f"depth of {info.path}", **kwargs)
    store = estimate_into_store(
        source, shots, config.depth, raw_store, stable_store, session=session, progress=progress
    )
    stats = stats_from_store(store, shots, progress=progress, **kwargs)
    return ShotDepth(store, shots, stats, source=f"depth of {info.path}", **kwargs)


def warp_input(
    normalizer,  # DepthNormalizer  # noqa: ANN001
    raw: np.ndarray,
    config: ConvertConfig,
    width: int,
) -> tuple[torch.Tensor, str]:
    """Per-chunk warp input: (values, depth kind for :func:`build_frame_matrix`).

    Relative and metric depth become scene depth z (``metric``), normalised by the shot;
    pixel disparity is passed through.
    """
    raw = np.array(raw, np.float32)  # a private, writable copy (memory-mapped depth is not)
    budget = config.stereo.depth_budget
    if budget is not None and normalizer.kind != "disparity-px":
        from framematrix.geometry.parallax import ShotStats, disparity_px, plan_parallax

        st = normalizer.stats
        if st.inv_p1 is None or st.inv_p99 is None:
            raise InputError(f"depth of frames {st.start}-{st.end - 1} has no finite value")
        lo, hi = min(st.inv_min, st.inv_p1), max(st.inv_max, st.inv_p99)
        stats = ShotStats(st.start, st.end, lo, st.inv_p1, st.inv_p50, st.inv_p99, hi)
        plan = plan_parallax(stats, width, budget, config.stereo.convergence)
        d = normalizer.inverse(torch.from_numpy(raw), inplace=True)  # in raw's memory
        return disparity_px(d, plan, out=d), "disparity-px"
    if normalizer.kind == "disparity-px":
        return torch.from_numpy(raw), "disparity-px"
    return normalizer.z(torch.from_numpy(raw)), "metric"


def _cores() -> int:
    """The cores this process may use: ``OMP_NUM_THREADS`` when set (as torch reads it; Ray
    sets it to an actor's CPUs), else the CPUs it is allowed to run on."""
    import os

    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def compute_workers(config: ConvertConfig, device: torch.device) -> int:
    """Threads that build and fill the chunks of a geometric fill side by side: one per core
    up to 4 (and at most one per frame of a chunk) on the CPU; 1 on an accelerator, whose
    kernels already use the device, and for the diffusion fill."""
    if device.type != "cpu" or config.fill == "diffusion":
        return 1
    return max(1, min(_cores(), 4, int(config.chunk_frames)))


def compute_threads(workers: int) -> int:
    """torch threads of each of ``workers`` compute threads: the cores shared out."""
    return max(1, _cores() // max(1, workers))


def eye_views_only(config: ConvertConfig) -> bool:
    """Whether only the two eyes need warping (cheaper than the full matrix)."""
    return config.fill != "diffusion" and config.format not in MULTIVIEW_FORMATS


def build_chunk(
    frames: np.ndarray,
    values: torch.Tensor,
    kind: str,
    config: ConvertConfig,
    *,
    eyes_only: bool,
    device: torch.device,
    buffers: BufferPool | None = None,
) -> FrameMatrix:
    """Frame matrix of one chunk. With ``eyes_only`` the rig keeps its end cameras (the eyes)
    and the source, which gives exactly the end views of the full V-view rig. With ``buffers``
    the matrix lives in the pool's memory (overwritten by the next chunk built with it)."""
    stereo = config.stereo
    views = stereo.views
    if eyes_only:
        views = 3 if stereo.mode == "middle2leftright" else 2
    return build_frame_matrix(
        frames,
        values,
        mode=stereo.mode,
        views=views,
        baseline=stereo.baseline,
        focal=stereo.focal,
        near=stereo.near,
        far=stereo.far,
        planes=stereo.planes,
        depth_kind=kind,
        device=device,
        warp=stereo.warp,
        buffers=buffers,
    )


def to_uint8_numpy(images: torch.Tensor) -> np.ndarray:
    """float in [0, 1] (any shape) -> uint8 numpy, rounded half up."""
    from framematrix.matrix import to_uint8_rounded

    return to_uint8_rounded(images)


def matrix_to_output_frames(matrix: FrameMatrix, fmt: str, fov: float = 70.0) -> np.ndarray:
    """Compose one chunk's matrix into output frames ``[F, H', W', 3]`` uint8 for ``fmt``."""
    if fmt == "grid":
        return views_grid(to_uint8_numpy(matrix.images))
    if fmt == "quilt":
        from framematrix.export.quilt import quilt_video

        order = np.argsort(matrix.offsets.cpu().numpy(), kind="stable")
        return quilt_video(to_uint8_numpy(matrix.images), order=order)
    left, right = matrix.eyes()
    if fmt == "vr180":
        from framematrix.export.vr180 import compose_vr180

        return compose_vr180(to_uint8_numpy(left), to_uint8_numpy(right), fov_deg=fov)
    return compose_stereo(to_uint8_numpy(left), to_uint8_numpy(right), fmt)


class _Filler:
    """Fills the holes of a chunk's frame matrix with the configured method."""

    def __init__(self, config: ConvertConfig, session: ModelSession, progress: Progress):
        if config.fill not in FILL_METHODS:
            raise ValueError(f"fill must be one of {FILL_METHODS}, got {config.fill!r}")
        self.config = config
        self.session = session
        self.progress = progress
        self.diffusion = config.diffusion
        if config.fill == "diffusion" and config.format in MULTIVIEW_FORMATS:
            # Every view is an output: denoise them all (the paper's multi-view schedule).
            self.diffusion = dataclasses.replace(config.diffusion, multiview=True)

    def fast(self, matrix: FrameMatrix, views: list[int]) -> FrameMatrix:
        if self.config.fill == "none":
            return matrix
        from framematrix.fill.fast import fill_matrix_fast

        return fill_matrix_fast(matrix, views=views, inplace=True)


# ----------------------------------------------------------------------------- convert


class _Job:
    """One conversion: the source, its shots and depth, and how chunks are made and written."""

    def __init__(
        self,
        source,  # noqa: ANN001
        depth,  # ShotDepth  # noqa: ANN001
        config: ConvertConfig,
        session: ModelSession,
        progress: Progress,
    ) -> None:
        self.source = source
        self.depth = depth
        self.config = config
        self.session = session
        self.progress = progress
        self.device = resolve_device(config.device)
        self.eyes_only = eye_views_only(config)
        self.filler = _Filler(config, session, progress)
        self.frames_done = 0
        self.last_fill = None
        self.holes = 0.0
        self.views = 0
        self.edge_mode, self.floating = edge_settings(config)
        self._edges: dict[int, tuple] = {}

    def _views_to_fill(self, matrix: FrameMatrix) -> list[int]:
        if self.eyes_only or not self.config.diffusion.multiview:
            views = [matrix.left_view, matrix.right_view]
        else:
            views = list(range(matrix.num_views))
        if self.config.format in MULTIVIEW_FORMATS:
            views = list(range(matrix.num_views))
        return views

    def build(
        self, start: int, frames: np.ndarray, shot: int, buffers: BufferPool | None = None
    ) -> FrameMatrix:
        # the raw depth is passed on, not held here: build_from drops it before the warp
        normalizer = self.depth.normalizer(shot)
        return self.build_from(
            frames, self.depth.read(start, start + frames.shape[0]), normalizer, buffers
        )

    def build_from(
        self,
        frames: np.ndarray,
        raw: np.ndarray,
        normalizer,  # DepthNormalizer  # noqa: ANN001
        buffers: BufferPool | None = None,
    ) -> FrameMatrix:
        """:meth:`build` from the chunk's raw depth ``[F, H, W]`` already read and its shot's
        normalizer: no reader is touched, so any thread may call it."""
        values, kind = warp_input(normalizer, raw, self.config, frames.shape[2])
        del raw
        return build_chunk(
            frames,
            values,
            kind,
            self.config,
            eyes_only=self.eyes_only,
            device=self.device,
            buffers=buffers,
        )

    @staticmethod
    def _counts_of(matrix: FrameMatrix) -> tuple[int, int, float]:
        """``(frames, views, largest hole fraction)`` of a filled chunk, for :meth:`_tally`."""
        return matrix.num_frames, matrix.num_views, float(matrix.hole_fraction().max())

    def _tally(self, frames: int, views: int, holes: float) -> None:
        self.frames_done += frames
        self.views = views
        self.holes += holes * frames

    def _count(self, matrix: FrameMatrix) -> None:
        self._tally(*self._counts_of(matrix))

    def matrices(self, start: int, end: int, shot: int, task) -> Iterator[FrameMatrix]:  # noqa: ANN001
        """Filled matrices of frames ``start..end-1`` of one shot, in order, on the CPU."""
        if self.config.fill == "diffusion":
            yield from self._diffusion_matrices(start, end, shot, task)
            return
        chunk = max(1, int(self.config.chunk_frames))
        frames_iter = prefetch(self.source.iter_chunks(start, end, chunk), 2, "decode")
        # each chunk's matrix is composed and dropped before the next is built: one memory
        # for all of them (CUDA has its own caching allocator)
        buffers = BufferPool() if self.device.type == "cpu" else None
        for a, frames in frames_iter:
            matrix = self.build(a, frames, shot, buffers)
            del frames
            filled = self.filler.fast(matrix, self._views_to_fill(matrix)).to("cpu")
            self._count(matrix)
            task.update(matrix.num_frames)
            del matrix
            yield filled
            # drop this chunk before the next is built: two matrices never live at once
            del filled

    def _diffusion_matrices(self, start: int, end: int, shot: int, task) -> Iterator[FrameMatrix]:  # noqa: ANN001
        """The seamless windows of one shot (or a stream output): see :meth:`diffusion_segment`."""
        from framematrix.fill.diffusion.windows import plan_windows

        a, b = self.depth.shots[shot]
        windows = [w for w in plan_windows(a, b, overlap=self.overlap) if start <= w[0] < end]
        yield from self.diffusion_segment(windows, shot, task, carry=None)

    @property
    def overlap(self) -> int:
        return int(self.filler.diffusion.window_overlap)

    def diffusion_segment(
        self,
        windows: list[tuple[int, int]],
        shot: int,
        task,  # noqa: ANN001
        carry: FrameMatrix | None,
    ) -> Iterator[FrameMatrix]:
        """Fill ``windows`` of one shot with the diffusion model, overlapping frames known
        (temporal outpainting); yields the new frames in order. ``self.last_fill`` keeps the
        fill, whose ``tail`` a resumable segment saves for the next one."""
        from framematrix.fill.diffusion.windows import SeamlessFill

        backbone = self.session.backbone(self.filler.diffusion)
        fill = SeamlessFill(
            self.filler.diffusion, backbone, overlap=self.overlap, progress=self.progress
        )
        self.last_fill = fill

        def build(a: int, b: int) -> FrameMatrix:
            return self.build(a, self.source.read(a, b), shot)

        for _, matrix in fill.fill_windows(windows, build, carry=carry):
            matrix = matrix.to("cpu")
            self._count(matrix)
            task.update(matrix.num_frames)
            yield matrix

    def output_frames(self, start: int, end: int, shot: int, task) -> Iterator[np.ndarray]:  # noqa: ANN001
        for finish in self.output_parts(start, end, shot, task):
            frames = finish()
            yield frames
            del frames

    def output_parts(
        self,
        start: int,
        end: int,
        shot: int,
        task,  # noqa: ANN001
    ) -> Iterator[Callable[[], np.ndarray]]:
        """As :meth:`output_frames`, each chunk's frames as a call that makes them: the part
        of the composition that reads the matrix is done here, the rest (edge band, packing)
        in the call, which another thread (the encoder's) can make while this one goes on."""
        workers = compute_workers(self.config, self.device)  # 1 for the diffusion fill
        if workers > 1:
            yield from self._parallel_parts(start, end, shot, task, workers)
            return
        for matrix in self.matrices(start, end, shot, task):
            finish = self.compose_parts(matrix, shot)
            del matrix  # not held while the next chunk is built
            yield finish
            del finish

    def _parallel_parts(
        self,
        start: int,
        end: int,
        shot: int,
        task,  # noqa: ANN001
        workers: int,
    ) -> Iterator[Callable[[], np.ndarray]]:
        """:meth:`output_parts` of a geometric fill on the CPU, with ``workers`` threads that
        warp, fill and convert parts of each chunk side by side (each with its own memory and
        ``cores // workers`` torch threads), in order. Each decoded chunk is cut into
        ``workers`` parts, so the memory of all parts in flight is that of one chunk; the
        result does not depend on the cut (warp and fill work frame by frame).

        One torch op split over two threads waits for the slower one at every op: on two
        cores beside the encoder that wastes a core, whereas whole parts in separate threads
        keep both busy. Decoding, depth reading and the shot's edges stay in this thread."""
        import concurrent.futures
        import threading
        from collections import deque

        chunk = max(1, int(self.config.chunk_frames))
        part = -(-chunk // workers)
        normalizer = self.depth.normalizer(shot)
        stereo = self.config.format not in MULTIVIEW_FORMATS
        edges = self.edges_of(shot) if stereo else None
        local = threading.local()
        threads = compute_threads(workers)

        def init() -> None:
            torch.set_num_threads(threads)  # this thread's torch ops; see compute_threads

        def work(a: int, frames: np.ndarray, raw: np.ndarray) -> tuple:
            if not hasattr(local, "buffers"):
                local.buffers = BufferPool()
            matrix = self.build_from(frames, raw, normalizer, local.buffers)
            filled = self.filler.fast(matrix, self._views_to_fill(matrix))
            # the part's eyes leave the thread's memory here (uint8 copies)
            return self._counts_of(filled), self._parts_of(filled, edges, frames)

        saved = torch.get_num_threads()
        pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="compute", initializer=init
        )
        pending: deque[concurrent.futures.Future] = deque()

        def collect() -> Callable[[], np.ndarray]:
            counts, finish = pending.popleft().result()
            self._tally(*counts)
            task.update(counts[0])
            return finish

        try:
            for a, frames in prefetch(self.source.iter_chunks(start, end, chunk), 2, "decode"):
                for s in range(0, frames.shape[0], part):
                    piece = frames[s : s + part]
                    raw = self.depth.read(a + s, a + s + piece.shape[0])
                    pending.append(pool.submit(work, a + s, piece, raw))
                    del piece, raw
                    while len(pending) >= workers:  # at most `workers` parts in flight
                        yield collect()
                del frames
            while pending:
                yield collect()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(saved)  # the default of threads started later

    def edges_of(self, shot: int) -> tuple | None:
        """``(plan, band_px, window_px)`` of a shot's frame-edge treatment, or None."""
        if self.edge_mode == "none" and not self.floating:
            return None
        if shot not in self._edges:
            self._edges[shot] = _shot_edges(self, shot)
        return self._edges[shot]

    def eye_pair(self, matrix: FrameMatrix, shot: int) -> tuple[np.ndarray, np.ndarray]:
        """The filled eyes of one chunk of ``shot``, ``[F, H, W, 3]`` uint8 each, with the
        edge band and floating window applied (:func:`framematrix.export.edges.finish_eyes`)."""
        left, right = (to_uint8_numpy(eye) for eye in matrix.eyes())
        return self._finish_eyes(left, right, self.edges_of(shot))

    def _finish_eyes(
        self, left: np.ndarray, right: np.ndarray, edges: tuple | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 eyes with the shot's ``edges`` (:meth:`edges_of`) applied; numpy only (no
        matrix, no depth read), so any thread may call it."""
        if edges is None:
            return left, right
        from framematrix.export.edges import finish_eyes

        plan, band, window = edges
        return finish_eyes(
            left,
            right,
            plan,
            band_mode=self.edge_mode,
            band_px=band,
            floating=window is not None,
            window_px=window,
            mode=self.config.stereo.mode,
        )

    def compose(self, matrix: FrameMatrix, shot: int) -> np.ndarray:
        """Output frames ``[F, H', W', 3]`` uint8 of one filled chunk of ``shot``."""
        return self.compose_parts(matrix, shot)()

    def compose_parts(self, matrix: FrameMatrix, shot: int) -> Callable[[], np.ndarray]:
        """:meth:`compose` in two parts: what reads the matrix (and the depth, for the shot's
        edges) now, in the calling thread; the returned call does the rest from uint8 numpy
        eyes alone, so it is safe in another thread after the matrix's memory is reused."""
        stereo = self.config.format not in MULTIVIEW_FORMATS
        return self._parts_of(matrix, self.edges_of(shot) if stereo else None)

    def _parts_of(
        self, matrix: FrameMatrix, edges: tuple | None, frames: np.ndarray | None = None
    ) -> Callable[[], np.ndarray]:
        """:meth:`compose_parts` with the shot's ``edges`` already known (any thread).
        ``frames``: the chunk's input frames ``[F, H, W, 3]`` uint8, when the matrix was built
        from them: an eye that is the source view is then those frames (its float values are
        ``k / 255``, which round back to ``k``), not converted back."""
        fmt = self.config.format
        if fmt in MULTIVIEW_FORMATS:
            out = matrix_to_output_frames(matrix, fmt, self.config.fov)
            return lambda: out
        left, right = (
            frames
            if frames is not None and view == matrix.source_view
            else to_uint8_numpy(matrix.images[view])
            for view in (matrix.left_view, matrix.right_view)
        )
        return functools.partial(self._pack, left, right, edges)

    def _pack(self, left: np.ndarray, right: np.ndarray, edges: tuple | None) -> np.ndarray:
        fmt = self.config.format
        left, right = self._finish_eyes(left, right, edges)
        if fmt == "vr180":
            from framematrix.export.vr180 import compose_vr180

            return compose_vr180(left, right, fov_deg=self.config.fov)
        return compose_stereo(left, right, fmt)


def edge_settings(config: ConvertConfig) -> tuple[str, bool]:
    """``(edge band mode, floating window)`` that apply to ``config``: ``auto`` resolved
    (``crop`` with a depth budget and a geometric fill, else ``none``). Raises InputError for an
    edge treatment asked of a rig or depth it cannot serve, or of a multi-view output."""
    mode, floating = config.edge_band, bool(config.floating_window)
    stereo = config.stereo
    if mode == "auto":
        geometric = config.fill != "diffusion" and config.format not in MULTIVIEW_FORMATS
        usable = stereo.mode != "middle2leftright" and stereo.depth_kind != "disparity-px"
        mode = "crop" if geometric and usable and stereo.depth_budget is not None else "none"
    if mode == "none" and not floating:
        return mode, floating
    what = f"--edge-band {mode}" if mode != "none" else "--floating-window"
    if config.format in MULTIVIEW_FORMATS:
        raise InputError(f"{what} is for stereo outputs, not --format {config.format}")
    if stereo.mode == "middle2leftright":
        raise InputError(f"{what} needs --mode left2right or right2left (one warped eye)")
    if stereo.depth_kind == "disparity-px":
        raise InputError(f"{what} needs relative or metric depth (shot statistics)")
    return mode, floating


def _shot_edges(job: _Job, shot: int) -> tuple:
    """The edge treatment of one shot: its plan (with statistics), the band from the plan's
    1st..99th percentile parallax (one width for the whole shot, so a crop does not zoom in and
    out), and with a floating window the largest crossed disparity at either frame edge over the
    shot (a still window; read from the depth, 1 % of the width at each edge)."""
    from framematrix.export.edges import band_from_plan, edge_crossed_disparity
    from framematrix.geometry.parallax import disparity_px

    width = job.source.info.width
    stats, plan = _shot_plan(job.depth.stats[shot], job.config.stereo, width)
    if plan.stats is None:
        plan = dataclasses.replace(plan, stats=stats)
    band = (0, 0)
    if job.edge_mode != "none":
        band = band_from_plan(plan, job.config.stereo.mode, robust=True)
        # at most a quarter of the width in all: a crop beyond that would be a zoom
        limit = width // 4
        if sum(band) > limit:
            factor = limit / sum(band)
            band = (int(band[0] * factor), int(band[1] * factor))
    window = None
    if job.floating:
        a, b = job.depth.shots[shot]
        edge = max(1, int(round(0.01 * width)))
        normalizer = job.depth.normalizer(shot)
        win_l = win_r = 0.0
        for start in range(a, b, 32):
            raw = np.array(job.depth.read(start, min(b, start + 32)), np.float32)
            sides = np.concatenate([raw[:, :, :edge], raw[:, :, width - edge :]], axis=2)
            d = disparity_px(normalizer.inverse(torch.from_numpy(sides)).numpy(), plan)
            # the two sides side by side: the first `edge` columns left, the last right
            left, right = edge_crossed_disparity(d, edge)
            win_l, win_r = max(win_l, float(left.max())), max(win_r, float(right.max()))
        window = (win_l, win_r)
    return plan, band, window


def _identity(
    source,  # noqa: ANN001
    depth,  # noqa: ANN001
    config: ConvertConfig,
    rng: tuple[int, int],
    shots: list[tuple[int, int]],
    output: Path,
) -> dict:
    settings = dataclasses.asdict(config)
    for volatile in ("device",):
        settings.pop(volatile, None)
    settings["depth"].pop("device", None)
    settings["diffusion"].pop("device", None)
    depth_id = "estimated"
    if isinstance(depth, (str, Path)):
        depth_id = input_fingerprint(depth)
    elif depth is not None:
        depth_id = "array:" + settings_fingerprint(
            [
                np.asarray(depth).shape,
                float(np.nansum(np.asarray(depth[:: max(1, len(depth) // 8)]))),
            ]
        )
    return {
        "input": source_fingerprint(source),
        "depth": depth_id,
        "settings": settings_fingerprint(settings),
        "range": list(rng),
        "shots": settings_fingerprint(shots),
        "output": output.suffix.lower(),
    }


@contextlib.contextmanager
def _cluster(address: str | None, workers: int | None):  # noqa: ANN202
    """Ray workers for one convert (None without ``address``)."""
    if address is None:
        yield None
        return
    from framematrix.cluster import RayCluster

    with RayCluster(address, workers) as cluster:
        yield cluster


def convert(
    input: str | Path,
    output: str | Path,
    *,
    depth: str | Path | np.ndarray | None = None,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    start: int | str | None = None,
    end: int | str | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool | Progress = True,
    session: ModelSession | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> ConvertResult:
    """Convert a monocular video, frame folder or image into a stereoscopic output.

    input: video file (mp4, mov, mkv, avi, webm), folder of frames, or single image.
    output: ``.mp4``/``.mkv``/``.mov`` (video, source fps and audio), ``.png``/``.jpg``
        (single-image input), or a folder (PNG frames).
    depth: per-frame depth of the kind ``config.stereo.depth_kind``: a file, folder or depth
        video (read lazily, in step with the frames), an ``[F, H, W]`` array, or None to
        estimate it (Depth Anything per shot, then the temporal stabilisation).
    fps: frame rate for frame-folder inputs (videos keep theirs).
    start, end: convert frames ``[start, end)`` only (frame indices, or ``12.5``, ``1:02``,
        ``120f``); the audio is trimmed to match.
    cache_dir: where estimated depth and shots are kept (default ``.framematrix-cache`` beside
        the output).
    overwrite: replace an existing output folder that is not empty.
    restart: discard the work of an interrupted earlier run instead of resuming it.
    progress: show progress bars (bool), or a :class:`framematrix.progress.Progress` to
        receive events and to cancel through.
    session: loaded models to reuse between calls (:class:`framematrix.models.ModelSession`).
    ray: run the pending segments of a video output on a Ray cluster: an address
        (``ray://host:10001``, ``auto`` for ``RAY_ADDRESS``) or ``local`` (start one here);
        see :mod:`framematrix.cluster`. Estimated depth is computed on the workers, a shot
        per task, into ``cache_dir``; it and the output's folder must then be paths the
        workers share.
    ray_workers: how many Ray worker actors (default: one per GPU, else one per CPU).

    A video output is written in segments in ``.<name>.framematrix/`` beside it; after an
    interruption the same call continues at the first unfinished segment.
    """
    from framematrix.work import clean_stale_temporaries

    started = time.perf_counter()
    config = config or ConvertConfig()
    config.validate()
    prog = Progress.of(progress)
    session = session or ModelSession()
    output = Path(output)
    if ray is not None:  # workers may run elsewhere, in another folder: give them full paths
        output = output.absolute()
        input = Path(input).absolute() if isinstance(input, (str, Path)) else input
        depth = Path(depth).absolute() if isinstance(depth, (str, Path)) else depth
        cache_dir = Path(cache_dir).absolute() if cache_dir is not None else None
    if config.name_tags and config.format != "quilt":
        from framematrix.export.names import tagged_name

        output = tagged_name(output, config.format)
    kind = output_kind(output, config.format)  # reject a bad output path before any work
    inputs = [Path(input)] if isinstance(input, (str, Path)) else []
    inputs += [Path(depth)] if isinstance(depth, (str, Path)) else []
    check_output(output, kind, inputs=inputs, overwrite=overwrite)
    clean_stale_temporaries(output)
    cache = Path(cache_dir) if cache_dir is not None else output.parent / ".framematrix-cache"

    with open_input(input, fps, config) as source, _cluster(ray, ray_workers) as cluster:
        info = source.info
        rng = frame_range(info.num_frames, info.fps, start, end)
        shots = find_shots(source, *rng, config, progress=prog, cache_dir=cache)
        spec = None
        if cluster is not None:
            from framematrix.cluster import TaskSpec

            spec = TaskSpec(input, depth, config, fps, shots, cache)
            if depth is None:
                which = missing_depth_shots(source, shots, config, cache, session)
                with prog.task("depth", sum(shots[i][1] - shots[i][0] for i in which)) as task:
                    cluster.estimate_depth(spec, which, task, prog)
        shot_depth = prepare_depth(
            source, shots, depth, config, session=session, cache_dir=cache, progress=prog
        )
        job = _Job(source, shot_depth, config, session, prog)
        if kind == "video" and config.format != "spatial":
            if spec is not None:
                spec.stats = shot_depth.stats
            reused, segments = _write_video(job, output, rng, shots, depth, restart, cluster, spec)
        else:
            reused, segments = 0, 0
            _write_stream(job, output, kind, rng, shots, overwrite)
    frames = max(1, job.frames_done)
    return ConvertResult(
        output=output,
        frames=rng[1] - rng[0],
        fps=info.fps,
        views=job.views,
        hole_fraction=job.holes / frames,
        seconds=time.perf_counter() - started,
        shots=shots,
        segments=segments,
        segments_reused=reused,
        summary=prog.summary(),
    )


def _segments_for(config: ConvertConfig, shots, suffix: str):  # noqa: ANN001, ANN202
    """Resumable segments; with the diffusion fill, runs of whole windows of each shot, cut
    only where consecutive windows share exactly the overlap (what a saved tail carries)."""
    from framematrix.work import Segment, plan_segments

    if config.fill != "diffusion":
        return plan_segments(shots, config.segment_frames, suffix=suffix)
    from framematrix.fill.diffusion.windows import plan_segments as group_windows
    from framematrix.fill.diffusion.windows import plan_windows

    overlap = int(config.diffusion.window_overlap)
    segments = []
    for shot, (a, b) in enumerate(shots):
        windows = plan_windows(a, b, overlap=overlap)
        for k, group in enumerate(group_windows(windows, config.segment_frames, overlap)):
            first = group[0][0] + (overlap if k else 0)
            index = len(segments)
            segments.append(
                Segment(index, first, group[-1][1], shot, group[0][0], f"seg{index:05d}{suffix}")
            )
    return segments


def video_encoding(config: ConvertConfig, info):  # noqa: ANN001, ANN201 - VideoEncoding
    """How the output video is encoded: the config's codec settings, the source's colour tags,
    and the frame-packing SEI for half side-by-side / top-bottom in H.264."""
    from framematrix.export.writers import VideoEncoding

    packing = {"half-sbs": "sbs", "half-tb": "tb"}.get(config.format)
    if config.codec != "h264":
        packing = None
    return VideoEncoding(
        codec=config.codec,
        pix_fmt=config.pix_fmt,
        crf=config.crf,
        preset=config.preset,
        color=color_codes(info.color),
        frame_packing=packing,
    )


def _write_video(
    job: _Job,
    output: Path,
    rng: tuple[int, int],
    shots: list[tuple[int, int]],
    depth,  # noqa: ANN001
    restart: bool,
    cluster=None,  # noqa: ANN001 - cluster.RayCluster
    spec=None,  # noqa: ANN001 - cluster.TaskSpec
) -> tuple[int, int]:
    """Encode every unfinished segment into the work folder (here, or on Ray workers when
    ``cluster`` is given), then join them into ``output``."""
    from framematrix.work import WorkFolder, work_folder_for

    config = job.config
    info = job.source.info
    # Segments go in .mp4, which stores decode timestamps (Matroska does not, and B-frames then
    # cannot be laid end to end); FFV1 is intra-only and lives in .mkv.
    segments = _segments_for(config, shots, ".mkv" if config.codec == "ffv1" else ".mp4")
    identity = _identity(job.source, depth, config, rng, shots, output)
    work = WorkFolder(work_folder_for(output), identity, segments, output=output)
    reason = work.open(restart=restart)
    if reason:
        logger.warning("%s: %s", output, reason)
    pending = work.pending()
    reused = len(segments) - len(pending)
    encode = video_encoding(config, info).for_segments()
    total = sum(s.num_frames for s in pending)
    with job.progress.task("convert", total) as task:
        if cluster is not None:
            cluster.encode_segments(job, work, pending, spec, task)
        else:
            for seg in pending:
                job.progress.check()
                try:
                    written = encode_segment(job, work, seg, task, encode)
                except BaseException:
                    if not any(work.done(s) for s in segments):
                        work.remove()  # nothing to resume: leave nothing behind
                    raise
                work.finish(seg, written)
    with job.progress.task("join", len(segments), unit="segment") as task:
        join_video(
            [work.path(s) for s in segments],
            output,
            audio_from=info.path if info.has_audio else None,
            audio_start_s=job.source.frame_time(rng[0]),
            audio_end_s=(job.source.frame_time(rng[1]) if rng[1] < info.num_frames else None),
            spherical="vr180" if config.format == "vr180" and output.suffix != ".mkv" else None,
        )
        task.update(len(segments))
    work.remove()
    return reused, len(segments)


def encode_segment(job: _Job, work, seg, task, encode=None) -> Path:  # noqa: ANN001
    """Encode one segment into its file in the work folder and return that file (the caller
    records it with ``work.finish``); with the diffusion fill its tail is saved first."""
    parts = _segment_parts(job, work, seg, task)
    if encode is None:
        encode = video_encoding(job.config, job.source.info).for_segments()
    target = work.path(seg)
    fps = job.source.info.fps

    def consume(items: Iterator[Callable[[], np.ndarray]]) -> Path:
        # the packing of each chunk (edge band, squeeze) runs here, beside the encoder,
        # while the compute thread builds the next chunk
        return write_video_file(target, frames_of(p() for p in items), fps=fps, encoding=encode)

    sink = BackgroundConsumer(consume, size=2, name="encode")
    try:
        for part in parts:
            sink.put(part)
            del part  # the queue holds it; not kept while the next one is made
    except BaseException:
        sink.abort()
        raise
    written = sink.close()
    if job.config.fill == "diffusion":
        _save_tail(job, work, seg)
    return written


def _tail_file(work, seg) -> Path:  # noqa: ANN001
    return work.side_file(f"tail{seg.index:05d}.npy")


def _save_tail(job: _Job, work, seg) -> None:  # noqa: ANN001
    """Keep the last overlap frames of a diffusion segment (the filled views, float32, so a
    resume is exact) for the next segment of the same shot; written before the segment is
    recorded, so a recorded segment always has its tail."""
    fill = job.last_fill
    if fill is None or fill.tail is None:
        return
    views = list(fill.filled_views)
    final = _tail_file(work, seg)
    tmp = final.with_name(f".{final.stem}.tmp.npy")
    np.save(tmp, fill.tail.images[views].cpu().numpy().astype(np.float32))
    tmp.with_suffix(".json").write_text(json.dumps(views))
    tmp.replace(final)
    tmp.with_suffix(".json").replace(final.with_suffix(".json"))


def _segment_parts(job: _Job, work, seg, task) -> Iterator[Callable[[], np.ndarray]]:  # noqa: ANN001
    """Output frames of one segment, chunk by chunk, as calls that make them
    (:meth:`_Job.compose_parts`)."""
    if job.config.fill != "diffusion":
        yield from job.output_parts(seg.start, seg.end, seg.shot, task)
        return
    from framematrix.fill.diffusion.windows import carry_from, plan_windows

    a, b = job.depth.shots[seg.shot]
    windows = [
        w
        for w in plan_windows(a, b, overlap=job.overlap)
        if seg.window_start <= w[0] and w[1] <= seg.end
    ]
    carry = None
    if seg.window_start < seg.start:
        previous = work.segments[seg.index - 1]
        tail = _tail_file(work, previous)
        views = json.loads(tail.with_suffix(".json").read_text())
        k = seg.start - seg.window_start
        unfilled = job.build(
            seg.window_start, job.source.read(seg.window_start, seg.start), seg.shot
        )
        carry = carry_from(unfilled, views, np.load(tail)[:, -k:])
    for matrix in job.diffusion_segment(windows, seg.shot, task, carry):
        yield job.compose_parts(matrix, seg.shot)


def _write_stream(
    job: _Job,
    output: Path,
    kind: str,
    rng: tuple[int, int],
    shots: list[tuple[int, int]],
    overwrite: bool,
) -> None:
    """Folder, per-view folder, image (and spatial video) outputs: one streamed pass."""
    from framematrix.export.writers import write_frames, write_image

    config = job.config
    names = job.source.info.names[rng[0] : rng[1]]

    def chunks_in_order(task) -> Iterator[tuple[int, FrameMatrix]]:  # noqa: ANN001
        for shot, (a, b) in enumerate(shots):
            yield from ((shot, m) for m in job.matrices(a, b, shot, task))

    total = rng[1] - rng[0]
    with job.progress.task("convert", total) as task:
        if config.format == "views":
            _write_views_folder(output, (m for _, m in chunks_in_order(task)), names, overwrite)
        elif config.format == "spatial":
            _write_spatial(job, output, chunks_in_order(task))
        else:
            frames = frames_of(job.compose(m, shot) for shot, m in chunks_in_order(task))
            if kind == "image":
                images = list(frames)
                if len(images) != 1:
                    raise InputError(f"{output}: an image output needs a single-image input")
                write_image(output, images[0])
            else:
                write_frames(output, frames, names=names, overwrite=overwrite)


def _write_views_folder(
    output: Path, matrices: Iterator[FrameMatrix], names: list[str], overwrite: bool
) -> Path:
    """Every view as its own frame folder: ``output/view{j:02d}/{name}.png``, atomically."""
    import cv2

    from framematrix.io.atomic import atomic_dir

    with atomic_dir(output, overwrite=overwrite) as tmp:
        index = 0
        for matrix in matrices:
            images = to_uint8_numpy(matrix.images)
            for j in range(matrix.num_views):
                view_dir = Path(tmp) / f"view{j:02d}"
                view_dir.mkdir(exist_ok=True)
                for i in range(matrix.num_frames):
                    cv2.imwrite(str(view_dir / f"{names[index + i]}.png"), images[j, i][..., ::-1])
            index += matrix.num_frames
    return output


def _write_spatial(job: _Job, output: Path, matrices: Iterator[tuple[int, FrameMatrix]]) -> Path:
    """Apple spatial video: the eyes as a two-layer MV-HEVC .mov (export.mvhevc)."""
    from framematrix.export.mvhevc import write_spatial_video

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for shot, matrix in matrices:
            left, right = job.eye_pair(matrix, shot)
            yield from zip(left, right)

    info = job.source.info
    return write_spatial_video(
        output,
        pairs(),
        fps=info.fps,
        crf=job.config.crf,
        preset=job.config.preset,
        audio_from=info.path if info.has_audio else None,
    )


# ----------------------------------------------------------------------------- other commands


def save_matrix(matrix: FrameMatrix, folder: Path, *, start: int = 0) -> None:
    """Write ``folder/view{j:02d}/{i:05d}.png`` and ``{i:05d}_mask.png`` (255 known, 0 hole)."""
    import cv2

    images = to_uint8_numpy(matrix.images)
    masks = matrix.masks.cpu().numpy()
    for j in range(matrix.num_views):
        view_dir = folder / f"view{j:02d}"
        view_dir.mkdir(parents=True, exist_ok=True)
        for i in range(matrix.num_frames):
            name = f"{start + i:05d}"
            cv2.imwrite(str(view_dir / f"{name}.png"), images[j, i][..., ::-1])
            cv2.imwrite(str(view_dir / f"{name}_mask.png"), masks[j, i].astype(np.uint8) * 255)


def _open_for_depth(input, fps, config, depth, cache_dir, progress, session):  # noqa: ANN001, ANN202
    source = open_input(input, fps, config)
    info = source.info
    cache = Path(cache_dir)
    shots = find_shots(source, 0, info.num_frames, config, progress=progress, cache_dir=cache)
    shot_depth = prepare_depth(
        source, shots, depth, config, session=session, cache_dir=cache, progress=progress
    )
    return source, shots, shot_depth


def make_matrix(
    input: str | Path,
    depth: str | Path | np.ndarray | None,
    output_dir: str | Path,
    *,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool | Progress = True,
    session: ModelSession | None = None,
) -> Path:
    """Build the full frame matrix of a clip (no fill) and save it under ``output_dir``."""
    from framematrix.io.atomic import atomic_dir

    config = config or ConvertConfig(fill="none")
    prog = Progress.of(progress)
    output_dir = Path(output_dir)
    inputs = [Path(input)] + ([Path(depth)] if isinstance(depth, (str, Path)) else [])
    check_output(output_dir, "folder", inputs=inputs, overwrite=overwrite)
    source, shots, shot_depth = _open_for_depth(
        input, fps, config, depth, output_dir.parent / ".framematrix-cache", prog, session
    )
    device = resolve_device(config.device)
    step = max(1, int(config.chunk_frames))
    with source, atomic_dir(output_dir, overwrite=overwrite) as tmp:
        with prog.task("matrix", source.info.num_frames) as task:
            for shot, (a, b) in enumerate(shots):
                for start, frames in source.iter_chunks(a, b, step):
                    raw = shot_depth.read(start, start + frames.shape[0])
                    values, kind = warp_input(
                        shot_depth.normalizer(shot), raw, config, frames.shape[2]
                    )
                    matrix = build_chunk(
                        frames, values, kind, config, eyes_only=False, device=device
                    )
                    save_matrix(matrix, Path(tmp), start=start)
                    task.update(frames.shape[0])
    return output_dir


def _write_depth(output: Path, shot_depth, info, overwrite: bool, prog: Progress) -> Path:  # noqa: ANN001
    """Stream depth into a lossless 16-bit depth video (``.mkv``) or a folder of 16-bit PNG."""
    from framematrix.io.depth_video import DepthWriter

    lows = [s.low for s in shot_depth.stats if s.low is not None]
    highs = [s.high for s in shot_depth.stats if s.high is not None]
    lo, hi = (min(lows), max(highs)) if lows else (0.0, 1.0)
    with DepthWriter(
        output,
        width=info.width,
        height=info.height,
        fps=info.fps,
        lo=lo,
        hi=hi,
        overwrite=overwrite,
    ) as writer:
        with prog.task("write depth", info.num_frames) as task:
            for a, b in shot_depth.shots:
                for start in range(a, b, 32):
                    chunk = shot_depth.read(start, min(b, start + 32))
                    writer.write(chunk)
                    task.update(chunk.shape[0])
    return output


def estimate_depth_files(
    input: str | Path,
    output: str | Path,
    *,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool | Progress = True,
    session: ModelSession | None = None,
) -> Path:
    """Estimate (and, per ``config.depth.stabilize``, stabilise) depth per shot; write it as a
    lossless 16-bit depth video (``.mkv``) or a folder of 16-bit PNG, streamed."""
    config = config or ConvertConfig()
    prog = Progress.of(progress)
    output = Path(output)
    kind = "video" if output.suffix.lower() == ".mkv" else "folder"
    if output.suffix and kind == "folder":
        raise InputError(f"{output}: depth is written to a .mkv depth video or a folder")
    check_output(output, kind, inputs=[Path(input)], overwrite=overwrite)
    source, _, shot_depth = _open_for_depth(
        input, fps, config, None, output.parent / ".framematrix-cache", prog, session
    )
    with source:
        return _write_depth(output, shot_depth, source.info, overwrite, prog)


class _GivenRaw:
    """A given depth seen as a complete raw depth store (for the stabilisation pass)."""

    def __init__(self, reader) -> None:  # noqa: ANN001
        self.reader = reader

    def covered(self, start: int, stop: int) -> bool:
        return True

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.reader.read(start, stop)


def stabilize_depth_files(
    input: str | Path,
    depth: str | Path,
    output: str | Path,
    *,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool | Progress = True,
    session: ModelSession | None = None,
) -> Path:
    """Steady the given per-frame depth of ``input`` over time, per shot; write it like
    :func:`estimate_depth_files`."""
    from framematrix.depth.provider import ShotDepth, estimate_into_store, stats_from_store
    from framematrix.depth.store import DepthStore

    config = config or ConvertConfig()
    prog = Progress.of(progress)
    session = session or ModelSession()
    output = Path(output)
    kind = "video" if output.suffix.lower() == ".mkv" else "folder"
    check_output(output, kind, inputs=[Path(input), Path(depth)], overwrite=overwrite)
    cache = output.parent / ".framematrix-cache"
    with open_input(input, fps) as source:
        info = source.info
        shots = find_shots(source, 0, info.num_frames, config, progress=prog, cache_dir=cache)
        reader = _given_depth_reader(depth, source, config.stereo.depth_kind)
        key = settings_fingerprint(["given-stable", input_fingerprint(depth), shots])
        store = DepthStore(cache / f"depth-{key}", info.num_frames, info.height, info.width)
        estimate_into_store(
            source, shots, config.depth, _GivenRaw(reader), store, session=session, progress=prog
        )
        stats = stats_from_store(
            store, shots, kind="relative", near=config.stereo.near, far=config.stereo.far
        )
        shot_depth = ShotDepth(store, shots, stats, kind="relative", near=None, far=None)
        return _write_depth(output, shot_depth, info, overwrite, prog)


# ----------------------------------------------------------------------------- comfort


def _shot_plan(st, stereo, width: int):  # noqa: ANN001, ANN202
    """(ShotStats, ParallaxPlan) of one shot's depth statistics ``st`` (ShotDepthStats) with
    the settings: the depth budget and convergence, or the paper's rig (focal x baseline / z)
    when no budget is set."""
    from framematrix.geometry.parallax import ShotStats, paper_plan, plan_parallax

    if st.inv_p1 is None or st.inv_p99 is None:
        raise InputError(f"depth of frames {st.start}-{st.end - 1} has no finite value")
    lo, hi = min(st.inv_min, st.inv_p1), max(st.inv_max, st.inv_p99)
    stats = ShotStats(st.start, st.end, lo, st.inv_p1, st.inv_p50, st.inv_p99, hi)
    if stereo.depth_budget is None:
        return stats, paper_plan(width, stereo.focal, stereo.baseline)
    return stats, plan_parallax(stats, width, stereo.depth_budget, stereo.convergence)


def _shot_plans(shot_depth, config: ConvertConfig, width: int):  # noqa: ANN001, ANN202
    """Per shot: (ShotStats, ParallaxPlan) of the settings (see :func:`_shot_plan`)."""
    return [_shot_plan(st, config.stereo, width) for st in shot_depth.stats]


def eye_pair_of(
    input: str | Path | FrameSource,
    frame: int,
    *,
    depth: str | Path | np.ndarray | None = None,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | Progress = False,
    session: ModelSession | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The left and right eye of one frame, ``[H, W, 3]`` uint8 each, exactly as ``convert``
    writes them with ``config`` (the shot's depth statistics, warp, fill, edge band and floating
    window). The diffusion fill is replaced by the fast fill (a preview must be quick); its
    frame edges stay as the diffusion convert would treat them."""
    config = (config or ConvertConfig()).copy()
    mode, floating = edge_settings(config)
    config.edge_band, config.floating_window = mode, floating
    if config.fill == "diffusion":
        config.fill = "fast"
    if config.format in MULTIVIEW_FORMATS:
        config.format = "sbs"
    prog = Progress.of(progress)
    session = session or ModelSession()
    cache = Path(cache_dir) if cache_dir is not None else Path(".framematrix-cache")
    with open_input(input, fps, config) as source:
        info = source.info
        if not 0 <= frame < info.num_frames:
            raise InputError(f"{input}: frame {frame} is outside 0..{info.num_frames - 1}")
        shots = find_shots(source, 0, info.num_frames, config, progress=prog, cache_dir=cache)
        shot_depth = prepare_depth(
            source, shots, depth, config, session=session, cache_dir=cache, progress=prog
        )
        job = _Job(source, shot_depth, config, session, prog)
        shot = shot_depth.shot_of(frame)
        matrix = job.build(frame, source.read(frame, frame + 1), shot)
        filled = job.filler.fast(matrix, job._views_to_fill(matrix)).to("cpu")
        left, right = job.eye_pair(filled, shot)
    return left[0], right[0]


def comfort_report_of(
    input: str | Path,
    *,
    depth: str | Path | np.ndarray | None = None,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | Progress = True,
    session: ModelSession | None = None,
) -> dict:
    """The comfort report of ``input`` with ``config``'s stereo settings, streamed per shot
    (parallax percentiles in percent of the width, shares in front of / behind the screen,
    window violations, the hole share of each eye, suggested settings); see
    :mod:`framematrix.report`.

    The hole share is that of the warp, as ``convert`` builds each eye (same rig, warp and
    clean-up; before the fill and the edge band); it needs only the depth, so no frame is
    decoded for it.
    """
    from framematrix.report import comfort_report

    config = config or ConvertConfig()
    prog = Progress.of(progress)
    cache = Path(cache_dir) if cache_dir is not None else Path(".framematrix-cache")
    with open_input(input, fps, config) as source:
        info = source.info
        if config.stereo.depth_kind != "relative":
            raise InputError("framematrix report: needs relative depth (--depth-kind relative)")
        shots = find_shots(source, 0, info.num_frames, config, progress=prog, cache_dir=cache)
        shot_depth = prepare_depth(
            source, shots, depth, config, session=session, cache_dir=cache, progress=prog
        )
        plans = _shot_plans(shot_depth, config, info.width)
        device = torch.device("cpu")

        def chunks(shot: int, a: int, b: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            normalizer = shot_depth.normalizer(shot)
            for start in range(a, b, 32):
                raw = np.array(shot_depth.read(start, min(b, start + 32)), np.float32)
                d = normalizer.inverse(torch.from_numpy(raw)).numpy()
                values, kind = warp_input(normalizer, raw, config, info.width)
                blank = np.zeros((*raw.shape, 3), np.uint8)  # the masks need no colours
                eyes = build_chunk(blank, values, kind, config, eyes_only=True, device=device)
                masks = eyes.masks[[eyes.left_view, eyes.right_view]].numpy()
                yield d, masks

        return comfort_report(
            ((stats, plan, chunks(i, *shots[i])) for i, (stats, plan) in enumerate(plans)),
            progress=prog,
        )


def preview_of(
    input: str | Path,
    frame: int,
    *,
    depth: str | Path | np.ndarray | None = None,
    config: ConvertConfig | None = None,
    budgets: Sequence[float] = (2.0, 3.0, 5.0),
    convergences: Sequence[float] = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0),
    kind: str = "anaglyph",
    thumb_width: int = 384,
    fps: float | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | Progress = True,
    session: ModelSession | None = None,
) -> np.ndarray:
    """One frame at a grid of depth budgets x convergences (``[H, W, 3]`` uint8 sheet),
    normalised with the statistics of the frame's shot, as a convert would."""
    from framematrix.report.preview import preview_sheet

    config = config or ConvertConfig()
    prog = Progress.of(progress)
    cache = Path(cache_dir) if cache_dir is not None else Path(".framematrix-cache")
    with open_input(input, fps) as source:
        info = source.info
        if not 0 <= frame < info.num_frames:
            raise InputError(f"{input}: --frame {frame} is outside 0..{info.num_frames - 1}")
        shots = find_shots(source, 0, info.num_frames, config, progress=prog, cache_dir=cache)
        shot_depth = prepare_depth(
            source, shots, depth, config, session=session, cache_dir=cache, progress=prog
        )
        shot = shot_depth.shot_of(frame)
        stats, _ = _shot_plans(shot_depth, config, info.width)[shot]
        d = shot_depth.normalizer(shot).inverse(np.array(shot_depth.read(frame, frame + 1)))
        return preview_sheet(
            source.read(frame, frame + 1)[0],
            d.numpy()[0],
            list(budgets),
            list(convergences),
            kind=kind,
            thumb_width=thumb_width,
            stats=stats,
            mode=config.stereo.mode if config.stereo.mode != "middle2leftright" else "left2right",
        )
