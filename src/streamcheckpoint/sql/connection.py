"""The connection a SQLPersister runs its statements on: one kept between calls, in autocommit.

A :class:`KeptConnection` takes one connection from the engine's pool with SQLAlchemy's
``AUTOCOMMIT`` isolation level and keeps it, detached from the pool (one connection more than
the pool's size): a one-statement write or read is then one statement for the database (no
``BEGIN``/``COMMIT`` round trips, no pool checkout nor pre-ping per call).
Statements run through SQLAlchemy (``Connection.exec_driver_sql`` with SQL compiled once, see
:mod:`.statements`), so engine events apply and SQLAlchemy notices a lost connection; reads by
key take the driver's cursor directly, the one place where SQLAlchemy's own path measured
slower than our targets allow (``benchmarks/README.md``), and re-run through SQLAlchemy if the
driver raises anything.

A connection found lost (a server restart, a terminated session, an idle timeout) is discarded
and the call runs once more on a new one; a write aborted by the database to break a deadlock
runs again up to :data:`TRANSIENT_ATTEMPTS` times. Both are logged (logger
``streamcheckpoint.sql.connection``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.pool import StaticPool

from ..errors import PersistError
from ..redaction import redact
from .dialects import Dialect

__all__ = ["TRANSIENT_ATTEMPTS", "KeptConnection", "shared_connection_lock"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

TRANSIENT_ATTEMPTS = 5
"""How many times a write aborted by a deadlock or a lock-wait timeout is run at most."""


class KeptConnection:
    """Runs work on a connection kept between calls, for one persister.

    ``where`` names the database in log records (its URL without password). Thread-safe: a
    thread that finds the kept connection busy runs its call on a connection of its own from the
    pool. On an engine with one connection that everybody shares (in-memory SQLite), nothing is
    kept, and every call takes the engine's :func:`shared_connection_lock`.
    """

    def __init__(self, engine: sa.Engine, dialect: Dialect, schema: str | None, where: str):
        # preserve_rowcount: a monotonic upsert's row count is its verdict, which SQLAlchemy
        # would otherwise not keep for an INSERT on PostgreSQL.
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "preserve_rowcount": True}
        if schema is not None:
            options["schema_translate_map"] = {None: schema}
        self._engine = engine.execution_options(**options)
        self._dialect = dialect
        self._where = where
        self._url = engine.url
        self.driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        """The driver's base exception class."""
        shared = shared_connection_lock(engine)
        self._shared = shared is not None
        self._lock: threading.Lock | threading.RLock = shared or threading.Lock()
        self._kept: sa.Connection | None = None
        self._cursor: DBAPICursor | None = None  # the kept connection's, for on_cursor()
        self._writers_wait: float | None = None  # see _take()
        self._closed = False  # set under _lock: a call that was already on its way fails

    def run(self, work: Callable[[sa.Connection], _T], *, write: bool = False) -> _T:
        """Run ``work`` on a connection; once more on a new one if the connection was lost.

        ``work`` must leave the same state when it runs twice (an upsert, a read, a delete),
        since a lost connection may have done it already. A ``write`` also runs again, after
        a pause, if the database aborted it to break a deadlock or a lock wait (it has rolled
        it back by then: see :meth:`.Dialect.is_transient`), up to :data:`TRANSIENT_ATTEMPTS`
        times.
        """
        reconnected = False
        attempt = 1
        while True:
            try:
                return self._run_once(work, write)
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated and not reconnected:
                    reconnected = True
                    logger.warning(
                        "lost the connection to %s (%s); running the call again on a new one",
                        self._where,
                        self._detail(exc),
                    )
                    continue
                transient = self._dialect.is_transient(exc.orig or exc)
                if not (write and transient and attempt < TRANSIENT_ATTEMPTS):
                    raise
                attempt += 1
                logger.info(
                    "a write to %s was aborted to break a deadlock or lock wait (%s); running "
                    "it again (attempt %d of %d)",
                    self._where,
                    self._detail(exc),
                    attempt,
                    TRANSIENT_ATTEMPTS,
                )
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # don't meet the other again

    def transaction(self, connection: sa.Connection, body: Callable[[sa.Connection], bool]) -> bool:
        """Run ``body`` in a transaction; commit if it returns true, else roll back."""
        connection.exec_driver_sql(self._dialect.begin_sql)
        try:
            committed = body(connection)
            connection.exec_driver_sql("COMMIT" if committed else "ROLLBACK")
        except BaseException:
            # The error that made us roll back is what the caller needs; a rollback on a
            # connection that is gone fails too, and the database rolls back anyway.
            with contextlib.suppress(Exception):
                connection.exec_driver_sql("ROLLBACK")
            raise
        return committed

    def fetch(self, sql: str, values: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Every row of the query ``sql``, as the driver gives them (see :meth:`on_cursor`)."""
        rows: Sequence[Sequence[Any]] = self.on_cursor(sql, values, write=False)
        return rows

    def on_cursor(self, sql: str, values: Sequence[Any], *, write: bool) -> Any:
        """Run one statement on the kept connection's cursor: a query's rows, a write's row
        count. The two calls where SQLAlchemy's own path measured too slow for our targets
        (a read by key, a single write: ``benchmarks/README.md``).

        Through SQLAlchemy (:meth:`run`) when the kept connection is another thread's or not
        there yet, and when the driver says it is lost or the database rolled the statement back
        to break a deadlock; any other driver error is raised as it is.
        """
        cursor = self._cursor
        if cursor is not None and self._take(write):
            try:
                if cursor is self._cursor:  # still the kept connection's: not closed or lost
                    try:
                        cursor.execute(sql, values)
                        return cursor.rowcount if write else cursor.fetchall()
                    except self.driver_error as exc:
                        if not self._worth_another_try(exc, cursor):
                            raise
            finally:
                self._lock.release()
        if write:
            return self.run(lambda c: c.exec_driver_sql(sql, tuple(values)).rowcount, write=True)
        return self.run(lambda c: c.exec_driver_sql(sql, tuple(values)).all())

    def close(self) -> None:
        """Close the kept connection; calls after this raise."""
        with self._lock:
            self._closed = True
            kept, self._kept, self._cursor = self._kept, None, None
        if kept is not None:
            kept.close()

    def _run_once(self, work: Callable[[sa.Connection], _T], write: bool) -> _T:
        if not self._take(write):
            return self._run_borrowed(work)  # another thread has the kept one
        try:
            if self._shared:
                return self._run_borrowed(work)
            self._check_open()
            kept = self._kept or self._keep()
            try:
                return work(kept)
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    self._drop_kept()
                raise
        finally:
            self._lock.release()

    def _take(self, write: bool) -> bool:
        """Take the kept connection, if it is free; whether that worked.

        A write to a database that has one writer at a time anyway (SQLite) waits for it, as
        long as the database would make it wait for another connection's write
        (``busy_timeout``), rather than wait in the database's busy handler, which sleeps
        between tries. Where everybody shares one connection, every call waits for it.
        """
        self._check_open()
        if self._shared:
            return self._lock.acquire()
        wait = self._writers_wait if write else None
        if wait is None:
            return self._lock.acquire(blocking=False)
        if self._lock.acquire(timeout=wait):
            return True
        raise PersistError(
            f"a write to {self._where} waited {wait:g} s for this persister's other calls "
            "(the database's busy timeout) and gave up; nothing was written"
        )

    def _worth_another_try(self, error: Exception, cursor: DBAPICursor) -> bool:
        """Whether a statement the kept cursor failed should run again through SQLAlchemy:
        the connection is lost (then it is dropped) or the statement was rolled back to break
        a deadlock."""
        kept = self._kept
        if kept is not None and self._engine.dialect.is_disconnect(
            cast(Any, error), kept.connection.dbapi_connection, cursor
        ):
            logger.warning(
                "lost the connection to %s (%s); running the call again on a new one",
                self._where,
                redact(str(error).strip().split("\n")[0], self._url),
            )
            kept.invalidate(error)
            self._drop_kept()
            return True
        return self._dialect.is_transient(error)

    def _keep(self) -> sa.Connection:
        """A connection to keep, detached from the pool: the pool's connections all stay for
        everything else, so a pool of one still serves another thread or a migration."""
        connection = self._engine.connect()
        connection.detach()
        driver = connection.connection.dbapi_connection
        assert driver is not None
        self._writers_wait = self._dialect.writers_wait(driver)
        self._cursor = driver.cursor()
        self._kept = connection
        return connection

    def _drop_kept(self) -> None:
        kept, self._kept, self._cursor = self._kept, None, None
        if kept is not None:
            with contextlib.suppress(Exception):
                kept.close()

    def _run_borrowed(self, work: Callable[[sa.Connection], _T]) -> _T:
        self._check_open()
        with self._engine.connect() as connection:
            return work(connection)

    def _check_open(self) -> None:
        if self._closed:
            raise PersistError("the persister is closed; open a new one")

    def _detail(self, error: sa.exc.DBAPIError) -> str:
        first = str(error.orig).strip().splitlines()
        return redact(first[0], self._url) if first else type(error.orig).__name__


_shared_locks: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_shared_locks_guard = threading.Lock()


def shared_connection_lock(engine: sa.Engine) -> threading.RLock | None:
    """The lock serializing every use of an engine that has only one connection, else None.

    An in-memory SQLite engine (``StaticPool``) hands the same connection to every user, so
    persisters sharing it must not interleave their transactions.
    """
    if not isinstance(engine.pool, StaticPool):
        return None
    with _shared_locks_guard:
        lock = _shared_locks.get(engine)
        if lock is None:
            lock = _shared_locks[engine] = threading.RLock()
        return lock
