"""Create the checkpoints table.

Revision ID: 0001
Revises:
Create Date: 2024-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

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


MYSQL_COLUMNS = {
    "key_hash",
    *KEY_COLUMNS,
    "stream_offset",
    "sequence_number",
    "enqueue_time",
    "updated_at",
}


def _made_by_a_killed_run(schema: str | None) -> bool:
    """Whether this statement already ran, in an upgrade killed before it recorded the revision
    (MySQL commits DDL at once): the table is there with exactly its columns. (streamcheckpoint
    gets here only once it has made sure the table is its own and empty.)"""
    if op.get_context().as_sql:
        return False
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("checkpoints", schema=schema):
        return False
    columns = {column["name"] for column in inspector.get_columns("checkpoints", schema=schema)}
    return columns == MYSQL_COLUMNS


def _upgrade_mysql() -> None:
    """MySQL/MariaDB: keyed on a hash of the key (four utf8mb4 VARCHAR(256) exceed InnoDB's
    3072-byte key), exact (binary, no-pad) key comparisons, microsecond DATETIMEs in UTC.

    One statement, written out: MySQL can't roll DDL back, so the table and its index and
    constraint must appear together or not at all.
    """
    dialect = op.get_context().dialect
    mariadb = dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    key = f"VARCHAR({KEY_LENGTH}) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
    schema = _schema()
    if _made_by_a_killed_run(schema):
        return
    table = "checkpoints" if schema is None else f"`{schema.replace('`', '``')}`.checkpoints"
    columns = ",\n    ".join(f"{name} {key}" for name in KEY_COLUMNS)
    op.execute(
        f"""CREATE TABLE {table} (
    key_hash BINARY(32) NOT NULL,
    {columns},
    stream_offset LONGTEXT CHARACTER SET utf8mb4 NOT NULL,
    sequence_number BIGINT NOT NULL,
    enqueue_time DATETIME(6) NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (key_hash),
    KEY ix_checkpoints_group (namespace, name, consumer_group),
    CONSTRAINT ck_checkpoints_key_hash CHECK ({KEY_HASH_SQL})
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
    )
