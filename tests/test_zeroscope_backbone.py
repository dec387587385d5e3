"""The zeroscope adapter on tiny random models in the real on-disk layout, loaded offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from framematrix.errors import ModelNotFoundError, ShapeError
from framematrix.fill.diffusion.backbone import VideoBackbone
from framematrix.fill.diffusion.tiny import make_tiny_svd_vae, make_tiny_zeroscope
from framematrix.fill.diffusion.zeroscope import ZEROSCOPE_ID, ZeroscopeBackbone


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return make_tiny_zeroscope(tmp_path_factory.mktemp("zeroscope") / "tiny", seed=0)


@pytest.fixture(scope="module")
def svd_folder(tmp_path_factory) -> Path:
    return make_tiny_svd_vae(tmp_path_factory.mktemp("svd") / "svd", seed=0)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def backbone(tiny_folder) -> ZeroscopeBackbone:
    return ZeroscopeBackbone.from_pretrained(tiny_folder, device="cpu", dtype="fp32")


def test_loads_from_folder_with_real_layout(tiny_folder, backbone):
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_folder / sub).is_dir()
    assert isinstance(backbone, VideoBackbone)
    assert backbone.latent_channels == 4 and backbone.downscale == 8
    assert backbone.scaling_factor == pytest.approx(0.18215)
    scheduler = backbone.scheduler
    assert type(scheduler).__name__ == "DDPMScheduler"
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert float(scheduler.betas[0]) == pytest.approx(0.00085, rel=1e-4)
    assert float(scheduler.betas[-1]) == pytest.approx(0.012, rel=1e-4)
    kinds = {type(p).__name__ for p in backbone.unet.attn_processors.values()}
    assert kinds == {"AttnProcessor2_0"}  # fused SDPA in every attention


def test_shapes_and_dtypes(backbone):
    cond = backbone.encode_prompt("an astronaut riding a horse", "low-quality, blurry")
    assert cond.cond.shape == (1, 77, 32) and cond.uncond.shape == (1, 77, 32)
    assert not torch.allclose(cond.cond, cond.uncond)
    latents = torch.randn(3, 4, 5, 4, 6)
    eps = backbone.predict_noise(latents, 981, cond, 7.5)
    assert eps.shape == latents.shape and eps.dtype == torch.float32 and eps.isfinite().all()
    images = torch.rand(5, 3, 32, 48) * 2 - 1
    z = backbone.encode(images, torch.Generator().manual_seed(0))
    assert z.shape == (5, 4, 4, 6) and z.dtype == torch.float32
    # The posterior is sampled with the given generator: same seed, same latents.
    assert torch.equal(z, backbone.encode(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(z, backbone.encode(images, torch.Generator().manual_seed(1)))
    decoded = backbone.decode(z)
    assert decoded.shape == (5, 3, 32, 48) and decoded.dtype == torch.float32
    assert decoded.min() >= -1 and decoded.max() <= 1
    with pytest.raises(ShapeError):
        backbone.predict_noise(torch.randn(2, 3, 5, 4, 6), 981, cond, 7.5)
    with pytest.raises(ShapeError):
        backbone.encode(torch.rand(1, 3, 30, 48))


def test_vae_chunks_match_one_call(tiny_folder):
    whole = ZeroscopeBackbone.from_pretrained(tiny_folder, device="cpu", vae_batch=64)
    sliced = ZeroscopeBackbone.from_pretrained(tiny_folder, device="cpu", vae_batch=2)
    images = torch.rand(5, 3, 32, 48) * 2 - 1
    z_whole = whole.encode(images, torch.Generator().manual_seed(3))
    z_sliced = sliced.encode(images, torch.Generator().manual_seed(3))
    # Chunks draw the posterior noise in the same order from the same generator.
    assert torch.allclose(z_sliced, z_whole, atol=1e-5)
    mean = whole.vae.encode(images).latent_dist.mean * whole.scaling_factor
    assert not torch.allclose(z_whole, mean, atol=1e-3)  # a sample, not the mean
    assert torch.allclose(whole.decode(z_whole), sliced.decode(z_whole), atol=1e-5)


def test_bf16_model_returns_float32(tiny_folder):
    half = ZeroscopeBackbone.from_pretrained(tiny_folder, device="cpu", dtype="bf16")
    assert next(half.unet.parameters()).dtype == torch.bfloat16
    cond = half.encode_prompt("a horse", "")
    eps = half.predict_noise(torch.randn(1, 4, 3, 4, 4), 500, cond, 7.5)
    assert eps.dtype == torch.float32 and eps.isfinite().all()
    assert half.decode(torch.randn(2, 4, 4, 4)).dtype == torch.float32


def test_batched_cfg_equals_separate_calls(backbone):
    cond = backbone.encode_prompt("a horse on the moon", "low-quality, blurry, flickering, ghost")
    latents = torch.randn(3, 4, 4, 4, 6, generator=torch.Generator().manual_seed(0))
    t, guidance = 741, 7.5
    batched = backbone.predict_noise(latents, t, cond, guidance)
    unet = backbone.unet
    expected = []
    with torch.no_grad():
        for video in latents:
            eps_u = unet(video[None], t, encoder_hidden_states=cond.uncond).sample
            eps_c = unet(video[None], t, encoder_hidden_states=cond.cond).sample
            expected.append(eps_u + guidance * (eps_c - eps_u))
    expected = torch.cat(expected)
    assert torch.allclose(batched, expected, atol=1e-4, rtol=1e-4)
    # Guidance matters (the test would not notice a swapped uncond/cond otherwise).
    assert not torch.allclose(batched, backbone.predict_noise(latents, t, cond, 1.0), atol=1e-3)
    # One video per call (the reference's order) gives the same numbers.
    backbone.unet_batch = 1
    try:
        one_by_one = backbone.predict_noise(latents, t, cond, guidance)
    finally:
        backbone.unet_batch = None
    assert torch.allclose(one_by_one, batched, atol=1e-4, rtol=1e-4)
    # Guidance 1 is the conditional prediction alone.
    with torch.no_grad():
        cond_only = unet(latents, t, encoder_hidden_states=cond.cond.expand(3, -1, -1)).sample
    assert torch.allclose(backbone.predict_noise(latents, t, cond, 1.0), cond_only, atol=1e-5)


def test_missing_model_raises_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError) as info:
        ZeroscopeBackbone.from_pretrained(ZEROSCOPE_ID, device="cpu")
    message = str(info.value)
    assert ZEROSCOPE_ID in message and "download" in message and "--model" in message
    assert "GB" in message and "\n" not in message
    with pytest.raises(ModelNotFoundError, match="no-such-folder"):
        ZeroscopeBackbone.from_pretrained(tmp_path / "no-such-folder", device="cpu")


def test_incomplete_folder_names_the_missing_part(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    for weights in (broken / "vae").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelNotFoundError, match="vae"):
        ZeroscopeBackbone.from_pretrained(broken, device="cpu")


def _fake_hf_cache(cache: Path, repo_id: str, source: Path, revision: str = "0" * 40) -> None:
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<hash>/...}."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    shutil.copytree(source, repo_dir / "snapshots" / revision)


def test_loads_hub_id_from_cache_offline(tiny_folder, svd_folder, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    _fake_hf_cache(cache, "framematrix-tests/tiny-zeroscope", tiny_folder)
    _fake_hf_cache(cache, "framematrix-tests/tiny-svd", svd_folder)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    backbone = ZeroscopeBackbone.from_pretrained(
        "framematrix-tests/tiny-zeroscope",
        decoder="svd",
        decoder_model="framematrix-tests/tiny-svd",
        device="cpu",
    )
    assert backbone.temporal_decoder
    with pytest.raises(ModelNotFoundError, match="framematrix-tests/absent"):
        ZeroscopeBackbone.from_pretrained("framematrix-tests/absent", device="cpu")


def test_svd_temporal_decoder_decodes_per_video(tiny_folder, svd_folder):
    backbone = ZeroscopeBackbone.from_pretrained(
        tiny_folder, decoder="svd", decoder_model=svd_folder, device="cpu"
    )
    assert type(backbone.vae).__name__ == "AutoencoderKLTemporalDecoder"
    assert backbone.downscale == 8 and backbone.latent_channels == 4
    images = torch.rand(6, 3, 32, 48) * 2 - 1
    z = backbone.encode(images, torch.Generator().manual_seed(0))
    assert z.shape == (6, 4, 4, 6)
    two_videos = backbone.decode(z, num_frames=3)
    assert two_videos.shape == (6, 3, 32, 48) and two_videos.dtype == torch.float32
    # Decoding per video: each video alone gives the same frames ...
    first = backbone.decode(z[:3], num_frames=3)
    assert torch.allclose(two_videos[:3], first, atol=1e-5)
    # ... whereas one 6-frame video mixes frames across the boundary (temporal layers at work).
    assert not torch.allclose(backbone.decode(z, num_frames=6)[:3], first, atol=1e-4)
    backbone.num_frames = 3
    assert torch.allclose(backbone.decode(z), two_videos, atol=1e-5)
    with pytest.raises(ShapeError):
        backbone.decode(z, num_frames=4)
    with pytest.raises(ModelNotFoundError, match="vae"):
        ZeroscopeBackbone.from_pretrained(
            tiny_folder, decoder="svd", decoder_model=tiny_folder / "unet", device="cpu"
        )
