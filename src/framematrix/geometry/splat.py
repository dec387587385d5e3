"""Forward splatting with a z-buffer for horizontally translated cameras (METHOD.md 3.3).

For parallel cameras, source pixel (u, v) of depth z lands at ``u' = round(u - shift)``, ``v' = v``
with ``shift = focal * b / z``. ``round`` is round-half-to-even (as numpy's and torch's); the
frame-matrix warp computes ``u - shift`` in float64 like the reference (in float32 a few .5
roundings flip and a dozen golden mask pixels differ). Where several source pixels land on one
target the nearest (smallest z) wins; equal z: the smaller source index wins. Targets outside
the frame are dropped.

The z-buffer is a plain scatter of source indices (collisions keep an arbitrary writer) followed
by an exact resolution of the few sources that lost and are nearer than the one written, with an
``amin`` over packed (z bits, index) keys: deterministic on any device and thread count, at the
cost of one scatter instead of a full-size ``scatter_reduce``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from framematrix.errors import ShapeError

_LOW32 = 0xFFFFFFFF


def _index_dtype(count: int) -> torch.dtype:
    return torch.int32 if count < 2**31 - 1 else torch.int64


def _packed_key(z_bits: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """int64 key ordering by (z, source index): positive float32 bit patterns sort like z."""
    return (z_bits.to(torch.int64) << 32) | source.to(torch.int64)


def splat_winners(z: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Source pixel that wins every target pixel of a horizontal forward warp.

    Args:
        z: ``[S, H, W]`` float32 source depth, > 0 where known.
        shift: ``[K, S, H, W]`` float64 (or float32) horizontal shift in pixels (target
            ``u' = round(u - shift)``, computed in the shift's dtype); K warps of the same S source
            images (e.g. K views). Must be NaN where z is unknown (not splatted).

    Returns:
        ``[K, S, H, W]`` integer flat index into ``z.reshape(-1)`` (``S * H * W``) of the winning
        source pixel, or ``S * H * W`` where nothing lands (a hole).
    """
    column = torch.arange(shift.shape[-1], device=shift.device, dtype=shift.dtype)
    return splat_winners_at(z, column - shift)


def splat_winners_at(z: torch.Tensor, target_col: torch.Tensor) -> torch.Tensor:
    """:func:`splat_winners` from the unrounded target columns ``u - shift``, ``[K, S, H, W]``
    float (NaN = not splatted). ``target_col`` is used as scratch space (overwritten)."""
    num_warps, num_src, height, width = target_col.shape
    row_len = width + 2
    target_col = target_col.round_().clamp_(-1, width)
    if not bool(torch.isfinite(target_col).all()):
        target_col.nan_to_num_(nan=-1.0)
    row_start = torch.arange(num_warps * num_src * height, device=target_col.device) * row_len + 1
    slots = target_col.to(torch.int64).add_(row_start.view(num_warps, num_src, height, 1))
    return scatter_winners(z, slots, num_warps)


class SlotRounder:
    """Target slots of a horizontal warp straight from float64 ``u - scale / motion`` (or
    ``u - scale * motion``) in three passes, for warping many blocks of one shape.

    Adding 1.5 * 2**52 to a float64 rounds it to an integer (half to even, as ``torch.round``)
    held in the low mantissa bits, so the offset value reinterpreted as int64, plus the row's
    slot offset minus the offset's bits, is the slot: no separate round, float-to-int conversion
    or index pass. Slot layout as in :func:`scatter_winners` (a spare column at each row end).
    """

    MAGIC = 1.5 * 2**52

    def __init__(self, shape: tuple[int, int, int, int], device: torch.device) -> None:
        num_warps, num_src, height, width = shape
        self.width = width
        magic_bits = int(torch.tensor(self.MAGIC, dtype=torch.float64).view(torch.int64))
        self.column = torch.arange(width, device=device, dtype=torch.float64) + self.MAGIC
        rows = torch.arange(num_warps * num_src * height, device=device)
        # column c of a row (c = -1 and c = W are the spare columns) -> slot row * (W + 2) + c + 1
        self.row_offset = (rows * (width + 2) + 1 - magic_bits).view(num_warps, num_src, height, 1)

    def slots(
        self,
        scale: torch.Tensor,
        motion: torch.Tensor,
        divide: bool,
        all_finite: bool | None = None,
    ) -> torch.Tensor:
        """``[K, S*H*W]`` int64 slots for shifts ``scale / motion`` (or ``scale * motion``):
        scale ``[K, 1, 1, 1]`` and motion ``[S, H, W]`` float64, motion NaN = not splatted.
        ``all_finite``: whether motion has no NaN, if the caller knows (saves a pass)."""
        fused = torch.addcdiv if divide else torch.addcmul
        offset = fused(self.column, scale, motion, value=-1.0)
        if all_finite is None:
            all_finite = bool(torch.isfinite(motion).all())
        if not all_finite:
            offset.nan_to_num_(nan=self.MAGIC - 1)
        offset.clamp_(self.MAGIC - 1, self.MAGIC + self.width)  # out of frame: spare columns
        slots = offset.view(torch.int64).add_(self.row_offset)
        return slots.view(slots.shape[0], -1)


def scatter_winners(
    z: torch.Tensor,
    slots: torch.Tensor,
    num_warps: int,
    *,
    first_index: int = 0,
    sentinel: int | None = None,
) -> torch.Tensor:
    """Z-buffer of a horizontal warp given each source pixel's target slot.

    Args:
        z: ``[S, H, W]`` float32 source depth (> 0 where known).
        slots: ``[K, S, H, W]`` (or ``[K, S*H*W]``) int64 target slot of every source pixel in
            a ``[K, S, H, W + 2]`` layout: column u of a row is slot u + 1, and slots 0 and
            W + 1 of the row collect pixels that leave the frame (or are not splatted).
        num_warps: K.
        first_index: added to every returned source index (these S images start at that flat
            index of a larger array).
        sentinel: the value where nothing lands (default ``first_index + S * H * W``).

    Returns:
        ``[K, S, H, W]`` flat index (``first_index`` + index into ``z.reshape(-1)``) of the
        winning source pixel, or ``sentinel`` where nothing lands.
    """
    num_src, height, width = z.shape
    device = z.device
    src_count = num_src * height * width
    if sentinel is None:
        sentinel = first_index + src_count
    row_len = width + 2
    slot_count = num_warps * num_src * height * row_len
    idx_dtype = _index_dtype(max(slot_count, first_index + src_count, sentinel) + 1)
    target = slots.view(num_warps, src_count)
    source = torch.arange(first_index, first_index + src_count, device=device, dtype=idx_dtype)
    winner = torch.full((slot_count,), sentinel, dtype=idx_dtype, device=device)
    # Pass 1: plain scatter; with colliding targets an arbitrary one of them is written.
    winner.scatter_(0, target.view(-1), source if num_warps == 1 else source.repeat(num_warps))
    # Pass 2: only sources that lost pass 1 (collisions at occlusion edges, out-of-frame pixels)
    # can be wrongly beaten; those that are nearer than the written one are resolved exactly
    # with an amin over packed (z, index) keys.
    z_flat = z.reshape(-1)
    bits = z_flat.view(torch.int32)
    written = winner.index_select(0, target.view(-1)).view(num_warps, src_count)
    lost = torch.nonzero((written != source).view(-1)).flatten()
    tgt_c = target.view(-1).index_select(0, lost)
    column_c = tgt_c % row_len
    lost_src = lost % src_count
    z_lost = z_flat.index_select(0, lost_src)
    cur = winner.index_select(0, tgt_c).long() - first_index  # something was written there
    z_cur = z_flat.index_select(0, cur)
    beats = (z_lost < z_cur) | ((z_lost == z_cur) & (lost_src < cur))
    beats &= (column_c != 0) & (column_c != row_len - 1)
    challenger = torch.nonzero(beats).flatten()
    if challenger.numel():
        tgt_c = tgt_c.index_select(0, challenger)
        src_c = lost_src.index_select(0, challenger)
        cur = winner.index_select(0, tgt_c).long() - first_index
        keys = torch.empty(slot_count, dtype=torch.int64, device=device)
        keys[tgt_c] = _packed_key(bits[cur], cur)
        keys.scatter_reduce_(0, tgt_c, _packed_key(bits[src_c], src_c), "amin")
        winner[tgt_c] = ((keys[tgt_c] & _LOW32) + first_index).to(idx_dtype)
    winner = winner.view(num_warps, num_src, height, row_len)
    return winner[..., 1 : width + 1].contiguous()


def forward_splat(
    images: torch.Tensor, z: torch.Tensor, shift_px: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward-warp N images horizontally with a z-buffer.

    Args:
        images: ``[N, H, W, C]`` float source images (any value range, e.g. RGB in [0, 1]).
        z: ``[N, H, W]`` source depth (> 0; NaN/inf = unknown, not splatted).
        shift_px: ``[N, H, W]`` float shift in pixels; target column is ``round(u - shift)``,
            computed in float64 if the shift is float64, else in float32.

    Returns:
        colour ``[N, H, W, C]`` (0 where empty), target_z ``[N, H, W]`` float32 (inf where empty),
        covered ``[N, H, W]`` bool.
    """
    if images.ndim != 4:
        raise ShapeError(f"images must be [N, H, W, C], got {tuple(images.shape)}")
    if z.shape != images.shape[:3] or shift_px.shape != images.shape[:3]:
        raise ShapeError(
            f"z {tuple(z.shape)} and shift_px {tuple(shift_px.shape)} must be "
            f"[N, H, W] = {tuple(images.shape[:3])}"
        )
    z = z.to(torch.float32)
    if bool((z <= 0).any().item()):
        raise ShapeError("z must be > 0 where known (NaN/inf mark unknown pixels)")
    if shift_px.dtype != torch.float64:
        shift_px = shift_px.to(torch.float32)
    shift = torch.where(torch.isfinite(z), shift_px, float("nan"))
    winner = splat_winners(z, shift.unsqueeze(0))[0]
    flat_images = images.reshape(-1, images.shape[-1])
    colour_ext = torch.cat([flat_images, flat_images.new_zeros(1, images.shape[-1])])
    z_flat = z.reshape(-1)
    z_ext = torch.cat([z_flat, z_flat.new_full((1,), float("inf"))])
    colour = colour_ext.index_select(0, winner.reshape(-1)).view(images.shape)
    target_z = z_ext.index_select(0, winner.reshape(-1)).view(z.shape)
    covered = winner != z_flat.numel()
    return colour, target_z, covered


# subpixel splat: contributions whose shift is within this many pixels of the nearest
# contribution's shift are one surface; a target is known from this accumulated weight on
SUBPIXEL_TOLERANCE_PX = 1.0
SUBPIXEL_MIN_WEIGHT = 0.5
_MIN_TAP_WEIGHT = 1e-4  # taps lighter than this neither splat nor decide the nearest surface


class SubpixelSplat(NamedTuple):
    """Result of :func:`splat_subpixel`: colour ``[K, S, H, W, C]`` (0 at holes), depth
    ``[K, S, H, W]`` float32 (inf at holes), covered ``[K, S, H, W]`` bool."""

    colour: torch.Tensor
    depth: torch.Tensor
    covered: torch.Tensor


def splat_subpixel(
    colour: torch.Tensor,
    z: torch.Tensor,
    shift: torch.Tensor,
    *,
    tolerance_px: float | None = None,
    min_weight: float | None = None,
) -> SubpixelSplat:
    """Horizontal forward splat with bilinear (2-tap) weights and a soft z-buffer.

    Source pixel u of depth z lands at ``x = u - shift`` and gives weight ``1 - frac(x)`` to
    column ``floor(x)`` and ``frac(x)`` to ``floor(x) + 1``. Per target pixel the nearest
    contribution (smallest z; ties: the first) sets the surface; every contribution whose
    shift is within ``tolerance_px`` of its shift belongs to that surface and is accumulated
    with its weight (colour and z: weighted means); the others are hidden. A target is known
    where the accumulated weight is >= ``min_weight``. A constant shift of any fraction thus
    covers every interior pixel with weight 1 (no cracks), and a stretched surface leaves a
    hole only where it is stretched to more than 1 / min_weight times its width.

    Args:
        colour: ``[S, H, W, C]`` float source values (e.g. RGB in [0, 1]).
        z: ``[S, H, W]`` float32 source depth, > 0 where known (NaN = not splatted).
        shift: ``[K, S, H, W]`` float shift in pixels (K warps of the same sources); NaN =
            not splatted.
        tolerance_px, min_weight: see above (None: ``SUBPIXEL_TOLERANCE_PX`` = 1.0 and
            ``SUBPIXEL_MIN_WEIGHT`` = 0.5).

    Returns:
        :class:`SubpixelSplat` with K warped images.
    """
    if tolerance_px is None:
        tolerance_px = SUBPIXEL_TOLERANCE_PX
    if min_weight is None:
        min_weight = SUBPIXEL_MIN_WEIGHT
    num_warps, num_src, height, width = shift.shape
    channels = colour.shape[-1]
    device = shift.device
    src_count = num_src * height * width
    targets = num_warps * src_count
    x = torch.arange(width, device=device, dtype=torch.float32) - shift.to(torch.float32)
    left = torch.floor(x)
    frac = x.sub_(left)  # x is scratch from here on
    left_i = left.to(torch.int64)
    # the two taps of every source pixel, [2, K, S, H, W]
    column = torch.stack([left_i, left_i + 1])
    weight = torch.stack([1.0 - frac, frac])
    valid = (column >= 0) & (column < width) & (weight > _MIN_TAP_WEIGHT)
    valid &= torch.isfinite(shift)[None] & torch.isfinite(z)[None, None]
    rows = torch.arange(num_warps * num_src * height, device=device).view(
        1, num_warps, num_src, height, 1
    )
    target = (rows * width + column).view(-1)
    source = torch.arange(src_count, device=device).view(1, 1, num_src, height, width)
    source = source.expand(2, num_warps, num_src, height, width).reshape(-1)
    keep = torch.nonzero(valid.view(-1)).flatten()
    target = target.index_select(0, keep)
    source = source.index_select(0, keep)
    tap_weight = weight.view(-1).index_select(0, keep)
    tap_shift = shift.to(torch.float32)[None].expand(2, -1, -1, -1, -1).reshape(-1)
    tap_shift = tap_shift.index_select(0, keep)
    z_flat = z.reshape(-1).to(torch.float32)
    tap_z = z_flat.index_select(0, source)
    # nearest contribution per target: amin over (z bits, tap index) keys
    tap_index = torch.arange(keep.numel(), device=device)
    keys = torch.full((targets,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
    keys.scatter_reduce_(0, target, _packed_key(tap_z.view(torch.int32), tap_index), "amin")
    front = (keys.index_select(0, target) & _LOW32).to(torch.int64)
    front_shift = tap_shift.index_select(0, front)
    member = (tap_shift - front_shift).abs_() <= tolerance_px
    target = target[member]
    tap_weight = tap_weight[member]
    source = source[member]
    tap_z = tap_z[member]
    total = torch.zeros(targets, device=device).index_add_(0, target, tap_weight)
    depth_sum = torch.zeros(targets, device=device).index_add_(0, target, tap_weight * tap_z)
    src_colour = colour.reshape(-1, channels).to(torch.float32).index_select(0, source)
    colour_sum = torch.zeros(targets, channels, device=device)
    colour_sum.index_add_(0, target, src_colour * tap_weight[:, None])
    covered = total >= min_weight
    safe = torch.where(covered, total, 1.0)
    out_colour = torch.where(covered[:, None], colour_sum / safe[:, None], 0.0)
    out_depth = torch.where(covered, depth_sum / safe, float("inf"))
    shape = (num_warps, num_src, height, width)
    return SubpixelSplat(
        out_colour.view(shape + (channels,)), out_depth.view(shape), covered.view(shape)
    )


def forward_splat_subpixel(
    images: torch.Tensor,
    z: torch.Tensor,
    shift_px: torch.Tensor,
    *,
    tolerance_px: float | None = None,
    min_weight: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`forward_splat` with the bilinear soft z-buffer of :func:`splat_subpixel`.

    Args:
        images: ``[N, H, W, C]`` float source images. z: ``[N, H, W]`` depth (> 0; NaN/inf
            unknown). shift_px: ``[N, H, W]`` float shift in pixels (target ``u - shift``).

    Returns:
        colour ``[N, H, W, C]`` float32 (0 where empty), target_z ``[N, H, W]`` float32 (the
        weighted mean depth of the visible surface, inf where empty), covered ``[N, H, W]``.
    """
    if images.ndim != 4:
        raise ShapeError(f"images must be [N, H, W, C], got {tuple(images.shape)}")
    if z.shape != images.shape[:3] or shift_px.shape != images.shape[:3]:
        raise ShapeError(
            f"z {tuple(z.shape)} and shift_px {tuple(shift_px.shape)} must be "
            f"[N, H, W] = {tuple(images.shape[:3])}"
        )
    z = z.to(torch.float32)
    if bool((z <= 0).any().item()):
        raise ShapeError("z must be > 0 where known (NaN/inf mark unknown pixels)")
    z = torch.where(torch.isfinite(z), z, float("nan"))
    result = splat_subpixel(
        images, z, shift_px.unsqueeze(0), tolerance_px=tolerance_px, min_weight=min_weight
    )
    return result.colour[0], result.depth[0], result.covered[0]
