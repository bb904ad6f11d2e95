"""Throwaway PostgreSQL clusters for the fault suite: a primary, optionally a streaming standby.

A :class:`Node` is one cluster made by ``initdb`` in a directory of its own under ``/tmp``, run as
the ``postgres`` OS user (the server refuses to run as root) on a free loopback port, with its
unix socket in that directory and ``trust`` authentication. The test can stop it, start it,
SIGKILL it (the postmaster and every process it started, as if its machine died) and promote
it. :func:`primary_and_standby` adds a standby built by ``pg_basebackup -R``, synchronous
(``synchronous_standby_names`` on the primary names it) or asynchronous.

Everything is torn down however the test ends: each node is stopped with ``pg_ctl stop -m
immediate`` (SIGKILLed if that fails), and the directories are removed. Every command has
a timeout. Needs root (to run as ``postgres``) and the PostgreSQL binaries (``PG_BINDIR``,
default ``/usr/lib/postgresql/15/bin``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

__all__ = ["BIN_DIR", "Node", "cluster", "missing_prerequisite", "primary_and_standby"]

BIN_DIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
"""Where ``initdb``, ``pg_ctl`` and ``pg_basebackup`` are."""

OS_USER = "postgres"
"""The OS user the clusters run as."""

COMMAND_TIMEOUT_S = 60
"""The longest any one command (initdb, pg_ctl, pg_basebackup) may take."""

_SETTINGS = """
listen_addresses = '127.0.0.1'
max_connections = 40
shared_buffers = 16MB
wal_level = replica
max_wal_senders = 4
wal_keep_size = 64MB
logging_collector = off
"""


def missing_prerequisite() -> str | None:
    """Why clusters can't be built here (not root, no binaries, no ``postgres`` user), or None."""
    if os.geteuid() != 0:
        return "running PostgreSQL clusters as the postgres OS user needs root"
    if not (BIN_DIR / "initdb").exists():
        return f"no PostgreSQL binaries in {BIN_DIR} (set PG_BINDIR)"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no {OS_USER!r} OS user to run PostgreSQL as"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(*command: str, timeout: float = COMMAND_TIMEOUT_S, cwd: Path | None = None) -> str:
    """Run a PostgreSQL program as the postgres user; its output, or an error that shows it."""
    done = subprocess.run(
        [str(BIN_DIR / command[0]), *command[1:]],
        user=OS_USER,
        cwd=cwd or "/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


class Node:
    """One PostgreSQL server in ``<base>/data``, listening on ``127.0.0.1:port``."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.data = base / "data"
        self.port = port
        self.log = base / "server.log"

    @property
    def url(self) -> str:
        """A SQLAlchemy URL of the ``postgres`` database on this node."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def configure(self, settings: str) -> None:
        """Append ``settings`` to the node's ``postgresql.conf`` (later lines win)."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        _run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``) and wait until it has."""
        _run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started, as a machine that dies would."""
        processes = self.processes()
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in processes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {processes} of {self.data} outlived SIGKILL")
            time.sleep(0.01)

    def promote(self) -> None:
        """Promote a standby to primary and wait until it accepts writes."""
        _run("pg_ctl", "promote", "-D", str(self.data), "-w", "-t", "30")

    def postmaster(self) -> int | None:
        """The running postmaster's process id, or None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, WAL sender/receiver, ...)."""
        postmaster = self.postmaster()
        if postmaster is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                        children.append(int(entry.name))
        return [postmaster, *children]

    def scalar(self, sql: str) -> object:
        """The first column of the first row of ``sql`` (None if it returns no rows), run on
        this node in autocommit."""
        engine = sa.create_engine(
            self.url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5}
        )
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                result = conn.execute(sa.text(sql))
                return result.scalar() if result.returns_rows else None
        finally:
            engine.dispose()

    def teardown(self) -> None:
        """Stop the server however it is (immediately); SIGKILL it if that fails. (Process
        ids are never remembered: one reused by another process must not be killed.)"""
        if self.postmaster() is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        if self.postmaster() is not None:
            self.kill()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped


def _workspace() -> Path:
    """A directory under /tmp that the postgres user owns (pytest's tmp_path is root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix="sc-pg-"))
    user = pwd.getpwnam(OS_USER)
    os.chown(base, user.pw_uid, user.pw_gid)
    return base


def _new_primary(root: Path) -> Node:
    base = root / "primary"
    base.mkdir()
    user = pwd.getpwnam(OS_USER)
    os.chown(base, user.pw_uid, user.pw_gid)
    node = Node(base, free_port())
    _run(
        "initdb", "-D", str(node.data), "--auth=trust", "-U", "postgres", "--no-sync",
        "-E", "UTF8", "--locale=C",
    )  # fmt: skip
    node.configure(f"{_SETTINGS}port = {node.port}\nunix_socket_directories = '{base}'\n")
    return node


@contextlib.contextmanager
def cluster() -> Iterator[Node]:
    """A started primary on its own, torn down on exit."""
    root = _workspace()
    nodes: list[Node] = []
    try:
        nodes.append(_new_primary(root))
        nodes[0].start()
        yield nodes[0]
    finally:
        for node in nodes:
            node.teardown()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def primary_and_standby(*, synchronous: bool = True) -> Iterator[tuple[Node, Node]]:
    """A started primary and a streaming standby of it, torn down on exit.

    The standby (``cluster_name = 'standby1'``, which its WAL receiver reports as its
    application name) is a ``pg_basebackup -R`` of the primary. If ``synchronous``, the
    primary's ``synchronous_standby_names`` names it (``synchronous_commit`` stays ``on``: a
    commit returns once the standby has flushed its WAL); the standby is connected (and
    synchronous) before this yields.
    """
    root = _workspace()
    nodes: list[Node] = []
    try:
        primary = _new_primary(root)
        nodes.append(primary)
        primary.start()
        base = root / "standby"
        base.mkdir()
        user = pwd.getpwnam(OS_USER)
        os.chown(base, user.pw_uid, user.pw_gid)
        standby = Node(base, free_port())
        nodes.append(standby)
        _run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        standby.configure(
            f"port = {standby.port}\nunix_socket_directories = '{base}'\n"
            "cluster_name = 'standby1'\n"
        )
        standby.start()
        if synchronous:
            primary.scalar("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
            primary.scalar("SELECT pg_reload_conf()")
        wanted = "sync" if synchronous else "async"
        deadline = time.monotonic() + 30
        query = "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'"
        while primary.scalar(query) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby did not become {wanted} within 30 s")
            time.sleep(0.05)
        yield primary, standby
    finally:
        for node in reversed(nodes):
            node.teardown()
        shutil.rmtree(root, ignore_errors=True)
