"""Seamless diffusion windows: planning, the oracle over a long video, known overlaps, resume.

The oracle predicts the exact noise of a clean latent video given per *absolute* frame, so every
window is steered to the same target and the windowed result can be computed frame by frame,
independently of the windows: out = x0*(1 - m) + K m per frame, decoded and composited with the
warp. The toy convolution backbone is a real (random) denoiser whose output depends on every
frame of a window: with it, known overlaps and deterministic per-window noise are visible.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framematrix.errors import InputError
from framematrix.fill.diffusion.composite import composite_full_res, feather_weights
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.fill.diffusion.masks import erode_mask, frame_matrix_masks, latent_mask, soft_mask
from framematrix.fill.diffusion.testing import OracleBackbone, ToyConvBackbone
from framematrix.fill.diffusion.windows import (
    K_DEFAULT,
    SeamlessFill,
    carry_from,
    plan_segments,
    plan_windows,
    window_seed,
)
from framematrix.matrix import FrameMatrix

V, H, W = 4, 64, 96
FRAMES = 40


def video_matrix(frames: int = FRAMES, seed: int = 0) -> FrameMatrix:
    """A left2right frame matrix of a whole video: holes grow with the view and move in time."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.linspace(0, 0.08, V)
    images = torch.rand(V, frames, H, W, 3, generator=generator)
    masks = torch.ones(V, frames, H, W, dtype=torch.bool)
    for view in range(1, V):
        width = 6 * view
        for frame in range(frames):
            x = 4 + (3 * frame) % (W - width - 8)
            masks[view, frame, 8 + 2 * view : 40, x : x + width] = False
            masks[view, frame, :, W - 2 * view :] = False
    return FrameMatrix(images * masks[..., None], masks, offsets, 0, "left2right")


def window_of(matrix: FrameMatrix, a: int, b: int) -> FrameMatrix:
    return FrameMatrix(
        matrix.images[:, a:b].clone(), matrix.masks[:, a:b].clone(), matrix.offsets, 0, matrix.mode
    )


def collect(fill: SeamlessFill, windows, build, carry=None) -> dict[int, FrameMatrix]:
    """Frame index -> the yielded one-frame matrix; fails on a frame yielded twice."""
    out: dict[int, FrameMatrix] = {}
    for first, part in fill.fill_windows(windows, build, carry=carry):
        for k in range(part.num_frames):
            assert first + k not in out, f"frame {first + k} yielded twice"
            out[first + k] = FrameMatrix(
                part.images[:, k : k + 1], part.masks[:, k : k + 1], part.offsets, 0, part.mode
            )
    return out


def stacked(out: dict[int, FrameMatrix]) -> torch.Tensor:
    """``[V, F, H, W, 3]`` of the yielded frames in order (frames must be 0..F-1)."""
    assert sorted(out) == list(range(len(out)))
    return torch.cat([out[k].images for k in range(len(out))], dim=1)


# ---------------------------------------------------------------------------- planning
def test_plan_windows_overlap_full_windows_and_shot_bounds():
    assert plan_windows(0, 40, 16, 4) == [(0, 16), (12, 28), (24, 40)]
    # The short last window is moved back to stay full: it shares more than K frames.
    assert plan_windows(0, 22, 16, 4) == [(0, 16), (6, 22)]
    assert plan_windows(22, 40, 16, 4) == [(22, 38), (24, 40)]
    assert plan_windows(5, 16, 16, 4) == [(5, 16)]  # shorter than a window: the shot itself
    assert plan_windows(3, 3) == []
    assert plan_windows(0, 16, 16, 0) == [(0, 16)]
    assert plan_windows(0, 32, 16, 0) == [(0, 16), (16, 32)]
    for start, end, window, overlap in [(7, 100, 16, 4), (0, 57, 16, 8), (3, 20, 16, 15)]:
        windows = plan_windows(start, end, window, overlap)
        assert windows[0][0] == start and windows[-1][1] == end
        assert all(b - a == window for a, b in windows)
        shared = [p[1] - n[0] for p, n in zip(windows, windows[1:])]
        assert all(s == overlap for s in shared[:-1]) and shared[-1] >= overlap
        assert all(n[0] > p[0] for p, n in zip(windows, windows[1:]))
    assert K_DEFAULT == 4 and plan_windows(0, 40) == [(0, 16), (12, 28), (24, 40)]


@pytest.mark.parametrize("overlap", [-1, 16, 20])
def test_plan_windows_rejects_bad_overlap(overlap):
    with pytest.raises(InputError, match="overlap"):
        plan_windows(0, 40, 16, overlap)


def test_plan_segments_never_start_at_a_moved_back_window():
    windows = plan_windows(0, 70, 16, 4)  # (0,16) (12,28) (24,40) (36,52) (48,64) (54,70)
    segments = plan_segments(windows, 20, overlap=4)
    assert [w for s in segments for w in s] == windows
    assert segments == [[(0, 16), (12, 28)], [(24, 40), (36, 52)], [(48, 64), (54, 70)]]
    # Each segment after the first starts at a window sharing exactly K frames.
    for before, after in zip(segments, segments[1:]):
        assert before[-1][1] - after[0][0] == 4


def test_all_known_frames_stay_fully_known_in_every_mask():
    # Erosion counts the image border as known; the box filter of ones is one: nothing erodes.
    masks = frame_matrix_masks(torch.ones(2, 3, H, W, dtype=torch.bool))
    assert torch.equal(masks.pixel, torch.ones_like(masks.pixel))
    assert torch.equal(masks.latent_hard, torch.ones_like(masks.latent_hard))
    assert torch.equal(masks.latent, torch.ones_like(masks.latent))


def test_window_seed_depends_on_seed_and_start_only():
    assert window_seed(0, 12) == window_seed(0, 12)
    assert len({window_seed(s, a) for s in (0, 1) for a in (0, 12, 24)}) == 6


# ---------------------------------------------------------------------------- oracle
def expected_video(matrix: FrameMatrix, backbone: OracleBackbone) -> torch.Tensor:
    """The whole video filled frame by frame with the oracle's rule, no windows:
    images ``[V, F, H, W, 3]`` of the composite of x0*(1 - m) + K m (re-injected K)."""
    frames = matrix.num_frames
    pixel = erode_mask(matrix.masks, 3).float()
    mask = soft_mask(latent_mask(pixel, 8, 8, 0.7), 5)[:, None]  # [V, 1, F, h, w]
    clean = backbone.clean_video(frames, start=0)  # [C, F, h, w]
    warped = (matrix.images * pixel[..., None]).permute(0, 1, 4, 2, 3)
    decoded = (backbone.decode(clean.permute(1, 0, 2, 3)) / 2 + 0.5).clamp(0, 1)
    paste = pixel[:, :, None]
    pasted = decoded[None] * (1 - paste) + warped * paste
    known = backbone.encode(pasted.reshape(-1, 3, H, W) * 2 - 1)
    known = known.reshape(V, frames, 4, H // 8, W // 8).permute(0, 2, 1, 3, 4)
    latents = clean[None] * (1 - mask) + known * mask
    out = matrix.images.clone()
    for view in (0, V - 1):
        generated = backbone.decode(latents[view].permute(1, 0, 2, 3))
        generated = (generated / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
        out[view] = composite_full_res(matrix.images[view], matrix.masks[view], generated, 2)
    return out


def test_oracle_windows_agree_on_overlaps_and_the_video_equals_the_target():
    matrix = video_matrix()
    generator = torch.Generator().manual_seed(3)
    targets = 2 * torch.randn(FRAMES, 4, H // 8, W // 8, generator=generator)
    oracle = OracleBackbone(targets[0], frame_targets=targets)
    config = DiffusionConfig(steps=4)
    fill = SeamlessFill(config, oracle, model_size=(H, W), feather_px=2)

    def build(a, b):
        oracle.frame_offset = a  # the oracle's videos start at the window's first frame
        return window_of(matrix, a, b)

    outputs = {}
    fill_window = fill.fill_window

    def recording(start, window, known=None, callback=None):
        outputs[start] = (window, known, fill_window(start, window, known, callback))
        return outputs[start][2]

    fill.fill_window = recording
    windows = plan_windows(0, FRAMES, 16, K_DEFAULT)
    out = collect(fill, windows, build)
    assert fill.filled_views == [0, V - 1]
    video = stacked(out)
    assert video.shape == matrix.images.shape

    # Window k+1 reproduces window k's output exactly on the overlap, and got it as known.
    for (a0, b0), (a1, b1) in zip(windows, windows[1:]):
        prev, nxt = outputs[a0][2], outputs[a1][2]
        unfilled, known = outputs[a1][0], outputs[a1][1]
        assert known.num_frames == b0 - a1 == K_DEFAULT
        prepared = fill.with_known(unfilled, known)
        for view in fill.filled_views:
            assert prepared.masks[view, :K_DEFAULT].all()
            assert torch.equal(nxt.images[view, : b0 - a1], prev.images[view, a1 - a0 :])
        assert not prepared.masks[V - 1, K_DEFAULT:].all()  # the new frames keep their holes
        assert not unfilled.masks[V - 1, :K_DEFAULT].all()  # ... as the overlap had them
        # The warp masks of the window are kept in its output.
        assert torch.equal(nxt.masks, matrix.masks[:, a1:b1])

    # The whole video: target in the holes, known latents elsewhere, frame by frame.
    expected = expected_video(matrix, oracle)
    for view in (0, V - 1):
        torch.testing.assert_close(video[view], expected[view], atol=1e-5, rtol=1e-5)
    assert torch.equal(video[1 : V - 1], matrix.images[1 : V - 1])  # middle views untouched
    # ... and that is really the per-frame target: hole pixels of fully generated latent cells
    # are the decoded target of their absolute frame, far-from-hole pixels the warp.
    eye = V - 1
    hard = latent_mask(erode_mask(matrix.masks[eye], 3).float(), 8, 8, 0.7)
    free = torch.nn.functional.interpolate(hard[:, None], scale_factor=8)[:, 0] == 0
    holes = free & ~matrix.masks[eye]
    target_images = (oracle.decode(targets) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert holes.sum() > 1000
    torch.testing.assert_close(video[eye][holes], target_images[holes], atol=1e-5, rtol=0)
    inner = feather_weights(matrix.masks[eye], 2) == 1
    assert torch.equal(video[eye][inner], matrix.images[eye][inner])


# ---------------------------------------------------------------------------- toy backbone
def toy_config(**overrides) -> DiffusionConfig:
    options = dict(steps=3, resample=2, resample_late=1, views=3, seed=5)
    return DiffusionConfig(**{**options, **overrides})


def toy_fill(backbone=None, **kwargs) -> SeamlessFill:
    backbone = backbone or ToyConvBackbone(seed=2)
    return SeamlessFill(toy_config(), backbone, model_size=(H, W), feather_px=2, **kwargs)


def test_resume_from_the_tail_equals_one_uninterrupted_call(tmp_path):
    matrix = video_matrix()
    windows = plan_windows(0, FRAMES)
    assert len(windows) == 3

    def build(a, b):
        return window_of(matrix, a, b)

    whole = toy_fill()
    full = stacked(collect(whole, windows, build))

    first = toy_fill()
    part1 = collect(first, windows[:2], build)
    tail = first.tail
    assert tail.num_frames == K_DEFAULT
    assert torch.equal(tail.images, full[:, windows[1][1] - K_DEFAULT : windows[1][1]])
    # A fresh process: new objects, the same weights, the carry rebuilt from the saved eyes.
    saved = tmp_path / "tail.npy"
    np.save(saved, tail.images[first.filled_views].numpy())
    a = windows[2][0]
    carry = carry_from(build(a, a + K_DEFAULT), first.filled_views, np.load(saved))
    second = toy_fill(ToyConvBackbone(seed=2))
    part2 = collect(second, windows[2:], build, carry=carry)
    assert sorted(part1) == list(range(windows[1][1]))
    assert sorted(part2) == list(range(windows[1][1], FRAMES))
    resumed = stacked({**part1, **part2})
    assert torch.equal(resumed, full)
    assert torch.equal(second.tail.images, whole.tail.images)

    # Both halves of that equality matter: without the carry, or with another seed, the
    # resumed frames differ.
    new = windows[1][1]  # the first frame the resumed call outputs
    no_carry = collect(toy_fill(), windows[2:], build)
    assert (no_carry[new].images - full[:, new : new + 1]).abs().max() > 0.01
    other = SeamlessFill(
        toy_config(seed=6), ToyConvBackbone(seed=2), model_size=(H, W), feather_px=2
    )
    reseeded = collect(other, windows[2:], build, carry=tail)
    assert (reseeded[FRAMES - 1].images - full[:, FRAMES - 1 :]).abs().max() > 0.01


def test_known_overlap_conditions_the_next_window():
    """With a real denoiser the overlap frames of window k+1 equal window k's bit for bit,
    and an independent window (no known overlap) would generate them differently."""
    matrix = video_matrix(frames=28)
    windows = plan_windows(0, 28)  # (0, 16), (12, 28)
    fill = toy_fill()
    outputs = {}
    fill_window = fill.fill_window

    def recording(start, window, known=None, callback=None):
        outputs[start] = fill_window(start, window, known, callback)
        return outputs[start]

    fill.fill_window = recording
    collect(fill, windows, lambda a, b: window_of(matrix, a, b))
    eye = V - 1
    overlap = outputs[12].images[eye, :4]
    assert torch.equal(overlap, outputs[0].images[eye, 12:16])
    alone = toy_fill().fill_window(12, window_of(matrix, 12, 28))
    holes = ~matrix.masks[eye, 12:16]
    assert (alone.images[eye, :4][holes] - overlap[holes]).abs().max() > 0.05


def test_bad_windows_and_carry_are_refused():
    matrix = video_matrix(frames=20)
    fill = toy_fill()

    def build(a, b):
        return window_of(matrix, a, b)

    with pytest.raises(InputError, match="1..16 frames"):
        list(fill.fill_windows([(0, 17)], build))
    with pytest.raises(InputError, match="does not follow"):
        list(fill.fill_windows([(4, 20), (0, 16)], build))
    with pytest.raises(InputError, match="covers the whole"):
        list(fill.fill_windows([(0, 4)], build, carry=window_of(matrix, 0, 4)))
    with pytest.raises(Exception, match="must return 16 frames"):
        list(fill.fill_windows([(0, 16)], lambda a, b: window_of(matrix, a, b - 1)))


def test_windows_of_two_shots_in_one_call_start_afresh_at_the_cut():
    matrix = video_matrix(frames=40)

    def build(a, b):
        return window_of(matrix, a, b)

    fill = toy_fill()
    shots = plan_windows(0, 28) + plan_windows(28, 40)
    together = stacked(collect(fill, shots, build))
    assert fill.tail.num_frames == K_DEFAULT
    separate = {**collect(toy_fill(), plan_windows(0, 28), build)}
    separate.update(collect(toy_fill(), plan_windows(28, 40), build))
    assert torch.equal(together, stacked(separate))


def test_progress_counts_output_frames_and_cancel_stops_at_the_next_step():
    from framematrix.progress import Cancelled, Progress

    matrix = video_matrix(frames=28)
    events = []
    progress = Progress(show=False, callback=events.append)
    fill = toy_fill(progress=progress)
    run = fill.fill_windows(plan_windows(0, 28), lambda a, b: window_of(matrix, a, b))
    first, part = next(run)
    assert (first, part.num_frames) == (0, 16)
    assert any(e.pass_name == "diffusion" and e.total == 28 and "step" in e.message for e in events)
    progress.cancel()
    with pytest.raises(Cancelled):
        next(run)
    assert max(e.done for e in events) == 16
