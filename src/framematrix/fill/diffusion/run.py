"""The generative fill as the pipeline calls it: load, resize, sample, composite.

:func:`diffusion_fill` takes a frame matrix at any resolution, denoises it at the model's
resolution (576x320 for zeroscope) with the frame-matrix sampler, and puts the filled views back
at the input resolution: known pixels from the full-resolution warp, holes from the upsampled
generation, a feathered seam (:mod:`framematrix.fill.diffusion.composite`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from framematrix.fill.diffusion.composite import (
    MODEL_SIZE,
    composite_full_res,
    resize_matrix_to_model,
)
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.fill.diffusion.zeroscope import SVD_ID, ZeroscopeBackbone
from framematrix.matrix import FrameMatrix


def load_backbone(config: DiffusionConfig) -> ZeroscopeBackbone:
    """The zeroscope backbone named by ``config`` (``model``, ``decoder``, ``device``, ``dtype``,
    ``model_cpu_offload``, ``vae_slicing``, ``vae_batch``, ``decoder_model``,
    ``allow_download``), from local files only unless ``allow_download``.

    Raises:
        ModelNotFoundError: the weights are not on this machine (one line: what to download).
    """
    return ZeroscopeBackbone.from_pretrained(
        config.model,
        decoder=config.decoder,
        decoder_model=config.decoder_model or SVD_ID,
        allow_download=config.allow_download,
        device=config.device,
        dtype=config.dtype,
        offload=config.model_cpu_offload,
        # The sampler already splits its UNet calls by ``batch_budget`` videos.
        unet_batch=None,
        # Slicing = one frame per VAE call, as diffusers' enable_slicing does.
        vae_batch=1 if config.vae_slicing else config.vae_batch,
    )


def diffusion_fill(
    matrix: FrameMatrix,
    config: DiffusionConfig,
    backbone: ZeroscopeBackbone | None = None,
    progress: bool = True,
    model_size: tuple[int, int] = MODEL_SIZE,
    feather_px: int | None = None,
    *,
    generator: torch.Generator | int | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> FrameMatrix:
    """Fill the holes of ``matrix`` with the video diffusion model.

    matrix: ``[V, F, H, W, 3]`` float32 in [0, 1] with masks ``[V, F, H, W]`` (any H, W).
    config: sampler and model options; backbone: a loaded backbone (else :func:`load_backbone`).
    model_size: ``(height, width)`` the model denoises at (multiples of 8).
    generator: seed or CPU generator of the sampler's noise (default ``config.seed``);
    callback: ``callback(step, total)`` after each sampling step.
    Returns a matrix of the input's shape whose output views (the two eyes; in multi-view
    mode every view the sampler used, all of them unless ``config.views`` is set) are filled;
    other views are left as they were. Masks are unchanged (they still tell which pixels were
    warped).
    """
    from framematrix.fill.diffusion.sampler import FrameMatrixSampler

    if backbone is None:
        backbone = load_backbone(config)
    down = backbone.downscale
    if model_size[0] % down or model_size[1] % down:
        raise ValueError(f"model_size {model_size} must be a multiple of {down}")
    small = resize_matrix_to_model(matrix, model_size)
    # The temporal decoder decodes whole videos; tell it how long the videos are.
    backbone.num_frames = matrix.num_frames
    result = FrameMatrixSampler(backbone, config).sample(
        small,
        generator=config.seed if generator is None else generator,
        progress=progress,
        callback=callback,
    )

    images = matrix.images.clone()
    for view in result.output_views:
        generated = result.view_images(view).to(images.device, torch.float32)
        images[view] = composite_full_res(
            matrix.images[view], matrix.masks[view], generated, feather_px=feather_px
        )
    return matrix.with_images(images)
