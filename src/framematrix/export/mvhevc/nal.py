"""H.265 NAL units: Annex B byte streams, the two-byte NAL unit header (7.3.1.2) and the
length-prefixed sample format of ISO/IEC 14496-15."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from framematrix.export.mvhevc.bitstream import BitstreamError, escape, unescape

__all__ = [
    "AUD",
    "EOS",
    "NalUnit",
    "PPS",
    "PREFIX_SEI",
    "SPS",
    "SUFFIX_SEI",
    "VPS",
    "annexb",
    "is_idr",
    "is_irap",
    "is_vcl",
    "length_prefixed",
    "split_annexb",
    "split_length_prefixed",
]

# nal_unit_type values (Table 7-1) used here.
IDR_W_RADL, IDR_N_LP = 19, 20
VPS, SPS, PPS, AUD, EOS = 32, 33, 34, 35, 36
PREFIX_SEI, SUFFIX_SEI = 39, 40

_START = re.compile(rb"\x00\x00\x01")


def is_vcl(nal_type: int) -> bool:
    return nal_type < 32


def is_irap(nal_type: int) -> bool:
    return 16 <= nal_type <= 23


def is_idr(nal_type: int) -> bool:
    return nal_type in (IDR_W_RADL, IDR_N_LP)


@dataclass(frozen=True)
class NalUnit:
    """One NAL unit: header fields and the payload after the header (with emulation prevention)."""

    nal_type: int
    layer_id: int
    temporal_id_plus1: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> NalUnit:
        if len(data) < 2:
            raise BitstreamError(f"NAL unit of {len(data)} bytes is shorter than its header")
        if data[0] & 0x80:
            raise BitstreamError("forbidden_zero_bit is set in a NAL unit header")
        nal_type = (data[0] >> 1) & 0x3F
        layer_id = ((data[0] & 1) << 5) | (data[1] >> 3)
        tid = data[1] & 7
        if tid == 0:
            raise BitstreamError("nuh_temporal_id_plus1 is 0 in a NAL unit header")
        return cls(nal_type, layer_id, tid, bytes(data[2:]))

    @classmethod
    def from_rbsp(
        cls, nal_type: int, layer_id: int, rbsp: bytes, temporal_id_plus1: int = 1
    ) -> NalUnit:
        return cls(nal_type, layer_id, temporal_id_plus1, escape(rbsp))

    def header(self) -> bytes:
        return bytes(
            [
                (self.nal_type << 1) | (self.layer_id >> 5),
                ((self.layer_id & 0x1F) << 3) | self.temporal_id_plus1,
            ]
        )

    def to_bytes(self) -> bytes:
        return self.header() + self.payload

    def rbsp(self) -> bytes:
        return unescape(self.payload)


def split_annexb(data: bytes) -> list[NalUnit]:
    """Split an Annex B byte stream (start codes ``00 00 01`` / ``00 00 00 01``) into NAL units."""
    starts = [m.end() for m in _START.finditer(data)]
    units = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        chunk = data[start:end]
        # Trailing zero bytes belong to the next start code (zero_byte) or are trailing_zero_8bits.
        chunk = chunk.rstrip(b"\x00")
        if chunk:
            units.append(NalUnit.parse(chunk))
    return units


def annexb(units: Iterable[NalUnit]) -> bytes:
    """NAL units -> an Annex B byte stream with four-byte start codes."""
    return b"".join(b"\x00\x00\x00\x01" + unit.to_bytes() for unit in units)


def length_prefixed(units: Iterable[NalUnit], size: int = 4) -> bytes:
    """NAL units -> one ISO/IEC 14496-15 sample: each unit preceded by its big-endian length."""
    return b"".join(
        len(raw).to_bytes(size, "big") + raw for raw in (unit.to_bytes() for unit in units)
    )


def split_length_prefixed(sample: bytes, size: int = 4) -> Iterator[NalUnit]:
    pos = 0
    while pos < len(sample):
        length = int.from_bytes(sample[pos : pos + size], "big")
        pos += size
        if length == 0 or pos + length > len(sample):
            raise BitstreamError(f"bad NAL unit length {length} at byte {pos - size} of a sample")
        yield NalUnit.parse(sample[pos : pos + length])
        pos += length
