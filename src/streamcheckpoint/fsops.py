"""POSIX file operations the file persister is built on, each safe against a crash or a planted
file: directories opened one level at a time below a descriptor, never through a symlink, and
created durably; whole reads and writes; file times as aware UTC datetimes; what a planted
file is, in words (SQLite's files are checked with it too).
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from datetime import datetime, timezone
from typing import Literal

__all__ = [
    "DIR_FLAGS",
    "SAFE_OPEN",
    "Kind",
    "entry_kind",
    "kind_in_words",
    "make_durable_dirs",
    "ns_from_utc",
    "open_subdir",
    "read_all",
    "utc_from_ns",
    "write_all",
]

Kind = Literal["dir", "file", "other"]

_KINDS_IN_WORDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def kind_in_words(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` that isn't a regular file is, for an error message."""
    return _KINDS_IN_WORDS.get(stat.S_IFMT(mode), "a device or other special file")


_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC
"""How a directory is opened (add ``O_NOFOLLOW`` below the root)."""
SAFE_OPEN = os.O_NONBLOCK | O_NOFOLLOW | _O_CLOEXEC
"""How every file is opened: never through a symlink, and a planted FIFO can't hang the open
(``O_NONBLOCK`` changes nothing for a regular file)."""


def entry_kind(entry: os.DirEntry[str]) -> Kind:
    """What a directory entry is, symlinks being neither files nor directories."""
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def open_subdir(parent: int, name: str, *, create: bool) -> int | None:
    """Open directory ``name`` in ``parent``; make it first if missing and ``create``.

    Returns ``None`` if it is missing and ``create`` is false. A new directory's entry is
    fsynced, so a checkpoint written into it survives a power loss.
    """
    flags = DIR_FLAGS | O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            return None
    with suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=parent)
    os.fsync(parent)
    return os.open(name, flags, dir_fd=parent)


def make_durable_dirs(path: str) -> None:
    """``os.makedirs``, then fsync the parent of each directory it created (power-loss safe)."""
    created: list[str] = []
    level = path
    while not os.path.isdir(level):
        created.append(level)
        parent = os.path.dirname(level)
        if parent == level:
            break
        level = parent
    os.makedirs(path, exist_ok=True)
    for directory in reversed(created):
        fd = os.open(os.path.dirname(directory), DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def utc_from_ns(ns: int) -> datetime:
    """A file time in nanoseconds as an aware UTC datetime."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000)


def ns_from_utc(value: datetime) -> int:
    """An aware datetime as a file time in nanoseconds (:func:`utc_from_ns` reads it back)."""
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def read_all(fd: int) -> bytes:
    """Everything left to read from ``fd``."""
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
