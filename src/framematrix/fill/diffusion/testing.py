"""Stand-in backbones for testing the frame-matrix sampler without a real model.

Both implement :class:`~framematrix.fill.diffusion.backbone.VideoBackbone` on tiny latents:

- :class:`OracleBackbone` predicts the exact noise of a fixed clean target, so the DDPM step's
  x0 prediction *is* the target and a correct sampler must return it in the holes;
- :class:`ToyConvBackbone` is a small deterministic random 3-D convolution "network" whose
  output depends on frame order (an asymmetric temporal kernel) and on the prompt; it is
  batch-invariant, for comparing batched and one-by-one execution.

Their VAE is :class:`PoolVAE`: encode = ``d x d`` average pooling and a fixed 3 -> C linear map;
decode = the map's pseudo-inverse and nearest upsampling. It is deterministic (the generator is
ignored) and ``encode(decode(z)) == z`` for latents in the map's range.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler


def sd_ddpm_scheduler(steps_offset: int = 1) -> DDPMScheduler:
    """A DDPM scheduler with Stable Diffusion's (and zeroscope's) noise schedule:
    1000 steps, scaled-linear betas 0.00085..0.012, epsilon prediction, no clipping."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type="epsilon",
        steps_offset=steps_offset,
    )


class PoolVAE:
    """Deterministic toy VAE: ``[N, 3, H, W]`` in [-1, 1] <-> ``[N, C, H/d, W/d]``."""

    def __init__(self, latent_channels: int = 4, downscale: int = 8, seed: int = 0) -> None:
        generator = torch.Generator("cpu").manual_seed(seed)
        self.latent_channels = latent_channels
        self.downscale = downscale
        # 3 -> C map with full column rank, so decode(encode(img)) = nearest(avg_pool(img)).
        mix = torch.randn(latent_channels, 3, generator=generator, dtype=torch.float64)
        mix[:3] += 2 * torch.eye(3, dtype=torch.float64)
        self.mix = mix.float()
        self.unmix = torch.linalg.pinv(mix).float()
        self.encode_calls: list[int] = []
        self.decode_calls: list[int] = []

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        self.encode_calls.append(int(images.shape[0]))
        pooled = F.avg_pool2d(images.float(), self.downscale).double()
        # The channel mix in float64: results do not depend on how frames are batched.
        return torch.einsum("cr,nrhw->nchw", self.mix.double().to(images.device), pooled).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.decode_calls.append(int(latents.shape[0]))
        unmix = self.unmix.double().to(latents.device)
        rgb = torch.einsum("rc,nchw->nrhw", unmix, latents.double()).float()
        return F.interpolate(rgb, scale_factor=self.downscale, mode="nearest")


class _ToyBase(PoolVAE):
    def __init__(
        self,
        latent_channels: int,
        downscale: int,
        scheduler: Any | None,
        device: str | torch.device,
        seed: int,
    ) -> None:
        super().__init__(latent_channels, downscale, seed)
        self.scheduler = scheduler if scheduler is not None else sd_ddpm_scheduler()
        self.device = torch.device(device)
        self.dtype = torch.float32
        # (timestep, videos, frames per video) of every predict_noise call.
        self.calls: list[tuple[int, int, int]] = []

    def encode_prompt(self, prompt: str, negative_prompt: str) -> Any:
        return (prompt, negative_prompt)

    def _alpha_bar(self, timestep: int) -> float:
        return float(self.scheduler.alphas_cumprod[int(timestep)])


class OracleBackbone(_ToyBase):
    """Predicts the exact noise of a known clean video, so the sampler's x0 is that video.

    target: ``[C, h, w]`` clean latent; frame ``k`` of any video (of any length T) has the
    clean latent ``target + frame_step * (frame_offset + k)``. The noise of ``x_t`` is then
    ``(x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)``, whatever ``x_t`` is.

    frame_targets: optional ``[N, C, h, w]`` clean latent per absolute frame index; frame ``k``
        of a video is then ``frame_targets[(frame_offset + k) % N]`` (``target`` is unused).
    frame_offset: absolute index of frame 0 of the videos the oracle is called on (default 0).
        A caller denoising a long video window by window sets it to each window's first frame
        (e.g. from the ``build`` callable of :class:`~framematrix.fill.diffusion.windows.
        SeamlessFill`), so that every window is steered to the same per-frame target.
        View-axis passes (views as time) see the same ramp; the sampler's final step is a
        time-axis pass, so only the time axis decides the result.
    """

    def __init__(
        self,
        target: torch.Tensor,
        frame_step: float = 0.0,
        downscale: int = 8,
        scheduler: Any | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        frame_targets: torch.Tensor | None = None,
    ) -> None:
        super().__init__(int(target.shape[0]), downscale, scheduler, device, seed)
        self.target = target.float()
        self.frame_step = float(frame_step)
        if frame_targets is not None and (
            frame_targets.ndim != 4 or tuple(frame_targets.shape[1:]) != tuple(target.shape)
        ):
            raise ValueError(
                f"frame_targets must be [N, {', '.join(map(str, target.shape))}], "
                f"got {tuple(frame_targets.shape)}"
            )
        self.frame_targets = None if frame_targets is None else frame_targets.float()
        self.frame_offset = 0

    def clean_video(self, num_frames: int, start: int | None = None) -> torch.Tensor:
        """``[C, T, h, w]``: the clean video the oracle steers any T-frame video to, whose
        first frame has the absolute index ``start`` (default ``frame_offset``)."""
        first = self.frame_offset if start is None else int(start)
        index = first + torch.arange(num_frames)
        if self.frame_targets is not None:
            count = self.frame_targets.shape[0]
            return self.frame_targets[index % count].permute(1, 0, 2, 3)
        ramp = self.frame_step * index.to(torch.float32)
        return self.target[:, None] + ramp[None, :, None, None]

    def predict_noise(
        self, latents: torch.Tensor, timestep: int, cond: Any, guidance: float
    ) -> torch.Tensor:
        batch, _, frames = latents.shape[:3]
        self.calls.append((int(timestep), int(batch), int(frames)))
        alpha_bar = self._alpha_bar(timestep)
        clean = self.clean_video(frames).to(latents.device)[None]
        return (latents - alpha_bar**0.5 * clean) / (1 - alpha_bar) ** 0.5


class ToyConvBackbone(_ToyBase):
    """A deterministic random 3x3x3 convolution "denoiser" with classifier-free guidance.

    It predicts a clean video ``x0 = 2 tanh(conv(x) + bias(prompt))`` and returns the matching
    noise ``(x - sqrt(abar_t) x0) / sqrt(1 - abar_t)``, so the latents stay bounded. The
    conditional and unconditional prompts give two biases, mixed at the guidance scale. The
    temporal kernel is asymmetric: the order of frames (and of views on the view axis) changes
    the output.
    """

    def __init__(
        self,
        latent_channels: int = 4,
        downscale: int = 8,
        scheduler: Any | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(latent_channels, downscale, scheduler, device, seed)
        generator = torch.Generator("cpu").manual_seed(seed + 1)
        weight = torch.randn(latent_channels, latent_channels, 3, 3, 3, generator=generator)
        weight[:, :, 0] *= 3.0  # the previous frame weighs more than the next: order matters
        self.weight = (weight / (latent_channels * 27) ** 0.5).to(self.device)

    def _prompt_bias(self, text: str) -> torch.Tensor:
        seed = sum((i + 1) * ord(ch) for i, ch in enumerate(text)) % (2**31)
        generator = torch.Generator("cpu").manual_seed(seed)
        return 0.5 * torch.randn(self.latent_channels, generator=generator)

    def encode_prompt(self, prompt: str, negative_prompt: str) -> Any:
        return self._prompt_bias(prompt), self._prompt_bias(negative_prompt)

    def predict_noise(
        self, latents: torch.Tensor, timestep: int, cond: Any, guidance: float
    ) -> torch.Tensor:
        batch, _, frames = latents.shape[:3]
        self.calls.append((int(timestep), int(batch), int(frames)))
        text, negative = (c.to(latents.device)[None, :, None, None, None] for c in cond)
        # float64 inside: results do not depend on how videos are batched.
        sample = latents.double()
        features = F.conv3d(sample, self.weight.double(), padding=1)
        alpha_bar = self._alpha_bar(timestep)

        def noise_for(bias: torch.Tensor) -> torch.Tensor:
            clean = 2 * torch.tanh(features + bias.double())
            return (sample - alpha_bar**0.5 * clean) / (1 - alpha_bar) ** 0.5

        uncond = noise_for(negative)
        return (uncond + guidance * (noise_for(text) - uncond)).float()
