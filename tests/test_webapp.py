"""The web app's logic without a browser: inputs, depth uploads, preview, safety helpers."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from framematrix.app import host_warning
from framematrix.app.__main__ import build_parser
from framematrix.app.core import (
    InputInfo,
    Settings,
    WorkFolder,
    adopt_upload,
    decode_depth_video,
    depth_model_choices,
    prepare_depth,
    preview_frame,
    probe_input,
    write_demo_input,
)
from framematrix.errors import InputError
from framematrix.jobs import Job, JobRequest
from framematrix.models import ModelSession
from framematrix.progress import ProgressEvent
from test_jobs import fast_config, make_clip


def write_depth_video(path: Path, depth: np.ndarray) -> Path:
    """[F, H, W] depth as a lossless 16-bit grayscale video (FFV1 gray16le in .mkv)."""
    lo, hi = float(depth.min()), float(depth.max())
    levels = np.rint((depth - lo) / (hi - lo) * 65535).astype(np.uint16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height = depth.shape[2], depth.shape[1]
        stream.pix_fmt = "gray16le"
        for level in levels:
            frame = av.VideoFrame.from_ndarray(level, format="gray16le")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path)


def test_serve_defaults_are_local_and_private():
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    assert args.max_upload_mb > 0
    assert host_warning("127.0.0.1", False) is None
    assert host_warning("localhost", False) is None
    assert "0.0.0.0" in host_warning("0.0.0.0", False)
    assert "share link" in host_warning("127.0.0.1", True)


def test_probe_input_describes_a_clip_and_names_bad_files(tmp_path, clip):
    info = probe_input(clip, "my clip.mp4")
    assert (info.frames, info.width, info.height, info.fps) == (24, 128, 96, 24.0)
    assert info.describe() == "**my clip.mp4**: 128x96, 24 frames, 1.00 s at 24 fps"
    broken = tmp_path / "x.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(InputError) as info_error:
        probe_input(broken, "holiday.mp4")
    message = str(info_error.value)
    assert message.startswith("holiday.mp4: ") and str(tmp_path) not in message
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="notes.txt: not a video or image"):
        probe_input(text, "notes.txt")


def test_a_16_bit_depth_video_is_read_exactly(tmp_path, clip):
    depth = np.load(tmp_path / "clip_depth.npy")
    video = write_depth_video(tmp_path / "d.mkv", depth)
    levels = np.rint((depth - depth.min()) / (depth.max() - depth.min()) * 65535)
    decoded = decode_depth_video(video, "d.mkv")
    assert decoded.shape == depth.shape and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, levels.astype(np.float32))
    info = probe_input(clip, "clip.mp4")
    path = prepare_depth(video, info, "d.mkv")
    np.testing.assert_array_equal(np.load(path), decoded)


def test_a_depth_of_another_length_is_refused_with_its_name(tmp_path, clip):
    info = probe_input(clip, "clip.mp4")
    short = tmp_path / "short.npy"
    np.save(short, np.ones((5, 96, 128), np.float32))
    with pytest.raises(InputError) as error:
        prepare_depth(short, info, "my_depth.npy")
    assert str(error.value).startswith("my_depth.npy: ") and "24" in str(error.value)
    with pytest.raises(InputError, match="not a depth video or depth file"):
        prepare_depth(tmp_path / "clip.mp4.txt", info, "clip.mp4.txt")


def test_uploads_are_taken_only_from_the_upload_folders(tmp_path):
    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    good = uploads / "abc" / "My Clip (1).mp4"
    good.write_bytes(b"data")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"secret")
    target = adopt_upload(good, [uploads], tmp_path / "tab")
    assert target.parent == tmp_path / "tab" and target.read_bytes() == b"data"
    assert target.name == "My_Clip__1_.mp4"
    with pytest.raises(InputError, match="not an upload of this app"):
        adopt_upload(outside, [uploads], tmp_path / "tab")
    with pytest.raises(InputError, match="not an upload of this app"):
        adopt_upload(uploads / ".." / "secret.mp4", [uploads], tmp_path / "tab")


def test_a_tab_folder_is_deleted_when_dropped_or_idle(tmp_path):
    work = WorkFolder(tmp_path / "work", keep_s=60)
    tab = work.get("session-1/../x")
    assert tab.folder.parent == work.sessions_dir  # no path tricks from the session id
    (tab.folder / "result.mp4").write_bytes(b"x")
    assert work.expired() == []
    assert work.expired(now=time.time() + 61) == [tab.key]
    assert work.drop("session-1/../x") is tab
    assert not tab.folder.exists()


def test_the_preview_equals_the_frame_that_convert_writes(tmp_path, clip):
    from framematrix.pipeline import convert

    info = probe_input(clip, "clip.mp4")
    depth = tmp_path / "clip_depth.npy"
    settings = Settings(
        preset="default", format="sbs", depth_budget=4.0, convergence=0.5, fill="fast"
    )
    preview = preview_frame(info, 5, settings, tmp_path / "preview", depth_path=depth)
    config = settings.config()
    config.chunk_frames = fast_config().chunk_frames
    convert(clip, tmp_path / "frames", depth=depth, config=config, progress=False)
    expected = np.asarray(Image.open(tmp_path / "frames" / "00005.png").convert("RGB"))
    sbs = np.asarray(Image.open(preview.sbs).convert("RGB"))
    assert sbs.shape == (96, 256, 3)
    np.testing.assert_array_equal(sbs, expected)
    left, right = sbs[:, :128], sbs[:, 128:]
    assert np.abs(left.astype(int) - right.astype(int)).mean() > 1  # there is parallax
    anaglyph = Image.open(preview.anaglyph)
    assert anaglyph.size == (128, 96)
    wiggle = Image.open(preview.wiggle)
    assert wiggle.n_frames == 2 and wiggle.info.get("loop") == 0
    assert Image.open(preview.depth).size == (128, 96)


def test_the_preview_estimates_depth_with_the_session_model_once(tmp_path, clip):
    from framematrix.depth.testing import make_tiny_depth_model

    model = make_tiny_depth_model(tmp_path / "tiny")
    info = probe_input(clip, "clip.mp4")
    models = ModelSession()
    settings = Settings(depth_model=str(model))
    choices = {c.name: c for c in depth_model_choices([model])}
    assert choices[str(model.resolve())].found
    assert "hf download" in choices["v1-large"].hint or choices["v1-large"].found
    for index in (0, 10):
        preview = preview_frame(
            info, index, settings, tmp_path / "p", depth_path=None, models=models
        )
        assert "estimated" in preview.note
    assert models.loads["depth"] == 1


def test_demo_clip_is_written_as_a_frame_folder_with_its_depth(tmp_path):
    info, depth = write_demo_input(tmp_path)
    assert (info.frames, info.width, info.height, info.kind) == (16, 576, 320, "frames")
    assert np.load(depth).shape == (16, 320, 576)
    preview = preview_frame(info, 3, Settings(), tmp_path / "p", depth_path=depth)
    assert Image.open(preview.sbs).size == (1152, 320)


def test_settings_map_to_a_config_and_refuse_bad_values():
    config = Settings(preset="paper", format="half-sbs", depth_budget=0, fill="fast").config()
    assert (config.format, config.stereo.depth_budget, config.fill) == ("half-sbs", None, "fast")
    assert config.stereo.baseline == 0.08  # the paper's rig stays
    assert config.depth.flow == "raft-small"  # the rest of the preset stays
    config = Settings(depth_budget=2.5, convergence=0.25).config()
    assert (config.stereo.depth_budget, config.stereo.convergence) == (2.5, 0.25)
    for bad in (
        Settings(format="views"),
        Settings(fill="magic"),
        Settings(depth_budget=-1),
        Settings(convergence=1.5),
        Settings(preset="x"),
    ):
        with pytest.raises(InputError):
            bad.config()


def test_progress_bar_text(tmp_path):
    from framematrix.app.ui import progress_html

    job = Job(JobRequest(tmp_path / "a.mp4", tmp_path / "b.mp4"))
    assert "queued" in progress_html(job)
    job.state = "running"
    job._record(ProgressEvent(job.id, "depth", 24, 24, finished=True))
    job._record(ProgressEvent(job.id, "convert", 8, 24, rate=4.0, eta_s=4.0))
    text = progress_html(job)
    assert "convert: 8/24 frames" in text and "ETA 4 s" in text and "width:33.3%" in text
    assert "pass 2" in text and "data-state='running'" in text
    job._finish("failed", "clip.mp4: <bad> & worse")
    assert "clip.mp4: &lt;bad&gt; &amp; worse" in progress_html(job)  # escaped


def test_input_info_describes_an_image(tmp_path):
    info = InputInfo(tmp_path / "a.png", "image", 1, 640, 480, 24.0, "a.png")
    assert info.describe() == "**a.png**: 640x480, image"
