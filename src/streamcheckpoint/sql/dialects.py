"""Everything that differs between the databases that ``SQLPersister`` supports.

One :class:`Dialect` per database, decided once when a persister opens, instead of
``if dialect.name == ...`` through the code: the upsert construct and the database clock (used by
:mod:`.statements`), how an engine created from a URL is configured, how the kept write
connection runs single statements and transactions, and which driver errors mean "unreachable"
or "schema missing".

Supported: SQLite through the standard library's ``sqlite3`` and PostgreSQL through psycopg 3.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from ..errors import PersistError
from .schema import UTCDateTime

__all__ = [
    "DIALECTS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_SYNCHRONOUS",
    "Dialect",
    "Failure",
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


class Dialect(abc.ABC):
    """The differences of one database, as SQLPersister needs them."""

    name: ClassVar[str]
    """SQLAlchemy's name of the database (``engine.dialect.name``)."""

    driver: ClassVar[str]
    """The one driver supported (``engine.dialect.driver``)."""

    url_example: ClassVar[str]
    """A URL of this kind, for error messages."""

    begin_sql: ClassVar[str]
    """What starts a write transaction on the kept write connection."""

    single_write_in_transaction: ClassVar[bool]
    """Whether a one-statement write needs an explicit transaction (else it autocommits)."""

    statement_options: ClassVar[Mapping[str, Any]] = {}
    """Execution options for reads and deletes (one statement each) through SQLAlchemy."""

    @abc.abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """This database's ``INSERT`` construct, which has ``on_conflict_do_update``."""

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

    def prepare_writer(self, connection: DBAPIConnection) -> None:  # noqa: B027 - optional
        """Set up a driver connection checked out to run writes."""

    def release_writer(self, connection: DBAPIConnection) -> None:  # noqa: B027 - optional
        """Undo :meth:`prepare_writer` before the connection goes back to the pool."""

    @abc.abstractmethod
    def classify(self, error: BaseException) -> Failure:
        """Say what a driver error means to the caller."""

    def bind_processor(
        self, type_: sa.types.TypeEngine[Any], dialect: sa.Dialect
    ) -> Callable[[Any], Any] | None:
        """The conversion SQLAlchemy applies to a value of ``type_`` before the driver sees it."""
        return type_.dialect_impl(dialect).bind_processor(dialect)


class SQLiteDialect(Dialect):
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
      ``database is locked``. Reads take no write lock.

    Trading durability for speed: ``sqlite:///path.db?synchronous=NORMAL`` keeps the database
    consistent but a power failure may lose the last writes that returned (about ten times
    faster on our disks). ``?busy_timeout=MILLISECONDS`` changes the wait. Both query parameters
    are read by SQLPersister and not passed to the driver.

    ``sqlite://`` (in memory) uses one connection shared by the whole engine (``StaticPool``),
    so the database lives as long as the engine.
    """

    name = "sqlite"
    driver = "pysqlite"
    url_example = "sqlite:///path/to/checkpoints.db"
    begin_sql = "BEGIN IMMEDIATE"
    single_write_in_transaction = True

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
        return url, arguments, _sqlite_connect_hook(url.database, pragmas, wal=not memory)

    def bind_processor(
        self, type_: sa.types.TypeEngine[Any], dialect: sa.Dialect
    ) -> Callable[[Any], Any] | None:
        # UTCDateTime's own conversion, in two C calls instead of a chain of Python ones: it
        # is most of the cost of a large write_many. A test checks both give the same text.
        if isinstance(type_, UTCDateTime):
            return _sqlite_utc_text
        return super().bind_processor(type_, dialect)

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
# Operator intervention that ends the session: admin/crash shutdown, cannot connect now.
_PG_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})


class PostgreSQLDialect(Dialect):
    """PostgreSQL through psycopg 3.

    An engine SQLPersister creates is pooled with ``pool_pre_ping``, so that after a server
    restart the next call gets a live connection. New connections get ``connect_timeout=10``
    (seconds) and ``application_name=streamcheckpoint`` unless the URL or ``connect_args``
    say otherwise. One-statement writes run in autocommit (a transaction costs a round trip);
    ``write_many`` runs in one transaction.
    """

    name = "postgresql"
    driver = "psycopg"
    url_example = "postgresql+psycopg://user:password@host:5432/dbname"
    begin_sql = "BEGIN"
    single_write_in_transaction = False
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
        return url, arguments, None

    def prepare_writer(self, connection: DBAPIConnection) -> None:
        connection.autocommit = True

    def release_writer(self, connection: DBAPIConnection) -> None:
        connection.autocommit = False

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


DIALECTS: tuple[Dialect, ...] = (SQLiteDialect(), PostgreSQLDialect())
"""Every supported database."""

_SUPPORTED_TEXT = ", ".join(f"{d.name} through {d.driver} ({d.url_example})" for d in DIALECTS)


def dialect_for_url(url: sa.URL) -> Dialect:
    """The :class:`Dialect` for a parsed URL; ``ValueError`` if it isn't supported."""
    backend, _, driver = url.drivername.partition("+")
    for dialect in DIALECTS:
        if backend == dialect.name:
            if driver not in ("", dialect.driver):
                raise ValueError(
                    f"the driver {driver!r} is not supported for {backend}; "
                    f"use {dialect.name}+{dialect.driver}:// ({dialect.url_example})"
                )
            return dialect
    raise ValueError(f"the database {backend!r} is not supported")


def dialect_for_engine(engine: sa.Engine) -> Dialect:
    """The :class:`Dialect` for an existing engine; ``ValueError`` if it isn't supported."""
    name, driver = engine.dialect.name, engine.dialect.driver
    for dialect in DIALECTS:
        if name == dialect.name and driver == dialect.driver:
            return dialect
    raise ValueError(
        f"SQLPersister can't use an engine for {name}+{driver}; supported: {_SUPPORTED_TEXT}"
    )


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """``value`` as SQLite stores a :class:`UTCDateTime`: UTC text, six fraction digits."""
    if value is None:
        return None
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


def _sqlite_connect_hook(database: str | None, pragmas: list[str], *, wal: bool) -> ConnectHook:
    """Set up each new connection: ``pragmas`` in order (the busy timeout first), then WAL."""

    def on_connect(connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        cursor = connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(f"PRAGMA {pragma}")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
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
