"""The one device and dtype resolver of framematrix (torch imported only when called).

Devices: ``auto`` or None = the first CUDA device when there is one, else the CPU; anything
else is given to ``torch.device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
Dtypes: ``auto`` or None = float16 on CUDA, float32 elsewhere (fp16 convolutions on the CPU are
slow or missing); ``fp32``/``float32``, ``fp16``/``float16``/``half``, ``bf16``/``bfloat16``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DTYPE_NAMES: dict[str, str] = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def resolve_device(device: Any = None) -> torch.device:
    """A torch device from ``auto``/None/a name/a torch device."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """A torch dtype from ``auto``/None/a name/a torch dtype, for computing on ``device``."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPE_NAMES:
        raise ValueError(
            f"unknown dtype {dtype!r}; choose auto, fp32, fp16, bf16 (or float32, float16,"
            " bfloat16)"
        )
    return getattr(torch, DTYPE_NAMES[dtype])
