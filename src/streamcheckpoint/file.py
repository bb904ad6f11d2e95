"""A persister that keeps one JSON file per partition in a directory.

The port of Go's ``persist.FilePersister``, with its flaws fixed:

* **Atomic, durable writes.** Each checkpoint is written to a temporary file in the target's own
  directory, flushed and fsynced, moved over the target with ``os.replace`` and the directory is
  fsynced. A crash at any instant leaves the old or the new checkpoint, never an empty or partial
  file (Go's ``os.Create`` + ``Write`` could leave an empty file, which read as start of stream).
* **Unambiguous names** in the default ``"nested"`` layout (every key its own file, the exact
  keys listed back); Go's names in the ``"go"`` layout, to share a directory with Go programs.
* **Corrupt files raise** :class:`~streamcheckpoint.errors.CorruptCheckpointError` naming the path.
* **Safe for concurrent writers** (threads, processes); monotonic writes hold an OS file lock.

How a key's file is named in each layout, and Go's ambiguities, is
:mod:`streamcheckpoint.filenames`. All I/O is relative to directory file descriptors, one name at
a time, so ``PATH_MAX`` never applies. ``read`` and ``list`` ignore the temporary and lock files;
the constructor removes temporary files older than ten minutes (left by a crash).

Needs a POSIX system (``fcntl`` and ``dir_fd`` support); importing the module works everywhere.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import stat
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

from .checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from .errors import CorruptCheckpointError, PersistError
from .filenames import (
    JSON_SUFFIX,
    LOCK_NAME,
    TEMP_PREFIX,
    FileTarget,
    Layout,
    check_layout,
    file_target,
    go_key,
    go_prefix,
    join_chunks,
    nested_dirs,
    refuse_shared_go_files,
    valid_key,
)
from .fsops import (
    DIR_FLAGS,
    SAFE_OPEN,
    Kind,
    entry_kind,
    kind_in_words,
    make_durable_dirs,
    ns_from_utc,
    open_subdir,
    read_all,
    utc_from_ns,
    write_all,
)
from .persister import BasePersister, Scope, Times, check_monotonic, in_scope, scope_prefix

if sys.platform != "win32":
    import fcntl

__all__ = ["FilePersister"]

logger = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 600.0
"""Temporary files older than this are left over from a crash and removed by the constructor."""

LOCK_TIMEOUT_SECONDS = 5.0
"""How long a monotonic write waits for the lock file before it fails (nothing written)."""
_MAX_OPEN_DIRS = 64
"""Directory descriptors kept open between the two phases of one ``write_many``."""


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

    ``read_only=True`` only reads: the directory must exist, nothing is created or cleaned up.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        layout: str = "nested",
        monotonic: bool = False,
        read_only: bool = False,
    ) -> None:
        super().__init__(monotonic=monotonic, read_only=read_only)
        if sys.platform == "win32":
            raise NotImplementedError("FilePersister needs a POSIX system (fcntl, dir_fd)")
        self.layout: Layout = check_layout(layout)
        self._root = os.path.abspath(os.fspath(directory))
        self._thread_lock = threading.Lock()
        if read_only:
            os.close(self._open_root())  # it must exist
            return
        try:
            make_durable_dirs(self._root)
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

    def _write_many(
        self, pairs: builtins.list[tuple[PartitionKey, Checkpoint]], times: Times = None
    ) -> None:
        targets = [self._target(key) for key, _ in pairs]
        if self.layout == "go":
            refuse_shared_go_files([key for key, _ in pairs], [t.file for t in targets])
        with self._locked():
            if self.monotonic:
                for (key, checkpoint), target in zip(pairs, targets, strict=True):
                    check_monotonic(key, self._read_checkpoint(key, target), checkpoint)
            staged = self._stage(pairs, targets, times)
            self._commit(staged)

    def _read(self, key: PartitionKey) -> Checkpoint | None:
        return self._read_checkpoint(key, self._target(key))

    def _list(self, scope: Scope) -> builtins.list[CheckpointRecord | CorruptCheckpointError]:
        records: builtins.list[CheckpointRecord | CorruptCheckpointError] = []
        with closing(self._files(scope_prefix(scope))) as found:
            for directory, dir_fd, name, key in found:
                if not in_scope(key, scope):
                    continue
                try:
                    record = self._read_record(dir_fd, FileTarget(directory, name), key)
                except CorruptCheckpointError as exc:
                    exc.key = key
                    records.append(exc)
                    continue
                if record is not None:  # None: deleted since the directory was listed
                    records.append(record)
        return records

    def _delete(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None
    ) -> int:
        group = (namespace, name, consumer_group)
        if partition_id is not None:
            return self._delete_one(self._target(PartitionKey(*group, partition_id)))
        with closing(self._files(group)) as found:
            return sum(
                self._unlink(fd, FileTarget(directory, file)) for directory, fd, file, _ in found
            )

    # -- paths and errors ------------------------------------------------------------------

    def _target(self, key: PartitionKey) -> FileTarget:
        return file_target(key, self.layout)

    def _path(self, segments: Sequence[str]) -> str:
        return os.path.join(self._root, *segments)

    def _os_error(self, action: str, segments: Sequence[str], exc: OSError) -> PersistError:
        detail = exc.strerror or str(exc)
        return PersistError(f"cannot {action} {self._path(segments)!r}: {detail}")

    # -- directories -----------------------------------------------------------------------

    def _open_root(self) -> int:
        try:
            return os.open(self._root, DIR_FLAGS)
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
                child = open_subdir(fd, segment, create=create)
            except OSError as exc:
                raise self._os_error("open the directory", segments[: depth + 1], exc) from exc
            finally:
                os.close(fd)
            if child is None:
                return None
            fd = child
        return fd

    # -- reading ---------------------------------------------------------------------------

    def _read_checkpoint(self, key: PartitionKey, target: FileTarget) -> Checkpoint | None:
        dir_fd = self._open_dir(target.directory, create=False)
        if dir_fd is None:
            return None
        try:
            record = self._read_record(dir_fd, target, key)
        finally:
            os.close(dir_fd)
        return None if record is None else record.checkpoint

    def _read_record(
        self, dir_fd: int, target: FileTarget, key: PartitionKey
    ) -> CheckpointRecord | None:
        """Read ``target.file`` in ``dir_fd``; ``None`` if it doesn't exist."""
        path = (*target.directory, target.file)
        try:
            fd = self._open_regular(dir_fd, path, os.O_RDONLY, CorruptCheckpointError)
        except FileNotFoundError:
            return None
        try:
            data = read_all(fd)
            mtime_ns = os.fstat(fd).st_mtime_ns
        except OSError as exc:
            raise self._os_error("read the checkpoint file", path, exc) from exc
        finally:
            os.close(fd)
        try:
            checkpoint = Checkpoint.from_json(data)
        except ValueError as exc:
            raise CorruptCheckpointError(
                f"checkpoint file {self._path(path)!r} for {key.describe()} can't be read: {exc}"
            ) from exc
        return CheckpointRecord(key, checkpoint, utc_from_ns(mtime_ns))

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """In monotonic mode, hold the thread lock and the directory's lock file."""
        if not self.monotonic:
            yield
            return
        with self._thread_lock:
            root = self._open_root()
            try:
                # Private to the store's user (who else could open it could hold it), and a new
                # open file description each time: flock then also excludes other persisters
                # of this process and children that inherited descriptors.
                fd = self._open_regular(root, (LOCK_NAME,), os.O_RDWR | os.O_CREAT, PersistError)
            finally:
                os.close(root)
            try:
                self._lock_within_timeout(fd)
                yield
            finally:
                os.close(fd)

    def _lock_within_timeout(self, fd: int) -> None:
        """``flock`` the lock file, trying again for :data:`LOCK_TIMEOUT_SECONDS` at most."""
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PersistError(
                        f"waited {LOCK_TIMEOUT_SECONDS:g} s for the lock file "
                        f"{self._path((LOCK_NAME,))!r}, which another process holds (a "
                        "monotonic write, or a process that is stopped); nothing was written"
                    ) from None
            time.sleep(pause)
            pause = min(2 * pause, 0.05)

    def _open_regular(
        self, dir_fd: int, path: tuple[str, ...], flags: int, error: type[PersistError]
    ) -> int:
        """Open ``path[-1]`` in ``dir_fd`` (``path`` below the root names it in messages).

        Never through a symlink, whose target could be anywhere (and as root, any file would be
        created or opened); refused with ``error`` unless it is a regular file. A missing file
        raises ``FileNotFoundError`` (unless ``flags`` create it).
        """
        name = path[-1]
        try:
            fd = os.open(name, flags | SAFE_OPEN, 0o600, dir_fd=dir_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except OSError:
                mode = stat.S_IFREG  # gone or unreadable: the open's own error says more
            if not stat.S_ISREG(mode):
                raise self._not_regular(path, mode, error) from exc
            raise self._os_error("open", path, exc) from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise self._not_regular(path, mode, error)
        return fd

    def _not_regular(
        self, path: tuple[str, ...], mode: int, error: type[PersistError]
    ) -> PersistError:
        return error(
            f"{self._path(path)!r} is {kind_in_words(mode)}, not the regular file streamcheckpoint "
            "makes, so it is neither followed nor used: remove it, then try again"
        )

    def _stage(
        self,
        pairs: Sequence[tuple[PartitionKey, Checkpoint]],
        targets: Sequence[FileTarget],
        times: Times,
    ) -> builtins.list[_Staged]:
        """Write every checkpoint to a fsynced temporary file next to its target (its
        modification time, the record's ``updated_at``, set to its time if given)."""
        by_directory: dict[tuple[str, ...], builtins.list[tuple[str, bytes, datetime | None]]] = {}
        for index, ((_key, checkpoint), target) in enumerate(zip(pairs, targets, strict=True)):
            data = checkpoint.to_json().encode("utf-8")
            when = None if times is None else times[index]
            by_directory.setdefault(target.directory, []).append((target.file, data, when))
        staged: builtins.list[_Staged] = []
        try:
            for directory, files in by_directory.items():
                fd = self._open_dir(directory, create=True)
                assert fd is not None
                entry = _Staged(directory, fd)
                staged.append(entry)
                for file, data, when in files:
                    entry.renames.append((self._write_temp(fd, directory, data, when), file))
                if len(staged) > _MAX_OPEN_DIRS:
                    entry.fd = None
                    os.close(fd)
        except BaseException:
            self._discard(staged)
            raise
        return staged

    def _write_temp(
        self, dir_fd: int, directory: tuple[str, ...], data: bytes, when: datetime | None
    ) -> str:
        name = TEMP_PREFIX + secrets.token_hex(8)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_OPEN
        try:
            fd = os.open(name, flags, 0o666, dir_fd=dir_fd)
        except OSError as exc:
            raise self._os_error("create a temporary file", (*directory, name), exc) from exc
        try:
            try:
                write_all(fd, data)
                if when is not None:  # a rename keeps it
                    ns = ns_from_utc(when)
                    os.utime(fd, ns=(ns, ns))
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

    def _delete_one(self, target: FileTarget) -> int:
        dir_fd = self._open_dir(target.directory, create=False)
        if dir_fd is None:
            return 0
        try:
            return self._unlink(dir_fd, target)
        finally:
            os.close(dir_fd)

    def _unlink(self, dir_fd: int, target: FileTarget) -> int:
        """Delete ``target.file`` in ``dir_fd``, durably; how many files that deleted (0 or 1)."""
        try:
            os.unlink(target.file, dir_fd=dir_fd)
            os.fsync(dir_fd)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._os_error("delete", (*target.directory, target.file), exc) from exc
        return 1

    # -- finding files ---------------------------------------------------------------------

    def _files(self, prefix: tuple[str, ...]) -> Generator[_Found, None, None]:
        """The checkpoint files whose keys start with ``prefix``, in this layout."""
        return self._go_files(prefix) if self.layout == "go" else self._nested_files(prefix)

    def _go_files(self, prefix: tuple[str, ...]) -> Generator[_Found, None, None]:
        """Yield ``((), root_fd, file, key)`` for the go-layout files matching ``prefix``."""
        names = go_prefix(prefix)
        root = self._open_root()
        try:
            for name in self._file_names(root, ()):
                key = go_key(name, prefix, names)
                if key is not None:
                    yield (), root, name, key
        finally:
            os.close(root)

    def _nested_files(self, prefix: tuple[str, ...]) -> Generator[_Found, None, None]:
        """Yield ``(directory, dir_fd, file, key)`` for the nested files below ``prefix``.

        ``dir_fd`` is open only until the next item is requested.
        """
        start = nested_dirs(prefix)
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
                component = join_chunks((*pending, name))
                if component is not None:
                    yield from self._scan_below(fd, directory, name, (*found, component), ())
            elif kind == "file" and at_partitions and name.endswith(JSON_SUFFIX):
                partition = join_chunks((*pending, name[: -len(JSON_SUFFIX)]))
                key = None if partition is None else valid_key((*found, partition))
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
            child = open_subdir(fd, name, create=False)
        except OSError as exc:
            raise self._os_error("open the directory", (*directory, name), exc) from exc
        if child is None:
            return  # removed while we were listing
        try:
            yield from self._scan(child, (*directory, name), found, pending)
        finally:
            os.close(child)

    def _entries(self, fd: int, directory: tuple[str, ...]) -> builtins.list[tuple[str, Kind]]:
        """``(name, kind)`` for the entries of ``fd``; symlinks are neither files nor dirs."""
        try:
            with os.scandir(fd) as entries:
                return [(e.name, entry_kind(e)) for e in entries]
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
                child = open_subdir(fd, name, create=False)
                if child is not None:
                    try:
                        self._remove_stale_in(child, (*directory, name), cutoff, recurse=True)
                    finally:
                        os.close(child)
            elif kind == "file" and name.startswith(TEMP_PREFIX):
                with suppress(FileNotFoundError):
                    if os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(name, dir_fd=fd)
                        logger.info(
                            "removed %s, a temporary file a crashed writer left",
                            self._path((*directory, name)),
                        )
