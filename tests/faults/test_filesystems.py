"""A file system that refuses writes is a PersistError; the last checkpoint stays; service resumes.

For SQLite (a file) and the file store in both layouts, each cause in turn: ``RLIMIT_FSIZE`` (a
file-size limit, with SIGXFSZ ignored as a service would), a read-only bind mount, ``chattr +i``
on a file or a directory, and a non-root user whose write permission was taken away. (A full
file system is ``test_stopped_peers_and_full_disks.py``.) Every time: a write raises a
``PersistError`` naming the path, the previous checkpoint reads back intact, and once the cause
is gone writes work again on the same persister object, and on a new one.

The kernel decides what a descriptor that is already open may still do: SQLite keeps its files
open, so a persister that was writing before the cause often goes on writing (a read-only
remount is even refused while it has them open). The persisters that must fail here are those
whose writes open a file by its name: every file-store write, and a SQLite persister opened
while the cause is there. SQLite would open such a database read-only without a word, and that
connection stayed read-only after the cause was gone; it is refused at connection instead.
"""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import in_child, throwaway_os_user
from faults.conftest import require_root
from streamcheckpoint import Checkpoint, FilePersister, PartitionKey, PersistError, SQLPersister
from streamcheckpoint.persister import BasePersister

KEY = PartitionKey("ns", "hub", "$Default", "0")
FIRST = Checkpoint("1", 1)
BIG = Checkpoint("x" * 400_000, 2)  # larger than any limit below
KINDS = ["sqlite", "file-nested", "file-go"]


def _open(kind: str, directory: Path, **options: Any) -> BasePersister:
    if kind == "sqlite":
        return SQLPersister(f"sqlite:///{directory / 'checkpoints.db'}", **options)
    return FilePersister(directory / "store", layout=kind.split("-")[1], **options)


def _named(directory: Path) -> str:
    """A pattern for a message naming ``directory`` (or a path below it)."""
    return re.escape(str(directory))


def _resumes(persisters: list[BasePersister], kind: str, directory: Path) -> None:
    """Each persister writes and reads back again; so does a new one."""
    for sequence, persister in enumerate(persisters, start=3):
        persister.write(*KEY, Checkpoint(str(sequence), sequence))
        assert persister.read(*KEY) == Checkpoint(str(sequence), sequence)
    with _open(kind, directory) as fresh:
        fresh.write(*KEY, Checkpoint("9", 9))
        assert fresh.read(*KEY) == Checkpoint("9", 9)


def _open_during(kind: str, directory: Path, named: str) -> BasePersister | None:
    """A persister opened while writes are refused: SQLite refuses to open one (``None``), a
    file store opens, and its write is refused."""
    if kind == "sqlite":
        with pytest.raises(PersistError, match=named):
            _open(kind, directory)
        return None
    during = _open(kind, directory)
    with pytest.raises(PersistError, match=named):
        during.write(*KEY, BIG)
    assert during.read(*KEY) == FIRST
    return during


# -- RLIMIT_FSIZE ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_size_limit_is_a_persist_error_and_writes_resume_once_raised(
    tmp_path: Path, kind: str
) -> None:
    def scenario() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        store = _open(kind, tmp_path)
        store.write(*KEY, FIRST)
        resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, hard))
        with pytest.raises(PersistError, match=_named(tmp_path)) as caught:
            store.write(*KEY, BIG)
        assert re.search("too large|disk is full|disk I/O error", str(caught.value)), caught.value
        assert store.read(*KEY) == FIRST
        assert [r.checkpoint for r in store.list()] == [FIRST]
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        store.write(*KEY, BIG)
        assert store.read(*KEY) == BIG
        with _open(kind, tmp_path) as fresh:
            assert fresh.read(*KEY) == BIG
        _resumes([store], kind, tmp_path)
        store.close()

    in_child(scenario)


# -- a read-only bind mount ------------------------------------------------------------------


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/mount`` bind-mounted on itself (read-write until the test remounts it)."""
    require_root("a bind mount")
    mount = tmp_path / "mount"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(mount), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,bind,{mode}", str(mount)], check=True)


LEAVE_SQLITE_FILES = (
    "import os, sys\n"
    "from streamcheckpoint import Checkpoint, SQLPersister\n"
    "store = SQLPersister(f'sqlite:///{sys.argv[1]}')\n"
    "store.write('ns', 'hub', '$Default', '0', Checkpoint('1', 1))\n"
    "os._exit(0)  # like a crash: the -wal and -shm stay\n"
)


@pytest.mark.parametrize("kind", KINDS)
def test_a_read_only_mount_is_a_persist_error_and_writes_resume_once_writable(
    bind_mount: Path, kind: str
) -> None:
    live: BasePersister | None = None
    if kind == "sqlite":
        # SQLite's open files would make the kernel refuse the read-only remount (EBUSY):
        # the writer is gone, as after a crash, leaving -wal and -shm, which a read-only
        # connection would use.
        database = bind_mount / "checkpoints.db"
        subprocess.run([sys.executable, "-c", LEAVE_SQLITE_FILES, str(database)], check=True)
        assert Path(f"{database}-wal").exists()
    else:
        live = _open(kind, bind_mount)
        live.write(*KEY, FIRST)
    _remount(bind_mount, "ro")
    try:
        if live is not None:
            with pytest.raises(PersistError, match=f"{_named(bind_mount)}.*Read-only file system"):
                live.write(*KEY, BIG)
            assert live.read(*KEY) == FIRST
        during = _open_during(kind, bind_mount, f"(?i){_named(bind_mount)}.*read-only file system")
        with _open(kind, bind_mount, read_only=True) as reader:
            assert reader.read(*KEY) == FIRST
    finally:
        _remount(bind_mount, "rw")
    persisters = [p for p in (live, during) if p is not None]
    _resumes(persisters, kind, bind_mount)
    for persister in persisters:
        persister.close()


# -- chattr +i -------------------------------------------------------------------------------


def _immutable_target(kind: str, directory: Path, what: str) -> Path:
    if kind == "sqlite":
        return directory / ("checkpoints.db" if what == "file" else "checkpoints.db-wal")
    [checkpoint] = [
        p for p in (directory / "store").rglob("*") if p.is_file() and not p.name.startswith(".")
    ]
    return checkpoint if what == "file" else checkpoint.parent


@pytest.fixture
def chattr() -> Iterator[Callable[[Path], None]]:
    """``chattr +i`` on paths, cleared afterwards whatever happened."""
    require_root("chattr +i")
    made: list[Path] = []

    def immutable(path: Path) -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        made.append(path)

    try:
        yield immutable
    finally:
        for path in made:
            if path.exists():  # a -wal goes when SQLite closes the database
                subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("sqlite", "file"),
        ("sqlite", "wal"),
        ("file-nested", "file"),
        ("file-nested", "directory"),
        ("file-go", "file"),
        ("file-go", "directory"),
    ],
)
def test_an_immutable_file_or_directory_is_a_persist_error_and_writes_resume_once_cleared(
    tmp_path: Path, chattr: Callable[[Path], None], kind: str, what: str
) -> None:
    live = _open(kind, tmp_path)
    live.write(*KEY, FIRST)
    target = _immutable_target(kind, tmp_path, what)
    chattr(target)
    named = _named(tmp_path) if kind == "sqlite" else _named(target)
    # A SQLite connection that is open appends to the -wal: only the -wal can stop it.
    if kind != "sqlite" or what == "wal":
        with pytest.raises(PersistError, match=named):
            live.write(*KEY, BIG)
        assert live.read(*KEY) == FIRST
    refused = f"{named}.*can't be written" if kind == "sqlite" else named
    during = _open_during(kind, tmp_path, refused)
    subprocess.run(["chattr", "-i", str(target)], check=True)
    persisters = [p for p in (live, during) if p is not None]
    _resumes(persisters, kind, tmp_path)
    for persister in persisters:
        persister.close()


# -- a user without write permission ---------------------------------------------------------


@pytest.fixture
def user_directory() -> Iterator[tuple[pwd.struct_passwd, Path]]:
    """A throwaway OS user and a directory of theirs that they can reach; both removed after."""
    with throwaway_os_user("scfs") as user:
        directory = Path(tempfile.mkdtemp(prefix="sc-fsfaults-", dir="/tmp"))
        try:
            os.chown(directory, user.pw_uid, user.pw_gid)
            yield user, directory
        finally:
            shutil.rmtree(directory)


def _chmod_tree(directory: Path, *, writable: bool) -> None:
    """Take write permission away from (or give it back to) everything in ``directory``."""
    for path in [directory, *directory.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755 if writable else 0o555)
        else:
            path.chmod(0o644 if writable else 0o444)


@pytest.mark.parametrize("kind", KINDS)
def test_a_user_without_write_permission_gets_a_persist_error_and_writes_resume_once_allowed(
    user_directory: tuple[pwd.struct_passwd, Path], kind: str
) -> None:
    user, directory = user_directory

    def scenario() -> None:
        live = _open(kind, directory)
        live.write(*KEY, FIRST)
        _chmod_tree(directory, writable=False)
        try:
            if kind != "sqlite":  # SQLite writes through the descriptors it has open
                with pytest.raises(PersistError, match=f"{_named(directory)}.*Permission denied"):
                    live.write(*KEY, BIG)
                assert live.read(*KEY) == FIRST
            refused = f"{_named(directory)}.*(can't be written|Permission denied)"
            during = _open_during(kind, directory, refused)
        finally:
            _chmod_tree(directory, writable=True)
        persisters = [p for p in (live, during) if p is not None]
        _resumes(persisters, kind, directory)
        for persister in persisters:
            persister.close()

    in_child(scenario, user)
