"""The subpixel warp (``warp="subpixel"``): bilinear 2-tap splat with a soft z-buffer."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from framematrix.errors import ShapeError
from framematrix.geometry import StereoConfig, build_frame_matrix
from framematrix.geometry.splat import forward_splat, forward_splat_subpixel

HEIGHT, WIDTH = 16, 48


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)


def test_half_pixel_disparity_leaves_no_cracks_with_subpixel_and_does_with_nearest():
    frames = _texture()
    disparity = np.full((1, HEIGHT, WIDTH), 0.5, np.float32)
    interior = (slice(None), slice(2, WIDTH - 2))
    # why: u - 0.5 rounds half to even, so columns 2k - 1 and 2k both land on 2k and every
    # odd column is a crack; the clean-up then drops the comb as speckles
    src = torch.from_numpy(frames[0]).float()[None] / 255.0
    z = torch.ones(1, HEIGHT, WIDTH)
    _, _, covered = forward_splat(src, z, torch.full((1, HEIGHT, WIDTH), 0.5, dtype=torch.float64))
    assert not bool(covered[0][:, 1::2].any()) and bool(covered[0][:, 2:-2:2].all())
    nearest = build_frame_matrix(frames, disparity, views=2, depth_kind="disparity-px")
    assert float((~nearest.masks[1, 0][interior]).float().mean()) > 0.4
    subpixel = build_frame_matrix(
        frames, disparity, views=2, depth_kind="disparity-px", warp="subpixel"
    )
    assert bool(subpixel.masks[1, 0].all())  # no crack, and nothing enters at the border
    # each target pixel is the mean of the two sources half a pixel away
    expected = 0.5 * (src[0, :, :-1] + src[0, :, 1:])
    torch.testing.assert_close(subpixel.images[1, 0][:, :-1], expected, atol=1e-6, rtol=0)


def test_bilinear_weights_of_a_quarter_pixel_shift():
    colour = torch.rand(1, 3, 10, 3)
    z = torch.linspace(1, 2, 30).view(1, 3, 10)
    out, target_z, covered = forward_splat_subpixel(colour, z, torch.full((1, 3, 10), 0.25))
    # u - 0.25: 0.75 to column u, 0.25 to column u - 1 -> t = 0.75 c_t + 0.25 c_{t+1}
    torch.testing.assert_close(
        out[0, :, :-1], 0.75 * colour[0, :, :-1] + 0.25 * colour[0, :, 1:], atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        target_z[0, :, :-1], 0.75 * z[0, :, :-1] + 0.25 * z[0, :, 1:], atol=1e-6, rtol=0
    )
    # the last column only has its 0.75 share (>= 0.5: known, normalised to c_{W-1})
    assert bool(covered.all())
    torch.testing.assert_close(out[0, :, -1], colour[0, :, -1], atol=1e-6, rtol=0)
    # a surface stretched 3x gets about 1/3 weight per target: holes where it is below 0.5
    u = torch.arange(10, dtype=torch.float32)
    stretch = (u - 3.0 * u).view(1, 1, 10).expand(1, 3, 10)  # target x = 3 u
    _, _, covered = forward_splat_subpixel(colour, z, stretch.contiguous())
    assert covered[0, 0].tolist() == [t % 3 == 0 for t in range(10)]  # x = 3u exactly


def test_near_plane_occludes_a_far_one_without_blending():
    colour = torch.zeros(1, 4, 40, 3)
    colour[..., 0] = 1.0  # far: red
    colour[:, :, 10:20] = torch.tensor([0.0, 0.0, 1.0])  # near: blue
    z = torch.full((1, 4, 40), 10.0)
    z[:, :, 10:20] = 1.0
    shift = 6.5 / z  # far 0.65 px, near 6.5 px (to the left)
    out, target_z, covered = forward_splat_subpixel(colour, z, shift)
    # near columns 10..19 land on 3.5 .. 12.5: targets 4..12 are covered by it alone, pure blue
    torch.testing.assert_close(out[0, :, 4:13], colour[0, :, 10:19], atol=1e-6, rtol=0)
    assert bool((target_z[0, :, 4:13] == 1.0).all())
    # the far plane keeps its colour where it is visible, and is uncovered behind the near one
    torch.testing.assert_close(out[0, :, 21:39], colour[0, :, 21:39], atol=1e-6, rtol=0)
    assert not bool(covered[0, :, 14:19].any())
    # in front of the near plane's left edge the far plane is hidden, not mixed in
    assert float(out[0, :, 4:13, 0].max()) == 0.0


def test_warp_option_and_config():
    assert StereoConfig().warp == "nearest"
    with pytest.raises(ShapeError, match="warp"):
        build_frame_matrix(_texture(), np.ones((1, HEIGHT, WIDTH), np.float32), warp="cubic")
    # metric depth through the rig: the subpixel warp of the source view is the source
    matrix = build_frame_matrix(
        _texture(),
        np.full((1, HEIGHT, WIDTH), 4.0, np.float32),
        views=3,
        warp="subpixel",
        depth_kind="metric",
    )
    assert bool(matrix.masks[0].all())
    torch.testing.assert_close(matrix.images[0, 0], torch.from_numpy(_texture()[0]) / 255.0)


# ------------------------------------------------------------------ real stereo pairs

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stereo_fill.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_stereo_fill", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_stereo_fill", module)
    spec.loader.exec_module(module)
    return module


def _pair(name: str):
    from conftest import shared_path

    bench = _bench()
    shared_path("data", "stereo", name)
    found = {pair.name: pair for pair in bench.discover_pairs(bench.SHARED)}
    if name not in found:
        pytest.skip(f"{name}: incomplete stereo pair")
    return bench, bench.load_case(found[name], "left2right")


def _fill_psnr(bench, case, warp: str, holes_of: np.ndarray | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        image, known, z = bench.warp_build(case, warp)
    from framematrix.fill.fast import fill_fast

    filled = bench.to_8bit(fill_fast(image[None], known[None], z[None])[0])
    truth = bench.to_8bit(case.target)
    holes = ~known if holes_of is None else holes_of
    return bench.psnr(filled, truth), bench.psnr(filled, truth, holes), known


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flyingthings_A-0032-0006", "middlebury2014_motorcycle_Q"])
def test_subpixel_is_not_worse_on_real_pairs(name: str):
    bench, case = _pair(name)
    all_nearest, _, known_nearest = _fill_psnr(bench, case, "nearest")
    all_subpixel, _, known_subpixel = _fill_psnr(bench, case, "subpixel")
    assert all_subpixel >= all_nearest
    assert (~known_subpixel).mean() <= (~known_nearest).mean()
    # with disparities on a quarter-pixel grid (Middlebury 2003 ground truth, e.g. Teddy)
    # nearest rounds ties into crack combs: subpixel wins over the whole image and over the
    # pixels that nearest leaves as holes
    quarter = dataclasses.replace(case, disparity=np.round(case.disparity * 4) / 4)
    all_n, holes_n, known_n = _fill_psnr(bench, quarter, "nearest")
    all_s, holes_s, known_s = _fill_psnr(bench, quarter, "subpixel", holes_of=~known_n)
    assert all_s >= all_n + 0.3
    assert holes_s >= holes_n
    assert (~known_s).mean() < 0.75 * (~known_n).mean()
