"""Progress can be read by an OS user who can't write: read-only stores create no file.

A service (one OS user) writes a SQLite database; a monitoring user (another OS user) reads it
with ``read_only=True`` and with the CLI's read-only commands, while the service writes and
after it stopped, in a shared (sticky, world-writable) directory and in one the reader can't
write. The reader gets the checkpoints, leaves no file behind (a ``-wal``/``-shm`` of its own
would lock the service out of writing), and the service goes on writing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from conftest import become, in_child, throwaway_os_user
from streamcheckpoint import Checkpoint, PersistError, SQLPersister, open_persister
from streamcheckpoint.cli import cli

T = TypeVar("T")
KEY = ("ns", "hub", "cg")


@pytest.fixture
def users() -> Iterator[tuple[pwd.struct_passwd, pwd.struct_passwd]]:
    """Two throwaway OS users: the service's and the reader's (removed afterwards)."""
    with throwaway_os_user("scsvc") as service, throwaway_os_user("scrd") as reader:
        yield service, reader


class Service:
    """The service: a process of its own user writing checkpoints to partition 0 non-stop."""

    def __init__(self, user: pwd.struct_passwd, url: str) -> None:
        self._user, self._url = user, url
        self._pid = os.fork()
        if self._pid == 0:
            code = 0
            signal.signal(signal.SIGTERM, _stop_cleanly)
            try:
                become(user)
                with SQLPersister(url) as store:
                    for sequence in range(1, 10**9):
                        store.write(*KEY, "0", Checkpoint(str(sequence), sequence))
                        time.sleep(0.002)
            except _StopRequestedError:
                pass  # the persister closed on the way out
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)

    def stop(self) -> int:
        """Stop the service (SIGTERM, as a deploy would) and return its exit status."""
        os.kill(self._pid, signal.SIGTERM)
        _, status = os.waitpid(self._pid, 0)
        return os.waitstatus_to_exitcode(status)


class _StopRequestedError(Exception):
    pass


def _stop_cleanly(signum: int, frame: object) -> None:
    raise _StopRequestedError


def warm_up(directory: Path) -> None:
    """Import everything a forked child uses before it becomes a user who can't read our venv."""
    with SQLPersister(f"sqlite:///{directory / 'warm.db'}") as store:
        store.write(*KEY, "0", Checkpoint("1", 1))
    with SQLPersister(f"sqlite:///{directory / 'warm.db'}", read_only=True) as store:
        store.list()
    CliRunner().invoke(cli, ["--url", f"sqlite:///{directory / 'warm.db'}", "status"])
    (directory / "warm.db").unlink()


def read_as_monitor(url: str) -> dict[str, Any]:
    """What a monitoring user does: the library read-only, then the CLI's read commands."""
    with open_persister(url, read_only=True) as store:
        records = store.list()
        read = store.read(*KEY, "0")
        try:
            store.write(*KEY, "0", Checkpoint("x", 0))
            refused = ""
        except PersistError as exc:
            refused = str(exc)
    runner = CliRunner()
    status = runner.invoke(cli, ["--url", url, "status", "--format", "json"])
    single = runner.invoke(cli, ["--url", url, "read", *KEY, "0"])
    return {
        "keys": [r.key for r in records],
        "sequence": read.sequence_number,
        "refused": refused,
        "status": (status.exit_code, status.output),
        "read": (single.exit_code, single.output),
    }


def files_of(directory: Path, user: pwd.struct_passwd) -> list[str]:
    return [p.name for p in directory.iterdir() if p.stat().st_uid == user.pw_uid]


@pytest.fixture
def public(tmp_path: Path) -> Iterator[Path]:
    """A directory every user may reach (pytest's own is its owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="sc-read-only-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-directory", "service-directory"])
def test_a_user_who_cant_write_reads_progress_and_leaves_no_file(
    tmp_path: Path,
    public: Path,
    users: tuple[pwd.struct_passwd, pwd.struct_passwd],
    shared: bool,
) -> None:
    service_user, reader = users
    warm_up(tmp_path)
    directory = public / "store"
    directory.mkdir()
    if shared:
        directory.chmod(0o1777)  # like /tmp: anyone may create files, only owners remove them
    else:
        os.chown(directory, service_user.pw_uid, service_user.pw_gid)
        directory.chmod(0o755)  # the reader can't create anything here
    url = f"sqlite:///{directory / 'app.db'}"

    service = Service(service_user, url)
    try:
        deadline = time.monotonic() + 30
        while not (directory / "app.db-wal").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # a few hundred writes
        while_writing = in_child(lambda: read_as_monitor(url), reader)
        assert files_of(directory, reader) == []
        time.sleep(0.2)  # the service goes on writing after the reader has been
    finally:
        assert service.stop() == 0, "the service failed while the reader read"
    assert not (directory / "app.db-wal").exists()  # its clean close removed them

    after_stopping = in_child(lambda: read_as_monitor(url), reader)
    assert files_of(directory, reader) == []

    for seen in (while_writing, after_stopping):
        assert seen["keys"] == [(*KEY, "0")]
        assert seen["sequence"] > 0
        assert "read_only=True" in seen["refused"]
        assert seen["status"][0] == 0, seen["status"][1]
        assert f'"sequence_number": {seen["sequence"]}' in seen["status"][1] or (
            seen is while_writing  # the service moved on between the two reads
        )
        assert seen["read"][0] == 0, seen["read"][1]
    with SQLPersister(url) as store:  # the service can write, as the reader left it
        final = store.read(*KEY, "0")
        assert final.sequence_number == after_stopping["sequence"]
        store.write(*KEY, "0", Checkpoint("after", final.sequence_number + 1))


def test_read_only_opens_nothing_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(PersistError):
        SQLPersister(f"sqlite:///{missing}", read_only=True)
    assert not missing.exists()
    with pytest.raises(PersistError):
        open_persister(f"file:{tmp_path / 'no-dir'}", read_only=True)
    assert not (tmp_path / "no-dir").exists()
