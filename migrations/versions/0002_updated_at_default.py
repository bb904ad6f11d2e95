"""updated_at defaults to the database's clock on PostgreSQL and SQLite, as on MySQL.

So a row inserted by hand (``INSERT INTO checkpoints (...) VALUES (...)`` without
``updated_at``) gets the time it was written, as every write of streamcheckpoint sets it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of what the code used when this revision was written.
KEY_LENGTH = 256
SQLITE_CLOCK = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"
POSTGRESQL_CLOCK = "now()"


def _schema() -> str | None:
    schema: str | None = op.get_context().opts.get("streamcheckpoint_schema")
    return schema


def _revision_0001_table() -> sa.Table:
    """The table as revision 0001 made it on SQLite and PostgreSQL (for SQLite's copy of it,
    which needs it when offline SQL is asked for and the database can't be read)."""
    return sa.Table(
        "checkpoints",
        sa.MetaData(),
        *(
            sa.Column(name, sa.String(KEY_LENGTH), nullable=False)
            for name in ("namespace", "name", "consumer_group", "partition_id")
        ),
        sa.Column("stream_offset", sa.Text(), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("enqueue_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", "consumer_group", "partition_id"),
        schema=_schema(),
    )


def _set_default(*, clock: bool) -> None:
    """Give ``updated_at`` the database's clock as its default, or (``clock=False``) none."""
    dialect = op.get_context().dialect.name
    if dialect in ("mysql", "mariadb"):
        return  # revision 0001 made it with DEFAULT (UTC_TIMESTAMP(6)) there
    if dialect == "postgresql":
        # Written out: Alembic's ALTER would split a schema name at its dots.
        table = op.get_context().dialect.identifier_preparer.format_table(
            sa.table("checkpoints", schema=_schema())
        )
        action = f"SET DEFAULT {POSTGRESQL_CLOCK}" if clock else "DROP DEFAULT"
        op.execute(f"ALTER TABLE {table} ALTER COLUMN updated_at {action}")
        return
    with op.batch_alter_table(
        "checkpoints", schema=_schema(), copy_from=_revision_0001_table()
    ) as batch:
        batch.alter_column(
            "updated_at",
            server_default=sa.text(SQLITE_CLOCK) if clock else None,
            existing_type=sa.DateTime(timezone=True),
            existing_nullable=False,
        )


def upgrade() -> None:
    _set_default(clock=True)


def downgrade() -> None:
    _set_default(clock=False)
