"""The SQL a persister runs, compiled once, and the pure mapping of the rows it gets back.

Nothing here does I/O. :func:`statements_for` builds every statement from a database's
:class:`~.dialects.Dialect` (once per database); :func:`compile_statements` turns them into the
driver's own SQL text for one engine and schema, with positional parameters, so that a call
binds a tuple of values built in that order (:meth:`.Dialect.write_rows`,
:meth:`.Dialect.key_values`, or a key prefix). The row mappings turn fetched rows back into
:class:`~streamcheckpoint.Checkpoint` and :class:`~streamcheckpoint.CheckpointRecord`.

Writes are one ``INSERT ... ON CONFLICT (key) DO UPDATE`` each (``ON DUPLICATE KEY UPDATE`` on
MySQL). The monotonic variant adds ``WHERE checkpoints.sequence_number <=
excluded.sequence_number`` to the update, so a write that would move a checkpoint backwards
changes nothing and reports a row count of 0: the comparison and the write are one statement,
with no read-then-write race (MySQL: see :mod:`.dialects.mysql`). ``updated_at`` always comes
from the database's clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from ..checkpoint import KEY_FIELDS, Checkpoint, CheckpointRecord, PartitionKey, make_key
from ..errors import CorruptCheckpointError
from ..persister import Scope
from .dialects.base import KEY_PARAMS, WRITE_PARAMS, Dialect
from .schema import CHECKPOINT_COLUMN_NAMES, KEY_COLUMN_NAMES

__all__ = [
    "CompiledStatements",
    "Statements",
    "checkpoint_from_row",
    "compile_statements",
    "corrupt_row_error",
    "record_from_row",
    "scope_index",
    "statements_for",
]


@dataclass(frozen=True)
class Statements:
    """Every statement a persister runs, for one database, as SQLAlchemy constructs."""

    upsert: sa.Insert
    """Insert or overwrite one checkpoint; row count 1."""

    upsert_monotonic: sa.Insert
    """Insert, or overwrite unless the stored sequence number is higher; row count 0 if not."""

    upserts_keeping_time: tuple[sa.Insert, sa.Insert]
    """``upsert`` and ``upsert_monotonic`` with ``updated_at`` bound (last), not the clock."""

    select_checkpoint: sa.Select[Any]
    """The checkpoint columns of one key."""

    select_records: tuple[sa.Select[Any], ...]
    """Whole rows of a namespace, name and consumer group, any of them given or not: indexed
    by :func:`scope_index`, binding the given ones in that order."""

    delete_group: sa.Delete
    """Delete every partition of one consumer group (three key values)."""

    delete_partition: sa.Delete
    """Delete one partition's checkpoint (the dialect's key values)."""

    readable: tuple[sa.Select[Any], tuple[sa.Select[Any], ...]] | None
    """``select_checkpoint`` and ``select_records`` with every timestamp as
    :meth:`.Dialect.readable_timestamp` makes it, where the dialect needs them."""


@dataclass(frozen=True)
class CompiledStatements:
    """:class:`Statements` as the driver's SQL text for one engine and schema."""

    upsert: str
    upsert_monotonic: str
    upserts_keeping_time: tuple[str, str]
    select_checkpoint: str
    select_records: tuple[str, ...]
    delete_group: str
    delete_partition: str
    readable: tuple[str, tuple[str, ...]] | None


TIME_PARAM = "p_updated_at"
"""The bound ``updated_at`` of :attr:`Statements.upserts_keeping_time`."""

_SCOPES = tuple(itertools.product((False, True), repeat=3))
"""Which of namespace, name and consumer group a ``list`` gives, in every combination."""


def scope_index(scope: Scope) -> int:
    """Where the statement listing ``scope`` is in :attr:`Statements.select_records`."""
    return _SCOPES.index(tuple(value is not None for value in scope))


@functools.cache
def statements_for(dialect: Dialect) -> Statements:
    """Build (once per database) every statement a persister runs."""
    table = dialect.table
    names = (*KEY_COLUMN_NAMES, *CHECKPOINT_COLUMN_NAMES)
    values = {
        name: sa.bindparam(param, type_=table.c[name].type)
        for name, param in zip(names, WRITE_PARAMS, strict=True)
    }
    upsert, upsert_monotonic = dialect.upserts(values)
    kept = sa.bindparam(TIME_PARAM, type_=table.c.updated_at.type)
    keeping_time = dialect.upserts({**values, "updated_at": kept})
    select_checkpoint, select_records = _selects(dialect, lambda column: column)
    readable = None
    if dialect.readable_timestamp(table.c.updated_at) is not None:
        readable = _selects(dialect, _readable(dialect))
    return Statements(
        upsert=upsert,
        upsert_monotonic=upsert_monotonic,
        upserts_keeping_time=keeping_time,
        select_checkpoint=select_checkpoint,
        select_records=select_records,
        delete_group=sa.delete(table).where(*dialect.key_filter(3)),
        delete_partition=sa.delete(table).where(*dialect.key_filter(4)),
        readable=readable,
    )


Timestamps = Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]]


def _readable(dialect: Dialect) -> Timestamps:
    def readable(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        converted = dialect.readable_timestamp(column)
        return column if converted is None else converted

    return readable


def _selects(
    dialect: Dialect, timestamps: Timestamps
) -> tuple[sa.Select[Any], tuple[sa.Select[Any], ...]]:
    """The query of one key's checkpoint and the queries of records by scope, each
    timestamp column selected as ``timestamps`` makes it."""
    table = dialect.table
    key_columns = [table.c[name] for name in KEY_COLUMN_NAMES]
    offset, sequence_number, enqueue_time = (table.c[n] for n in CHECKPOINT_COLUMN_NAMES)
    checkpoint = [offset, sequence_number, timestamps(enqueue_time)]
    records = sa.select(*key_columns, *checkpoint, timestamps(table.c.updated_at))
    by_scope = tuple(
        records.where(
            *(
                table.c[name] == sa.bindparam(param)
                for name, param, given in zip(KEY_COLUMN_NAMES, KEY_PARAMS, wanted, strict=False)
                if given
            )
        )
        for wanted in _SCOPES
    )
    return sa.select(*checkpoint).where(*dialect.key_filter(4)), by_scope


def compile_for(statement: sa.ClauseElement, target: sa.Dialect, schema: str | None) -> SQLCompiler:
    """``statement`` compiled for ``target``, its tables in ``schema`` (``None``: the default)."""
    translate = {None: schema} if schema is not None else None
    return cast(
        SQLCompiler,
        statement.compile(
            dialect=target,
            schema_translate_map=translate,
            render_schema_translate=translate is not None,
        ),
    )


def compile_statements(
    dialect: Dialect, engine_dialect: sa.Dialect, schema: str | None
) -> CompiledStatements:
    """The statements of ``dialect`` as SQL text for an engine of ``engine_dialect``, with
    the table in ``schema`` (``None``: the default one)."""
    statements = statements_for(dialect)
    target = dialect.compile_dialect(engine_dialect)

    def text(statement: sa.ClauseElement, params: Sequence[str] | None) -> str:
        compiled = compile_for(statement, target, schema)
        order = tuple(compiled.positiontup or ())
        if params is not None and order != tuple(params):  # pragma: no cover - a coding error
            raise AssertionError(f"{statement} binds {order}, not {tuple(params)}")
        return compiled.string

    def selects(
        checkpoint: sa.Select[Any], records: tuple[sa.Select[Any], ...]
    ) -> tuple[str, tuple[str, ...]]:
        return text(checkpoint, dialect.key_params), tuple(
            text(statement, [p for p, given in zip(KEY_PARAMS, wanted, strict=False) if given])
            for wanted, statement in zip(_SCOPES, records, strict=True)
        )

    select_checkpoint, select_records = selects(
        statements.select_checkpoint, statements.select_records
    )
    return CompiledStatements(
        upsert=text(statements.upsert, dialect.upsert_params),
        upsert_monotonic=text(statements.upsert_monotonic, dialect.upsert_params),
        upserts_keeping_time=(
            text(statements.upserts_keeping_time[0], (*dialect.upsert_params, TIME_PARAM)),
            text(statements.upserts_keeping_time[1], (*dialect.upsert_params, TIME_PARAM)),
        ),
        select_checkpoint=select_checkpoint,
        select_records=select_records,
        delete_group=text(statements.delete_group, KEY_PARAMS[:3]),
        delete_partition=text(statements.delete_partition, dialect.key_params),
        readable=None if statements.readable is None else selects(*statements.readable),
    )


# -- row mapping ----------------------------------------------------------------------------

TimeReader = Callable[[Any], datetime]
"""A dialect's ``timestamp.from_db``: the driver's value of a timestamp as an aware datetime."""


def checkpoint_from_row(
    row: Sequence[Any], key: PartitionKey, source: str, from_db: TimeReader
) -> Checkpoint:
    """Turn the driver's ``(stream_offset, sequence_number, enqueue_time)`` into a
    :class:`Checkpoint`.

    A stored value that isn't a valid checkpoint raises
    :class:`~streamcheckpoint.errors.CorruptCheckpointError` naming the key and ``source``.
    """
    offset, sequence_number, enqueue_time = row
    try:
        when = None if enqueue_time is None else from_db(enqueue_time)
        return Checkpoint(offset, sequence_number, when)
    except (TypeError, ValueError, OverflowError) as exc:
        raise corrupt_row_error(key, source, exc) from exc


def key_from_row(row: Sequence[Any], source: str) -> PartitionKey:
    """The key in a row's first four columns, validated as an argument would be."""
    try:
        return make_key(*row[:4])
    except (TypeError, ValueError) as exc:  # a row streamcheckpoint didn't write
        named = " ".join(f"{f}={v!r}" for f, v in zip(KEY_FIELDS, row[:4], strict=True))
        raise CorruptCheckpointError(
            f"a stored row in {source} has a key that can't be used ({named}): {exc}. "
            "Fix or delete that row; it was not written by streamcheckpoint."
        ) from exc


def record_from_row(row: Sequence[Any], source: str, from_db: TimeReader) -> CheckpointRecord:
    """Turn the driver's row of :attr:`Statements.select_records` into a record."""
    key = key_from_row(row, source)
    checkpoint = checkpoint_from_row(row[4:7], key, source, from_db)
    try:
        updated_at = from_db(row[7])
    except (TypeError, ValueError, OverflowError) as exc:
        raise corrupt_row_error(key, source, exc) from exc
    return CheckpointRecord(key, checkpoint, updated_at)


def corrupt_row_error(key: PartitionKey, source: str, cause: Exception) -> CorruptCheckpointError:
    """The error for the stored row of ``key`` that can't be read."""
    return CorruptCheckpointError(
        f"the stored checkpoint for {key.describe()} in {source} can't be read: {cause}. "
        "Fix or delete that row; it was not written by streamcheckpoint.",
        key=key,
    )
