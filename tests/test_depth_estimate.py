"""Depth Anything loading, preprocessing and estimation; the depth cache and compute_depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framematrix.depth import (
    DepthConfig,
    compute_depth,
    depth_cache_key,
    depth_input_size,
    estimate_depth,
    load_cached_depth,
    load_depth_model,
    preprocess,
    save_cached_depth,
)
from framematrix.depth import cache as cache_module
from framematrix.depth.config import resolve_dtype
from framematrix.depth.estimate import IMAGENET_MEAN, IMAGENET_STD
from framematrix.depth.testing import make_tiny_depth_model
from framematrix.errors import InputError, ModelNotFoundError, ShapeError


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 as the hub library sees it (its constant is read at import time)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_depth")
    return {v: str(make_tiny_depth_model(root / v, version=v)) for v in ("v1", "v2")}


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ the 518 / 14 resize rule


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # scale = 518 / shorter side; the longer side is rounded to the nearest multiple of 14
        ((320, 576), (518, 938)),  # 932.4 -> 66.6 patches -> 67
        ((576, 320), (938, 518)),
        ((333, 500), (518, 784)),  # 777.8 -> 55.6 -> 56
        ((1080, 1920), (518, 924)),  # 920.9 -> 65.8 -> 66
        ((100, 101), (518, 518)),  # 523.2 -> 37.4 -> 37
        ((518, 518), (518, 518)),
        ((400, 1000), (518, 1288)),  # 1295 -> 92.5 patches -> 92 (ties to even, like numpy)
        ((7, 3), (1204, 518)),  # 1208.7 -> 86.3 patches -> 86; tiny frames are scaled up
    ],
)
def test_input_size_rule(size, expected):
    got = depth_input_size(*size)
    assert got == expected
    assert got[0] % 14 == 0 and got[1] % 14 == 0
    assert min(got) >= 518


def test_preprocess_matches_reference_transform():
    cv2 = pytest.importorskip("cv2")
    frames = _frames(2, 333, 500)
    x = preprocess(frames)
    assert x.shape == (2, 3, 518, 784) and x.dtype == torch.float32
    # The release resizes float RGB in [0, 1] with OpenCV's bicubic, then normalises.
    ref = cv2.resize(frames[1] / 255.0, (784, 518), interpolation=cv2.INTER_CUBIC)
    ref = (ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    got = x[1].permute(1, 2, 0).numpy()
    assert np.abs(got - ref).max() < 2e-3


def test_preprocess_rejects_bad_frames():
    with pytest.raises(ShapeError):
        preprocess(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ShapeError):
        preprocess(np.zeros((32, 32, 3), np.uint8))


# ------------------------------------------------------------------ loading and estimation


@pytest.mark.parametrize(
    ("version", "size", "net_input"),
    [
        ("v1", (30, 30), (518, 518)),
        # 40x60: scale 12.95 -> 518 x 777 -> 55.5 patches -> ties to even -> 56 * 14 = 784
        ("v2", (40, 60), (518, 784)),
    ],
)
def test_tiny_model_loads_offline_and_estimates(tiny_models, offline, version, size, net_input):
    model = load_depth_model(tiny_models[version], device="cpu")
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    seen = []
    model.net.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(tuple(kw["pixel_values"].shape)), with_kwargs=True
    )
    frames = _frames(2, *size)
    depth = estimate_depth(frames, model, batch_size=2, progress=False)
    assert depth.shape == (2, *size) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and depth.min() >= 0 and depth.std() > 0
    assert seen == [(2, 3, *net_input)]
    if version == "v2":  # batching does not change the result
        single = estimate_depth(frames[1:], model, batch_size=1, progress=False)
        assert seen[1:] == [(1, 3, *net_input)]
        np.testing.assert_allclose(depth[1:], single, rtol=1e-4, atol=1e-4 * depth.max())


def test_v1_and_v2_layouts_differ(tiny_models):
    v1 = load_depth_model(tiny_models["v1"], device="cpu").net.config.backbone_config
    v2 = load_depth_model(tiny_models["v2"], device="cpu").net.config.backbone_config
    assert list(v1.out_indices) == [1, 2, 3, 4] and list(v2.out_indices) == [2, 4, 6, 8]


@pytest.mark.slow  # bf16 on a CPU without bf16 units is slow (about 7 s here)
def test_bf16_autocast_on_cpu_close_to_fp32(tiny_models):
    frames = _frames(1, 28, 28)
    fp32 = estimate_depth(
        frames, load_depth_model(tiny_models["v2"], "cpu", "fp32"), progress=False
    )
    bf16 = estimate_depth(
        frames, load_depth_model(tiny_models["v2"], "cpu", "bf16"), progress=False
    )
    assert np.abs(bf16 - fp32).mean() < 0.05 * np.abs(fp32).mean()


def test_missing_hub_model_names_id_cache_and_option(offline):
    from huggingface_hub import constants

    with pytest.raises(ModelNotFoundError) as info:
        load_depth_model("nobody-here/no-such-depth-model", device="cpu")
    message = str(info.value)
    assert "nobody-here/no-such-depth-model" in message
    assert str(constants.HF_HUB_CACHE) in message and "--depth-model" in message
    assert "\n" not in message


def test_alias_is_expanded_in_error(offline):
    with pytest.raises(ModelNotFoundError, match="LiheYoung/depth-anything-large-hf"):
        load_depth_model("v1-large", device="cpu")


def test_missing_or_wrong_local_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_depth_model(str(tmp_path / "absent" / "model"), device="cpu")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_depth_model(str(tmp_path), device="cpu")


def test_dtype_defaults():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("int8", torch.device("cpu"))


# ------------------------------------------------------------------ cache


def test_cache_roundtrip_is_atomic(tmp_path):
    depth = np.random.default_rng(0).random((3, 8, 10)).astype(np.float32)
    assert load_cached_depth(tmp_path, "abc") is None
    path = save_cached_depth(tmp_path, "abc", depth)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]
    np.testing.assert_array_equal(load_cached_depth(tmp_path, "abc"), depth)
    path.write_bytes(b"truncated")  # a broken entry is a miss, not a crash
    assert load_cached_depth(tmp_path, "abc") is None
    with pytest.raises(ValueError):
        save_cached_depth(tmp_path, "../escape", depth)


def test_cache_key_follows_content_and_settings(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"frames-A")
    key = depth_cache_key(clip, {"model": "v1-large"})
    assert key == depth_cache_key(clip, {"model": "v1-large"})
    assert key != depth_cache_key(clip, {"model": "v2-small"})
    clip.write_bytes(b"frames-B")
    assert key != depth_cache_key(clip, {"model": "v1-large"})
    with pytest.raises(InputError):
        depth_cache_key(tmp_path / "missing.mp4", {})


def test_compute_depth_reuses_cache(tiny_models, tmp_path, monkeypatch):
    frames = _frames(2, 28, 28, seed=3)
    frames[1:] = frames[0]  # static clip: the stabilisation's flow is trivial
    config = DepthConfig(model=tiny_models["v2"], device="cpu", flow="dis", guided_radius=4)
    calls = {"estimate": 0, "stabilize": 0}
    real_estimate, real_stabilize = cache_module.estimate_depth, cache_module.stabilize_depth

    def counting_estimate(*args, **kwargs):
        calls["estimate"] += 1
        return real_estimate(*args, **kwargs)

    def counting_stabilize(*args, **kwargs):
        calls["stabilize"] += 1
        return real_stabilize(*args, **kwargs)

    monkeypatch.setattr(cache_module, "estimate_depth", counting_estimate)
    monkeypatch.setattr(cache_module, "stabilize_depth", counting_stabilize)

    first = compute_depth(frames, config, cache_dir=tmp_path, input_id="clip", progress=False)
    assert first.shape == (2, 28, 28) and calls == {"estimate": 1, "stabilize": 1}
    again = compute_depth(frames, config, cache_dir=tmp_path, input_id="clip", progress=False)
    np.testing.assert_array_equal(first, again)
    assert calls == {"estimate": 1, "stabilize": 1}
    # Other stabilisation settings: the raw depth comes from the cache, only the filter reruns.
    other = DepthConfig(model=tiny_models["v2"], device="cpu", flow="dis", guided_radius=2)
    compute_depth(frames, other, cache_dir=tmp_path, input_id="clip", progress=False)
    assert calls == {"estimate": 1, "stabilize": 2}
    # Different frames never hit the cache.
    compute_depth(
        frames[:, ::-1].copy(), config, cache_dir=tmp_path, input_id="clip", progress=False
    )
    assert calls == {"estimate": 2, "stabilize": 3}
    # Without stabilisation the raw depth is returned (from the cache: same model settings).
    raw_config = DepthConfig(model=tiny_models["v2"], device="cpu", stabilize=False)
    raw = compute_depth(frames, raw_config, cache_dir=tmp_path, input_id="clip", progress=False)
    assert calls == {"estimate": 2, "stabilize": 3}
    assert raw.shape == first.shape and not np.array_equal(raw, first)


def test_config_validation():
    with pytest.raises(ValueError):
        DepthConfig(window=4)
    with pytest.raises(ValueError):
        DepthConfig(flow="farneback")
    assert DepthConfig().temporal_weights() == [0.25, 0.5, 0.25]
    assert DepthConfig(window=5).temporal_weights() == pytest.approx([0.1, 0.2, 0.4, 0.2, 0.1])
