"""Planted files: whatever sits where the store's own file or directory belongs is refused,
never followed out of the store, and never waited on.

Every name the store creates or opens, in turn: SQLite's ``-wal``, ``-shm`` and ``-journal``
(and the database file itself as a FIFO or a directory); the file store's directory levels,
checkpoint files, lock file and temporary files, in both layouts. What is planted: a symbolic
link pointing out of the store, a FIFO, a directory. Each call runs with a deadline (a FIFO
opened the ordinary way blocks forever); outside the store nothing is created or changed.

The SQLite database file the URL names may itself be a link: SQLite resolves it and keeps its
``-wal`` and ``-shm`` beside the target. That is the file the user chose, like the file store's
own directory, so it is followed; streamcheckpoint makes no file of its own next to it.
(What already has a test in ``tests/test_file.py`` is not repeated: the nested layout's lock
file, a FIFO read as a checkpoint, a directory where a nested checkpoint belongs.)
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from streamcheckpoint import (
    Checkpoint,
    CorruptCheckpointError,
    FilePersister,
    PartitionKey,
    PersistError,
    SQLPersister,
)
from streamcheckpoint.filenames import LOCK_NAME, TEMP_PREFIX, go_file_name, nested_path

T = TypeVar("T")
KEY = PartitionKey("ns", "hub", "$Default", "0")
FIRST = Checkpoint("1", 1)
SECOND = Checkpoint("2", 2)


def bounded(call: Callable[[], T], seconds: float = 10) -> T:
    """``call()`` in a thread: its result or its error, or a failure if it takes too long."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the test
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call hung for {seconds} s on a planted file"
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path below ``directory`` and a regular file's content (to see that nothing
    outside the store was created or written)."""
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


def plant(path: Path, what: str, outside: Path) -> None:
    """Put ``what`` at ``path``: a link out of the store, a FIFO or a directory."""
    if what == "symlink":
        path.symlink_to(outside / f"target-of-{path.name}")
    elif what == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the store, which must end the test as it began."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "someone-elses-file").write_text("untouched")
    before = snapshot(directory)
    yield directory
    assert snapshot(directory) == before


# -- SQLite --------------------------------------------------------------------------------


def _sqlite_store(tmp_path: Path) -> tuple[Path, str]:
    store = tmp_path / "store"
    store.mkdir()
    database = store / "checkpoints.db"
    with SQLPersister(f"sqlite:///{database}") as persister:
        persister.write(*KEY, FIRST)
    return database, f"sqlite:///{database}"


SQLITE_CASES = [
    (suffix, what)
    for suffix in ("-wal", "-shm", "-journal", "")
    for what in ("symlink", "fifo", "directory")
    if (suffix, what) != ("", "symlink")  # the file the URL names: see the test after next
]


@pytest.mark.parametrize(("suffix", "what"), SQLITE_CASES)
def test_a_planted_sqlite_file_is_refused_never_followed_nor_waited_on(
    tmp_path: Path, outside: Path, suffix: str, what: str
) -> None:
    database, url = _sqlite_store(tmp_path)
    planted = Path(f"{database}{suffix}")
    kept = tmp_path / "kept.db"
    if suffix == "":
        database.rename(kept)
    plant(planted, what, outside)
    named = rf"{re.escape(str(planted))}' is a (symbolic link|FIFO|directory).*remove it"
    for options in ({}, {"read_only": True}, {"monotonic": True}):
        with pytest.raises(PersistError, match=named):
            bounded(lambda options=options: SQLPersister(url, **options))  # type: ignore[misc]
    left = {planted.name} if suffix == "" else {database.name, planted.name}
    assert {p.name for p in database.parent.iterdir()} == left  # no -wal or -shm made
    remove(planted)
    if suffix == "":
        kept.rename(database)
    with bounded(lambda: SQLPersister(url)) as persister:
        assert persister.read(*KEY) == FIRST
        persister.write(*KEY, SECOND)
        assert persister.read(*KEY) == SECOND


def test_a_planted_sqlite_file_stops_new_connections_not_the_running_one(
    tmp_path: Path, outside: Path
) -> None:
    database, url = _sqlite_store(tmp_path)
    with SQLPersister(url) as running:
        running.write(*KEY, SECOND)
        planted = Path(f"{database}-journal")
        plant(planted, "fifo", outside)
        running.write(*KEY, Checkpoint("3", 3))  # WAL: the running connection has no journal
        with pytest.raises(PersistError, match=re.escape(str(planted))):
            bounded(lambda: SQLPersister(url))
        remove(planted)
        assert running.read(*KEY) == Checkpoint("3", 3)


def test_a_linked_database_file_is_followed_and_sqlites_files_go_beside_its_target(
    tmp_path: Path,
) -> None:
    """The file the URL names is the user's choice, like the file store's directory."""
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    (store / "checkpoints.db").symlink_to(elsewhere / "real.db")
    with SQLPersister(f"sqlite:///{store / 'checkpoints.db'}") as persister:
        persister.write(*KEY, FIRST)
        assert [p.name for p in store.iterdir()] == ["checkpoints.db"]  # the link, nothing else
        assert {p.name for p in elsewhere.iterdir()} == {"real.db", "real.db-wal", "real.db-shm"}
    with SQLPersister(f"sqlite:///{elsewhere / 'real.db'}", read_only=True) as target:
        assert target.read(*KEY) == FIRST


# -- the file store ----------------------------------------------------------------------------


def _file_paths(store: Path, layout: str) -> dict[str, Path]:
    """Where each file and directory of KEY's checkpoint is, in ``layout``."""
    if layout == "go":
        return {"checkpoint": store / go_file_name(KEY), "lock": store / LOCK_NAME}
    levels = nested_path(KEY)
    return {
        "namespace directory": store / levels[0],
        "name directory": store.joinpath(*levels[:2]),
        "consumer group directory": store.joinpath(*levels[:3]),
        "checkpoint": store.joinpath(*levels),
    }


DIRECTORY_CASES = [
    (level, what)
    for level in ("namespace directory", "name directory", "consumer group directory")
    for what in ("symlink", "fifo")
]


@pytest.mark.parametrize(("level", "what"), DIRECTORY_CASES)
def test_a_planted_directory_level_is_refused_and_never_followed(
    tmp_path: Path, outside: Path, level: str, what: str
) -> None:
    store = tmp_path / "store"
    with FilePersister(store) as persister:
        persister.write(*KEY, FIRST)
        directory = _file_paths(store, "nested")[level]
        real = tmp_path / "real"
        directory.rename(real)
        if what == "symlink":
            # A copy of the real tree outside: following the link would find FIRST there.
            shutil.copytree(real, outside / "copy")
            directory.symlink_to(outside / "copy")
        else:
            os.mkfifo(directory)
        copied = snapshot(outside)
        named = re.escape(str(directory))
        with pytest.raises(PersistError, match=named):
            bounded(lambda: persister.read(*KEY))
        for monotonic in (False, True):
            with (
                FilePersister(store, monotonic=monotonic) as writer,
                pytest.raises(PersistError, match=named),
            ):
                bounded(lambda writer=writer: writer.write(*KEY, SECOND))  # type: ignore[misc]
        with pytest.raises(PersistError, match=named):
            bounded(lambda: persister.delete(*KEY))
        assert bounded(persister.list) == []  # only real directories are listed
        assert snapshot(outside) == copied
        shutil.rmtree(outside / "copy", ignore_errors=True)
        directory.unlink()
        real.rename(directory)
        assert persister.read(*KEY) == FIRST
        persister.write(*KEY, SECOND)
        assert persister.read(*KEY) == SECOND


@pytest.mark.parametrize("layout", ["nested", "go"])
@pytest.mark.parametrize("what", ["symlink", "fifo", "directory"])
def test_a_planted_checkpoint_file_is_unreadable_and_never_followed(
    tmp_path: Path, outside: Path, layout: str, what: str
) -> None:
    """Read: CorruptCheckpointError naming the path. A monotonic write can't compare, so it
    changes nothing; a plain write puts its own file in the planted one's place (a rename
    replaces the name, it never opens or follows what was there), except over a directory."""
    store = tmp_path / "store"
    with FilePersister(store, layout=layout) as persister:
        persister.write(*KEY, FIRST)
        path = _file_paths(store, layout)["checkpoint"]
        path.unlink()
        plant(path, what, outside)
        named = re.escape(str(path))
        with pytest.raises(CorruptCheckpointError, match=named):
            bounded(lambda: persister.read(*KEY))
        with FilePersister(store, layout=layout, monotonic=True) as monotonic:
            with pytest.raises(CorruptCheckpointError, match=named):
                bounded(lambda: monotonic.write(*KEY, SECOND))
            assert not path.is_file()
        if what == "directory":
            with pytest.raises(PersistError, match=named):
                bounded(lambda: persister.write(*KEY, SECOND))
            remove(path)
        bounded(lambda: persister.write(*KEY, SECOND))
        assert path.is_file()
        assert not path.is_symlink()
        assert persister.read(*KEY) == SECOND


@pytest.mark.parametrize("what", ["symlink", "fifo", "directory"])
def test_a_planted_lock_file_in_the_go_layout_is_refused_and_never_followed(
    tmp_path: Path, outside: Path, what: str
) -> None:
    store = tmp_path / "store"
    with FilePersister(store, layout="go", monotonic=True) as persister:
        persister.write(*KEY, FIRST)
        lock = _file_paths(store, "go")["lock"]
        lock.unlink()
        plant(lock, what, outside)
        with pytest.raises(PersistError, match=rf"{re.escape(str(lock))}.*remove it"):
            bounded(lambda: persister.write(*KEY, SECOND))
        assert persister.read(*KEY) == FIRST
        remove(lock)
        persister.write(*KEY, SECOND)
        assert persister.read(*KEY) == SECOND


@pytest.mark.parametrize("layout", ["nested", "go"])
@pytest.mark.parametrize("what", ["symlink", "fifo", "directory"])
def test_a_planted_temporary_file_is_refused_and_never_followed(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch, layout: str, what: str
) -> None:
    """The temporary file's name is random; here it is fixed, so that something can be planted
    where the next write creates it (exclusively, never through a link)."""
    store = tmp_path / "store"
    with FilePersister(store, layout=layout) as persister:
        persister.write(*KEY, FIRST)
        monkeypatch.setattr(secrets, "token_hex", lambda n: "0" * (2 * n))
        temporary = _file_paths(store, layout)["checkpoint"].parent / f"{TEMP_PREFIX}{'0' * 16}"
        plant(temporary, what, outside)
        with pytest.raises(PersistError, match=re.escape(str(temporary))):
            bounded(lambda: persister.write(*KEY, SECOND))
        assert persister.read(*KEY) == FIRST
        assert [r.checkpoint for r in persister.list()] == [FIRST]
        remove(temporary)
        persister.write(*KEY, SECOND)
        assert persister.read(*KEY) == SECOND
