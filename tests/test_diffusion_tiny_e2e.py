"""End to end on the real astronaut clip with a tiny random zeroscope: load offline, resize,
sample, composite."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from framematrix.fill.diffusion.composite import feather_weights
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.fill.diffusion.run import diffusion_fill, load_backbone
from framematrix.fill.diffusion.tiny import make_tiny_svd_vae, make_tiny_zeroscope

FRAMES = 3


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def astronaut_clip() -> tuple[np.ndarray, np.ndarray]:
    """The first frames of the astronaut clip, ``[F, 320, 576, 3]`` uint8 and refined depth."""
    from conftest import shared_path

    folder = shared_path("data", "astronaut")
    frames = [cv2.imread(str(folder / "images" / f"{i:05d}.jpg")) for i in range(FRAMES)]
    frames = np.ascontiguousarray(np.stack(frames)[..., ::-1])
    depth = np.stack([np.load(folder / "depth_refined" / f"{i:05d}.npy") for i in range(FRAMES)])
    return frames, depth


def _build(frames: np.ndarray, depth: np.ndarray):
    build = pytest.importorskip("framematrix.geometry.build")
    return build.build_frame_matrix(frames, depth, mode="left2right", views=3, baseline=0.08)


@pytest.fixture(scope="module")
def astronaut_matrix(astronaut_clip):
    return _build(*astronaut_clip)


@pytest.fixture(scope="module")
def small_astronaut_matrix(astronaut_clip):
    """The clip shrunk to 144x80 before warping: a matrix already at a (tiny) model size."""
    frames, depth = astronaut_clip
    small = np.stack([cv2.resize(f, (144, 80), interpolation=cv2.INTER_AREA) for f in frames])
    small_depth = np.stack([cv2.resize(d, (144, 80), interpolation=cv2.INTER_AREA) for d in depth])
    return _build(small, small_depth)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_zeroscope(tmp_path_factory.mktemp("tiny") / "zeroscope", seed=0)


def _config(model: Path, **overrides) -> DiffusionConfig:
    options = dict(
        model=str(model),
        prompt="An astronaut in full space suit riding a horse",
        steps=3,
        resample=2,
        resample_late=1,
        device="cpu",
        dtype="float32",
        seed=0,
    )
    options.update(overrides)
    return DiffusionConfig(**options)


def _check_filled(matrix, filled, feather_px):
    right = matrix.right_view
    assert filled.images.shape == matrix.images.shape
    assert torch.equal(filled.masks, matrix.masks)
    warp, mask, out = matrix.images[right], matrix.masks[right], filled.images[right]
    holes = ~mask
    assert holes.float().mean() > 0.01  # the clip really has disocclusions
    # Known pixels away from the seam are the full-resolution warp, bit for bit.
    inner = feather_weights(mask, feather_px) == 1
    assert inner.float().mean() > 0.5
    assert torch.equal(out[inner], warp[inner])
    # Holes are filled with finite, non-black, varying content.
    hole_pixels = out[holes]
    assert torch.isfinite(hole_pixels).all()
    assert hole_pixels.min() >= 0 and hole_pixels.max() <= 1
    assert (hole_pixels.sum(-1) > 0).float().mean() > 0.9
    assert hole_pixels.std() > 1e-3
    # The source (left) eye is untouched: fully known, weight 1 everywhere.
    assert torch.equal(filled.images[matrix.left_view], matrix.images[matrix.left_view])


def test_tiny_zeroscope_fills_astronaut_right_eye_at_model_size(small_astronaut_matrix, tiny_model):
    matrix = small_astronaut_matrix
    assert (matrix.height, matrix.width) == (80, 144)
    config = _config(tiny_model)
    # Equal sizes: the model runs at the matrix's own resolution, no resize.
    filled = diffusion_fill(matrix, config, progress=False, model_size=(80, 144), feather_px=3)
    _check_filled(matrix, filled, feather_px=3)
    # The middle view is neither an output nor touched.
    assert torch.equal(filled.images[1], matrix.images[1])


def test_larger_input_is_denoised_small_and_composited_full_size(
    astronaut_matrix, tiny_model, tmp_path
):
    matrix = astronaut_matrix
    svd = make_tiny_svd_vae(tmp_path / "svd")
    config = _config(tiny_model, decoder="svd", steps=2, resample=1)
    from framematrix.fill.diffusion.zeroscope import ZeroscopeBackbone

    backbone = ZeroscopeBackbone.from_pretrained(
        tiny_model, decoder="svd", decoder_model=svd, device="cpu"
    )
    calls = []
    original_decode = backbone.decode

    def spy_decode(latents, num_frames=None):
        calls.append((tuple(latents.shape), num_frames))
        return original_decode(latents, num_frames=num_frames)

    backbone.decode = spy_decode
    # The model runs at 80x144 while the matrix is 320x576: composite at 4x.
    assert (matrix.height, matrix.width) == (320, 576)
    filled = diffusion_fill(
        matrix, config, backbone=backbone, progress=False, model_size=(80, 144), feather_px=8
    )
    assert calls and all(shape[2:] == (10, 18) for shape, _ in calls)
    assert all(num_frames == FRAMES for _, num_frames in calls)  # whole videos per decode
    _check_filled(matrix, filled, feather_px=8)


def test_load_backbone_follows_config(tiny_model):
    config = _config(tiny_model, vae_slicing=True)
    backbone = load_backbone(config)
    assert backbone.vae_batch == 1 and backbone.dtype == torch.float32
    assert backbone.device.type == "cpu"


def test_batched_equals_one_by_one_on_the_tiny_zeroscope(small_astronaut_matrix, tiny_model):
    """The whole sampler, real diffusers UNet3D and VAE: batched passes (all videos of a pass
    in one call, CFG pair included) give the reference's one-video-per-call result."""
    from framematrix.fill.diffusion.sampler import FrameMatrixSampler

    config = _config(tiny_model, batch_budget=8, vae_batch=16)
    backbone = load_backbone(config)
    batched = FrameMatrixSampler(backbone, config).sample(small_astronaut_matrix, progress=False)
    single = FrameMatrixSampler(backbone, replace(config, batched=False)).sample(
        small_astronaut_matrix, progress=False
    )
    assert batched.stats.unet_calls < single.stats.unet_calls
    torch.testing.assert_close(batched.latents, single.latents, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched.images, single.images, atol=1e-4, rtol=1e-4)
    # ... and the sampler really changed the holes (the comparison is not of two no-ops).
    assert (batched.latents - batched.known_latents).abs().max() > 0.1
