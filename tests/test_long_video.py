"""Videos of any length: per-shot depth, resumable segments, bad input of long jobs (issue 7)."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from framematrix.cli import main
from framematrix.config import ConvertConfig
from framematrix.depth.provider import compute_shot_stats
from framematrix.depth.store import DepthNormalizer, DepthStore, ShotDepthStats
from framematrix.geometry.normalize import depth_to_z
from framematrix.io.video import read_clip
from framematrix.pipeline import convert
from framematrix.work import plan_segments, work_folder_for

ROOT = Path(__file__).resolve().parents[1]


def _textured(count: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width + count, 3), dtype=np.uint8)
    return np.stack([base[:, i : i + width] for i in range(count)])


def _write_video(path: Path, frames: np.ndarray, fps: int = 24) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _ramp_depth(count: int, height: int, width: int, lo: float, hi: float) -> np.ndarray:
    x = np.linspace(lo, hi, width, dtype=np.float32)
    depth = np.broadcast_to(x, (count, height, width)).copy()
    depth[:, height // 4 : height // 2, width // 3 : width // 2] = hi * 1.5
    return depth


def _decoded(path: Path) -> np.ndarray:
    return read_clip(path).frames


# ----------------------------------------------------------------------------- normalisation


def test_one_shot_normalisation_equals_the_whole_clip_one() -> None:
    """A shot's normaliser applied chunk by chunk gives exactly depth_to_z of the whole clip."""
    rng = np.random.default_rng(1)
    depth = rng.random((9, 20, 30), dtype=np.float32) * 200
    depth[3, 4, 5] = np.nan
    stats = compute_shot_stats(_Arr(depth), [(0, 9)], kind="relative", near=None, far=10.0)
    norm = DepthNormalizer("relative", stats[0], near=None, far=10.0)
    with pytest.warns(RuntimeWarning):
        whole = depth_to_z(torch.from_numpy(depth), "relative", near=None, far=10.0)
    chunks = torch.cat([norm.z(torch.from_numpy(depth[a : a + 4])) for a in range(0, 9, 4)])
    torch.testing.assert_close(chunks, whole, rtol=0, atol=0, equal_nan=True)


def test_shot_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(2)
    depth = rng.gamma(2.0, 10.0, (6, 40, 50)).astype(np.float32)
    stats = compute_shot_stats(_Arr(depth), [(0, 6)], kind="relative", near=None, far=10.0)[0]
    d = (depth - depth.min()) / (depth.max() - depth.min()) + 0.1
    sub = d[:, ::2, ::2]
    width = (1.1 - 0.1) / 4096
    for q, got in ((1, stats.inv_p1), (50, stats.inv_p50), (99, stats.inv_p99)):
        assert abs(got - np.percentile(sub, q)) <= 2 * width


def test_shot_range_ignores_nan_and_inf() -> None:
    rng = np.random.default_rng(5)
    depth = rng.uniform(3.0, 9.0, (4, 10, 12)).astype(np.float32)
    depth[1, 2, 3] = 1.5  # the true minimum
    depth[2, 0, 0] = 11.0  # the true maximum
    clean = compute_shot_stats(_Arr(depth), [(0, 4)], kind="metric", near=None, far=None)[0]
    assert (clean.low, clean.high) == (1.5, 11.0)
    dirty = depth.copy()
    dirty[0, 0, :3] = (np.nan, np.inf, -np.inf)
    got = compute_shot_stats(_Arr(dirty), [(0, 4)], kind="metric", near=None, far=None)[0]
    assert (got.low, got.high) == (1.5, 11.0)
    dirty[:] = np.nan
    empty = compute_shot_stats(_Arr(dirty), [(0, 4)], kind="metric", near=None, far=None)[0]
    assert empty.low is None and empty.high is None


class _Arr:
    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.a[start:stop]


def test_depth_store_round_trip_and_resume(tmp_path: Path) -> None:
    store = DepthStore(tmp_path / "s", 10, 4, 5)
    data = np.arange(10 * 4 * 5, dtype=np.float32).reshape(10, 4, 5)
    store.write(0, data[:4])
    store.write(4, data[4:7])
    assert store.covered(0, 7) and not store.covered(0, 8)
    again = DepthStore(tmp_path / "s", 10, 4, 5)  # a later run sees what was finished
    np.testing.assert_array_equal(again.read(2, 7), data[2:7])
    again.set_shot_stats(ShotDepthStats(0, 10, low=0.0, high=1.0))
    assert DepthStore(tmp_path / "s", 10, 4, 5).shot_stats(0, 10).high == 1.0


# ----------------------------------------------------------------------------- shots


def test_joined_clips_convert_like_each_clip_alone(tmp_path: Path) -> None:
    """Per-shot depth normalisation: a video of three clips with depth of different ranges
    converts, frame for frame, like each clip converted on its own."""
    sizes = (10, 7, 12)
    clips = [_textured(n, 48, 64, seed) for seed, n in enumerate(sizes)]
    depths = [
        _ramp_depth(n, 48, 64, lo, hi)
        for n, (lo, hi) in zip(sizes, ((0.0, 10.0), (50.0, 300.0), (2.0, 3.0)))
    ]
    joined = np.concatenate(clips)
    (tmp_path / "cuts.txt").write_text("10\n17\n")
    cfg = ConvertConfig(format="half-sbs", shots=str(tmp_path / "cuts.txt"), preset="ultrafast")
    from framematrix.io.array_source import ArraySource

    convert(
        ArraySource(joined, 24, name="joined"),
        tmp_path / "joined.mp4",
        depth=np.concatenate(depths),
        config=cfg,
        progress=False,
    )
    whole = _decoded(tmp_path / "joined.mp4")
    start = 0
    for i, (clip, depth) in enumerate(zip(clips, depths)):
        one = ConvertConfig(format="half-sbs", shots="none", preset="ultrafast")
        out = tmp_path / f"clip{i}.mp4"
        convert(ArraySource(clip, 24, name=f"c{i}"), out, depth=depth, config=one, progress=False)
        np.testing.assert_array_equal(whole[start : start + len(clip)], _decoded(out))
        start += len(clip)


# ----------------------------------------------------------------------------- segments


def test_compute_threads_give_the_output_of_one_thread(tmp_path: Path, monkeypatch) -> None:
    """The CPU's compute threads (parts of each chunk side by side) change nothing: the same
    frames for any count of threads and any chunk size, with the default edge band."""
    import framematrix.pipeline as pipeline
    from framematrix.io.array_source import ArraySource

    clips = [_textured(13, 48, 64, 1), _textured(16, 48, 64, 2)]
    depth = np.concatenate([_ramp_depth(13, 48, 64, 0.0, 10.0), _ramp_depth(16, 48, 64, 5, 9)])
    (tmp_path / "cuts.txt").write_text("13\n")
    used = []
    parallel = pipeline._Job._parallel_parts

    def spy(self, start, end, shot, task, workers):  # noqa: ANN001, ANN202
        used.append(workers)
        return parallel(self, start, end, shot, task, workers)

    monkeypatch.setattr(pipeline._Job, "_parallel_parts", spy)
    outputs = []
    for chunk, workers in ((16, 1), (16, 2), (5, 2), (7, 3)):
        monkeypatch.setattr(pipeline, "compute_workers", lambda *_, w=workers: w)
        cfg = ConvertConfig(format="half-sbs", shots=str(tmp_path / "cuts.txt"), preset="ultrafast")
        cfg.chunk_frames = chunk
        out = tmp_path / f"c{chunk}w{workers}.mp4"
        convert(ArraySource(np.concatenate(clips), 24, name="c"), out, depth=depth, config=cfg)
        outputs.append(_decoded(out))
    assert used == [2, 2, 2, 2, 3, 3]  # one call per shot, none for the single thread
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])


def test_compute_workers_follow_the_cores_and_the_fill(monkeypatch) -> None:
    from framematrix.pipeline import compute_threads, compute_workers

    cpu, cfg = torch.device("cpu"), ConvertConfig()
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert compute_workers(cfg, cpu) == 4 and compute_threads(4) == 2  # at most 4 threads
    cfg.chunk_frames = 3
    assert compute_workers(cfg, cpu) == 3  # at most one per frame of a chunk
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # e.g. a Ray actor of one CPU
    assert compute_workers(ConvertConfig(), cpu) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert compute_workers(ConvertConfig(), cpu) == 2 and compute_threads(2) == 1
    assert compute_workers(ConvertConfig(), torch.device("cuda")) == 1
    assert compute_workers(ConvertConfig(fill="diffusion"), cpu) == 1


def test_plan_segments_cuts_long_shots_and_never_crosses_a_cut() -> None:
    segs = plan_segments([(0, 25), (25, 30)], 10)
    assert [(s.start, s.end, s.shot) for s in segs] == [
        (0, 10, 0),
        (10, 20, 0),
        (20, 25, 0),
        (25, 30, 1),
    ]

    def windows(a: int, b: int) -> list[tuple[int, int]]:  # 16-frame windows, overlap 4
        out, s = [], a
        while True:
            e = min(b, s + 16)
            out.append((max(a, e - 16), e))
            if e == b:
                return out
            s = e - 4

    segs = plan_segments([(0, 60)], 30, windows=windows)
    assert segs[0].start == 0 and segs[-1].end == 60
    for prev, seg in zip(segs, segs[1:]):
        assert seg.start == prev.end
        assert seg.window_start < seg.start  # the first window re-reads the overlap frames


def _make_input(tmp_path: Path, frames: int = 48) -> tuple[Path, Path]:
    video = _write_video(tmp_path / "in.mp4", _textured(frames, 72, 96, 3))
    np.save(tmp_path / "depth.npy", _ramp_depth(frames, 72, 96, 1.0, 9.0))
    return video, tmp_path / "depth.npy"


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "framematrix.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _convert_args(video: Path, depth: Path, out: Path, *extra: str) -> list[str]:
    return [
        "convert",
        str(video),
        "--depth",
        str(depth),
        "-o",
        str(out),
        "--shots",
        "none",
        "--segment-frames",
        "4",
        "--preset",
        "ultrafast",
        "-q",
        *extra,
    ]


def test_sigkill_then_resume_gives_the_uninterrupted_output(tmp_path: Path) -> None:
    video, depth = _make_input(tmp_path, 48)
    reference = tmp_path / "ref.mp4"
    assert main(_convert_args(video, depth, reference)) == 0

    out = tmp_path / "out.mp4"
    manifest = work_folder_for(out) / "manifest.json"
    proc = _cli(_convert_args(video, depth, out))
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            segs = json.loads(manifest.read_text())["segments"]
            done = sum(1 for s in segs if s["sha256"])
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the conversion finished before it could be killed (machine too fast)")
    assert not out.exists()
    assert 2 <= done < 12

    resumed = _cli(_convert_args(video, depth, out))
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    reused = int(stdout.split(" of 12 segments resumed")[0].rsplit(", ", 1)[1])
    assert reused >= 2  # the second run did less work
    np.testing.assert_array_equal(_decoded(out), _decoded(reference))
    assert not work_folder_for(out).exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_changed_settings_start_afresh_with_one_line(tmp_path: Path, capsys) -> None:
    video, depth = _make_input(tmp_path, 12)
    out = tmp_path / "out.mp4"
    work = work_folder_for(out)
    work.mkdir()
    (work / "manifest.json").write_text(
        json.dumps({"version": 1, "identity": {"settings": "other"}, "segments": []})
    )
    (work / "seg00000.mp4").write_bytes(b"stale")
    assert main(_convert_args(video, depth, out)) == 0
    err = capsys.readouterr().err
    assert "changed since the interrupted run; starting afresh" in err
    assert len(_decoded(out)) == 12


def test_leftover_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    video, depth = _make_input(tmp_path, 8)
    stale = tmp_path / ".out.tmp-deadbeef.mp4"
    stale.write_bytes(b"half-written")
    assert main(_convert_args(video, depth, tmp_path / "out.mp4")) == 0
    assert not stale.exists()


def test_disk_full_mid_segment_keeps_finished_segments(tmp_path: Path, capsys, monkeypatch):
    video, depth = _make_input(tmp_path, 16)
    out = tmp_path / "out.mp4"
    import framematrix.pipeline as pipeline

    real = pipeline.write_video_file
    calls = {"n": 0}

    def full_disk(path, frames, **kwargs):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            for i, _ in enumerate(frames):
                if i == 2:
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, frames, **kwargs)

    monkeypatch.setattr(pipeline, "write_video_file", full_disk)
    code = main(_convert_args(video, depth, out))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "No space left on device" in lines[0], err
    assert not out.exists()
    segs = json.loads((work_folder_for(out) / "manifest.json").read_text())["segments"]
    assert [bool(s["sha256"]) for s in segs] == [True, True, False, False]
    monkeypatch.setattr(pipeline, "write_video_file", real)
    assert main(_convert_args(video, depth, out)) == 0
    assert "2 of 4 segments resumed" in capsys.readouterr().out


def test_unwritable_work_folder_is_one_line(tmp_path: Path, capsys) -> None:
    video, depth = _make_input(tmp_path, 8)
    out = tmp_path / "out.mp4"
    work_folder_for(out).write_text("a file where the work folder goes")
    code = main(_convert_args(video, depth, out))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert str(work_folder_for(out)) in lines[0] and "work folder" in lines[0]
    assert not out.exists()


def test_start_end_convert_a_part(tmp_path: Path) -> None:
    video, depth = _make_input(tmp_path, 24)
    full, part = tmp_path / "full.mp4", tmp_path / "part.mp4"
    lossless = ("--crf", "0")
    assert main(_convert_args(video, depth, full, "--segment-frames", "100", *lossless)) == 0
    assert main(_convert_args(video, depth, part, "--start", "5f", "--end", "0.5", *lossless)) == 0
    got = _decoded(part)
    assert len(got) == 7  # frames 5..11 (0.5 s at 24 fps = frame 12, exclusive)
    np.testing.assert_array_equal(got, _decoded(full)[5:12])


def test_help_needs_no_torch() -> None:
    code = (
        "import sys; from framematrix.cli import main\n"
        "try:\n    main(['convert', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "METHOD.md" not in proc.stdout
    assert "--depth-budget" in proc.stdout or "--baseline" in proc.stdout


@pytest.mark.parametrize("value", ["60", "-1"])
def test_bad_crf_is_one_line(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["convert", "x.mp4", "-o", "y.mp4", "--crf", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--crf" in err[0]


def test_write_error_names_the_output_not_its_temporary(tmp_path: Path, capsys, monkeypatch):
    """A refused write (read-only folder, full disk) names the output the user gave."""
    video, depth = _make_input(tmp_path, 4)
    import framematrix.export.writers as writers

    real_open = writers.av.open

    def refuse(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if "w" in args:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(writers.av, "open", refuse)
    out = tmp_path / "out.mkv"
    code = main(_convert_args(video, depth, out))
    line = capsys.readouterr().err.strip()
    assert code == 2 and "Permission denied" in line, line
    assert ".tmp" not in line and "out.mkv" in line
