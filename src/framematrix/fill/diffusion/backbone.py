"""The interface between the frame-matrix sampler and a video diffusion model.

The sampler (``sampler.py``) knows the schedule of METHOD.md section 4 and nothing about a
particular network; a backbone adapter (``zeroscope.py`` today) knows the network and nothing
about frame matrices. Any object with these members can be used by the sampler.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class VideoBackbone(Protocol):
    """A latent text-to-video diffusion model seen as four batched operations.

    Attributes:
        latent_channels: C, channels of the latent space (4 for zeroscope).
        downscale: spatial factor between pixels and latents (8 for zeroscope).
        scheduler: a diffusers ``DDPMScheduler`` (or compatible: ``alphas_cumprod``,
            ``betas``, ``set_timesteps``, ``timesteps``, ``step``, ``add_noise``).
        device, dtype: where and in which precision the network runs.
    """

    latent_channels: int
    downscale: int
    scheduler: Any
    device: torch.device
    dtype: torch.dtype

    def encode_prompt(self, prompt: str, negative_prompt: str) -> Any:
        """Text conditioning for classifier-free guidance (opaque to the sampler)."""
        ...

    def predict_noise(
        self, latents: torch.Tensor, timestep: int, cond: Any, guidance: float
    ) -> torch.Tensor:
        """Guided noise prediction.

        latents: ``[B, C, T, h, w]`` float32, B independent videos of T frames each.
        Returns ``[B, C, T, h, w]`` float32 eps, with classifier-free guidance at ``guidance``
        (the conditional and unconditional passes are run inside, batched).
        """
        ...

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[N, 3, H, W]`` float32 in [-1, 1] -> ``[N, C, H/8, W/8]`` scaled latents
        (a sample of the posterior times the VAE scaling factor)."""
        ...

    def decode(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """``[N, C, h, w]`` scaled latents -> ``[N, 3, 8h, 8w]`` float32 in [-1, 1].

        ``num_frames``: when given, the N latents are whole videos of that many frames each, in
        order (a temporal decoder such as Stable Video Diffusion's needs it); the sampler always
        passes whole videos.
        """
        ...
