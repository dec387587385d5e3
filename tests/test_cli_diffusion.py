"""``framematrix convert --fill diffusion`` end to end with a tiny random zeroscope, offline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix import build_frame_matrix
from framematrix.cli import main
from framematrix.fill.diffusion.tiny import make_tiny_zeroscope
from framematrix.io.depth_files import read_depth
from framematrix.io.video import read_clip


@pytest.mark.slow
def test_convert_astronaut_with_tiny_zeroscope(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    astronaut = shared_path("data", "astronaut")
    model = make_tiny_zeroscope(tmp_path / "tiny-zeroscope")
    out = tmp_path / "sbs"
    code = main(
        [
            "convert",
            str(astronaut / "images"),
            "--depth",
            str(astronaut / "depth_refined"),
            "--fill",
            "diffusion",
            "--model",
            str(model),
            "--diffusion-preset",
            "draft",
            "--steps",
            "3",
            "--seed",
            "1",
            "--depth-budget",
            "paper",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    sbs = np.stack([cv2.imread(str(p))[..., ::-1] for p in sorted(out.glob("*.png"))])
    assert sbs.shape == (16, 320, 1152, 3)

    clip = read_clip(astronaut / "images")
    depth = read_depth(astronaut / "depth_refined", clip.frames.shape[:3])
    matrix = build_frame_matrix(clip.frames, depth, views=8)
    warp = (matrix.images[7].numpy() * 255.0 + 0.5).astype(np.uint8)
    known = matrix.masks[7].numpy()
    left, right = sbs[:, :, :576], sbs[:, :, 576:]

    np.testing.assert_array_equal(left, clip.frames)  # the source eye is untouched
    # Known pixels well inside the known area are exactly the warp (the seam is feathered).
    inner = np.stack(
        [cv2.erode(k.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) for k in known]
    )
    assert inner.mean() > 0.7
    diff = np.abs(right.astype(int) - warp.astype(int))[inner]
    assert diff.max() <= 1
    # Holes got generated content: not black, not a copy of the source, and varied.
    holes = right[~known].astype(float)
    assert holes.mean() > 5.0
    assert holes.std() > 1.0
    assert np.isfinite(holes).all()


@pytest.mark.slow
def test_diffusion_windows_of_a_convert_respect_the_cut_and_resume(tmp_path, monkeypatch):
    """A 40-frame clip with a cut at 28, tiny zeroscope: the windows the pipeline builds never
    cross the cut and consecutive windows of a shot overlap by K; a run split into segments and
    resumed from the saved tail gives the same frames as one uninterrupted run."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import framematrix.pipeline as pipeline
    from framematrix.config import ConvertConfig
    from framematrix.fill.diffusion.config import DiffusionConfig
    from framematrix.io.array_source import ArraySource

    model = make_tiny_zeroscope(tmp_path / "tiny-zeroscope")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
    depth = np.broadcast_to(np.linspace(1, 9, 64, dtype=np.float32), (40, 48, 64)).copy()
    (tmp_path / "cuts.txt").write_text("28\n")
    diffusion = DiffusionConfig.from_preset("draft", model=str(model), steps=2, seed=3)

    def config(segment_frames: int) -> ConvertConfig:
        return ConvertConfig(
            fill="diffusion",
            diffusion=diffusion,
            shots=str(tmp_path / "cuts.txt"),
            segment_frames=segment_frames,
            format="sbs",
            crf=0,
        )

    built: list[tuple[int, int]] = []
    real = pipeline._Job.build

    def record(self, start, frames_, shot):  # noqa: ANN001, ANN202
        built.append((start, start + frames_.shape[0]))
        return real(self, start, frames_, shot)

    monkeypatch.setattr(pipeline._Job, "build", record)
    # Denoise at the clip's own 48x64 (not zeroscope's 320x576): the same code, 60x less work.
    import functools

    import framematrix.fill.diffusion.windows as windows_module

    small = functools.partial(windows_module.SeamlessFill, model_size=(48, 64))
    monkeypatch.setattr(windows_module, "SeamlessFill", small)
    source = ArraySource(frames, 24, name="cut40")
    one = pipeline.convert(
        source, tmp_path / "one.mp4", depth=depth, config=config(600), progress=False
    )
    assert one.shots == [(0, 28), (28, 40)]
    windows = built[:]
    assert windows == [(0, 16), (12, 28), (28, 40)]
    assert all(b <= 28 or a >= 28 for a, b in windows)  # none crosses the cut
    assert windows[1][0] == windows[0][1] - 4  # K = 4 shared frames

    # Segments of one window each: segment 1 resumes from segment 0's saved tail.
    built.clear()
    split = tmp_path / "split.mp4"
    calls = {"n": 0}
    real_finish = pipeline._save_tail

    def interrupt_after_first(job, work, seg):  # noqa: ANN001, ANN202
        # segment 0 is recorded; stop while segment 1 is being recorded (a Ctrl-C)
        real_finish(job, work, seg)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_save_tail", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(source, split, depth=depth, config=config(12), progress=False)
    monkeypatch.setattr(pipeline, "_save_tail", real_finish)
    resumed = pipeline.convert(source, split, depth=depth, config=config(12), progress=False)
    assert resumed.segments == 3 and resumed.segments_reused == 1
    np.testing.assert_array_equal(read_clip(split).frames, read_clip(tmp_path / "one.mp4").frames)
