"""SQLPersister on PostgreSQL against psycopg 3 running the same statements by hand."""

from __future__ import annotations

from typing import Any

from streamcheckpoint import AsyncSQLPersister, SQLPersister

from .cases import READ, WRITE, batch_case, compare, list_case, missing
from .harness import Target
from .servers import (
    copy_into,
    pinned_with_backends,
    postgres_admin,
    postgres_schema,
    psycopg_connect,
)
from .sqlalchemy_paths import EXEC_DRIVER_SQL, EXECUTE, SQLAlchemyPaths
from .sqlalchemy_paths import NOTE as SQLALCHEMY_NOTE
from .workload import (
    ASYNC_NOTE,
    COLUMNS,
    GROUP_MATCH,
    HUB,
    KEY_MATCH,
    LIST_GROUP,
    NAMESPACE,
    Context,
    OurContenders,
    Plan,
    group_items,
    open_async,
    pg_upsert_sql,
    suite_event_loop,
)

__all__ = ["run"]

TITLE = "PostgreSQL (SQLPersister: autocommit single writes, one transaction per write_many)"


def run(ctx: Context) -> None:
    """Write, write_many, read and list against the psycopg floors."""
    section = ctx.report.section(TITLE)
    admin = postgres_admin(ctx)
    if isinstance(admin, str):
        missing(section, "SQLPersister", admin)
        return
    settings = ctx.settings
    plan = Plan.build(settings)
    raw_schema = postgres_schema(ctx, admin, "bench_raw")
    ours_schema = postgres_schema(ctx, admin, "bench_ours")
    guarded_schema = postgres_schema(ctx, admin, "bench_monotonic")
    async_schema = postgres_schema(ctx, admin, "bench_async")
    sqlalchemy_schema = postgres_schema(ctx, admin, "bench_sqlalchemy")
    loop = suite_event_loop(ctx)
    aio = open_async(ctx, loop, AsyncSQLPersister(admin.url, schema=async_schema))
    ours = SQLPersister(admin.url, schema=ours_schema)
    ctx.cleanup.callback(ours.close)
    guarded = SQLPersister(admin.url, schema=guarded_schema, monotonic=True)
    ctx.cleanup.callback(guarded.close)
    contenders = OurContenders(plan, ours, guarded, aio, loop)
    sqlalchemy = SQLAlchemyPaths.open(ctx, plan, SQLPersister(admin.url, schema=sqlalchemy_schema))
    autocommit = psycopg_connect(ctx, autocommit=True)
    in_transaction = psycopg_connect(ctx, autocommit=False)
    upsert = pg_upsert_sql(raw_schema)

    def values(i: int) -> tuple[Any, ...]:
        key, cp = plan.writes[i]
        return (*key, cp.offset, cp.sequence_number, cp.enqueue_time)

    def write_in_transaction(i: int) -> None:
        in_transaction.execute(upsert, values(i))
        in_transaction.commit()

    backends = (ours, guarded, autocommit, in_transaction, *sqlalchemy.connections)
    with pinned_with_backends(section, backends):
        compare(
            ctx,
            section,
            WRITE,
            {
                "psycopg autocommit (floor)": lambda i: autocommit.execute(upsert, values(i)),
                "psycopg, BEGIN ... COMMIT per write": write_in_transaction,
                **contenders.writes(),
                **sqlalchemy.writes(),
            },
            calls=settings.writes,
            targets={
                "psycopg, BEGIN ... COMMIT per write": None,
                "SQLPersister": Target("<=", 1.2),
                "SQLPersister(monotonic=True)": None,
                "AsyncSQLPersister": None,
                EXECUTE: None,
                EXEC_DRIVER_SQL: None,
            },
        )

        def raw_many(i: int) -> None:
            rows = [
                (*key, cp.offset, cp.sequence_number, cp.enqueue_time)
                for key, cp in plan.batches[i].items()
            ]
            with in_transaction.cursor() as cursor:
                cursor.executemany(upsert, rows)
            in_transaction.commit()

        compare(
            ctx,
            section,
            batch_case(settings.batch_size),
            {
                "psycopg executemany in a transaction (floor)": raw_many,
                **contenders.batches(),
            },
            calls=settings.batches,
            targets={
                "SQLPersister.write_many": Target("<=", 1.2),
                "AsyncSQLPersister.write_many": None,
            },
        )

        read = (
            f'SELECT stream_offset, sequence_number, enqueue_time FROM "{raw_schema}".checkpoints '
            "WHERE " + KEY_MATCH.format(p="%s")
        )
        compare(
            ctx,
            section,
            READ,
            {
                "psycopg SELECT, autocommit (floor)": lambda i: autocommit.execute(
                    read, plan.writes[i][0]
                ).fetchone(),
                **contenders.reads(),
                **sqlalchemy.reads(),
            },
            calls=settings.writes,
            targets={
                "SQLPersister.read": Target("<=", 1.5),
                "AsyncSQLPersister.read": None,
                EXECUTE: None,
                EXEC_DRIVER_SQL: None,
            },
        )

    for schema in (raw_schema, ours_schema):
        copy_into(autocommit, schema, group_items(LIST_GROUP, settings.list_partitions))
    listing = f'SELECT {COLUMNS} FROM "{raw_schema}".checkpoints WHERE ' + GROUP_MATCH.format(
        p="%s"
    )
    compare(
        ctx,
        section,
        list_case(settings.list_partitions),
        {
            "psycopg SELECT ... fetchall (floor)": lambda i: autocommit.execute(
                listing, (NAMESPACE, HUB, LIST_GROUP)
            ).fetchall(),
            "SQLPersister.list": lambda i: ours.list(NAMESPACE, HUB, LIST_GROUP),
        },
        calls=1,
        targets={"SQLPersister.list": None},
    )
    section.notes.append(ASYNC_NOTE)
    section.notes.append(SQLALCHEMY_NOTE)
