"""Schedule, call counts and batched execution of the frame-matrix sampler (METHOD.md 4 and 5)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from framematrix.errors import InputError, ShapeError
from framematrix.fill.diffusion.config import PRESETS, DiffusionConfig
from framematrix.fill.diffusion.sampler import (
    TIME,
    VIEW,
    VIEW_REVERSED,
    FrameMatrixSampler,
    Pass,
    StepPlan,
    plan_schedule,
    select_views,
)
from framematrix.fill.diffusion.testing import OracleBackbone, ToyConvBackbone, sd_ddpm_scheduler

V, F, H, W = 3, 4, 48, 64  # V != F, so a call's video length tells its axis


def small_inputs(num_views: int = V, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(num_views, F, H, W, 3, generator=generator)
    masks = torch.ones(num_views, F, H, W, dtype=torch.bool)
    for view in range(1, num_views):
        masks[view, :, 8:40, 10 : 10 + 8 * view] = False
        masks[view, :, :, W - 4 * view :] = False
    return images, masks


def timesteps(steps: int = 50, steps_offset: int = 1) -> list[int]:
    scheduler = sd_ddpm_scheduler(steps_offset)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


# ----------------------------------------------------------------------------- schedule
def test_stereo_schedule_alternates_axes_then_denoises_only_the_target_eye():
    plan = plan_schedule(timesteps(), DiffusionConfig(), num_views=8, targets=[7])
    early = [step for step in plan if step.t > 500]
    late = [step for step in plan if step.t < 500]
    assert len(early) == 25 and len(late) == 25
    for step in early:
        assert step.denoise_views == tuple(range(8))
        assert [p.axis for p in step.resample] == [TIME, VIEW, TIME, VIEW_REVERSED, TIME, VIEW]
        assert all(p.views == tuple(range(8)) for p in step.resample)
    for step in late[:-1]:
        assert step.denoise_views == (7,)
        assert step.resample == (Pass(TIME, (7,)), Pass(TIME, (7,)))
    assert plan[-1].t == 1 and plan[-1].t_next is None and plan[-1].resample == ()
    assert all(step.reinject for step in plan)  # t > 0 throughout
    assert all(step.guidance == 7.5 for step in plan)


def test_middle2leftright_denoises_both_ends_late():
    plan = plan_schedule(timesteps(), DiffusionConfig(), num_views=8, targets=[0, 7])
    late = [step for step in plan if step.t < 500]
    assert all(step.denoise_views == (0, 7) for step in late)
    assert late[0].resample == (Pass(TIME, (0, 7)),) * 2


def test_timestep_500_itself_follows_the_reference():
    # With steps_offset 0 the schedule hits t = 500: the reference then denoises only the
    # targets (t > 500 is false) but still resamples R = 6 times (t < 500 is false).
    plan = plan_schedule(timesteps(50, 0), DiffusionConfig(), num_views=8, targets=[7])
    at_500 = next(step for step in plan if step.t == 500)
    assert at_500.denoise_views == (7,)
    assert at_500.resample == (Pass(TIME, (7,)),) * 6


def test_multiview_schedule_fixes_the_anchor_after_600():
    config = DiffusionConfig(multiview=True)
    assert config.is_multiview and config.effective_frame_matrix_end == 0
    plan = plan_schedule(timesteps(), config, num_views=8, targets=[7])
    everyone, others = tuple(range(8)), tuple(range(7))
    for step in plan:
        assert step.denoise_views == everyone
        if step.t_next is None:
            assert step.resample == ()
        elif step.t > 600:
            assert [p.axis for p in step.resample] == [TIME, VIEW, TIME, VIEW_REVERSED, TIME, VIEW]
        else:
            assert step.resample == (
                Pass(TIME, (7,)),
                Pass(TIME, (7,)),
                Pass(VIEW, everyone, hold=(7,)),
                Pass(VIEW_REVERSED, everyone, hold=(7,)),
                Pass(TIME, others),
                Pass(VIEW_REVERSED, everyone, hold=(7,)),
            )
    # frame_matrix_end <= 0 means multi-view mode too.
    assert DiffusionConfig(frame_matrix_end=0).is_multiview


def test_resample_zero_and_early_guidance():
    plan = plan_schedule(timesteps(10), DiffusionConfig(resample=0), num_views=4, targets=[3])
    assert all(step.resample == () for step in plan)
    config = DiffusionConfig(guidance_early=3.5, latent_threshold_early=0.2)
    plan = plan_schedule(timesteps(10), config, num_views=4, targets=[3])
    assert [step.guidance for step in plan] == [3.5 if step.t >= 500 else 7.5 for step in plan]
    assert [step.early for step in plan] == [step.t >= 500 for step in plan]


# ----------------------------------------------------------------------------- call counts
def test_call_counts_match_the_method_arithmetic():
    # METHOD.md section 5: with t > 500, V denoise videos, then R resamples of V (time) or F
    # (view) videos: 8 + 3 * 8 + 3 * 16 = 80 per step, about 2,000 per 16-frame clip.
    plan = plan_schedule(timesteps(), DiffusionConfig(), num_views=8, targets=[7])
    first = plan[0]
    assert first.num_videos(16) == 80
    assert first.num_calls(16, batch_budget=1) == 80
    assert first.num_calls(16, batch_budget=8) == 1 + 3 * 1 + 3 * 2
    assert first.num_calls(16, batch_budget=16) == 1 + 3 + 3
    late = next(step for step in plan if step.t < 500)
    assert late.num_videos(16) == 3  # denoise + R_late = 2 resamples of the target eye
    assert sum(step.num_videos(16) for step in plan) == 25 * 80 + 24 * 3 + 1 == 2073
    plan0 = plan_schedule(timesteps(50, 0), DiffusionConfig(), num_views=8, targets=[7])
    assert sum(step.num_videos(16) for step in plan0) == 24 * 80 + 7 + 24 * 3 + 1 == 2000


@pytest.mark.parametrize("batched", [False, True])
def test_executed_calls_follow_the_plan(batched):
    backbone = ToyConvBackbone()
    config = DiffusionConfig(steps=4, batched=batched, batch_budget=2, vae_batch=8)
    result = FrameMatrixSampler(backbone, config).sample(*small_inputs(), progress=False)
    per_call = 2 if batched else 1
    expected_calls = []
    for step in result.plan:
        for p in step.passes:
            count, length = p.num_videos(F), p.frames_per_video(F)
            for start in range(0, count, per_call):
                expected_calls.append((step.t, min(per_call, count - start), length))
    assert backbone.calls == expected_calls
    stats = result.stats
    assert stats.unet_calls == len(expected_calls)
    assert stats.unet_videos == sum(step.num_videos(F) for step in result.plan)
    assert [s.unet_calls for s in stats.per_step] == [
        step.num_calls(F, per_call) for step in result.plan
    ]
    round_trips = sum(len(step.denoise_views) for step in result.plan if step.reinject)
    assert stats.vae_round_trips == round_trips
    # VAE calls hold whole videos: 2 views x 4 frames batched, one view's 4 frames otherwise.
    frames_per_call = 8 if batched else 4
    assert max(backbone.decode_calls) == frames_per_call
    assert all(n % F == 0 for n in backbone.decode_calls + backbone.encode_calls)
    assert stats.vae_decode_calls == len(backbone.decode_calls)


# ----------------------------------------------------------------------------- batched == reference
@pytest.mark.parametrize(
    "config",
    [
        DiffusionConfig(steps=4, batch_budget=2, vae_batch=8, prompt="a horse"),
        DiffusionConfig(steps=4, batch_budget=16, vae_batch=64, multiview=True),
    ],
    ids=["stereo", "multiview"],
)
def test_batched_equals_one_by_one(config):
    backbone = ToyConvBackbone()
    images, masks = small_inputs()
    batched = FrameMatrixSampler(backbone, config).sample(images, masks, progress=False)
    single = FrameMatrixSampler(backbone, replace(config, batched=False)).sample(
        images, masks, progress=False
    )
    assert batched.stats.unet_calls < single.stats.unet_calls
    torch.testing.assert_close(batched.latents, single.latents, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.images, single.images, atol=1e-5, rtol=1e-5)
    # The result is not trivially the input: the network changed the holes.
    assert (batched.latents - batched.known_latents).abs().max() > 0.1


def test_seeded_runs_are_reproducible_and_seeds_matter():
    backbone = ToyConvBackbone()
    config = DiffusionConfig(steps=3)
    images, masks = small_inputs()
    first = FrameMatrixSampler(backbone, config).sample(images, masks, generator=5, progress=False)
    again = FrameMatrixSampler(backbone, config).sample(
        images, masks, generator=torch.Generator().manual_seed(5), progress=False
    )
    other = FrameMatrixSampler(backbone, config).sample(images, masks, generator=6, progress=False)
    assert torch.equal(first.latents, again.latents)
    assert (first.latents - other.latents).abs().max() > 1e-3
    # Without a generator the config's seed decides.
    by_config = FrameMatrixSampler(backbone, replace(config, seed=5)).sample(
        images, masks, progress=False
    )
    assert torch.equal(first.latents, by_config.latents)


def test_prompt_changes_the_result_and_empty_prompt_works():
    backbone = ToyConvBackbone()
    images, masks = small_inputs()
    empty = FrameMatrixSampler(backbone, DiffusionConfig(steps=3)).sample(
        images, masks, progress=False
    )
    prompted = FrameMatrixSampler(backbone, DiffusionConfig(steps=3, prompt="a horse")).sample(
        images, masks, progress=False
    )
    assert torch.isfinite(empty.latents).all()
    assert (empty.latents - prompted.latents).abs().max() > 1e-3


# ----------------------------------------------------------------------------- pass axes
@pytest.mark.parametrize(
    ("axis", "hold"), [(TIME, ()), (VIEW, ()), (VIEW_REVERSED, ()), (VIEW, (2,))]
)
def test_a_pass_feeds_each_axis_in_the_right_order(axis, hold):
    # At t = 1 the DDPM step lands exactly on the oracle's x0, whose frame k along the video's
    # own time axis is target + k. So a time pass gives target + frame, a view pass
    # target + view, a reversed view pass target + (V - 1 - view); held views are unchanged.
    target = torch.randn(4, 2, 2)
    backbone = OracleBackbone(target, frame_step=1.0)
    backbone.scheduler.set_timesteps(4)
    sampler = FrameMatrixSampler(backbone, DiffusionConfig(batch_budget=2))
    sampler._generator = torch.Generator().manual_seed(0)
    latents = torch.randn(V, 4, F, 2, 2)
    known = torch.zeros_like(latents)
    mask = torch.zeros(V, 1, F, 2, 2)
    step = StepPlan(0, 1, 0, (), False, (), 7.5, False)
    out = sampler._run_pass(latents, Pass(axis, tuple(range(V)), hold), step, known, mask, None, F)
    frame = torch.arange(F, dtype=torch.float32)[None, None, :, None, None]
    view = torch.arange(V, dtype=torch.float32)[:, None, None, None, None]
    if axis == TIME:
        expected = target[None, :, None] + frame + 0 * view
    elif axis == VIEW:
        expected = target[None, :, None] + view + 0 * frame
    else:
        expected = target[None, :, None] + (V - 1 - view) + 0 * frame
    expected = expected.expand(V, 4, F, 2, 2).clone()
    for held in hold:
        expected[held] = latents[held]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


# ------------------------------------------------------------- views, progress, config
def test_select_views_keeps_ends_and_source():
    assert select_views(8, None, 0) == list(range(8))
    assert select_views(8, 4, 0) == [0, 2, 5, 7]
    assert select_views(8, 4, 4) == [0, 2, 4, 7]
    assert select_views(8, 2, 4) == [0, 4, 7]
    assert select_views(5, 8, 0) == [0, 1, 2, 3, 4]


def test_view_subset_maps_back_to_matrix_views():
    backbone = ToyConvBackbone()
    images, masks = small_inputs(num_views=5)
    config = DiffusionConfig(steps=2, views=3)
    result = FrameMatrixSampler(backbone, config).sample(images, masks, progress=False)
    assert result.matrix_views == [0, 2, 4]
    assert result.output_views == [0, 4] and result.right_view == 4
    assert result.latents.shape[0] == 3
    assert all(length in (F, 3) for _, _, length in backbone.calls)


def test_callback_and_progress():
    seen = []
    backbone = ToyConvBackbone()
    FrameMatrixSampler(backbone, DiffusionConfig(steps=3)).sample(
        *small_inputs(), progress=True, callback=lambda i, n: seen.append((i, n))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_bad_inputs_raise_one_line_errors():
    backbone = ToyConvBackbone()
    sampler = FrameMatrixSampler(backbone, DiffusionConfig(steps=2))
    images, masks = small_inputs()
    with pytest.raises(ShapeError, match="multiples"):
        sampler.sample(images[:, :, :44], masks[:, :, :44], progress=False)
    with pytest.raises(ShapeError, match="masks"):
        sampler.sample(images, masks[:, :2], progress=False)
    with pytest.raises(InputError, match="without masks"):
        sampler.sample(images, progress=False)
    with pytest.raises(InputError, match="mode"):
        sampler.sample(images, masks, mode="up2down", progress=False)


def test_presets_and_config_validation():
    assert set(PRESETS) == {"paper", "fast", "draft"}
    paper = DiffusionConfig.from_preset("paper")
    assert paper == DiffusionConfig()
    assert (paper.steps, paper.guidance, paper.resample, paper.resample_late) == (50, 7.5, 6, 2)
    assert paper.negative_prompt == "low-quality, blurry, flickering, ghost"
    fast = DiffusionConfig.from_preset("fast", steps=30)
    assert fast.views == 4 and fast.steps == 30 and fast.resample == 2
    for name in PRESETS:
        preset = DiffusionConfig.from_preset(name)
        plan = plan_schedule(
            timesteps(preset.steps),
            preset,
            num_views=preset.views or 8,
            targets=[(preset.views or 8) - 1],
        )
        assert any(p.axis == VIEW for step in plan for p in step.resample), name
    with pytest.raises(InputError, match="unknown preset"):
        DiffusionConfig.from_preset("slow")
    with pytest.raises(InputError, match="unknown option"):
        DiffusionConfig.from_preset("fast", stepz=3)
    with pytest.raises(InputError, match="decoder"):
        DiffusionConfig(decoder="vqgan")
    with pytest.raises(InputError, match="soft_mask"):
        DiffusionConfig(soft_mask=4)
    with pytest.raises(InputError, match="latent_threshold"):
        DiffusionConfig(latent_threshold=1.5)


def test_toy_backbones_satisfy_the_protocol_and_temporal_decoders_get_the_video_length():
    from framematrix.fill.diffusion.backbone import VideoBackbone

    class TemporalDecoder(ToyConvBackbone):
        def __init__(self):
            super().__init__()
            self.lengths = []

        def decode(self, latents, num_frames=None):
            self.lengths.append((int(latents.shape[0]), num_frames))
            return super().decode(latents)

    backbone = TemporalDecoder()
    assert isinstance(backbone, VideoBackbone)
    assert isinstance(OracleBackbone(torch.zeros(4, 2, 2)), VideoBackbone)
    FrameMatrixSampler(backbone, DiffusionConfig(steps=2, vae_batch=8)).sample(
        *small_inputs(), progress=False
    )
    assert backbone.lengths and all(
        n == F and n_frames % F == 0 for n_frames, n in backbone.lengths
    )
