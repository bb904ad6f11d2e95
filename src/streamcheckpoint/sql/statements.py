"""The SQL a persister runs, built once per database, and the pure mappings around it.

Nothing here does I/O. :func:`statements_for` builds every statement once per
:class:`~.dialects.Dialect`; the parameter mappings turn keys and checkpoints into the bound
values those statements name, and the row mappings turn result rows back into
:class:`~streamcheckpoint.Checkpoint` and :class:`~streamcheckpoint.CheckpointRecord`. The sync
persister executes them, and so can any other executor (an asyncio persister, an adapter).

Writes are one ``INSERT ... ON CONFLICT (key) DO UPDATE`` each. The monotonic variant adds
``WHERE checkpoints.sequence_number <= excluded.sequence_number`` to the update, so a write that
would move a checkpoint backwards changes nothing and reports a row count of 0: the comparison
and the write are one statement, with no read-then-write race. ``updated_at`` always comes from
the database's clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from ..errors import CorruptCheckpointError
from .dialects import Dialect
from .schema import checkpoints

__all__ = [
    "KEY_PARAMS",
    "WRITE_PARAMS",
    "Statements",
    "checkpoint_from_row",
    "corrupt_row_error",
    "key_params",
    "record_from_row",
    "statements_for",
    "write_params",
    "write_values",
]

KEY_PARAMS = ("p_namespace", "p_name", "p_consumer_group", "p_partition_id")
"""Names of the bound key values, in key order (a prefix of them filters ``list``)."""

WRITE_PARAMS = (*KEY_PARAMS, "p_offset", "p_sequence_number", "p_enqueue_time")
"""Names of the bound values of an upsert, in the order :func:`write_values` returns them."""

_KEY_COLUMNS = (
    checkpoints.c.namespace,
    checkpoints.c.name,
    checkpoints.c.consumer_group,
    checkpoints.c.partition_id,
)
_CHECKPOINT_COLUMNS = (
    checkpoints.c.stream_offset,
    checkpoints.c.sequence_number,
    checkpoints.c.enqueue_time,
)


@dataclass(frozen=True)
class Statements:
    """Every statement a persister runs, for one database.

    Upserts take :data:`WRITE_PARAMS`; the others take the first ``n`` of :data:`KEY_PARAMS`.
    """

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


def _key_filter(length: int) -> list[sa.ColumnElement[bool]]:
    return [
        column == sa.bindparam(param)
        for column, param in zip(_KEY_COLUMNS[:length], KEY_PARAMS, strict=False)
    ]


def _upserts(dialect: Dialect) -> tuple[sa.Insert, sa.Insert]:
    columns = (*_KEY_COLUMNS, *_CHECKPOINT_COLUMNS)
    values: dict[str, Any] = {
        column.name: sa.bindparam(param, type_=column.type)
        for column, param in zip(columns, WRITE_PARAMS, strict=True)
    }
    insert = dialect.insert(checkpoints).values(**values, updated_at=dialect.clock())
    excluded = insert.excluded
    changes = {
        name: excluded[name]
        for name in ("stream_offset", "sequence_number", "enqueue_time", "updated_at")
    }
    upsert = insert.on_conflict_do_update(index_elements=list(_KEY_COLUMNS), set_=changes)
    monotonic = insert.on_conflict_do_update(
        index_elements=list(_KEY_COLUMNS),
        set_=changes,
        where=checkpoints.c.sequence_number <= excluded.sequence_number,
    )
    # The row count is the monotonic verdict; SQLAlchemy with psycopg reports -1 without this.
    return (
        upsert.execution_options(preserve_rowcount=True),
        monotonic.execution_options(preserve_rowcount=True),
    )


@functools.cache
def statements_for(dialect: Dialect) -> Statements:
    """Build (once per database) every statement a persister runs."""
    upsert, upsert_monotonic = _upserts(dialect)
    records = sa.select(*_KEY_COLUMNS, *_CHECKPOINT_COLUMNS, checkpoints.c.updated_at)
    keys = sa.select(*_KEY_COLUMNS)
    return Statements(
        upsert=upsert,
        upsert_monotonic=upsert_monotonic,
        select_checkpoint=sa.select(*_CHECKPOINT_COLUMNS).where(*_key_filter(4)),
        select_records=tuple(records.where(*_key_filter(n)) for n in range(5)),
        select_keys=tuple(keys.where(*_key_filter(n)) for n in range(5)),
        delete_group=sa.delete(checkpoints).where(*_key_filter(3)),
        delete_partition=sa.delete(checkpoints).where(*_key_filter(4)),
    )


# -- parameter mapping ----------------------------------------------------------------------


def write_values(key: PartitionKey, checkpoint: Checkpoint) -> tuple[Any, ...]:
    """The values of an upsert, in :data:`WRITE_PARAMS` order."""
    return (*key, checkpoint.offset, checkpoint.sequence_number, checkpoint.enqueue_time)


def write_params(key: PartitionKey, checkpoint: Checkpoint) -> dict[str, Any]:
    """The bound parameters of an upsert, by name."""
    return dict(zip(WRITE_PARAMS, write_values(key, checkpoint), strict=True))


def key_params(key: Sequence[str]) -> dict[str, str]:
    """The bound parameters naming a key or a key prefix (namespace, name, ...)."""
    return dict(zip(KEY_PARAMS, key, strict=False))


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
