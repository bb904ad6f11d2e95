"""The work every contender does, and what the suites share.

Single writes go to 32 partitions round-robin; batches are ``write_many`` of 1000 checkpoints
(50 with ``--quick``); reads read the 32 partitions round-robin; ``list`` returns one consumer
group of 10,000 partitions (200 with ``--quick``). The raw-driver contenders run the same
upsert as ``SQLPersister`` by hand, with the same settings, from the same ``Checkpoint`` objects.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from streamcheckpoint import AsyncSQLPersister, Checkpoint, PartitionKey, SQLPersister

from .harness import Operation, Report, Settings

__all__ = [
    "ASYNC_NOTE",
    "BATCH_GROUP",
    "COLUMNS",
    "GROUP",
    "GROUP_MATCH",
    "HUB",
    "KEY_MATCH",
    "LIST_GROUP",
    "MYSQL_URL",
    "NAMESPACE",
    "PARTITIONS",
    "POSTGRES_URL",
    "SQLITE_LIST",
    "SQLITE_READ",
    "SQLITE_UPSERT",
    "Context",
    "OurContenders",
    "Plan",
    "batch_sources",
    "checkpoint",
    "fill_sqlite",
    "group_items",
    "group_rows",
    "open_async",
    "pg_upsert_sql",
    "raw_sqlite",
    "round_robin_key",
    "sqlite_rows",
    "sqlite_time_text",
    "sqlite_url",
    "suite_event_loop",
    "unique_name",
]

NAMESPACE = "bench.servicebus.windows.net"
HUB = "telemetry"
GROUP = "$Default"
LIST_GROUP = "listed"
BATCH_GROUP = "batches"
PARTITIONS = 32
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)

POSTGRES_URL = os.environ.get(
    "STREAMCHECKPOINT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get(
    "STREAMCHECKPOINT_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)

COLUMNS = (
    "namespace, name, consumer_group, partition_id, stream_offset, sequence_number, "
    "enqueue_time, updated_at"
)
KEY_MATCH = "namespace = {p} AND name = {p} AND consumer_group = {p} AND partition_id = {p}"
GROUP_MATCH = "namespace = {p} AND name = {p} AND consumer_group = {p}"
_ON_CONFLICT = (
    "ON CONFLICT (namespace, name, consumer_group, partition_id) DO UPDATE SET "
    "stream_offset = excluded.stream_offset, sequence_number = excluded.sequence_number, "
    "enqueue_time = excluded.enqueue_time, updated_at = excluded.updated_at"
)
SQLITE_UPSERT = (
    f"INSERT INTO checkpoints ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, "
    f"strftime('%Y-%m-%d %H:%M:%f', 'now') || '000') {_ON_CONFLICT}"
)
SQLITE_READ = (
    "SELECT stream_offset, sequence_number, enqueue_time FROM checkpoints WHERE "
    + KEY_MATCH.format(p="?")
)
SQLITE_LIST = f"SELECT {COLUMNS} FROM checkpoints WHERE " + GROUP_MATCH.format(p="?")


def pg_upsert_sql(schema: str) -> str:
    """The PostgreSQL upsert ``SQLPersister`` runs, written by hand, for the raw contenders."""
    return (
        f'INSERT INTO "{schema}".checkpoints ({COLUMNS}) '
        f"VALUES (%s, %s, %s, %s, %s, %s, %s, now()) {_ON_CONFLICT}"
    )


def checkpoint(sequence: int) -> Checkpoint:
    """The checkpoint written as operation ``sequence``: every field differs between writes."""
    return Checkpoint(str(sequence * 100), sequence, BASE_TIME + timedelta(microseconds=sequence))


def round_robin_key(index: int, group: str = GROUP) -> PartitionKey:
    """The key operation ``index`` writes or reads: 32 partitions in turn."""
    return PartitionKey(NAMESPACE, HUB, group, str(index % PARTITIONS))


def sqlite_time_text(when: datetime | None) -> str | None:
    """A time as the SQLite table stores it (UTC text, six fraction digits)."""
    if when is None:
        return None
    return when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_rows(items: dict[PartitionKey, Checkpoint]) -> list[tuple[Any, ...]]:
    """The raw ``sqlite3`` parameters of an upsert per item."""
    return [
        (*key, cp.offset, cp.sequence_number, sqlite_time_text(cp.enqueue_time))
        for key, cp in items.items()
    ]


@dataclass(frozen=True)
class Plan:
    """Precomputed inputs, so no contender pays for building checkpoints."""

    writes: list[tuple[PartitionKey, Checkpoint]]
    batches: list[dict[PartitionKey, Checkpoint]]

    @classmethod
    def build(cls, settings: Settings) -> Plan:
        """Inputs for every operation index :func:`~benchmarks.harness.alternate` hands out."""
        writes = [
            (round_robin_key(i), checkpoint(i)) for i in range(settings.operations(settings.writes))
        ]
        batches = [
            {
                PartitionKey(NAMESPACE, HUB, BATCH_GROUP, str(p)): checkpoint(b * 10_000 + p)
                for p in range(settings.batch_size)
            }
            for b in range(settings.operations(settings.batches))
        ]
        return cls(writes, batches)


def checkpoint_documents(plan: Plan) -> list[dict[str, Any]]:
    """``plan.writes`` as azure-eventhub's checkpoint dicts (``update_checkpoint``'s argument)."""
    return [
        {
            "fully_qualified_namespace": key.namespace,
            "eventhub_name": key.name,
            "consumer_group": key.consumer_group,
            "partition_id": key.partition_id,
            "sequence_number": cp.sequence_number,
            "offset": cp.offset,
        }
        for key, cp in plan.writes
    ]


def batch_sources(plan: Plan) -> list[list[tuple[str, str, int, datetime | None]]]:
    """Each of ``plan.batches`` as the plain values a caller builds its checkpoints from:
    ``(partition id, offset, sequence number, aware enqueue time)`` per checkpoint."""
    return [
        [
            (key.partition_id, cp.offset, cp.sequence_number, cp.enqueue_time)
            for key, cp in batch.items()
        ]
        for batch in plan.batches
    ]


@dataclass
class Context:
    """What every suite gets: the sizes, a temporary directory, server URLs, the report.

    ``cleanup`` runs when the run ends, also on Ctrl-C: suites register closing connections and
    dropping PostgreSQL schemas there.
    """

    settings: Settings
    directory: Path
    report: Report
    cleanup: ExitStack
    postgres_url: str = POSTGRES_URL
    mysql_url: str = MYSQL_URL
    cache_dir: Path | None = None

    def path(self, name: str) -> Path:
        """A new directory for one suite's files."""
        path = self.directory / name
        path.mkdir()
        return path


def sqlite_url(path: Path, synchronous: str = "FULL") -> str:
    """The URL of a SQLPersister on ``path`` with ``synchronous`` (FULL is the default)."""
    suffix = "" if synchronous == "FULL" else f"?synchronous={synchronous}"
    return f"sqlite:///{path}{suffix}"


def raw_sqlite(
    path: Path, synchronous: str = "FULL", *, make_schema: bool = True
) -> sqlite3.Connection:
    """A ``sqlite3`` connection with SQLPersister's pragmas, on a schema its migrations made."""
    if make_schema:
        SQLPersister(sqlite_url(path)).close()
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout=5000")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


def fill_sqlite(path: Path, rows: Iterator[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (raw upsert parameters) quickly: one transaction, no fsync."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        connection.executemany(SQLITE_UPSERT, rows)
        connection.execute("COMMIT")
    finally:
        connection.close()


def group_items(
    group: str, count: int, start: int = 0
) -> Iterator[tuple[PartitionKey, Checkpoint]]:
    """``count`` partitions of ``group`` (partition ids from ``start``) with a checkpoint each."""
    for p in range(start, start + count):
        yield PartitionKey(NAMESPACE, HUB, group, str(p)), checkpoint(p)


def group_rows(group: str, count: int, start: int = 0) -> Iterator[tuple[Any, ...]]:
    """Raw ``sqlite3`` upsert parameters for :func:`group_items`."""
    for key, cp in group_items(group, count, start):
        yield (*key, cp.offset, cp.sequence_number, sqlite_time_text(cp.enqueue_time))


def unique_name(prefix: str) -> str:
    """A name nobody else uses (PostgreSQL schemas, MariaDB tables)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


ASYNC_NOTE = (
    "AsyncSQLPersister: each operation is one run_until_complete on an event loop kept for "
    "the suite; it includes the hop to a worker thread and back (no target: informational)"
)


def suite_event_loop(ctx: Context) -> asyncio.AbstractEventLoop:
    """An event loop for a suite's asyncio contenders, kept for the whole suite.

    As an application keeps its loop. Create it before the persisters that use it: the
    cleanup runs in reverse, so they are closed on it before it is closed.
    """
    loop = asyncio.new_event_loop()

    def close() -> None:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    ctx.cleanup.callback(close)
    return loop


def open_async(
    ctx: Context, loop: asyncio.AbstractEventLoop, persister: AsyncSQLPersister
) -> AsyncSQLPersister:
    """Open ``persister`` on ``loop`` now (not during the first round); close it at the end."""
    loop.run_until_complete(persister.open())
    ctx.cleanup.callback(lambda: loop.run_until_complete(persister.close()))
    return persister


@dataclass(frozen=True)
class OurContenders:
    """Our SQL contenders on one database, as the operations each case alternates.

    ``ours`` and ``aio`` write to tables of their own, ``guarded`` (monotonic) to a third; the
    names are the rows' contender names, the same in every suite.
    """

    plan: Plan
    ours: SQLPersister
    guarded: SQLPersister
    aio: AsyncSQLPersister
    loop: asyncio.AbstractEventLoop

    def writes(self) -> dict[str, Operation]:
        """Single writes to 32 partitions round-robin."""
        writes, run_async = self.plan.writes, self.loop.run_until_complete
        return {
            "SQLPersister": lambda i: self.ours.write(*writes[i][0], writes[i][1]),
            "SQLPersister(monotonic=True)": lambda i: self.guarded.write(
                *writes[i][0], writes[i][1]
            ),
            "AsyncSQLPersister": lambda i: run_async(self.aio.write(*writes[i][0], writes[i][1])),
        }

    def batches(self) -> dict[str, Operation]:
        """``write_many`` of one batch."""
        batches, run_async = self.plan.batches, self.loop.run_until_complete
        return {
            "SQLPersister.write_many": lambda i: self.ours.write_many(batches[i]),
            "AsyncSQLPersister.write_many": lambda i: run_async(self.aio.write_many(batches[i])),
        }

    def reads(self) -> dict[str, Operation]:
        """Reads by key of the partitions written."""
        writes, run_async = self.plan.writes, self.loop.run_until_complete
        return {
            "SQLPersister.read": lambda i: self.ours.read(*writes[i][0]),
            "AsyncSQLPersister.read": lambda i: run_async(self.aio.read(*writes[i][0])),
        }
