"""Optical flow between video frames: RAFT (torchvision) and OpenCV DIS.

Every estimator answers the same question: for each pixel x of image a, where is it in image b?
``flow(a, b)[n, y, x] = (dx, dy)`` in pixels, so that ``a[y, x] ~ b[y + dy, x + dx]``.

RAFT weights are never downloaded (this must work offline and must not hang): they come from an
explicit file (a torchvision state dict or an original RAFT release checkpoint such as
``raft-small.pth``) or from torchvision's own download cache when a file is already there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from framematrix.errors import InputError, ModelNotFoundError, ShapeError

logger = logging.getLogger(__name__)

FlowName = Literal["auto", "raft-small", "raft-large", "dis"]
FLOW_NAMES: tuple[str, ...] = ("auto", "raft-small", "raft-large", "dis")

# torchvision weight files, best first. C_T = trained on FlyingChairs + FlyingThings, the training
# of the original release checkpoints (the reference stabilises depth with raft-things.pth).
_TORCHVISION_WEIGHT_FILES: dict[str, tuple[str, ...]] = {
    "raft-small": ("raft_small_C_T_V2-01064c6d.pth", "raft_small_C_T_V1-ad48884c.pth"),
    "raft-large": (
        "raft_large_C_T_V1-22a6c225.pth",
        "raft_large_C_T_V2-1bb1363a.pth",
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "raft_large_C_T_SKHT_V1-0b8c9e55.pth",
        "raft_large_C_T_SKHT_K_V2-b5c70766.pth",
        "raft_large_C_T_SKHT_K_V1-4a6a5039.pth",
    ),
}
_TORCHVISION_URL = "https://download.pytorch.org/models/"
_RAFT_MIN_SIDE = 128


@runtime_checkable
class FlowEstimator(Protocol):
    """Dense optical flow from image a to image b.

    ``flow(img_a [N, H, W, 3] uint8 RGB, img_b [N, H, W, 3] uint8 RGB) -> [N, H, W, 2] float32``:
    per pixel of a, the (x, y) displacement in pixels to the same point in b.
    """

    name: str

    def flow(self, img_a: np.ndarray, img_b: np.ndarray) -> np.ndarray: ...


def _check_pair(img_a: np.ndarray, img_b: np.ndarray) -> None:
    for label, img in (("img_a", img_a), ("img_b", img_b)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 4:
            raise ShapeError(
                f"{label} must be a [N, H, W, 3] uint8 array, got "
                f"{getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}"
            )
        if img.shape[-1] != 3:
            raise ShapeError(f"{label} must have 3 RGB channels, got shape {img.shape}")
    if img_a.shape != img_b.shape:
        raise ShapeError(f"img_a {img_a.shape} and img_b {img_b.shape} differ in shape")


# --------------------------------------------------------------------------------------------
# OpenCV DIS
# --------------------------------------------------------------------------------------------

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DisFlow:
    """OpenCV's Dense Inverse Search flow on grayscale images (CPU, no weights needed).

    preset: ``medium`` (default), ``fast`` or ``ultrafast``.
    finest_scale: pyramid level of the finest patch search (0 = full resolution). The MEDIUM
        preset stops at level 1 (half resolution); 0 is slower and sharper at motion edges.
    """

    name = "dis"

    def __init__(self, preset: str = "medium", finest_scale: int | None = 0) -> None:
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose from {sorted(_DIS_PRESETS)}")
        self.preset = preset
        self.finest_scale = finest_scale

    def _make(self) -> cv2.DISOpticalFlow:
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[self.preset])
        if self.finest_scale is not None:
            dis.setFinestScale(int(self.finest_scale))
        return dis

    def flow(self, img_a: np.ndarray, img_b: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 x2 -> [N, H, W, 2] float32 flow from a to b in pixels."""
        _check_pair(img_a, img_b)
        dis = self._make()
        out = np.empty((*img_a.shape[:3], 2), np.float32)
        for i in range(img_a.shape[0]):
            gray_a = cv2.cvtColor(img_a[i], cv2.COLOR_RGB2GRAY)
            gray_b = cv2.cvtColor(img_b[i], cv2.COLOR_RGB2GRAY)
            out[i] = dis.calc(gray_a, gray_b, None)
        return out


# --------------------------------------------------------------------------------------------
# RAFT weights: original release checkpoints -> torchvision parameter names
# --------------------------------------------------------------------------------------------

# Regex renames, applied in order to each key (after dropping DataParallel's "module.").
_ENCODER_RULES: tuple[tuple[str, str], ...] = (
    (r"^fnet\.", "feature_encoder."),
    (r"^cnet\.", "context_encoder."),
    (r"^(feature_encoder|context_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(feature_encoder|context_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(feature_encoder|context_encoder)\.conv2\.", r"\1.conv."),
    (r"\.(layer\d\.\d)\.conv(\d)\.", r".\1.convnormrelu\2.0."),
)
_UPDATE_RULES: tuple[tuple[str, str], ...] = (
    (r"^update_block\.encoder\.", "update_block.motion_encoder."),
    (r"^update_block\.motion_encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.motion_encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.motion_encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
)


def _rename_original_raft_key(key: str, small: bool) -> str | None:
    """Torchvision name of one original-RAFT parameter, or None for a duplicate to drop."""
    for pattern, repl in _ENCODER_RULES:
        key = re.sub(pattern, repl, key)
    # Block norms: the original's downsample Sequential reuses the block's last norm module, so
    # its parameters are saved twice ("norm3" of ResidualBlock, "norm4" of BottleneckBlock, and
    # again as "downsample.1"); torchvision keeps only downsample.1.
    block_norm = re.search(r"\.(layer\d\.\d)\.norm(\d)\.", key)
    if block_norm:
        index = int(block_norm.group(2))
        if index == (4 if small else 3):
            return None
        key = key.replace(
            f".{block_norm.group(1)}.norm{index}.",
            f".{block_norm.group(1)}.convnormrelu{index}.1.",
        )
    for pattern, repl in _UPDATE_RULES:
        key = re.sub(pattern, repl, key)
    if small:
        key = re.sub(r"^update_block\.gru\.", "update_block.recurrent_block.convgru1.", key)
    else:
        key = re.sub(
            r"^update_block\.gru\.conv([zrq])(\d)\.",
            r"update_block.recurrent_block.convgru\2.conv\1.",
            key,
        )
    return key


def is_original_raft_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a checkpoint of the original RAFT release (keys ``fnet.``/``cnet.``...)."""
    return any(k.removeprefix("module.").startswith(("fnet.", "cnet.")) for k in state_dict)


def convert_original_raft_state_dict(
    state_dict: Mapping[str, torch.Tensor], small: bool
) -> dict[str, torch.Tensor]:
    """Rename an original RAFT release checkpoint to torchvision's ``raft_small``/``raft_large``.

    Handles the ``module.`` prefix of DataParallel checkpoints and drops the duplicated
    downsample norms. The result loads with ``strict=True``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = _rename_original_raft_key(key.removeprefix("module."), small)
        if new_key is not None:
            out[new_key] = value
    return out


def raft_architecture_of(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``raft-small`` or ``raft-large`` from the width of the feature encoder's first conv."""
    for key, value in state_dict.items():
        k = key.removeprefix("module.")
        if k in ("fnet.conv1.weight", "feature_encoder.convnormrelu.0.weight"):
            return "raft-small" if value.shape[0] == 32 else "raft-large"
    raise InputError(
        "not a RAFT checkpoint: no feature-encoder weights (fnet.conv1 / feature_encoder)"
    )


def torchvision_cached_raft_weights(name: str) -> Path | None:
    """Path of a torchvision RAFT weight file already in TORCH_HOME's hub cache, else None."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for filename in _TORCHVISION_WEIGHT_FILES[name]:
        path = checkpoints / filename
        if path.is_file():
            return path
    return None


def _missing_raft_weights_error(name: str) -> ModelNotFoundError:
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    first = _TORCHVISION_WEIGHT_FILES[name][0]
    return ModelNotFoundError(
        f"{name} optical-flow weights not found and torchvision cannot download them offline: "
        f"put {_TORCHVISION_URL}{first} in {checkpoints}/, or pass --flow-weights PATH "
        "(a torchvision .pth or an original RAFT checkpoint such as raft-small.pth), "
        "or use --flow dis"
    )


def _load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: optical-flow weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise InputError(f"{path}: cannot read as a torch checkpoint ({exc})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return dict(obj)


def load_raft(
    name: str = "raft-small", weights: str | Path | None = None
) -> tuple[torch.nn.Module, str, Path]:
    """Build torchvision's RAFT and load weights without any download.

    name: ``raft-small``, ``raft-large`` or ``auto`` (architecture read from ``weights``).
    weights: a torchvision state dict or an original RAFT release checkpoint; None = look in
        torchvision's download cache (TORCH_HOME) only.
    Returns (model in eval mode on CPU, architecture name, weights path).
    Raises ModelNotFoundError when no weights are available, InputError when they do not fit.
    """
    from torchvision.models.optical_flow import raft_large, raft_small

    if weights is None:
        if name == "auto":
            name = "raft-small"
        path = torchvision_cached_raft_weights(name)
        if path is None:
            raise _missing_raft_weights_error(name)
    else:
        path = Path(weights).expanduser()
    state_dict = _load_checkpoint(path)
    arch = raft_architecture_of(state_dict)
    if name == "auto":
        name = arch
    if arch != name:
        raise InputError(
            f"{path}: holds {arch} weights but {name} was asked for (use --flow {arch})"
        )
    if is_original_raft_state_dict(state_dict):
        state_dict = convert_original_raft_state_dict(state_dict, small=name == "raft-small")
    model = raft_small() if name == "raft-small" else raft_large()
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        summary = " ".join(str(exc).split())[:300]
        raise InputError(f"{path}: weights do not fit torchvision's {name}: {summary}") from exc
    return model.eval(), name, path


class RaftFlow:
    """RAFT optical flow (torchvision's implementation, original or torchvision weights).

    iters: refinement iterations (the reference uses 32). batch_size: pairs per forward.
    Images are normalised to [-1, 1], padded to multiples of 8 by edge replication (split evenly
    on both sides, as the original release's InputPadder does; also up to 128 px, the smallest
    side torchvision's RAFT accepts) and the flow is cropped back.

    RAFT-small (unlike RAFT-large) has no learned upsampler: its flow is estimated on a 1/8
    grid and upsampled bilinearly, so it is blurred across motion edges and thin structures.
    It is closer to the true motion than DIS on data with ground truth, but DIS (which fits
    brightness constancy at full resolution) leaves a lower photometric error after warping.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        name: str = "raft-small",
        device: str | torch.device | None = None,
        iters: int = 32,
        batch_size: int = 4,
        progress: bool = False,
    ) -> None:
        self.device = torch.device(device) if device is not None else _default_device()
        self.model = model.to(self.device).eval()
        self.name = name
        self.iters = int(iters)
        self.batch_size = max(1, int(batch_size))
        self.progress = progress

    def _to_input(self, img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(img).to(self.device).permute(0, 3, 1, 2).float()
        return x * (2.0 / 255.0) - 1.0

    @torch.inference_mode()
    def flow(self, img_a: np.ndarray, img_b: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 x2 -> [N, H, W, 2] float32 flow from a to b in pixels."""
        _check_pair(img_a, img_b)
        n, h, w = img_a.shape[:3]
        # torchvision's correlation pyramid needs sides of at least 128 px (16 feature cells).
        pad_h = max(h + (-h) % 8, _RAFT_MIN_SIDE) - h
        pad_w = max(w + (-w) % 8, _RAFT_MIN_SIDE) - w
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        out = np.empty((n, h, w, 2), np.float32)
        starts = range(0, n, self.batch_size)
        for start in tqdm(starts, desc=f"flow ({self.name})", disable=not self.progress):
            stop = min(n, start + self.batch_size)
            a = self._to_input(img_a[start:stop])
            b = self._to_input(img_b[start:stop])
            if pad_h or pad_w:
                a = F.pad(a, pad, mode="replicate")
                b = F.pad(b, pad, mode="replicate")
            flow = self.model(a, b, num_flow_updates=self.iters)[-1]
            flow = flow[:, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w]
            out[start:stop] = flow.permute(0, 2, 3, 1).float().cpu().numpy()
        return out


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_flow(
    name: str = "auto",
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    iters: int = 32,
    batch_size: int = 4,
    progress: bool = False,
) -> FlowEstimator:
    """Flow estimator by name.

    name: ``raft-small`` / ``raft-large`` (weights from ``weights`` or torchvision's cache, else
        ModelNotFoundError), ``dis`` (OpenCV, no weights), or ``auto``: RAFT when weights are
        available (architecture read from ``weights``; without it, RAFT-small from torchvision's
        cache), otherwise DIS with a logged warning that says how to get RAFT.
    """
    if name not in FLOW_NAMES:
        raise ValueError(f"unknown flow {name!r}; choose from {', '.join(FLOW_NAMES)}")
    if name == "dis":
        return DisFlow()
    if name == "auto" and weights is None and torchvision_cached_raft_weights("raft-small") is None:
        logger.warning(
            "RAFT-small weights not found (no --flow-weights, none in torchvision's cache %s): "
            "stabilising depth with OpenCV DIS flow instead; the paper uses RAFT",
            Path(torch.hub.get_dir()) / "checkpoints",
        )
        return DisFlow()
    model, arch, path = load_raft(name, weights)
    logger.info("optical flow: %s from %s", arch, path)
    return RaftFlow(
        model, arch, device=device, iters=iters, batch_size=batch_size, progress=progress
    )


def warp_nearest(source: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``source`` with nearest-neighbour sampling.

    source: [N, H, W, C] float; flow: [N, H, W, 2] float (x, y), target pixel -> source pixel.
    Returns (warped [N, H, W, C], valid [N, H, W] bool). A pixel is valid where its rounded
    sampling location lies inside the source; invalid pixels are 0 (as with zero padding).
    """
    n, h, w, c = source.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    # floor(x + 0.5): round half up, independent of the backend's tie-breaking.
    sx = torch.floor(xs + flow[..., 0] + 0.5).long()
    sy = torch.floor(ys + flow[..., 1] + 0.5).long()
    valid = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    index = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).view(n, h * w, 1).expand(-1, -1, c)
    warped = torch.gather(source.reshape(n, h * w, c), 1, index).view(n, h, w, c)
    warped = warped * valid.unsqueeze(-1).to(warped.dtype)
    return warped, valid
