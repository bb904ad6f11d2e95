"""The SQL a persister runs, built once per database, and the pure mappings around it.

Nothing here does I/O. :func:`statements_for` builds every statement once per
:class:`~.dialects.Dialect`; the parameter mappings turn keys and checkpoints into the bound
values those statements name, and the row mappings turn result rows back into
:class:`~streamcheckpoint.Checkpoint` and :class:`~streamcheckpoint.CheckpointRecord`. The sync
persister executes them, and so can any other executor (an asyncio persister, an adapter).

Writes are one ``INSERT ... ON CONFLICT (key) DO UPDATE`` each (``ON DUPLICATE KEY UPDATE`` on
MySQL). The monotonic variant adds ``WHERE checkpoints.sequence_number <=
excluded.sequence_number`` to the update, so a write that would move a checkpoint backwards
changes nothing and reports a row count of 0: the comparison and the write are one statement,
with no read-then-write race (MySQL: see :class:`~.dialects.MySQLDialect`). ``updated_at``
always comes from the database's clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from ..errors import CorruptCheckpointError
from .dialects import Dialect
from .schema import KEY_COLUMN_NAMES, key_hash

__all__ = [
    "HASHED_KEY_PARAMS",
    "HASHED_WRITE_PARAMS",
    "KEY_PARAMS",
    "WRITE_PARAMS",
    "Statements",
    "checkpoint_from_row",
    "corrupt_row_error",
    "key_params",
    "record_from_row",
    "select_sequence_numbers",
    "statements_for",
    "write_params",
    "write_values",
    "write_values_hashed",
]

KEY_PARAMS = ("p_namespace", "p_name", "p_consumer_group", "p_partition_id")
"""Names of the bound key values, in key order (a prefix of them filters ``list``)."""

WRITE_PARAMS = (*KEY_PARAMS, "p_offset", "p_sequence_number", "p_enqueue_time")
"""Names of the bound values of an upsert, in the order :func:`write_values` returns them."""

HASHED_WRITE_PARAMS = ("p_key_hash", *WRITE_PARAMS)
"""The bound values of an upsert where the table is keyed on ``key_hash`` (MySQL)."""

HASHED_KEY_PARAMS = ("p_key_hash",)
"""The bound value naming a whole key where the table is keyed on ``key_hash`` (MySQL)."""


_CHECKPOINT_NAMES = ("stream_offset", "sequence_number", "enqueue_time")


@dataclass(frozen=True)
class Statements:
    """Every statement a persister runs, for one database.

    Upserts take :attr:`write_params`; the others take the first ``n`` of :data:`KEY_PARAMS`.
    """

    write_params: tuple[str, ...]
    """The upserts' bound values, in the order :attr:`write_values` returns them."""

    write_values: Callable[[PartitionKey, Checkpoint], tuple[Any, ...]]
    """The values of an upsert for a key and a checkpoint."""

    key_names: tuple[str, ...]
    """The bound values of the statements that name a whole key (``select_checkpoint``,
    ``select_records[4]``, ``select_keys[4]``, ``delete_partition``): :data:`KEY_PARAMS`, or
    :data:`HASHED_KEY_PARAMS` where the table is keyed on ``key_hash``."""

    key_values: Callable[[Sequence[str]], tuple[Any, ...]]
    """The values of :attr:`key_names` for a whole key."""

    upsert: sa.Insert
    """Insert or overwrite one checkpoint; row count 1."""

    upsert_monotonic: sa.Insert
    """Insert, or overwrite unless the stored sequence number is higher; row count 0 if not."""

    select_checkpoint: sa.Select[Any]
    """The checkpoint columns of one key."""

    select_records: tuple[sa.Select[Any], ...]
    """Whole rows whose key starts with the first ``n`` components, indexed by ``n`` (0-4)."""

    select_keys: tuple[sa.Select[Any], ...]
    """Only the key columns, indexed like :attr:`select_records`."""

    delete_group: sa.Delete
    """Delete every partition of one consumer group (three key values)."""

    delete_partition: sa.Delete
    """Delete one partition's checkpoint (four key values)."""

    def params(self, key: Sequence[str]) -> dict[str, Any]:
        """The bound parameters of a statement naming ``key``, a whole key or a prefix."""
        if len(key) == len(KEY_PARAMS):
            return dict(zip(self.key_names, self.key_values(key), strict=True))
        return key_params(key)


def _key_filter(dialect: Dialect, length: int) -> list[sa.ColumnElement[bool]]:
    """``WHERE`` conditions for the first ``length`` key components, bound as KEY_PARAMS.

    A whole key on a table keyed on ``key_hash`` is found by the hash, bound as computed in
    Python: the same bytes the write stored, whatever the connection's character set.
    """
    if length == len(KEY_PARAMS) and dialect.hashed_key:
        key_hash_column = dialect.table.c.key_hash
        return [key_hash_column == sa.bindparam(HASHED_KEY_PARAMS[0], type_=key_hash_column.type)]
    columns = [dialect.table.c[name] for name in KEY_COLUMN_NAMES[:length]]
    return [
        column == sa.bindparam(param) for column, param in zip(columns, KEY_PARAMS, strict=False)
    ]


def _upserts(dialect: Dialect) -> tuple[sa.Insert, sa.Insert]:
    table = dialect.table
    names = (*KEY_COLUMN_NAMES, *_CHECKPOINT_NAMES)
    values: dict[str, Any] = {
        name: sa.bindparam(param, type_=table.c[name].type)
        for name, param in zip(names, WRITE_PARAMS, strict=True)
    }
    if dialect.hashed_key:
        values = {"key_hash": sa.bindparam("p_key_hash", type_=table.c.key_hash.type), **values}
    upsert, monotonic = dialect.upserts(values)
    # The row count is the monotonic verdict; SQLAlchemy with psycopg reports -1 without this.
    return (
        upsert.execution_options(preserve_rowcount=True),
        monotonic.execution_options(preserve_rowcount=True),
    )


@functools.cache
def statements_for(dialect: Dialect) -> Statements:
    """Build (once per database) every statement a persister runs."""
    table = dialect.table
    key_columns = [table.c[name] for name in KEY_COLUMN_NAMES]
    checkpoint_columns = [table.c[name] for name in _CHECKPOINT_NAMES]
    upsert, upsert_monotonic = _upserts(dialect)
    records = sa.select(*key_columns, *checkpoint_columns, table.c.updated_at)
    keys = sa.select(*key_columns)
    hashed = dialect.hashed_key
    return Statements(
        write_params=HASHED_WRITE_PARAMS if hashed else WRITE_PARAMS,
        write_values=write_values_hashed if hashed else write_values,
        key_names=HASHED_KEY_PARAMS if hashed else KEY_PARAMS,
        key_values=_hashed_key_values if hashed else tuple,
        upsert=upsert,
        upsert_monotonic=upsert_monotonic,
        select_checkpoint=sa.select(*checkpoint_columns).where(*_key_filter(dialect, 4)),
        select_records=tuple(records.where(*_key_filter(dialect, n)) for n in range(5)),
        select_keys=tuple(keys.where(*_key_filter(dialect, n)) for n in range(5)),
        delete_group=sa.delete(table).where(*_key_filter(dialect, 3)),
        delete_partition=sa.delete(table).where(*_key_filter(dialect, 4)),
    )


def select_sequence_numbers(dialect: Dialect, count: int) -> tuple[sa.Select[Any], list[str]]:
    """``(key_hash, sequence_number)`` of ``count`` keys by their hashes, and the bound names.

    Only for a table keyed on ``key_hash``: how a monotonic batch reads back, in one query,
    what it left in place.
    """
    column = dialect.table.c.key_hash
    names = [f"p_key_hash_{i}" for i in range(count)]
    hashes = [sa.bindparam(name, type_=column.type) for name in names]
    return sa.select(column, dialect.table.c.sequence_number).where(column.in_(hashes)), names


# -- parameter mapping ----------------------------------------------------------------------


def write_values(key: PartitionKey, checkpoint: Checkpoint) -> tuple[Any, ...]:
    """The values of an upsert, in :data:`WRITE_PARAMS` order."""
    return (*key, checkpoint.offset, checkpoint.sequence_number, checkpoint.enqueue_time)


def write_values_hashed(key: PartitionKey, checkpoint: Checkpoint) -> tuple[Any, ...]:
    """The values of an upsert, in :data:`HASHED_WRITE_PARAMS` order."""
    return (
        key_hash(key),
        *key,
        checkpoint.offset,
        checkpoint.sequence_number,
        checkpoint.enqueue_time,
    )


def write_params(key: PartitionKey, checkpoint: Checkpoint) -> dict[str, Any]:
    """The bound parameters of an upsert, by name."""
    return dict(zip(WRITE_PARAMS, write_values(key, checkpoint), strict=True))


def key_params(key: Sequence[str]) -> dict[str, str]:
    """The bound parameters naming a key prefix (namespace, name, ...), or a whole key where the
    table is keyed on the four columns (see :meth:`Statements.params`)."""
    return dict(zip(KEY_PARAMS, key, strict=False))


def _hashed_key_values(key: Sequence[str]) -> tuple[Any, ...]:
    return (key_hash(key),)


# -- row mapping ----------------------------------------------------------------------------


def checkpoint_from_row(row: Sequence[Any], key: PartitionKey, source: str) -> Checkpoint:
    """Turn ``(stream_offset, sequence_number, enqueue_time)`` into a :class:`Checkpoint`.

    A stored value that isn't a valid checkpoint raises
    :class:`~streamcheckpoint.errors.CorruptCheckpointError` naming the key and ``source``.
    """
    offset, sequence_number, enqueue_time = row
    try:
        return Checkpoint(offset, sequence_number, enqueue_time)
    except (TypeError, ValueError) as exc:
        raise corrupt_row_error(key, source, exc) from exc


def record_from_row(row: Sequence[Any], source: str) -> CheckpointRecord:
    """Turn a row of :attr:`Statements.select_records` into a :class:`CheckpointRecord`."""
    key = PartitionKey(*row[:4])
    return CheckpointRecord(key, checkpoint_from_row(row[4:7], key, source), row[7])


def corrupt_row_error(
    key: PartitionKey | None, source: str, cause: Exception
) -> CorruptCheckpointError:
    """The error for a stored row (of ``key``, if known) that can't be read."""
    which = f"the stored checkpoint for {key.describe()}" if key is not None else "a stored row"
    return CorruptCheckpointError(
        f"{which} in {source} can't be read: {cause}. "
        "Fix or delete that row; it was not written by streamcheckpoint."
    )
