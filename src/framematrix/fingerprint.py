"""Cheap fingerprints of input files and settings, for caches and resumable work.

An input is identified by its size, modification time and hashes of its first and last MiB, not
by a hash of every frame: fingerprinting a two-hour film costs two reads of 1 MiB. A folder of
frames is identified by the names, sizes and modification times of its files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from framematrix.errors import InputError

_EDGE = 1 << 20  # bytes hashed at the head and at the tail of a file


def _file_digest(path: Path, digest: Any) -> None:
    stat = path.stat()
    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE))
        if stat.st_size > 2 * _EDGE:
            handle.seek(-_EDGE, os.SEEK_END)
            digest.update(handle.read(_EDGE))


def input_fingerprint(path: str | os.PathLike[str]) -> str:
    """Hex fingerprint of a file or folder: size, mtime, head and tail hashes of each file.

    Raises InputError when the path does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    digest = hashlib.sha256(b"framematrix-input-v1:")
    if path.is_dir():
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(child.name.encode() + b"\0")
            stat = child.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode())
    else:
        _file_digest(path, digest)
    return digest.hexdigest()[:32]


def settings_fingerprint(settings: Any) -> str:
    """Hex digest of JSON-serialisable settings (non-JSON values converted with ``str``)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Full sha256 of a (segment) file, for the resume manifest's checksums."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
