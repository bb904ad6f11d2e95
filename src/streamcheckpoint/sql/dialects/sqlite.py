"""SQLite through the standard library's ``sqlite3``: what SQLPersister does differently there.

An engine SQLPersister creates from a ``sqlite:///path`` URL gets, on every new connection:

* ``PRAGMA busy_timeout=5000``: a writer waits up to 5 s for another connection's write
  transaction (SQLite's own busy handler) instead of failing with ``database is locked``; then it
  fails with a :class:`~streamcheckpoint.errors.PersistError`. Set first, so that even switching
  the journal mode below waits for a busy database.
* ``PRAGMA journal_mode=WAL`` (not for in-memory databases): readers don't block the writer
  nor the writer readers, and a commit appends to the log instead of rewriting pages.
* ``PRAGMA synchronous=FULL``: each commit is fsynced, so a write that returned survives
  a power failure or OS crash.
* write transactions that start as writers: SQLPersister opens each of its own with
  ``BEGIN IMMEDIATE``, and the driver's ``isolation_level`` is ``"IMMEDIATE"`` so that a
  transaction anyone else runs on ``persister.engine`` takes the write lock at its first
  data-changing statement too (restored whenever a connection goes back to the pool). A
  transaction never holds a read snapshot that it must later upgrade to a write lock, which is
  what fails at once, without waiting, with ``database is locked``. A single write is one
  autocommitted statement, which SQLite starts as a writer too.

Trading durability for speed: ``sqlite:///path.db?synchronous=NORMAL`` keeps the database
consistent but a power failure may lose the last writes that returned (about ten times faster on
our disks). ``?busy_timeout=MILLISECONDS`` changes the wait. Both query parameters are read by
SQLPersister and not passed to the driver.

``sqlite://`` (in memory) uses one connection shared by the whole engine (``StaticPool``), so the
database lives as long as the engine. A caller's in-memory engine must be made the same way:
SQLAlchemy's default for it, ``SingletonThreadPool``, gives each thread a database of its own,
and is refused.

Timestamps are UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff`` (sortable, and usable with SQLite's date
functions), in columns declared ``DATETIME``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.pool import ConnectionPoolEntry, SingletonThreadPool, StaticPool

from ...errors import PersistError
from ...fsops import kind_in_words
from ..schema import UTCTimestamp, as_utc, keyed_ownerships, keyed_table
from .base import EngineHooks, Failure, OnConflictDialect, PoolHook

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "SQLITE_SYNCHRONOUS", "SQLiteDialect", "SQLiteTimestamp"]

SQLITE_SYNCHRONOUS = "FULL"
"""Default ``PRAGMA synchronous``: a write that returned survives a power failure."""

SQLITE_BUSY_TIMEOUT_MS = 5000
"""Default ``PRAGMA busy_timeout``: how long a writer waits for another one, in milliseconds."""

_SYNCHRONOUS_CHOICES = ("OFF", "NORMAL", "FULL", "EXTRA")

_TEXT_LENGTH = len("2026-01-01 00:00:00.000000")

_CLOCK = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
"""The time as the table stores it: SQLite's clock has milliseconds, the column six digits."""


class SQLiteTimestamp(UTCTimestamp):
    """UTC text with six fraction digits; text written by hand in another ISO 8601 form reads
    too (an offset in it is honoured)."""

    cache_ok = True

    @staticmethod
    def to_db(value: datetime) -> str:
        if value.tzinfo is not timezone.utc:  # every Checkpoint's enqueue_time is
            value = as_utc(value)
        return value.isoformat(" ", "microseconds")[:_TEXT_LENGTH]

    @staticmethod
    def from_db(value: Any) -> datetime:
        if not isinstance(value, str):
            raise TypeError(f"expected timestamp text from SQLite, got {value!r}")
        if len(value) == _TEXT_LENGTH:  # what we store: parse it as UTC in one call
            return datetime.fromisoformat(value + "+00:00")
        return UTCTimestamp.from_db(datetime.fromisoformat(value))

    # The text is ours both ways: SQLAlchemy's DATETIME conversions would run on top of it.
    def bind_processor(self, dialect: sa.Dialect) -> Any:
        to_db = self.to_db
        return lambda value: None if value is None else to_db(value)

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Any:
        from_db = self.from_db
        return lambda value: None if value is None else from_db(value)


class SQLiteDialect(OnConflictDialect):
    """SQLite through ``sqlite3`` (see the module documentation for the settings)."""

    name = "sqlite"
    driver = "pysqlite"
    url_example = "sqlite:///path/to/checkpoints.db"
    table: ClassVar[sa.Table] = keyed_table(SQLiteTimestamp(), f"({_CLOCK})")
    ownerships: ClassVar[sa.Table] = keyed_ownerships(table, SQLiteTimestamp(), f"({_CLOCK})")
    timestamp = SQLiteTimestamp
    locks_rows = False
    begin_sql = "BEGIN IMMEDIATE"

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.literal_column(_CLOCK)

    def configure(
        self, url: sa.URL, options: dict[str, Any], *, read_only: bool = False
    ) -> tuple[sa.URL, dict[str, Any], EngineHooks]:
        if url.host:
            raise ValueError(
                f"the SQLite URL names a host ({url.host!r}) where a file is meant: a file "
                f"path follows three slashes, sqlite:///{url.host} (relative) or "
                "sqlite:////var/lib/app/checkpoints.db (absolute)"
            )
        query = dict(url.query)
        synchronous, busy_timeout = _settings(query)
        url = url.set(query=query)
        memory = _is_memory(url)
        arguments = dict(options)
        if memory:
            arguments.setdefault("poolclass", StaticPool)
            arguments["connect_args"] = {
                "check_same_thread": False,
                **arguments.get("connect_args", {}),
            }
        if read_only and not memory:
            hooks: EngineHooks = {
                "do_connect": _open_read_only,
                "connect": _connect_hook(url.database, [f"busy_timeout={busy_timeout}"], wal=False),
            }
            return url, arguments, hooks
        pragmas = [f"busy_timeout={busy_timeout}", f"synchronous={synchronous}"]
        hooks = {
            "do_connect": _check_files_first(url.database),
            "connect": _connect_hook(url.database, pragmas, wal=not memory, wait_ms=busy_timeout),
            "checkin": _writers_first,
        }
        return url, arguments, hooks

    def check_schema(self, schema: str | None, url: sa.URL | None = None) -> None:
        super().check_schema(schema, url)
        if schema is not None:
            raise ValueError(
                f"schema={schema!r} is not supported on SQLite (a SQLite file has no schemas); "
                "use a separate database file instead"
            )

    def writers_wait(self, connection: DBAPIConnection) -> float | None:
        cursor = connection.cursor()
        try:
            row = cursor.execute("PRAGMA busy_timeout").fetchone()
        finally:
            cursor.close()
        return int(row[0]) / 1000 if row else 0.0

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


def _settings(query: dict[str, str | tuple[str, ...]]) -> tuple[str, int]:
    """Take ``synchronous`` and ``busy_timeout`` out of a SQLite URL's query, validated."""
    synchronous = _pop_query(query, "synchronous", SQLITE_SYNCHRONOUS).upper()
    if synchronous not in _SYNCHRONOUS_CHOICES:
        raise ValueError(
            f"synchronous={synchronous!r} in the SQLite URL is not one of "
            f"{', '.join(_SYNCHRONOUS_CHOICES)}"
        )
    busy_timeout = _pop_query(query, "busy_timeout", str(SQLITE_BUSY_TIMEOUT_MS))
    if not busy_timeout.isdigit():
        raise ValueError(
            f"busy_timeout={busy_timeout!r} in the SQLite URL must be a whole number of "
            "milliseconds"
        )
    return synchronous, int(busy_timeout)


def _open_read_only(
    dialect: sa.Dialect, record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
) -> None:
    """Open the database file read-only, creating no file, not even SQLite's ``-wal`` and
    ``-shm`` (which, made by another user, would lock the database's owner out of writing).

    While a writer has the database open (its ``-wal`` exists), SQLite reads it through the
    writer's files; when none has, the file is read as it stands (``immutable``), no lock
    taken: what any writer committed is in it then.
    """
    path = os.fspath(cargs[0])
    _check_files(path, writable=False)
    mode = "mode=ro" if os.path.exists(f"{path}-wal") else "mode=ro&immutable=1"
    cargs[0] = f"file:{urllib.parse.quote(os.path.abspath(path))}?{mode}"
    cparams["uri"] = True


def _connect_hook(
    database: str | None, pragmas: list[str], *, wal: bool, wait_ms: int = 0
) -> PoolHook:
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
        _writers_first(connection, record)

    return on_connect


def _check_files(database: str | None, *, writable: bool) -> None:
    """Refuse, before SQLite opens anything, what it would follow, wait on or open read-only.

    The database file is the one the URL names, through any symbolic link (SQLite resolves it,
    and keeps its own files beside the link's target): it must be a regular file, if it is there
    at all, since SQLite waits forever reading a FIFO. SQLite's ``-wal``, ``-shm`` and
    ``-journal`` beside it must be regular files, never links (followed out of the directory),
    FIFOs or directories (a ``-journal`` FIFO hangs the open; a ``-shm`` directory makes the
    connection read-only). With ``writable``, each that exists must be writable: SQLite would
    open a database it can't write (a read-only mount, ``chattr +i``, someone else's file)
    read-only without a word, and that connection would stay read-only after the cause was
    gone. ``os.stat`` and ``os.access``, never ``open``: closing a descriptor of the database
    file would drop the locks this process's other connections hold on it.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    real = os.path.realpath(database)
    for path in (real, f"{real}-wal", f"{real}-shm", f"{real}-journal"):
        try:
            mode = os.stat(path).st_mode if path == real else os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise PersistError(
                f"{path!r} is {kind_in_words(mode)}, not the regular file SQLite keeps for the "
                f"database {database!r}, so it is neither followed nor used: remove it, then "
                "try again"
            )
        if (
            writable
            and not path.endswith("-journal")
            and not os.access(path, os.W_OK, effective_ids=True)
        ):
            read_only_mount = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
            why = (
                "is on a read-only file system"
                if read_only_mount
                else "can't be written by this process (its permissions, or an immutable attribute)"
            )
            raise PersistError(
                f"the SQLite file {path!r} {why}, so nothing can be written to the database; "
                "fix that, or open the persister with read_only=True to read it"
            )


def _check_files_first(database: str | None) -> Callable[..., None]:
    """A ``do_connect`` hook running :func:`_check_files` before each connection is opened."""

    def do_connect(
        dialect: sa.Dialect, record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        _check_files(database, writable=True)

    return do_connect


def _writers_first(connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
    """Make the driver begin transactions with ``BEGIN IMMEDIATE``.

    On connecting, and whenever a connection goes back to the pool: SQLAlchemy's reset after an
    ``AUTOCOMMIT`` checkout (SQLPersister's) sets the driver's default, a deferred ``BEGIN``.
    """
    if connection is not None:
        connection.isolation_level = "IMMEDIATE"


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
