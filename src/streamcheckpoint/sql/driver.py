"""Running the write statements on the driver's own connection: the hot path.

SQLAlchemy compiles each write statement once per persister (:class:`CompiledStatement`); a
write is then one ``cursor.execute`` on a pooled driver connection that the persister keeps
checked out between calls (:class:`Writer`). Going through ``Connection.execute`` instead costs
more than the database does for a durable SQLite write (see ``benchmarks/sql_ratios.py``).

Bound values go through the type processors SQLAlchemy would apply (so ``UTCDateTime`` stores
UTC on every database), looked up once per statement through :meth:`.Dialect.bind_processor`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

from .dialects import Dialect

__all__ = ["CompiledStatement", "Writer"]

_T = TypeVar("_T")


class CompiledStatement:
    """A statement compiled once for one engine and schema, ready for the driver.

    ``names`` are the statement's bound parameters in the order :meth:`parameters` receives
    their values; every bound parameter of the statement must be among them. ``engine`` is the
    engine the statement will run on, ``dialect`` its :class:`~.dialects.Dialect`.
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
        compiled = cast(
            SQLCompiler,
            statement.compile(
                dialect=engine.dialect,
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


class Writer:
    """Runs idempotent write statements on a driver connection kept between calls.

    The kept connection saves a pool checkout (and PostgreSQL's pre-ping round trip) per write.
    A thread that finds it in use by another thread gets a connection of its own from the pool
    for that call. If the kept connection turns out to be dead (the server restarted, the
    backend was terminated), it is discarded and the call runs once more on a new connection:
    the statements are upserts, so running one twice leaves the same state.

    ``shared_lock`` is the lock of an engine with only one connection: the writer then waits
    for it instead of taking a second connection.
    """

    def __init__(
        self, engine: sa.Engine, dialect: Dialect, shared_lock: threading.RLock | None = None
    ) -> None:
        self._engine = engine
        self._dialect = dialect
        self.driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        """The driver's base exception class."""
        self._lock: threading.Lock | threading.RLock = shared_lock or threading.Lock()
        self._wait_for_lock = shared_lock is not None
        self._kept: PoolProxiedConnection | None = None

    def execute(self, statement: CompiledStatement, values: Sequence[Any]) -> int:
        """Run ``statement`` once, committed; return its row count."""
        parameters = statement.parameters(values)

        def run(cursor: DBAPICursor) -> int:
            cursor.execute(statement.sql, parameters)
            return int(cursor.rowcount)

        if self._dialect.single_write_in_transaction:
            return self._run(lambda connection: self._transaction(connection, run, _always))
        return self._run(lambda connection: _with_cursor(connection, run))

    def execute_many(
        self,
        statement: CompiledStatement,
        rows: Iterable[Sequence[Any]],
        *,
        commit_if: Callable[[int], bool],
    ) -> int:
        """Run ``statement`` for every row in one transaction; return the total row count.

        The transaction commits only if ``commit_if(row_count)`` is true, else rolls back.
        """
        parameters = [statement.parameters(values) for values in rows]

        def run(cursor: DBAPICursor) -> int:
            cursor.executemany(statement.sql, cast(Any, parameters))
            return int(cursor.rowcount)

        return self._run(lambda connection: self._transaction(connection, run, commit_if))

    def _transaction(
        self,
        connection: DBAPIConnection,
        run: Callable[[DBAPICursor], int],
        commit_if: Callable[[int], bool],
    ) -> int:
        def in_transaction(cursor: DBAPICursor) -> int:
            cursor.execute(self._dialect.begin_sql)
            try:
                count = run(cursor)
                if commit_if(count):
                    connection.commit()
                else:
                    connection.rollback()
            except BaseException:
                _rollback_quietly(connection)
                raise
            return count

        return _with_cursor(connection, in_transaction)

    def close(self) -> None:
        """Give the kept connection back to the pool."""
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None:
            self._check_in(kept)

    # -- connections ---------------------------------------------------------------------

    def _run(self, work: Callable[[DBAPIConnection], _T]) -> _T:
        if not self._lock.acquire(blocking=self._wait_for_lock):
            return self._run_alone(work)
        try:
            kept = self._kept
            if kept is not None:
                try:
                    return work(_driver(kept))
                except self.driver_error as exc:
                    if not self._lost(kept, exc):
                        raise
                    self._kept = None
                # It died between calls (or during this one): run once more, on a new one.
            self._kept = kept = self._check_out()
            try:
                return work(_driver(kept))
            except self.driver_error as exc:
                if self._lost(kept, exc):
                    self._kept = None
                raise
        finally:
            self._lock.release()

    def _run_alone(self, work: Callable[[DBAPIConnection], _T]) -> _T:
        connection = self._check_out()
        try:
            return work(_driver(connection))
        except self.driver_error as exc:
            self._lost(connection, exc)
            raise
        finally:
            self._check_in(connection)

    def _lost(self, connection: PoolProxiedConnection, error: Exception) -> bool:
        """Whether ``error`` means the connection is gone; if so, drop it from the pool."""
        dbapi_error = cast(Any, error)
        if not self._engine.dialect.is_disconnect(dbapi_error, connection.dbapi_connection, None):
            return False
        connection.invalidate(error)
        return True

    def _check_out(self) -> PoolProxiedConnection:
        connection = self._engine.raw_connection()
        try:
            self._dialect.prepare_writer(_driver(connection))
        except BaseException:
            connection.invalidate()
            raise
        return connection

    def _check_in(self, connection: PoolProxiedConnection) -> None:
        if not connection.is_valid:  # invalidated: already gone from the pool
            return
        try:
            self._dialect.release_writer(_driver(connection))
        except self.driver_error as exc:
            connection.invalidate(exc)
            return
        connection.close()


def _always(count: int) -> bool:
    return True


def _with_cursor(connection: DBAPIConnection, run: Callable[[DBAPICursor], int]) -> int:
    cursor = connection.cursor()
    try:
        return run(cursor)
    finally:
        cursor.close()


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
