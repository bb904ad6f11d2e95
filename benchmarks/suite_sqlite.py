"""SQLPersister on SQLite against the ``sqlite3`` module doing the same work, same pragmas."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from click.testing import CliRunner

from streamcheckpoint import AsyncSQLPersister, Checkpoint, PartitionKey, SQLPersister
from streamcheckpoint.cli import cli

from .cases import READ, WRITE, batch_case, compare, list_case
from .harness import Section, Target
from .sqlalchemy_paths import EXEC_DRIVER_SQL, EXECUTE, SQLAlchemyPaths
from .sqlalchemy_paths import NOTE as SQLALCHEMY_NOTE
from .workload import (
    ASYNC_NOTE,
    BATCH_GROUP,
    HUB,
    LIST_GROUP,
    NAMESPACE,
    SQLITE_LIST,
    SQLITE_READ,
    SQLITE_UPSERT,
    Context,
    OurContenders,
    Plan,
    batch_sources,
    checkpoint,
    fill_sqlite,
    group_rows,
    open_async,
    raw_sqlite,
    round_robin_key,
    sqlite_rows,
    sqlite_time_text,
    sqlite_url,
    suite_event_loop,
)

__all__ = ["run"]

DURABLE_TARGETS = {"write": 1.2, "batch": 1.2, "built batch": 1.2, "read": 2.0}


def run(ctx: Context) -> None:
    """Both SQLite settings: the durable default and ``synchronous=NORMAL``."""
    plan = Plan.build(ctx.settings)
    loop = suite_event_loop(ctx)
    for synchronous in ("FULL", "NORMAL"):
        _run(ctx, plan, synchronous, loop)


def _run(ctx: Context, plan: Plan, synchronous: str, loop: asyncio.AbstractEventLoop) -> None:
    durable = synchronous == "FULL"
    title = (
        "SQLite, durable default (WAL, synchronous=FULL)"
        if durable
        else "SQLite, ?synchronous=NORMAL (WAL; a power loss may lose the last writes)"
    )
    section = ctx.report.section(title)
    directory = ctx.path(f"sqlite-{synchronous.lower()}")
    raw = raw_sqlite(directory / "raw.db", synchronous)
    ctx.cleanup.callback(raw.close)
    ours = SQLPersister(sqlite_url(directory / "ours.db", synchronous))
    ctx.cleanup.callback(ours.close)
    guarded = SQLPersister(sqlite_url(directory / "monotonic.db", synchronous), monotonic=True)
    ctx.cleanup.callback(guarded.close)
    aio = open_async(ctx, loop, AsyncSQLPersister(sqlite_url(directory / "async.db", synchronous)))
    contenders = OurContenders(plan, ours, guarded, aio, loop)
    sqlalchemy = SQLAlchemyPaths.open(
        ctx, plan, SQLPersister(sqlite_url(directory / "sqlalchemy.db", synchronous))
    )
    settings = ctx.settings

    def target(name: str) -> Target | None:
        return Target("<=", DURABLE_TARGETS[name]) if durable else None

    def raw_values(i: int) -> tuple[object, ...]:
        key, cp = plan.writes[i]
        return (*key, cp.offset, cp.sequence_number, sqlite_time_text(cp.enqueue_time))

    def raw_transaction(i: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(SQLITE_UPSERT, raw_values(i))
        raw.execute("COMMIT")

    compare(
        ctx,
        section,
        WRITE,
        {
            "raw sqlite3, one autocommitted upsert (floor)": lambda i: raw.execute(
                SQLITE_UPSERT, raw_values(i)
            ),
            "raw sqlite3, BEGIN IMMEDIATE + upsert + COMMIT": raw_transaction,
            **contenders.writes(),
            **sqlalchemy.writes(),
        },
        calls=settings.writes,
        targets={
            "raw sqlite3, BEGIN IMMEDIATE + upsert + COMMIT": None,
            "SQLPersister": target("write"),
            "SQLPersister(monotonic=True)": None,
            "AsyncSQLPersister": None,
            EXECUTE: None,
            EXEC_DRIVER_SQL: None,
        },
    )

    if durable:
        wide = open_async(
            ctx, loop, AsyncSQLPersister(sqlite_url(directory / "async16.db"), max_workers=16)
        )
        _concurrent_writes(ctx, section, raw, ours, (aio, wide), loop)

    def raw_many(i: int) -> None:
        rows = sqlite_rows(plan.batches[i])
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(SQLITE_UPSERT, rows)
        raw.execute("COMMIT")

    compare(
        ctx,
        section,
        batch_case(settings.batch_size),
        {
            "raw sqlite3 executemany (floor)": raw_many,
            **contenders.batches(),
        },
        calls=settings.batches,
        targets={"SQLPersister.write_many": target("batch"), "AsyncSQLPersister.write_many": None},
    )

    _built_batches(ctx, section, plan, raw, ours, target("built batch"))

    def raw_read(i: int) -> None:
        raw.execute(SQLITE_READ, plan.writes[i][0]).fetchone()

    compare(
        ctx,
        section,
        READ,
        {
            "raw sqlite3 SELECT (floor)": raw_read,
            **contenders.reads(),
            **sqlalchemy.reads(),
        },
        calls=settings.writes,
        targets={
            "SQLPersister.read": target("read"),
            "AsyncSQLPersister.read": None,
            EXECUTE: None,
            EXEC_DRIVER_SQL: None,
        },
    )

    for path in (directory / "raw.db", directory / "ours.db"):
        fill_sqlite(path, group_rows(LIST_GROUP, settings.list_partitions))
    status_args = [
        "--url",
        sqlite_url(directory / "ours.db", synchronous),
        "status",
        f"--namespace={NAMESPACE}",
        f"--name={HUB}",
        f"--consumer-group={LIST_GROUP}",
        "--format=json",
    ]
    runner = CliRunner()

    def status(i: int) -> None:
        result = runner.invoke(cli, status_args)
        if result.exit_code != 0:
            raise RuntimeError(f"status failed: {result.output}")

    compare(
        ctx,
        section,
        list_case(settings.list_partitions),
        {
            "raw sqlite3 SELECT ... fetchall (floor)": lambda i: raw.execute(
                SQLITE_LIST, (NAMESPACE, HUB, LIST_GROUP)
            ).fetchall(),
            "SQLPersister.list": lambda i: ours.list(NAMESPACE, HUB, LIST_GROUP),
            "streamcheckpoint status --format=json": status,
        },
        calls=1,
        targets={"SQLPersister.list": None, "streamcheckpoint status --format=json": None},
    )
    if durable:
        section.notes.append(ASYNC_NOTE)
        section.notes.append(
            "the raw contenders run the same upsert text by hand on a table made by the same "
            "migrations; like SQLPersister's, the floor's single write is one autocommitted "
            "statement (SQLite takes the write lock before it reads, as BEGIN IMMEDIATE does, "
            "and fsyncs the WAL at its commit); list and status include sorting, status also "
            "opening the store and rendering JSON"
        )
        section.notes.append(
            "write_many, building the checkpoints: both contenders start from the same plain "
            "values (partition id, offset, sequence number, aware datetime) and, in the timed "
            "region, build what they write: the floor its tuples and each datetime's UTC text "
            "as the table stores it, SQLPersister validated PartitionKey and Checkpoint objects "
            "in a dict"
        )
        section.notes.append(SQLALCHEMY_NOTE)
        section.notes.append(
            f"{CONCURRENT} writes at once: each write is its own transaction; a thread (or "
            "worker thread) that finds another's write in progress waits for the persister's "
            "kept connection (at most busy_timeout), not in SQLite's busy handler"
        )


def _built_batches(
    ctx: Context,
    section: Section,
    plan: Plan,
    raw: sqlite3.Connection,
    ours: SQLPersister,
    target: Target | None,
) -> None:
    """``write_many`` whose time includes building what is written from plain values."""
    sources = batch_sources(plan)

    def raw_built_many(i: int) -> None:
        rows = [
            (NAMESPACE, HUB, BATCH_GROUP, partition, offset, sequence, sqlite_time_text(when))
            for partition, offset, sequence, when in sources[i]
        ]
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(SQLITE_UPSERT, rows)
        raw.execute("COMMIT")

    def built_many(i: int) -> None:
        ours.write_many(
            {
                PartitionKey(NAMESPACE, HUB, BATCH_GROUP, partition): Checkpoint(
                    offset, sequence, when
                )
                for partition, offset, sequence, when in sources[i]
            }
        )

    compare(
        ctx,
        section,
        f"{batch_case(ctx.settings.batch_size)}, building the checkpoints from plain values",
        {
            "raw sqlite3 executemany, building tuples and time text (floor)": raw_built_many,
            "SQLPersister.write_many, building PartitionKey, Checkpoint and dict": built_many,
        },
        calls=ctx.settings.batches,
        targets={"SQLPersister.write_many, building PartitionKey, Checkpoint and dict": target},
    )


CONCURRENT = 32
"""Writes made at once in the concurrent case: one to each of the 32 partitions."""


def _concurrent_writes(
    ctx: Context,
    section: Section,
    raw: sqlite3.Connection,
    ours: SQLPersister,
    aio: tuple[AsyncSQLPersister, AsyncSQLPersister],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """32 writes made at once by one process: 8 threads, or 32 tasks (on 4 worker threads, the
    default, and on 16), against one writer making them one after another.

    Each write is its own transaction: a thread that finds another's write in progress waits
    for the persister's kept connection (at most ``busy_timeout``), so the ratio shows what a
    burst of concurrent single writes costs over writing them in turn.
    """
    pool = ThreadPoolExecutor(8)
    ctx.cleanup.callback(pool.shutdown)

    def items(i: int) -> list[tuple[PartitionKey, Checkpoint]]:
        return [(round_robin_key(k), checkpoint(i * CONCURRENT + k)) for k in range(CONCURRENT)]

    def raw_writes(i: int) -> None:
        for row in sqlite_rows(dict(items(i))):
            raw.execute(SQLITE_UPSERT, row)

    def write(item: tuple[PartitionKey, Checkpoint]) -> None:
        key, cp = item
        ours.write(*key, cp)

    def threads(i: int) -> None:
        list(pool.map(write, items(i)))

    async def tasks(persister: AsyncSQLPersister, i: int) -> None:
        await asyncio.gather(*(persister.write(*key, cp) for key, cp in items(i)))

    default, wide = aio

    compare(
        ctx,
        section,
        f"{CONCURRENT} writes at once (one per partition)",
        {
            "raw sqlite3, one writer, one after another (floor)": raw_writes,
            "SQLPersister, 8 threads": threads,
            "AsyncSQLPersister, asyncio.gather": lambda i: loop.run_until_complete(
                tasks(default, i)
            ),
            "AsyncSQLPersister(max_workers=16), asyncio.gather": lambda i: loop.run_until_complete(
                tasks(wide, i)
            ),
        },
        calls=max(5, ctx.settings.writes // CONCURRENT),
        targets={
            "SQLPersister, 8 threads": None,
            "AsyncSQLPersister, asyncio.gather": None,
            "AsyncSQLPersister(max_workers=16), asyncio.gather": None,
        },
    )
