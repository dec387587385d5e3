"""Apple spatial video (MV-HEVC): the splice decodes back to both eyes, the boxes are Apple's."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import shared_path
from framematrix.errors import InputError, ShapeError
from framematrix.export.mvhevc import write_spatial_video
from framematrix.export.mvhevc.bitstream import BitReader, BitWriter, escape, unescape
from framematrix.export.mvhevc.mov import (
    box_paths,
    config_record_nal_units,
    read_tree,
)
from framematrix.export.mvhevc.nal import NalUnit, split_annexb, split_length_prefixed
from framematrix.export.mvhevc.params import parse_pps, parse_sps, parse_vps
from framematrix.export.mvhevc.splice import (
    SLICE_B,
    build_3d_reference_displays_sei,
    parse_slice_header,
)
from framematrix.export.mvhevc.writer import _encode_eyes, _splice_and_mux, iter_nal_units

APPLE = ("data", "mvhevc", "apple_stereo_spatial.mp4")
DISPARITY = 6  # pixels between the test eyes: a wrong view order costs ~17 dB


def scene(frames: int, height: int, width: int, disparity: float) -> list[np.ndarray]:
    """[H, W, 3] uint8 RGB frames: a moving luminance texture, gently tinted, shifted per eye."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    tint = np.stack(
        [
            1.0 + 0.15 * np.sin(2 * np.pi * yy / 300.0),
            np.ones_like(yy),
            0.85 + 0.1 * np.cos(2 * np.pi * xx / 400.0),
        ],
        -1,
    )
    out = []
    for t in range(frames):
        x = xx + disparity + 1.5 * t
        luma = 120 + 40 * np.sin(2 * np.pi * x / 48.0) * np.cos(2 * np.pi * (yy - 0.5 * t) / 44.0)
        out.append(np.clip(luma[..., None] * tint, 0, 255).astype(np.uint8))
    return out


def psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    decoded = decoded[: reference.shape[0], : reference.shape[1]].astype(np.float64)
    mse = np.mean((decoded - reference) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def decode(path: Path, views: bool = True, fmt: str = "rgb24") -> list[av.VideoFrame]:
    """Frames in output order; with ``views`` both views (view 0, then view 1, per time)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if views:
            stream.codec_context.options = {"view_ids": "-1"}
        return [frame.to_ndarray(format=fmt) for frame in container.decode(stream)]


def check_views(path: Path, left: list[np.ndarray], right: list[np.ndarray]) -> None:
    frames = decode(path)
    assert len(frames) == 2 * len(left)
    for i, (want_left, want_right) in enumerate(zip(left, right)):
        view0, view1 = frames[2 * i], frames[2 * i + 1]
        assert psnr(view0, want_left) >= 40.0, f"frame {i} view 0"
        assert psnr(view1, want_right) >= 40.0, f"frame {i} view 1"
        # The order is what tells the views apart: the swapped pairing must be far worse.
        assert psnr(view0, want_right) < psnr(view0, want_left) - 10


def sample_entry(path: Path):
    moov = next(box for box in read_tree(path) if box.type == "moov")
    entry = moov.find("trak", "mdia", "minf", "stbl", "stsd", "hvc1")
    assert entry is not None
    return moov, entry


def child(box, kind: str):
    found = [c for c in box.children if c.type == kind]
    assert len(found) == 1, f"{kind} in {box.type}"
    return found[0]


def vexu_values(entry) -> dict:
    eyes = child(child(entry, "vexu"), "eyes")
    return {
        "stri": child(eyes, "stri").payload[4],
        "hero": child(eyes, "hero").payload[4],
        "blin": struct.unpack(">I", child(child(eyes, "cams"), "blin").payload[4:])[0],
        "dadj": struct.unpack(">i", child(child(eyes, "cmfy"), "dadj").payload[4:])[0],
        "hfov": struct.unpack(">I", child(entry, "hfov").payload)[0],
    }


# ----------------------------------------------------------------------------- bit level


def test_exp_golomb_and_fields_round_trip():
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(0, 1 << 20, 200)] + [0, 1, 2, 3, 254, 255, 256]
    signed = [int(v) for v in rng.integers(-(1 << 18), 1 << 18, 200)] + [0, -1, 1]
    w = BitWriter()
    for v, s in zip(values, signed):
        w.ue(v)
        w.se(s)
        w.u(5, v & 31)
    w.trailing_bits()
    r = BitReader(w.to_bytes())
    for v, s in zip(values, signed):
        assert r.ue() == v
        assert r.se() == s
        assert r.u(5) == v & 31
    # Known codes from the H.265 tables (9.2): ue 0 -> 1, 1 -> 010, 4 -> 00101.
    w = BitWriter()
    for v in (0, 1, 4):
        w.ue(v)
    w.u(7, 0)
    assert w.to_bytes() == bytes([0b10100010, 0b10000000])


def test_emulation_prevention():
    rng = np.random.default_rng(1)
    for _ in range(500):
        rbsp = bytes(rng.choice([0, 0, 0, 1, 2, 3, 4, 255], size=int(rng.integers(0, 24))))
        payload = escape(rbsp)
        assert unescape(payload) == rbsp
        for pattern in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"):
            assert pattern not in payload
        assert not payload.endswith(b"\x00\x00")  # trailing cabac_zero_words get a 03
    assert escape(b"\x00\x00\x01\x00\x00") == b"\x00\x00\x03\x01\x00\x00\x03"


def test_chunked_reader_matches_whole_file(tmp_path):
    left = scene(6, 64, 96, 0)
    rate = Fraction(24)
    from framematrix.export.mvhevc.writer import x265_params

    options = {"crf": "20", "preset": "ultrafast", "x265-params": x265_params(4, 1)}
    a, b = tmp_path / "a.hevc", tmp_path / "b.hevc"
    _encode_eyes(zip(left, left), a, b, rate, options, None, False)
    whole = split_annexb(a.read_bytes())
    assert len(whole) > 10
    for chunk in (5, 64, 1 << 20):
        assert list(iter_nal_units(a, chunk=chunk)) == whole


# ----------------------------------------------------------------------------- Apple's file


def test_sei_and_parameter_sets_match_apples_structure(tmp_path):
    apple = shared_path(*APPLE)
    _, apple_entry = sample_entry(apple)
    apple_hvcc = config_record_nal_units(child(apple_entry, "hvcC"))
    apple_sei = next(NalUnit.parse(raw) for kind, raw in apple_hvcc if kind == 39)
    # Our 3D reference displays SEI is Apple's, bit for bit.
    assert build_3d_reference_displays_sei().to_bytes() == apple_sei.to_bytes()

    path = write_spatial_video(
        tmp_path / "s.mov", zip(scene(4, 64, 96, 0), scene(4, 64, 96, DISPARITY)), fps=24
    )
    _, entry = sample_entry(path)
    ours = {kind: NalUnit.parse(raw) for kind, raw in config_record_nal_units(child(entry, "hvcC"))}
    apple_units = {kind: NalUnit.parse(raw) for kind, raw in apple_hvcc}
    assert sorted(ours) == sorted(apple_units) == [32, 33, 34, 39]
    assert ours[39].to_bytes() == apple_sei.to_bytes()

    vps, apple_vps = parse_vps(ours[32].rbsp()), parse_vps(apple_units[32].rbsp())
    for vps_info in (vps, apple_vps):
        ext = vps_info["ext"]
        assert vps_info["max_layers_minus1"] == 1
        assert vps_info["layer_id_included"] == [[1, 1]]
        assert ext["scalability_mask"][1] == 1 and sum(ext["scalability_mask"]) == 1
        assert ext["layer_id_in_nuh"] == [0, 1]
        assert ext["view_id_val"] == [0, 1]
        assert ext["direct_dependency_flag"] == 1
        assert ext["ptl_idx"] == [1, 2]
        assert ext["ptls"][0]["profile_idc"] == 6  # Multiview Main
        assert ext["num_rep_formats_minus1"] == 0
    sps = parse_sps(ours[33].rbsp())
    rep = vps["ext"]["rep_formats"][0]
    assert (rep["width"], rep["height"]) == (sps.width, sps.height) == (96, 64)
    assert vps["ext"]["dpb_size"][0][0] == [sps.dpb[0], sps.dpb[0]]
    # Each layer's parameter sets: lhvC holds a layer-1 SPS (MultiLayerExtSpsFlag) and PPS.
    for source in (apple_entry, entry):
        units = [NalUnit.parse(raw) for _, raw in config_record_nal_units(child(source, "lhvC"))]
        assert [(u.nal_type, u.layer_id) for u in units] == [(33, 1), (34, 1)]
        sps1, pps1 = units[0].rbsp(), units[1].rbsp()
        assert (sps1[0] >> 1) & 7 == 7  # sps_ext_or_max_sub_layers_minus1
        reader = BitReader(pps1)
        assert (reader.ue(), reader.ue()) == (1, 1)  # pps id 1 refers to sps id 1


def test_box_tree_holds_apples_boxes(tmp_path):
    apple = shared_path(*APPLE)
    wanted = [
        "hvcC",
        "lhvC",
        "vexu",
        "vexu/eyes",
        "vexu/eyes/stri",
        "vexu/eyes/hero",
        "vexu/eyes/cams/blin",
        "vexu/eyes/cmfy/dadj",
        "hfov",
    ]
    stem = "moov/trak/mdia/minf/stbl/stsd/hvc1"
    path = write_spatial_video(
        tmp_path / "s.mov",
        zip(scene(4, 64, 96, 0), scene(4, 64, 96, DISPARITY)),
        fps=24,
        baseline_mm=19.24,
        hfov_deg=63.4,
        disparity_adjustment=0.02,
    )
    for file in (apple, path):
        paths = box_paths(file)
        assert stem in paths
        for box in wanted:
            assert f"{stem}/{box}" in paths, f"{box} missing in {file.name}"
    _, apple_entry = sample_entry(apple)
    _, entry = sample_entry(path)
    apple_values = vexu_values(apple_entry)
    assert apple_values == {"stri": 3, "hero": 1, "blin": 19240, "dadj": 200, "hfov": 63400}
    assert vexu_values(entry) == apple_values
    # moov in front of mdat (playable while downloading), and the chunk offsets still point
    # at the samples: the first sample starts with a NAL unit length and a NAL unit header.
    tops = [box.type for box in read_tree(path)]
    assert tops.index("moov") < tops.index("mdat")
    moov, _ = sample_entry(path)
    stco = moov.find("trak", "mdia", "minf", "stbl", "stco")
    first = struct.unpack(">I", stco.payload[8:12])[0]
    data = path.read_bytes()
    length = struct.unpack(">I", data[first : first + 4])[0]
    assert NalUnit.parse(data[first + 4 : first + 4 + length]).layer_id == 0


# ----------------------------------------------------------------------------- end to end


def test_both_views_decode_to_the_eyes(tmp_path):
    left, right = scene(20, 64, 96, 0), scene(20, 64, 96, DISPARITY)
    path = write_spatial_video(tmp_path / "out.mov", zip(left, right), fps=24)
    assert path == tmp_path / "out.mov"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mov"]  # no temporary files left
    check_views(path, left, right)
    # Without view_ids a decoder sees an ordinary 2D video: the left eye.
    base = decode(path, views=False)
    assert len(base) == 20
    assert all(psnr(frame, want) >= 40.0 for frame, want in zip(base, left))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc"
        assert stream.codec_tag == "hvc1"
        assert stream.average_rate == 24


def test_bframes_and_several_keyframes_bit_exact(tmp_path):
    """30 frames, an IDR every 12, 2 B-frames: each view equals its eye's own stream decoded."""
    left, right = scene(30, 64, 96, 0), scene(30, 64, 96, DISPARITY)
    from framematrix.export.mvhevc.writer import x265_params

    rate = Fraction(30000, 1001)
    options = {"crf": "20", "preset": "medium", "x265-params": x265_params(12, 2)}
    lp, rp, mov = tmp_path / "l.hevc", tmp_path / "r.hevc", tmp_path / "m.mov"
    count = _encode_eyes(zip(left, right), lp, rp, rate, options, None, False)
    assert count == 30
    _splice_and_mux(lp, rp, mov, rate, count, None, False)
    views = decode(mov, fmt="yuv420p")
    alone = [decode(p, views=False, fmt="yuv420p") for p in (lp, rp)]
    assert len(views) == 60
    for i in range(30):
        assert np.array_equal(views[2 * i], alone[0][i])
        assert np.array_equal(views[2 * i + 1], alone[1][i])

    path = write_spatial_video(tmp_path / "s.mov", zip(left, right), fps=rate, keyint=12, bframes=2)
    check_views(path, left, right)
    moov, entry = sample_entry(path)
    stbl = moov.find("trak", "mdia", "minf", "stbl")
    stss = child(stbl, "stss").payload
    assert struct.unpack(">I", stss[4:8])[0] == 3  # sync samples at 0, 12, 24
    assert struct.unpack(">3I", stss[8:20]) == (1, 13, 25)
    # B slices in both layers, every sample holds one picture of each layer.
    hvcc = {k: NalUnit.parse(r) for k, r in config_record_nal_units(child(entry, "hvcC"))}
    sps, pps = parse_sps(hvcc[33].rbsp()), parse_pps(hvcc[34].rbsp())
    stsz = child(stbl, "stsz").payload
    sizes = struct.unpack(f">{30}I", stsz[12 : 12 + 120])
    offset = struct.unpack(">I", child(stbl, "stco").payload[8:12])[0]
    data = path.read_bytes()
    slice_types = []
    for size in sizes:  # one chunk: samples are contiguous
        units = list(split_length_prefixed(data[offset : offset + size]))
        vcl = [u for u in units if u.nal_type < 32]
        assert [u.layer_id for u in vcl] == [0, 1]
        slice_types.append(parse_slice_header(vcl[0], sps, pps).slice_type)
        offset += size
    assert slice_types.count(SLICE_B) >= 10
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == rate


@pytest.mark.parametrize("size", [(182, 322), (65, 97)])
def test_sizes_not_multiple_of_8_and_odd(tmp_path, size):
    height, width = size
    left, right = scene(8, height, width, 0), scene(8, height, width, DISPARITY)
    path = write_spatial_video(tmp_path / "s.mov", zip(left, right), fps=25, keyint=4)
    frames = decode(path)
    # 322x182 comes back exactly (conformance window); an odd side gains one replicated row/column.
    assert frames[0].shape == (height + height % 2, width + width % 2, 3)
    check_views(path, left, right)


def test_audio_is_carried(tmp_path):
    audio = tmp_path / "tone.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        t = np.arange(48000) / 48000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, 48000, 1024):
            chunk = samples[start : start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    left, right = scene(12, 64, 96, 0), scene(12, 64, 96, DISPARITY)
    path = write_spatial_video(tmp_path / "a.mov", zip(left, right), fps=24, audio_from=audio)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
    check_views(path, left, right)


def test_bad_input_leaves_nothing(tmp_path):
    frames = scene(3, 64, 96, 0)
    with pytest.raises(InputError, match=r"\.mov"):
        write_spatial_video(tmp_path / "s.mp4", zip(frames, frames), fps=24)
    with pytest.raises(ShapeError, match="no frame pairs"):
        write_spatial_video(tmp_path / "s.mov", [], fps=24)
    small = [f[:32] for f in frames]
    with pytest.raises(ShapeError, match="right frame 0"):
        write_spatial_video(tmp_path / "s.mov", zip(frames, small), fps=24)
    with pytest.raises(ShapeError, match="at least 64x64"):
        write_spatial_video(tmp_path / "s.mov", [(frames[0][:32], frames[0][:32])], fps=24)
    with pytest.raises(ShapeError, match="uint8"):
        write_spatial_video(tmp_path / "s.mov", [(frames[0] / 255.0, frames[0])], fps=24)
    with pytest.raises(ValueError, match="disparity_adjustment"):
        write_spatial_video(
            tmp_path / "s.mov", zip(frames, frames), fps=24, disparity_adjustment=2.0
        )
    with pytest.raises(InputError, match="audio source"):
        write_spatial_video(
            tmp_path / "s.mov", zip(frames, frames), fps=24, audio_from=tmp_path / "none.wav"
        )
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_nothing(tmp_path):
    frames = scene(6, 64, 96, 0)
    (tmp_path / "s.mov").write_bytes(b"old")

    def pairs():
        yield from zip(frames[:4], frames[:4])
        yield frames[4], frames[4][:, :48]  # a different size after encoding started

    with pytest.raises(ShapeError, match="right frame 4"):
        write_spatial_video(tmp_path / "s.mov", pairs(), fps=24)
    assert [p.name for p in tmp_path.iterdir()] == ["s.mov"]
    assert (tmp_path / "s.mov").read_bytes() == b"old"


def test_mediainfo_reports_multiview(tmp_path):
    pymediainfo = pytest.importorskip("pymediainfo")
    if not pymediainfo.MediaInfo.can_parse():
        pytest.skip("libmediainfo is not available")
    path = write_spatial_video(
        tmp_path / "s.mov", zip(scene(4, 64, 96, 0), scene(4, 64, 96, DISPARITY)), fps=24
    )
    video = [t for t in pymediainfo.MediaInfo.parse(str(path)).tracks if t.track_type == "Video"]
    assert video[0].format_profile.startswith("Multiview Main")
    assert video[0].count_of_views == "2"
    assert video[0].codec_configuration_box == "hvcC+lhvC"
