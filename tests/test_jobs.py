"""The job API: queue, progress events, cancel (nothing at the output), models kept loaded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from framematrix.config import ConvertConfig
from framematrix.errors import InputError
from framematrix.export.writers import write_video
from framematrix.io.atomic import atomic_path
from framematrix.jobs import Session, run_convert


def make_clip(folder: Path, frames: int = 24, width: int = 128, height: int = 96) -> Path:
    """A moving-pattern mp4 of ``frames`` frames and a matching depth ``.npy`` [F, H, W]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    video = []
    depth = []
    for t in range(frames):
        r = (xx * 2 + t * 3) % 256
        g = (yy * 2 + t) % 256
        b = ((xx + yy) + t * 5) % 256
        video.append(np.stack([r, g, b], -1).astype(np.uint8))
        cx = width / 2 + 10 * np.sin(t / 4)
        disc = ((xx - cx) ** 2 + (yy - height / 2) ** 2) < (height / 4) ** 2
        depth.append(np.where(disc, 200.0, 40.0 + yy / height * 40.0).astype(np.float32))
    clip = folder / "clip.mp4"
    write_video(clip, np.stack(video), fps=24, crf=10, preset="ultrafast")
    np.save(folder / "clip_depth.npy", np.stack(depth))
    return clip


def decoded_shape(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) of a video by decoding every frame."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return len(frames), frames[0].shape[0], frames[0].shape[1]


def fast_config() -> ConvertConfig:
    config = ConvertConfig()
    config.preset = "ultrafast"
    config.chunk_frames = 8
    return config


def slow_runner(seconds_per_step: float = 0.05, steps: int = 40):
    """A runner that writes its output atomically, step by step, reporting progress."""

    def run(input, output, *, progress, **_):
        with atomic_path(output) as tmp:
            with progress.task("convert", steps) as task:
                with open(tmp, "wb") as f:
                    for _ in range(steps):
                        time.sleep(seconds_per_step)
                        f.write(b"x" * 100)
                        task.update(1)
        return output

    return run


def test_cancel_a_running_job_leaves_no_output(tmp_path):
    with Session(runner=slow_runner()) as session:
        job = session.submit(tmp_path / "in.mp4", tmp_path / "out.mp4")
        while job.latest() is None or job.latest().done < 3:
            assert not job.done, job.error
            time.sleep(0.01)
        assert job.state == "running"
        job.cancel()
        assert job.wait(10) == "cancelled"
    assert not (tmp_path / "out.mp4").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
    event = job.events["convert"]
    assert 3 <= event.done < 40 and event.total == 40


def test_cancel_the_real_pipeline_midway_leaves_no_output(tmp_path):
    clip = make_clip(tmp_path)
    out = tmp_path / "out" / "sbs.mp4"

    def cancel_after_first_chunk(job, event):
        if event.pass_name == "convert" and event.done > 0:
            job.cancel()

    with Session() as session:
        job = session.submit(
            clip,
            out,
            depth=tmp_path / "clip_depth.npy",
            config=fast_config(),
            on_event=cancel_after_first_chunk,
        )
        assert job.wait(60) == "cancelled", job.error
    assert job.events["convert"].done < 24
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".framematrix")] == []


def test_a_job_reports_passes_and_result(tmp_path):
    clip = make_clip(tmp_path)
    seen = []
    with Session() as session:
        job = session.submit(
            clip,
            tmp_path / "sbs.mp4",
            depth=tmp_path / "clip_depth.npy",
            config=fast_config(),
            on_event=lambda job, event: seen.append(event),
        )
        assert job.wait(60) == "done", job.error
    assert job.result.frames == 24
    assert decoded_shape(tmp_path / "sbs.mp4") == (24, 96, 256)
    final = job.events["convert"]
    assert final.done == final.total == 24 and final.finished
    dones = [e.done for e in seen if e.pass_name == "convert"]
    assert dones == sorted(dones) and dones[-1] == 24 and len(set(dones)) >= 3  # 8-frame chunks
    assert all(e.job == job.id for e in seen)


def test_second_job_reuses_the_loaded_depth_model(tmp_path):
    from framematrix.depth.testing import make_tiny_depth_model

    model = make_tiny_depth_model(tmp_path / "tiny-depth")
    clip = make_clip(tmp_path, frames=6, width=64, height=48)
    config = fast_config()
    config.depth.model = str(model)
    config.depth.flow = "dis"
    config.depth.device = "cpu"
    config.device = "cpu"
    with Session() as session:
        first = session.submit(clip, tmp_path / "a.mp4", config=config)
        # another output and other stereo settings: depth is estimated again (own cache folder)
        config.stereo.baseline = 0.05
        second = session.submit(
            clip, tmp_path / "b.mp4", config=config, cache_dir=tmp_path / "other-cache"
        )
        assert first.wait(120) == "done", first.error
        assert second.wait(120) == "done", second.error
        assert session.models.loads["depth"] == 1
        assert session.models.loads["flow"] == 1
    assert "depth" in first.events and "depth" in second.events
    assert decoded_shape(tmp_path / "a.mp4") == (6, 48, 128)
    assert decoded_shape(tmp_path / "b.mp4") == (6, 48, 128)


def test_one_job_at_a_time_and_queue_positions(tmp_path):
    running = []
    started = []
    overlap = []
    gate = threading.Event()

    def runner(input, output, *, progress, **_):
        running.append(input)
        started.append(Path(input))
        overlap.append(len(running))
        gate.wait(10)
        running.remove(input)
        return output

    with Session(runner=runner, workers=1) as session:
        jobs = [session.submit(tmp_path / f"{i}.mp4", tmp_path / f"o{i}.mp4") for i in range(3)]
        while jobs[0].state != "running":
            time.sleep(0.01)
        assert [session.position(j) for j in jobs] == [None, 0, 1]
        jobs[1].cancel()  # a queued job never starts
        assert jobs[1].state == "cancelled"
        assert session.position(jobs[2]) == 0
        gate.set()
        assert jobs[2].wait(10) == "done"
    assert jobs[0].state == "done"
    assert max(overlap) == 1
    assert started == [tmp_path / "0.mp4", tmp_path / "2.mp4"]


def test_a_failed_job_reports_one_line_and_the_worker_goes_on(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    clip = make_clip(tmp_path, frames=4)
    with Session() as session:
        failed = session.submit(bad, tmp_path / "x.mp4", depth=tmp_path / "clip_depth.npy")
        good = session.submit(
            clip, tmp_path / "y.mp4", depth=tmp_path / "clip_depth.npy", config=fast_config()
        )
        assert failed.wait(30) == "failed"
        assert good.wait(60) == "done", good.error
    assert "broken.mp4" in failed.error and "\n" not in failed.error
    assert not (tmp_path / "x.mp4").exists()


def test_run_convert_rejects_bad_input_like_convert(tmp_path):
    with pytest.raises(InputError):
        run_convert(tmp_path / "missing.mp4", tmp_path / "o.mp4", depth=tmp_path / "d.npy")
