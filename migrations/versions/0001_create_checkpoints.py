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


def _schema() -> str | None:
    """The schema env.py was asked to migrate (None: the default one). Pass it to every op."""
    schema: str | None = op.get_context().opts.get("streamcheckpoint_schema")
    return schema


def upgrade() -> None:
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
