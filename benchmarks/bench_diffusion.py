"""Speed of one denoising step of the frame matrix: the reference's order against ours.

Builds zeroscope_v2_576w's UNet3D at FULL size from its configuration (METHOD.md section 4,
1,411,233,860 parameters) with random weights, and runs the real sampler
(:class:`FrameMatrixSampler`) for two steps: the first step (t = 501 > frame_matrix_end) is the
expensive one -- every view denoised, re-injection (VAE decode + encode of every view), R = 6
resampling passes along time and the view axis. Its wall time is the figure.

- reference order: one video per UNet call (one CFG pair per call, as the reference issues
  them), one view's frames per VAE call, fp16 on GPU (fp32 on CPU);
- ours: batched UNet calls (``batch_budget`` videos, CFG batched inside), batched VAE calls,
  fused SDPA attention (both orders use it: diffusers picks torch SDPA by default), ``--dtype``
  (default: the reference's precision, so the speed-up is the execution order alone; try
  ``--dtype bf16``).

Every input shape is run once untimed before the timed run (warm-up).

The full-size run (8 views x 16 frames x 40x72 latents, SD2-size VAE) needs a GPU. On a CPU
use reduced sizes (the defaults there): ``--latent-size 8x8 --frames 4 --views 2`` and a tiny
VAE; one full-size UNet forward with CFG on 16 frames of 40x72 latents takes ~143 s on 2 CPU
cores. Timings are wall clock and noisy on a shared machine.

Usage::

    python3 benchmarks/bench_diffusion.py                      # CPU defaults, a few minutes
    python3 benchmarks/bench_diffusion.py --device cuda        # full size on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import torch

FULL_UNET = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    "up_block_types": ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "attention_head_dim": 64,
    "norm_num_groups": 32,
}
FULL_UNET_PARAMETERS = 1_411_233_860
# Stable Diffusion 2's AutoencoderKL (zeroscope's VAE).
FULL_VAE = {
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedBackbone:
    """Forwards to a backbone and adds up wall time spent in the UNet and the VAE."""

    def __init__(self, backbone: Any) -> None:
        self.inner = backbone
        self.latent_channels = backbone.latent_channels
        self.downscale = backbone.downscale
        self.scheduler = backbone.scheduler
        self.device = backbone.device
        self.dtype = backbone.dtype
        self.unet_seconds = 0.0
        self.vae_seconds = 0.0
        self.vae_seconds_before_steps = 0.0

    def _timed(self, kind: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        _sync(self.device)
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(self.device)
        setattr(self, kind, getattr(self, kind) + time.perf_counter() - started)
        return out

    def encode_prompt(self, prompt: str, negative_prompt: str) -> Any:
        # The sampler encodes the known latents of every view just before the prompt.
        self.vae_seconds_before_steps = self.vae_seconds
        return self.inner.encode_prompt(prompt, negative_prompt)

    def predict_noise(
        self, latents: torch.Tensor, timestep: int, cond: Any, guidance: float
    ) -> torch.Tensor:
        return self._timed(
            "unet_seconds", self.inner.predict_noise, latents, timestep, cond, guidance
        )

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self._timed("vae_seconds", self.inner.encode, images, generator)

    def decode(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        return self._timed("vae_seconds", self.inner.decode, latents, num_frames=num_frames)


def build_backbone(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
    """Full-size random UNet3D, a VAE (full SD2 size or the tiny one), a 1024-wide one-layer
    CLIP text encoder (the prompt is encoded once; its size does not matter for a step)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from framematrix.fill.diffusion.tiny import (
        ZEROSCOPE_SCHEDULER_CONFIG,
        tiny_vae_config,
        write_tiny_clip_tokenizer,
    )
    from framematrix.fill.diffusion.zeroscope import ZeroscopeBackbone

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_tiny_clip_tokenizer(folder))
    vocab_size = len(tokenizer)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device(device):
        unet = UNet3DConditionModel(**FULL_UNET).to(dtype)
        vae = AutoencoderKL(**(FULL_VAE if args.full_vae else tiny_vae_config())).to(dtype)
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocab_size,
                hidden_size=1024,
                intermediate_size=1024,
                num_hidden_layers=1,
                num_attention_heads=16,
                max_position_embeddings=77,
                bos_token_id=vocab_size - 2,
                eos_token_id=vocab_size - 1,
                pad_token_id=vocab_size - 1,
            )
        ).to(dtype)
    scheduler = DDPMScheduler.from_config(ZEROSCOPE_SCHEDULER_CONFIG)
    backbone = ZeroscopeBackbone(
        unet, vae, text, tokenizer, scheduler, device=device, dtype=dtype, vae_batch=args.vae_batch
    )
    print(f"built random models in {time.perf_counter() - started:.1f} s", flush=True)
    return backbone


def synthetic_matrix(views: int, frames: int, height: int, width: int) -> Any:
    """A left2right frame matrix with disocclusions growing with the baseline."""
    from framematrix.matrix import FrameMatrix

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(views, frames, height, width, 3, generator=gen)
    masks = torch.ones(views, frames, height, width, dtype=torch.bool)
    for view in range(1, views):
        band = max(8, (width // 6) * view // max(views - 1, 1))
        start = width // 3
        masks[view, :, :, start : start + band] = False
    offsets = torch.linspace(0, 0.08, views)
    return FrameMatrix(images * masks[..., None], masks, offsets, 0, "left2right")


def time_first_step(backbone: Any, matrix: Any, config: Any) -> dict[str, Any]:
    """Run the sampler for ``config.steps`` steps; wall time and UNet/VAE time of step 1."""
    from framematrix.fill.diffusion.sampler import FrameMatrixSampler

    timed = TimedBackbone(backbone)
    after_step: list[tuple[float, float]] = []

    def mark(step: int, total: int) -> None:
        after_step.append((timed.unet_seconds, timed.vae_seconds))

    result = FrameMatrixSampler(timed, config).sample(
        matrix, generator=0, progress=False, callback=mark
    )
    first = result.stats.per_step[0]
    return {
        "seconds": first.seconds,
        "unet_calls": first.unet_calls,
        "unet_videos": first.unet_videos,
        "vae_round_trips": first.vae_round_trips,
        "unet_seconds": after_step[0][0],
        "vae_seconds": after_step[0][1] - timed.vae_seconds_before_steps,
        "finite": bool(torch.isfinite(result.images).all()),
    }


def warm_up(backbone: Any, config: Any, views: int, frames: int, lat_h: int, lat_w: int) -> None:
    """Run every UNet and VAE input shape the timed step will use once, untimed: the first
    call of a shape (and the first after a dtype cast) pays for allocation and kernel set-up,
    20 s and more for the full UNet on a CPU."""
    cond = backbone.encode_prompt("warm-up", "")
    budget = config.batch_budget if config.batched else 1
    shapes = {(1, frames), (min(views, budget), frames), (min(frames, budget), views)}
    for count, length in sorted(shapes):
        latents = torch.randn(count, backbone.latent_channels, length, lat_h, lat_w)
        backbone.predict_noise(latents, 500, cond, 7.5)
    per_call = max(1, config.vae_batch // frames) if config.batched else 1
    for videos in sorted({1, min(views, per_call)}):
        images = torch.rand(videos * frames, 3, 8 * lat_h, 8 * lat_w) * 2 - 1
        backbone.decode(backbone.encode(images), num_frames=frames)
    _sync(backbone.device)


def estimate_clip_seconds(
    preset: str,
    views: int,
    frames: int,
    unet_per_frame: float,
    unet_per_frame_single: float,
    vae_per_frame: float,
) -> float:
    """Seconds for one clip of ``frames`` frames with the preset's schedule: UNet frames x the
    measured cost per frame (the one-video rate for passes with a single video), plus VAE
    frames of every round trip, the first encode and the last decode."""
    from diffusers import DDPMScheduler

    from framematrix.fill.diffusion.config import DiffusionConfig
    from framematrix.fill.diffusion.sampler import plan_schedule, select_views
    from framematrix.fill.diffusion.tiny import ZEROSCOPE_SCHEDULER_CONFIG

    config = DiffusionConfig.from_preset(preset)
    used = len(select_views(views, config.views, 0))
    scheduler = DDPMScheduler.from_config(ZEROSCOPE_SCHEDULER_CONFIG)
    scheduler.set_timesteps(config.steps)
    plan = plan_schedule([int(t) for t in scheduler.timesteps], config, used, [used - 1])
    seconds = 0.0
    for step in plan:
        for one_pass in step.passes:
            videos = one_pass.num_videos(frames)
            per_video = one_pass.frames_per_video(frames)
            rate = unet_per_frame if videos > 1 else unet_per_frame_single
            seconds += videos * per_video * rate
        if step.reinject:
            seconds += 2 * len(step.denoise_views) * frames * vae_per_frame
    outputs = 2
    seconds += (used + outputs) * frames * vae_per_frame
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, help="ours: bf16 | fp16 | fp32 (default: the reference's)"
    )
    parser.add_argument(
        "--ref-dtype", default=None, help="reference: default fp16 on GPU, fp32 on CPU"
    )
    parser.add_argument("--views", type=int, default=None, help="V (GPU default 8, CPU 2)")
    parser.add_argument("--frames", type=int, default=None, help="F (GPU default 16, CPU 4)")
    parser.add_argument(
        "--latent-size", default=None, help="h x w latents (GPU default 40x72, CPU 8x8)"
    )
    parser.add_argument("--resample", type=int, default=6, help="R of the first step")
    parser.add_argument("--batch-budget", type=int, default=16, help="ours: videos per call")
    parser.add_argument("--vae-batch", type=int, default=16, help="ours: frames per VAE call")
    parser.add_argument(
        "--full-vae", action="store_true", help="SD2-size VAE (default on GPU; tiny on CPU)"
    )
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per order (min kept)")
    args = parser.parse_args()
    from diffusers.utils import logging as diffusers_logging

    # Casting random modules with .to(dtype) is intended here; keep the output readable.
    diffusers_logging.set_verbosity_error()

    from framematrix.fill.diffusion.config import DiffusionConfig
    from framematrix.fill.diffusion.zeroscope import resolve_dtype

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    views = args.views or (8 if gpu else 2)
    frames = args.frames or (16 if gpu else 4)
    latent = args.latent_size or ("40x72" if gpu else "8x8")
    lat_h, lat_w = (int(v) for v in latent.lower().split("x"))
    if gpu and not args.full_vae and args.latent_size is None:
        args.full_vae = True
    ref_dtype = resolve_dtype(args.ref_dtype or ("fp16" if gpu else "fp32"), device)
    # Same precision by default, so that the speed-up measures the execution order alone.
    ours_dtype = resolve_dtype(args.dtype, device) if args.dtype else ref_dtype
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # random weights must not hit slow denormal paths
    else:
        torch.backends.cudnn.benchmark = True

    device_name = (
        torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"device: {device_name}")
    print(
        f"frame matrix: {views} views x {frames} frames, latents {lat_h}x{lat_w} "
        f"(images {8 * lat_h}x{8 * lat_w}), R = {args.resample}, "
        f"VAE: {'SD2 size' if args.full_vae else 'tiny'}"
    )
    backbone = build_backbone(args, device, ref_dtype)
    parameters = sum(p.numel() for p in backbone.unet.parameters())
    check = "OK" if parameters == FULL_UNET_PARAMETERS else f"expected {FULL_UNET_PARAMETERS:,}"
    print(f"UNet3D parameters: {parameters:,} ({check})")
    attention = {type(p).__name__ for p in backbone.unet.attn_processors.values()}
    print(f"attention processors: {sorted(attention)}")

    matrix = synthetic_matrix(views, frames, 8 * lat_h, 8 * lat_w)
    common = dict(
        prompt="An astronaut in full space suit riding a horse",
        steps=2,  # timesteps 501 and 1: step 1 is a full step with t > frame_matrix_end
        resample=args.resample,
        device=args.device,
    )
    results = {}
    runs = []
    if not args.skip_reference:
        runs.append(("reference", ref_dtype, DiffusionConfig(**common, batched=False)))
    runs.append(
        (
            "ours",
            ours_dtype,
            DiffusionConfig(
                **common, batched=True, batch_budget=args.batch_budget, vae_batch=args.vae_batch
            ),
        )
    )
    # Repeats interleave the orders, so that load from other processes hits both alike; the
    # fastest repeat of each order is reported.
    for repeat in range(args.repeat):
        for name, dtype, config in runs:
            for module in (backbone.unet, backbone.vae, backbone.text_encoder):
                module.to(dtype)
            backbone.dtype = dtype
            started = time.perf_counter()
            if repeat == 0 or len(runs) > 1 and ref_dtype != ours_dtype:
                warm_up(backbone, config, views, frames, lat_h, lat_w)
            stats = time_first_step(backbone, matrix, config)
            if name not in results or stats["seconds"] < results[name]["seconds"]:
                results[name] = stats
            print(
                f"{name:9s} {str(dtype).replace('torch.', ''):8s}: {stats['seconds']:.2f} s/step "
                f"({stats['unet_calls']} UNet calls, {stats['unet_videos']} videos, "
                f"{stats['vae_round_trips']} VAE round trips; UNet {stats['unet_seconds']:.2f} s, "
                f"VAE {stats['vae_seconds']:.2f} s; run {time.perf_counter() - started:.1f} s; "
                f"finite output: {stats['finite']})",
                flush=True,
            )
    if "reference" in results:
        speedup = results["reference"]["seconds"] / results["ours"]["seconds"]
        print(
            f"best of {args.repeat}: reference {results['reference']['seconds']:.2f} s/step, "
            f"ours {results['ours']['seconds']:.2f} s/step, speed-up {speedup:.2f}x"
        )

    # Per-frame costs measured in step 1. Passes with a single video (the late steps, where only
    # the target eye is denoised) cannot be batched: they cost what the reference order costs,
    # when both run in the same precision.
    print(f"estimated seconds per {frames}-frame clip at this size ({views}-view matrix):")
    step_frames = _step1_unet_frames(views, frames, args.resample)
    rates = {}
    for name, stats in results.items():
        vae_frames = 2 * views * frames  # decode + encode of every view
        rates[name] = (stats["unet_seconds"] / step_frames, stats["vae_seconds"] / vae_frames)
    for name, (unet_rate, vae_rate) in rates.items():
        single_rate = unet_rate
        if name == "ours" and "reference" in rates and ours_dtype == ref_dtype:
            single_rate = rates["reference"][0]
        line = []
        for preset in ("paper", "fast", "draft"):
            seconds = estimate_clip_seconds(preset, views, frames, unet_rate, single_rate, vae_rate)
            line.append(f"{preset} {seconds:,.0f} s")
        print(f"  {name:9s}: " + ", ".join(line))


def _step1_unet_frames(views: int, frames: int, resample: int) -> int:
    """UNet frames of the first (t > 500) step: V videos of F frames, then R passes that each
    cover the whole V x F matrix."""
    return views * frames * (1 + resample)


if __name__ == "__main__":
    main()
