"""PostgreSQL through psycopg 3: everything SQLPersister does differently there.

An engine SQLPersister creates is pooled with ``pool_pre_ping``, so that after a server restart
the next call gets a live connection. New connections get ``connect_timeout=10`` (seconds),
``application_name=streamcheckpoint``, TCP keepalives and ``tcp_user_timeout=30000`` (ms: a dead
host or a network that drops everything ends the connection) unless the URL or ``connect_args``
say otherwise, and ``statement_timeout`` 30 s where nothing (server, role, database, the URL's
``options``) set it: a statement waiting longer, for a lock say, is cancelled. A server process
that is frozen while its host still answers TCP (``docker pause``) is not bounded by any of
these. Their session time zone is UTC whatever the server's, the role's or the URL's
``options`` say: psycopg
converts ``timestamptz`` to the session's zone, where ``9999-12-31T23:00Z`` is past year 9999 in
Tokyo and ``0001-01-01T01:00Z`` before year 1 in New York. (A caller's own engine is used as it
is: give it a UTC session for such dates.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from ..schema import UTCTimestamp, keyed_ownerships, keyed_table
from .base import (
    CONNECT_TIMEOUT_S,
    QUERY_TIMEOUT_S,
    EngineHooks,
    Failure,
    OnConflictDialect,
    with_connect_defaults,
)

__all__ = ["PG_MIGRATION_LOCK_KEY", "PostgreSQLDialect"]

PG_MIGRATION_LOCK_KEY = int.from_bytes(b"stckmigr", "big", signed=True)
"""``pg_advisory_xact_lock`` key every streamcheckpoint process migrates under (an int64)."""

_READABLE_FORMAT = """'YYYY-MM-DD"T"HH24:MI:SS.US BC'"""
"""to_char's ISO 8601 in UTC with the era, ``AD`` or ``BC``, at the end (a SQL literal)."""

# SQLSTATEs meaning the table or schema is not there (or not as the code expects).
_SCHEMA_STATES = frozenset({"42P01", "42703", "3F000"})
# Deadlock detected, serialization failure: the transaction was rolled back; run it again.
_TRANSIENT_STATES = frozenset({"40P01", "40001"})
# Operator intervention that ends the session: admin/crash shutdown, cannot connect now.
_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})


class PostgreSQLDialect(OnConflictDialect):
    """PostgreSQL through psycopg 3 (see the module documentation for the settings)."""

    name = "postgresql"
    driver = "psycopg"
    url_example = "postgresql+psycopg://user:password@host:5432/dbname"
    extra = "postgres"
    # SQLAlchemy picks psycopg2 for the first and refuses the second.
    bare_names = ("postgresql", "postgres")
    default_port = 5432
    table: ClassVar[sa.Table] = keyed_table(UTCTimestamp(), "now()")
    ownerships: ClassVar[sa.Table] = keyed_ownerships(table, UTCTimestamp(), "now()")
    timestamp = UTCTimestamp

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.now()

    returns_changed_rows = True

    def changed_per_row(
        self, connection: sa.Connection, sql: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """All the runs in one pipeline (psycopg's ``executemany``): one round trip for the
        lot instead of one each; each statement returns the rows it changed."""
        if len(rows) < 2:
            return super().changed_per_row(connection, sql, rows)
        driver = connection.connection.dbapi_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.executemany(sql, rows, returning=True)  # type: ignore[call-arg]
            counts = [len(cursor.fetchall())]
            while cursor.nextset():
                counts.append(len(cursor.fetchall()))
        finally:
            cursor.close()
        return counts

    def configure(
        self, url: sa.URL, options: dict[str, Any], *, read_only: bool = False
    ) -> tuple[sa.URL, dict[str, Any], EngineHooks]:
        arguments = with_connect_defaults(url, options, _CONNECT_DEFAULTS)
        arguments.setdefault("pool_pre_ping", True)
        return url, arguments, {"connect": _set_up_session}

    def readable_timestamp(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any] | None:
        # psycopg can't load infinity, BC dates nor years past 9999, and fails the whole query:
        # fetched as UTC text (era marked) instead, each such row is reported on its own.
        utc = sa.func.to_char(
            sa.func.timezone(sa.literal_column("'UTC'"), column),
            sa.literal_column(_READABLE_FORMAT),
        )
        return sa.case((sa.func.isfinite(column), utc), else_=sa.cast(column, sa.Text))

    def timestamp_from_readable(self, value: Any) -> datetime:
        if not (isinstance(value, str) and value.endswith(" AD")):
            raise ValueError(f"{value!r} is not a time between years 1 and 9999")
        return datetime.fromisoformat(value[:-3]).replace(tzinfo=timezone.utc)

    def take_migration_lock(self, connection: sa.Connection) -> None:
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))

    def is_transient(self, error: BaseException) -> bool:
        return getattr(error, "sqlstate", None) in _TRANSIENT_STATES

    def classify(self, error: BaseException) -> Failure:
        import psycopg

        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate in _SCHEMA_STATES:
            return "schema"
        if isinstance(error, psycopg.DataError) and sqlstate is None:  # a value it can't load
            return "corrupt"
        if isinstance(error, psycopg.InterfaceError):
            return "connection"
        if isinstance(error, psycopg.OperationalError) and (
            sqlstate is None or sqlstate[:2] in ("08", "28") or sqlstate in _GONE_STATES
        ):
            return "connection"
        return "other"


_CONNECT_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "application_name": "streamcheckpoint",
    # A server host that dies or a network that drops everything: the connection is given up
    # once data has gone unacknowledged this long (ms), or idle probes went unanswered.
    "tcp_user_timeout": QUERY_TIMEOUT_S * 1000,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""libpq parameters of the engines SQLPersister creates, unless the URL or ``connect_args``
give them."""


def _set_up_session(connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    """Make a new session's time zone UTC, and bound its statements.

    A ``SET`` after connecting wins over any ``TimeZone`` in the libpq ``options`` (URL or
    ``connect_args``) and leaves their other settings alone. ``statement_timeout`` is set to
    :data:`QUERY_TIMEOUT_S` only where nothing set it (the server, the role, the database or
    the ``options``): a statement that waits longer, for a lock say, is cancelled.
    """
    cursor = connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute("SHOW statement_timeout")
        row = cursor.fetchone()
        if row is not None and row[0] == "0":
            cursor.execute(f"SET statement_timeout = '{QUERY_TIMEOUT_S}s'")
    finally:
        cursor.close()
    # Outside autocommit the SET opened a transaction, whose rollback would undo it.
    connection.commit()
