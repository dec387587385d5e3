"""End-to-end behaviour of the ``framematrix`` command and the pipeline behind it."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix.cli import main
from framematrix.io.video import read_clip


def _frames_folder(folder: Path, count: int = 4, height: int = 48, width: int = 64) -> np.ndarray:
    """Textured frames (a bright square on a striped background), written as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = np.zeros((count, height, width, 3), np.uint8)
    stripes = (np.arange(width) // 4 % 2 * 120 + 40).astype(np.uint8)
    frames[:] = stripes[None, None, :, None]
    frames[..., 1] = rng.integers(0, 60, (count, height, width), dtype=np.uint8)
    frames[:, 16:32, 24:40] = (250, 200, 30)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame[..., ::-1])
    return frames


def _square_disparity(count: int, height: int, width: int, shift: float) -> np.ndarray:
    """Disparity: the square is `shift` px near, the background 0 px."""
    disp = np.zeros((count, height, width), np.float32)
    disp[:, 16:32, 24:40] = shift
    return disp


def _read_depth(path: Path, count: int, height: int, width: int) -> np.ndarray:
    """A depth video or folder written by framematrix, read back as [F, H, W] float32."""
    from framematrix.io.depth_video import open_depth

    with open_depth(path, num_frames=count, height=height, width=width) as depth:
        return depth.read(0, count)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, *names: str) -> None:
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("framematrix: error:")
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_demo_writes_sbs_anaglyph_and_grid(tmp_path, capsys):
    code, out, _ = _run(["demo", "-o", str(tmp_path), "-q"], capsys)
    assert code == 0
    sbs = read_clip(tmp_path / "astronaut_sbs.mp4")
    assert sbs.frames.shape == (16, 320, 1152, 3)
    anaglyph = read_clip(tmp_path / "astronaut_anaglyph.mp4")
    assert anaglyph.frames.shape == (16, 320, 576, 3)
    grid = read_clip(tmp_path / "astronaut_views_grid.mp4")
    assert grid.frames.shape == (16, 960, 1728, 3)  # 8 views in a 3x3 grid
    # Left half is the source (left2right) with the default edge band cropped off both eyes:
    # the watching default, 3 % of the width with a third in front, loses (1 - 1/3) * 3 % at
    # the left edge and 1/3 * 3 % at the right (ceil of 11.52 and 5.76 px) and is scaled back.
    from framematrix.export.edges import edge_band

    source = cv2.imread(str(shared_or_package_frame()))[..., ::-1][None]
    cropped, _ = edge_band(source, source, (12, 6), "crop")
    err = np.abs(sbs.frames[0, :, :576].astype(float) - cropped[0].astype(float)).mean()
    assert err < 4.0
    # ... and it is not the uncropped source
    assert np.abs(sbs.frames[0, :, :576].astype(float) - source[0].astype(float)).mean() > 8.0
    # The right eye is filled: no black disocclusions left.
    right = sbs.frames[:, :, 576:]
    assert (right.max(axis=-1) < 8).mean() < 0.01
    assert "astronaut_sbs.mp4" in out


def shared_or_package_frame() -> Path:
    from importlib import resources

    return Path(str(resources.files("framematrix") / "assets" / "astronaut" / "00000.jpg"))


def test_disparity_px_output_is_the_input_shifted(tmp_path, capsys):
    frames = _frames_folder(tmp_path / "in")
    np.save(tmp_path / "disp.npy", _square_disparity(4, 48, 64, shift=6.0))
    out = tmp_path / "out"
    code, _, _ = _run(
        [
            "convert",
            str(tmp_path / "in"),
            "--depth",
            str(tmp_path / "disp.npy"),
            "--depth-kind",
            "disparity-px",
            "--fill",
            "none",
            "--format",
            "sbs",
            "-o",
            str(out),
            "-q",
        ],
        capsys,
    )
    assert code == 0
    written = sorted(out.glob("*.png"))
    assert [p.stem for p in written] == ["00000", "00001", "00002", "00003"]
    sbs = cv2.imread(str(written[1]))[..., ::-1]
    left, right = sbs[:, :64], sbs[:, 64:]
    np.testing.assert_array_equal(left, frames[1])
    # The square moved 6 px to the left in the right eye; the background stayed.
    np.testing.assert_array_equal(right[16:32, 18:34], frames[1][16:32, 24:40])
    np.testing.assert_array_equal(right[:, :16], frames[1][:, :16])


def test_convert_real_video_with_synthetic_depth(tmp_path, capsys):
    video = shared_path("data", "video", "davis_dolphins.mp4")
    # A synthetic depth at half resolution (same aspect: resized) for the first 24 frames.
    clip = read_clip(video, max_frames=59)
    count = clip.frames.shape[0]
    yy, xx = np.mgrid[0:270, 0:480].astype(np.float32)
    depth = np.broadcast_to(10.0 + yy / 27.0 + 3.0 * np.sin(xx / 40.0), (count, 270, 480))
    np.save(tmp_path / "depth.npy", np.ascontiguousarray(depth))
    out = tmp_path / "dolphins_sbs.mp4"
    code, stdout, err = _run(
        [
            "convert",
            str(video),
            "--depth",
            str(tmp_path / "depth.npy"),
            "--format",
            "half-sbs",
            "--preset",
            "ultrafast",
            "-o",
            str(out),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    result = read_clip(out)
    assert result.frames.shape == (59, 540, 960, 3)
    assert result.fps == pytest.approx(24.0)
    assert "59 frames" in stdout


def _clip_with_audio(path: Path, frames: int = 12, size: tuple[int, int] = (48, 64)) -> None:
    """A short H.264 clip with a 440 Hz AAC tone."""
    rate = 24
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.height, video.width = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "mono"
        rng = np.random.default_rng(1)
        for _ in range(frames):
            image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        samples = int(44100 * frames / rate)
        t = np.arange(samples) / 44100.0
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 44100
        frame.pts = 0
        frame.time_base = Fraction(1, 44100)
        for packet in audio.encode(frame):
            container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)


def test_audio_survives_convert(tmp_path, capsys):
    source = tmp_path / "with_audio.mp4"
    _clip_with_audio(source)
    np.save(tmp_path / "disp.npy", np.full((12, 48, 64), 2.0, np.float32))
    out = tmp_path / "stereo.mkv"
    code, _, err = _run(
        [
            "convert",
            str(source),
            "--depth",
            str(tmp_path / "disp.npy"),
            "--depth-kind",
            "disparity-px",
            "-o",
            str(out),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.video[0].codec_context.width == 128


def test_matrix_command_layout(tmp_path, capsys):
    _frames_folder(tmp_path / "in", count=2)
    np.save(tmp_path / "disp.npy", _square_disparity(2, 48, 64, shift=4.0))
    out = tmp_path / "matrix"
    code, _, err = _run(
        [
            "matrix",
            str(tmp_path / "in"),
            "--depth",
            str(tmp_path / "disp.npy"),
            "--depth-kind",
            "disparity-px",
            "--views",
            "3",
            "-o",
            str(out),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["view00", "view01", "view02"]
    assert sorted(p.name for p in (out / "view02").iterdir()) == [
        "00000.png",
        "00000_mask.png",
        "00001.png",
        "00001_mask.png",
    ]
    source_mask = cv2.imread(str(out / "view00" / "00000_mask.png"), cv2.IMREAD_UNCHANGED)
    assert (source_mask == 255).all()
    end_mask = cv2.imread(str(out / "view02" / "00000_mask.png"), cv2.IMREAD_UNCHANGED)
    # The far view has holes only where the square (4 px nearer) uncovered the background:
    # columns 36..39 of its rows (the crack clean-up may close their thin edges).
    holes = end_mask == 0
    assert holes[16:32, 36:40].sum() >= 24
    holes[16:32, 36:40] = False
    assert not holes.any()


def test_help_states_defaults_and_units(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "default: 0.08",
        "default: 800",
        "pixels",
        "default: fast",
        "default: sbs;",
        "default: 3)",
        "default: 0.333",
    ):
        assert expected in text, expected


# --- bad input: one line, non-zero status, nothing left behind -----------------------------------


@pytest.fixture
def small_input(tmp_path):
    _frames_folder(tmp_path / "in", count=3)
    return tmp_path / "in"


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_missing_input_file(tmp_path, capsys):
    code, _, err = _run(
        ["convert", str(tmp_path / "nope.mp4"), "--depth", "x.npy", "-o", str(tmp_path / "o.mp4")],
        capsys,
    )
    _assert_one_line_error(code, err, "nope.mp4")
    assert _leftovers(tmp_path, set()) == []


def test_corrupt_video(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_text("this is not a video")
    code, _, err = _run(
        ["convert", str(bad), "--depth", "x.npy", "-o", str(tmp_path / "o.mp4")], capsys
    )
    _assert_one_line_error(code, err, "broken.mp4")
    assert _leftovers(tmp_path, {"broken.mp4"}) == []


def test_depth_count_mismatch(tmp_path, small_input, capsys):
    np.save(tmp_path / "depth.npy", np.ones((5, 48, 64), np.float32))
    code, _, err = _run(
        [
            "convert",
            str(small_input),
            "--depth",
            str(tmp_path / "depth.npy"),
            "-o",
            str(tmp_path / "o.mp4"),
        ],
        capsys,
    )
    _assert_one_line_error(code, err, "depth.npy")
    assert _leftovers(tmp_path, {"in", "depth.npy"}) == []


def test_depth_of_another_aspect(tmp_path, small_input, capsys):
    np.save(tmp_path / "depth.npy", np.ones((3, 48, 48), np.float32))
    code, _, err = _run(
        [
            "convert",
            str(small_input),
            "--depth",
            str(tmp_path / "depth.npy"),
            "-o",
            str(tmp_path / "o.mp4"),
        ],
        capsys,
    )
    _assert_one_line_error(code, err, "depth.npy")
    assert _leftovers(tmp_path, {"in", "depth.npy"}) == []


def test_depth_of_same_aspect_is_resized(tmp_path, small_input, capsys):
    np.save(tmp_path / "depth.npy", np.random.default_rng(0).random((3, 24, 32), np.float32))
    code, _, err = _run(
        [
            "convert",
            str(small_input),
            "--depth",
            str(tmp_path / "depth.npy"),
            "-o",
            str(tmp_path / "o.mp4"),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert read_clip(tmp_path / "o.mp4").frames.shape == (3, 48, 128, 3)


def test_zero_range_depth(tmp_path, small_input, capsys):
    np.save(tmp_path / "depth.npy", np.full((3, 48, 64), 7.0, np.float32))
    code, _, err = _run(
        [
            "convert",
            str(small_input),
            "--depth",
            str(tmp_path / "depth.npy"),
            "-o",
            str(tmp_path / "o.mp4"),
        ],
        capsys,
    )
    _assert_one_line_error(code, err, "depth.npy", "range")
    assert _leftovers(tmp_path, {"in", "depth.npy"}) == []


def test_zero_frames(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(
        ["convert", str(tmp_path / "empty"), "--depth", "d.npy", "-o", str(tmp_path / "o.mp4")],
        capsys,
    )
    _assert_one_line_error(code, err, "empty")
    assert _leftovers(tmp_path, {"empty"}) == []


def test_failure_midway_leaves_no_output(tmp_path, small_input, capsys, monkeypatch):
    np.save(tmp_path / "disp.npy", np.full((3, 48, 64), 2.0, np.float32))
    import framematrix.pipeline as pipeline

    calls = {"n": 0}
    real = pipeline.build_chunk

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise pipeline.InputError("simulated failure in the second chunk")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "build_chunk", failing)
    code, _, err = _run(
        [
            "convert",
            str(small_input),
            "--depth",
            str(tmp_path / "disp.npy"),
            "--depth-kind",
            "disparity-px",
            "--chunk-frames",
            "1",
            "-o",
            str(tmp_path / "o.mp4"),
            "-q",
        ],
        capsys,
    )
    _assert_one_line_error(code, err, "simulated")
    assert _leftovers(tmp_path, {"in", "disp.npy"}) == []


def test_console_script_reports_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "framematrix.cli",
            "convert",
            str(tmp_path / "absent.mkv"),
            "-o",
            str(tmp_path / "o.mp4"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "absent.mkv" in result.stderr
    assert "Traceback" not in result.stderr


# --- depth estimation through the CLI, with a tiny random Depth Anything -------------------------


@pytest.fixture(params=["v1", "v2"])
def tiny_depth_model(request, tmp_path_factory, monkeypatch):
    """A tiny random Depth Anything of each layout, saved to a folder (loaded back offline)."""
    from framematrix.depth.testing import make_tiny_depth_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return make_tiny_depth_model(tmp_path_factory.mktemp("tiny_da"), version=request.param)


def test_depth_command_and_convert_without_depth_reuse_the_cache(
    tmp_path, small_input, tiny_depth_model, capsys, monkeypatch
):
    out = tmp_path / "depth"
    code, _, err = _run(
        [
            "depth",
            str(small_input),
            "--depth-model",
            str(tiny_depth_model),
            "--flow",
            "dis",
            "-o",
            str(out),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    maps = sorted(out.glob("*.png"))
    assert [p.stem for p in maps] == ["00000", "00001", "00002"]
    first = cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED)
    assert first.dtype == np.uint16 and first.shape == (48, 64)
    assert _read_depth(out, 3, 48, 64).shape == (3, 48, 64)

    convert_args = [
        "convert",
        str(small_input),
        "--depth-model",
        str(tiny_depth_model),
        "--flow",
        "dis",
        "-o",
        str(tmp_path / "a.mp4"),
        "-q",
    ]
    code, _, err = _run(convert_args, capsys)
    assert code == 0, err
    assert read_clip(tmp_path / "a.mp4").frames.shape == (3, 48, 128, 3)

    # A second run with other stereo settings must not run the depth model again.
    import framematrix.depth.estimate as estimate

    def no_model(*args, **kwargs):
        raise AssertionError("depth was recomputed instead of read from the cache")

    monkeypatch.setattr(estimate, "load_depth_model", no_model)
    monkeypatch.setattr(estimate, "estimate_depth", no_model)
    convert_args[-2] = str(tmp_path / "b.mp4")
    code, _, err = _run([*convert_args, "--baseline", "0.05"], capsys)
    assert code == 0, err


def test_missing_depth_model_is_one_line(tmp_path, small_input, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run(
        ["convert", str(small_input), "--depth-model", "v2-small", "-o", str(tmp_path / "o.mp4")],
        capsys,
    )
    _assert_one_line_error(code, err, "Depth-Anything-V2-Small")
    assert not (tmp_path / "o.mp4").exists()


def test_stabilize_command(tmp_path, small_input, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "raw.npy", (5.0 + rng.random((3, 48, 64))).astype(np.float32))
    out = tmp_path / "steady"
    code, _, err = _run(
        [
            "stabilize",
            str(small_input),
            "--depth",
            str(tmp_path / "raw.npy"),
            "--flow",
            "dis",
            "-o",
            str(out),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    steady = _read_depth(out, 3, 48, 64)
    raw = np.load(tmp_path / "raw.npy")
    assert steady.shape == raw.shape
    # Static frames with independent noise: the temporal average steadies the middle frame.
    assert np.abs(steady[1] - steady[0]).mean() < np.abs(raw[1] - raw[0]).mean()


def test_multiview_writes_every_view_by_default(tmp_path):
    from framematrix.cli import build_parser, config_from_args

    parser = build_parser()
    base = ["convert", "in.mp4", "--multiview"]
    assert config_from_args(parser.parse_args([*base, "-o", "out.mp4"])).format == "grid"
    assert config_from_args(parser.parse_args([*base, "-o", "out_dir"])).format == "views"
    explicit = parser.parse_args([*base, "--format", "tb", "-o", "out.mp4"])
    assert config_from_args(explicit).format == "tb"
    assert config_from_args(parser.parse_args(["convert", "in.mp4", "-o", "o.mp4"])).format == "sbs"
    multiview = config_from_args(parser.parse_args([*base, "-o", "out.mp4"]))
    assert multiview.diffusion.multiview


def test_existing_output_folder_is_kept_unless_overwrite(tmp_path, small_input, capsys):
    np.save(tmp_path / "disp.npy", np.full((3, 48, 64), 2.0, np.float32))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    args = [
        "convert",
        str(small_input),
        "--depth",
        str(tmp_path / "disp.npy"),
        "--depth-kind",
        "disparity-px",
        "-o",
        str(out),
        "-q",
    ]
    code, _, err = _run(args, capsys)
    _assert_one_line_error(code, err, "mine", "--overwrite")
    assert (out / "notes.txt").read_text() == "precious"
    code, _, err = _run([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_output_may_not_overwrite_the_input(tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    _clip_with_audio(source, frames=4)
    before = source.read_bytes()
    np.save(tmp_path / "disp.npy", np.full((4, 48, 64), 2.0, np.float32))
    code, _, err = _run(
        [
            "convert",
            str(source),
            "--depth",
            str(tmp_path / "disp.npy"),
            "--depth-kind",
            "disparity-px",
            "-o",
            str(tmp_path / "sub" / ".." / "clip.mp4"),
        ],
        capsys,
    )
    _assert_one_line_error(code, err, "overwrite the input")
    assert source.read_bytes() == before


def test_depth_folder_from_the_depth_command_is_valid_depth_input(tmp_path, small_input, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "raw.npy", (5.0 + rng.random((3, 48, 64))).astype(np.float32))
    steady = tmp_path / "steady"
    code, _, err = _run(
        [
            "stabilize",
            str(small_input),
            "--depth",
            str(tmp_path / "raw.npy"),
            "--flow",
            "dis",
            "-o",
            str(steady),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = _run(
        ["convert", str(small_input), "--depth", str(steady), "-o", str(tmp_path / "o.mp4"), "-q"],
        capsys,
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "option",
    [
        ["--crf", "99"],
        ["--preset", "turbo"],
        ["--fps", "0"],
        ["--window", "4"],
        ["--views", "1"],
        ["--chunk-frames", "0"],
        ["--near", "0"],
    ],
)
def test_bad_option_values_are_usage_errors(option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "in.mp4", "-o", "o.mp4", *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and option[0] in err


def test_unavailable_device_is_one_line(tmp_path, small_input, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _run(
        ["convert", str(small_input), "--device", "cuda", "-o", str(tmp_path / "o.mp4")], capsys
    )
    _assert_one_line_error(code, err, "cuda")
    code, _, err = _run(
        ["convert", str(small_input), "--device", "toaster", "-o", str(tmp_path / "o.mp4")], capsys
    )
    _assert_one_line_error(code, err, "toaster")
