"""Writing a file in one step: the one helper every stage writes its files with.

The content goes to a hidden temp file beside the target (``.<name>.<8 hex>.tmp``: unique, so two processes
writing the same file never share a temp file), which is then renamed over the target. A reader sees the old
file or the new one, never half of one; a write that fails or is interrupted leaves no temp file behind, and
its ``OSError`` names the target (or its missing folder), not the temp file.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: Path) -> Path:
    """The unique hidden temp file beside ``path`` that :func:`atomic_path` writes first."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_path(path: Path | str, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path to write ``path``'s new content to; on leaving the block it replaces ``path``.

    ``fsync`` flushes the temp file to disk before the rename (for files a crash must not lose, such as
    score parts). The folder must exist: a missing one is an error naming it, not created here.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not path.parent.is_dir():
        code = errno.ENOTDIR if path.parent.exists() else errno.ENOENT
        raise OSError(code, os.strerror(code), str(path.parent))
    temp = temp_name(path)
    try:
        yield temp
        if fsync:
            descriptor = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        os.replace(temp, path)
    except OSError as err:
        _remove_quietly(temp)
        raise OSError(err.errno, err.strerror, str(path)) from None
    except BaseException:
        _remove_quietly(temp)
        raise


def write_atomic(path: Path | str, content: str | bytes, *, fsync: bool = False) -> None:
    """Replace ``path``'s content with ``content`` (text as UTF-8) in one step; see :func:`atomic_path`."""
    with atomic_path(path, fsync=fsync) as temp:
        if isinstance(content, bytes):
            temp.write_bytes(content)
        else:
            temp.write_text(content, encoding="utf-8")


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def save_figure(figure, path: Path | str) -> None:
    """Save a matplotlib figure in one step (the format from ``path``'s suffix, as ``savefig`` would)."""
    path = Path(path)
    with atomic_path(path) as temp:
        figure.savefig(temp, format=path.suffix.lstrip(".") or None)


@contextmanager
def folder_swap(folder: Path | str) -> Iterator[Path]:
    """Yield a hidden temp folder beside ``folder`` to write a whole set of files into; on leaving the block it
    takes ``folder``'s place, so the folder holds the old set or the new one, never a mix (files of the old set
    the new one lacks, such as plots of metrics no longer fitted, go with it). A block that fails or is
    interrupted removes the temp folder and leaves ``folder`` as it was."""
    import shutil

    folder = Path(folder)
    temp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    temp.mkdir(parents=True)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
    if folder.exists():
        os.replace(folder, old)  # two renames: a folder cannot be renamed over a non-empty one
    os.replace(temp, folder)
    shutil.rmtree(old, ignore_errors=True)
