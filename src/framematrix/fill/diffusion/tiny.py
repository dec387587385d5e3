"""Tiny random models in the on-disk layout of the real ones, for tests and demos offline.

No video-diffusion weights exist on the build machines and none can be downloaded, so the real
loading code (:meth:`ZeroscopeBackbone.from_pretrained`) is exercised on folders written here:
the same classes, file names and configuration keys as ``cerspense/zeroscope_v2_576w`` and the
``vae/`` of ``stabilityai/stable-video-diffusion-img2vid-xt``, with a few thousand random
parameters instead of 1.4 billion trained ones. Outputs are noise, but every shape, the 8x
latent downscale, the noise schedule and the text pipeline are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# zeroscope's scheduler/scheduler_config.json (inherited from ModelScope text-to-video-ms-1.7b).
ZEROSCOPE_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.15.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "thresholding": False,
    "trained_betas": None,
}

_MODEL_INDEX = {
    "_class_name": "TextToVideoSDPipeline",
    "_diffusers_version": "0.17.0",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet3DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

TINY_TEXT_WIDTH = 32
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# A handful of merges so that common prompt words become multi-character tokens.
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "o r", "s e", "r i", "n g</w>", "i n", "in g</w>"]


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2 / CLIP)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def write_tiny_clip_tokenizer(folder: str | Path) -> Path:
    """Write a CLIP BPE tokenizer (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``,
    ``special_tokens_map.json``) with a byte-level vocabulary of ~530 tokens into ``folder``.

    Every string can be tokenised (each byte has a token); 77 positions, as in CLIP.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for symbol in alphabet + [s + "</w>" for s in alphabet]:
        vocab[symbol] = len(vocab)
    for merge in _MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab[_BOS] = len(vocab)
    vocab[_EOS] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8"
    )
    special = {"bos_token": _BOS, "eos_token": _EOS, "unk_token": _EOS, "pad_token": _EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, **special}, indent=2))
    return folder


def tiny_unet3d_config() -> dict:
    """A UNet3DConditionModel configuration with zeroscope's block types at a tiny width.

    Unlike zeroscope, the spatial attention sits one level down (and in the mid block): at full
    latent size (40x72 = 2880 tokens) it costs minutes per step on a CPU even at this width, and
    the tests need the block types, not their order.
    """
    return {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock3D", "CrossAttnDownBlock3D"),
        "up_block_types": ("CrossAttnUpBlock3D", "UpBlock3D"),
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "cross_attention_dim": TINY_TEXT_WIDTH,
        "attention_head_dim": 8,
    }


def tiny_vae_config() -> dict:
    """An AutoencoderKL configuration with 4 blocks (8x downscale) and 4 latent channels."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (4, 8, 8, 8),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 4,
        "sample_size": 64,
        "scaling_factor": 0.18215,
    }


def make_tiny_zeroscope(folder: str | Path, seed: int = 0) -> Path:
    """Write a random tiny model in the zeroscope_v2_576w layout to ``folder`` and return it.

    ``unet/`` (UNet3DConditionModel, 1.3 M parameters), ``vae/`` (AutoencoderKL, 8x
    downscale, 4 latent channels), ``text_encoder/`` (CLIPTextModel, width 32, 77 positions),
    ``tokenizer/`` (CLIP BPE), ``scheduler/`` (zeroscope's configuration) and
    ``model_index.json``. Deterministic for a given ``seed``; takes about a second.
    """
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = write_tiny_clip_tokenizer(folder / "tokenizer")
    vocab_size = len(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8")))

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        UNet3DConditionModel(**tiny_unet3d_config()).save_pretrained(folder / "unet")
        AutoencoderKL(**tiny_vae_config()).save_pretrained(folder / "vae")
        text_config = CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TINY_TEXT_WIDTH,
            intermediate_size=2 * TINY_TEXT_WIDTH,
            projection_dim=TINY_TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="gelu",
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
        CLIPTextModel(text_config).save_pretrained(folder / "text_encoder")
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(ZEROSCOPE_SCHEDULER_CONFIG, indent=2)
    )
    (folder / "model_index.json").write_text(json.dumps(_MODEL_INDEX, indent=2))
    return folder


def make_tiny_svd_vae(folder: str | Path, seed: int = 0) -> Path:
    """Write a random tiny ``AutoencoderKLTemporalDecoder`` to ``folder/vae`` (the layout of
    ``stabilityai/stable-video-diffusion-img2vid-xt``) and return ``folder``.

    8x downscale, 4 latent channels; widths of 32 because its decoder's group norms have 32
    groups.
    """
    from diffusers import AutoencoderKLTemporalDecoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vae = AutoencoderKLTemporalDecoder(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            block_out_channels=(32, 32, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            sample_size=64,
            scaling_factor=0.18215,
        )
        vae.save_pretrained(folder / "vae")
    return folder
