"""The ``checkpoints`` table, as the code sees it. Alembic's scripts in ``migrations/`` create it.

No column is an SQL reserved word, so hand-written SQL needs no quoting.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ..checkpoint import MAX_KEY_LENGTH

__all__ = ["TABLE_NAME", "UTCDateTime", "checkpoints", "metadata"]

TABLE_NAME = "checkpoints"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that always goes in and comes out as an aware UTC ``datetime``.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone type: SQLAlchemy's DATETIME
    there keeps UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (sortable, usable with SQLite's
    date functions) but would silently drop an offset, so values are converted to UTC first.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store the naive datetime {value.isoformat()}")
        utc = value.astimezone(timezone.utc)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = sa.MetaData()

checkpoints = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("namespace", sa.String(MAX_KEY_LENGTH), primary_key=True),
    sa.Column("name", sa.String(MAX_KEY_LENGTH), primary_key=True),
    sa.Column("consumer_group", sa.String(MAX_KEY_LENGTH), primary_key=True),
    sa.Column("partition_id", sa.String(MAX_KEY_LENGTH), primary_key=True),
    sa.Column("stream_offset", sa.Text(), nullable=False),
    sa.Column("sequence_number", sa.BigInteger(), nullable=False),
    sa.Column("enqueue_time", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
