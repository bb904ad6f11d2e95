"""Does anything grow with the number of stored checkpoints? Writes and reads must not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streamcheckpoint import Checkpoint, PartitionKey, SQLPersister

from .cases import READ, WRITE, compare
from .harness import Section, Target
from .servers import (
    copy_into,
    pinned_with_backends,
    postgres_admin,
    postgres_schema,
    psycopg_connect,
)
from .workload import (
    COLUMNS,
    GROUP_MATCH,
    HUB,
    NAMESPACE,
    SQLITE_LIST,
    Context,
    Plan,
    checkpoint,
    fill_sqlite,
    raw_sqlite,
    sqlite_time_text,
    sqlite_url,
)

__all__ = ["run"]

FLAT = Target("<=", 1.5)
"""A thousand times more rows may cost a deeper B-tree (a page or two per statement), not more."""


def run(ctx: Context) -> None:
    """SQLite and (if reachable) PostgreSQL, each with a small and a large table."""
    settings = ctx.settings
    small, large = settings.small_store, settings.large_store
    plan = Plan.build(settings)
    section = ctx.report.section(
        f"Scale: {small:,} vs {large:,} stored checkpoints (ratio: large / small)"
    )
    _sqlite(ctx, section, plan)
    _postgres(ctx, section, plan)
    section.notes.append(
        f"the large tables hold {large // settings.list_partitions:,} consumer groups of "
        f"{settings.list_partitions:,} partitions; list returns one of them"
    )


def stored_items(count: int, group_size: int) -> Iterator[tuple[PartitionKey, Checkpoint]]:
    """``count`` checkpoints in consumer groups ``g0000``, ``g0001``, ... of ``group_size``."""
    for index in range(count):
        group, partition = divmod(index, group_size)
        yield PartitionKey(NAMESPACE, HUB, f"g{group:04d}", str(partition)), checkpoint(index)


def _labels(ctx: Context, what: str) -> tuple[str, str]:
    settings = ctx.settings
    return (
        f"{what}, {settings.small_store:,} stored",
        f"{what}, {settings.large_store:,} stored",
    )


def _sqlite(ctx: Context, section: Section, plan: Plan) -> None:
    settings = ctx.settings
    directory = ctx.path("scale-sqlite")
    stores = {}
    for label, count in zip(
        _labels(ctx, "SQLite"), (settings.small_store, settings.large_store), strict=True
    ):
        path = directory / f"{count}.db"
        raw_sqlite(path).close()
        fill_sqlite(
            path,
            (
                (*key, cp.offset, cp.sequence_number, sqlite_time_text(cp.enqueue_time))
                for key, cp in stored_items(count, settings.list_partitions)
            ),
        )
        stores[label] = SQLPersister(sqlite_url(path))
        ctx.cleanup.callback(stores[label].close)
    small, large = stores.values()
    _flat_cases(ctx, section, plan, small, large, "SQLite")
    raw = raw_sqlite(directory / f"{settings.large_store}.db")
    ctx.cleanup.callback(raw.close)
    compare(
        ctx,
        section,
        f"list, {settings.list_partitions:,} of {settings.large_store:,} (SQLite)",
        {
            "raw sqlite3 SELECT ... fetchall (floor)": lambda i: raw.execute(
                SQLITE_LIST, (NAMESPACE, HUB, "g0000")
            ).fetchall(),
            "SQLPersister.list": lambda i: large.list(NAMESPACE, HUB, "g0000"),
        },
        calls=1,
        targets={"SQLPersister.list": None},
    )


def _postgres(ctx: Context, section: Section, plan: Plan) -> None:
    admin = postgres_admin(ctx)
    if isinstance(admin, str):
        section.notes.append(f"PostgreSQL: {admin}")
        return
    settings = ctx.settings
    connection = psycopg_connect(ctx, autocommit=True)
    stores = {}
    schemas = []
    for label, count in zip(
        _labels(ctx, "PostgreSQL"), (settings.small_store, settings.large_store), strict=True
    ):
        schema = postgres_schema(ctx, admin, f"bench_scale_{count}")
        copy_into(connection, schema, stored_items(count, settings.list_partitions))
        # Now, not during the rounds: autovacuum would otherwise vacuum a freshly loaded
        # table (and set its hint bits) while one contender is being measured.
        connection.execute(f'VACUUM (ANALYZE) "{schema}".checkpoints')
        stores[label] = SQLPersister(admin.url, schema=schema)
        ctx.cleanup.callback(stores[label].close)
        schemas.append(schema)
    small, large = stores.values()
    with pinned_with_backends(section, (small, large)):
        _flat_cases(ctx, section, plan, small, large, "PostgreSQL")
    listing = f'SELECT {COLUMNS} FROM "{schemas[1]}".checkpoints WHERE ' + GROUP_MATCH.format(
        p="%s"
    )

    def raw_list(i: int) -> Any:
        return connection.execute(listing, (NAMESPACE, HUB, "g0000")).fetchall()

    compare(
        ctx,
        section,
        f"list, {settings.list_partitions:,} of {settings.large_store:,} (PostgreSQL)",
        {
            "psycopg SELECT ... fetchall (floor)": raw_list,
            "SQLPersister.list": lambda i: large.list(NAMESPACE, HUB, "g0000"),
        },
        calls=1,
        targets={"SQLPersister.list": None},
    )


def _flat_cases(
    ctx: Context,
    section: Section,
    plan: Plan,
    small: SQLPersister,
    large: SQLPersister,
    database: str,
) -> None:
    settings = ctx.settings
    small_label, large_label = _labels(ctx, "SQLPersister")
    compare(
        ctx,
        section,
        f"{WRITE} ({database})",
        {
            small_label: lambda i: small.write(*plan.writes[i][0], plan.writes[i][1]),
            large_label: lambda i: large.write(*plan.writes[i][0], plan.writes[i][1]),
        },
        calls=settings.writes,
        targets={large_label: FLAT},
    )
    compare(
        ctx,
        section,
        f"{READ} ({database})",
        {
            small_label: lambda i: small.read(*plan.writes[i][0]),
            large_label: lambda i: large.read(*plan.writes[i][0]),
        },
        calls=settings.writes,
        targets={large_label: FLAT},
    )
