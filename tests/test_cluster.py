"""Segments of one video on a Ray cluster (issue 10): a local Ray of 2 CPUs started here."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from framematrix.config import ConvertConfig
from framematrix.pipeline import convert
from framematrix.progress import Cancelled, Progress
from framematrix.work import MANIFEST, work_folder_for
from test_long_video import _textured, _write_video  # the same synthetic clips

try:
    import ray
except ImportError:
    pytest.skip(
        "the cluster tests need Ray: pip install 'framematrix[cluster]'", allow_module_level=True
    )

SHOTS = (30, 24, 36)  # three shots; cut file "30\n54\n"


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _clip(folder: Path, height: int, width: int) -> tuple[Path, Path, Path]:
    """A three-shot video, its depth (one .npy, a ramp with a near box, other range per shot)
    and the cut file."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.concatenate([_textured(n, height, width, seed) for seed, n in enumerate(SHOTS)])
    depth = []
    for n, (lo, hi) in zip(SHOTS, ((0.0, 10.0), (50.0, 300.0), (2.0, 3.0))):
        d = np.broadcast_to(np.linspace(lo, hi, width, dtype=np.float32), (n, height, width))
        d = d.copy()
        d[:, height // 4 : height // 2, width // 3 : width // 2] = hi * 1.5
        depth.append(d)
    np.save(folder / "depth.npy", np.concatenate(depth))
    (folder / "cuts.txt").write_text("30\n54\n")
    return _write_video(folder / "in.mp4", frames), folder / "depth.npy", folder / "cuts.txt"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the whole module (convert then uses it as it is)."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def small(tmp_path_factory):  # noqa: ANN001, ANN201
    """320x192 input scaled to --max-width 256, 12-frame segments (8 segments in 3 shots), and
    its single-process output."""
    folder = tmp_path_factory.mktemp("small")
    video, depth, cuts = _clip(folder, 192, 320)
    cfg = ConvertConfig(
        format="half-sbs", shots=str(cuts), preset="ultrafast", segment_frames=12, max_width=256
    )
    reference = convert(video, folder / "local.mp4", depth=depth, config=cfg, progress=False)
    return video, depth, cfg, reference


def test_ray_output_equals_the_single_process_output(local_ray, small, tmp_path) -> None:  # noqa: ANN001
    video, depth, cfg, reference = small
    result = convert(
        video, tmp_path / "ray.mp4", depth=depth, config=cfg, progress=False, ray="local"
    )
    assert result.segments == reference.segments == 8 and result.segments_reused == 0
    assert result.shots == reference.shots == [(0, 30), (30, 54), (54, 90)]
    ours, theirs = _decoded(result.output), _decoded(reference.output)
    assert ours.shape == (90, 152, 256, 3)  # --max-width 256 holds on the workers too
    np.testing.assert_array_equal(ours, theirs)
    # the workers' counters come back to the driver's result
    assert result.views == reference.views
    assert result.hole_fraction == pytest.approx(reference.hole_fraction, rel=1e-6)
    assert not work_folder_for(result.output).exists()


def test_finished_segments_are_not_redone_after_a_driver_interruption(
    local_ray,  # noqa: ANN001
    small,  # noqa: ANN001
    tmp_path,  # noqa: ANN001
) -> None:
    video, depth, cfg, reference = small
    output = tmp_path / "ray.mp4"

    def cancel_after_a_segment(event) -> None:  # noqa: ANN001
        if event.pass_name == "convert" and event.done > 0:
            progress.cancel()

    progress = Progress(show=False, callback=cancel_after_a_segment)
    with pytest.raises(Cancelled):
        convert(video, output, depth=depth, config=cfg, progress=progress, ray="local")
    manifest = json.loads((work_folder_for(output) / MANIFEST).read_text())
    done = [s for s in manifest["segments"] if s["sha256"]]
    assert len(done) == 1 and not output.exists()

    events = []
    again = Progress(show=False, callback=events.append)
    result = convert(video, output, depth=depth, config=cfg, progress=again, ray="local")
    assert result.segments_reused == 1 and result.segments == 8
    convert_pass = [e for e in events if e.pass_name == "convert"]
    missing = 90 - (done[0]["end"] - done[0]["start"])
    assert convert_pass[0].total == missing and convert_pass[-1].done == missing
    np.testing.assert_array_equal(_decoded(output), _decoded(reference.output))


def _worker_pids() -> dict[int, str]:
    """The Ray actor processes of framematrix workers and their titles (``ray::_Worker...``)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            title = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if title.startswith("ray::_Worker"):
            found[int(name)] = title
    return found


def _writer_of(path: Path, pids) -> int | None:  # noqa: ANN001
    """The process among ``pids`` that has ``path`` open."""
    target = os.path.realpath(path)
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the writer through /proc")
def test_a_worker_killed_mid_segment_is_restarted_and_its_segment_redone(
    local_ray, tmp_path
) -> None:  # noqa: ANN001
    """SIGKILL the worker process that is writing a segment (it has the segment's temporary
    file open, with bytes in it); the driver still finishes, equal to the single process."""
    video, depth, cuts = _clip(tmp_path / "clip", 384, 640)
    cfg = ConvertConfig(format="half-sbs", shots=str(cuts), preset="ultrafast", segment_frames=40)
    reference = convert(video, tmp_path / "local.mp4", depth=depth, config=cfg, progress=False)
    output = tmp_path / "ray.mp4"
    work = work_folder_for(output)
    stop = threading.Event()
    killed: list[dict] = []

    def kill_one_mid_segment() -> None:
        while not stop.is_set() and not killed:
            workers = _worker_pids()
            for tmp in work.glob(".seg*.tmp-*"):
                pid = _writer_of(tmp, workers)
                if pid is None or tmp.stat().st_size == 0:
                    continue
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
                # still there: the worker died before renaming it, i.e. mid-segment
                killed.append(
                    {"pid": pid, "title": workers[pid], "file": tmp, "left": tmp.exists()}
                )
                break
            time.sleep(0.005)
        while not stop.is_set():  # the restarted actor is a new process
            new = set(_worker_pids()) - set(workers)
            if new:
                killed[0]["restarted"] = new
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_one_mid_segment, daemon=True)
    thread.start()
    try:
        result = convert(video, output, depth=depth, config=cfg, progress=False, ray="local")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert killed, "no worker was seen writing a segment"
    kill = killed[0]
    assert kill["title"].startswith("ray::_Worker.encode"), kill  # it was running a segment
    assert kill["left"], "the kill landed after the segment was complete"
    assert kill.get("restarted"), "no worker process was started after the kill"
    with pytest.raises(ProcessLookupError):
        os.kill(kill["pid"], 0)
    assert result.segments == 3 and result.segments_reused == 0
    np.testing.assert_array_equal(_decoded(output), _decoded(reference.output))


def test_estimated_depth_is_computed_on_the_workers_a_shot_per_task(local_ray, tmp_path) -> None:  # noqa: ANN001
    """Without given depth, the workers estimate each shot into the shared store (the driver
    never loads the depth model); the depth equals the single-process convert's to float
    rounding (a worker runs torch on its one CPU, which sums in another order), and so does
    the output."""
    from framematrix.depth.testing import make_tiny_depth_model
    from framematrix.models import ModelSession

    folder = tmp_path / "clip"
    folder.mkdir()
    frames = np.concatenate([_textured(n, 48, 64, seed) for seed, n in enumerate((10, 8, 12))])
    video = _write_video(folder / "in.mp4", frames)
    (folder / "cuts.txt").write_text("10\n18\n")
    cfg = ConvertConfig(format="half-sbs", shots=str(folder / "cuts.txt"), preset="ultrafast")
    cfg.depth.model = str(make_tiny_depth_model(tmp_path / "tiny-depth"))
    cfg.depth.flow = "dis"
    cfg.depth.device = "cpu"
    cfg.device = "cpu"
    reference = convert(
        video, tmp_path / "local.mp4", config=cfg, progress=False, cache_dir=tmp_path / "c1"
    )
    driver = ModelSession()
    events = []
    result = convert(
        video,
        tmp_path / "ray.mp4",
        config=cfg,
        progress=Progress(show=False, callback=events.append),
        cache_dir=tmp_path / "c2",
        session=driver,
        ray="local",
    )
    assert driver.loads.get("depth", 0) == 0  # estimated on the workers, not here
    depth_events = [e for e in events if e.pass_name == "depth"]
    assert depth_events and depth_events[-1].done == depth_events[-1].total == 30
    stores = sorted((tmp_path / "c2").glob("depth-*"))
    assert len(stores) == 2 and all(list(s.glob("d*.npy")) for s in stores)  # raw and steadied
    assert [s.name for s in stores] == sorted(s.name for s in (tmp_path / "c1").glob("depth-*"))
    for store in stores:
        for shard in store.glob("d*.npy"):
            ours, theirs = np.load(shard), np.load(tmp_path / "c1" / store.name / shard.name)
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())
    ours, theirs = _decoded(result.output).astype(int), _decoded(reference.output).astype(int)
    assert ours.shape == theirs.shape == (30, 48, 64, 3)
    assert np.mean(ours == theirs) > 0.995 and np.abs(ours - theirs).max() <= 8


def test_a_batch_folder_runs_on_ray_and_keeps_going(local_ray, tmp_path) -> None:  # noqa: ANN001
    """``--ray`` with a folder: each video's segments run on the workers, a broken file is
    reported and the next one still converts, equal to its single-process output."""
    from framematrix.batch import convert_folder

    videos, depths = tmp_path / "in", tmp_path / "depth"
    videos.mkdir()
    depths.mkdir()
    frames = _textured(20, 48, 64, seed=5)
    _write_video(videos / "b_good.mp4", frames)
    (videos / "a_broken.mp4").write_bytes(b"not a video")
    ramp = np.broadcast_to(np.linspace(1.0, 9.0, 64, dtype=np.float32), (20, 48, 64))
    np.save(depths / "b_good.npy", ramp.copy())
    np.save(depths / "a_broken.npy", ramp.copy())
    cfg = ConvertConfig(format="half-sbs", shots="none", preset="ultrafast", segment_frames=8)
    reference = convert(
        videos / "b_good.mp4",
        tmp_path / "ref.mp4",
        depth=depths / "b_good.npy",
        config=cfg,
        progress=False,
    )
    result = convert_folder(
        videos,
        tmp_path / "out",
        depth=depths,
        config=cfg,
        keep_going=True,
        progress=False,
        ray="local",
    )
    status = {item.input.name: item.status for item in result.items}
    assert status == {"a_broken.mp4": "failed", "b_good.mp4": "converted"}
    good = next(i for i in result.items if i.status == "converted")
    np.testing.assert_array_equal(_decoded(good.output), _decoded(reference.output))


def test_a_killed_driver_resumes_from_the_manifest(local_ray, small, tmp_path) -> None:  # noqa: ANN001
    """``framematrix convert --ray local`` killed with SIGKILL (its whole process group, Ray's
    processes too, as a power cut would) once some segments are recorded; the same job run
    again reuses them and gives the single-process output."""
    import subprocess
    import sys

    video, depth, cfg, reference = small
    output = tmp_path / "ray.mp4"
    manifest = work_folder_for(output) / MANIFEST
    command = [  # paths relative to the driver's folder: the workers get them made absolute
        sys.executable, "-m", "framematrix.cli", "convert", os.path.relpath(video, tmp_path),
        "-o", "ray.mp4", "--depth", os.path.relpath(depth, tmp_path), "--format", "half-sbs",
        "--shots", cfg.shots, "--preset", "ultrafast", "--segment-frames", "12",
        "--max-width", "256", "--ray", "local", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, start_new_session=True, stderr=subprocess.PIPE
    )
    done: list = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                segments = json.loads(manifest.read_text())["segments"]
            except (OSError, ValueError, KeyError):
                segments = []
            done = [s for s in segments if s["sha256"]]
            if len(done) >= 2:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 2 <= len(done) < 8 and not output.exists()
    result = convert(video, output, depth=depth, config=cfg, progress=False, ray="local")
    assert result.segments == 8 and result.segments_reused >= len(done)
    np.testing.assert_array_equal(_decoded(output), _decoded(reference.output))
