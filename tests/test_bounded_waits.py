"""No call waits forever on a database server: connecting and every statement are bounded.

Against a listener that accepts TCP connections and never answers, and against a server that
stops answering in the middle of a session (a proxy that stops passing bytes on; a peer that
holds the row we write, stopped with SIGSTOP), every call fails within its bound with a
PersistError, and the next call after the cause is gone works. The bounds are the documented
defaults (10 s to connect, 30 s per statement), made short here through the URL.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from streamcheckpoint import (
    Checkpoint,
    PartitionKey,
    PersistConnectionError,
    PersistError,
    SQLPersister,
)
from streamcheckpoint.sql.dialects import mysql, postgresql
from streamcheckpoint.sql.dialects.base import CONNECT_TIMEOUT_S, QUERY_TIMEOUT_S

KEY = PartitionKey("ns", "hub", "cg", "0")


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose listener completes TCP connections (the kernel does) and never speaks."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


class Proxy:
    """Passes bytes between clients and a server until :meth:`freeze`: then it stops reading
    from either side, as a server that hangs would (the kernel still acknowledges packets)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port: int = self._server.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pipe, args=(source, sink), daemon=True)
                thread.start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                self._flowing.wait()
                readable, _, _ = select.select([source], [], [], 0.05)
                if not readable or not self._flowing.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    return
                sink.sendall(data)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def proxy_to(url: str) -> Iterator[Proxy]:
    parsed = sa.make_url(url)
    proxy = Proxy((parsed.host or "127.0.0.1", parsed.port or 3306))
    try:
        yield proxy
    finally:
        proxy.close()


def through(url: str, port: int, **query: str) -> str:
    parsed = sa.make_url(url)._replace(port=port)
    parsed = parsed.update_query_dict(query)
    return parsed.render_as_string(hide_password=False)


def elapsed(call: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:  # what the call raised, for the test to judge
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# -- the defaults ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgresql_sessions_are_bounded_by_default(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    with SQLPersister(url, schema=schema) as persister, persister.engine.connect() as connection:
        shown = connection.exec_driver_sql("SHOW statement_timeout").scalar_one()
        driver: Any = connection.connection.dbapi_connection
        parameters = driver.info.get_parameters()
    assert shown == f"{QUERY_TIMEOUT_S}s"
    assert parameters["connect_timeout"] == str(CONNECT_TIMEOUT_S)
    assert parameters["tcp_user_timeout"] == str(QUERY_TIMEOUT_S * 1000)
    assert parameters["keepalives"] == "1"
    # What the role, the database or the URL's options set is kept.
    mine = sa.make_url(url).update_query_dict({"options": "-c statement_timeout=7s"})
    with SQLPersister(mine, schema=schema) as persister, persister.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar_one() == "7s"


@pytest.mark.mysql
def test_mysql_sessions_are_bounded_by_default(mysql_database: str) -> None:
    with SQLPersister(mysql_database) as persister:
        with persister.engine.connect() as connection:
            driver: Any = connection.connection.dbapi_connection
            lock_wait = connection.exec_driver_sql(
                "SELECT @@SESSION.innodb_lock_wait_timeout"
            ).scalar_one()
        assert (driver._read_timeout, driver._write_timeout) == (QUERY_TIMEOUT_S,) * 2
        assert driver.connect_timeout == CONNECT_TIMEOUT_S
        assert lock_wait < QUERY_TIMEOUT_S


# -- a listener that never answers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "module", "defaults"),
    [
        ("postgresql://postgres@127.0.0.1:{port}/test", postgresql, {"connect_timeout": 1}),
        ("mysql://root@127.0.0.1:{port}/test", mysql, {"connect_timeout": 1, "read_timeout": 1}),
    ],
    ids=["postgresql", "mysql"],
)
def test_a_listener_that_never_answers_fails_within_the_default_bound(
    url: str, module: Any, defaults: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our defaults (shortened here) bound it: nothing in the URL asks for a timeout."""
    for name, seconds in defaults.items():
        monkeypatch.setitem(module._CONNECT_DEFAULTS, name, seconds)
    with silent_listener() as port:
        took, error = elapsed(lambda: SQLPersister(url.format(port=port)))
    assert isinstance(error, PersistConnectionError), error
    assert took < 8, took


def test_the_cli_gives_up_on_a_silent_mysql_listener_as_the_url_says(tmp_path: Any) -> None:
    script = [sys.executable, "-m", "streamcheckpoint"]
    with silent_listener() as port:
        url = f"mysql://root:pw@127.0.0.1:{port}/x?connect_timeout=1&read_timeout=2"
        started = time.monotonic()
        result = subprocess.run(
            [*script, "--url", url, "status"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "pw@" not in result.stderr


# -- a server that stops answering mid-session ---------------------------------------------------


@pytest.mark.mysql
def test_a_mysql_server_that_stops_answering_mid_session(mysql_database: str) -> None:
    with proxy_to(mysql_database) as proxy:
        url = through(mysql_database, proxy.port, read_timeout="1", write_timeout="1")
        with SQLPersister(url) as persister:
            persister.write(*KEY, Checkpoint("1", 1))
            proxy.freeze()
            for call in (
                lambda: persister.write(*KEY, Checkpoint("2", 2)),
                lambda: persister.read(*KEY),
                persister.list,
            ):
                took, error = elapsed(call)
                assert isinstance(error, PersistConnectionError), error
                assert took < 15, took  # the read timeout, a reconnect and its timeout
            proxy.thaw()
            persister.write(*KEY, Checkpoint("3", 3))
            assert persister.read(*KEY) == Checkpoint("3", 3)


def _hold_row_and_stop(url: str, statement: str) -> subprocess.Popen[str]:
    """A process that locks a row and is then stopped (SIGSTOP) while it holds it."""
    program = (
        "import sys, sqlalchemy as sa\n"
        "engine = sa.create_engine(sys.argv[1])\n"
        "connection = engine.connect()\n"
        "connection.exec_driver_sql(sys.argv[2]).all()\n"
        "print('holding', flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    peer = subprocess.Popen(
        [sys.executable, "-c", program, url, statement], stdout=subprocess.PIPE, text=True
    )
    assert peer.stdout is not None
    assert peer.stdout.readline() == "holding\n"
    peer.send_signal(signal.SIGSTOP)
    return peer


def _a_write_waits_for_a_stopped_peer_only_so_long(
    persister: SQLPersister, url: str, lock_rows: str, expected: str
) -> None:
    """A write that a stopped peer holds up fails with ``expected`` within 10 s; once the peer
    is gone the same persister writes."""
    persister.write(*KEY, Checkpoint("1", 1))
    peer = _hold_row_and_stop(url, lock_rows)
    try:
        took, error = elapsed(lambda: persister.write(*KEY, Checkpoint("2", 2)))
        assert isinstance(error, PersistError), error
        assert expected in str(error)
        assert took < 10, took
    finally:
        peer.kill()
        peer.communicate()
    persister.write(*KEY, Checkpoint("2", 2))
    assert persister.read(*KEY) == Checkpoint("2", 2)


@pytest.mark.postgres
def test_a_postgresql_write_held_up_by_a_stopped_peer_ends_at_the_statement_timeout(
    postgres_schema: tuple[str, str],
) -> None:
    url, schema = postgres_schema
    short = sa.make_url(url).update_query_dict({"options": "-c statement_timeout=1000"})
    with SQLPersister(short, schema=schema) as persister:
        _a_write_waits_for_a_stopped_peer_only_so_long(
            persister,
            url,
            f'SELECT * FROM "{schema}".checkpoints FOR UPDATE',
            "statement timeout",
        )


@pytest.mark.mysql
def test_a_mysql_write_held_up_by_a_stopped_peer_ends_at_the_lock_wait_timeout(
    mysql_database: str,
) -> None:
    short = sa.make_url(mysql_database).update_query_dict(
        {"init_command": "SET SESSION innodb_lock_wait_timeout = 1"}
    )
    with SQLPersister(short) as persister:
        _a_write_waits_for_a_stopped_peer_only_so_long(
            persister,
            mysql_database,
            "SELECT * FROM checkpoints FOR UPDATE",
            "Lock wait timeout",
        )
