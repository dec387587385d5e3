"""ISO base media / QuickTime box trees: read, dump, edit the ``hvc1`` sample entry.

Only ``moov`` is held in memory; ``mdat`` and other large top-level boxes are copied in chunks.
Editing a box inside ``moov`` changes the sizes of every enclosing box, which :meth:`Box.to_bytes`
recomputes; moving ``moov`` in front of ``mdat`` shifts the chunk offsets (``stco``/``co64``),
which :func:`add_spatial_boxes` adjusts.

Apple's spatial video boxes, inside the ``hvc1`` sample entry (as in Apple's own files)::

    vexu                      video extended usage
      eyes                    stereo view information
        stri  (full box) u8   3 = left and right eye views present
        hero  (full box) u8   hero eye: 1 = left, 2 = right
        cams
          blin (full box) u32 camera baseline in micrometres
        cmfy
          dadj (full box) s32 horizontal disparity adjustment, 1/10000 of the image width
    hfov                      u32 horizontal field of view in thousandths of a degree
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from framematrix.errors import InputError

__all__ = [
    "Box",
    "add_spatial_boxes",
    "box_paths",
    "config_record_nal_units",
    "dump_tree",
    "full_box",
    "plain_box",
    "read_tree",
    "spatial_boxes",
]

# Containers whose payload is only child boxes, and those with a fixed prefix before them.
_CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "vexu", "eyes", "cams"}
_CONTAINERS |= {"cmfy", "mvex", "proj", "pack"}
_PREFIXED = {"stsd": 8, "hvc1": 78, "hev1": 78}
# Top-level boxes read into memory (the rest are copied from the file by offset).
_LOADED_TOP = {"moov", "ftyp", "wide", "free"}


@dataclass
class Box:
    """A box: ``children`` for containers, else ``payload`` (bytes after the header)."""

    type: str
    payload: bytes = b""
    children: list[Box] | None = None
    prefix: bytes = b""  # fixed fields before the children (stsd, sample entries)
    offset: int = 0  # where the box started in its file
    size: int = 0  # its size there
    loaded: bool = True  # False: a top-level box left in the file (mdat)

    def to_bytes(self) -> bytes:
        if not self.loaded:
            raise ValueError(f"box {self.type} is not in memory")
        if self.children is None:
            body = self.payload
        else:
            body = self.prefix + b"".join(child.to_bytes() for child in self.children)
        return _header(self.type, len(body)) + body

    def find(self, *types: str) -> Box | None:
        """The first descendant along the given types, e.g. ``find("trak", "mdia")``."""
        node: Box | None = self
        for kind in types:
            if node is None or node.children is None:
                return None
            node = next((child for child in node.children if child.type == kind), None)
        return node

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Box]]:
        yield depth, self
        for child in self.children or []:
            yield from child.walk(depth + 1)


def _header(kind: str, body_size: int) -> bytes:
    size = body_size + 8
    if size < 2**32:
        return struct.pack(">I4s", size, kind.encode("latin-1"))
    return struct.pack(">I4sQ", 1, kind.encode("latin-1"), size + 8)


def plain_box(kind: str, payload: bytes = b"", children: list[Box] | None = None) -> Box:
    return Box(kind, payload=payload, children=children)


def full_box(kind: str, payload: bytes, version: int = 0, flags: int = 0) -> Box:
    return Box(kind, payload=struct.pack(">I", (version << 24) | flags) + payload)


def _parse(data: bytes, start: int, end: int, base: int) -> list[Box]:
    boxes = []
    pos = start
    while pos + 8 <= end:
        size, raw = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box '{raw.decode('latin-1')}' at {base + pos} has a bad size {size}")
        kind = raw.decode("latin-1")
        body_start, body_end = pos + header, pos + size
        box = Box(kind, offset=base + pos, size=size)
        if kind in _CONTAINERS:
            box.children = _parse(data, body_start, body_end, base)
        elif kind in _PREFIXED and body_end - body_start >= _PREFIXED[kind]:
            cut = body_start + _PREFIXED[kind]
            box.prefix = data[body_start:cut]
            box.children = _parse(data, cut, body_end, base)
        else:
            box.payload = data[body_start:body_end]
        boxes.append(box)
        pos += size
    return boxes


def read_tree(path: str | os.PathLike[str]) -> list[Box]:
    """The top-level boxes of a file; ``moov`` (and small boxes) parsed, ``mdat`` left on disk."""
    path = Path(path)
    boxes = []
    total = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= total:
            f.seek(pos)
            head = f.read(16)
            size, raw = struct.unpack(">I4s", head[:8])
            header = 8
            if size == 1:
                size = struct.unpack(">Q", head[8:16])[0]
                header = 16
            elif size == 0:
                size = total - pos
            kind = raw.decode("latin-1")
            if size < header or pos + size > total:
                raise InputError(f"{path}: box '{kind}' at byte {pos} has a bad size {size}")
            if kind in _LOADED_TOP:
                f.seek(pos)
                boxes.extend(_parse(f.read(size), 0, size, pos))
            else:
                boxes.append(Box(kind, offset=pos, size=size, loaded=False))
            pos += size
    return boxes


def dump_tree(path: str | os.PathLike[str]) -> list[str]:
    """One line per box, indented by depth: ``"    hvcC 162"`` (type, size in the file)."""
    lines = []
    for top in read_tree(path):
        for depth, box in top.walk():
            lines.append(f"{'  ' * depth}{box.type} {box.size}")
    return lines


def box_paths(path: str | os.PathLike[str]) -> set[str]:
    """Every box as a slash path, e.g. ``moov/trak/mdia/minf/stbl/stsd/hvc1/vexu``."""
    out: set[str] = set()

    def visit(box: Box, prefix: str) -> None:
        here = f"{prefix}/{box.type}" if prefix else box.type
        out.add(here)
        for child in box.children or []:
            visit(child, here)

    for top in read_tree(path):
        visit(top, "")
    return out


def config_record_nal_units(box: Box) -> list[tuple[int, bytes]]:
    """(array NAL unit type, NAL unit bytes) of an ``hvcC`` or ``lhvC`` configuration record."""
    data = box.payload
    pos = 22 if box.type == "hvcC" else 5
    if len(data) <= pos:
        raise ValueError(f"{box.type} record of {len(data)} bytes is too short")
    count = data[pos]
    pos += 1
    out = []
    for _ in range(count):
        kind = data[pos] & 0x3F
        num = struct.unpack(">H", data[pos + 1 : pos + 3])[0]
        pos += 3
        for _ in range(num):
            length = struct.unpack(">H", data[pos : pos + 2])[0]
            out.append((kind, data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
    return out


def spatial_boxes(
    *, baseline_um: int, hfov_millidegrees: int, disparity_adjustment: int, hero_eye: int = 1
) -> list[Box]:
    """Apple's ``vexu`` and ``hfov`` boxes (see the module doc for the fields)."""
    if not 0 <= baseline_um < 2**32:
        raise ValueError(f"baseline {baseline_um} um does not fit the blin box")
    if not 0 < hfov_millidegrees < 360_000:
        raise ValueError(f"field of view {hfov_millidegrees} mdeg is not in (0, 360) deg")
    if not -10_000 <= disparity_adjustment <= 10_000:
        raise ValueError(f"disparity adjustment {disparity_adjustment} is not in -10000..10000")
    eyes = plain_box(
        "eyes",
        children=[
            full_box("stri", bytes([0x03])),
            full_box("hero", bytes([hero_eye])),
            plain_box("cams", children=[full_box("blin", struct.pack(">I", baseline_um))]),
            plain_box("cmfy", children=[full_box("dadj", struct.pack(">i", disparity_adjustment))]),
        ],
    )
    return [
        plain_box("vexu", children=[eyes]),
        plain_box("hfov", struct.pack(">I", hfov_millidegrees)),
    ]


def _shift_chunk_offsets(moov: Box, shift: int) -> None:
    for _, box in moov.walk():
        if box.type == "stco":
            count = struct.unpack(">I", box.payload[4:8])[0]
            offsets = struct.unpack(f">{count}I", box.payload[8 : 8 + 4 * count])
            if offsets and max(offsets) + shift >= 2**32:
                raise OverflowError("chunk offsets overflow 32 bits")
            box.payload = box.payload[:8] + struct.pack(f">{count}I", *(o + shift for o in offsets))
        elif box.type == "co64":
            count = struct.unpack(">I", box.payload[4:8])[0]
            offsets = struct.unpack(f">{count}Q", box.payload[8 : 8 + 8 * count])
            box.payload = box.payload[:8] + struct.pack(f">{count}Q", *(o + shift for o in offsets))


def add_spatial_boxes(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    boxes: list[Box],
    *,
    faststart: bool = True,
) -> None:
    """Copy ``src`` to ``dst`` with ``boxes`` appended to the video track's ``hvc1`` entry.

    With ``faststart`` the ``moov`` goes before ``mdat`` (chunk offsets shifted), so players can
    start before the whole file has arrived. Raises ValueError if there is no ``hvc1`` entry.
    """
    src = Path(src)
    tops = read_tree(src)
    moov = next((box for box in tops if box.type == "moov"), None)
    if moov is None:
        raise ValueError(f"{src}: no moov box")
    entries = []
    for trak in (box for box in moov.children or [] if box.type == "trak"):
        entry = trak.find("mdia", "minf", "stbl", "stsd", "hvc1")
        if entry is not None:
            entries.append(entry)
    if len(entries) != 1:
        raise ValueError(f"{src}: expected one hvc1 sample entry, found {len(entries)}")
    entry = entries[0]
    assert entry.children is not None
    entry.children = [c for c in entry.children if c.type not in ("vexu", "hfov")] + boxes
    order = list(tops)
    if faststart:
        first_media = next((i for i, box in enumerate(order) if box.type == "mdat"), None)
        moov_index = order.index(moov)
        if first_media is not None and moov_index > first_media:
            order.pop(moov_index)
            order.insert(first_media, moov)
    # The chunk offsets point into mdat: shift them by how far mdat moves. The moov size does not
    # depend on the offsets' values, so one pass suffices.
    moov_size = len(moov.to_bytes())
    pos = 0
    shifts = set()
    for box in order:
        if box.type == "mdat":
            shifts.add(pos - box.offset)
        pos += moov_size if box is moov else (box.size if not box.loaded else len(box.to_bytes()))
    if len(shifts) > 1:
        raise ValueError(f"{src}: several mdat boxes would move by different amounts")
    shift = shifts.pop() if shifts else 0
    if shift:
        _shift_chunk_offsets(moov, shift)
    new_moov = moov.to_bytes()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for box in order:
            if box is moov:
                fout.write(new_moov)
            elif box.loaded:
                fout.write(box.to_bytes())
            else:
                fin.seek(box.offset)
                _copy_range(fin, fout, box.size)


def _copy_range(fin: BinaryIO, fout: BinaryIO, size: int, chunk: int = 1 << 20) -> None:
    left = size
    while left > 0:
        data = fin.read(min(chunk, left))
        if not data:
            raise OSError("unexpected end of file while copying a box")
        fout.write(data)
        left -= len(data)
