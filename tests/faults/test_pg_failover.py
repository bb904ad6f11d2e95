"""PostgreSQL failover to a streaming standby, with a persister on a multi-host URL.

The tests build a primary and a standby of it on this machine (:mod:`faults._pgcluster`) and
open the persister on both hosts at once, ``target_session_attrs=read-write`` making it use
whichever is the primary (the README's "Running on more than one database machine"):

- **Synchronous standby**: while writers write, the primary's machine dies (SIGKILL of the
  postmaster and all its processes) and the standby is promoted. The calls in flight at the
  kill, and those made before the promotion ends, fail with ``PersistConnectionError``; every
  call started after it succeeds, on the same persister, now on the new primary; and every
  acknowledged write is on the new primary.
- **Asynchronous standby**: what it does not promise, shown deterministically: writes
  acknowledged while the standby is behind (here: stopped) are not on it when it is promoted.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from conftest import REQUIRE_SERVERS
from faults._pgcluster import Node, missing_prerequisite, primary_and_standby
from faults._writers import Api, Writers
from streamcheckpoint import Checkpoint, PartitionKey, PersistConnectionError, SQLPersister

CALLS_BEFORE = 50
"""Successful calls before the primary dies."""

CALLS_AFTER = 30
"""Successful calls after the promotion the test waits for."""

CONNECT_TIMEOUT_S = 3
"""``connect_timeout`` of the multi-host URL (per host), as the README recommends."""


def multi_host_url(*nodes: Node) -> str:
    """The README's URL: every host in the ``host`` parameter, the primary picked by libpq."""
    hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in nodes)
    return (
        f"postgresql+psycopg://postgres@/postgres?{hosts}"
        f"&target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT_S}"
    )


def _stored(node: Node) -> dict[PartitionKey, Checkpoint]:
    reader = SQLPersister(node.url, migrate=False)
    try:
        return {record.key: record.checkpoint for record in reader.list()}
    finally:
        reader.close()


def _require_clusters() -> None:
    problem = missing_prerequisite()
    if problem is not None:
        if REQUIRE_SERVERS:
            pytest.fail(f"{problem}; STREAMCHECKPOINT_REQUIRE_SERVERS=1 requires it")
        pytest.skip(problem)


@pytest.fixture
def synchronous_pair() -> Iterator[tuple[Node, Node]]:
    """A primary and its synchronous standby."""
    _require_clusters()
    with primary_and_standby(synchronous=True) as pair:
        yield pair


@pytest.fixture
def asynchronous_pair() -> Iterator[tuple[Node, Node]]:
    """A primary and its asynchronous standby."""
    _require_clusters()
    with primary_and_standby(synchronous=False) as pair:
        yield pair


@pytest.mark.parametrize("api", ["sync", "async"])
def test_failover_to_a_synchronous_standby_loses_no_acknowledged_write(
    api: Api, synchronous_pair: tuple[Node, Node]
) -> None:
    primary, standby = synchronous_pair
    writers = Writers(api, multi_host_url(primary, standby), tasks=1 if api == "sync" else 4)
    writers.start()
    try:
        writers.wait_for_successes(CALLS_BEFORE, after=0)
        died = time.monotonic()
        primary.kill()
        standby.promote()
        promoted = time.monotonic()
        resumed = writers.wait_for_successes(CALLS_AFTER, after=promoted)
    finally:
        writers.stop()

    assert standby.scalar("SELECT pg_is_in_recovery()") is False
    failures = writers.failures()
    for call in failures:
        assert isinstance(call.error, PersistConnectionError), repr(call.error)
        assert call.overlaps(died, promoted), f"a call failed outside the failover: {call}"
    late = [call for call in writers.calls if call.started > promoted and call.error is not None]
    assert not late, f"calls started after the promotion failed: {late}"
    # Writes went on, on the new primary, and nothing acknowledged before the kill is missing.
    stored = _stored(standby)
    keys = writers.check_store(stored)
    after = [c for c in writers.calls if c.error is None and c.started > promoted]
    assert all(stored[k].sequence_number >= s for c in after for k, s in c.writes)
    in_flight = sum(call.started < died for call in failures)
    print(
        f"\nfailover {api}: {len(writers.calls)} calls, {len(failures)} failed "
        f"({in_flight} in flight at the kill), kill to promoted {promoted - died:.2f} s, "
        f"kill to first write on the new primary {resumed - died:.2f} s, {keys} partitions "
        "checked on the new primary"
    )


def test_failover_to_an_asynchronous_standby_can_lose_acknowledged_writes(
    asynchronous_pair: tuple[Node, Node],
) -> None:
    primary, standby = asynchronous_pair
    key = PartitionKey("ns", "hub", "$Default", "0")
    persister = SQLPersister(multi_host_url(primary, standby))
    try:
        persister.write(*key, Checkpoint("1", 1))
        # Wait until the standby has replayed it: it was streaming, and has the first write.
        lsn = primary.scalar("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + 30
        query = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        while standby.scalar(query) is not True:
            assert time.monotonic() < deadline, "the standby did not catch up within 30 s"
            time.sleep(0.02)
        # The standby falls behind (stopped here; a slow network or disk does the same): the
        # primary doesn't wait for it, and acknowledges.
        standby.stop()
        for sequence in range(2, 12):
            persister.write(*key, Checkpoint(str(sequence), sequence))
        assert persister.read(*key).sequence_number == 11
    finally:
        persister.close()
    primary.kill()
    standby.start()
    standby.promote()
    # Ten acknowledged writes are gone: the new primary has the first checkpoint only.
    assert _stored(standby)[key].sequence_number == 1


def test_writes_wait_for_a_stopped_synchronous_standby_and_a_cancel_acknowledges_them(
    synchronous_pair: tuple[Node, Node],
) -> None:
    """What the README says a synchronous standby costs: while it is down a write waits for it
    (``statement_timeout`` doesn't end the wait) and completes once it is back; a wait cancelled
    on the server (``pg_cancel_backend``) is acknowledged although the standby never got it."""
    primary, standby = synchronous_pair
    key = PartitionKey("ns", "hub", "$Default", "0")
    persister = SQLPersister(f"{primary.url}?options=-c%20statement_timeout%3D500")
    waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"

    def write_in_thread(sequence: int) -> tuple[threading.Thread, list[float]]:
        done: list[float] = []
        started = time.monotonic()

        def write() -> None:
            persister.write(*key, Checkpoint(str(sequence), sequence))
            done.append(time.monotonic() - started)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        return thread, done

    try:
        persister.write(*key, Checkpoint("1", 1))
        standby.stop()
        thread, done = write_in_thread(2)
        thread.join(2)  # four times the statement timeout
        assert not done, "a write returned while the synchronous standby was down"
        assert primary.scalar(waiting) is not None
        standby.start()
        thread.join(30)
        assert done, "the write did not end once the standby was back"
        assert standby.scalar("SELECT count(*) FROM checkpoints WHERE sequence_number = 2") == 1

        standby.stop()
        thread, done = write_in_thread(3)
        deadline = time.monotonic() + 10
        while (pid := primary.scalar(waiting)) is None:
            assert time.monotonic() < deadline, "the write never waited for the standby"
            time.sleep(0.01)
        assert primary.scalar(f"SELECT pg_cancel_backend({pid})") is True
        thread.join(10)
        assert done, "a cancelled wait for the standby did not end the write"
    finally:
        persister.close()
    # The cancelled write was acknowledged; the standby never got it.
    primary.kill()
    standby.start()
    standby.promote()
    assert _stored(standby)[key].sequence_number == 2


@pytest.mark.postgres
def test_a_silent_host_in_the_url_costs_each_new_connection_its_connect_timeout(
    postgres_schema: tuple[str, str],
) -> None:
    """A dead machine first in the host list doesn't refuse connections, it stays silent (a
    listener that never answers, here): each new connection waits ``connect_timeout`` for it,
    then goes on to the next host; calls on the connection kept since cost nothing more."""
    url, schema = postgres_schema
    live = sa.make_url(url)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        dead_port = silent.getsockname()[1]
        multi = (
            f"postgresql+psycopg://{live.username}@/{live.database}"
            f"?host=127.0.0.1:{dead_port}&host={live.host}:{live.port or 5432}"
            "&target_session_attrs=read-write&connect_timeout=1"
        )
        started = time.monotonic()
        persister = SQLPersister(multi, schema=schema)
        try:
            opened = time.monotonic() - started
            started = time.monotonic()
            for sequence in range(20):
                persister.write("ns", "hub", "$Default", "0", Checkpoint(str(sequence), sequence))
            writing = time.monotonic() - started
            assert persister.read("ns", "hub", "$Default", "0").sequence_number == 19
        finally:
            persister.close()
    print(f"\nsilent first host: opening {opened:.2f} s, 20 writes {writing:.3f} s")
    # Each connection opening made (it checks the schema, then keeps one) waited the 1 s
    # connect timeout for the silent host, not 10 s; the writes, on the kept one, not at all.
    assert 1 <= opened < 4, f"opening took {opened:.2f} s"
    assert writing < 1, f"20 writes took {writing:.2f} s"
