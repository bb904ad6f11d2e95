"""Server sessions terminated under a writer: PostgreSQL ``pg_terminate_backend``, MariaDB ``KILL``.

While writers write continuously through one persister (sync: one call in flight; async: four),
another session kills every session of that persister, several times. At most the calls in
flight at a kill fail, each with ``PersistConnectionError``; the same persister, never
reopened, goes on writing after each kill; every acknowledged write is in the store afterwards.
The persister's sessions are found by a unique ``application_name`` (PostgreSQL) or by the
test's own database (MariaDB), so nobody else's sessions on the shared servers are touched.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from faults._writers import Api, Writers
from streamcheckpoint import PersistConnectionError, SQLPersister

KILLS = 6
"""How many times the writers' sessions are killed."""

CALLS_BETWEEN_KILLS = 30
"""Successful calls, started after a kill, before the next kill."""

ACTIVE_WAIT_S = 1.0
"""How long a kill waits for one of the sessions to be running a statement (else it kills them
idle: the next call finds the connection dead)."""


def _autocommit(url: str) -> sa.Connection:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _postgresql_killer(
    admin: sa.Connection, application_name: str
) -> Callable[[], tuple[int, bool]]:
    """Terminate every session named ``application_name``: how many there were, and whether
    one was running a statement."""
    active = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND state = 'active'"
    )
    # The sessions are listed first and terminated one by one: in one statement the planner
    # may call pg_terminate_backend before it filters by name, ending everybody's sessions.
    sessions = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
        "AND pid <> pg_backend_pid()"
    )
    terminate = sa.text("SELECT pg_terminate_backend(:pid, 5000)")

    def kill() -> tuple[int, bool]:
        deadline = time.monotonic() + ACTIVE_WAIT_S
        busy = False
        while not busy and time.monotonic() < deadline:
            busy = bool(admin.scalar(active, {"name": application_name}))
        pids = admin.scalars(sessions, {"name": application_name}).all()
        return sum(bool(admin.scalar(terminate, {"pid": pid})) for pid in pids), busy

    return kill


def _mysql_killer(admin: sa.Connection, database: str) -> Callable[[], tuple[int, bool]]:
    """``KILL`` every session using ``database``: how many there were, and whether one was
    running a statement."""
    sessions = sa.text(
        "SELECT ID, COMMAND FROM information_schema.PROCESSLIST "
        "WHERE DB = :db AND ID <> CONNECTION_ID()"
    )

    def kill() -> tuple[int, bool]:
        deadline = time.monotonic() + ACTIVE_WAIT_S
        rows = admin.execute(sessions, {"db": database}).all()
        while time.monotonic() < deadline and not any(row[1] == "Query" for row in rows):
            rows = admin.execute(sessions, {"db": database}).all()
        busy = any(row[1] == "Query" for row in rows)
        killed = 0
        for session_id, _ in rows:
            try:
                admin.exec_driver_sql(f"KILL {int(session_id)}")
                killed += 1
            except sa.exc.OperationalError as exc:  # 1094: it ended meanwhile
                if "1094" not in str(exc):
                    raise
        return killed, busy

    return kill


def _run(
    writers: Writers, kill: Callable[[], tuple[int, bool]], caplog: pytest.LogCaptureFixture
) -> dict[str, object]:
    """Kill the writers' sessions :data:`KILLS` times while they write; check the outcome."""
    caplog.set_level(logging.WARNING, logger="streamcheckpoint.sql.connection")
    windows: list[tuple[float, float]] = []
    killed: list[int] = []
    mid_statement = 0  # kills that found a session running a statement
    writers.start()
    try:
        since = time.monotonic()
        for _ in range(KILLS):
            writers.wait_for_successes(CALLS_BETWEEN_KILLS, after=since)
            started = time.monotonic()
            count, busy = kill()
            killed.append(count)
            mid_statement += busy
            since = time.monotonic()
            windows.append((started, since))
        # The same persister works after the last kill too.
        writers.wait_for_successes(CALLS_BETWEEN_KILLS, after=since)
    finally:
        writers.stop()

    assert all(count >= 1 for count in killed), f"a kill found no session to kill: {killed}"
    failures = writers.failures()
    for call in failures:
        assert isinstance(call.error, PersistConnectionError), repr(call.error)
        assert any(call.overlaps(*window) for window in windows), (
            f"a call that failed was not in flight at any kill: {call}"
        )
    assert len(failures) <= KILLS * writers.tasks
    reconnects = sum("lost the connection" in r.getMessage() for r in caplog.records)
    # Each kill ended the persister's kept connection, and the next call on it found out.
    assert reconnects >= KILLS, f"{reconnects} reconnections logged for {KILLS} kills"
    return {
        "kills": KILLS,
        "sessions killed": sum(killed),
        "kills with a statement running": mid_statement,
        "calls": len(writers.calls),
        "failed": len(failures),
        "reconnections logged": reconnects,
    }


@pytest.mark.postgres
@pytest.mark.parametrize("api", ["sync", "async"])
def test_postgresql_sessions_terminated_mid_run(
    api: Api, postgres_schema: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, schema = postgres_schema
    name = f"sc_fault_{uuid.uuid4().hex[:12]}"
    writer_url = sa.make_url(url).update_query_dict({"application_name": name})
    writers = Writers(
        api,
        writer_url.render_as_string(hide_password=False),
        schema=schema,
        tasks=1 if api == "sync" else 4,
    )
    with _autocommit(url) as admin:
        counts = _run(writers, _postgresql_killer(admin, name), caplog)
    reader = SQLPersister(url, schema=schema, migrate=False)
    try:
        stored = {record.key: record.checkpoint for record in reader.list()}
    finally:
        reader.close()
    keys = writers.check_store(stored)
    print(f"\npostgresql {api}: {counts}, {keys} partitions checked")


@pytest.mark.mysql
@pytest.mark.parametrize("api", ["sync", "async"])
def test_mysql_sessions_killed_mid_run(
    api: Api, mysql_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = sa.make_url(mysql_database).database
    assert database is not None
    writers = Writers(api, mysql_database, tasks=1 if api == "sync" else 4)
    with _autocommit(mysql_database) as admin:
        counts = _run(writers, _mysql_killer(admin, database), caplog)
    reader = SQLPersister(mysql_database, migrate=False)
    try:
        stored = {record.key: record.checkpoint for record in reader.list()}
    finally:
        reader.close()
    keys = writers.check_store(stored)
    print(f"\nmysql {api}: {counts}, {keys} partitions checked")
