"""Optical flow: RAFT weights (original release and torchvision), DIS, warping, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small

from conftest import shared_path
from framematrix.depth.flow import (
    DisFlow,
    RaftFlow,
    convert_original_raft_state_dict,
    load_raft,
    make_flow,
    warp_nearest,
)
from framematrix.errors import InputError, ModelNotFoundError, ShapeError


@pytest.fixture
def raft_small_checkpoint() -> Path:
    return shared_path("weights", "raft_small", "raft-small.pth")


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def _shifted_pair(h: int, w: int, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    big = _texture(h + 40, w + 40)
    a = big[20 : 20 + h, 20 : 20 + w]
    b = big[20 - dy : 20 - dy + h, 20 - dx : 20 - dx + w]  # b[y, x] = a[y - dy, x - dx]
    return a[None].copy(), b[None].copy()


# ------------------------------------------------------------------ weights


def test_original_small_checkpoint_loads_strict(raft_small_checkpoint):
    original = torch.load(raft_small_checkpoint, map_location="cpu", weights_only=True)
    model, arch, path = load_raft("raft-small", raft_small_checkpoint)
    assert arch == "raft-small" and path == raft_small_checkpoint
    loaded = model.state_dict()
    assert len(original) == len(loaded) == 106
    prefix = "update_block."
    pairs = {
        "module.fnet.conv1.weight": "feature_encoder.convnormrelu.0.weight",
        "module.cnet.layer2.0.conv3.bias": "context_encoder.layer2.0.convnormrelu3.0.bias",
        "module.fnet.layer3.0.downsample.0.weight": "feature_encoder.layer3.0.downsample.0.weight",
        "module.cnet.conv2.weight": "context_encoder.conv.weight",
        "module.update_block.encoder.convc1.weight": prefix + "motion_encoder.convcorr1.0.weight",
        "module.update_block.encoder.conv.bias": "update_block.motion_encoder.conv.0.bias",
        "module.update_block.gru.convr.weight": prefix + "recurrent_block.convgru1.convr.weight",
        "module.update_block.flow_head.conv2.weight": "update_block.flow_head.conv2.weight",
    }
    for old, new in pairs.items():
        torch.testing.assert_close(loaded[new], original[old], rtol=0, atol=0)
    # Every original tensor lands somewhere, unchanged.
    converted = convert_original_raft_state_dict(original, small=True)
    assert set(converted) == set(loaded)
    for key, value in converted.items():
        assert torch.equal(loaded[key], value), key


def test_architecture_is_read_from_weights(raft_small_checkpoint):
    assert load_raft("auto", raft_small_checkpoint)[1] == "raft-small"
    with pytest.raises(InputError, match="raft-small"):
        load_raft("raft-large", raft_small_checkpoint)


def _original_large_layout() -> list[str]:
    """Parameter names of the original RAFT (large) release, written from its module layout."""
    keys = []

    def conv(prefix):
        keys.extend([f"{prefix}.weight", f"{prefix}.bias"])

    def batchnorm(prefix):
        keys.extend(
            f"{prefix}.{n}"
            for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        )

    for enc, batch in (("fnet", False), ("cnet", True)):  # fnet: instance norm, no parameters
        conv(f"{enc}.conv1")
        if batch:
            batchnorm(f"{enc}.norm1")
        for layer in (1, 2, 3):
            for block in (0, 1):
                p = f"{enc}.layer{layer}.{block}"
                conv(f"{p}.conv1")
                conv(f"{p}.conv2")
                downsample = layer > 1 and block == 0
                if batch:
                    batchnorm(f"{p}.norm1")
                    batchnorm(f"{p}.norm2")
                    if downsample:
                        batchnorm(f"{p}.norm3")  # shared with downsample.1: saved twice
                if downsample:
                    conv(f"{p}.downsample.0")
                    if batch:
                        batchnorm(f"{p}.downsample.1")
        conv(f"{enc}.conv2")
    for name in ("convc1", "convc2", "convf1", "convf2", "conv"):
        conv(f"update_block.encoder.{name}")
    for gate in "zrq":
        for direction in (1, 2):
            conv(f"update_block.gru.conv{gate}{direction}")
    conv("update_block.flow_head.conv1")
    conv("update_block.flow_head.conv2")
    conv("update_block.mask.0")
    conv("update_block.mask.2")
    return ["module." + k for k in keys]


def test_original_large_layout_maps_onto_torchvision():
    fake = {k: torch.zeros(1) for k in _original_large_layout()}
    converted = convert_original_raft_state_dict(fake, small=False)
    assert set(converted) == set(raft_large().state_dict())


def test_torchvision_state_dict_file_loads(tmp_path):
    torch.manual_seed(0)
    reference = raft_small().state_dict()
    path = tmp_path / "raft_small_tv.pth"
    torch.save(reference, path)
    model, arch, _ = load_raft("raft-small", path)
    assert arch == "raft-small"
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_bad_weight_files(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_raft("raft-small", tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pth"):
        load_raft("raft-small", garbage)


def test_missing_weights_offline_error(empty_torch_hub):
    with pytest.raises(ModelNotFoundError) as info:
        make_flow("raft-small")
    message = str(info.value)
    assert "--flow-weights" in message and "--flow dis" in message
    assert "raft_small_C_T_V2-01064c6d.pth" in message and str(empty_torch_hub) in message
    assert "\n" not in message


def test_auto_falls_back_to_dis_with_a_warning(empty_torch_hub, caplog):
    with caplog.at_level(logging.WARNING, logger="framematrix.depth.flow"):
        flow = make_flow("auto")
    assert isinstance(flow, DisFlow)
    assert "RAFT-small weights not found" in caplog.text


def test_torchvision_cache_is_used(empty_torch_hub):
    torch.manual_seed(1)
    reference = raft_small().state_dict()
    cache = empty_torch_hub / "checkpoints"
    cache.mkdir()
    torch.save(reference, cache / "raft_small_C_T_V2-01064c6d.pth")
    flow = make_flow("auto", device="cpu")
    assert isinstance(flow, RaftFlow) and flow.name == "raft-small"
    weight = flow.model.state_dict()["update_block.flow_head.conv2.weight"]
    assert torch.equal(weight, reference["update_block.flow_head.conv2.weight"])


# ------------------------------------------------------------------ flow values


def test_dis_recovers_a_known_shift():
    a, b = _shifted_pair(96, 128, dx=3, dy=-2)
    flow = DisFlow().flow(a, b)
    assert flow.shape == (1, 96, 128, 2) and flow.dtype == np.float32
    centre = flow[0, 16:-16, 16:-16]
    np.testing.assert_allclose(np.median(centre.reshape(-1, 2), axis=0), [3, -2], atol=0.2)


def test_raft_recovers_a_known_shift_with_padding(raft_small_checkpoint):
    # 90 x 125 is not a multiple of 8: padded by replication, flow cropped back.
    a, b = _shifted_pair(90, 125, dx=-4, dy=3)
    model, arch, _ = load_raft("raft-small", raft_small_checkpoint)
    flow = RaftFlow(model, arch, device="cpu", iters=8).flow(a, b)
    assert flow.shape == (1, 90, 125, 2) and flow.dtype == np.float32
    centre = flow[0, 16:-16, 16:-16]
    np.testing.assert_allclose(np.median(centre.reshape(-1, 2), axis=0), [-4, 3], atol=0.2)


def test_flow_input_checks():
    a = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ShapeError):
        DisFlow().flow(a, np.zeros((1, 16, 17, 3), np.uint8))
    with pytest.raises(ShapeError):
        DisFlow().flow(a.astype(np.float32), a)
    with pytest.raises(ValueError):
        make_flow("farneback")


def test_warp_nearest_shift_and_validity():
    source = torch.arange(12, dtype=torch.float32).view(1, 3, 4, 1)
    flow = torch.zeros(1, 3, 4, 2)
    flow[..., 0] = 1.4  # rounds to one pixel right
    warped, valid = warp_nearest(source, flow)
    assert valid[0, :, :3].all() and not valid[0, :, 3].any()
    torch.testing.assert_close(warped[0, :, :3, 0], source[0, :, 1:, 0])
    assert (warped[0, :, 3] == 0).all()
    flow[..., 0] = 0.5  # ties round up, consistently
    warped, valid = warp_nearest(source, flow)
    torch.testing.assert_close(warped[0, :, :3, 0], source[0, :, 1:, 0])


def _photometric_error(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> float:
    """Mean |a - b warped to a| over valid pixels (0..255, mean over channels)."""
    warped, valid = warp_nearest(torch.from_numpy(b).float(), torch.from_numpy(flow))
    diff = (torch.from_numpy(a).float() - warped).abs().mean(-1)
    return float(diff[valid].mean())


@pytest.mark.slow  # RAFT-small, 32 iterations, two 512x218 pairs: 10-30 s on 2 busy CPU cores
def test_sintel_raft_small_beats_zero_flow_and_agrees_with_dis(raft_small_checkpoint):
    folder = shared_path("data", "flow", "sintel_demo_frames")
    # Half resolution (512 x 218) and two pairs keep RAFT's CPU time to a few seconds.
    frames = [
        cv2.resize(
            cv2.imread(str(folder / f"frame_{i:04d}.png"))[:, :, ::-1],
            (512, 218),
            interpolation=cv2.INTER_AREA,
        )
        for i in (16, 17, 20, 21)
    ]
    a = np.stack(frames[0::2])
    b = np.stack(frames[1::2])
    model, arch, _ = load_raft("raft-small", raft_small_checkpoint)
    raft = RaftFlow(model, arch, device="cpu", iters=32).flow(a, b)
    dis = DisFlow().flow(a, b)
    zero_err = _photometric_error(a, b, np.zeros_like(raft))
    raft_err = _photometric_error(a, b, raft)
    dis_err = _photometric_error(a, b, dis)
    print(f"photometric error: zero {zero_err:.2f}, RAFT-small {raft_err:.2f}, DIS {dis_err:.2f}")
    assert raft_err < 0.6 * zero_err
    assert dis_err < 0.6 * zero_err
    # Two unrelated methods agreeing to a fraction of a pixel on most pixels is what correct
    # weights give; a mis-mapped checkpoint gives garbage flow.
    disagreement = np.linalg.norm(raft - dis, axis=-1)
    assert np.median(disagreement) < 0.5
