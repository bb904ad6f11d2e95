"""SQLPersister: checkpoints in a SQL table (SQLite, PostgreSQL, MySQL), via SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, NoReturn

import sqlalchemy as sa

from ..checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from ..errors import CorruptCheckpointError, PersistConnectionError, PersistError, SchemaError
from ..persister import BasePersister, Scope, Times, check_bool, check_monotonic
from ..redaction import mask_url, redact
from .connection import KeptConnection
from .dialects import Failure
from .engine import UrlOrEngine, open_engine, resolve_url
from .migrations import ensure_schema, upgrade_commands
from .statements import checkpoint_from_row, compile_statements, record_from_row, scope_index

__all__ = ["SQLPersister", "check_arguments"]


# A monotonic write refused because of a row that then changed before we could read it (a
# delete, or a non-monotonic writer) is tried again; this many times at most.
_MONOTONIC_ATTEMPTS = 5


class SQLPersister(BasePersister):
    """Checkpoints in the ``checkpoints`` table of a SQLite, PostgreSQL, MySQL or MariaDB database.

    ``url_or_engine`` is a URL (``sqlite:///path.db``, ``sqlite://`` for in memory,
    ``postgresql+psycopg://user:password@host/db``, ``mysql+pymysql://user:password@host/db``;
    ``postgresql://`` and ``postgres://`` mean psycopg too, ``mysql://`` and ``mariadb://``
    PyMySQL) or an existing :class:`sqlalchemy.Engine`, used as it is and left open by
    :meth:`close` (an in-memory SQLite engine must be one whose connection all threads share:
    ``poolclass=StaticPool, connect_args={"check_same_thread": False}``). An engine created
    from a URL gets ``engine_options`` (passed to :func:`sqlalchemy.create_engine`) and the
    settings documented in :mod:`streamcheckpoint.sql.dialects`: for SQLite WAL,
    ``synchronous=FULL`` (``?synchronous=NORMAL`` trades durability for speed),
    ``busy_timeout=5000`` and write transactions that take the write lock first; for PostgreSQL
    a pool with ``pool_pre_ping`` and UTC sessions; for MySQL ``pool_pre_ping``,
    ``pool_recycle=3600`` and ``utf8mb4``. The engine in use is :attr:`engine`.

    ``schema`` puts the table in that PostgreSQL schema, or that MySQL database (not supported
    on SQLite); migrating creates it if missing and the database user may. The schema belongs to
    the Alembic migrations shipped with the package: with ``migrate=True`` (the default) opening
    upgrades the database to the current revision, serialized across processes; with
    ``migrate=False`` opening raises :class:`~streamcheckpoint.errors.SchemaError`, naming the
    command to run, unless the database is already current.

    ``read_only=True`` only reads: the database isn't migrated (it must be current), writes and
    deletes raise :class:`~streamcheckpoint.errors.PersistError`, and a SQLite file is opened
    read-only, creating no file, so that a user who may only read it (a dashboard, a cron job)
    never leaves files the service can't write.

    ``updated_at`` comes from the database's clock. Each ``write`` is one upsert statement, and
    ``write_many`` one transaction. With ``monotonic=True`` the "never backwards" check is part
    of the upsert itself, so concurrent writers in any number of processes can't race past it.
    (On MySQL a monotonic write is a transaction that also reads the rows back before it
    commits; see :mod:`~.dialects.mysql`.)

    Driver errors are raised as :class:`~streamcheckpoint.errors.PersistConnectionError`
    (unreachable), :class:`~streamcheckpoint.errors.SchemaError` (table missing) or
    :class:`~streamcheckpoint.errors.PersistError`, naming the key and the URL with its password
    masked, with the driver's error as ``__cause__``. After a lost connection (a server restart,
    a terminated session, an idle timeout) the call runs once more on a new connection.

    Thread-safe: one connection of the engine's pool is kept for the persister's calls (see
    :mod:`.connection`); a thread that finds it busy uses another one from the pool. Writers
    of one SQLite file, in any number of threads and processes, wait for each other through
    SQLite's own locking, for at most ``busy_timeout``.
    """

    def __init__(
        self,
        url_or_engine: UrlOrEngine,
        *,
        schema: str | None = None,
        migrate: bool = True,
        monotonic: bool = False,
        read_only: bool = False,
        **engine_options: Any,
    ) -> None:
        check_arguments(url_or_engine, schema, migrate, monotonic, engine_options)
        super().__init__(monotonic=monotonic, read_only=read_only)
        engine, dialect, created = open_engine(url_or_engine, engine_options, read_only=read_only)
        dialect.check_engine(engine)
        try:
            ensure_schema(engine, schema=schema, migrate=migrate and not read_only)
        except BaseException:
            if created:
                engine.dispose()
            raise
        self.engine: sa.Engine = engine
        """The engine this persister uses."""
        self.schema = schema
        self._owns_engine = created
        self._where = mask_url(engine.url)
        if schema is not None:
            self._where += f" (schema {schema!r})"
        self._dialect = dialect
        self._sql = compile_statements(dialect, engine.dialect, schema)
        self._upsert = self._sql.upsert_monotonic if monotonic else self._sql.upsert
        self._upserts_keeping_time = self._sql.upserts_keeping_time[monotonic]
        # Where the row count can't say a monotonic write was refused, every write that must
        # know runs as a transaction that reads back.
        self._transactional_writes = monotonic and dialect.confirms_in_transaction
        self._from_db = dialect.timestamp.from_db
        self._connection = KeptConnection(engine, dialect, schema, self._where)
        self._errors = (sa.exc.SQLAlchemyError, self._connection.driver_error)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r}, monotonic={self.monotonic})"

    # -- storage ------------------------------------------------------------------------

    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        if self._transactional_writes:
            self._write_batch([(key, checkpoint)], "write")
            return
        row = self._dialect.write_rows([(key, checkpoint)])[0]
        try:
            written = self._connection.on_cursor(self._upsert, row, write=True)
        except self._errors as exc:
            self._fail(exc, "write", key)
        if self.monotonic and written == 0:
            # Refused: raise if the stored checkpoint is ahead; if it has gone since, retry.
            self._raise_regression([(key, checkpoint)])
            self._write_batch([(key, checkpoint)], "write")

    def _write_many(
        self, pairs: list[tuple[PartitionKey, Checkpoint]], times: Times = None
    ) -> None:
        self._write_batch(pairs, "write_many", times)

    def _write_batch(
        self, pairs: list[tuple[PartitionKey, Checkpoint]], action: str, times: Times = None
    ) -> None:
        """Write ``pairs`` in one transaction; in monotonic mode, all of them or none. With
        ``times``, each row's ``updated_at`` is its time instead of the database's clock."""
        order = list(range(len(pairs)))
        if self._dialect.locks_rows:
            order.sort(key=lambda i: pairs[i][0])
        ordered = [pairs[i] for i in order]
        rows = self._dialect.write_rows(ordered)
        upsert = self._upsert
        if times is not None:
            encode = self._dialect.timestamp.to_db
            rows = [(*row, encode(times[i])) for row, i in zip(rows, order, strict=True)]
            upsert = self._upserts_keeping_time
        key = pairs[0][0] if len(pairs) == 1 else None
        connection = self._connection

        def body(c: sa.Connection) -> bool:
            count = c.exec_driver_sql(upsert, rows).rowcount
            return not self.monotonic or self._dialect.none_refused(c, ordered, count)

        for _ in range(_MONOTONIC_ATTEMPTS):
            try:
                committed = connection.run(lambda c: connection.transaction(c, body), write=True)
            except self._errors as exc:
                self._fail(exc, action, key)
            if committed:
                return
            # Some row was refused and the whole batch rolled back: which one, and why?
            self._raise_regression(pairs)
        raise PersistError(
            f"{action} to {self._where} was refused {_MONOTONIC_ATTEMPTS} times although no "
            "stored checkpoint was ahead when read back: the checkpoints keep being changed "
            "or deleted concurrently. Nothing was written."
        )

    def _raise_regression(self, pairs: Sequence[tuple[PartitionKey, Checkpoint]]) -> None:
        """Raise CheckpointRegressionError for the first pair whose stored checkpoint is ahead.

        Returns if none is (the refusing row was deleted or lowered since): the caller retries.
        """
        for key, checkpoint in pairs:
            check_monotonic(key, self._read(key), checkpoint)

    def _read(self, key: PartitionKey) -> Checkpoint | None:
        values = self._dialect.key_values(key)
        try:
            rows = self._connection.fetch(self._sql.select_checkpoint, values)
            convert: Callable[[Any], datetime] = self._from_db
        except self._errors as exc:
            rows, convert = self._fetch_readable(exc, "read", key, lambda sql: sql[0], values)
        if not rows:
            return None
        return checkpoint_from_row(rows[0], key, self._where, convert)

    def _list(self, scope: Scope) -> Iterator[CheckpointRecord | CorruptCheckpointError]:
        index = scope_index(scope)
        values = tuple(value for value in scope if value is not None)
        try:
            rows = self._connection.fetch(self._sql.select_records[index], values)
            convert: Callable[[Any], datetime] = self._from_db
        except self._errors as exc:
            rows, convert = self._fetch_readable(exc, "list", None, lambda s: s[1][index], values)
        for row in rows:
            try:
                yield record_from_row(row, self._where, convert)
            except CorruptCheckpointError as exc:
                yield exc

    def _fetch_readable(
        self,
        error: Exception,
        action: str,
        key: PartitionKey | None,
        pick: Callable[[tuple[str, tuple[str, ...]]], str],
        values: Sequence[Any],
    ) -> tuple[Sequence[Sequence[Any]], Callable[[Any], datetime]]:
        """After a query failed on a stored value the driver can't convert (a timestamp out of
        Python's range), its rows with the timestamps as the dialect can always fetch them, and
        their converter; any other failure is raised."""
        _, failure = self._diagnose(error)
        readable = self._sql.readable
        if failure != "corrupt" or readable is None:
            self._fail(error, action, key)
        try:
            rows = self._connection.fetch(pick(readable), values)
        except self._errors as exc:
            self._fail(exc, action, key)
        return rows, self._dialect.timestamp_from_readable

    def _delete(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None
    ) -> int:
        key = None
        if partition_id is None:
            sql, values = self._sql.delete_group, (namespace, name, consumer_group)
        else:
            key = PartitionKey(namespace, name, consumer_group, partition_id)
            sql, values = self._sql.delete_partition, tuple(self._dialect.key_values(key))
        try:
            return self._connection.run(
                lambda c: int(c.exec_driver_sql(sql, values).rowcount), write=True
            )
        except self._errors as exc:
            self._fail(exc, "delete", key)

    def _close(self) -> None:
        try:
            self._connection.close()
            if self._owns_engine:
                self.engine.dispose()
        except self._errors as exc:
            self._fail(exc, "close", None)

    # -- errors -------------------------------------------------------------------------

    def _fail(self, error: Exception, action: str, key: PartitionKey | None) -> NoReturn:
        """Raise the PersistError for ``error``, with the driver's own error as its cause."""
        original, failure = self._diagnose(error)
        raise self._translate(original, failure, action, key) from original

    def _translate(
        self, original: BaseException, failure: Failure, action: str, key: PartitionKey | None
    ) -> PersistError:
        """The PersistError for a driver error: what failed, on which key and database, what
        to do."""
        detail = str(original).strip().splitlines()[0] if str(original).strip() else ""
        detail = redact(detail, self.engine.url)  # in case the driver echoes a secret
        subject = f" for {key.describe()}" if key is not None else ""
        message = f"{action}{subject} failed on {self._where}: {type(original).__name__}"
        message += f": {detail}" if detail else ""
        if failure == "connection":
            return PersistConnectionError(
                f"{message}. Check that the database server is up and reachable and that the "
                "URL and credentials are right; the next call connects again."
            )
        if failure == "corrupt":
            return CorruptCheckpointError(
                f"{message}: a stored value can't be read. Fix or delete the row.", key=key
            )
        if failure == "schema":
            return SchemaError(
                f"{message}. The checkpoints table is missing or not what this version "
                f"expects: run {upgrade_commands(self.engine.url, self.schema)}, or open the "
                "persister with migrate=True."
            )
        return PersistError(f"{message}.")

    def _diagnose(self, error: Exception) -> tuple[BaseException, Failure]:
        """The driver's own error inside ``error``, and what it means."""
        if isinstance(error, sa.exc.DBAPIError):
            original = error.orig if error.orig is not None else error
            if error.connection_invalidated:
                return original, "connection"
            return original, self._dialect.classify(original)
        if isinstance(error, self._connection.driver_error):
            return error, self._dialect.classify(error)
        return error, "other"  # SQLAlchemy's own, e.g. the pool's timeout


def check_arguments(
    url_or_engine: UrlOrEngine,
    schema: str | None,
    migrate: bool,
    monotonic: bool,
    engine_options: dict[str, Any],
) -> None:
    """Refuse arguments of :class:`SQLPersister` that can't work, without connecting.

    ``TypeError``/``ValueError`` naming the argument: a URL that isn't one or names a database
    that isn't supported, a ``schema`` the database can't take, options that aren't ``bool``,
    engine options beside an engine.
    """
    check_bool("monotonic", monotonic)
    check_bool("migrate", migrate)
    url, dialect = resolve_url(url_or_engine)
    if isinstance(url_or_engine, sa.Engine) and engine_options:
        raise TypeError(
            f"engine options ({', '.join(sorted(engine_options))}) only apply when "
            "SQLPersister creates the engine from a URL; configure your engine instead"
        )
    dialect.check_schema(schema, url)
