"""A classic content detector of hard cuts, on 64x36 downscaled frames.

For each frame i >= 1 a change score against frame i - 1 combines two cues that fail differently:
the mean absolute difference of the CIE Lab images (0..255 scale; sensitive to motion) and the
histogram distance ``1 - intersection`` of 512-bin (8x8x8) RGB histograms, times 100 (blind to
where things are, so robust to motion):

    score[i] = (mad_lab[i] + 100 * hist_distance[i]) / 2

Inside a shot scores are a few units (fast motion: 10-20); across a cut 40 or more. A frame starts
a new shot when its score is at least ``min_score`` and at least ``ratio`` times the median score
of the ``window`` frames on each side (an adaptive threshold: busy shots need a larger jump).
Candidates are taken strongest first and kept only ``min_shot_frames`` or more from frame 0 and
from every cut already kept (a flash gives one cut, not two). Gradual transitions (dissolves,
fades) are not looked for: use TransNetV2 for those.

Memory: one 64x36 frame of state and one float per frame of the video.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import cv2
import numpy as np

from framematrix.progress import Task
from framematrix.shots.frames import downscale

__all__ = [
    "CONTENT_HEIGHT",
    "CONTENT_WIDTH",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_MIN_SHOT_FRAMES",
    "DEFAULT_RATIO",
    "DEFAULT_WINDOW",
    "content_cuts",
    "content_scores",
]

CONTENT_WIDTH = 64
CONTENT_HEIGHT = 36
DEFAULT_RATIO = 3.0
DEFAULT_MIN_SCORE = 12.0
DEFAULT_WINDOW = 4
DEFAULT_MIN_SHOT_FRAMES = 6
_BASELINE_FLOOR = 1.0  # static shots (score ~0) still need min_score, not 3 x 0


def _features(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, 36, 64, 3] uint8 RGB -> (Lab [n, 36, 64, 3] float32, histograms [n, 512] float32)."""
    lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in small]).astype(np.float32)
    q = (small >> 5).astype(np.int32)
    bins = (q[..., 0] << 6) + (q[..., 1] << 3) + q[..., 2]  # [n, h, w] in 0..511
    n = small.shape[0]
    offsets = (np.arange(n, dtype=np.int64) * 512)[:, None]
    flat = bins.reshape(n, -1) + offsets
    hist = np.bincount(flat.ravel(), minlength=n * 512).reshape(n, 512).astype(np.float32)
    hist /= small.shape[1] * small.shape[2]
    return lab, hist


def content_scores(
    chunks: Iterable[np.ndarray], *, task: Task | None = None, small: bool = False
) -> np.ndarray:
    """Change scores of a streamed video: [N] float32 >= 0, score[0] = 0.

    chunks: consecutive [n, H, W, 3] uint8 RGB chunks, in order (already checked); each is
    downscaled to 64x36 at once (with ``small=True`` they are 64x36 already).
    """
    scores: list[np.ndarray] = []
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for chunk in chunks:
        frames = chunk if small else downscale(chunk, CONTENT_WIDTH, CONTENT_HEIGHT)
        lab, hist = _features(frames)
        if prev is None:
            scores.append(np.zeros(1, dtype=np.float32))
            lab_prev, hist_prev = lab[:-1], hist[:-1]
            lab_cur, hist_cur = lab[1:], hist[1:]
        else:
            lab_prev = np.concatenate([prev[0], lab[:-1]])
            hist_prev = np.concatenate([prev[1], hist[:-1]])
            lab_cur, hist_cur = lab, hist
        mad = np.abs(lab_cur - lab_prev).mean(axis=(1, 2, 3))
        dist = 1.0 - np.minimum(hist_cur, hist_prev).sum(axis=1)
        scores.append(((mad + 100.0 * dist) / 2.0).astype(np.float32))
        prev = (lab[-1:], hist[-1:])
        if task is not None:
            task.update(chunk.shape[0])
    if not scores:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(scores)


def content_cuts(
    scores: np.ndarray,
    *,
    ratio: float = DEFAULT_RATIO,
    min_score: float = DEFAULT_MIN_SCORE,
    window: int = DEFAULT_WINDOW,
    min_shot_frames: int = DEFAULT_MIN_SHOT_FRAMES,
) -> list[int]:
    """Frame indices where a new shot starts, from the [N] scores of :func:`content_scores`."""
    if ratio <= 0 or min_score < 0 or window < 1 or min_shot_frames < 1:
        raise ValueError(
            f"content detector: need ratio > 0, min_score >= 0, window >= 1, min_shot_frames >= 1; "
            f"got {ratio}, {min_score}, {window}, {min_shot_frames}"
        )
    n = scores.shape[0]
    if n < 2:
        return []
    values = scores.astype(np.float64)
    values[0] = np.nan  # frame 0 has no score
    padded = np.pad(values, window, constant_values=np.nan)
    around = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1)  # [n, 2w + 1]
    neighbours = np.delete(around, window, axis=1)  # the frame itself left out
    baseline = np.zeros(n)
    known = ~np.isnan(neighbours).all(axis=1)
    baseline[known] = np.nanmedian(neighbours[known], axis=1)
    hit = (values >= min_score) & (values >= ratio * np.maximum(baseline, _BASELINE_FLOOR))
    hit[0] = False
    candidates = np.flatnonzero(hit)
    order = candidates[np.argsort(-values[candidates], kind="stable")]  # strongest first
    kept = [0]  # sorted; frame 0 is a shot start
    for i in order.tolist():
        at = bisect.bisect_left(kept, i)
        if (at == 0 or i - kept[at - 1] >= min_shot_frames) and (
            at == len(kept) or kept[at] - i >= min_shot_frames
        ):
            kept.insert(at, i)
    return kept[1:]
