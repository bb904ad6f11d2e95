"""A stopped peer and a full disk make calls fail with a PersistError, never hang or kill us.

A peer stopped while it holds a lock (SIGSTOP, ``docker pause``, a debugger) must cost our call
at most the documented wait (SQLite's ``busy_timeout``, the file store's lock timeout); a full
file system must be an error the caller can handle, with the previous checkpoint intact and
normal service once space is free again. Every write path is tried: ``write``, ``write_many``,
a monotonic write and ``delete``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from faults.conftest import SmallDisk
from streamcheckpoint import (
    Checkpoint,
    FilePersister,
    PartitionKey,
    PersistError,
    SQLPersister,
)
from streamcheckpoint import file as file_module
from streamcheckpoint.persister import BasePersister

KEY = PartitionKey("ns", "hub", "$Default", "0")
OTHER = KEY._replace(partition_id="1")
BIG = "x" * 400_000  # an offset whose pages can't fit in the space left

Call = Callable[[BasePersister], object]

WRITES: dict[str, Call] = {
    "write": lambda p: p.write(*KEY, Checkpoint(BIG, 2)),
    "write_many": lambda p: p.write_many({KEY: Checkpoint(BIG, 2), OTHER: Checkpoint(BIG, 2)}),
    "monotonic write": lambda p: p.write(*KEY, Checkpoint(BIG, 2)),
}
CALLS: dict[str, Call] = {**WRITES, "delete": lambda p: p.delete(*KEY)}


def _open(kind: str, directory: Path, *, monotonic: bool, busy_ms: int = 5000) -> BasePersister:
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'checkpoints.db'}?busy_timeout={busy_ms}"
        return SQLPersister(url, monotonic=monotonic)
    return FilePersister(directory / "store", layout=kind.split("-")[1], monotonic=monotonic)


@contextmanager
def _stopped_peer(program: str, *args: str) -> Iterator[None]:
    """Run ``program`` (Python) until it prints a line, then SIGSTOP it; kill it on exit."""
    peer = subprocess.Popen(
        [sys.executable, "-c", program, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline() == "holding\n"
        peer.send_signal(signal.SIGSTOP)
        yield
    finally:
        peer.kill()
        peer.communicate()


SQLITE_WRITE_LOCK = (
    "import sqlite3, sys, time\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('BEGIN IMMEDIATE')\n"
    "print('holding', flush=True)\n"
    "time.sleep(600)\n"
)

FILE_LOCK = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('holding', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.mark.parametrize("call", list(CALLS))
def test_a_stopped_peer_holding_sqlites_write_lock_costs_at_most_busy_timeout(
    tmp_path: Path, call: str
) -> None:
    with _open("sqlite", tmp_path, monotonic=call == "monotonic write", busy_ms=300) as store:
        store.write(*KEY, Checkpoint("1", 1))
        with _stopped_peer(SQLITE_WRITE_LOCK, str(tmp_path / "checkpoints.db")):
            started = time.monotonic()
            with pytest.raises(PersistError, match="database is locked"):
                CALLS[call](store)
            waited = time.monotonic() - started
            assert 0.3 <= waited < 3, waited
            assert store.read(*KEY) == Checkpoint("1", 1)  # readers don't wait in WAL mode
        CALLS[call](store)  # and once the peer is gone, the call goes through
    # SQLite's own files only: no lock file or mailbox of ours that a peer could hold.
    names = {p.name for p in tmp_path.iterdir()}
    assert "checkpoints.db" in names
    assert names <= {"checkpoints.db", "checkpoints.db-shm", "checkpoints.db-wal"}


@pytest.mark.parametrize("layout", ["nested", "go"])
def test_a_stopped_peer_holding_the_file_lock_costs_at_most_the_lock_timeout(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_module, "LOCK_TIMEOUT_SECONDS", 0.3)
    with _open(f"file-{layout}", tmp_path, monotonic=True) as store:
        store.write(*KEY, Checkpoint("1", 1))
        with _stopped_peer(FILE_LOCK, str(tmp_path / "store" / ".sclock")):
            for call in WRITES.values():
                started = time.monotonic()
                with pytest.raises(PersistError, match=r"waited 0\.3 s for the lock file"):
                    call(store)
                assert 0.3 <= time.monotonic() - started < 3
            assert store.read(*KEY) == Checkpoint("1", 1)
        store.write(*KEY, Checkpoint("2", 2))
        assert store.read(*KEY) == Checkpoint("2", 2)


@pytest.mark.parametrize("kind", ["sqlite", "file-nested", "file-go"])
@pytest.mark.parametrize("call", list(WRITES))
def test_a_full_disk_is_a_persist_error_and_the_last_checkpoint_stays(
    small_disk: SmallDisk, kind: str, call: str
) -> None:
    monotonic = call == "monotonic write"
    with _open(kind, small_disk.path, monotonic=monotonic) as store:
        store.write(*KEY, Checkpoint("1", 1))
        small_disk.fill()
        try:
            with pytest.raises(PersistError) as caught:
                WRITES[call](store)
            assert "full" in str(caught.value) or "No space left" in str(caught.value)
            assert store.read(*KEY) == Checkpoint("1", 1)
            assert [r.checkpoint for r in store.list()] == [Checkpoint("1", 1)]
        finally:
            small_disk.free()
        WRITES[call](store)
        assert store.read(*KEY) == Checkpoint(BIG, 2)
    with _open(kind, small_disk.path, monotonic=monotonic) as again:  # and it opens cleanly
        assert again.read(*KEY) == Checkpoint(BIG, 2)
