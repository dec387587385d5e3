"""Bit-level reading and writing of H.265 RBSPs: fixed-width fields, exp-Golomb codes and the
emulation prevention of NAL unit payloads (H.265 clauses 7.2, 7.3 and 9.2).

Fields are MSB first, as everywhere in H.265. A :class:`BitReader` works on an RBSP (emulation
prevention bytes already removed, see :func:`unescape`); a :class:`BitWriter` builds one, and
:func:`escape` inserts the emulation prevention bytes before it goes into a NAL unit.
"""

from __future__ import annotations

import re

__all__ = ["BitReader", "BitWriter", "BitstreamError", "escape", "unescape"]


class BitstreamError(ValueError):
    """The bits do not parse as the syntax expects (truncated, out of range, unsupported)."""


def unescape(payload: bytes) -> bytes:
    """NAL unit payload -> RBSP: drop each ``0x03`` that follows two zero bytes (7.4.2)."""
    # Left-to-right, non-overlapping: "00 00 03 00 00 03" loses both 03s, as it must.
    return bytes(payload).replace(b"\x00\x00\x03", b"\x00\x00")


_NEEDS_ESCAPE = re.compile(rb"\x00\x00(?=[\x00-\x03]|\Z)")


def escape(rbsp: bytes) -> bytes:
    """RBSP -> NAL unit payload: insert ``0x03`` wherever two zero bytes precede a byte <= 3,
    and after a trailing pair of zero bytes (``cabac_zero_words``), so no start code can appear."""
    return _NEEDS_ESCAPE.sub(b"\x00\x00\x03", bytes(rbsp))


class BitReader:
    """Reads an RBSP MSB first. ``pos`` is the position in bits from the start."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos
        self.size = len(self.data) * 8

    def left(self) -> int:
        return self.size - self.pos

    def u(self, n: int) -> int:
        """An unsigned n-bit field (n may be 0, giving 0)."""
        if n < 0 or self.pos + n > self.size:
            raise BitstreamError(f"read of {n} bits past the end at bit {self.pos}/{self.size}")
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        """ue(v): unsigned exp-Golomb code (9.2)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 32:
                raise BitstreamError(f"exp-Golomb code longer than 32 bits at bit {self.pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """se(v): signed exp-Golomb code, k -> (-1)^(k+1) * ceil(k / 2)."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def byte_aligned(self) -> bool:
        return self.pos % 8 == 0

    def more_rbsp_data(self) -> bool:
        """Whether anything but the rbsp_trailing_bits (a 1 then zeros) is left."""
        if self.pos >= self.size:
            return False
        last = self.size - 1
        while last >= self.pos and not (self.data[last >> 3] >> (7 - (last & 7))) & 1:
            last -= 1
        return last > self.pos


class BitWriter:
    """Builds an RBSP MSB first."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def __len__(self) -> int:
        return len(self._bits)

    def u(self, n: int, value: int) -> None:
        value = int(value)
        if n < 0 or value < 0 or (n < 64 and value >> n):
            raise BitstreamError(f"value {value} does not fit in {n} bits")
        for shift in range(n - 1, -1, -1):
            self._bits.append((value >> shift) & 1)

    def flag(self, value: bool | int) -> None:
        self.u(1, 1 if value else 0)

    def ue(self, value: int) -> None:
        value = int(value)
        if value < 0:
            raise BitstreamError(f"ue(v) takes values >= 0, got {value}")
        code = value + 1
        length = code.bit_length()
        self.u(length - 1, 0)
        self.u(length, code)

    def se(self, value: int) -> None:
        value = int(value)
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def copy(self, reader: BitReader, nbits: int) -> None:
        """Copy the next ``nbits`` bits of ``reader`` unchanged."""
        for _ in range(nbits):
            self._bits.append(reader.u(1))

    def byte_aligned(self) -> bool:
        return len(self._bits) % 8 == 0

    def trailing_bits(self) -> None:
        """rbsp_trailing_bits() / byte_alignment(): a one, then zeros up to a byte boundary."""
        self._bits.append(1)
        while len(self._bits) % 8:
            self._bits.append(0)

    def to_bytes(self) -> bytes:
        if len(self._bits) % 8:
            raise BitstreamError(f"{len(self._bits)} bits written: not byte aligned")
        out = bytearray()
        for i in range(0, len(self._bits), 8):
            byte = 0
            for bit in self._bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)
