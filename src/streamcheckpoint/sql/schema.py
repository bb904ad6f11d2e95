"""The ``checkpoints`` table, as the code sees it. Alembic's scripts in ``migrations/`` create it.

No column is an SQL reserved word, so hand-written SQL needs no quoting.

SQLite and PostgreSQL key the table on its four key columns (:data:`checkpoints`). MySQL and
MariaDB can't: InnoDB keys are at most 3072 bytes and four ``VARCHAR(256)`` in ``utf8mb4`` need
4096. There the primary key is ``key_hash``, the SHA-256 of the four components joined by NUL
(which a component can't contain), and a ``CHECK`` constraint holds it to that, so a row
written by hand with a wrong hash is refused (:data:`hashed_checkpoints`). The key columns use a
binary, no-pad collation there, so names that differ in case or trailing spaces stay distinct.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from ..checkpoint import MAX_KEY_LENGTH

__all__ = [
    "KEY_COLUMN_NAMES",
    "KEY_HASH_SQL",
    "TABLE_NAME",
    "UTCDateTime",
    "checkpoints",
    "hashed_checkpoints",
    "hashed_metadata",
    "key_hash",
    "metadata",
]

TABLE_NAME = "checkpoints"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that always goes in and comes out as an aware UTC ``datetime``.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone type: SQLAlchemy's DATETIME
    there keeps UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (sortable, usable with SQLite's
    date functions) but would silently drop an offset, so values are converted to UTC first.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        # MySQL's DATETIME keeps whole seconds unless asked for microseconds.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store the naive datetime {value.isoformat()}")
        utc = value.astimezone(timezone.utc)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.name == "sqlite":
            return _from_sqlite_text  # one C parse instead of SQLAlchemy's regex, then ours
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_SQLITE_TEXT_LENGTH = len("2026-01-01 00:00:00.000000")


def _from_sqlite_text(value: Any) -> datetime | None:
    """Read SQLite's stored text (UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``) as an aware datetime.

    Text written by hand in another ISO 8601 form is read too; an offset in it is honoured.
    Anything else raises ``ValueError``/``TypeError`` (a corrupt row).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected timestamp text from SQLite, got {value!r}")
    if len(value) == _SQLITE_TEXT_LENGTH:  # what we store: parse it as UTC in one call
        return datetime.fromisoformat(value + "+00:00")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


KEY_COLUMN_NAMES = ("namespace", "name", "consumer_group", "partition_id")
"""The key columns, in key order."""


def _columns(*, hashed: bool) -> list[sa.Column[Any]]:
    """The table's columns; ``hashed``: MySQL's form, keyed on ``key_hash``."""
    key: list[sa.Column[Any]] = [
        sa.Column(name, sa.String(MAX_KEY_LENGTH), nullable=False) for name in KEY_COLUMN_NAMES
    ]
    if hashed:
        key.insert(0, sa.Column("key_hash", mysql.BINARY(32), nullable=False))
    updated_default = sa.text("(UTC_TIMESTAMP(6))") if hashed else None
    return [
        *key,
        sa.Column("stream_offset", mysql.LONGTEXT() if hashed else sa.Text(), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("enqueue_time", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=updated_default),
    ]


metadata = sa.MetaData()

checkpoints = sa.Table(
    TABLE_NAME,
    metadata,
    *_columns(hashed=False),
    sa.PrimaryKeyConstraint(*KEY_COLUMN_NAMES),
)

KEY_HASH_SQL = (
    "key_hash = UNHEX(SHA2(CONCAT_WS(X'00', namespace, name, consumer_group, partition_id), 256))"
)
"""The rule ``hashed_checkpoints.key_hash`` follows, as the CHECK constraint states it."""


def key_hash(key: Sequence[str]) -> bytes:
    """The ``key_hash`` of a key on MySQL and MariaDB: SHA-256 of its components joined by NUL."""
    return hashlib.sha256("\0".join(key).encode()).digest()


hashed_metadata = sa.MetaData()

hashed_checkpoints = sa.Table(
    TABLE_NAME,
    hashed_metadata,
    *_columns(hashed=True),
    sa.PrimaryKeyConstraint("key_hash"),
    sa.Index("ix_checkpoints_group", "namespace", "name", "consumer_group"),
    sa.CheckConstraint(sa.text(KEY_HASH_SQL), name="ck_checkpoints_key_hash"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
