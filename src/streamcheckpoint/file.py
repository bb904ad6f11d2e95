"""A persister that keeps one JSON file per partition in a directory.

The port of Go's ``persist.FilePersister``, with its flaws fixed:

* **Atomic, durable writes.** Each checkpoint is written to a temporary file in the target's own
  directory, flushed and fsynced, moved over the target with ``os.replace`` and the directory is
  fsynced. A crash at any instant leaves the old or the new checkpoint, never an empty or partial
  file (Go's ``os.Create`` + ``Write`` could leave an empty file, which read as start of stream).
* **Unambiguous names** in the default ``"nested"`` layout: every key maps to its own file,
  nothing escapes the directory and :meth:`~FilePersister.list` recovers the exact keys.
* **Go's naming** in the ``"go"`` layout, to share a directory with Go programs.
* **Corrupt files raise** :class:`~streamcheckpoint.errors.CorruptCheckpointError` naming the path.
* **Safe for concurrent writers** (threads and processes); in monotonic mode the
  read-compare-write holds an OS file lock.

How a key's file is named in each layout, and Go's ambiguities, is
:mod:`streamcheckpoint.filenames`. All I/O is relative to directory file descriptors, one name at
a time, so ``PATH_MAX`` never applies. ``read`` and ``list`` ignore the temporary and lock files;
the constructor removes temporary files older than ten minutes (left by a crash).

Needs a POSIX system (``fcntl`` and ``dir_fd`` support); importing the module works everywhere.
"""

from __future__ import annotations

import builtins
import functools
import os
import secrets
import stat
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, NamedTuple, TypeAlias

from .checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from .errors import CorruptCheckpointError, PersistError
from .filenames import (
    JSON_SUFFIX,
    LOCK_NAME,
    TEMP_PREFIX,
    _go_key,
    _go_prefix,
    _join_chunks,
    _nested_dirs,
    _refuse_shared_go_files,
    _valid_key,
    go_file_name,
    nested_path,
)
from .persister import BasePersister, check_monotonic

if sys.platform != "win32":
    import fcntl

__all__ = ["FilePersister", "Layout"]

Layout = Literal["nested", "go"]
_Kind = Literal["dir", "file", "other"]

STALE_TEMP_SECONDS = 600.0
"""Temporary files older than this are left over from a crash and removed by the constructor."""

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC
"""The lock file is only ever locked, never read or written: ``O_NONBLOCK`` costs nothing."""
_NOT_REGULAR = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}
_MAX_OPEN_DIRS = 64
"""Directory descriptors kept open between the two phases of one ``write_many``."""


class _Target(NamedTuple):
    """Where one checkpoint lives: a directory (names below the root) and a file name in it."""

    directory: tuple[str, ...]
    file: str


@dataclass(slots=True)
class _Staged:
    """Temporary files written and fsynced in one directory, waiting to be renamed."""

    directory: tuple[str, ...]
    fd: int | None  # still open, or None to be reopened
    renames: list[tuple[str, str]] = field(default_factory=list)  # (temporary, final name)


_Found: TypeAlias = "tuple[tuple[str, ...], int, str, PartitionKey]"
"""A checkpoint file found by a scan: (directory, its open descriptor, file name, key)."""


class FilePersister(BasePersister):
    """Checkpoints as JSON files in ``directory`` (Go's ``NewFilePersister``), created if missing.

    ``layout`` is ``"nested"`` (default: one safe file per key, in a directory per namespace,
    name and consumer group) or ``"go"`` (Go's flat ``ns_name_cg_pid`` files; see
    :mod:`streamcheckpoint.filenames` for their ambiguities). ``monotonic=True`` refuses writes
    that move a checkpoint backwards; the check and the write hold a lock file, so they are
    atomic across processes using this class on the same directory (Go programs sharing the
    directory don't take it).

    ``write_many`` writes and fsyncs every temporary file before renaming any: a refusal or an
    error before the first rename changes nothing. A crash *during* the renames can leave some
    partitions of the batch updated and others not (each file is individually old or new).

    ``updated_at`` of a listed record is the file's modification time. ``delete`` removes files
    but leaves the (possibly empty) directories of the nested layout in place.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        layout: str = "nested",
        monotonic: bool = False,
    ) -> None:
        super().__init__(monotonic=monotonic)
        if sys.platform == "win32":
            raise NotImplementedError("FilePersister needs a POSIX system (fcntl, dir_fd)")
        self.layout: Layout = _check_layout(layout)
        self._root = os.path.abspath(os.fspath(directory))
        self._thread_lock = threading.Lock()
        try:
            _make_durable_dirs(self._root)
        except OSError as exc:
            raise self._os_error("create the checkpoint directory", (), exc) from exc
        self._remove_stale_temp_files()

    @property
    def directory(self) -> Path:
        """The checkpoint directory, as an absolute path."""
        return Path(self._root)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._root!r}, layout={self.layout!r}, "
            f"monotonic={self.monotonic!r})"
        )

    # -- BasePersister ----------------------------------------------------------------------

    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        self._write_many([(key, checkpoint)])

    def _write_many(self, pairs: builtins.list[tuple[PartitionKey, Checkpoint]]) -> None:
        targets = [self._target(key) for key, _ in pairs]
        if self.layout == "go":
            _refuse_shared_go_files([key for key, _ in pairs], [t.file for t in targets])
        with self._locked():
            if self.monotonic:
                for (key, checkpoint), target in zip(pairs, targets, strict=True):
                    check_monotonic(key, self._read_checkpoint(key, target), checkpoint)
            staged = self._stage(pairs, targets)
            self._commit(staged)

    def _read(self, key: PartitionKey) -> Checkpoint | None:
        return self._read_checkpoint(key, self._target(key))

    def _list(self, prefix: tuple[str, ...]) -> builtins.list[CheckpointRecord]:
        records: builtins.list[CheckpointRecord] = []
        with closing(self._files(prefix)) as found:
            for directory, dir_fd, name, key in found:
                record = self._read_record(dir_fd, _Target(directory, name), key)
                if record is not None:  # None: deleted since the directory was listed
                    records.append(record)
        return records

    def _delete(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None
    ) -> int:
        group = (namespace, name, consumer_group)
        if partition_id is not None:
            return self._delete_one(self._target(PartitionKey(*group, partition_id)))
        count = 0
        with closing(self._files(group)) as found:
            for directory, dir_fd, file, _key in found:
                try:
                    os.unlink(file, dir_fd=dir_fd)
                    os.fsync(dir_fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise self._os_error("delete", (*directory, file), exc) from exc
                count += 1
        return count

    # -- paths and errors ------------------------------------------------------------------

    def _target(self, key: PartitionKey) -> _Target:
        if self.layout == "go":
            return _Target((), go_file_name(key))
        return _nested_target(key)

    def _path(self, segments: Sequence[str]) -> str:
        return os.path.join(self._root, *segments)

    def _os_error(self, action: str, segments: Sequence[str], exc: OSError) -> PersistError:
        detail = exc.strerror or str(exc)
        return PersistError(f"cannot {action} {self._path(segments)!r}: {detail}")

    # -- directories -----------------------------------------------------------------------

    def _open_root(self) -> int:
        try:
            return os.open(self._root, _DIR_FLAGS)
        except FileNotFoundError as exc:
            raise PersistError(
                f"the checkpoint directory {self._root!r} no longer exists; its checkpoints "
                "are gone (create the persister again to start afresh)"
            ) from exc
        except OSError as exc:
            raise self._os_error("open the checkpoint directory", (), exc) from exc

    def _open_dir(self, segments: Sequence[str], *, create: bool) -> int | None:
        """Open the directory ``segments`` below the root, creating it if ``create``.

        Returns ``None`` if it is missing and ``create`` is false. Each level is opened
        relative to its parent's descriptor, so no path is ever longer than one name.
        """
        fd = self._open_root()
        for depth, segment in enumerate(segments):
            try:
                child = _open_subdir(fd, segment, create=create)
            except OSError as exc:
                raise self._os_error("open the directory", segments[: depth + 1], exc) from exc
            finally:
                os.close(fd)
            if child is None:
                return None
            fd = child
        return fd

    # -- reading ---------------------------------------------------------------------------

    def _read_checkpoint(self, key: PartitionKey, target: _Target) -> Checkpoint | None:
        dir_fd = self._open_dir(target.directory, create=False)
        if dir_fd is None:
            return None
        try:
            record = self._read_record(dir_fd, target, key)
        finally:
            os.close(dir_fd)
        return None if record is None else record.checkpoint

    def _read_record(
        self, dir_fd: int, target: _Target, key: PartitionKey
    ) -> CheckpointRecord | None:
        """Read ``target.file`` in ``dir_fd``; ``None`` if it doesn't exist."""
        path = (*target.directory, target.file)
        try:
            fd = os.open(target.file, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._os_error("open the checkpoint file", path, exc) from exc
        try:
            data = _read_all(fd)
            mtime_ns = os.fstat(fd).st_mtime_ns
        except OSError as exc:
            raise self._os_error("read the checkpoint file", path, exc) from exc
        finally:
            os.close(fd)
        try:
            checkpoint = Checkpoint.from_json(data)
        except CorruptCheckpointError as exc:
            raise CorruptCheckpointError(
                f"checkpoint file {self._path(path)!r} for {key.describe()} can't be read: {exc}"
            ) from exc
        return CheckpointRecord(key, checkpoint, _utc_from_ns(mtime_ns))

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """In monotonic mode, hold the thread lock and the directory's lock file."""
        if not self.monotonic:
            yield
            return
        with self._thread_lock:
            fd = self._open_lock_file()
            # A new open file description each time: flock then also excludes other
            # persisters of this process and children that inherited descriptors.
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _open_lock_file(self) -> int:
        """Open the root's lock file, created if missing; refuse anything but a regular file.

        Never through a symlink: one planted there would have a write create or lock its target,
        anywhere (as root, any file). ``O_NONBLOCK`` keeps a planted FIFO from hanging the open.
        """
        root = self._open_root()
        try:
            fd = os.open(LOCK_NAME, _LOCK_FLAGS, 0o666, dir_fd=root)
        except OSError as exc:
            try:
                mode = os.stat(LOCK_NAME, dir_fd=root, follow_symlinks=False).st_mode
            except OSError:
                mode = stat.S_IFREG  # gone or unreadable: the open's own error says more
            if not stat.S_ISREG(mode):
                raise self._not_a_lock_file(mode) from exc
            raise self._os_error("open the lock file", (LOCK_NAME,), exc) from exc
        finally:
            os.close(root)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise self._not_a_lock_file(mode)
        return fd

    def _not_a_lock_file(self, mode: int) -> PersistError:
        kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "a device or other special file")
        return PersistError(
            f"the lock file {self._path((LOCK_NAME,))!r} is {kind}, not the regular file "
            "streamcheckpoint makes, so it is neither followed nor used: remove it, then write "
            "again"
        )

    def _stage(
        self, pairs: Sequence[tuple[PartitionKey, Checkpoint]], targets: Sequence[_Target]
    ) -> builtins.list[_Staged]:
        """Write every checkpoint to a fsynced temporary file next to its target."""
        by_directory: dict[tuple[str, ...], builtins.list[tuple[str, bytes]]] = {}
        for (_key, checkpoint), target in zip(pairs, targets, strict=True):
            data = checkpoint.to_json().encode("utf-8")
            by_directory.setdefault(target.directory, []).append((target.file, data))
        staged: builtins.list[_Staged] = []
        try:
            for directory, files in by_directory.items():
                fd = self._open_dir(directory, create=True)
                assert fd is not None
                entry = _Staged(directory, fd)
                staged.append(entry)
                for file, data in files:
                    entry.renames.append((self._write_temp(fd, directory, data), file))
                if len(staged) > _MAX_OPEN_DIRS:
                    entry.fd = None
                    os.close(fd)
        except BaseException:
            self._discard(staged)
            raise
        return staged

    def _write_temp(self, dir_fd: int, directory: tuple[str, ...], data: bytes) -> str:
        name = TEMP_PREFIX + secrets.token_hex(8)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o666, dir_fd=dir_fd)
        except OSError as exc:
            raise self._os_error("create a temporary file", (*directory, name), exc) from exc
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
            raise self._os_error("write the temporary file", (*directory, name), exc) from exc
        return name

    def _commit(self, staged: builtins.list[_Staged]) -> None:
        """Rename every staged file over its target, then fsync each directory."""
        try:
            for entry in staged:
                fd = entry.fd
                if fd is None:
                    fd = entry.fd = self._open_dir(entry.directory, create=False)
                    if fd is None:
                        raise PersistError(
                            f"the directory {self._path(entry.directory)!r} vanished while "
                            "checkpoints were being written to it"
                        )
                while entry.renames:
                    temp, file = entry.renames[-1]
                    try:
                        os.replace(temp, file, src_dir_fd=fd, dst_dir_fd=fd)
                    except OSError as exc:
                        path = (*entry.directory, file)
                        raise self._os_error("replace the checkpoint file", path, exc) from exc
                    entry.renames.pop()
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise self._os_error("fsync the directory", entry.directory, exc) from exc
        finally:
            self._discard(staged)

    def _discard(self, staged: Sequence[_Staged]) -> None:
        """Remove temporary files not renamed yet and close the descriptors (best effort)."""
        for entry in staged:
            fd = entry.fd
            if fd is None and entry.renames:
                with suppress(PersistError):
                    fd = self._open_dir(entry.directory, create=False)
            if fd is None:
                continue
            for temp, _ in entry.renames:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=fd)
            os.close(fd)

    def _delete_one(self, target: _Target) -> int:
        dir_fd = self._open_dir(target.directory, create=False)
        if dir_fd is None:
            return 0
        try:
            os.unlink(target.file, dir_fd=dir_fd)
            os.fsync(dir_fd)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._os_error("delete", (*target.directory, target.file), exc) from exc
        finally:
            os.close(dir_fd)
        return 1

    # -- finding files ---------------------------------------------------------------------

    def _files(self, prefix: tuple[str, ...]) -> Generator[_Found, None, None]:
        """The checkpoint files whose keys start with ``prefix``, in this layout."""
        return self._go_files(prefix) if self.layout == "go" else self._nested_files(prefix)

    def _go_files(self, prefix: tuple[str, ...]) -> Generator[_Found, None, None]:
        """Yield ``((), root_fd, file, key)`` for the go-layout files matching ``prefix``."""
        go_prefix = _go_prefix(prefix)
        root = self._open_root()
        try:
            for name in self._file_names(root, ()):
                key = _go_key(name, prefix, go_prefix)
                if key is not None:
                    yield (), root, name, key
        finally:
            os.close(root)

    def _nested_files(self, prefix: tuple[str, ...]) -> Generator[_Found, None, None]:
        """Yield ``(directory, dir_fd, file, key)`` for the nested files below ``prefix``.

        ``dir_fd`` is open only until the next item is requested.
        """
        start = _nested_dirs(prefix)
        fd = self._open_dir(start, create=False)
        if fd is None:
            return
        try:
            yield from self._scan(fd, tuple(start), prefix, ())
        finally:
            os.close(fd)

    def _scan(
        self,
        fd: int,
        directory: tuple[str, ...],
        found: tuple[str, ...],
        pending: tuple[str, ...],
    ) -> Generator[_Found, None, None]:
        """Walk one level: ``found`` are the decoded components above, ``pending`` the chunks
        of a component split over several directories."""
        at_partitions = len(found) == 3
        for name, kind in self._entries(fd, directory):
            if name.startswith("."):
                continue  # temporary and lock files, never a checkpoint
            if kind == "dir" and name.endswith("%"):
                yield from self._scan_below(fd, directory, name, found, (*pending, name))
            elif kind == "dir" and not at_partitions:
                component = _join_chunks((*pending, name))
                if component is not None:
                    yield from self._scan_below(fd, directory, name, (*found, component), ())
            elif kind == "file" and at_partitions and name.endswith(JSON_SUFFIX):
                partition = _join_chunks((*pending, name[: -len(JSON_SUFFIX)]))
                key = None if partition is None else _valid_key((*found, partition))
                if key is not None:
                    yield directory, fd, name, key

    def _scan_below(
        self,
        fd: int,
        directory: tuple[str, ...],
        name: str,
        found: tuple[str, ...],
        pending: tuple[str, ...],
    ) -> Generator[_Found, None, None]:
        if len(found) > 3 or any(len(c) > 256 for c in found):
            return
        try:
            child = _open_subdir(fd, name, create=False)
        except OSError as exc:
            raise self._os_error("open the directory", (*directory, name), exc) from exc
        if child is None:
            return  # removed while we were listing
        try:
            yield from self._scan(child, (*directory, name), found, pending)
        finally:
            os.close(child)

    def _entries(self, fd: int, directory: tuple[str, ...]) -> builtins.list[tuple[str, _Kind]]:
        """``(name, kind)`` for the entries of ``fd``; symlinks are neither files nor dirs."""
        try:
            with os.scandir(fd) as entries:
                return [(e.name, _kind(e)) for e in entries]
        except OSError as exc:
            raise self._os_error("list the directory", directory, exc) from exc

    def _file_names(self, fd: int, directory: tuple[str, ...]) -> builtins.list[str]:
        return [name for name, kind in self._entries(fd, directory) if kind == "file"]

    # -- housekeeping ----------------------------------------------------------------------

    def _remove_stale_temp_files(self) -> None:
        """Remove temporary files a crashed writer left behind (never a fresh one)."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        root = self._open_root()
        try:
            self._remove_stale_in(root, (), cutoff, recurse=self.layout == "nested")
        except OSError as exc:
            raise self._os_error("remove old temporary files in", (), exc) from exc
        finally:
            os.close(root)

    def _remove_stale_in(
        self, fd: int, directory: tuple[str, ...], cutoff: float, *, recurse: bool
    ) -> None:
        for name, kind in self._entries(fd, directory):
            if kind == "dir" and recurse and not name.startswith("."):
                child = _open_subdir(fd, name, create=False)
                if child is not None:
                    try:
                        self._remove_stale_in(child, (*directory, name), cutoff, recurse=True)
                    finally:
                        os.close(child)
            elif kind == "file" and name.startswith(TEMP_PREFIX):
                with suppress(FileNotFoundError):
                    if os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(name, dir_fd=fd)


# -- helpers -------------------------------------------------------------------------------


def _check_layout(layout: object) -> Layout:
    if layout == "nested":
        return "nested"
    if layout == "go":
        return "go"
    raise ValueError(f"layout must be 'nested' or 'go', not {layout!r}")


def _kind(entry: os.DirEntry[str]) -> _Kind:
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _open_subdir(parent: int, name: str, *, create: bool) -> int | None:
    """Open directory ``name`` in ``parent``; make it first if missing and ``create``.

    Returns ``None`` if it is missing and ``create`` is false. A new directory's entry is
    fsynced, so a checkpoint written into it survives a power loss.
    """
    flags = _DIR_FLAGS | _O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            return None
    with suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=parent)
    os.fsync(parent)
    return os.open(name, flags, dir_fd=parent)


def _make_durable_dirs(path: str) -> None:
    """``os.makedirs``, then fsync the parent of each directory it created (power-loss safe)."""
    created: builtins.list[str] = []
    level = path
    while not os.path.isdir(level):
        created.append(level)
        parent = os.path.dirname(level)
        if parent == level:
            break
        level = parent
    os.makedirs(path, exist_ok=True)
    for directory in reversed(created):
        fd = os.open(os.path.dirname(directory), _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@functools.lru_cache(maxsize=4096)
def _nested_target(key: PartitionKey) -> _Target:
    """Where ``key`` lives in the nested layout; cached, as a consumer writes the same keys."""
    *directory, file = nested_path(key)
    return _Target(tuple(directory), file)


def _utc_from_ns(ns: int) -> datetime:
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
