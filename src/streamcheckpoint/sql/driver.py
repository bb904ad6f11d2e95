"""Running statements on the driver's own connection: the hot path of writes and reads.

SQLAlchemy compiles each statement once per persister (:class:`CompiledStatement`); a write or a
read is then one ``cursor.execute`` on a pooled driver connection that the persister keeps
checked out between calls (:class:`Writer`), in the driver's autocommit mode, with its cursor.
Going through ``Connection.execute`` instead costs more than the database does for a durable
SQLite write, and on PostgreSQL a pool checkout adds a round trip (the pre-ping); see
``python -m benchmarks``.

Bound values go through the type processors SQLAlchemy would apply (so ``UTCDateTime`` stores
UTC on every database), looked up once per statement through :meth:`.Dialect.bind_processor`;
result values through the column types' result processors, the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

from ..errors import PersistError
from .dialects import Dialect
from .writequeue import Collect, WriteQueue

__all__ = ["CommitCheck", "CompiledStatement", "WriteQueue", "Writer"]

_T = TypeVar("_T")

Work = Callable[[DBAPIConnection, DBAPICursor], _T]
"""Something run on a driver connection and a cursor of it."""

_TRANSIENT_ATTEMPTS = 5
"""How many times a write aborted by a deadlock or a lock-wait timeout is run at most."""

CommitCheck = Callable[[int, DBAPICursor], bool]
"""Whether a transaction may commit, given its row count and its cursor."""


class CompiledStatement:
    """A statement compiled once for one engine and schema, ready for the driver.

    ``names`` are the statement's bound parameters in the order :meth:`parameters` receives
    their values; every bound parameter of the statement must be among them. ``engine`` is the
    engine the statement will run on, ``dialect`` its :class:`~.dialects.Dialect`. A ``SELECT``
    also gets the result processors of its columns (:meth:`convert_rows`).
    """

    def __init__(
        self,
        statement: sa.ClauseElement,
        names: Sequence[str],
        engine: sa.Engine,
        dialect: Dialect,
        schema: str | None,
    ) -> None:
        translate = {None: schema} if schema is not None else None
        sa_dialect = dialect.compile_dialect(engine.dialect)
        compiled = cast(
            SQLCompiler,
            statement.compile(
                dialect=sa_dialect,
                schema_translate_map=translate,
                render_schema_translate=translate is not None,
            ),
        )
        binds: dict[str, sa.BindParameter[Any]] = compiled.binds
        unknown = set(binds) - set(names)
        if unknown:
            raise ValueError(f"the statement has bound parameters without values: {unknown}")
        self.sql: str = compiled.string
        self._names = tuple(names)
        self._converters: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            processor = dialect.bind_processor(binds[name].type, engine.dialect)
            if processor is not None:
                self._converters.append((index, processor))
        positions: Sequence[str] | None = compiled.positiontup
        self._order: tuple[int, ...] | None = None
        if positions is not None:
            order = tuple(self._names.index(name) for name in positions)
            self._order = None if order == tuple(range(len(names))) else order
        self._positional = positions is not None
        self._results = _result_processors(statement, engine.dialect)

    def parameters(self, values: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for ``values`` (given in ``names`` order)."""
        converted = list(values)
        for index, convert in self._converters:
            converted[index] = convert(converted[index])
        if not self._positional:
            return dict(zip(self._names, converted, strict=True))
        if self._order is not None:
            return [converted[i] for i in self._order]
        return converted

    def parameter_rows(self, rows: Iterable[Sequence[Any]]) -> list[Any]:
        """:meth:`parameters` of every row, for ``executemany``."""
        if self._positional and self._order is None and len(self._converters) == 1:
            # The common case (every write on both databases), without a call per row.
            index, convert = self._converters[0]
            after = index + 1
            return [(*row[:index], convert(row[index]), *row[after:]) for row in rows]
        return [self.parameters(row) for row in rows]

    def convert_rows(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """Apply the columns' result processors to fetched rows.

        A stored value a processor can't convert raises its ``ValueError``/``TypeError``.
        """
        if not self._results:
            return list(rows)
        converted: list[Sequence[Any]] = []
        for row in rows:
            values = list(row)
            for index, convert in self._results:
                values[index] = convert(values[index])
            converted.append(values)
        return converted


def _result_processors(
    statement: sa.ClauseElement, dialect: sa.Dialect
) -> list[tuple[int, Callable[[Any], Any]]]:
    """``(column index, processor)`` for the columns of a query whose values need converting."""
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    columns: Sequence[sa.ColumnElement[Any]] = getattr(statement, "selected_columns", ())
    for index, column in enumerate(columns):
        processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if processor is not None:
            processors.append((index, processor))
    return processors


class Writer:
    """Runs statements on a driver connection kept between calls, in autocommit mode.

    The kept connection saves a pool checkout (and PostgreSQL's pre-ping round trip) per call,
    and its cursor is kept with it. It is detached from the engine's pool (one connection more
    than the pool's size), so the pool's connections all stay available to everything else.
    Single statements autocommit; :meth:`execute_many` runs its own transaction. A thread that
    finds the connection in use by another thread gets a connection of its own from the pool
    for that call. If the kept connection turns out to be dead (the server restarted, the
    backend was terminated), it is discarded and the call runs once more on a new connection:
    writes are upserts and reads are reads, so running one twice leaves the same state.

    ``shared_lock`` is the lock of an engine with only one connection (in-memory SQLite): the
    writer then waits for it instead of taking a second connection, and leaves the connection's
    transaction mode alone (others use it too), running each write in its own transaction.
    """

    def __init__(
        self,
        engine: sa.Engine,
        dialect: Dialect,
        shared_lock: threading.RLock | None = None,
        queue: WriteQueue | None = None,
    ) -> None:
        self._engine = engine
        self._queue = queue
        self._dialect = dialect
        self.driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        """The driver's base exception class."""
        self._lock: threading.Lock | threading.RLock = shared_lock or threading.Lock()
        self._shared = shared_lock is not None
        self._kept: PoolProxiedConnection | None = None
        self._cursor: DBAPICursor | None = None
        self._closed = False  # set under _lock: a call that was already on its way fails
        self._group_tags: dict[str, bytes] = {}

    def execute(self, statement: CompiledStatement, values: Sequence[Any]) -> int:
        """Run ``statement`` once, committed; return its row count."""
        parameters = statement.parameters(values)

        def run(connection: DBAPIConnection, cursor: DBAPICursor) -> int:
            cursor.execute(statement.sql, parameters)
            return int(cursor.rowcount)

        if self._shared:
            return self._run(lambda c, cursor: self._transaction(c, cursor, run, _always)[0])
        queue = self._queue
        if queue is not None and isinstance(parameters, list):
            self._check_open()
            return queue.write(
                self._group_tag(statement),
                parameters,
                lambda: self._run(run),
                lambda collect: self._run(self._together(statement, parameters, collect)),
            )
        return self._write(run)

    def _together(
        self, statement: CompiledStatement, ours: Sequence[Any], collect: Collect
    ) -> Work[list[int]]:
        """Work that runs ``statement`` for ``ours``, then for each of the others ``collect()``
        gives once the transaction holds the write lock, in one transaction (the group commit
        of a :class:`.WriteQueue`); it returns their row counts, ours first."""

        def run(connection: DBAPIConnection, cursor: DBAPICursor) -> list[int]:
            counts: list[int] = []

            def each(connection: DBAPIConnection, cursor: DBAPICursor) -> int:
                others = collect()
                for row in (ours, *others):
                    cursor.execute(statement.sql, row)
                    counts.append(int(cursor.rowcount))
                return len(counts)

            self._transaction(connection, cursor, each, _always)
            return counts

        return run

    def _group_tag(self, statement: CompiledStatement) -> bytes:
        """What a write must share with ours to be committed with it: the statement, and the
        connection's durability (a write asked to be fsynced is never committed without)."""
        tag = self._group_tags.get(statement.sql)
        if tag is None:
            durability = self._run(
                lambda connection, cursor: [
                    cursor.execute(query).fetchall() for query in WriteQueue.durability_queries
                ]
            )
            text = f"{durability!r}\0{statement.sql}"
            tag = self._group_tags[statement.sql] = hashlib.sha256(text.encode()).digest()[:16]
        return tag

    def execute_many(
        self,
        statement: CompiledStatement,
        rows: Iterable[Sequence[Any]],
        *,
        commit_if: CommitCheck,
    ) -> bool:
        """Run ``statement`` for every row in one transaction; return whether it committed.

        The transaction commits only if ``commit_if(row_count, cursor)`` is true (it may run
        queries on ``cursor``, inside the transaction), else rolls back.
        """
        parameters = statement.parameter_rows(rows)

        def run(connection: DBAPIConnection, cursor: DBAPICursor) -> int:
            cursor.executemany(statement.sql, cast(Any, parameters))
            return int(cursor.rowcount)

        return self._write(lambda c, cursor: self._transaction(c, cursor, run, commit_if)[1])

    def fetch(self, statement: CompiledStatement, values: Sequence[Any]) -> list[Sequence[Any]]:
        """Run the query ``statement``; return every row, unconverted (see ``convert_rows``).

        Every row is fetched, so that no statement is left open between calls (an unfinished
        SQLite query would keep a read snapshot that the next write on this connection could
        not upgrade).
        """
        parameters = statement.parameters(values)

        def run(connection: DBAPIConnection, cursor: DBAPICursor) -> list[Sequence[Any]]:
            cursor.execute(statement.sql, parameters)
            return list(cursor.fetchall())

        return self._run(run)

    def _transaction(
        self,
        connection: DBAPIConnection,
        cursor: DBAPICursor,
        run: Work[int],
        commit_if: CommitCheck,
    ) -> tuple[int, bool]:
        """Run ``run`` in a transaction; return its row count and whether it committed."""
        cursor.execute(self._dialect.begin_sql)
        try:
            count = run(connection, cursor)
            committed = commit_if(count, cursor)
            if committed:
                connection.commit()
            else:
                connection.rollback()
        except BaseException:
            _rollback_quietly(connection)
            raise
        return count, committed

    def close(self) -> None:
        """Close the kept connection (give it back, on a one-connection engine)."""
        with self._lock:
            self._closed = True
            kept, self._kept = self._kept, None
            cursor, self._cursor = self._cursor, None
        if self._queue is not None:
            self._queue.close()
        if kept is None:
            return
        if self._shared:
            self._check_in(kept, cursor, None)
            return
        with contextlib.suppress(self.driver_error):
            if cursor is not None:
                cursor.close()
        kept.close()  # detached from the pool: this closes the driver connection

    # -- connections ---------------------------------------------------------------------

    def _write(self, work: Work[_T]) -> _T:
        """Run ``work``; again, after a pause, if the database aborted it to break a deadlock.

        The database has rolled the work back by then (see :meth:`.Dialect.is_transient`), and
        writes are upserts: running one again leaves the state running it once would have.
        """
        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                return self._queued(work)
            except self.driver_error as exc:
                if attempt == _TRANSIENT_ATTEMPTS or not self._dialect.is_transient(exc):
                    raise
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # don't meet the other again
        raise AssertionError("unreachable")  # pragma: no cover

    def _queued(self, work: Work[_T]) -> _T:
        """Run ``work`` in turn with the other writers of the queue, if there is one."""
        queue = self._queue
        if queue is None:
            return self._run(work)
        self._check_open()  # before the queue opens its lock file again
        queue.acquire()
        try:
            return self._run(work)
        finally:
            queue.release()

    def _run(self, work: Work[_T]) -> _T:
        if not self._lock.acquire(blocking=self._shared):
            return self._run_alone(work)
        try:
            self._check_open()
            kept, cursor = self._kept, self._cursor
            if kept is not None and cursor is not None:
                try:
                    return work(_driver(kept), cursor)
                except self.driver_error as exc:
                    if not self._lost(kept, exc):
                        raise
                    self._kept = self._cursor = None
                # It died between calls (or during this one): run once more, on a new one.
            kept = self._keep()
            cursor = self._cursor = _driver(kept).cursor()
            self._kept = kept
            try:
                return work(_driver(kept), cursor)
            except self.driver_error as exc:
                if self._lost(kept, exc):
                    self._kept = self._cursor = None
                raise
        finally:
            self._lock.release()

    def _keep(self) -> PoolProxiedConnection:
        """A connection to keep: detached from the pool, so it doesn't hold a pool slot.

        With the kept connection out of the pool's accounting, an engine with a pool of one
        still serves everything else (``list``, ``delete``, other threads, migrations).
        """
        if self._shared:
            return self._engine.raw_connection()  # the one connection everybody uses
        connection, _ = self._check_out()
        connection.detach()
        return connection

    def _run_alone(self, work: Work[_T]) -> _T:
        self._check_open()
        connection, restore = self._check_out()
        cursor = None
        try:
            self._check_open()  # close() may have run meanwhile: give the connection back
            cursor = _driver(connection).cursor()
            return work(_driver(connection), cursor)
        except self.driver_error as exc:
            self._lost(connection, exc)
            raise
        finally:
            self._check_in(connection, cursor, restore)

    def _check_open(self) -> None:
        if self._closed:
            raise PersistError("the persister is closed; open a new one")

    def _lost(self, connection: PoolProxiedConnection, error: Exception) -> bool:
        """Whether ``error`` means the connection is gone; if so, discard it."""
        dbapi_error = cast(Any, error)
        driver = connection.dbapi_connection
        if not self._engine.dialect.is_disconnect(dbapi_error, driver, None):
            return False
        connection.invalidate(error)
        if driver is not None:  # a detached connection is not closed by invalidate()
            with contextlib.suppress(Exception):
                driver.close()
        return True

    def _check_out(self) -> tuple[PoolProxiedConnection, Any]:
        """A pooled connection switched to autocommit, and the setting to restore."""
        connection = self._engine.raw_connection()
        if self._shared:
            return connection, None
        try:
            driver = _driver(connection)
            restore = self._dialect.get_autocommit(driver)
            self._dialect.set_autocommit(driver, self._dialect.autocommit[1])
        except BaseException:
            connection.invalidate()
            raise
        return connection, restore

    def _check_in(
        self, connection: PoolProxiedConnection, cursor: DBAPICursor | None, restore: Any
    ) -> None:
        if not connection.is_valid:  # invalidated: already gone from the pool
            return
        try:
            if cursor is not None:
                cursor.close()
            if not self._shared:
                self._dialect.set_autocommit(_driver(connection), restore)
        except self.driver_error as exc:
            connection.invalidate(exc)
            return
        connection.close()


def _always(count: int, cursor: DBAPICursor) -> bool:
    return True


def _driver(connection: PoolProxiedConnection) -> DBAPIConnection:
    driver = connection.dbapi_connection
    if driver is None:  # pragma: no cover - invalidated connections are never reused
        raise RuntimeError("the pooled connection was invalidated")
    return driver


def _rollback_quietly(connection: DBAPIConnection) -> None:
    # The error that made us roll back is what the caller needs to see; a rollback on a
    # connection that is already gone fails too, and the database rolls back anyway.
    with contextlib.suppress(Exception):
        connection.rollback()
