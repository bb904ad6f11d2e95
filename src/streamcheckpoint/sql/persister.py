"""SQLPersister: checkpoints in a SQL table (SQLite, PostgreSQL, MySQL), via SQLAlchemy Core."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPICursor

from ..checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from ..errors import PersistConnectionError, PersistError, SchemaError
from ..migrations import ensure_schema, upgrade_commands
from ..persister import BasePersister, check_monotonic
from ..urls import mask_url, redact
from .dialects import Failure
from .driver import CommitCheck, CompiledStatement, Writer
from .engine import open_engine, shared_connection_lock
from .statements import (
    checkpoint_from_row,
    corrupt_row_error,
    record_from_row,
    select_sequence_numbers,
    statements_for,
)
from .writequeue import WriteQueue

__all__ = ["SQLPersister"]

_by_key = operator.itemgetter(0)

# How many keys a monotonic batch reads back per query, where the row count can't tell.
_READBACK_CHUNK = 500

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

    ``schema`` puts the table in that PostgreSQL schema, or that MySQL database (it must exist;
    not supported on SQLite). The schema belongs to the Alembic migrations shipped with the
    package: with ``migrate=True`` (the default) opening upgrades the database to the current
    revision, serialized across processes; with ``migrate=False`` opening raises
    :class:`~streamcheckpoint.errors.SchemaError`, naming the command to run, unless the
    database is already current.

    ``updated_at`` comes from the database's clock. Each ``write`` is one upsert statement, and
    ``write_many`` one transaction. With ``monotonic=True`` the "never backwards" check is part
    of the upsert itself, so concurrent writers in any number of processes can't race past it.
    (On MySQL a monotonic write is a transaction that also reads the rows back before it
    commits; see :class:`~.dialects.MySQLDialect`.)

    Driver errors are raised as :class:`~streamcheckpoint.errors.PersistConnectionError`
    (unreachable), :class:`~streamcheckpoint.errors.SchemaError` (table missing) or
    :class:`~streamcheckpoint.errors.PersistError`, naming the key and the URL with its password
    masked, with the driver's error as ``__cause__``. After a lost connection (a server restart,
    a terminated backend) the next call reconnects.

    Thread-safe: one connection is kept for writes and reads by key, detached from the engine's
    pool (so it is one connection more than the pool's size, and the pool stays free for
    everything else); a thread that finds it busy uses a connection from the pool. Writes and
    reads by key run on the driver connection directly (SQL compiled once by SQLAlchemy), so
    SQLAlchemy's cursor events on a caller's engine don't see them.

    Writers of one SQLite file take turns through a lock file next to it,
    ``<database>-lock`` (an ``flock``; see :class:`~.writequeue.WriteQueue`): with several writer
    processes no write waits the seconds that SQLite's own busy handler can make it wait. On
    Linux a single write that finds another writer's transaction in progress is committed by
    that writer's successor together with its own (group commit, through
    ``<database>-mailbox``): one fsync for several processes' writes, and ``write`` returns only
    after it. Both files stay when the persister closes.
    """

    def __init__(
        self,
        url_or_engine: str | sa.URL | sa.Engine,
        *,
        schema: str | None = None,
        migrate: bool = True,
        monotonic: bool = False,
        **engine_options: Any,
    ) -> None:
        super().__init__(monotonic=monotonic)
        if not isinstance(migrate, bool):
            raise TypeError(f"migrate must be a bool, not {type(migrate).__name__}")
        engine, dialect, created = open_engine(url_or_engine, engine_options)
        dialect.check_engine(engine)
        try:
            ensure_schema(engine, schema=schema, migrate=migrate)
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
        self._statements = statements_for(dialect)
        options: dict[str, Any] = dict(dialect.statement_options)
        if schema is not None:
            options["schema_translate_map"] = {None: schema}
        self._executor = engine.execution_options(**options)
        upsert = self._statements.upsert_monotonic if monotonic else self._statements.upsert
        self._write_values = self._statements.write_values
        self._upsert = CompiledStatement(
            upsert, self._statements.write_params, engine, dialect, schema
        )
        # Where the row count can't say a monotonic write was refused, every write that must
        # know runs as a transaction that reads back.
        self._transactional_writes = monotonic and not dialect.refusals_by_rowcount
        self._sort_batches = dialect.locks_rows
        self._key_values = self._statements.key_values
        self._select = CompiledStatement(
            self._statements.select_checkpoint, self._statements.key_names, engine, dialect, schema
        )
        self._dialect = dialect
        self._readbacks: dict[int, CompiledStatement] = {}
        self._shared_lock = shared_connection_lock(engine)
        queued = dialect.queued_database(engine.url)
        queue = None if queued is None else WriteQueue(queued)
        self._writer = Writer(engine, dialect, self._shared_lock, queue)
        self._errors = (sa.exc.SQLAlchemyError, self._writer.driver_error)
        self._classify = dialect.classify

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r}, monotonic={self.monotonic})"

    # -- storage ------------------------------------------------------------------------

    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        # The hot path: no context managers, the writer takes the locks it needs.
        if self._transactional_writes:
            self._write_batch([(key, checkpoint)], "write")
            return
        try:
            written = self._writer.execute(self._upsert, self._write_values(key, checkpoint))
        except self._errors as exc:
            raise self._translate(exc, "write", key) from exc
        if self.monotonic and written == 0:
            # Refused: raise if the stored checkpoint is ahead; if it has gone since, retry.
            self._raise_regression([(key, checkpoint)])
            self._write_batch([(key, checkpoint)], "write")

    def _write_many(self, pairs: list[tuple[PartitionKey, Checkpoint]]) -> None:
        self._write_batch(pairs, "write_many")

    def _write_batch(self, pairs: list[tuple[PartitionKey, Checkpoint]], action: str) -> None:
        """Write ``pairs`` in one transaction; in monotonic mode, all of them or none."""
        write_values = self._write_values
        ordered = sorted(pairs, key=_by_key) if self._sort_batches else pairs
        rows = [write_values(key, checkpoint) for key, checkpoint in ordered]
        key = pairs[0][0] if len(pairs) == 1 else None
        commit_if = self._commit_check(pairs)
        for _ in range(_MONOTONIC_ATTEMPTS):
            try:
                committed = self._writer.execute_many(self._upsert, rows, commit_if=commit_if)
            except self._errors as exc:
                raise self._translate(exc, action, key) from exc
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
        try:
            rows = self._writer.fetch(self._select, self._key_values(key))
        except self._errors as exc:
            raise self._translate(exc, "read", key) from exc
        if not rows:
            return None
        try:
            row = self._select.convert_rows(rows)[0]
        except (TypeError, ValueError) as exc:  # a stored value the types can't convert
            raise corrupt_row_error(key, self._where, exc) from exc
        return checkpoint_from_row(row, key, self._where)

    def _list(self, prefix: tuple[str, ...]) -> list[CheckpointRecord]:
        statement = self._statements.select_records[len(prefix)]
        with self._failures("list", None), self._executor.connect() as connection:
            try:
                rows = connection.execute(statement, self._statements.params(prefix)).all()
            except (TypeError, ValueError) as exc:  # a stored value the types can't convert
                self._find_corrupt_row(connection, prefix)
                raise corrupt_row_error(None, self._where, exc) from exc
            return [record_from_row(row, self._where) for row in rows]

    def _delete(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None
    ) -> int:
        if partition_id is None:
            key = None
            statement = self._statements.delete_group
            params = self._statements.params((namespace, name, consumer_group))
        else:
            key = PartitionKey(namespace, name, consumer_group, partition_id)
            statement = self._statements.delete_partition
            params = self._statements.params(key)
        with self._failures("delete", key), self._executor.begin() as connection:
            return int(connection.execute(statement, params).rowcount)

    def _close(self) -> None:
        with self._failures("close", None):
            self._writer.close()
            if self._owns_engine:
                self.engine.dispose()

    # -- helpers ------------------------------------------------------------------------

    def _commit_check(self, pairs: Sequence[tuple[PartitionKey, Checkpoint]]) -> CommitCheck:
        """Whether a batch may commit: in monotonic mode only if no row was refused."""
        if not self.monotonic:
            return lambda count, cursor: True
        if not self._transactional_writes:
            expected = len(pairs)
            return lambda count, cursor: count == expected
        return lambda count, cursor: self._none_refused(cursor, pairs)

    def _none_refused(
        self, cursor: DBAPICursor, pairs: Sequence[tuple[PartitionKey, Checkpoint]]
    ) -> bool:
        """Read back what a monotonic batch left, in its transaction: is any stored row ahead?"""
        for start in range(0, len(pairs), _READBACK_CHUNK):
            chunk = pairs[start : start + _READBACK_CHUNK]
            hashes = [self._key_values(key)[0] for key, _ in chunk]
            query = self._readback(len(chunk))
            cursor.execute(query.sql, query.parameters(hashes))
            stored = {bytes(row[0]): row[1] for row in cursor.fetchall()}
            for (_, checkpoint), hashed in zip(chunk, hashes, strict=True):
                sequence_number = stored.get(hashed)
                if sequence_number is None or sequence_number > checkpoint.sequence_number:
                    return False
        return True

    def _readback(self, count: int) -> CompiledStatement:
        """The compiled read-back query for ``count`` keys (kept: batches repeat their sizes)."""
        query = self._readbacks.get(count)
        if query is None:
            statement, names = select_sequence_numbers(self._dialect, count)
            query = CompiledStatement(statement, names, self.engine, self._dialect, self.schema)
            self._readbacks[count] = query
        return query

    def _find_corrupt_row(self, connection: sa.Connection, prefix: tuple[str, ...]) -> None:
        """Raise the CorruptCheckpointError naming the first unreadable row under ``prefix``."""
        statements = self._statements
        keys = connection.execute(statements.select_keys[len(prefix)], statements.params(prefix))
        for found in keys.all():
            key = PartitionKey(*found)
            try:
                rows = connection.execute(statements.select_records[4], statements.params(key))
                record_from_row(rows.one(), self._where)
            except (TypeError, ValueError) as exc:
                raise corrupt_row_error(key, self._where, exc) from exc

    @contextmanager
    def _failures(self, action: str, key: PartitionKey | None) -> Iterator[None]:
        """Serialize on a one-connection engine; raise driver errors as PersistError."""
        with self._shared_lock or nullcontext():
            try:
                yield
            except self._errors as exc:
                raise self._translate(exc, action, key) from exc

    def _translate(self, error: Exception, action: str, key: PartitionKey | None) -> PersistError:
        """The PersistError for ``error``: what failed, on which key and database, what to do."""
        original, failure = self._diagnose(error)
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
            return original, self._classify(original)
        if isinstance(error, self._writer.driver_error):
            return error, self._classify(error)
        return error, "other"  # SQLAlchemy's own, e.g. the pool's timeout
