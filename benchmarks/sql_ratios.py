"""How much SQLPersister costs over the raw drivers, measured side by side in one run.

Prints three ratios next to their targets:

* a single durable write on SQLite: ``SQLPersister.write`` vs the ``sqlite3`` module running the
  same upsert in ``BEGIN IMMEDIATE`` ... ``COMMIT``, same pragmas (WAL, synchronous=FULL,
  busy_timeout=5000);
* ``write_many`` of 1000 checkpoints on SQLite vs ``sqlite3`` ``executemany`` in one transaction;
* a single write on PostgreSQL vs psycopg 3 in autocommit (skipped if the server is unreachable).

Contenders alternate round by round (so drift on a noisy machine hits both) and each ratio is
the median of the per-round ratios. Absolute times flatter durable stores on disks with cheap
fsync; compare the ratios.

    .venv/bin/python benchmarks/sql_ratios.py [--rounds 7] [--writes 300] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from streamcheckpoint import Checkpoint, PartitionKey, SQLPersister
from streamcheckpoint.persister import normalize_items

TARGETS = {
    "SQLite write": 1.5,
    "SQLite write_many(1000)": 1.3,
    "PostgreSQL write": 1.3,
}
BATCH = 1000
KEY = PartitionKey("bench.servicebus.windows.net", "hub", "$Default", "0")
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)

COLUMNS = (
    "namespace, name, consumer_group, partition_id, stream_offset, sequence_number, "
    "enqueue_time, updated_at"
)
UPDATE = (
    "ON CONFLICT (namespace, name, consumer_group, partition_id) DO UPDATE SET "
    "stream_offset = excluded.stream_offset, sequence_number = excluded.sequence_number, "
    "enqueue_time = excluded.enqueue_time, updated_at = excluded.updated_at"
)
SQLITE_UPSERT = (
    f"INSERT INTO checkpoints ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, "
    f"strftime('%Y-%m-%d %H:%M:%f', 'now') || '000') {UPDATE}"
)


def checkpoint(i: int) -> Checkpoint:
    return Checkpoint(str(i * 100), i, BASE_TIME + timedelta(microseconds=i))


def batch(round_number: int) -> dict[PartitionKey, Checkpoint]:
    return {
        KEY._replace(partition_id=str(p)): checkpoint(round_number * BATCH + p)
        for p in range(BATCH)
    }


def sqlite_row(key: PartitionKey, cp: Checkpoint) -> tuple[object, ...]:
    when = cp.enqueue_time
    text = None if when is None else when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (*key, cp.offset, cp.sequence_number, text)


def raw_sqlite(path: Path) -> sqlite3.Connection:
    SQLPersister(f"sqlite:///{path}").close()  # the same schema, made by the migrations
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=5000")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def measure(
    contenders: dict[str, Callable[[int], None]], rounds: int, calls: int
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one list entry per round, contenders alternating."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm up: caches, prepared statements, WAL file
        for i in range(min(calls, 20)):
            run(i)
    for round_number in range(rounds):
        order = list(contenders.items())
        if round_number % 2:
            order.reverse()
        for name, run in order:
            start = time.perf_counter()
            for i in range(calls):
                run(round_number * calls + i)
            times[name].append((time.perf_counter() - start) / calls)
    return times


def report(label: str, ours: list[float], raw: list[float], unit: str) -> None:
    ratio = statistics.median(o / r for o, r in zip(ours, raw, strict=True))
    scale = 1e6 if unit == "us" else 1e3
    target = TARGETS[label]
    verdict = "ok" if ratio <= target else "OVER TARGET"
    print(
        f"{label:<26} ratio {ratio:5.2f}  target <= {target:.1f}  {verdict:<11} "
        f"(SQLPersister {statistics.median(ours) * scale:8.1f} {unit}, "
        f"raw {statistics.median(raw) * scale:8.1f} {unit})"
    )


def bench_sqlite(directory: Path, rounds: int, writes: int) -> None:
    raw = raw_sqlite(directory / "raw.db")
    ours = SQLPersister(f"sqlite:///{directory / 'ours.db'}")

    def raw_write(i: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(SQLITE_UPSERT, sqlite_row(KEY, checkpoint(i)))
        raw.execute("COMMIT")

    def our_write(i: int) -> None:
        ours.write(*KEY, checkpoint(i))

    times = measure({"raw": raw_write, "ours": our_write}, rounds, writes)
    report("SQLite write", times["ours"], times["raw"], "us")

    batches = [batch(r) for r in range(4)]

    def raw_many(i: int) -> None:
        rows = [sqlite_row(key, cp) for key, cp in batches[i % 4].items()]
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(SQLITE_UPSERT, rows)
        raw.execute("COMMIT")

    def our_many(i: int) -> None:
        ours.write_many(batches[i % 4])

    def validation_only(i: int) -> None:
        normalize_items(batches[i % 4])

    times = measure({"raw": raw_many, "ours": our_many, "validation": validation_only}, rounds, 5)
    report("SQLite write_many(1000)", times["ours"], times["raw"], "ms")
    print(
        f"{'':<26} of which argument validation (BasePersister, normalize_items): "
        f"{statistics.median(times['validation']) * 1e3:.1f} ms"
    )
    ours.close()
    raw.close()


def bench_postgresql(url: str, rounds: int, writes: int) -> None:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL write: skipped, {url} is unreachable ({exc.orig})")
        return
    try:
        ours = SQLPersister(url, schema=schema)
        conninfo = admin.url.set(drivername="postgresql").render_as_string(hide_password=False)
        raw = psycopg.connect(conninfo, autocommit=True)
        sql = (
            f'INSERT INTO "{schema}".checkpoints ({COLUMNS}) '
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, now()) {UPDATE}"
        )

        def raw_write(i: int) -> None:
            cp = checkpoint(i)
            raw.execute(sql, (*KEY, cp.offset, cp.sequence_number, cp.enqueue_time))

        def our_write(i: int) -> None:
            ours.write(*KEY, checkpoint(i))

        times = measure({"raw": raw_write, "ours": our_write}, rounds, writes)
        report("PostgreSQL write", times["ours"], times["raw"], "us")
        raw.close()
        ours.close()
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds (>= 5; default 7)")
    parser.add_argument("--writes", type=int, default=300, help="single writes per round")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "STREAMCHECKPOINT_TEST_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        ),
    )
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    print(
        f"median of {args.rounds} rounds, contenders alternating; sqlite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(prefix="sql-ratios-") as directory:
        bench_sqlite(Path(directory), args.rounds, args.writes)
    bench_postgresql(args.postgres_url, args.rounds, args.writes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
