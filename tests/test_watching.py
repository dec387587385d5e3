"""Converts as people watch them: the frame-edge band, the floating window, the output size and
batch folders, end to end through ``framematrix convert``."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from framematrix.cli import main
from framematrix.export.edges import edge_band

H, W, F = 40, 160, 3


def texture(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, height // 4, width // 4, 3), dtype=np.uint8)
    return np.stack([cv2.resize(s, (width, height), interpolation=cv2.INTER_CUBIC) for s in small])


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame[..., ::-1])
    return folder


def read_sbs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    sbs = np.stack([cv2.imread(str(p))[..., ::-1] for p in sorted(folder.glob("*.png"))])
    half = sbs.shape[2] // 2
    return sbs[:, :, :half], sbs[:, :, half:]


@pytest.fixture(scope="module")
def step_scene(tmp_path_factory):
    """Far left half, near right half: with a 5 % budget at convergence 1/3 the far half moves
    5.33 px right in the right eye and the near half 2.67 px left (8 px = 5 % of 160)."""
    root = tmp_path_factory.mktemp("watch")
    frames = texture(F, H, W)
    write_frames(root / "in", frames)
    depth = np.ones((F, H, W), np.float32)
    depth[:, :, W // 2 :] = 5.0
    np.save(root / "depth.npy", depth)
    return root, frames


def convert_step(root: Path, out: Path, *extra: str) -> tuple[np.ndarray, np.ndarray]:
    argv = ["convert", str(root / "in"), "--depth", str(root / "depth.npy"), "-o", str(out)]
    argv += ["--shots", "none", "--depth-budget", "5", "--convergence", "0.3333", "-q"]
    assert main([*argv, *extra]) == 0
    return read_sbs(out)


def test_edge_band_modes_and_floating_window(step_scene, tmp_path):
    root, frames = step_scene
    plain_l, plain_r = convert_step(root, tmp_path / "none", "--edge-band", "none")
    np.testing.assert_array_equal(plain_l, frames)  # no treatment: the source eye as it is

    # crop (the default with a depth budget): both eyes lose the entering band, 6 px at the left
    # (ceil 5.33, uncrossed) and 3 px at the right (ceil 2.67, crossed), and are scaled back
    crop_l, crop_r = convert_step(root, tmp_path / "crop")
    expect_l, expect_r = edge_band(plain_l, plain_r, (6, 3), "crop")
    np.testing.assert_array_equal(crop_l, expect_l)
    np.testing.assert_array_equal(crop_r, expect_r)
    assert crop_l.shape == frames.shape and not np.array_equal(crop_l, frames)

    # mirror: only the warped eye's bands change
    mir_l, mir_r = convert_step(root, tmp_path / "mirror", "--edge-band", "mirror")
    np.testing.assert_array_equal(mir_l, frames)
    np.testing.assert_array_equal(mir_r[:, :, 6:-3], plain_r[:, :, 6:-3])
    assert not np.array_equal(mir_r[:, :, :6], plain_r[:, :, :6])
    assert not np.array_equal(mir_r[:, :, -3:], plain_r[:, :, -3:])

    # floating window: the near half touches the right edge with 2.67 px of crossed parallax:
    # the right eye's last 2 columns go black and the third is dimmed; the far left edge stays
    win_l, win_r = convert_step(
        root, tmp_path / "window", "--edge-band", "none", "--floating-window"
    )
    np.testing.assert_array_equal(win_l, frames)
    assert (win_r[:, :, -2:] == 0).all()
    assert (win_r[:, :, -3] <= plain_r[:, :, -3]).all()
    assert (win_r[:, :, -3] < plain_r[:, :, -3]).any()
    np.testing.assert_array_equal(win_r[:, :, :-3], plain_r[:, :, :-3])


def test_max_width_scales_frames_and_disparity(tmp_path):
    frames = texture(F, H, W, seed=1)
    write_frames(tmp_path / "in", frames)
    disparity = np.zeros((F, H, W), np.float32)
    disparity[:, 8:32, 40:104] = 8.0  # a near box 8 px of disparity at 160 px
    np.save(tmp_path / "disp.npy", disparity)
    argv = ["convert", str(tmp_path / "in"), "--depth", str(tmp_path / "disp.npy"), "-q"]
    argv += ["--depth-kind", "disparity-px", "--fill", "none", "--shots", "none"]
    assert main([*argv, "--max-width", "80", "-o", str(tmp_path / "half")]) == 0
    left, right = read_sbs(tmp_path / "half")
    assert left.shape == (F, 20, 80, 3)
    small = np.stack([cv2.resize(f, (80, 20), interpolation=cv2.INTER_AREA) for f in frames])
    np.testing.assert_array_equal(left, small)
    # the box's disparity is halved with the width: 4 px; the background does not move
    np.testing.assert_array_equal(right[:, 5:15, 22:48], small[:, 5:15, 26:52])
    np.testing.assert_array_equal(right[:, :, 60:], small[:, :, 60:])
    # --max-height also bounds it; a size already within the bounds is kept
    assert main([*argv, "--max-height", "10", "-o", str(tmp_path / "quarter")]) == 0
    assert read_sbs(tmp_path / "quarter")[0].shape == (F, 10, 40, 3)
    assert main([*argv, "--max-width", "4000", "-o", str(tmp_path / "same")]) == 0
    np.testing.assert_array_equal(read_sbs(tmp_path / "same")[0], frames)


def write_video(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_batch_folder_skips_complete_outputs_and_keeps_going(tmp_path, capsys):
    videos, depth = tmp_path / "videos", tmp_path / "depth"
    videos.mkdir()
    depth.mkdir()
    for name, count in (("a", 5), ("c", 4)):
        write_video(videos / f"{name}.mp4", texture(count, 32, 64, seed=count))
        np.save(
            depth / f"{name}.npy",
            np.linspace(1, 5, 64, dtype=np.float32)[None, None].repeat(32, 1).repeat(count, 0),
        )
    (videos / "b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"broken" * 50)
    np.save(depth / "b.npy", np.ones((4, 32, 64), np.float32))
    out = tmp_path / "out"
    argv = ["convert", str(videos), "-o", str(out), "--depth", str(depth), "--shots", "none", "-q"]

    # without --keep-going the batch stops at the broken file
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4"]
    failed = [line for line in captured.err.splitlines() if line.strip()]
    assert len(failed) == 1 and "b.mp4" in failed[0], captured.err
    assert "1 converted, 0 skipped (already done), 1 failed" in captured.out
    assert "stopped at the first failure" in captured.out

    # with it: the complete output is skipped, the broken file reported, the last one converted
    assert main([*argv, "--keep-going"]) == 1
    captured = capsys.readouterr()
    assert "skipped a.mp4" in captured.out
    assert "1 converted, 1 skipped (already done), 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]
    assert (count_frames(out / "a.mp4"), count_frames(out / "c.mp4")) == (5, 4)

    # the batch's output is what a single convert writes
    single = tmp_path / "single_c.mp4"
    one = ["convert", str(videos / "c.mp4"), "-o", str(single), "--depth", str(depth / "c.npy")]
    assert main([*one, "--shots", "none", "-q"]) == 0
    assert (out / "c.mp4").read_bytes() == single.read_bytes()
