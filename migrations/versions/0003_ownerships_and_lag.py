"""ownerships table (Event Hubs partition ownership) and the last enqueued event on checkpoints.

``ownerships`` holds, per partition, which azure-eventhub processor owns it: ``owner_id``
(empty once released), ``etag`` (a new one at every change; claims are conditional on it) and
``last_modified_time`` from the database's clock. Three nullable columns on ``checkpoints``
(``last_enqueued_sequence_number``, ``last_enqueued_offset``, ``last_enqueued_time``) record the
partition's newest event when an Event Hubs store writes a checkpoint with it, so that lag is a
plain query; SQLPersister never writes them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of what the code used when this revision was written.
KEY_LENGTH = 256
ETAG_LENGTH = 64
KEY_COLUMNS = ("namespace", "name", "consumer_group", "partition_id")
SQLITE_CLOCK = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"
POSTGRESQL_CLOCK = "now()"
KEY_HASH_SQL = (
    "key_hash = UNHEX(SHA2(CONCAT_WS(X'00', namespace, name, consumer_group, partition_id), 256))"
)


def _schema() -> str | None:
    schema: str | None = op.get_context().opts.get("streamcheckpoint_schema")
    return schema


def _is_mysql() -> bool:
    return op.get_context().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if _is_mysql():
        _upgrade_mysql()
        return
    schema = _schema()
    postgresql = op.get_context().dialect.name == "postgresql"
    clock = POSTGRESQL_CLOCK if postgresql else SQLITE_CLOCK
    # ADD COLUMN of a nullable column without a default: no table rebuild, on SQLite either.
    if postgresql:  # written out: Alembic's ALTER would split a schema name at its dots
        op.execute(
            f"ALTER TABLE {_quoted_checkpoints()} "
            "ADD COLUMN last_enqueued_sequence_number BIGINT, "
            "ADD COLUMN last_enqueued_offset TEXT, "
            "ADD COLUMN last_enqueued_time TIMESTAMP WITH TIME ZONE"
        )
    else:
        op.add_column(
            "checkpoints",
            sa.Column("last_enqueued_sequence_number", sa.BigInteger(), nullable=True),
        )
        op.add_column("checkpoints", sa.Column("last_enqueued_offset", sa.Text(), nullable=True))
        op.add_column(
            "checkpoints",
            sa.Column("last_enqueued_time", sa.DateTime(timezone=True), nullable=True),
        )
    op.create_table(
        "ownerships",
        *(sa.Column(name, sa.String(KEY_LENGTH), nullable=False) for name in KEY_COLUMNS),
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("etag", sa.String(ETAG_LENGTH), nullable=False),
        sa.Column(
            "last_modified_time",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text(clock),
        ),
        sa.PrimaryKeyConstraint(*KEY_COLUMNS),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("ownerships", schema=schema)
    drop = (
        "DROP COLUMN last_enqueued_sequence_number, DROP COLUMN last_enqueued_offset, "
        "DROP COLUMN last_enqueued_time"
    )
    if _is_mysql():
        op.execute(f"ALTER TABLE {_mysql_name('checkpoints')} {drop}")
        return
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_quoted_checkpoints()} {drop}")
        return
    # SQLite drops columns by copying the table (batch mode): give it the table for --sql.
    with op.batch_alter_table(
        "checkpoints", schema=schema, copy_from=_checkpoints_at_0003()
    ) as batch:
        batch.drop_column("last_enqueued_time")
        batch.drop_column("last_enqueued_offset")
        batch.drop_column("last_enqueued_sequence_number")


def _checkpoints_at_0003() -> sa.Table:
    """The checkpoints table as revision 0003 leaves it on SQLite and PostgreSQL."""
    clock = POSTGRESQL_CLOCK if op.get_context().dialect.name == "postgresql" else SQLITE_CLOCK
    return sa.Table(
        "checkpoints",
        sa.MetaData(),
        *(sa.Column(name, sa.String(KEY_LENGTH), nullable=False) for name in KEY_COLUMNS),
        sa.Column("stream_offset", sa.Text(), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("enqueue_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text(clock),
        ),
        sa.Column("last_enqueued_sequence_number", sa.BigInteger(), nullable=True),
        sa.Column("last_enqueued_offset", sa.Text(), nullable=True),
        sa.Column("last_enqueued_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(*KEY_COLUMNS),
        schema=_schema(),
    )


def _quoted_checkpoints() -> str:
    """``checkpoints`` in the schema, quoted as the database quotes (whatever the schema's name)."""
    preparer = op.get_context().dialect.identifier_preparer
    return preparer.format_table(sa.table("checkpoints", schema=_schema()))


def _mysql_name(table: str) -> str:
    schema = _schema()
    return table if schema is None else f"`{schema.replace('`', '``')}`.{table}"


LAST_ENQUEUED_COLUMNS = {
    "last_enqueued_sequence_number",
    "last_enqueued_offset",
    "last_enqueued_time",
}
OWNERSHIPS_COLUMNS = {"key_hash", *KEY_COLUMNS, "owner_id", "etag", "last_modified_time"}


def _mysql_columns(table: str) -> set[str]:
    """The columns ``table`` has now (none if it doesn't exist, or with ``--sql``)."""
    if op.get_context().as_sql:
        return set()
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(table, schema=_schema()):
        return set()
    return {column["name"] for column in inspector.get_columns(table, schema=_schema())}


def _upgrade_mysql() -> None:
    """MySQL/MariaDB: keyed on the key's hash like ``checkpoints`` (see revision 0001), exact
    key comparisons, microsecond DATETIMEs in UTC. One statement per table: MySQL can't roll
    DDL back."""
    dialect = op.get_context().dialect
    mariadb = dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    text = f"CHARACTER SET utf8mb4 COLLATE {collation}"
    key = f"VARCHAR({KEY_LENGTH}) {text} NOT NULL"
    columns = ",\n    ".join(f"{name} {key}" for name in KEY_COLUMNS)
    # A run of this upgrade killed after one of its statements left what that statement did
    # (MySQL commits DDL at once) but not the revision: the next run skips what is done. Each
    # statement is atomic, so a table or the three columns are there whole or not at all.
    if not _mysql_columns("checkpoints") >= LAST_ENQUEUED_COLUMNS:
        op.execute(
            f"ALTER TABLE {_mysql_name('checkpoints')} "
            "ADD COLUMN last_enqueued_sequence_number BIGINT NULL, "
            "ADD COLUMN last_enqueued_offset LONGTEXT CHARACTER SET utf8mb4 NULL, "
            "ADD COLUMN last_enqueued_time DATETIME(6) NULL"
        )
    if _mysql_columns("ownerships") == OWNERSHIPS_COLUMNS:
        return
    op.execute(
        f"""CREATE TABLE {_mysql_name("ownerships")} (
    key_hash BINARY(32) NOT NULL,
    {columns},
    owner_id VARCHAR({KEY_LENGTH}) {text} NOT NULL,
    etag VARCHAR({ETAG_LENGTH}) {text} NOT NULL,
    last_modified_time DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (key_hash),
    KEY ix_ownerships_group (namespace, name, consumer_group),
    CONSTRAINT ck_ownerships_key_hash CHECK ({KEY_HASH_SQL})
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
    )
