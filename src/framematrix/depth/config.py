"""Settings of depth estimation and temporal stabilisation (METHOD.md sections 1 and 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from framematrix.device import resolve_device, resolve_dtype  # noqa: F401 - re-exported

# Short names of the Depth Anything checkpoints in Hugging Face transformers format.
DEPTH_MODEL_ALIASES: dict[str, str] = {
    "v1-small": "LiheYoung/depth-anything-small-hf",
    "v1-base": "LiheYoung/depth-anything-base-hf",
    "v1-large": "LiheYoung/depth-anything-large-hf",
    "v2-small": "depth-anything/Depth-Anything-V2-Small-hf",
    "v2-base": "depth-anything/Depth-Anything-V2-Base-hf",
    "v2-large": "depth-anything/Depth-Anything-V2-Large-hf",
}

DtypeName = Literal["auto", "fp32", "fp16", "bf16"]
FlowChoice = Literal["auto", "raft-small", "raft-large", "dis"]


def resolve_model_name(model: str) -> str:
    """Hugging Face id or local path of ``model`` (an alias such as ``v1-large`` is expanded)."""
    return DEPTH_MODEL_ALIASES.get(model, model)


@dataclass
class DepthConfig:
    """Depth estimation and stabilisation settings; defaults are the paper's.

    model: Depth Anything checkpoint: an alias (``v1-small|base|large``, ``v2-small|base|large``),
        a Hugging Face id, or a local folder in transformers format. The paper uses v1 ViT-L.
    input_size: the network input's shorter side is at least this (518 in Depth Anything).
    multiple: both input sides are multiples of this (the ViT patch size, 14).
    batch_size: frames per Depth Anything forward pass.
    device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``...
    dtype: compute precision of Depth Anything: ``auto`` (fp16 autocast on CUDA, fp32 on CPU),
        ``fp32``, ``fp16``, ``bf16``.
    allow_download: let a missing Depth Anything be fetched from the Hugging Face Hub; off by
        default, so a missing model stops at once with one line saying what to download.
    stabilize: run the temporal stabilisation of section 2.
    flow: optical flow of the stabilisation: ``raft-small``, ``raft-large``, ``dis`` (OpenCV),
        or ``auto`` = RAFT when weights are found (``flow_weights`` or torchvision's cache),
        else DIS with a warning. The reference uses RAFT (raft-things) with 32 iterations.
    flow_weights: RAFT weights file: a torchvision state dict or an original RAFT release
        checkpoint (``raft-small.pth``, ``raft-things.pth``). Never downloaded.
    raft_iters: RAFT refinement iterations (32 in the reference).
    flow_batch_size: frame pairs per RAFT forward pass.
    window: temporal window w (odd): frame t is averaged with t-(w-1)/2 .. t+(w-1)/2.
    rgb_threshold: a warped pixel is inconsistent where max over channels |RGB_t - RGB_warped|
        exceeds this (0..255 scale).
    depth_threshold: ... or where |D_t - D_warped| exceeds this times (max - min) of D_warped.
    weight_base: temporal weight of offset j from the centre is weight_base**|j| (normalised).
    guided_radius: radius of the guided filter (box of 2r+1).
    guided_eps: guided filter regularisation, in squared depth units (the guide is the raw depth
        map of frame t in its own units, as in the reference; see stabilize.py).
    """

    model: str = "v1-large"
    input_size: int = 518
    multiple: int = 14
    batch_size: int = 4
    device: str = "auto"
    dtype: DtypeName = "auto"
    allow_download: bool = False
    stabilize: bool = True
    flow: FlowChoice = "auto"
    flow_weights: str | Path | None = None
    raft_iters: int = 32
    flow_batch_size: int = 4
    window: int = 3
    rgb_threshold: float = 20.0
    depth_threshold: float = 0.5
    weight_base: float = 0.5
    guided_radius: int = 30
    guided_eps: float = 1e-4

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {self.window}")
        if self.input_size < self.multiple or self.multiple < 1:
            raise ValueError(
                f"input_size ({self.input_size}) must be >= multiple ({self.multiple}) >= 1"
            )
        if self.batch_size < 1 or self.flow_batch_size < 1 or self.raft_iters < 1:
            raise ValueError("batch_size, flow_batch_size and raft_iters must be >= 1")
        if self.flow not in ("auto", "raft-small", "raft-large", "dis"):
            raise ValueError(
                f"unknown flow {self.flow!r}; choose auto, raft-small, raft-large, dis"
            )
        if self.guided_radius < 0 or self.guided_eps <= 0:
            raise ValueError("guided_radius must be >= 0 and guided_eps > 0")
        if not 0 < self.weight_base <= 1:
            raise ValueError(f"weight_base must be in (0, 1], got {self.weight_base}")

    @property
    def model_name(self) -> str:
        """Hugging Face id or local path of the model (alias expanded)."""
        return resolve_model_name(self.model)

    def temporal_weights(self) -> list[float]:
        """Normalised weights of the window, oldest first (w=3, base 0.5: 0.25, 0.5, 0.25)."""
        half = (self.window - 1) // 2
        raw = [self.weight_base ** abs(j - half) for j in range(self.window)]
        total = sum(raw)
        return [k / total for k in raw]

    def to_dict(self) -> dict:
        """Plain dict of the settings (paths as strings), e.g. for a cache key or a log."""
        out = asdict(self)
        if out["flow_weights"] is not None:
            out["flow_weights"] = str(out["flow_weights"])
        return out
