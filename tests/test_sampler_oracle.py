"""The sampler with an oracle network: it must return the oracle's clean video in the holes and
the known latents elsewhere, for every rig mode and for multi-view output.

The oracle predicts the exact noise of a fixed clean video x0*, so each DDPM step's x0
prediction is x0* and the last step (t = 1, previous timestep < 0) lands on it exactly. The
expected result is computed here from the mask functions and the toy VAE, independently of the
sampler: out = x0* (1 - m) + K m, with m the soft latent mask and K the known latents (after
re-injection K = encode(paste(decode(x0*), warped pixels))).
"""

from __future__ import annotations

import pytest
import torch

import framematrix.fill.diffusion.sampler as sampler_module
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.fill.diffusion.masks import erode_mask, latent_mask, soft_mask
from framematrix.fill.diffusion.sampler import FrameMatrixSampler, fill_matrix_diffusion
from framematrix.fill.diffusion.testing import OracleBackbone
from framematrix.matrix import FrameMatrix

V, F, H, W = 4, 3, 64, 96
BASELINE = 0.08


def make_matrix(mode: str, seed: int = 0) -> FrameMatrix:
    """A small frame matrix: holes grow with the distance from the source view."""
    generator = torch.Generator().manual_seed(seed)
    if mode == "left2right":
        offsets, source = torch.linspace(0, BASELINE, V), 0
    elif mode == "right2left":
        offsets, source = torch.linspace(0, -BASELINE, V), 0
    else:
        offsets, source = torch.linspace(-BASELINE / 2, BASELINE / 2, V), V // 2
        offsets[V // 2] = 0.0
    images = torch.rand(V, F, H, W, 3, generator=generator)
    masks = torch.ones(V, F, H, W, dtype=torch.bool)
    for view in range(V):
        width = round(float(abs(offsets[view] - offsets[source])) / BASELINE * 24)
        for frame in range(F):
            if width:
                x = 8 + 6 * frame
                masks[view, frame, 10:34, x : x + width] = False
                masks[view, frame, :, W - width // 2 :] = False
    images = images * masks[..., None]
    return FrameMatrix(images, masks, offsets, source, mode)


def oracle(seed: int = 1) -> OracleBackbone:
    generator = torch.Generator().manual_seed(seed)
    target = 2 * torch.randn(4, H // 8, W // 8, generator=generator)
    return OracleBackbone(target, frame_step=0.5)


def expected_latents(
    matrix: FrameMatrix, backbone: OracleBackbone, reinject: bool, soft_paste: bool = False
):
    """x0* (1 - m) + K m per view, ``[V, C, F, h, w]``, and m ``[V, 1, F, h, w]``."""
    pixel = erode_mask(matrix.masks, 3).float()
    mask = soft_mask(latent_mask(pixel, 8, 8, 0.7), 5)[:, None]
    clean = backbone.clean_video(F)  # [C, F, h, w]
    warped = (matrix.images * pixel[..., None]).permute(0, 1, 4, 2, 3)  # [V, F, 3, H, W]
    if reinject:
        decoded = (backbone.decode(clean.permute(1, 0, 2, 3)) / 2 + 0.5).clamp(0, 1)
        paste = (soft_mask(pixel, 5) if soft_paste else pixel)[:, :, None]
        source_images = decoded[None] * (1 - paste) + warped * paste
    else:
        source_images = warped
    known = backbone.encode(source_images.reshape(-1, 3, H, W) * 2 - 1)
    known = known.reshape(V, F, 4, H // 8, W // 8).permute(0, 2, 1, 3, 4)
    return clean[None] * (1 - mask) + known * mask, mask


def run(matrix, config, backbone, sampler_cls=FrameMatrixSampler):
    return sampler_cls(backbone, config).sample(matrix, generator=7, progress=False)


@pytest.mark.parametrize(
    ("mode", "outputs", "left", "right"),
    [
        ("left2right", [0, V - 1], 0, V - 1),
        ("right2left", [0, V - 1], V - 1, 0),
        ("middle2leftright", [0, V - 1], 0, V - 1),
    ],
)
@pytest.mark.parametrize("reinject", [True, False])
def test_stereo_modes_return_the_target_in_holes_and_known_latents_elsewhere(
    mode, outputs, left, right, reinject
):
    matrix = make_matrix(mode)
    backbone = oracle()
    config = DiffusionConfig(steps=4, reinject=reinject)
    result = run(matrix, config, backbone)
    assert result.output_views == outputs
    assert (result.left_view, result.right_view) == (left, right)
    expected, mask = expected_latents(matrix, backbone, reinject)
    for view in outputs:
        torch.testing.assert_close(result.latents[view], expected[view], atol=1e-5, rtol=1e-5)
    # The eye views are really mixed: holes hold the oracle's video, the rest the known latents.
    target_eye = V - 1
    holes = mask[target_eye].expand(4, -1, -1, -1) == 0
    inside = mask[target_eye].expand(4, -1, -1, -1) == 1
    assert holes.any() and inside.any()
    clean = backbone.clean_video(F)
    torch.testing.assert_close(result.latents[target_eye][holes], clean[holes], atol=1e-5, rtol=0)
    assert (result.latents[target_eye][inside] - clean[inside]).abs().max() > 0.1
    # Decoded eyes are the toy decoder's image of those latents.
    for row, view in enumerate(result.output_views):
        decoded = backbone.decode(expected[view].permute(1, 0, 2, 3))
        images = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
        torch.testing.assert_close(result.images[row], images, atol=1e-5, rtol=1e-5)


def test_multiview_returns_every_view_filled():
    matrix = make_matrix("left2right")
    backbone = oracle()
    config = DiffusionConfig(steps=4, multiview=True)
    result = run(matrix, config, backbone)
    assert result.output_views == list(range(V))
    assert result.images.shape == (V, F, H, W, 3)
    expected, _ = expected_latents(matrix, backbone, reinject=True)
    torch.testing.assert_close(result.latents, expected, atol=1e-5, rtol=1e-5)
    # The multi-view stage ran (t = 501 and 251 are <= 600): the anchor was resampled alone.
    assert any(p.views == (V - 1,) for step in result.plan for p in step.resample)


def test_stereo_mode_leaves_middle_views_unfinished():
    # After frame_matrix_end only the eyes are denoised: a middle view's holes are not x0*.
    matrix = make_matrix("left2right")
    backbone = oracle()
    result = run(matrix, DiffusionConfig(steps=4), backbone)
    expected, mask = expected_latents(matrix, backbone, reinject=True)
    assert (result.latents[1] - expected[1]).abs().max() > 0.1


def oracle_error(result, matrix, backbone) -> float:
    expected, _ = expected_latents(matrix, backbone, reinject=True)
    views = result.output_views
    return float((result.latents[views] - expected[views]).abs().max())


def test_a_broken_compose_step_is_detected():
    class NoCompose(FrameMatrixSampler):
        @staticmethod
        def _compose(latents, known, mask):
            return latents

    matrix, backbone = make_matrix("left2right"), oracle()
    good = run(matrix, DiffusionConfig(steps=4), backbone)
    broken = run(matrix, DiffusionConfig(steps=4), backbone, NoCompose)
    assert oracle_error(good, matrix, backbone) < 1e-5
    assert oracle_error(broken, matrix, backbone) > 0.1


@pytest.mark.parametrize("bug", ["hard_latent_mask", "no_erosion"])
def test_a_wrong_mask_is_detected(monkeypatch, bug):
    real = sampler_module.frame_matrix_masks

    def wrong_masks(masks, **kwargs):
        if bug == "no_erosion":
            kwargs["erode"] = 1
        result = real(masks, **kwargs)
        if bug == "hard_latent_mask":
            result.latent = result.latent_hard
        return result

    matrix, backbone = make_matrix("left2right"), oracle()
    monkeypatch.setattr(sampler_module, "frame_matrix_masks", wrong_masks)
    broken = run(matrix, DiffusionConfig(steps=4), backbone)
    assert oracle_error(broken, matrix, backbone) > 0.05


def test_fill_matrix_diffusion_replaces_only_the_eyes():
    matrix = make_matrix("middle2leftright")
    backbone = oracle()
    filled = fill_matrix_diffusion(matrix, backbone, DiffusionConfig(steps=4), progress=False)
    assert isinstance(filled, FrameMatrix)
    assert filled.images.shape == matrix.images.shape
    assert torch.equal(filled.masks, matrix.masks) and filled.mode == matrix.mode
    for view in (1, 2):
        assert torch.equal(filled.images[view], matrix.images[view])
    expected, _ = expected_latents(matrix, backbone, reinject=True)
    for view in (0, V - 1):
        decoded = backbone.decode(expected[view].permute(1, 0, 2, 3))
        images = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
        torch.testing.assert_close(filled.images[view], images, atol=1e-5, rtol=1e-5)
    left, right = filled.eyes()
    assert left.shape == (F, H, W, 3) and right.shape == (F, H, W, 3)


def test_tensor_input_with_a_mode_matches_the_frame_matrix_input():
    matrix = make_matrix("right2left")
    backbone = oracle()
    config = DiffusionConfig(steps=3)
    from_matrix = run(matrix, config, backbone)
    from_tensors = FrameMatrixSampler(backbone, config).sample(
        matrix.images, matrix.masks, mode="right2left", generator=7, progress=False
    )
    assert from_tensors.output_views == from_matrix.output_views
    assert (from_tensors.left_view, from_tensors.right_view) == (V - 1, 0)
    torch.testing.assert_close(from_tensors.latents, from_matrix.latents)


def test_soft_pixel_paste_option():
    # The authors' latest release pastes with the Gaussian-softened pixel mask.
    matrix, backbone = make_matrix("left2right"), oracle()
    result = run(matrix, DiffusionConfig(steps=4, reinject_soft_pixels=True), backbone)
    soft, _ = expected_latents(matrix, backbone, reinject=True, soft_paste=True)
    hard, _ = expected_latents(matrix, backbone, reinject=True)
    torch.testing.assert_close(result.latents[V - 1], soft[V - 1], atol=1e-5, rtol=1e-5)
    assert (soft[V - 1] - hard[V - 1]).abs().max() > 1e-3


def test_early_threshold_uses_a_looser_mask_early_only():
    matrix, backbone = make_matrix("left2right"), oracle()
    config = DiffusionConfig(steps=4, latent_threshold_early=0.2, guidance_early=3.5)
    result = run(matrix, config, backbone)
    assert result.masks.latent_early is not None
    assert result.masks.latent_early.sum() > result.masks.latent.sum()
    # The last steps (t < 500) compose with the late mask, so the final answer is unchanged.
    expected, _ = expected_latents(matrix, backbone, reinject=True)
    for view in result.output_views:
        torch.testing.assert_close(result.latents[view], expected[view], atol=1e-5, rtol=1e-5)
