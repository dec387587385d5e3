"""Joining segment files by remux: frames, timestamps, audio and the refusals."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from framematrix.errors import InputError
from framematrix.export.join import join_segments
from framematrix.export.writers import VideoEncoding, VideoWriter

SIZE = (48, 64)  # H, W
FPS = Fraction(30000, 1001)


def _moving_frames(start: int, count: int) -> list[np.ndarray]:
    """A bright square moving over a gradient: frame i of the whole synthetic video."""
    height, width = SIZE
    frames = []
    for i in range(start, start + count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None]
        frame[..., 1] = (i * 9) % 256
        x = (i * 3) % (width - 12)
        frame[10:22, x : x + 12] = 255
        frames.append(frame)
    return frames


def _write_segments(folder: Path, counts: list[int], encoding: VideoEncoding) -> list[Path]:
    paths, start = [], 0
    for k, count in enumerate(counts):
        path = folder / f"seg{k:03d}.mp4"
        with VideoWriter(path, FPS, encoding) as writer:
            writer.write_many(_moving_frames(start, count))
        paths.append(path)
        start += count
    return paths


def _decode(path: Path) -> tuple[np.ndarray, list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
    return np.stack(frames), times


def _source_with_audio(path: Path, seconds: float, codec: str = "aac") -> None:
    """A 64x48 video of ``seconds`` with a mono 440 Hz tone of the same length."""
    rate = 48000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(codec, rate=rate)
        audio.layout = "mono"
        for i in range(round(seconds * 24)):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), "rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        count = round(rate * seconds)
        tone = np.sin(2 * np.pi * 440 * np.arange(count) / rate)
        if codec.startswith("pcm"):
            samples, fmt = (tone * 16000).astype(np.int16)[None], "s16"
        else:
            samples, fmt = (0.5 * tone).astype(np.float32)[None], "fltp"
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        assert container.streams.audio, f"{path.name} has no audio"
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


@pytest.mark.parametrize(
    ("codec", "suffix"), [("h264", ".mp4"), ("h265", ".mov"), ("h264", ".mkv")]
)
def test_join_equals_the_segments_with_even_timestamps(
    tmp_path: Path, codec: str, suffix: str
) -> None:
    # veryfast uses B-frames: a decode delay, except in a 1-frame segment, which x264 writes
    # without one (the join must keep decode timestamps increasing across that).
    encoding = VideoEncoding(codec=codec, crf=20, preset="veryfast").for_segments()
    counts = [7, 1, 12, 5]
    segments = _write_segments(tmp_path, counts, encoding)
    output = join_segments(segments, tmp_path / f"joined{suffix}")
    joined, times = _decode(output)
    assert joined.shape == (sum(counts), *SIZE, 3)
    # Remux, no re-encode: the joined decode equals each segment's own decode, frame for frame.
    expected = np.concatenate([_decode(s)[0] for s in segments])
    np.testing.assert_array_equal(joined, expected)
    steps = np.diff(times)
    assert np.all(steps > 0)
    # Matroska stores milliseconds; mp4/mov keep the frame rate's time base exactly.
    tolerance = 1.0e-3 if suffix == ".mkv" else 1.0e-6
    np.testing.assert_allclose(steps, 1001 / 30000, atol=tolerance)
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == ("hevc" if codec == "h265" else "h264")
        if codec == "h265":
            assert stream.codec_tag == "hvc1"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [s.name for s in segments] + [output.name]
    )


def test_each_segment_starts_with_a_keyframe_and_shares_codec_parameters(tmp_path: Path) -> None:
    encoding = VideoEncoding(codec="h265", crf=24, preset="ultrafast", keyframe_interval=4)
    segments = _write_segments(tmp_path, [3, 10], encoding.for_segments())
    extradata = []
    for path in segments:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            assert packets[0].is_keyframe
            # keyframe_interval 4: keyframes at frames 0, 4, 8 (decode order = frame order here
            # at the keyframes, since a GOP's first packet is its keyframe).
            assert sum(p.is_keyframe for p in packets) == -(-len(packets) // 4)
            extradata.append(bytes(stream.codec_context.extradata))
    assert extradata[0] == extradata[1]


def test_join_adds_the_audio_of_the_converted_part(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    _source_with_audio(source, 3.0)
    encoding = VideoEncoding(crf=30, preset="ultrafast").for_segments()
    counts = [15, 15, 15]  # 45 frames at 29.97 fps: 1.5015 s
    segments = _write_segments(tmp_path, counts, encoding)
    whole = join_segments(segments, tmp_path / "whole.mp4", audio_from=source)
    assert _audio_seconds(whole) == pytest.approx(45 * 1001 / 30000, abs=0.03)
    # A partial convert (--start 1.0 --end 2.0): audio cut to that second, starting at time 0.
    part = join_segments(
        segments, tmp_path / "part.mp4", audio_from=source, audio_start_s=1.0, audio_end_s=2.0
    )
    assert _audio_seconds(part) == pytest.approx(1.0, abs=0.03)
    with av.open(str(part)) as container:
        stream = container.streams.audio[0]
        first = next(p for p in container.demux(stream) if p.size)
        assert abs(float(first.pts * stream.time_base)) < 0.03


def test_pcm_audio_is_transcoded_and_cut_to_the_sample(tmp_path: Path) -> None:
    source = tmp_path / "source.mov"
    _source_with_audio(source, 2.0, codec="pcm_s16le")
    segments = _write_segments(tmp_path, [10, 10], VideoEncoding(preset="ultrafast"))
    part = join_segments(
        segments, tmp_path / "part.mp4", audio_from=source, audio_start_s=0.5, audio_end_s=1.1
    )
    with av.open(str(part)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    # AAC frames are 1024 samples: the decode holds the cut plus at most one frame of padding.
    assert 0.6 - 0.005 <= _audio_seconds(part) <= 0.6 + 1024 / 48000 + 0.005


def test_mismatched_segments_give_one_line_and_no_output(tmp_path: Path) -> None:
    good = _write_segments(tmp_path, [4, 4], VideoEncoding(preset="ultrafast"))
    other_size = tmp_path / "wide.mp4"
    with VideoWriter(other_size, FPS, VideoEncoding(preset="ultrafast")) as writer:
        writer.write_many(np.zeros((3, 48, 80, 3), np.uint8))
    other_codec = tmp_path / "hevc.mp4"
    with VideoWriter(other_codec, FPS, VideoEncoding(codec="h265", preset="ultrafast")) as writer:
        writer.write_many(_moving_frames(0, 3))
    other_crf = tmp_path / "crf.mp4"
    with VideoWriter(other_crf, FPS, VideoEncoding(crf=30, preset="ultrafast")) as writer:
        writer.write_many(_moving_frames(0, 3))
    before = sorted(p.name for p in tmp_path.iterdir())
    for odd, words in ((other_size, "size"), (other_codec, "codec"), (other_crf, "parameters")):
        with pytest.raises(InputError, match=words) as info:
            join_segments([*good, odd], tmp_path / "out.mp4")
        assert "\n" not in str(info.value) and odd.name in str(info.value)
    with pytest.raises(InputError, match="not found"):
        join_segments([*good, tmp_path / "missing.mp4"], tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_join_refuses_to_replace_an_existing_output(tmp_path: Path) -> None:
    segments = _write_segments(tmp_path, [3], VideoEncoding(preset="ultrafast"))
    existing = tmp_path / "done.mp4"
    existing.write_bytes(b"user file")
    with pytest.raises(InputError, match="already exists"):
        join_segments(segments, existing)
    assert existing.read_bytes() == b"user file"
    join_segments(segments, existing, overwrite=True)
    assert _decode(existing)[0].shape[0] == 3
