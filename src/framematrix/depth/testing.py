"""Depth Anything networks built from a configuration with random weights (tests, benchmarks).

No weights can be downloaded on the development machines, so the real loading code is exercised
on tiny models saved with save_pretrained and loaded back offline, and speed is measured on
full-size architectures with random weights.
"""

from __future__ import annotations

from pathlib import Path

# Architecture of each published checkpoint: (hidden size, layers, heads, v1 out_indices,
# v2 out_indices, neck sizes, fusion size). v1 small/base take the last four ViT blocks, v2
# (and both large models) take evenly spaced ones.
_ARCHITECTURES: dict[str, tuple[int, int, int, list[int], list[int], list[int], int]] = {
    "small": (384, 12, 6, [9, 10, 11, 12], [3, 6, 9, 12], [48, 96, 192, 384], 64),
    "base": (768, 12, 12, [9, 10, 11, 12], [3, 6, 9, 12], [96, 192, 384, 768], 128),
    "large": (1024, 24, 16, [5, 12, 18, 24], [5, 12, 18, 24], [256, 512, 1024, 1024], 256),
}


def depth_anything_config(variant: str = "v1-large"):
    """transformers DepthAnythingConfig of a published checkpoint's architecture.

    variant: ``v1-small`` ... ``v2-large``. Returns a DepthAnythingConfig (random-weight models
    built from it have the real size and speed).
    """
    from transformers import DepthAnythingConfig, Dinov2Config

    version, _, size = variant.partition("-")
    if version not in ("v1", "v2") or size not in _ARCHITECTURES:
        raise ValueError(f"unknown Depth Anything variant {variant!r} (v1-small ... v2-large)")
    hidden, layers, heads, v1_out, v2_out, neck, fusion = _ARCHITECTURES[size]
    backbone = Dinov2Config(
        image_size=518,
        patch_size=14,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        out_indices=v1_out if version == "v1" else v2_out,
        reshape_hidden_states=False,
        layerscale_value=1.0,
        mlp_ratio=4,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=hidden,
        neck_hidden_sizes=neck,
        fusion_hidden_size=fusion,
        patch_size=14,
    )


def tiny_depth_anything_config(version: str = "v2"):
    """A Depth Anything config small enough for unit tests (well under 1 M parameters)."""
    from transformers import DepthAnythingConfig, Dinov2Config

    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    # v1 takes the last four blocks, v2 evenly spaced ones, as the published models do.
    layers, out_indices = (4, [1, 2, 3, 4]) if version == "v1" else (8, [2, 4, 6, 8])
    backbone = Dinov2Config(
        image_size=518,
        patch_size=14,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        out_indices=out_indices,
        reshape_hidden_states=False,
        # Larger than the real 0.02 so the untrained head gives varied, non-zero depth.
        initializer_range=0.2,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
        initializer_range=0.2,
    )


def make_tiny_depth_model(folder: str | Path, version: str = "v2", seed: int = 0) -> Path:
    """Save a tiny random-weight Depth Anything (v1 or v2 layout) in transformers format.

    folder: created if missing; it then holds config.json and model.safetensors and loads with
    ``load_depth_model(folder)`` offline. Returns the folder as a Path.
    """
    import torch
    from transformers import DepthAnythingForDepthEstimation

    folder = Path(folder)
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(tiny_depth_anything_config(version)).eval()
    model.save_pretrained(folder)
    return folder
