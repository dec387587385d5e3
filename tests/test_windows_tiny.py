"""Seamless windows with a real (tiny, random) zeroscope on a 40-frame clip with a cut.

The backbone's calls are recorded with the window they belong to: no window crosses the cut,
consecutive windows of a shot share K frames, every UNet video and VAE decode covers one
window's frames, and every frame comes out exactly once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framematrix import build_frame_matrix
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.fill.diffusion.run import load_backbone
from framematrix.fill.diffusion.tiny import make_tiny_zeroscope
from framematrix.fill.diffusion.windows import K_DEFAULT, SeamlessFill

FRAMES, CUT, H, W, VIEWS = 40, 28, 32, 48, 3
SHOTS = [(0, CUT), (CUT, FRAMES)]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


def clip_with_a_cut() -> tuple[np.ndarray, np.ndarray]:
    """``[40, 32, 48, 3]`` uint8 frames (a panning texture, then another) and metric depth: a
    near square moving over a far background, so the right eye has disocclusions."""
    rng = np.random.default_rng(0)
    textures = [rng.integers(0, 256, (H, 2 * W, 3), dtype=np.uint8) for _ in SHOTS]
    frames = np.empty((FRAMES, H, W, 3), np.uint8)
    depth = np.full((FRAMES, H, W), 8.0, np.float32)
    for index in range(FRAMES):
        shot = 0 if index < CUT else 1
        frames[index] = textures[shot][:, index : index + W]
        x = 8 + index % 20
        depth[index, 8:24, x : x + 12] = 1.5 + shot
    return frames, depth


@pytest.mark.slow
def test_windows_of_a_clip_with_a_cut_on_the_tiny_zeroscope(tmp_path):
    frames, depth = clip_with_a_cut()
    model = make_tiny_zeroscope(tmp_path / "zeroscope")
    config = DiffusionConfig.from_preset(
        "draft", model=str(model), steps=2, batch_budget=16, device="cpu", dtype="float32", seed=3
    )
    backbone = load_backbone(config)
    fill = SeamlessFill(config, backbone, model_size=(H, W), feather_px=2)

    log = {"window": None, "windows": [], "unet": [], "decode": []}
    predict_noise, decode = backbone.predict_noise, backbone.decode

    def spy_predict_noise(latents, timestep, cond, guidance):
        log["unet"].append((log["window"], int(latents.shape[0]), int(latents.shape[2])))
        return predict_noise(latents, timestep, cond, guidance)

    def spy_decode(latents, num_frames=None):
        log["decode"].append((log["window"], int(latents.shape[0]), num_frames))
        return decode(latents, num_frames=num_frames)

    backbone.predict_noise, backbone.decode = spy_predict_noise, spy_decode
    matrices = {}

    def build(a, b):
        log["window"] = (a, b)
        log["windows"].append((a, b))
        matrices[a] = build_frame_matrix(
            frames[a:b], depth[a:b], views=VIEWS, baseline=0.08, focal=200.0, depth_kind="metric"
        )
        return matrices[a]

    filled, knowns = {}, {}
    fill_window = fill.fill_window

    def recording(start, window, known=None, callback=None):
        knowns[start] = known
        filled[start] = fill_window(start, window, known, callback)
        return filled[start]

    fill.fill_window = recording
    out: dict[int, torch.Tensor] = {}
    for start, end in SHOTS:
        for first, part in fill.fill_windows(fill.plan(start, end), build):
            assert part.images.shape == (VIEWS, part.num_frames, H, W, 3)
            for k in range(part.num_frames):
                assert first + k not in out, f"frame {first + k} output twice"
                out[first + k] = part.images[:, k]

    # Every frame exactly once; the filled right eye differs from the warp in its holes only.
    assert sorted(out) == list(range(FRAMES))
    windows = log["windows"]
    assert windows == [(0, 16), (12, 28), (28, 40)]
    for a, b in windows:
        assert b <= CUT or a >= CUT, f"window {(a, b)} crosses the cut at {CUT}"
    # Consecutive windows in a shot share K frames, known in the later one, bit for bit.
    (a0, b0), (a1, b1) = windows[:2]
    assert b0 - a1 == K_DEFAULT
    assert knowns[0] is None and knowns[CUT] is None  # no carry across the cut
    assert knowns[a1].num_frames == K_DEFAULT
    eye = VIEWS - 1
    assert fill.filled_views == [0, eye]
    assert torch.equal(filled[a1].images[eye, :K_DEFAULT], filled[a0].images[eye, a1 - a0 :])
    assert not matrices[a1].masks[eye, :K_DEFAULT].all()  # the overlap had holes to carry
    holes = ~matrices[a1].masks[eye]
    assert (filled[a1].images[eye][holes] - matrices[a1].images[eye][holes]).abs().max() > 0.01

    # The backbone saw one window at a time: time-axis videos of the window's length, view-axis
    # videos of the matrix's 3 views (draft would take 4), whole windows per decode.
    assert {w for w, _, _ in log["unet"]} == set(windows)
    for window, _, length in log["unet"]:
        assert length in (window[1] - window[0], VIEWS)
    for a, b in windows:
        assert any(w == (a, b) and length == b - a for w, _, length in log["unet"])
    assert log["decode"] and all(n == w[1] - w[0] for w, _, n in log["decode"])
    assert all(count % (w[1] - w[0]) == 0 for w, count, _ in log["decode"])
