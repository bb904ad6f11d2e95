"""Everything that differs between the databases that ``SQLPersister`` supports.

One :class:`Dialect` per database, decided once when a persister opens, instead of
``if dialect.name == ...`` through the code: the upsert construct and the database clock (used by
:mod:`.statements`), how an engine created from a URL is configured, how the kept write
connection runs single statements and transactions, and which driver errors mean "unreachable"
or "schema missing".

Supported: SQLite through the standard library's ``sqlite3``, PostgreSQL through psycopg 3, and
MySQL/MariaDB through PyMySQL.
"""

from __future__ import annotations

import abc
import copy
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.pool import ConnectionPoolEntry, SingletonThreadPool, StaticPool

from ..errors import PersistError
from .schema import UTCDateTime, checkpoints, hashed_checkpoints

__all__ = [
    "DIALECTS",
    "PG_MIGRATION_LOCK_KEY",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_SYNCHRONOUS",
    "Dialect",
    "Failure",
    "MySQLDialect",
    "PostgreSQLDialect",
    "SQLiteDialect",
    "dialect_for_engine",
    "dialect_for_url",
]

Failure = Literal["connection", "schema", "other"]
"""What a driver error means to a caller: unreachable store, missing schema, anything else."""

ConnectHook = Callable[[DBAPIConnection, ConnectionPoolEntry], None]

SQLITE_SYNCHRONOUS = "FULL"
"""Default ``PRAGMA synchronous``: a write that returned survives a power failure."""

SQLITE_BUSY_TIMEOUT_MS = 5000
"""Default ``PRAGMA busy_timeout``: how long a writer waits for another one, in milliseconds."""

_SQLITE_SYNCHRONOUS_CHOICES = ("OFF", "NORMAL", "FULL", "EXTRA")

PG_MIGRATION_LOCK_KEY = int.from_bytes(b"stckmigr", "big", signed=True)
"""``pg_advisory_xact_lock`` key every streamcheckpoint process migrates under (an int64)."""

MYSQL_MIGRATION_LOCK = "streamcheckpoint_migration"
"""``GET_LOCK`` name every streamcheckpoint process migrates under on MySQL/MariaDB."""

_MYSQL_MIGRATION_WAIT_S = 600

_UPDATED_COLUMNS = ("stream_offset", "enqueue_time", "updated_at", "sequence_number")


class Dialect(abc.ABC):
    """The differences of one database, as SQLPersister needs them."""

    name: ClassVar[str]
    """SQLAlchemy's name of the database (``engine.dialect.name``)."""

    driver: ClassVar[str]
    """The one driver supported (``engine.dialect.driver``)."""

    url_example: ClassVar[str]
    """A URL of this kind, for error messages."""

    extra: ClassVar[str | None] = None
    """The package extra that installs :attr:`driver` (``pip install 'streamcheckpoint[...]'``)."""

    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names SQLAlchemy gives the same database (``mariadb`` for ``mysql``)."""

    bare_names: ClassVar[tuple[str, ...]] = ()
    """URL schemes without ``+driver`` that mean this database with :attr:`driver`, where
    SQLAlchemy on its own would pick another driver or refuse the name."""

    table: ClassVar[sa.Table] = checkpoints
    """The ``checkpoints`` table as this database keys it (see :mod:`.schema`)."""

    hashed_key: ClassVar[bool] = False
    """Whether the table's key is ``key_hash`` (a write binds it before the key columns)."""

    locks_rows: ClassVar[bool] = True
    """Whether writers lock rows (not the whole database): a batch then writes its rows in key
    order, so that two batches over the same keys can't deadlock."""

    refusals_by_rowcount: ClassVar[bool] = True
    """Whether a monotonic upsert's row count is 0 exactly when it refused the write.

    Where it isn't, monotonic writes run in a transaction and read the rows back to tell.
    """

    begin_sql: ClassVar[str]
    """What starts a write transaction on the kept write connection."""

    autocommit: ClassVar[tuple[str, Any]]
    """The driver connection's attribute and the value of it that mean autocommit mode.

    The kept write connection runs in this mode, so a one-statement write or read is one
    statement for the database (no ``BEGIN``/``COMMIT`` round trips); the previous value is
    restored before the connection goes back to the pool.
    """

    statement_options: ClassVar[Mapping[str, Any]] = {}
    """Execution options for reads and deletes (one statement each) through SQLAlchemy."""

    create_schema_sql: ClassVar[str] = 'CREATE SCHEMA "{}"'
    """How to create a schema named ``{}`` here, for error messages."""

    def check_schema(self, schema: str | None, url: sa.URL | None = None) -> None:
        """Refuse a ``schema`` argument this database can't take (``TypeError``/``ValueError``).

        ``url``, where known, is the database's: some need it to name a database.
        """
        if schema is None:
            return
        if not isinstance(schema, str):
            raise TypeError(f"schema must be a str or None, not {type(schema).__name__}")
        if not schema:
            raise ValueError("schema must not be empty; pass None for the default schema")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name SQLAlchemy gives this database."""
        return (self.name, *self.aliases)

    @abc.abstractmethod
    def upserts(self, values: Mapping[str, Any]) -> tuple[sa.Insert, sa.Insert]:
        """``(upsert, monotonic upsert)`` of one row of :attr:`table` with ``values``.

        Both insert the row or overwrite the stored checkpoint columns and ``updated_at`` (the
        database's clock); the monotonic one leaves a stored row whose sequence number is
        higher unchanged.
        """

    def get_autocommit(self, connection: DBAPIConnection) -> Any:
        """The driver connection's autocommit setting (see :attr:`autocommit`)."""
        return getattr(connection, self.autocommit[0])

    def set_autocommit(self, connection: DBAPIConnection, value: Any) -> None:
        """Change the driver connection's autocommit setting."""
        setattr(connection, self.autocommit[0], value)

    def release_migration_lock(self, connection: sa.Connection) -> None:  # noqa: B027
        """Release a migration lock that outlives transactions; called once they have ended."""

    @abc.abstractmethod
    def clock(self) -> sa.ColumnElement[Any]:
        """The database's current time, in the format the ``updated_at`` column stores."""

    @abc.abstractmethod
    def configure(
        self, url: sa.URL, options: dict[str, Any]
    ) -> tuple[sa.URL, dict[str, Any], ConnectHook | None]:
        """Return the URL, ``create_engine`` arguments and connect hook for a new engine.

        ``options`` are the caller's engine options; they win over our defaults.
        """

    def compile_dialect(self, dialect: sa.Dialect) -> sa.Dialect:
        """The SQLAlchemy dialect that compiles statements run on the driver directly."""
        return dialect

    def queued_database(self, url: sa.URL) -> str | None:
        """The database file whose writers take turns through a :class:`.WriteQueue`, if any
        (its absolute path)."""
        return None

    def check_engine(self, engine: sa.Engine) -> None:  # noqa: B027 - optional
        """Refuse (``ValueError``) a caller's engine that a persister can't use safely."""

    @abc.abstractmethod
    def take_migration_lock(self, connection: sa.Connection) -> None:
        """Hold the database-wide migration lock until ``connection``'s transaction ends."""

    @abc.abstractmethod
    def classify(self, error: BaseException) -> Failure:
        """Say what a driver error means to the caller."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether the database aborted (and rolled back) the work to break a deadlock or a
        lock wait, so that running it again may succeed."""
        return False

    def bind_processor(
        self, type_: sa.types.TypeEngine[Any], dialect: sa.Dialect
    ) -> Callable[[Any], Any] | None:
        """The conversion SQLAlchemy applies to a value of ``type_`` before the driver sees it."""
        return type_.dialect_impl(dialect).bind_processor(dialect)


class _OnConflictDialect(Dialect):
    """A database with ``INSERT ... ON CONFLICT (key) DO UPDATE``."""

    @abc.abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """This database's ``INSERT`` construct, which has ``on_conflict_do_update``."""

    def upserts(self, values: Mapping[str, Any]) -> tuple[sa.Insert, sa.Insert]:
        table = self.table
        insert = self.insert(table).values(**values, updated_at=self.clock())
        excluded = insert.excluded
        changes = {name: excluded[name] for name in _UPDATED_COLUMNS}
        key = list(table.primary_key.columns)
        upsert = insert.on_conflict_do_update(index_elements=key, set_=changes)
        monotonic = insert.on_conflict_do_update(
            index_elements=key,
            set_=changes,
            where=table.c.sequence_number <= excluded.sequence_number,
        )
        return upsert, monotonic


class SQLiteDialect(_OnConflictDialect):
    """SQLite through ``sqlite3``.

    An engine SQLPersister creates from a ``sqlite:///path`` URL gets, on every new connection:

    * ``PRAGMA busy_timeout=5000``: a writer waits up to 5 s for another process's write
      transaction instead of failing with ``database is locked``. Set first, so that even
      switching the journal mode below waits for a busy database.
    * ``PRAGMA journal_mode=WAL`` (not for in-memory databases): readers don't block the writer
      nor the writer readers, and a commit appends to the log instead of rewriting pages.
    * ``PRAGMA synchronous=FULL``: each commit is fsynced, so a write that returned survives
      a power failure or OS crash.
    * write transactions that start as writers: SQLPersister opens each of its own with
      ``BEGIN IMMEDIATE``, and the driver's ``isolation_level`` is ``"IMMEDIATE"`` so that a
      transaction anyone else runs on ``persister.engine`` takes the write lock at its first
      data-changing statement too. A transaction never holds a read snapshot that it must later
      upgrade to a write lock, which is what fails at once, without waiting, with
      ``database is locked``. Reads take no write lock. A single write is one autocommitted
      statement, which SQLite starts as a writer too (it takes the write lock, waiting as
      ``busy_timeout`` allows, before it reads anything), committed and fsynced alike.

    Trading durability for speed: ``sqlite:///path.db?synchronous=NORMAL`` keeps the database
    consistent but a power failure may lose the last writes that returned (about ten times
    faster on our disks). ``?busy_timeout=MILLISECONDS`` changes the wait. Both query parameters
    are read by SQLPersister and not passed to the driver.

    ``sqlite://`` (in memory) uses one connection shared by the whole engine (``StaticPool``),
    so the database lives as long as the engine. A caller's in-memory engine must be made the
    same way: SQLAlchemy's default for it, ``SingletonThreadPool``, gives each thread a
    database of its own, and is refused.
    """

    name = "sqlite"
    driver = "pysqlite"
    locks_rows = False
    url_example = "sqlite:///path/to/checkpoints.db"
    begin_sql = "BEGIN IMMEDIATE"
    autocommit = ("isolation_level", None)

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def clock(self) -> sa.ColumnElement[Any]:
        # SQLite's clock has milliseconds; the column promises six fraction digits.
        return sa.literal_column("strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'")

    def configure(
        self, url: sa.URL, options: dict[str, Any]
    ) -> tuple[sa.URL, dict[str, Any], ConnectHook | None]:
        query = dict(url.query)
        synchronous, busy_timeout = _sqlite_settings(query)
        url = url.set(query=query)
        memory = _is_memory(url)
        arguments = dict(options)
        if memory:
            arguments.setdefault("poolclass", StaticPool)
            arguments["connect_args"] = {
                "check_same_thread": False,
                **arguments.get("connect_args", {}),
            }
        pragmas = [f"busy_timeout={busy_timeout}", f"synchronous={synchronous}"]
        hook = _sqlite_connect_hook(url.database, pragmas, wal=not memory, wait_ms=busy_timeout)
        return url, arguments, hook

    def check_schema(self, schema: str | None, url: sa.URL | None = None) -> None:
        super().check_schema(schema, url)
        if schema is not None:
            raise ValueError(
                f"schema={schema!r} is not supported on SQLite (a SQLite file has no schemas); "
                "use a separate database file instead"
            )

    def queued_database(self, url: sa.URL) -> str | None:
        # A file's writers queue on "<file>-lock" (see writequeue.WriteQueue); an in-memory
        # database has one connection, and a file: URI is left alone.
        database = url.database or ""
        if sys.platform == "win32" or _is_memory(url):
            return None
        if database.startswith("file:") or url.query.get("uri"):
            return None
        return os.path.abspath(database)

    def bind_processor(
        self, type_: sa.types.TypeEngine[Any], dialect: sa.Dialect
    ) -> Callable[[Any], Any] | None:
        # UTCDateTime's own conversion, in two C calls instead of a chain of Python ones: it
        # is most of the cost of a large write_many. A test checks both give the same text.
        if isinstance(type_, UTCDateTime):
            return _sqlite_utc_text
        return super().bind_processor(type_, dialect)

    def check_engine(self, engine: sa.Engine) -> None:
        if isinstance(engine.pool, SingletonThreadPool) and _is_memory(engine.url):
            raise ValueError(
                "this in-memory SQLite engine uses SingletonThreadPool (SQLAlchemy's default for "
                "sqlite://), which gives each thread its own connection and so its own empty "
                "database; create it with sqlalchemy.create_engine('sqlite://', "
                "poolclass=StaticPool, connect_args={'check_same_thread': False}), or pass the "
                "URL 'sqlite://' and let SQLPersister create it"
            )

    def take_migration_lock(self, connection: sa.Connection) -> None:
        # The write lock. sqlite3 begins lazily, at the first data-changing statement, so a
        # SQLAlchemy transaction has begun nothing yet; unless the engine has a "begin" hook
        # of its own that has already issued BEGIN IMMEDIATE.
        if not getattr(connection.connection.driver_connection, "in_transaction", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def classify(self, error: BaseException) -> Failure:
        message = str(error)
        if message.startswith(("no such table", "no such column")):
            return "schema"
        if getattr(error, "sqlite_errorname", "") == "SQLITE_CANTOPEN" or message.startswith(
            "unable to open database file"
        ):
            return "connection"
        return "other"


# SQLSTATEs meaning the table or schema is not there (or not as the code expects).
_PG_SCHEMA_STATES = frozenset({"42P01", "42703", "3F000"})
# Deadlock detected, serialization failure: the transaction was rolled back; run it again.
_PG_TRANSIENT_STATES = frozenset({"40P01", "40001"})
# Operator intervention that ends the session: admin/crash shutdown, cannot connect now.
_PG_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})


class PostgreSQLDialect(_OnConflictDialect):
    """PostgreSQL through psycopg 3.

    An engine SQLPersister creates is pooled with ``pool_pre_ping``, so that after a server
    restart the next call gets a live connection. New connections get ``connect_timeout=10``
    (seconds) and ``application_name=streamcheckpoint`` unless the URL or ``connect_args``
    say otherwise, and their session time zone is UTC whatever the server's, the role's or
    the URL's ``options`` say: psycopg converts ``timestamptz`` to the session's zone, where
    ``9999-12-31T23:00Z`` is past year 9999 in Tokyo and ``0001-01-01T01:00Z`` before year 1
    in New York. (A caller's own engine is used as it is: give it a UTC session for such
    dates.) One-statement writes run in autocommit (a transaction costs a round trip);
    ``write_many`` runs in one transaction.
    """

    name = "postgresql"
    driver = "psycopg"
    url_example = "postgresql+psycopg://user:password@host:5432/dbname"
    extra = "postgres"
    # SQLAlchemy picks psycopg2 for the first and refuses the second.
    bare_names = ("postgresql", "postgres")
    begin_sql = "BEGIN"
    autocommit = ("autocommit", True)
    statement_options: ClassVar[Mapping[str, Any]] = {"isolation_level": "AUTOCOMMIT"}

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.now()

    def configure(
        self, url: sa.URL, options: dict[str, Any]
    ) -> tuple[sa.URL, dict[str, Any], ConnectHook | None]:
        arguments = dict(options)
        arguments.setdefault("pool_pre_ping", True)
        defaults = {
            name: value
            for name, value in (("connect_timeout", 10), ("application_name", "streamcheckpoint"))
            if name not in url.query
        }
        arguments["connect_args"] = {**defaults, **arguments.get("connect_args", {})}
        return url, arguments, _pg_utc_session

    def compile_dialect(self, dialect: sa.Dialect) -> sa.Dialect:
        # Positional parameters (%s): the driver gets tuples, not a dict per row to reorder.
        positional: sa.Dialect = type(dialect)(paramstyle="format")  # type: ignore[call-arg]
        return positional

    def take_migration_lock(self, connection: sa.Connection) -> None:
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))

    def is_transient(self, error: BaseException) -> bool:
        return getattr(error, "sqlstate", None) in _PG_TRANSIENT_STATES

    def classify(self, error: BaseException) -> Failure:
        import psycopg

        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate in _PG_SCHEMA_STATES:
            return "schema"
        if isinstance(error, psycopg.InterfaceError):
            return "connection"
        if isinstance(error, psycopg.OperationalError) and (
            sqlstate is None or sqlstate[:2] in ("08", "28") or sqlstate in _PG_GONE_STATES
        ):
            return "connection"
        return "other"


# Can't connect, refused (access, host, limits), server gone away, lost connection, and the like.
_MYSQL_GONE_CODES = frozenset(
    {1040, 1044, 1045, 1049, 1053, 1129, 1130, 1203, 1226, 1698, 1927}
    | {2002, 2003, 2005, 2006, 2013, 2026, 2059, 2061, 4031}
)
# Deadlock (the transaction was rolled back) and lock wait timeout (the statement was; we roll
# back the rest): run it again.
_MYSQL_TRANSIENT_CODES = frozenset({1213, 1205})
# Server errors for a missing table or column.
_MYSQL_SCHEMA_CODES = frozenset({1146, 1054})


class MySQLDialect(Dialect):
    """MySQL and MariaDB through PyMySQL.

    The table is keyed on ``key_hash`` (see :mod:`.schema`): writes and reads by key bind the
    hash, computed in Python from the key's UTF-8 bytes, so a connection in another character
    set can't make a read miss what a write stored. ``updated_at`` is ``UTC_TIMESTAMP(6)``.

    An engine SQLPersister creates is pooled with ``pool_pre_ping`` (so a server restart costs
    no call) and ``pool_recycle=3600`` (MySQL drops connections idle for ``wait_timeout``),
    and connects with ``charset=utf8mb4`` and ``connect_timeout=10`` unless told otherwise.

    ``INSERT ... ON DUPLICATE KEY UPDATE`` has no ``WHERE``: the monotonic upsert keeps a row
    whose sequence number is higher by assigning every column its own value, and SQLAlchemy's
    MySQL dialects always report rows found rather than changed, so a refused write can't be
    told from a new row by its row count. Monotonic writes therefore run in a transaction that
    reads the written rows back before it commits (``BEGIN``, one query per 500 keys, ``COMMIT``).
    """

    name = "mysql"
    aliases = ("mariadb",)
    driver = "pymysql"
    url_example = "mysql+pymysql://user:password@host:3306/dbname"
    extra = "mysql"
    # SQLAlchemy picks mysqlclient (MySQLdb) for these.
    bare_names = ("mysql", "mariadb")
    begin_sql = "BEGIN"
    autocommit = ("autocommit_mode", True)
    table = hashed_checkpoints
    hashed_key = True
    refusals_by_rowcount = False
    statement_options: ClassVar[Mapping[str, Any]] = {"isolation_level": "AUTOCOMMIT"}

    def upserts(self, values: Mapping[str, Any]) -> tuple[sa.Insert, sa.Insert]:
        table = self.table
        # updated_at is left to the column's default on insert, so that the VALUES list is
        # nothing but placeholders: PyMySQL then sends an executemany as one multi-row INSERT.
        insert = mysql.insert(table).values(**values)
        new = insert.inserted
        clock = self.clock()
        changes = [(name, new[name]) for name in _UPDATED_COLUMNS if name != "updated_at"]
        upsert = insert.on_duplicate_key_update([*changes, ("updated_at", clock)])
        # Assignments run left to right and see the ones before them: the sequence number,
        # which every condition reads, is assigned last.
        accepted = table.c.sequence_number <= new.sequence_number
        guarded = [
            (name, sa.case((accepted, value), else_=table.c[name]))
            for name, value in [*changes[:-1], ("updated_at", clock), changes[-1]]
        ]
        monotonic = insert.on_duplicate_key_update(guarded)
        return upsert, monotonic

    create_schema_sql = "CREATE DATABASE `{}`"

    def check_schema(self, schema: str | None, url: sa.URL | None = None) -> None:
        super().check_schema(schema, url)
        if schema is None and url is not None and not url.database:
            raise ValueError(
                f"the MySQL URL {url.render_as_string(hide_password=True)} names no database: "
                f"add one ({self.url_example}) or pass schema='dbname'"
            )

    def get_autocommit(self, connection: DBAPIConnection) -> Any:
        return cast(Any, connection).get_autocommit()

    def set_autocommit(self, connection: DBAPIConnection, value: Any) -> None:
        cast(Any, connection).autocommit(value)

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.literal_column("UTC_TIMESTAMP(6)")

    def configure(
        self, url: sa.URL, options: dict[str, Any]
    ) -> tuple[sa.URL, dict[str, Any], ConnectHook | None]:
        arguments = dict(options)
        arguments.setdefault("pool_pre_ping", True)
        arguments.setdefault("pool_recycle", 3600)
        defaults = {
            name: value
            for name, value in (("charset", "utf8mb4"), ("connect_timeout", 10))
            if name not in url.query
        }
        arguments["connect_args"] = {**defaults, **arguments.get("connect_args", {})}
        return url, arguments, None

    def compile_dialect(self, dialect: sa.Dialect) -> sa.Dialect:
        # Positional parameters (%s): PyMySQL formats tuples without a dict per row.
        positional: sa.Dialect = copy.copy(dialect)
        positional.paramstyle = "format"
        positional.positional = True
        return positional

    def take_migration_lock(self, connection: sa.Connection) -> None:
        # A session-level lock: release_migration_lock() gives it back after the transaction.
        got = connection.execute(
            sa.select(sa.func.get_lock(MYSQL_MIGRATION_LOCK, _MYSQL_MIGRATION_WAIT_S))
        ).scalar()
        if got != 1:
            raise PersistError(
                f"timed out after {_MYSQL_MIGRATION_WAIT_S} s waiting for the migration lock "
                f"{MYSQL_MIGRATION_LOCK!r} (another process is migrating, or holds it)"
            )

    def release_migration_lock(self, connection: sa.Connection) -> None:
        connection.execute(sa.select(sa.func.release_lock(MYSQL_MIGRATION_LOCK)))
        connection.commit()

    def is_transient(self, error: BaseException) -> bool:
        return _mysql_code(error) in _MYSQL_TRANSIENT_CODES

    def classify(self, error: BaseException) -> Failure:
        import pymysql

        code = _mysql_code(error)
        if code in _MYSQL_SCHEMA_CODES:
            return "schema"
        if isinstance(error, pymysql.InterfaceError) or code in _MYSQL_GONE_CODES:
            return "connection"
        return "other"


def _mysql_code(error: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error."""
    return error.args[0] if error.args and isinstance(error.args[0], int) else None


DIALECTS: tuple[Dialect, ...] = (SQLiteDialect(), PostgreSQLDialect(), MySQLDialect())
"""Every supported database."""

_SUPPORTED_TEXT = ", ".join(f"{d.name} through {d.driver} ({d.url_example})" for d in DIALECTS)


def dialect_for_url(url: sa.URL) -> Dialect:
    """The :class:`Dialect` for a parsed URL; ``ValueError`` if it isn't supported."""
    backend, _, driver = url.drivername.partition("+")
    for dialect in DIALECTS:
        if backend in dialect.names:
            if driver not in ("", dialect.driver):
                raise ValueError(
                    f"the driver {driver!r} is not supported for {backend}; "
                    f"use {backend}+{dialect.driver}:// ({dialect.url_example})"
                )
            return dialect
    raise ValueError(f"the database {backend!r} is not supported")


def dialect_for_engine(engine: sa.Engine) -> Dialect:
    """The :class:`Dialect` for an existing engine; ``ValueError`` if it isn't supported."""
    name, driver = engine.dialect.name, engine.dialect.driver
    for dialect in DIALECTS:
        if name in dialect.names and driver == dialect.driver:
            return dialect
    raise ValueError(
        f"streamcheckpoint can't use an engine for {name}+{driver}; supported: {_SUPPORTED_TEXT}"
    )


_SQLITE_TEXT_LENGTH = len("2026-01-01 00:00:00.000000")


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """``value`` as SQLite stores a :class:`UTCDateTime`: UTC text, six fraction digits."""
    if value is None:
        return None
    if value.tzinfo is timezone.utc:  # every Checkpoint's enqueue_time: one C call
        return value.isoformat(" ", "microseconds")[:_SQLITE_TEXT_LENGTH]
    if value.utcoffset() is None:
        raise ValueError(f"refusing to store the naive datetime {value.isoformat()}")
    utc = value.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(" ", "microseconds")


def _sqlite_settings(query: dict[str, str | tuple[str, ...]]) -> tuple[str, int]:
    """Take ``synchronous`` and ``busy_timeout`` out of a SQLite URL's query, validated."""
    synchronous = _pop_query(query, "synchronous", SQLITE_SYNCHRONOUS).upper()
    if synchronous not in _SQLITE_SYNCHRONOUS_CHOICES:
        raise ValueError(
            f"synchronous={synchronous!r} in the SQLite URL is not one of "
            f"{', '.join(_SQLITE_SYNCHRONOUS_CHOICES)}"
        )
    busy_timeout = _pop_query(query, "busy_timeout", str(SQLITE_BUSY_TIMEOUT_MS))
    if not busy_timeout.isdigit():
        raise ValueError(
            f"busy_timeout={busy_timeout!r} in the SQLite URL must be a whole number of "
            "milliseconds"
        )
    return synchronous, int(busy_timeout)


def _sqlite_connect_hook(
    database: str | None, pragmas: list[str], *, wal: bool, wait_ms: int
) -> ConnectHook:
    """Set up each new connection: ``pragmas`` in order (the busy timeout first), then WAL.

    Switching to WAL waits up to ``wait_ms`` for other connections' locks.
    """

    def on_connect(connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        cursor = connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(f"PRAGMA {pragma}")
            if wal:
                _execute_while_busy(cursor, "PRAGMA journal_mode=WAL", wait_ms)
                row = cursor.fetchone()
                mode = row[0] if row else None
                if str(mode).lower() != "wal":
                    raise PersistError(
                        f"SQLite database {database!r} could not be switched to WAL mode (it "
                        f"stays in {mode!r} mode); put it on a local file system"
                    )
        finally:
            cursor.close()
        connection.isolation_level = "IMMEDIATE"

    return on_connect


def _execute_while_busy(cursor: DBAPICursor, sql: str, wait_ms: int) -> None:
    """Run ``sql``, again and again while SQLite says "database is locked", for ``wait_ms``.

    For a statement that reads and then writes, like switching the journal mode, SQLite does
    not call the busy handler when another connection holds the write lock in the old journal
    mode (waiting could deadlock): it fails at once, whatever ``busy_timeout`` says. Many
    processes opening a new database at once, or one that a non-WAL writer is migrating, meet
    that; the statement must simply be run again once the writer is done.
    """
    deadline = time.monotonic() + wait_ms / 1000
    pause = 0.001
    while True:
        try:
            cursor.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("database is locked") or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def _pg_utc_session(connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    """Make a new PostgreSQL session's time zone UTC.

    A ``SET`` after connecting wins over any ``TimeZone`` in the libpq ``options`` (URL or
    ``connect_args``) and leaves their other settings alone.
    """
    cursor = connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
    finally:
        cursor.close()
    # Outside autocommit the SET opened a transaction, whose rollback would undo it.
    connection.commit()


def _pop_query(query: dict[str, str | tuple[str, ...]], name: str, default: str) -> str:
    value = query.pop(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name} is given {len(value)} times in the URL; give it once")
    return value


def _is_memory(url: sa.URL) -> bool:
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or "mode=memory" in database
        or (url.query.get("mode") == "memory")
    )
