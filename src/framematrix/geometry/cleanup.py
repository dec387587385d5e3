"""Multi-plane crack and speckle clean-up of forward-warped views (METHOD.md 3.4).

Semantics (the reference's, quirks included):

1. The covered target pixels of each image are split into P depth layers: P//2 layers evenly
   between the min and the median (numpy's) target depth, the rest evenly between median and max
   (splits in float64);
   layer i holds depths in ``(split_i, split_{i+1}]`` (layer 0 also holds the minimum).
2. In each layer, a covered pixel is kept only if the 3x3 mean of the layer's coverage is > 0.5.
3. In each layer, ``weight = G * kept`` with the 3x3 Gaussian of sigma 1 that is NOT normalised
   (outer product of ``exp(-x^2 / 2)`` over x in {-1, 0, 1}, divided by ``2 pi``: centre 0.159,
   sum 0.779); the layer covers exactly ``weight > 0.2``; newly covered pixels take the colour
   ``G * (colour * kept) / weight``, kept pixels keep theirs. Borders reflect-101 (OpenCV default).
4. Layers are composited far to near, so the nearest layer covering a pixel decides it.

Implementation: every pixel belongs to at most one layer, so the P layers are held as one uint8
layer-id map (P = uncovered). The speckle test counts the 8 neighbours sharing a pixel's id. A
kept pixel with no nearer layer in its 3x3 and one neighbour of its own layer keeps its value,
and a pixel with no kept neighbour stays a hole; only the remaining mixed pixels (layer edges,
cracks, hole borders: a few percent) gather their 9 neighbours and weigh every layer. This is
exactly the per-layer filtering above without filtering P full planes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from framematrix.errors import ShapeError

SPECKLE_MEAN = 0.5
CRACK_WEIGHT = 0.2

# 3x3 neighbourhood offsets, row-major, centre at index 4
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]

# the CPU path of plan_cleanup uses OpenCV (False: torch ops everywhere, for tests)
_USE_OPENCV = True


def gaussian_kernel_3x3(sigma: float = 1.0) -> torch.Tensor:
    """The reference's un-normalised 3x3 Gaussian ``[3, 3]`` float32 (sum 0.779 for sigma 1)."""
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return (torch.outer(window, window) / (2 * math.pi * sigma**2)).to(torch.float32)


@dataclass
class CleanupPlan:
    """How to build the cleaned view from per-pixel values of the splatted view.

    covered: ``[N, H, W]`` bool, final coverage.
    own: ``[N, H, W]`` bool, pixels that keep their own splatted value.
    fill_index: ``[M]`` int64 flat index (into N*H*W) of pixels that take a neighbour average.
    fill_neighbours: ``[M, 9]`` int64 flat indices of their 3x3 neighbours (reflect-101).
    fill_weights: ``[M, 9]`` float32 weights of those neighbours (sum 1).
    """

    covered: torch.Tensor
    own: torch.Tensor
    fill_index: torch.Tensor
    fill_neighbours: torch.Tensor
    fill_weights: torch.Tensor

    def apply(self, values: torch.Tensor, empty: float = 0.0) -> torch.Tensor:
        """Cleaned ``[N, H, W, ...]`` values from splatted ones (``empty`` at holes)."""
        trailing = values.shape[3:]
        fill_value = torch.full((), empty, dtype=values.dtype, device=values.device)
        own = self.own.view(self.own.shape + (1,) * len(trailing))
        out = torch.where(own, values, fill_value)
        if self.fill_index.numel():
            flat = values.reshape((-1,) + trailing)
            neighbours = flat[self.fill_neighbours]  # [M, 9, ...]
            weights = self.fill_weights.view(self.fill_weights.shape + (1,) * len(trailing))
            # neighbours outside the layer weigh 0 but may hold inf (depth at holes)
            neighbours = torch.where(weights > 0, neighbours, 0)
            filled = (neighbours * weights.to(values.dtype)).sum(1)
            out.view((-1,) + trailing)[self.fill_index] = filled
        return out


def _row_stats(values: torch.Tensor, counts: list[int]) -> np.ndarray:
    """Min, median (numpy's: mean of the two middle values for an even count) and max of the
    ``count`` finite entries of each row of ``[N, L]`` float32 whose other entries are +inf.

    Returns ``[N, 3]`` float64 (numpy), ready for the float64 splits.
    """
    stats = np.zeros((len(counts), 3), dtype=np.float64)
    if values.device.type == "cpu":
        # numpy's SIMD introselect (one kth per call) is ~20x faster than torch.kthvalue on CPU
        for row, count, out in zip(values.numpy(), counts, stats, strict=True):
            if count == 0:
                continue
            upper = count // 2
            part = np.partition(row, upper)
            out[1] = part[upper] if count % 2 else (float(part[:upper].max()) + part[upper]) / 2
            out[0] = part[:upper].min() if upper else part[upper]
            tail = part[upper:]
            out[2] = tail.max(initial=-np.inf, where=tail < np.inf)
        return stats
    for row, count, out in zip(values, counts, stats, strict=True):
        if count == 0:
            continue
        upper = count // 2
        high = torch.kthvalue(row, upper + 1).values
        median = high if count % 2 else (torch.kthvalue(row, upper).values.double() + high) / 2
        out[:] = [float(row.min()), float(median), float(torch.kthvalue(row, count).values)]
    return stats


def _float32_below(thresholds: np.ndarray) -> np.ndarray:
    """Largest float32 t with t <= x: for float32 z, ``z > t`` equals the float64 ``z > x``."""
    rounded = thresholds.astype(np.float32)
    too_big = rounded.astype(np.float64) > thresholds
    rounded[too_big] = np.nextafter(rounded[too_big], np.float32(-np.inf))
    return rounded


def layer_ids(
    target_z: torch.Tensor, planes: int = 4, counts: list[int] | None = None
) -> torch.Tensor:
    """Depth layer of every target pixel, ``[N, H, W]`` uint8: 0 (nearest) .. P-1, P = uncovered.

    Args:
        target_z: ``[N, H, W]`` float32 target depth, > 0 where covered and +inf exactly where
            nothing landed.
        planes: number of layers P.
        counts: covered pixels per image, if the caller knows them.

    Splits per image, in float64 like the reference: ``linspace(min, median, P//2 + 1)`` then
    ``linspace(median, max, P - P//2 + 1)[1:]`` over the covered depths (numpy's median);
    layer i = number of inner splits < z, i.e. z in ``(split_i, split_{i+1}]``.
    """
    if not 1 <= planes < 255:
        raise ShapeError(f"planes must be in [1, 254], got {planes}")
    num = target_z.shape[0]
    device = target_z.device
    flat_z = target_z.reshape(num, -1).to(torch.float32)
    if counts is None:
        counts = torch.isfinite(flat_z).sum(1).tolist()
    near_layers = planes // 2
    thresholds = np.zeros((num, planes), dtype=np.float64)  # upper bound of each layer
    for out, (low, median, high), count in zip(
        thresholds, _row_stats(flat_z, counts), counts, strict=True
    ):
        if count == 0:
            continue  # all +inf: every bound 0 puts every pixel in the "uncovered" slot
        near = np.linspace(low, median, near_layers + 1)[1:]
        far = np.linspace(median, high, planes - near_layers + 1)[1:]
        out[:] = np.concatenate([near, far])
        out[-1] = high  # only holes (+inf) lie beyond the max
    bounds32 = _float32_below(thresholds)
    if device.type == "cpu" and _USE_OPENCV and planes <= 127:
        return _layer_ids_cpu(flat_z, bounds32).view(target_z.shape)
    bounds = torch.from_numpy(bounds32).to(device)
    layer = torch.zeros(flat_z.shape, dtype=torch.uint8, device=device)
    for i in range(planes):
        layer += (flat_z > bounds[:, i : i + 1]).view(torch.uint8)
    return layer.view(target_z.shape)


def _layer_ids_cpu(flat_z: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
    """The count of ``bounds[n]`` below each ``flat_z[n]`` (``[N, L]`` float32, bounds
    ``[N, P]`` float32, P <= 127) with OpenCV: a compare with each bound as a scalar, counted
    by subtracting the 255 (-1 as int8) masks; single SIMD passes that release the GIL, where
    torch's broadcast compare of a row against a column is slow."""
    num, length = flat_z.shape
    z = flat_z.contiguous().numpy()
    layer = torch.zeros((num, length), dtype=torch.uint8)
    count = layer.numpy().view(np.int8)
    mask = np.empty((1, length), np.uint8)
    for n in range(num):
        row, acc = z[n : n + 1], count[n : n + 1]
        for bound in bounds[n].tolist():  # exact: float32 bounds are doubles exactly
            cv2.compare(row, bound, cv2.CMP_GT, dst=mask)
            cv2.subtract(acc, mask.view(np.int8), dst=acc)
    return layer


def _pad_reflect(ids: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` -> ``[N, H + 2, W + 2]`` with reflect-101 borders (OpenCV's default)."""
    # slices rather than F.pad(mode="reflect"), which lacks integer dtypes on some devices
    rows = torch.cat([ids[:, 1:2], ids, ids[:, -2:-1]], dim=1)
    return torch.cat([rows[:, :, 1:2], rows, rows[:, :, -2:-1]], dim=2)


def _neighbour_count(padded: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """How many of the 8 neighbours equal the centre value, ``[N, H, W]`` uint8."""
    _, height, width = centre.shape
    count = torch.zeros(centre.shape, dtype=torch.uint8, device=centre.device)
    for dy, dx in _OFFSETS:
        if dy or dx:
            equal = padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] == centre
            count += equal.view(torch.uint8)  # a view, not a bool -> uint8 conversion
    return count


def _min_3x3(padded: torch.Tensor) -> torch.Tensor:
    """Separable 3x3 minimum of a padded ``[N, H + 2, W + 2]`` map -> ``[N, H, W]``."""
    rows = torch.minimum(torch.minimum(padded[:, :, :-2], padded[:, :, 1:-1]), padded[:, :, 2:])
    return torch.minimum(torch.minimum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    # reflect-101: -1 -> 1, size -> size - 2
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def _padded_index(flat_index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flat index in ``[N, H + 2, W + 2]`` of pixels given by flat index in ``[N, H, W]``."""
    pad_size = (height + 2) * (width + 2)
    image = flat_index.div(height * width, rounding_mode="floor")
    rest = flat_index - image * (height * width)
    row = rest.div(width, rounding_mode="floor")
    return image * pad_size + rest + 2 * row + (width + 3)


def _padded_offsets(width: int, device: torch.device) -> torch.Tensor:
    """Offsets ``[9]`` of the 3x3 neighbours in a flat ``[N, H + 2, W + 2]`` map."""
    return torch.tensor([dy * (width + 2) + dx for dy, dx in _OFFSETS], device=device)


def _unpad_map(height: int, width: int, device: torch.device) -> torch.Tensor:
    """Flat ``[(H + 2) * (W + 2)]`` map: padded position -> reflect-101 source in ``[H, W]``."""
    rows = _reflect(torch.arange(-1, height + 1, device=device), height)
    cols = _reflect(torch.arange(-1, width + 1, device=device), width)
    return (rows[:, None] * width + cols[None, :]).view(-1)


def _unpad(padded_index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flat indices in ``[N, H + 2, W + 2]`` -> the reflect-101 pixels they mirror in [N, H, W]."""
    pad_size = (height + 2) * (width + 2)
    image = padded_index.div(pad_size, rounding_mode="floor")
    position = (padded_index - image * pad_size).view(-1)
    inside = _unpad_map(height, width, padded_index.device).index_select(0, position)
    return image * (height * width) + inside.view_as(padded_index)


def _decide_torch(ids: torch.Tensor, empty: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded kept-layer map ``[N, H + 2, W + 2]`` uint8 and the ``decided`` map ``[N, H, W]``
    bool of :func:`plan_cleanup`, with torch ops (any device)."""
    # speckle: keep a pixel when its layer's 3x3 mean coverage > 0.5, i.e. (1 + same) / 9 > 0.5
    same = _neighbour_count(_pad_reflect(ids), ids)
    dropped = (same < _SPECKLE_SAME).to(torch.uint8) * empty
    kept = torch.maximum(ids, dropped)  # dropped pixels become `empty` (ids <= empty)
    padded = _pad_reflect(kept)
    decided = (_min_3x3(padded) == kept) & (_neighbour_count(padded, kept) > 0)
    return padded, decided


_NEIGHBOURS = [(dy, dx) for dy, dx in _OFFSETS if dy or dx]
_SPECKLE_SAME = math.floor(9 * SPECKLE_MEAN)  # fewer equal neighbours than this: a speckle
_CROSS_3X3 = np.ones((3, 3), np.uint8)


def _decide_cpu(ids: torch.Tensor, empty: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_decide_torch` on the CPU with OpenCV, image by image (same result; a few
    SIMD passes over uint8 maps that stay in the cache, and the GIL is released)."""
    num, height, width = ids.shape
    ids_np = ids.numpy()
    padded = torch.empty((num, height + 2, width + 2), dtype=torch.uint8)
    decided = torch.empty((num, height, width), dtype=torch.bool)
    padded_np = padded.numpy()
    decided_np = decided.numpy().view(np.uint8)
    equal = np.empty((height, width), np.uint8)
    count = np.empty((height, width), np.uint8)
    reflect = cv2.BORDER_REFLECT_101
    for n in range(num):
        centre = ids_np[n]
        pad = cv2.copyMakeBorder(centre, 1, 1, 1, 1, reflect)
        # neighbours equal to the centre: compare gives 255 = -1 as int8, subtracting counts
        count.fill(0)
        same = count.view(np.int8)
        for dy, dx in _NEIGHBOURS:
            window = pad[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            cv2.compare(window, centre, cv2.CMP_EQ, dst=equal)
            cv2.subtract(same, equal.view(np.int8), dst=same)
        speckle = cv2.compare(count, _SPECKLE_SAME, cv2.CMP_LT)
        kept = cv2.max(centre, cv2.bitwise_and(speckle, empty))
        cv2.copyMakeBorder(kept, 1, 1, 1, 1, reflect, dst=padded_np[n])
        pk = padded_np[n]
        # >= 1 neighbour of the same kept layer
        count.fill(0)
        for dy, dx in _NEIGHBOURS:
            window = pk[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            cv2.compare(window, kept, cv2.CMP_EQ, dst=equal)
            cv2.bitwise_or(count, equal, dst=count)
        nearest = cv2.erode(kept, _CROSS_3X3, borderType=reflect)
        cv2.compare(nearest, kept, cv2.CMP_EQ, dst=equal)
        cv2.bitwise_and(equal, count, dst=equal)
        cv2.bitwise_and(equal, 1, dst=decided_np[n])
    return padded, decided


def plan_cleanup(ids: torch.Tensor, planes: int = 4) -> CleanupPlan:
    """Clean-up decisions from a layer-id map ``[N, H, W]`` uint8 (see :func:`layer_ids`)."""
    num, height, width = ids.shape
    if height < 2 or width < 2:
        raise ShapeError(f"views must be at least 2x2 pixels, got {height}x{width}")
    device = ids.device
    empty = planes
    # Pixels decided without filtering (nearest = min layer id in the 3x3):
    # - kept, no nearer layer in the 3x3 and >= 1 neighbour of its own layer: its own layer
    #   covers it (weight >= (1 + 0.37) / 2 pi > 0.2) and nothing nearer can: it keeps its value;
    # - no kept pixel in the 3x3 (nearest == empty): weight 0 in every layer, a hole.
    # Both read "nearest == kept and >= 1 neighbour equal" (a hole's neighbours all equal it).
    if device.type == "cpu" and _USE_OPENCV:
        padded, decided = _decide_cpu(ids.contiguous(), empty)
    else:
        padded, decided = _decide_torch(ids, empty)
    kept = padded[:, 1:-1, 1:-1]
    own = decided & (kept != empty)
    mixed_index = torch.nonzero(~decided.view(-1)).flatten()

    if mixed_index.numel() == 0:
        empty_long = torch.empty(0, dtype=torch.int64, device=device)
        return CleanupPlan(
            covered=own,
            own=own,
            fill_index=empty_long,
            fill_neighbours=empty_long.view(0, 9),
            fill_weights=torch.empty(0, 9, dtype=torch.float32, device=device),
        )

    # 3x3 neighbours of the mixed pixels, as positions in the padded map [N, H + 2, W + 2]
    nb_padded = _padded_index(mixed_index, height, width)[:, None] + _padded_offsets(width, device)
    nb_layer = padded.view(-1).index_select(0, nb_padded.view(-1)).view(-1, 9).long()
    gauss = gaussian_kernel_3x3().view(-1).to(device)
    weight = torch.zeros(mixed_index.numel(), planes + 1, dtype=torch.float32, device=device)
    weight.scatter_add_(1, nb_layer, gauss.expand_as(nb_layer))
    covers = weight[:, :planes] > CRACK_WEIGHT
    has_layer = covers.any(1)
    # composite far to near == the nearest (lowest id) covering layer wins
    winner = covers.to(torch.uint8).argmax(1)
    keeps_own = has_layer & (winner == nb_layer[:, 4])
    fill_rows = torch.nonzero(has_layer & ~keeps_own).flatten()

    covered = own.clone()
    covered.view(-1).index_copy_(0, mixed_index, has_layer)
    own.view(-1).index_copy_(0, mixed_index, keeps_own)
    fill_layer = winner.index_select(0, fill_rows)
    fill_nb_layer = nb_layer.index_select(0, fill_rows)
    fill_w = torch.where(fill_nb_layer == fill_layer[:, None], gauss, 0.0)
    fill_w = fill_w / fill_w.sum(1, keepdim=True)
    return CleanupPlan(
        covered=covered,
        own=own,
        fill_index=mixed_index.index_select(0, fill_rows),
        fill_neighbours=_unpad(nb_padded.index_select(0, fill_rows), height, width),
        fill_weights=fill_w,
    )


def clean_layers(
    colour: torch.Tensor,
    target_z: torch.Tensor,
    covered: torch.Tensor,
    planes: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-plane crack and speckle clean-up of N forward-warped images (module docstring).

    Args:
        colour: ``[N, H, W, C]`` float splatted colour (e.g. RGB in [0, 1]).
        target_z: ``[N, H, W]`` float target depth (any value where not covered).
        covered: ``[N, H, W]`` bool coverage of the splat.
        planes: number of depth layers P.

    Returns:
        colour ``[N, H, W, C]`` (0 at holes), target_z ``[N, H, W]`` float32 (inf at holes; filled
        pixels get the same weighted mean of their layer's depths as the colour), covered
        ``[N, H, W]`` bool.
    """
    if colour.ndim != 4 or colour.shape[:3] != covered.shape or target_z.shape != covered.shape:
        raise ShapeError(
            f"colour {tuple(colour.shape)} must be [N, H, W, C] and target_z "
            f"{tuple(target_z.shape)} / covered {tuple(covered.shape)} [N, H, W]"
        )
    if covered.dtype != torch.bool:
        raise ShapeError(f"covered must be bool, got {covered.dtype}")
    z = torch.where(covered, target_z.to(torch.float32), float("inf"))
    plan = plan_cleanup(layer_ids(z, planes), planes)
    return plan.apply(colour), plan.apply(z, empty=float("inf")), plan.covered
