"""Seamless generative windows: a shot of any length denoised in overlapping model windows.

zeroscope denoises 16 frames at a time. Cutting a shot into independent 16-frame chunks makes
the generated content jump at every chunk boundary. Here consecutive windows of a shot share
``overlap`` frames, and those frames are *known* in the later window with the values the
earlier window generated (temporal outpainting): their masks are all True in every decoded
view, so their known latents are the encoded generated images and the RePaint composition of
METHOD.md section 4 keeps them, while the window's new frames are denoised in their context.
At full resolution the composite keeps known pixels exactly, so the overlap frames of window
k + 1 are bit for bit those of window k; each frame is output once, by the first window that
generates it.

Use::

    fill = SeamlessFill(config, backbone)
    for shot_start, shot_end in shots:
        windows = plan_windows(shot_start, shot_end)
        for first, new_frames in fill.fill_windows(windows, build):
            encode(new_frames)          # frames first .. first + new_frames.num_frames - 1

To resume a long shot split into segments (consecutive runs of its windows, see
:func:`plan_segments`), save ``fill.tail`` with a finished segment and pass it as ``carry`` to
the next segment's :meth:`SeamlessFill.fill_windows`: the result is the same, frame for frame,
as one uninterrupted call, because each window's noise is seeded from ``config.seed`` and the
window's first frame index only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from framematrix.errors import InputError, ShapeError
from framematrix.fill.diffusion.composite import MODEL_SIZE
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.matrix import FrameMatrix
from framematrix.progress import Progress

WINDOW_DEFAULT = 16
#: Default overlap of consecutive windows, in frames. 4 of zeroscope's 16 frames:
#:
#: - cost: each window produces ``window - overlap`` new frames, so the diffusion work per
#:   output frame grows by ``window / (window - overlap)``: 1.33x at 4 (8 -> 2x, 12 -> 4x). The
#:   fill is by far the slowest stage (minutes per window with the paper's schedule), so this
#:   factor is the price of the option;
#: - context: the known frames reach every new frame through the UNet's temporal attention,
#:   which spans the whole window, so continuity at the boundary does not need many of them;
#:   4 frames (1/6 s at 24 fps) show the position, velocity and acceleration of content moving
#:   through a hole (3 frames fix a quadratic, the fourth gives slack against noise), which 1
#:   or 2 frames do not, and leave 12 of 16 frames (3/4 of the attention span) to new content.
#:   In the frame matrix most pixels are known anyway (holes are disocclusions beside known
#:   pixels), so the overlap only has to carry the generated hole content across the boundary.
K_DEFAULT = 4

Window = tuple[int, int]


def _check_window_options(window: int, overlap: int) -> None:
    if int(window) < 1:
        raise InputError(f"diffusion windows: window must be >= 1 frame, got {window}")
    if not 0 <= int(overlap) < int(window):
        raise InputError(
            f"diffusion windows: overlap must be in 0..{int(window) - 1} frames "
            f"(less than the window of {window}), got {overlap}"
        )


def plan_windows(
    start: int, end: int, window: int = WINDOW_DEFAULT, overlap: int = K_DEFAULT
) -> list[Window]:
    """Windows ``(a, b)`` (frame indices, ``b`` exclusive) over one shot ``[start, end)``.

    Consecutive windows share ``overlap`` frames (``window - overlap`` new frames each). Every
    window is full (``window`` frames): when the last one would run past ``end`` it is moved
    back to end at ``end``, so it shares more than ``overlap`` frames with the one before. A
    shot shorter than ``window`` gives one window of the shot's length; an empty shot none.
    Windows never leave ``[start, end)``.

    See :data:`K_DEFAULT` for the choice of the default overlap.
    """
    start, end, window, overlap = int(start), int(end), int(window), int(overlap)
    _check_window_options(window, overlap)
    if end < start:
        raise InputError(f"diffusion windows: shot end {end} is before its start {start}")
    if end - start <= window:
        return [(start, end)] if end > start else []
    stride = window - overlap
    windows = []
    first = start
    while first + window < end:
        windows.append((first, first + window))
        first += stride
    windows.append((end - window, end))
    return windows


def plan_segments(
    windows: Sequence[Window], frames: int, overlap: int = K_DEFAULT
) -> list[list[Window]]:
    """Group one shot's windows into resumable segments of about ``frames`` new frames each.

    A segment is a run of consecutive windows; it ends at the first window boundary once it
    holds at least ``frames`` frames (so each segment but the last has >= ``frames`` frames,
    and at most ``frames + window - overlap - 1``). A segment never starts with a window that
    shares more than ``overlap`` frames with the one before (the moved-back last window of
    :func:`plan_windows`): the ``tail`` saved with a segment holds ``overlap`` frames, which
    is exactly what the next segment's first window needs as ``carry``.

    Returns the segments in order; their union is ``windows``.
    """
    if int(frames) < 1:
        raise InputError(f"diffusion windows: segment length must be >= 1 frame, got {frames}")
    segments: list[list[Window]] = []
    current: list[Window] = []
    for a, b in windows:
        if current:
            shared = current[-1][1] - a
            held = current[-1][1] - current[0][0]
            if held >= frames and shared == overlap:
                segments.append(current)
                current = []
        current.append((int(a), int(b)))
    if current:
        segments.append(current)
    return segments


def window_seed(seed: int, start: int) -> int:
    """Seed of the noise of the window starting at frame ``start`` (63 bits, from
    ``numpy.random.SeedSequence``), the same whatever came before it."""
    words = np.random.SeedSequence([int(seed) % 2**64, int(start)]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def _frames(matrix: FrameMatrix, lo: int, hi: int) -> FrameMatrix:
    """Frames ``lo .. hi - 1`` of ``matrix`` as a new matrix (copied, not a view)."""
    return FrameMatrix(
        images=matrix.images[:, lo:hi].clone(),
        masks=matrix.masks[:, lo:hi].clone(),
        offsets=matrix.offsets,
        source_view=matrix.source_view,
        mode=matrix.mode,
        depth=None if matrix.depth is None else matrix.depth[:, lo:hi].clone(),
    )


def carry_from(unfilled: FrameMatrix, views: Sequence[int], images: np.ndarray) -> FrameMatrix:
    """Rebuild a carry from what a finished segment saved: the images of its filled views.

    unfilled: ``build(a, a + K)``, the unfilled matrix of the K carried frames; views: the
    fill's ``filled_views``; images: ``[len(views), K, H, W, 3]`` float32 in [0, 1], i.e.
    ``tail.images[views]`` as saved (e.g. ``numpy.save``; keep float32: the resume is then
    exact). Returns a matrix usable as ``carry`` (other views are not read).
    """
    data = torch.as_tensor(np.asarray(images, dtype=np.float32))
    expected = (len(views), *unfilled.images.shape[1:])
    if tuple(data.shape) != expected:
        raise ShapeError(f"carry images must be {list(expected)}, got {list(data.shape)}")
    out = unfilled.images.clone()
    out[list(views)] = data.to(out.device)
    return unfilled.with_images(out)


class SeamlessFill:
    """The diffusion fill over overlapping windows (see the module docstring).

    config: sampler and model options; backbone: a loaded
        :class:`~framematrix.fill.diffusion.backbone.VideoBackbone` (e.g.
        :func:`framematrix.fill.diffusion.run.load_backbone`).
    window: frames per window (16 for zeroscope); overlap: frames shared by consecutive
        windows (default :data:`K_DEFAULT`).
    progress: a :class:`~framematrix.progress.Progress` or bool; a ``"diffusion"`` task counts
        output frames, and every sampling step checks for cancellation.
    model_size, feather_px: as in :func:`framematrix.fill.diffusion.run.diffusion_fill`.

    After :meth:`fill_windows` has run to its end, ``tail`` holds the filled matrix of the
    last ``overlap`` frames (None when ``overlap`` is 0), ``[V, overlap, H, W, 3]`` float32 in
    [0, 1] with the masks of the warp; only its ``filled_views`` are read back as a carry.
    """

    def __init__(
        self,
        config: DiffusionConfig,
        backbone: object,
        *,
        window: int = WINDOW_DEFAULT,
        overlap: int = K_DEFAULT,
        progress: Progress | bool = False,
        model_size: tuple[int, int] = MODEL_SIZE,
        feather_px: int | None = None,
    ) -> None:
        _check_window_options(window, overlap)
        self.config = config
        self.backbone = backbone
        self.window = int(window)
        self.overlap = int(overlap)
        self.progress = progress
        self.model_size = model_size
        self.feather_px = feather_px
        self.tail: FrameMatrix | None = None
        #: matrix indices of the views the fill replaces (the eyes, or every used view in
        #: multi-view mode); set by the first window.
        self.filled_views: list[int] | None = None

    def plan(self, start: int, end: int) -> list[Window]:
        """:func:`plan_windows` over ``[start, end)`` with this fill's window and overlap."""
        return plan_windows(start, end, self.window, self.overlap)

    # ------------------------------------------------------------------ one window
    def with_known(self, matrix: FrameMatrix, known: FrameMatrix | None) -> FrameMatrix:
        """``matrix`` with its first ``known.num_frames`` frames known in every filled view.

        matrix: the unfilled window ``[V, F, H, W, 3]``; known: filled frames ``[V, K, H, W,
        3]`` (K < F) of the same rig. In the filled views (:attr:`filled_views`) those frames
        take ``known``'s images and masks all True; other views (not decoded by the sampler
        in stereo mode, so without generated values) keep their warp.
        """
        from framematrix.fill.diffusion.sampler import decoded_views

        views = decoded_views(matrix, self.config)
        self.filled_views = views
        if known is None or known.num_frames == 0:
            return matrix
        count = known.num_frames
        expected = (matrix.num_views, matrix.height, matrix.width)
        got = (known.num_views, known.height, known.width)
        if got != expected or count >= matrix.num_frames:
            raise ShapeError(
                f"known frames must be [V, K, H, W] = [{expected[0]}, < {matrix.num_frames}, "
                f"{expected[1]}, {expected[2]}], got [{got[0]}, {count}, {got[1]}, {got[2]}]"
            )
        images = matrix.images.clone()
        masks = matrix.masks.clone()
        for view in views:
            images[view, :count] = known.images[view].to(images.device, images.dtype)
            masks[view, :count] = True
        return FrameMatrix(
            images=images,
            masks=masks,
            offsets=matrix.offsets,
            source_view=matrix.source_view,
            mode=matrix.mode,
            depth=matrix.depth,
        )

    def fill_window(
        self,
        start: int,
        matrix: FrameMatrix,
        known: FrameMatrix | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> FrameMatrix:
        """Fill one window whose first frame has the absolute index ``start``.

        matrix: the unfilled window ``[V, F, H, W, 3]`` float32 in [0, 1], masks ``[V, F, H,
        W]``; known: the filled matrix of its first K frames (see :meth:`with_known`) or None.
        Returns the filled window ``[V, F, H, W, 3]`` with ``matrix``'s masks (the warp's);
        its first K frames equal ``known`` bit for bit in the filled views.
        """
        from framematrix.fill.diffusion.run import diffusion_fill

        prepared = self.with_known(matrix, known)
        filled = diffusion_fill(
            prepared,
            self.config,
            backbone=self.backbone,
            progress=False,
            model_size=self.model_size,
            feather_px=self.feather_px,
            generator=window_seed(self.config.seed, start),
            callback=callback,
        )
        return matrix.with_images(filled.images)

    # ------------------------------------------------------------------ many windows
    def _check_windows(self, windows: Sequence[Window]) -> list[Window]:
        checked = []
        for a, b in windows:
            a, b = int(a), int(b)
            if not 0 < b - a <= self.window or a < 0:
                raise InputError(
                    f"diffusion windows: window ({a}, {b}) must hold 1..{self.window} frames "
                    "from frame 0 on"
                )
            if checked and not (a > checked[-1][0] and b > checked[-1][1]):
                raise InputError(
                    f"diffusion windows: window ({a}, {b}) does not follow {checked[-1]}"
                )
            checked.append((a, b))
        return checked

    def fill_windows(
        self,
        windows: Sequence[Window],
        build: Callable[[int, int], FrameMatrix],
        carry: FrameMatrix | None = None,
    ) -> Iterator[tuple[int, FrameMatrix]]:
        """Fill consecutive windows, yielding the new frames of each as soon as it is done.

        windows: ``(a, b)`` frame ranges in increasing order (:func:`plan_windows` of one
            shot, or a segment of them, :func:`plan_segments`). A window that shares frames
            with the one before gets them as known frames; one that does not (the first
            window of another shot) starts afresh.
        build: ``build(a, b)`` returns the unfilled frame matrix of frames ``a .. b - 1``
            (all V views, ``[V, b - a, H, W, 3]`` float32 in [0, 1]); called once per window,
            in order, just before the window is denoised.
        carry: the filled matrix of the frames of ``windows[0]`` that an earlier call already
            produced: its first ``carry.num_frames`` frames (the ``tail`` of the call that
            ended there), or None at the start of a shot.

        Yields ``(first, matrix)``: ``matrix`` holds the filled frames ``first .. first +
        matrix.num_frames - 1`` (``[V, n, H, W, 3]`` float32 in [0, 1], the filled views
        replaced, masks of the warp), in order; over the whole call every frame of the
        windows not in ``carry`` is yielded exactly once. ``tail`` is set when the loop ends.
        """
        windows = self._check_windows(windows)
        self.tail = None
        if not windows:
            return
        first = windows[0][0]
        previous: tuple[int, FrameMatrix] | None = None
        done_until = first
        if carry is not None and carry.num_frames > 0:
            if carry.num_frames >= windows[0][1] - first:
                raise InputError(
                    f"diffusion windows: the carry of {carry.num_frames} frames covers the whole "
                    f"first window {windows[0]}"
                )
            previous = (first, carry)
            done_until = first + carry.num_frames
        total = windows[-1][1] - done_until
        with Progress.of(self.progress).task("diffusion", total) as task:

            def on_step(step: int, steps: int) -> None:
                task.update(0, message=f"frames {a}-{b - 1}: step {step}/{steps}")

            for index, (a, b) in enumerate(windows):
                known = None
                if previous is not None and previous[0] + previous[1].num_frames > a:
                    p_first, p_matrix = previous
                    known = _frames(p_matrix, a - p_first, p_matrix.num_frames)
                previous = None  # only the frames the next window shares are kept
                matrix = build(a, b)
                if not isinstance(matrix, FrameMatrix) or matrix.num_frames != b - a:
                    got = getattr(matrix, "num_frames", type(matrix).__name__)
                    raise ShapeError(f"build({a}, {b}) must return {b - a} frames, got {got}")
                filled = self.fill_window(a, matrix, known, callback=on_step)
                del matrix, known
                if index + 1 < len(windows):
                    keep_from = max(a, windows[index + 1][0])
                else:
                    keep_from = b - min(self.overlap, b - a)
                if keep_from < b:
                    previous = (keep_from, _frames(filled, keep_from - a, b - a))
                new_from = max(done_until, a)
                done_until = max(done_until, b)
                if new_from < b:
                    part = _frames(filled, new_from - a, b - a)
                    del filled
                    yield new_from, part
                    task.update(b - new_from)
        if previous is not None and self.overlap > 0:
            self.tail = previous[1]
