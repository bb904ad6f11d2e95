"""Create the checkpoints table.

Revision ID: 0001
Revises:
Create Date: 2024-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of what the code used when this revision was written: a migration must keep
# producing the same table when the code changes later.
KEY_LENGTH = 256
KEY_HASH_SQL = (
    "key_hash = UNHEX(SHA2(CONCAT_WS(X'00', namespace, name, consumer_group, partition_id), 256))"
)
KEY_COLUMNS = ("namespace", "name", "consumer_group", "partition_id")


def _schema() -> str | None:
    """The schema env.py was asked to migrate (None: the default one). Pass it to every op."""
    schema: str | None = op.get_context().opts.get("streamcheckpoint_schema")
    return schema


def upgrade() -> None:
    if op.get_context().dialect.name in ("mysql", "mariadb"):
        _upgrade_mysql()
        return
    op.create_table(
        "checkpoints",
        sa.Column("namespace", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("name", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("consumer_group", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("partition_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("stream_offset", sa.Text(), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        # timestamptz on PostgreSQL; UTC text YYYY-MM-DD HH:MM:SS.ffffff in SQLite's DATETIME.
        sa.Column("enqueue_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", "consumer_group", "partition_id"),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_table("checkpoints", schema=_schema())


def _upgrade_mysql() -> None:
    """MySQL/MariaDB: keyed on a hash of the key (four utf8mb4 VARCHAR(256) exceed InnoDB's
    3072-byte key), exact (binary, no-pad) key comparisons, microsecond DATETIMEs in UTC."""
    dialect = op.get_context().dialect
    mariadb = dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    key_type = mysql.VARCHAR(KEY_LENGTH, charset="utf8mb4", collation=collation)
    op.create_table(
        "checkpoints",
        sa.Column("key_hash", mysql.BINARY(32), nullable=False),
        *(sa.Column(name, key_type, nullable=False) for name in KEY_COLUMNS),
        sa.Column("stream_offset", mysql.LONGTEXT(), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("enqueue_time", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column(
            "updated_at",
            mysql.DATETIME(fsp=6),
            nullable=False,
            server_default=sa.text("(UTC_TIMESTAMP(6))"),
        ),
        sa.PrimaryKeyConstraint("key_hash"),
        sa.CheckConstraint(KEY_HASH_SQL, name="ck_checkpoints_key_hash"),
        schema=_schema(),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_checkpoints_group",
        "checkpoints",
        ["namespace", "name", "consumer_group"],
        schema=_schema(),
    )
