"""Atomic outputs: write under a temporary name beside the target, move into place when complete.

A crash, an exception or Ctrl-C while writing never leaves a half-written file (or folder) under
the final name, and an existing output is replaced only once the new one is complete. The
temporary name lives in the same folder as the target so that the final rename stays on one file
system (``os.replace`` is atomic there).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from framematrix.errors import InputError

__all__ = ["atomic_dir", "atomic_path", "check_folder_output", "temporary_sibling"]


def temporary_sibling(final: Path, tag: str = "tmp") -> Path:
    """A fresh hidden name beside ``final`` that keeps its extension: ``.out.tmp-1a2b3c4d.mp4``.

    Keeping the real extension matters: muxers (PyAV/FFmpeg) and ``cv2.imwrite`` pick the format
    from it. The leading dot hides the file from frame-folder listings (``read_clip`` skips
    hidden files), so a half-written frame is never read as input.
    """
    final = Path(final)
    while True:
        candidate = final.with_name(f".{final.stem}.{tag}-{secrets.token_hex(4)}{final.suffix}")
        if not os.path.lexists(candidate):
            return candidate


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``final``; on success rename it onto ``final``.

    The temporary file is not created: the caller writes it (any writer that takes a path). On any
    exception (including KeyboardInterrupt) the temporary file is deleted, ``final`` is left as it
    was and the exception propagates. Parent folders of ``final`` are created.

    Raises FileNotFoundError if the block finished without writing the temporary path.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(f"{final}: nothing was written (temporary file {tmp.name})")
        os.replace(tmp, final)
    except OSError as exc:
        _remove(tmp)
        if exc.filename is not None and Path(exc.filename).name == tmp.name:
            # the user knows the output, not our hidden temporary name
            raise type(exc)(exc.errno, exc.strerror, str(final)) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def check_folder_output(final: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse to replace anything a user may still want: an existing file, or a folder that is
    not empty, unless ``overwrite`` (then the whole folder is replaced).

    Raises:
        InputError: one line naming the path.
    """
    final = Path(final)
    if overwrite or not os.path.lexists(final):
        return
    if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
        return
    what = "folder is not empty" if final.is_dir() else "path is an existing file"
    raise InputError(
        f"{final}: output {what}; choose a new folder, empty it, or pass --overwrite to replace it"
    )


@contextmanager
def atomic_dir(final: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh empty temporary folder beside ``final``; on success it becomes ``final``.

    An existing ``final`` is replaced only if it is an empty folder or ``overwrite`` is set
    (see :func:`check_folder_output`); it is moved aside only after the block succeeded, then the
    new folder is renamed into place and the old one deleted. On any exception the temporary folder
    is deleted and ``final`` is untouched.
    """
    final = Path(final)
    check_folder_output(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    # os.mkdir (not tempfile.mkdtemp) so the folder gets the usual umask permissions, not 0700.
    os.mkdir(tmp)
    try:
        yield tmp
        if os.path.lexists(final):
            # Directories cannot be replaced by rename(2) unless empty: swap via a backup name.
            backup = temporary_sibling(final, tag="old")
            os.replace(final, backup)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(backup, final)
                raise
            _remove(backup)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
