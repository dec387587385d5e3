"""Temporal stabilisation of per-frame depth (METHOD.md section 2) and a flicker measure.

For every frame t, the depth maps of its neighbours in a temporal window are backward-warped
into t along optical flow (nearest sampling), pixels failing a colour / depth consistency check
are dropped, the rest are averaged with weights 0.5**|offset|, and one guided filter guided by
t's raw depth smooths the result spatially.

Choices that the reference's outputs depend on, kept here:
- The depth check threshold is 0.5 x (max - min) of the *whole* warped map, whose pixels that
  fall outside the neighbour are 0 (the reference warps with zero padding), so the range
  usually starts at 0.
- The guided filter's guide is the raw depth map of frame t in its own units (float32), as in
  the reference, so ``guided_eps`` (1e-4) is in squared depth units: for Depth Anything's
  output (about 0..200) it is a tiny regulariser and the filter follows the raw depth's edges.
  A depth map in [0, 1] would need eps scaled by range**2 for the same effect.
- Input depth is clamped to >= 0 first, as the reference does when loading.
One deliberate difference: nearest sampling picks the pixel at round(x + flow). The reference
normalises coordinates with (W - 1) but samples with grid_sample's default align_corners=False,
which shifts its samples by up to half a pixel towards the borders and invalidates the last
column/row even for zero flow; we sample where the flow points.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from tqdm import tqdm

from framematrix.depth.config import DepthConfig
from framematrix.depth.flow import FlowEstimator, warp_nearest
from framematrix.errors import ShapeError

_CENTRE_CHUNK = 8  # centre frames per flow batch: bounds memory to ~(w-1)*8 flow fields


def _check_frames_depth(frames: np.ndarray, depth: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ShapeError(
            "frames must be a [F, H, W, 3] uint8 array, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    if frames.shape[-1] != 3:
        raise ShapeError(f"frames must have 3 RGB channels, got shape {frames.shape}")
    if not isinstance(depth, np.ndarray) or depth.ndim != 3:
        raise ShapeError(
            f"depth must be a [F, H, W] float array, got {getattr(depth, 'shape', '')}"
        )
    if depth.shape != frames.shape[:3]:
        raise ShapeError(f"depth {depth.shape} does not match frames {frames.shape[:3]}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ShapeError(f"depth must be floating point, got {depth.dtype}")


def _window_pairs(num_frames: int, centres: range, half: int) -> list[tuple[int, int, int]]:
    """(centre t, neighbour s, window slot j) for every neighbour inside the clip."""
    return [
        (t, t + j - half, j)
        for t in centres
        for j in range(2 * half + 1)
        if j != half and 0 <= t + j - half < num_frames
    ]


def _consistency_mask(
    rgb_t: torch.Tensor,
    depth_t: torch.Tensor,
    warped_rgb: torch.Tensor,
    warped_depth: torch.Tensor,
    valid: torch.Tensor,
    rgb_threshold: float,
    depth_threshold: float | None,
) -> torch.Tensor:
    """Valid & colour-consistent (& depth-consistent) pixels, [P, H, W] bool.

    rgb_*: [P, H, W, 3] float 0..255; depth_*: [P, H, W]; warped maps are 0 where not valid.
    """
    rgb_diff = (rgb_t - warped_rgb).abs().amax(dim=-1)
    keep = valid & (rgb_diff <= rgb_threshold)
    if depth_threshold is not None:
        flat = warped_depth.flatten(1)
        spread = (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, 1, 1)
        keep &= (depth_t - warped_depth).abs() <= depth_threshold * spread
    return keep


def guided_smooth(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """One guided filter (He et al.) of ``src`` by ``guide``, negatives clamped to 0.

    guide, src: [H, W] float32 in the depth's own units. Returns [H, W] float32 >= 0. Where the
    filter's running sums lose precision and yield a non-finite value, ``src`` is kept.
    """
    guide32 = np.ascontiguousarray(guide, np.float32)
    src32 = np.ascontiguousarray(src, np.float32)
    out = cv2.ximgproc.guidedFilter(guide32, src32, int(radius), float(eps))
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = src32[bad]
    return np.maximum(out, 0.0, out=out)


def stabilize_depth(
    frames: np.ndarray,
    depth: np.ndarray,
    flow: FlowEstimator,
    config: DepthConfig | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Temporally stabilised depth (METHOD.md section 2).

    frames: [F, H, W, 3] uint8 RGB. depth: [F, H, W] float (relative inverse depth or any depth
    >= 0; negatives are clamped to 0). flow: estimator of flow t -> s.
    config: window, rgb_threshold, depth_threshold, weight_base, guided_radius, guided_eps are
    used (defaults: the paper's). device: where warping and averaging run (default: the flow
    estimator's device, else CPU).
    Returns [F, H, W] float32 >= 0.
    """
    _check_frames_depth(frames, depth)
    config = config or DepthConfig()
    if device is None:
        device = getattr(flow, "device", "cpu")
    device = torch.device(device)
    num_frames, height, width = depth.shape
    half = (config.window - 1) // 2
    weights = config.temporal_weights()
    depth32 = np.maximum(np.asarray(depth, np.float32), 0.0)
    out = np.empty_like(depth32)

    chunks = range(0, num_frames, _CENTRE_CHUNK)
    bar = tqdm(total=num_frames, desc="stabilise depth", disable=not progress)
    for start in chunks:
        centres = range(start, min(num_frames, start + _CENTRE_CHUNK))
        d_centre = torch.from_numpy(depth32[centres.start : centres.stop]).to(device)
        numer = d_centre * weights[half]
        denom = torch.full_like(d_centre, weights[half])
        pairs = _window_pairs(num_frames, centres, half)
        if pairs:
            t_idx = np.array([p[0] for p in pairs])
            s_idx = np.array([p[1] for p in pairs])
            slot_w = torch.tensor([weights[p[2]] for p in pairs], device=device).view(-1, 1, 1)
            flows = torch.from_numpy(flow.flow(frames[t_idx], frames[s_idx])).to(device)
            rgb_s = torch.from_numpy(frames[s_idx]).to(device).float()
            d_s = torch.from_numpy(depth32[s_idx]).to(device).unsqueeze(-1)
            warped, valid = warp_nearest(torch.cat([rgb_s, d_s], dim=-1), flows)
            warped_rgb, warped_depth = warped[..., :3], warped[..., 3]
            rgb_t = torch.from_numpy(frames[t_idx]).to(device).float()
            d_t = torch.from_numpy(depth32[t_idx]).to(device)
            keep = _consistency_mask(
                rgb_t,
                d_t,
                warped_rgb,
                warped_depth,
                valid,
                config.rgb_threshold,
                config.depth_threshold,
            )
            k_m = slot_w * keep.to(warped_depth.dtype)
            local = torch.from_numpy(t_idx - centres.start).to(device)
            numer.index_add_(0, local, k_m * warped_depth)
            denom.index_add_(0, local, k_m)
        averaged = (numer / (denom + 1e-10)).cpu().numpy()
        for i, t in enumerate(centres):
            out[t] = guided_smooth(depth32[t], averaged[i], config.guided_radius, config.guided_eps)
        bar.update(len(centres))
    bar.close()
    return out


def consecutive_flows(frames: np.ndarray, flow: FlowEstimator) -> np.ndarray:
    """Flow from each frame to the next: [F, H, W, 3] uint8 -> [F-1, H, W, 2] float32."""
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ShapeError(f"need [F, H, W, 3] frames with F >= 2, got {frames.shape}")
    return flow.flow(frames[:-1], frames[1:])


def temporal_flicker(
    frames: np.ndarray,
    depth: np.ndarray,
    flow: FlowEstimator | np.ndarray,
    rgb_threshold: float = 20.0,
) -> float:
    """Frame-to-frame depth change along the motion, as a fraction of the clip's depth range.

    mean over t and over consistent pixels of |D_t - warp(D_{t+1} -> t)|, divided by
    (max - min) of ``depth`` over the whole clip. Consistent: the nearest-sampled source pixel
    is inside frame t+1 and its colour is within ``rgb_threshold`` (0..255) of frame t's in every
    channel. Colour alone decides, so two depth sequences are compared on the same pixels.
    frames: [F, H, W, 3] uint8; depth: [F, H, W] float; flow: an estimator or the precomputed
    ``consecutive_flows(frames, estimator)`` [F-1, H, W, 2] (to compare several depths).
    Returns a float >= 0 (0.0066 = 0.66 %).
    """
    _check_frames_depth(frames, depth)
    if frames.shape[0] < 2:
        raise ShapeError(f"temporal_flicker needs at least 2 frames, got {frames.shape[0]}")
    flows = flow if isinstance(flow, np.ndarray) else consecutive_flows(frames, flow)
    expected = (frames.shape[0] - 1, *frames.shape[1:3], 2)
    if flows.shape != expected:
        raise ShapeError(f"flows must be {expected}, got {flows.shape}")
    d_all = np.asarray(depth, np.float32)
    depth_range = float(d_all.max() - d_all.min())
    total, count = 0.0, 0
    for start in range(0, frames.shape[0] - 1, _CENTRE_CHUNK):
        stop = min(frames.shape[0], start + _CENTRE_CHUNK + 1)  # pairs start .. stop-2
        d = torch.from_numpy(d_all[start:stop])
        rgb = torch.from_numpy(frames[start:stop]).float()
        source = torch.cat([rgb[1:], d[1:].unsqueeze(-1)], dim=-1)
        pair_flows = torch.from_numpy(np.asarray(flows[start : stop - 1], np.float32))
        warped, valid = warp_nearest(source, pair_flows)
        keep = _consistency_mask(
            rgb[:-1], d[:-1], warped[..., :3], warped[..., 3], valid, rgb_threshold, None
        )
        total += float((d[:-1] - warped[..., 3]).abs()[keep].double().sum())
        count += int(keep.sum())
    if depth_range <= 0 or count == 0:
        return 0.0
    return total / count / depth_range
