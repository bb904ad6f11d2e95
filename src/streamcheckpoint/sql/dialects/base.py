"""What a database must say about itself for SQLPersister: the :class:`Dialect` interface.

Each supported database implements it in a module of its own (``sqlite``, ``postgresql``,
``mysql`` beside this one), and nothing outside those modules asks which database it is talking
to. A dialect owns its table (:attr:`Dialect.table`) and timestamp type, the values bound to its
statements, its upsert and how a monotonic write's verdict is confirmed, how an engine is
configured for it, its migration lock, and what its driver's errors mean.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from ...checkpoint import Checkpoint, PartitionKey
from ..schema import KEY_COLUMN_NAMES, UTCTimestamp

__all__ = [
    "CONNECT_TIMEOUT_S",
    "KEY_PARAMS",
    "QUERY_TIMEOUT_S",
    "UPDATED_COLUMNS",
    "WRITE_PARAMS",
    "Dialect",
    "EngineHooks",
    "Failure",
    "OnConflictDialect",
    "Pairs",
    "PoolHook",
    "with_connect_defaults",
]

Failure = Literal["connection", "schema", "corrupt", "other"]
"""What a driver error means to a caller: unreachable store, missing schema, a stored value the
driver can't convert, anything else."""

PoolHook = Callable[[DBAPIConnection, ConnectionPoolEntry], None]
"""A pool event listener (``connect``, ``checkin``)."""

EngineHooks = dict[str, Callable[..., Any]]
"""Event listeners of a new engine, by event name (``connect``, ``checkin``, ``do_connect``)."""

Pairs = Sequence[tuple[PartitionKey, Checkpoint]]
"""Keys and their checkpoints, as a batch writes them."""

KEY_PARAMS = ("p_namespace", "p_name", "p_consumer_group", "p_partition_id")
"""Names of the bound key values, in key order (a prefix of them filters ``list``)."""

WRITE_PARAMS = (*KEY_PARAMS, "p_offset", "p_sequence_number", "p_enqueue_time")
"""Names of the bound values of an upsert: a dialect's :attr:`Dialect.upsert_params` start
with what its table needs besides (MySQL: the key hash), then these."""

UPDATED_COLUMNS = ("stream_offset", "enqueue_time", "updated_at", "sequence_number")
"""What an upsert overwrites, ``sequence_number`` last (MySQL's guarded form relies on it)."""


QUERY_TIMEOUT_S = 30
"""How long a statement may wait for a database server by default, in seconds (lock waits
included); :data:`CONNECT_TIMEOUT_S` for a new connection."""

CONNECT_TIMEOUT_S = 10
"""How long connecting to a database server may take by default, in seconds."""


def with_connect_defaults(
    url: sa.URL, options: dict[str, Any], defaults: Mapping[str, object]
) -> dict[str, Any]:
    """``create_engine`` arguments: the caller's ``options``, and the driver arguments
    ``defaults`` where neither the URL's query nor ``options["connect_args"]`` gives them."""
    arguments = dict(options)
    given = {name: value for name, value in defaults.items() if name not in url.query}
    arguments["connect_args"] = {**given, **arguments.get("connect_args", {})}
    return arguments


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

    table: ClassVar[sa.Table]
    """The ``checkpoints`` table as this database keys and types it."""

    ownerships: ClassVar[sa.Table]
    """The ``ownerships`` table (Event Hubs partition ownership), in :attr:`table`'s metadata."""

    timestamp: ClassVar[type[UTCTimestamp]]
    """The table's timestamp type: its ``to_db``/``from_db`` convert bound and fetched values."""

    key_params: ClassVar[tuple[str, ...]] = KEY_PARAMS
    """The bound values naming a whole key in a statement (:meth:`key_values` gives them)."""

    upsert_params: ClassVar[tuple[str, ...]] = WRITE_PARAMS
    """The bound values of an upsert, in the order :meth:`write_rows` gives them."""

    default_port: ClassVar[int | None] = None
    """The server's port when a URL gives none; ``None`` for a database in a file."""

    ddl_commits_at_once: ClassVar[bool] = False
    """Whether each DDL statement commits at once, outside the migration's transaction (MySQL):
    a killed upgrade can then leave its tables without its revision recorded."""

    locks_rows: ClassVar[bool] = True
    """Whether writers lock rows (not the whole database): a batch then writes its rows in key
    order, so that two batches over the same keys can't deadlock."""

    begin_sql: ClassVar[str] = "BEGIN"
    """What starts a write transaction on a connection in autocommit mode."""

    @property
    def names(self) -> tuple[str, ...]:
        """Every name SQLAlchemy gives this database."""
        return (self.name, *self.aliases)

    # -- statements -----------------------------------------------------------------------

    @abc.abstractmethod
    def upserts(self, values: Mapping[str, Any]) -> tuple[sa.Insert, sa.Insert]:
        """``(upsert, monotonic upsert)`` of one row of :attr:`table` with ``values``.

        Both insert the row or overwrite the stored checkpoint columns and ``updated_at`` (the
        database's clock, unless ``values`` has one); the monotonic one leaves a stored row
        whose sequence number is higher unchanged.
        """

    @abc.abstractmethod
    def clock(self) -> sa.ColumnElement[Any]:
        """The database's current time, in the format its timestamp columns store."""

    @abc.abstractmethod
    def insert_if_absent(self, table: sa.Table, values: Mapping[str, Any]) -> sa.Insert:
        """Insert one row of ``table`` (keyed like :attr:`table`) with ``values`` unless its key
        is taken: row count 1 if it was inserted, 0 if not, never a key error. The key values
        come first, as :meth:`row_key` gives them."""

    def key_filter(
        self, length: int, table: sa.Table | None = None
    ) -> list[sa.ColumnElement[bool]]:
        """``WHERE`` conditions for the first ``length`` key components of ``table`` (default
        :attr:`table`): bound as :data:`KEY_PARAMS`, or a whole key (``length`` 4) as
        :attr:`key_params`."""
        source = self.table if table is None else table
        columns = [source.c[name] for name in KEY_COLUMN_NAMES[:length]]
        return [column == sa.bindparam(p) for column, p in zip(columns, KEY_PARAMS, strict=False)]

    def compile_dialect(self, dialect: sa.Dialect) -> sa.Dialect:
        """The SQLAlchemy dialect that compiles our statements: one with positional parameters,
        so that the values go to the driver as tuples, in the order they are built."""
        if dialect.positional:
            return dialect
        positional = copy.copy(dialect)
        positional.paramstyle = "format"
        positional.positional = True
        return positional

    # -- values ---------------------------------------------------------------------------

    def write_rows(self, pairs: Pairs) -> list[tuple[Any, ...]]:
        """The bound values of an upsert for each pair, in :attr:`upsert_params` order."""
        encode = self.timestamp.to_db
        return [
            (
                *key,
                checkpoint.offset,
                checkpoint.sequence_number,
                None if checkpoint.enqueue_time is None else encode(checkpoint.enqueue_time),
            )
            for key, checkpoint in pairs
        ]

    def key_values(self, key: PartitionKey) -> Sequence[Any]:
        """The bound values of :attr:`key_params` for a whole key."""
        return key

    def readable_timestamp(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any] | None:
        """``column`` as a value the driver can always fetch, where a stored timestamp it can't
        convert fails the whole query (see :meth:`classify`'s ``"corrupt"``); ``None``: never
        needed here. :meth:`timestamp_from_readable` converts what it gives."""
        return None

    def timestamp_from_readable(self, value: Any) -> datetime:
        """An aware UTC datetime from what :meth:`readable_timestamp` fetched."""
        return self.timestamp.from_db(value)

    def row_key(self, key: PartitionKey) -> tuple[Any, ...]:
        """The values of a row's key columns, in table order (MySQL: the hash first)."""
        return tuple(key)

    def none_refused(self, connection: sa.Connection, pairs: Pairs, rowcount: int) -> bool:
        """Whether a monotonic upsert of ``pairs`` (``rowcount`` rows) left every row written.

        Called inside the write's transaction, where :attr:`confirms_in_transaction`. Here:
        a refused row counts 0.
        """
        return rowcount == len(pairs)

    returns_changed_rows: ClassVar[bool] = False
    """Whether :meth:`changed_per_row` needs each statement to return the rows it changed
    (``RETURNING``)."""

    def changed_per_row(
        self, connection: sa.Connection, sql: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Run ``sql`` once per row of values in ``connection``'s transaction; how many rows
        each run changed. Here: one statement after another, by their row counts."""
        return [int(connection.exec_driver_sql(sql, tuple(row)).rowcount) for row in rows]

    confirms_in_transaction: ClassVar[bool] = False
    """Whether :meth:`none_refused` must query inside the transaction (the row count can't
    tell), so that every monotonic write runs as a transaction."""

    # -- engines and connections ----------------------------------------------------------

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

    @abc.abstractmethod
    def configure(
        self, url: sa.URL, options: dict[str, Any], *, read_only: bool = False
    ) -> tuple[sa.URL, dict[str, Any], EngineHooks]:
        """The URL, ``create_engine`` arguments and event listeners for a new engine.

        ``options`` are the caller's engine options; they win over our defaults. A
        ``read_only`` engine only reads: nothing it opens may create or change a file.
        """

    def writers_wait(self, connection: DBAPIConnection) -> float | None:
        """How long a write waits for another thread's call on the persister's connection,
        in seconds, where the database lets one writer in at a time anyway; ``None``: the write
        takes another connection instead, and the database decides."""
        return None

    def check_engine(self, engine: sa.Engine) -> None:  # noqa: B027 - optional
        """Refuse (``ValueError``) a caller's engine that a persister can't use safely."""

    @abc.abstractmethod
    def take_migration_lock(self, connection: sa.Connection) -> None:
        """Hold the database-wide migration lock until ``connection``'s transaction ends."""

    def release_migration_lock(self, connection: sa.Connection) -> None:  # noqa: B027
        """Release a migration lock that outlives transactions; called once they have ended."""

    # -- errors ---------------------------------------------------------------------------

    @abc.abstractmethod
    def classify(self, error: BaseException) -> Failure:
        """Say what a driver error means to the caller."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether the database aborted (and rolled back) the work to break a deadlock or a
        lock wait, so that running it again may succeed."""
        return False


class OnConflictDialect(Dialect):
    """A database with ``INSERT ... ON CONFLICT (key) DO UPDATE`` (SQLite, PostgreSQL)."""

    @abc.abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """This database's ``INSERT`` construct, which has ``on_conflict_do_update``."""

    def insert_if_absent(self, table: sa.Table, values: Mapping[str, Any]) -> sa.Insert:
        key = list(table.primary_key.columns)
        insert: sa.Insert = (
            self.insert(table).values(**values).on_conflict_do_nothing(index_elements=key)
        )
        return insert

    def upserts(self, values: Mapping[str, Any]) -> tuple[sa.Insert, sa.Insert]:
        table = self.table
        insert = self.insert(table).values(**{"updated_at": self.clock(), **values})
        excluded = insert.excluded
        changes = {name: excluded[name] for name in UPDATED_COLUMNS}
        key = list(table.primary_key.columns)
        upsert = insert.on_conflict_do_update(index_elements=key, set_=changes)
        monotonic = insert.on_conflict_do_update(
            index_elements=key,
            set_=changes,
            where=table.c.sequence_number <= excluded.sequence_number,
        )
        return upsert, monotonic
