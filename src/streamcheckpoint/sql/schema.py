"""The tables' shapes, shared by every database, and their aware-UTC timestamp type.

``checkpoints`` holds one checkpoint per partition; ``ownerships`` which Event Hubs processor
owns each partition (written only by :mod:`streamcheckpoint.eventhub`'s stores and the CLI).
Alembic's scripts in ``migrations/`` create the tables. The code sees them through the
:class:`~.dialects.Dialect` of its database, which builds them with :func:`checkpoint_columns`,
:func:`ownership_columns` and its own subclass of :class:`UTCTimestamp` (MySQL also keys them
differently: see :mod:`.dialects.mysql`). No column is an SQL reserved word, so hand-written SQL
needs no quoting.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from ..checkpoint import MAX_KEY_LENGTH

__all__ = [
    "CHECKPOINT_COLUMN_NAMES",
    "ETAG_LENGTH",
    "KEY_COLUMN_NAMES",
    "LAG_COLUMN_NAMES",
    "OWNERSHIPS_TABLE_NAME",
    "TABLE_NAME",
    "UTCTimestamp",
    "checkpoint_columns",
    "keyed_ownerships",
    "keyed_table",
    "ownership_columns",
]

TABLE_NAME = "checkpoints"

OWNERSHIPS_TABLE_NAME = "ownerships"

LAG_COLUMN_NAMES = ("last_enqueued_sequence_number", "last_enqueued_offset", "last_enqueued_time")
"""Columns of ``checkpoints`` that only the Event Hubs stores write (the partition's last
enqueued event, for lag queries); NULL until then. SQLPersister's statements never name them."""

ETAG_LENGTH = 64
"""Room for an ownership's etag (ours are 32 hexadecimal digits)."""

KEY_COLUMN_NAMES = ("namespace", "name", "consumer_group", "partition_id")
"""The key columns, in key order."""

CHECKPOINT_COLUMN_NAMES = ("stream_offset", "sequence_number", "enqueue_time")
"""The columns of a :class:`~streamcheckpoint.Checkpoint`, in its field order."""


class UTCTimestamp(sa.TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as an aware UTC ``datetime``.

    Stored as ``timestamptz`` (PostgreSQL's subclass uses this as it is). Each database's
    subclass says in :meth:`to_db` and :meth:`from_db` how its driver takes and gives one; the
    persister converts the values it binds and fetches with the same two functions.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    @staticmethod
    def to_db(value: datetime) -> Any:
        """An aware ``value`` as the driver takes it."""
        return as_utc(value)

    @staticmethod
    def from_db(value: Any) -> datetime:
        """What the driver gives as an aware UTC ``datetime`` (naive means UTC)."""
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        return None if value is None else self.to_db(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else self.from_db(value)


def as_utc(value: datetime) -> datetime:
    """An aware ``value`` in UTC; ``ValueError`` for a naive one."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"refusing to store the naive datetime {value.isoformat()}")
    return value.astimezone(timezone.utc)


def checkpoint_columns(
    timestamp: sa.types.TypeEngine[datetime],
    *,
    offset_type: sa.types.TypeEngine[str] | None = None,
    updated_default: sa.TextClause | None = None,
) -> list[sa.Column[Any]]:
    """The key and checkpoint columns, ``updated_at`` and the :data:`LAG_COLUMN_NAMES`, in
    table order."""
    return [
        *(sa.Column(name, sa.String(MAX_KEY_LENGTH), nullable=False) for name in KEY_COLUMN_NAMES),
        sa.Column("stream_offset", offset_type or sa.Text(), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("enqueue_time", timestamp, nullable=True),
        sa.Column("updated_at", timestamp, nullable=False, server_default=updated_default),
        sa.Column("last_enqueued_sequence_number", sa.BigInteger(), nullable=True),
        sa.Column("last_enqueued_offset", offset_type or sa.Text(), nullable=True),
        sa.Column("last_enqueued_time", timestamp, nullable=True),
    ]


def ownership_columns(
    timestamp: sa.types.TypeEngine[datetime], *, modified_default: sa.TextClause
) -> list[sa.Column[Any]]:
    """The key columns and ``owner_id``, ``etag``, ``last_modified_time`` of ``ownerships``.

    ``owner_id`` is empty for a released partition; ``last_modified_time`` comes from the
    database's clock (``modified_default`` for rows inserted by hand).
    """
    return [
        *(sa.Column(name, sa.String(MAX_KEY_LENGTH), nullable=False) for name in KEY_COLUMN_NAMES),
        sa.Column("owner_id", sa.String(MAX_KEY_LENGTH), nullable=False),
        sa.Column("etag", sa.String(ETAG_LENGTH), nullable=False),
        sa.Column("last_modified_time", timestamp, nullable=False, server_default=modified_default),
    ]


def keyed_table(timestamp: sa.types.TypeEngine[datetime], clock: str) -> sa.Table:
    """The checkpoints table keyed on its four key columns (SQLite, PostgreSQL), in a metadata of
    its own; ``updated_at`` defaults to ``clock``, the database's time as SQL."""
    return sa.Table(
        TABLE_NAME,
        sa.MetaData(),
        *checkpoint_columns(timestamp, updated_default=sa.text(clock)),
        sa.PrimaryKeyConstraint(*KEY_COLUMN_NAMES),
    )


def keyed_ownerships(
    checkpoints: sa.Table, timestamp: sa.types.TypeEngine[datetime], clock: str
) -> sa.Table:
    """The ownerships table keyed on its four key columns (SQLite, PostgreSQL), in the metadata of
    ``checkpoints``; ``last_modified_time`` defaults to ``clock``."""
    return sa.Table(
        OWNERSHIPS_TABLE_NAME,
        checkpoints.metadata,
        *ownership_columns(timestamp, modified_default=sa.text(clock)),
        sa.PrimaryKeyConstraint(*KEY_COLUMN_NAMES),
    )
