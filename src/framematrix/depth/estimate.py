"""Per-frame relative inverse depth with Depth Anything (v1 or v2, transformers format).

Preprocessing follows the Depth Anything release used by the paper, not transformers' image
processor (whose keep-aspect rule shrinks 320x576 to 294x518): RGB in [0, 1], resized with
bicubic interpolation so the shorter side is at least 518 and both sides are multiples of 14,
ImageNet mean/std. The prediction is resized back to the frame size bilinearly.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from framematrix.depth.config import resolve_device, resolve_dtype, resolve_model_name
from framematrix.errors import ModelNotFoundError, ShapeError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DepthModel:
    """A loaded Depth Anything network with where and how it runs.

    net: ``DepthAnythingForDepthEstimation`` in eval mode, fp32 weights on ``device``.
    dtype: compute precision (fp16/bf16 run under autocast; fp32 runs plain).
    name: the Hugging Face id or local folder it came from.
    """

    net: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    name: str


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
    )


def _hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def load_depth_model(
    model_id_or_path: str = "v1-large",
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    local_files_only: bool | None = None,
) -> DepthModel:
    """Load Depth Anything (v1 or v2) from a Hugging Face id, an alias or a local folder.

    model_id_or_path: ``v1-large`` (paper), ``v2-small``... (see DEPTH_MODEL_ALIASES), a hub id
        such as ``LiheYoung/depth-anything-large-hf``, or a folder with config.json and weights
        in transformers format.
    device: ``auto`` = CUDA when available. dtype: ``auto`` = fp16 on CUDA, fp32 on CPU.
    local_files_only: never touch the network; default: True when HF_HUB_OFFLINE is set,
        otherwise the local cache is tried first and the hub only when it misses.
    Raises ModelNotFoundError (one line naming the model, the cache folder and --depth-model).
    """
    from transformers import DepthAnythingForDepthEstimation

    name = resolve_model_name(model_id_or_path)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        if not path.is_dir():
            raise ModelNotFoundError(
                f"depth model folder {path} not found (pass --depth-model PATH to a folder "
                "holding a transformers Depth Anything config.json and weights)"
            )
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} has no config.json: not a transformers Depth Anything folder "
                "(save one with save_pretrained or download an '-hf' checkpoint)"
            )
        source, attempts = str(path), (True,)
    else:
        offline = _hub_offline() if local_files_only is None else local_files_only
        source, attempts = name, ((True,) if offline else (True, False))

    net = None
    error: Exception | None = None
    for local_only in attempts:
        try:
            net = DepthAnythingForDepthEstimation.from_pretrained(
                source, local_files_only=local_only
            )
            break
        except (OSError, ValueError) as exc:  # hub misses surface as OSError subclasses
            error = exc
    if net is None:
        if source == name and not Path(source).exists():
            raise ModelNotFoundError(
                f"depth model '{name}' is not in the Hugging Face cache {_hub_cache_dir()}: "
                f"download it with `hf download {name}` (or let framematrix fetch it with "
                "--allow-download), or pass a local folder with --depth-model PATH"
            ) from error
        raise ModelNotFoundError(
            f"cannot load depth model from {source}: {' '.join(str(error).split())[:200]}"
        ) from error
    # fp32 weights whatever the checkpoint stores; fp16/bf16 run under autocast, which keeps
    # the layer norms and softmax in fp32.
    net = net.float().to(torch_device).eval()
    logger.info("depth model %s on %s (%s)", name, torch_device, torch_dtype)
    return DepthModel(net=net, device=torch_device, dtype=torch_dtype, name=name)


def depth_input_size(
    height: int, width: int, input_size: int = 518, multiple: int = 14
) -> tuple[int, int]:
    """Network input (height, width) for a frame: Depth Anything's keep-aspect lower-bound rule.

    scale = max(input_size / height, input_size / width); each scaled side is rounded to the
    nearest multiple (ties to even, like numpy), and raised to the next multiple if that falls
    below input_size. 320x576 -> 518x938, 1080x1920 -> 518x924.
    """
    if height < 1 or width < 1:
        raise ShapeError(f"frame size must be positive, got {height}x{width}")
    scale = max(input_size / height, input_size / width)

    def constrain(side: float) -> int:
        value = round(side / multiple) * multiple
        if value < input_size:
            value = math.ceil(side / multiple) * multiple
        return int(value)

    return constrain(scale * height), constrain(scale * width)


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ShapeError(
            "frames must be a [N, H, W, 3] uint8 array, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    if frames.shape[-1] != 3:
        raise ShapeError(f"frames must have 3 RGB channels, got shape {frames.shape}")


def preprocess(
    frames: np.ndarray,
    input_size: int = 518,
    multiple: int = 14,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Depth Anything input: [N, H, W, 3] uint8 RGB -> [N, 3, h, w] float32, ImageNet-normalised.

    (h, w) = depth_input_size(H, W): bicubic resize (a = -0.75, half-pixel centres, no
    antialiasing: the same kernel as OpenCV's INTER_CUBIC of the reference) of RGB in [0, 1].
    """
    _check_frames(frames)
    height, width = frames.shape[1:3]
    size = depth_input_size(height, width, input_size, multiple)
    x = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255.0
    if size != (height, width):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def estimate_depth(
    frames: np.ndarray,
    model: DepthModel,
    batch_size: int = 4,
    progress: bool = True,
    input_size: int = 518,
    multiple: int = 14,
) -> np.ndarray:
    """Relative inverse depth (large = near) per frame.

    frames: [F, H, W, 3] uint8 RGB. model: from load_depth_model.
    Returns [F, H, W] float32 >= 0 at frame resolution (the network output, computed at
    depth_input_size(H, W), resized back bilinearly with half-pixel centres).
    """
    _check_frames(frames)
    num_frames, height, width = frames.shape[:3]
    out = np.empty((num_frames, height, width), np.float32)
    batch_size = max(1, int(batch_size))
    starts = range(0, num_frames, batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="depth", disable=not progress):
            stop = min(num_frames, start + batch_size)
            pixels = preprocess(frames[start:stop], input_size, multiple, model.device)
            with _autocast(model.device, model.dtype):
                predicted = model.net(pixel_values=pixels).predicted_depth
            predicted = predicted.float().unsqueeze(1)
            predicted = F.interpolate(
                predicted, size=(height, width), mode="bilinear", align_corners=False
            )
            out[start:stop] = predicted[:, 0].cpu().numpy()
    return out
