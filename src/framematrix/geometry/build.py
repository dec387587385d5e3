"""Frame-matrix construction: warp every frame into V cameras (METHOD.md section 3)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from framematrix.buffers import BufferPool
from framematrix.errors import ShapeError
from framematrix.geometry.cameras import camera_offsets, end_eye_span, source_view_index
from framematrix.geometry.cleanup import layer_ids, plan_cleanup
from framematrix.geometry.normalize import DEPTH_KINDS, _depth_to_z_checked
from framematrix.geometry.splat import SlotRounder, scatter_winners, splat_subpixel
from framematrix.matrix import RIG_MODES, FrameMatrix

# target pixels handled per chunk: large enough to amortise per-op overhead, small enough that
# the working set of a chunk stays in the CPU's last-level cache
DEFAULT_CHUNK_PIXELS = 1 << 21


class WarpResult(NamedTuple):
    """Warped views. images ``[V, F, H, W, 3]`` float32 in [0, 1] (0 at holes), masks
    ``[V, F, H, W]`` bool (True = known), depth ``[V, F, H, W]`` float32 target z (inf at holes)."""

    images: torch.Tensor
    masks: torch.Tensor
    depth: torch.Tensor


def _check_frames_and_z(frames: torch.Tensor, z: torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ShapeError(f"frames must be [F, H, W, 3], got {tuple(frames.shape)}")
    if not frames.dtype.is_floating_point:
        raise ShapeError(f"frames must be float in [0, 1], got dtype {frames.dtype}")
    if tuple(z.shape) != tuple(frames.shape[:3]):
        raise ShapeError(f"z must be [F, H, W] = {tuple(frames.shape[:3])}, got {tuple(z.shape)}")


WARP_METHODS = ("nearest", "subpixel")


def warp_to_offsets(
    frames: torch.Tensor,
    z: torch.Tensor,
    offsets: torch.Tensor,
    focal: float,
    planes: int = 4,
    disparity_px: torch.Tensor | None = None,
    *,
    disparity_baseline: float | None = None,
    warp: str = "nearest",
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    progress: bool = False,
) -> WarpResult:
    """Forward-warp F frames into cameras translated by ``offsets`` and clean them up.

    Args:
        frames: ``[F, H, W, 3]`` float RGB in [0, 1].
        z: ``[F, H, W]`` float32 source depth z (> 0; NaN = unknown, not warped), e.g. from
            :func:`depth_to_z`. Orders surfaces (z-buffer, layers) in every case.
        offsets: ``[V]`` camera translations b_j along x (scene units). A view with offset
            exactly 0 is the untouched source frames with a full mask. Any subset of a rig may
            be given (e.g. only the two eyes). Pass float64 offsets to match the reference to
            the last pixel (its rig is a float64 linspace).
        focal: focal length in pixels. View j's shift is ``focal * b_j / z`` pixels, computed in
            float64 like the reference (float32 flips a few roundings at .5).
        planes: depth layers of the clean-up.
        disparity_px: optional ``[F, H, W]`` signed pixel disparity between the two END eyes of
            the rig. If given, view j's shift is ``disparity * b_j / disparity_baseline``
            instead, so the end eyes are exactly ``disparity`` pixels apart (a negative
            disparity moves the other way: content behind the screen plane).
        disparity_baseline: the distance between the end eyes that ``disparity_px`` refers to;
            default ``max(offsets) - min(offsets)``. ``build_frame_matrix`` passes the rig's
            baseline B (which is also right for middle2leftright with 2 views, whose quirk makes
            its offsets span only B/2).
        warp: ``nearest``: every source pixel lands on the nearest target pixel (the paper's
            warp, round half to even) with a hard z-buffer; ``subpixel``: bilinear 2-tap
            splat with a soft z-buffer (:func:`framematrix.geometry.splat.splat_subpixel`),
            which leaves no crack combs at fractional disparities.
        chunk_pixels: target pixels warped per chunk (memory / cache trade-off).
        progress: show a tqdm bar over the chunks.

    Returns:
        :class:`WarpResult` with images ``[V, F, H, W, 3]``, masks ``[V, F, H, W]`` and depth
        ``[V, F, H, W]`` (inf at holes; the source view keeps ``z``, NaN where unknown).
    """
    _check_frames_and_z(frames, z)
    colour_ext = torch.cat([frames.new_zeros(1, 3), frames.reshape(-1, 3).to(torch.float32)])
    return _warp(
        colour_ext,
        z,
        offsets,
        focal,
        planes,
        disparity_px,
        shape=tuple(frames.shape[:3]),
        disparity_baseline=disparity_baseline,
        warp=warp,
        chunk_pixels=chunk_pixels,
        progress=progress,
    )


def _warp(
    colour_ext: torch.Tensor,
    z: torch.Tensor,
    offsets: torch.Tensor,
    focal: float,
    planes: int,
    disparity_px: torch.Tensor | None,
    *,
    shape: tuple[int, int, int],
    disparity_baseline: float | None,
    warp: str,
    chunk_pixels: int,
    progress: bool,
    z_all_finite: bool | None = None,
    images: torch.Tensor | None = None,
    buffers: BufferPool | None = None,
) -> WarpResult:
    """:func:`warp_to_offsets` from the frames as ``colour_ext`` ``[1 + F * H * W, 3]``
    float32: one zero row (the colour of holes), then the pixels in row-major order.
    ``images``: the output ``[V, F, H, W, 3]`` if the caller allocated it; the source view may
    then share its memory with ``colour_ext[1:]`` (no copy is made). ``buffers``: where the
    masks, depth and working arrays are taken from (reused memory) instead of allocated."""
    if warp not in WARP_METHODS:
        raise ShapeError(f"warp must be one of {WARP_METHODS}, got {warp!r}")
    offsets = torch.as_tensor(offsets).flatten().cpu().to(torch.float64)
    if offsets.numel() == 0:
        raise ShapeError("offsets must hold at least one camera")
    if not bool(torch.isfinite(offsets).all()):
        raise ShapeError("offsets must be finite")
    device = colour_ext.device
    z = z.to(device=device, dtype=torch.float32)
    num_frames, height, width = shape
    num_views = offsets.numel()
    image_pixels = height * width
    if z_all_finite is None:
        z_all_finite = bool(torch.isfinite(z).all())

    if disparity_px is not None:
        if tuple(disparity_px.shape) != tuple(z.shape):
            raise ShapeError(
                f"disparity_px must be [F, H, W] = {tuple(z.shape)}, "
                f"got {tuple(disparity_px.shape)}"
            )
        span = end_eye_span(offsets) if disparity_baseline is None else float(disparity_baseline)
        if not span > 0:
            raise ShapeError(
                "disparity_baseline must be > 0 (give it when the offsets do not span the rig)"
            )
        motion = disparity_px.to(device=device, dtype=torch.float32)
        if not z_all_finite:
            motion = torch.where(torch.isfinite(z), motion, float("nan"))
        scales = (offsets / span).tolist()
        divide = False
    else:
        if not focal > 0:
            raise ShapeError(f"focal must be > 0 pixels, got {focal!r}")
        motion = z
        scales = (float(focal) * offsets).tolist()
        divide = True

    def empty(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if buffers is None:
            return torch.empty(shape, dtype=dtype, device=device)
        return buffers.take(name, shape, dtype, device)

    view_shape = (num_views, num_frames, height, width)
    if images is None:
        images = empty("images", (*view_shape, 3), torch.float32)
    masks = empty("masks", view_shape, torch.bool)
    depth = empty("depth", view_shape, torch.float32)
    frames = colour_ext[1:].view(num_frames, height, width, 3)
    warped_views = [j for j in range(num_views) if offsets[j] != 0]
    for j in range(num_views):
        if j not in warped_views:
            if images[j].data_ptr() != frames.data_ptr():
                images[j] = frames
            masks[j] = True
            depth[j] = z
    if not warped_views:
        return WarpResult(images, masks, depth)
    # source pixel p is row p + 1 of colour_ext / z_ext, row 0 is a hole (zero colour, inf z)
    z_ext = empty("z_ext", (1 + z.numel(),), torch.float32)
    z_ext[0] = float("inf")
    z_ext[1:] = z.reshape(-1)

    # blocks of (frames x views) of about chunk_pixels target pixels: a view group of one
    # frame when a frame's views exceed it, else several frames with all their views
    views_per_block = max(1, min(len(warped_views), int(chunk_pixels) // image_pixels))
    frames_per_block = 1
    if views_per_block == len(warped_views):
        frames_per_block = max(1, int(chunk_pixels) // (image_pixels * len(warped_views)))
    blocks = [
        (start, min(start + frames_per_block, num_frames), warped_views[v : v + views_per_block])
        for start in range(0, num_frames, frames_per_block)
        for v in range(0, len(warped_views), views_per_block)
    ]
    if progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc="warping frame matrix", unit="block")
    rounders: dict[tuple[int, int, int, int], SlotRounder] = {}
    for start, stop, views in blocks:
        block_shape = (len(views), stop - start, height, width)
        view_scale = torch.tensor([scales[j] for j in views], dtype=torch.float64, device=device)
        view_scale = view_scale.view(-1, 1, 1, 1)
        block_motion = motion[start:stop]
        if warp == "nearest":
            if block_shape not in rounders:
                rounders[block_shape] = SlotRounder(block_shape, device)
            # target u - shift, shift = (focal * b_j) / z or disparity * (b_j / span), in
            # float64 like the reference, rounded half to even
            slots = rounders[block_shape].slots(
                view_scale, block_motion.to(torch.float64), divide, all_finite=z_all_finite
            )
            # [K, C, H, W] winning source as a flat index into colour_ext / z_ext
            winners = scatter_winners(
                z[start:stop], slots, len(views), first_index=1 + start * image_pixels, sentinel=0
            )
            del slots
            block_colour, block_z = colour_ext, z_ext
        else:
            if divide:
                shift = view_scale / block_motion.to(torch.float64)
            else:
                shift = view_scale * block_motion.to(torch.float64)
            splat = splat_subpixel(frames[start:stop], z[start:stop], shift)
            del shift
            # the splatted targets play the role of the sources of the nearest warp
            count = splat.covered.numel()
            winners = torch.arange(1, count + 1, device=device, dtype=torch.int32)
            winners = winners.masked_fill_(~splat.covered.view(-1), 0).view(block_shape)
            block_colour = torch.cat([splat.colour.new_zeros(1, 3), splat.colour.view(-1, 3)])
            block_z = torch.cat([splat.depth.new_full((1,), float("inf")), splat.depth.view(-1)])
            del splat
        _warp_chunk(block_colour, block_z, winners, planes, images, masks, depth, views, start)
    return WarpResult(images, masks, depth)


def _warp_chunk(
    colour_ext: torch.Tensor,
    z_ext: torch.Tensor,
    winners: torch.Tensor,
    planes: int,
    images: torch.Tensor,
    masks: torch.Tensor,
    depth: torch.Tensor,
    views: list[int],
    start: int,
) -> None:
    """Clean up the splatted views ``[K, C, H, W]`` given as ``winners`` (per target pixel
    an index into ``colour_ext`` ``[N, 3]`` / ``z_ext`` ``[N]``; 0 = nothing landed, whose
    rows hold the zero colour and inf) and write them at frame ``start`` of the outputs."""
    sentinel = 0
    _, count, height, width = winners.shape
    stop = start + count
    per_view = count * height * width
    flat_winners = winners.view(-1)
    covered = (flat_winners != sentinel).view(-1, height, width)
    target_z = z_ext.index_select(0, flat_winners).view(-1, height, width)
    # bool.sum() would first copy the map to int64
    counts = covered.view(covered.shape[0], -1).view(torch.uint8).sum(1, dtype=torch.int32)
    counts = counts.tolist()
    plan = plan_cleanup(layer_ids(target_z, planes, counts), planes)
    del covered, target_z

    has_fills = plan.fill_index.numel() > 0
    if has_fills:
        # sources of the 9 neighbours; those outside the fill layer have weight 0 (maybe holes)
        nb_src = flat_winners.index_select(0, plan.fill_neighbours.view(-1))
        weights = plan.fill_weights
        nb_colour = colour_ext.index_select(0, nb_src).view(-1, 9, 3)
        fill_colour = (nb_colour * weights[..., None]).sum(1)
        nb_z = z_ext.index_select(0, nb_src).view(-1, 9)
        fill_z = (torch.where(weights > 0, nb_z, 0.0) * weights).sum(1)
        view_starts = torch.arange(len(views) + 1, device=winners.device) * per_view
        bounds = torch.searchsorted(plan.fill_index, view_starts).tolist()

    # pixels that do not keep their own splatted value read the zero colour / inf depth slot
    own_src = flat_winners.masked_fill_(~plan.own.view(-1), sentinel).view(len(views), -1)
    view_masks = plan.covered.view(len(views), count, height, width)
    for k, view in enumerate(views):
        image_out = images[view, start:stop].view(-1, 3)
        depth_out = depth[view, start:stop].view(-1)
        torch.index_select(colour_ext, 0, own_src[k], out=image_out)
        torch.index_select(z_ext, 0, own_src[k], out=depth_out)
        masks[view, start:stop] = view_masks[k]
        if has_fills and bounds[k + 1] > bounds[k]:
            part = slice(bounds[k], bounds[k + 1])
            local = plan.fill_index[part] - k * per_view
            image_out.index_copy_(0, local, fill_colour[part])
            depth_out.index_copy_(0, local, fill_z[part])


def _as_tensor(array: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(array, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array))
    if isinstance(array, torch.Tensor):
        return array
    raise ShapeError(f"{name} must be a numpy array or torch tensor, got {type(array).__name__}")


def build_frame_matrix(
    frames: torch.Tensor | np.ndarray,
    depth: torch.Tensor | np.ndarray,
    *,
    mode: str = "left2right",
    views: int = 8,
    baseline: float = 0.08,
    focal: float = 800.0,
    near: float | None = None,
    far: float | None = 10.0,
    planes: int = 4,
    depth_kind: str = "relative",
    warp: str = "nearest",
    device: torch.device | str | None = None,
    progress: bool = False,
    buffers: BufferPool | None = None,
) -> FrameMatrix:
    """Build the V x F frame matrix of a clip (METHOD.md section 3).

    Args:
        frames: ``[F, H, W, 3]`` uint8 RGB (numpy or torch); float in [0, 1] is accepted too.
        depth: ``[F, H, W]`` per-frame depth of the kind ``depth_kind`` (numpy or torch):
            ``relative`` inverse depth (normalised over the whole clip with ``near``/``far``),
            ``metric`` z in scene units, or ``disparity-px``: signed pixel disparity between the
            two end eyes, larger = nearer, negative = behind the screen plane (view j then moves
            by ``disparity * b_j / baseline``; ``focal`` is unused and the stored depth is the
            ordering depth of :func:`depth_to_z`, so larger still means farther).
        mode, views, baseline: the rig (see :func:`camera_offsets`).
        focal: focal length in pixels. near, far: normalisation of relative depth.
        planes: depth layers of the crack / speckle clean-up.
        warp: ``nearest`` (the paper's warp) or ``subpixel`` (bilinear splat with a soft
            z-buffer, no crack combs at fractional disparities); see :func:`warp_to_offsets`.
        device: where to compute (default: the frames' device).
        progress: show a progress bar.
        buffers: a :class:`framematrix.buffers.BufferPool` to take the matrix's memory from
            (the same memory every chunk of a conversion; the matrix of the previous call with
            this pool is overwritten) instead of allocating it.

    Returns:
        :class:`FrameMatrix` with images ``[V, F, H, W, 3]`` float32 in [0, 1], masks
        ``[V, F, H, W]`` bool, offsets ``[V]``, the source view index, the mode and the target
        depth ``[V, F, H, W]`` (inf at holes).
    """
    if mode not in RIG_MODES:
        raise ShapeError(f"mode must be one of {RIG_MODES}, got {mode!r}")
    if depth_kind not in DEPTH_KINDS:
        raise ShapeError(f"depth_kind must be one of {DEPTH_KINDS}, got {depth_kind!r}")
    if isinstance(views, bool) or int(views) != views or views < 2:
        raise ShapeError(f"views must be an integer >= 2, got {views!r}")
    if int(planes) != planes or planes < 1:
        raise ShapeError(f"planes must be an integer >= 1, got {planes!r}")
    if not focal > 0:
        raise ShapeError(f"focal must be > 0 pixels, got {focal!r}")
    frames_t = _as_tensor(frames, "frames")
    depth_t = _as_tensor(depth, "depth")
    if frames_t.ndim != 4 or frames_t.shape[-1] != 3:
        raise ShapeError(f"frames must be [F, H, W, 3] RGB, got shape {tuple(frames_t.shape)}")
    if depth_t.ndim != 3 or tuple(depth_t.shape) != tuple(frames_t.shape[:3]):
        raise ShapeError(
            f"depth must be [F, H, W] = {tuple(frames_t.shape[:3])}, got {tuple(depth_t.shape)}"
        )
    if frames_t.shape[1] < 2 or frames_t.shape[2] < 2:
        raise ShapeError(f"frames must be at least 2x2 pixels, got {tuple(frames_t.shape[1:3])}")
    if warp not in WARP_METHODS:
        raise ShapeError(f"warp must be one of {WARP_METHODS}, got {warp!r}")
    device = torch.device(device) if device is not None else frames_t.device
    num_frames, height, width = frames_t.shape[:3]
    # float64 rig for the warp, as the reference's; the FrameMatrix stores float32
    offsets64 = camera_offsets(mode, int(views), baseline, dtype=torch.float64)
    offsets = offsets64.to(torch.float32)
    source_view = source_view_index(offsets)
    # the zero colour of holes, then the frames as float32 rows (see _warp); when the source
    # is view 0 these rows are the source view of the output (no copy)
    pixels = num_frames * height * width

    def empty(name: str, rows: int) -> torch.Tensor:
        if buffers is None:
            return torch.empty(rows, 3, device=device)
        return buffers.take(name, (rows, 3), torch.float32, device)

    images = None
    if source_view == 0:
        storage = empty("images", 1 + int(views) * pixels)
        colour_ext = storage[: 1 + pixels]
        images = storage[1:].view(int(views), num_frames, height, width, 3)
    else:
        colour_ext = empty("colour", 1 + pixels)
    colour_ext[0] = 0.0
    frames_f = colour_ext[1:].view(frames_t.shape)
    if frames_t.dtype == torch.uint8:
        frames_f.copy_(frames_t).div_(255.0)
    elif frames_t.dtype.is_floating_point:
        frames_f.copy_(frames_t)
        if bool(((frames_f < 0) | (frames_f > 1)).any().item()):
            raise ShapeError("float frames must be in [0, 1]")
    else:
        raise ShapeError(f"frames must be uint8 RGB (or float in [0, 1]), got {frames_t.dtype}")
    if not depth_t.dtype.is_floating_point:
        depth_t = depth_t.to(torch.float32)
    depth_t = depth_t.to(device)

    # z is only read from here on: a valid metric depth is used without a copy
    z, z_all_finite = _depth_to_z_checked(
        depth_t, depth_kind, near, far, copy=False, buffers=buffers
    )
    result = _warp(
        colour_ext,
        z,
        offsets64,
        focal,
        int(planes),
        depth_t if depth_kind == "disparity-px" else None,
        shape=(num_frames, height, width),
        disparity_baseline=float(baseline),
        warp=warp,
        chunk_pixels=DEFAULT_CHUNK_PIXELS,
        progress=progress,
        z_all_finite=z_all_finite,
        images=images,
        buffers=buffers,
    )
    return FrameMatrix(
        images=result.images,
        masks=result.masks,
        offsets=offsets.to(device),
        source_view=source_view,
        mode=mode,
        depth=result.depth,
    )
