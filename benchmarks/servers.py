"""Reaching the database servers, and the schemas and tables the suites create on them.

Everything created here is dropped by the suite's cleanup, which also runs on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from streamcheckpoint import Checkpoint, PartitionKey, SQLPersister

from .harness import Section
from .workload import COLUMNS, Context, unique_name

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "backend_pid",
    "copy_into",
    "pinned_with_backends",
    "postgres_admin",
    "postgres_schema",
    "psycopg_connect",
]


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


def backend_pid(backend: SQLPersister | psycopg.Connection[Any] | sa.Connection) -> int:
    """The process id of the PostgreSQL backend serving ``backend``.

    For a persister, that of its kept connection, which exists once a call has been made: the
    read made here opens it if need be.
    """
    if isinstance(backend, SQLPersister):
        backend.read("pin", "pin", "pin", "pin")
        cursor = backend._connection._cursor
        assert cursor is not None, "a persister keeps its connection after a call"
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchall()[0][0])
    if isinstance(backend, sa.Connection):
        return int(backend.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return backend.info.backend_pid


@contextlib.contextmanager
def pinned_with_backends(
    section: Section, backends: Iterable[SQLPersister | psycopg.Connection[Any] | sa.Connection]
) -> Iterator[None]:
    """Run this thread and the PostgreSQL backends of ``backends`` (persisters' kept
    connections, psycopg and SQLAlchemy connections) on one CPU, for the block.

    On a small VM a query answered by a backend on the other core costs a cross-core wake-up
    each way: measured here, 30 us on the same core against 100 us across, and which core a
    backend lands on is luck that lasts as long as its connection. Pinned together, the
    contenders compare their work, not their luck. Where the backends can't be pinned (another
    user's processes), the section says so and the block runs unpinned.
    """
    before = os.sched_getaffinity(0)
    cpu = min(before)
    pids = [backend_pid(backend) for backend in backends]
    try:
        for pid in pids:
            os.sched_setaffinity(pid, {cpu})
    except OSError as exc:
        section.notes.append(f"PostgreSQL backends not pinned to one CPU ({exc.strerror})")
        yield
        return
    section.notes.append(
        "PostgreSQL: this process and the backends of the compared connections (psycopg's, "
        "SQLAlchemy's, the persisters' kept ones) run on one CPU for the write, batch and read "
        "rows (a backend on the other core costs a cross-core wake-up per query, by luck); "
        "AsyncSQLPersister's worker threads and their connections are not pinned"
    )
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
