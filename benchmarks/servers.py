"""Reaching the database servers, and the schemas and tables the suites create on them.

Everything created here is dropped by the suite's cleanup, which also runs on Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from streamcheckpoint import Checkpoint, PartitionKey, SQLPersister

from .workload import COLUMNS, Context, unique_name

if TYPE_CHECKING:
    import psycopg

__all__ = ["copy_into", "postgres_admin", "postgres_schema", "psycopg_connect"]


def postgres_admin(ctx: Context) -> sa.Engine | str:
    """An engine on the PostgreSQL server, or why it can't be reached."""
    engine = sa.create_engine(ctx.postgres_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar_one()
            commit = connection.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    except Exception as exc:  # any driver error means "unreachable"
        engine.dispose()
        return f"unavailable: {ctx.postgres_url} unreachable ({_first_line(exc)})"
    ctx.cleanup.callback(engine.dispose)
    ctx.report.environment["PostgreSQL"] = f"{version} (synchronous_commit={commit})"
    return engine


def postgres_schema(ctx: Context, admin: sa.Engine, prefix: str) -> str:
    """A new schema holding the checkpoints table (made by the migrations), dropped at the end.

    Register this before opening connections that use it: cleanup runs in reverse, so they are
    closed before the schema is dropped.
    """
    schema = unique_name(prefix)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    ctx.cleanup.callback(_drop_schema, admin, schema)
    SQLPersister(admin, schema=schema).close()
    return schema


def _drop_schema(admin: sa.Engine, schema: str) -> None:
    with admin.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def psycopg_connect(ctx: Context, *, autocommit: bool) -> psycopg.Connection[Any]:
    """A plain psycopg 3 connection to the benchmark server, closed at the end."""
    import psycopg

    conninfo = sa.make_url(ctx.postgres_url).set(drivername="postgresql")
    connection = psycopg.connect(
        conninfo.render_as_string(hide_password=False), autocommit=autocommit
    )
    ctx.cleanup.callback(connection.close)
    return connection


def copy_into(
    connection: psycopg.Connection[Any],
    schema: str,
    items: Iterable[tuple[PartitionKey, Checkpoint]],
) -> None:
    """Load checkpoints with ``COPY`` (fast), in one transaction."""
    sql = f'COPY "{schema}".checkpoints ({COLUMNS}) FROM STDIN'
    with connection.transaction(), connection.cursor() as cursor, cursor.copy(sql) as copy:
        for key, cp in items:
            copy.write_row((*key, cp.offset, cp.sequence_number, cp.enqueue_time, cp.enqueue_time))


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.strip().splitlines()[0]
