"""Smoke test of the benchmark harness: ``python -m benchmarks --quick`` prints the whole table.

Only the shape is checked (every section, the rows for every contender, a ratio and a verdict
where there is a target); the numbers of a tiny run on a busy machine mean nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from conftest import REQUIRE_SERVERS
from streamcheckpoint import Checkpoint, PartitionKey, SQLPersister

ROOT = Path(__file__).resolve().parent.parent
VERDICTS = {"ok", "MISSED"}
NUMBER = re.compile(r"^[0-9][0-9,]*(\.[0-9]+)? (us|ms|s|writes/s|KiB)$")
RATIO = re.compile(r"^[0-9]+\.[0-9]{2}x$")


@dataclass(frozen=True)
class Line:
    """One row of the printed table."""

    section: str
    case: str
    contender: str
    median: str
    ratio: str
    target: str
    verdict: str


def parse_table(text: str) -> list[Line]:
    """Split the text table into rows, using each section's dashed rule for the columns."""
    rows: list[Line] = []
    section = ""
    spans: list[tuple[int, int]] = []
    for line in text.splitlines():
        if line.startswith("== "):
            section, spans = line[3:], []
        elif section and not spans and line.startswith("-"):
            spans = [m.span() for m in re.finditer(r"-+", line)]
        elif spans and line.strip() and not line.startswith("   note:"):
            starts = [start for start, _ in spans]
            cells = [
                line[start:end].strip()
                for start, end in zip(starts, [*starts[1:], len(line)], strict=True)
            ]
            rows.append(Line(section, *cells))
        elif not line.strip():
            spans = []
    return rows


def find(rows: list[Line], section: str, case: str, contender: str) -> Line:
    """The row whose section starts with ``section`` and whose case/contender contain these."""
    matches = [
        r
        for r in rows
        if r.section.startswith(section) and case in r.case and contender == r.contender
    ]
    assert len(matches) == 1, (section, case, contender, matches)
    return matches[0]


def assert_measured(row: Line, *, judged: bool) -> None:
    assert NUMBER.match(row.median), row
    if judged:
        assert RATIO.match(row.ratio), row
        assert row.target.startswith(("<=", ">=")), row
        assert row.verdict in VERDICTS, row


def assert_informational(row: Line) -> None:
    """Measured, with a ratio to the floor, and no target."""
    assert_measured(row, judged=False)
    assert RATIO.match(row.ratio), row
    assert (row.target, row.verdict) == ("", ""), row


def assert_sqlalchemy_rows(rows: list[Line], section: str) -> None:
    """The evidence for the kept cursor: SQLAlchemy's two paths, next to the floor and ours."""
    for case in ("write, 32", "read by key"):
        for contender in (
            "SQLAlchemy Connection.execute(statement)",
            "SQLAlchemy Connection.exec_driver_sql",
        ):
            assert_informational(find(rows, section, case, contender))


def assert_async_rows(rows: list[Line], section: str) -> None:
    """AsyncSQLPersister's rows: measured, with a ratio to the floor, and no target."""
    for case, contender in (
        ("write, 32", "AsyncSQLPersister"),
        ("write_many(50)", "AsyncSQLPersister.write_many"),
        ("read by key", "AsyncSQLPersister.read"),
    ):
        assert_informational(find(rows, section, case, contender))


def assert_eventhub_rows(rows: list[Line]) -> None:
    """The Blob store against ours: each case, sync and asyncio, with the issue's targets."""
    section = "Event Hubs checkpoint stores"
    found = [r for r in rows if r.section.startswith(section)]
    if any(r.verdict.startswith("unavailable: ") for r in found):
        assert not REQUIRE_SERVERS, found
        return

    def row(case: str, kind: str, contender: str) -> Line:
        matches = [
            r
            for r in found
            if r.case.startswith(case) and r.case.endswith(f"({kind})") and r.contender == contender
        ]
        assert len(matches) == 1, (case, kind, contender, matches)
        return matches[0]

    for kind, prefix in (("sync", ""), ("asyncio", "asyncio ")):
        for case in ("update_checkpoint, 32", "claim cycle", "list_checkpoints"):
            assert_measured(row(case, kind, f"{prefix}BlobCheckpointStore (floor)"), judged=False)
            for database in ("SQLite", "PostgreSQL"):
                ours = row(case, kind, f"{prefix}SQLCheckpointStore, {database}")
                if case == "list_checkpoints":
                    assert_informational(ours)
                else:
                    assert_measured(ours, judged=True)
                    assert ours.target == ">= 10x", ours
    bound = row("update_checkpoint, 32", "sync", "psycopg autocommit upsert (bound)")
    assert_informational(bound)
    floor = find(
        rows,
        "asyncio SQLCheckpointStore.update_checkpoint",
        "update_checkpoint",
        "asyncio SQLCheckpointStore.update_checkpoint",
    )
    assert_measured(floor, judged=True)
    assert floor.target == "<= 1.3x"


@pytest.mark.slow
def test_quick_run_prints_a_row_for_every_contender(pytestconfig: pytest.Config) -> None:
    # The azure-eventhub wheel is downloaded once and kept in pytest's cache directory.
    assert pytestconfig.cache is not None
    wheels = pytestconfig.cache.mkdir("azure-eventhub-wheel")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--cache-dir", str(wheels)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for label in ("machine:", "versions:", "method: median of 5 rounds"):
        assert label in out
    rows = parse_table(out)

    durable = "SQLite, durable default"
    assert_measured(find(rows, durable, "write, 32", "SQLPersister"), judged=True)
    assert find(rows, durable, "write, 32", "SQLPersister").target == "<= 1.2x"
    batch = find(rows, durable, "write_many(50)", "SQLPersister.write_many")
    assert_measured(batch, judged=True)
    assert batch.target == "<= 1.2x"
    built = find(
        rows,
        durable,
        "write_many(50), building the checkpoints",
        "SQLPersister.write_many, building PartitionKey, Checkpoint and dict",
    )
    assert_measured(built, judged=True)
    assert built.target == "<= 1.2x"
    assert_measured(
        find(
            rows,
            durable,
            "write_many(50), building the checkpoints",
            "raw sqlite3 executemany, building tuples and time text (floor)",
        ),
        judged=False,
    )
    read = find(rows, durable, "read by key", "SQLPersister.read")
    assert_measured(read, judged=True)
    assert read.target == "<= 2x"
    assert_measured(find(rows, durable, "list, 200", "SQLPersister.list"), judged=False)
    for section in (durable, "SQLite, ?synchronous=NORMAL"):
        assert_async_rows(rows, section)
        assert_sqlalchemy_rows(rows, section)
    for contender in ("SQLPersister, 8 threads", "AsyncSQLPersister, asyncio.gather"):
        assert_informational(find(rows, durable, "32 writes at once", contender))
    floor = find(rows, durable, "write, 32", "raw sqlite3, one autocommitted upsert (floor)")
    assert_measured(floor, judged=False)
    assert floor.ratio == ""
    assert_measured(
        find(rows, "SQLite, ?synchronous=NORMAL", "write, 32", "SQLPersister"), judged=False
    )

    postgres = [r for r in rows if r.section.startswith("PostgreSQL")]
    if any(r.verdict.startswith("unavailable: ") for r in postgres):
        assert not REQUIRE_SERVERS, postgres
    else:
        for case, contender, target in (
            ("write, 32", "SQLPersister", "<= 1.2x"),
            ("write_many(50)", "SQLPersister.write_many", "<= 1.2x"),
            ("read by key", "SQLPersister.read", "<= 1.5x"),
        ):
            row = find(rows, "PostgreSQL", case, contender)
            assert_measured(row, judged=True)
            assert row.target == target, row
        assert_async_rows(rows, "PostgreSQL")
        assert_sqlalchemy_rows(rows, "PostgreSQL")
    maria = [r for r in rows if r.section.startswith("MariaDB")]
    if any(r.verdict.startswith("unavailable: ") for r in maria):
        assert not REQUIRE_SERVERS, maria
    else:
        for case, contender in (
            ("write, 32", "SQLPersister"),
            ("write, 32", "SQLPersister(monotonic=True)"),
            ("write_many(50)", "SQLPersister.write_many"),
            ("read by key", "SQLPersister.read"),
            ("list, 200", "SQLPersister.list"),
        ):
            assert_informational(find(rows, "MariaDB", case, contender))
        assert_async_rows(rows, "MariaDB")

    files = "Files"
    for contender in ("FilePersister", "FilePersister(layout='go')"):
        assert_measured(find(rows, files, "write, 32", contender), judged=False)
        assert RATIO.match(find(rows, files, "write, 32", contender).ratio)
    go_style = find(rows, files, "write, 32", "Go-style: create/truncate + write, no fsync")
    assert_measured(go_style, judged=False)

    b6 = [r for r in rows if r.section.startswith("azure-eventhub 5.0.0b6")]
    unavailable = [r for r in b6 if r.verdict.startswith("unavailable: ")]
    if not unavailable:
        assert_informational(
            find(
                rows,
                "azure-eventhub",
                "update_checkpoint",
                "SQLCheckpointStore.update_checkpoint (ours, durable default)",
            )
        )
        equal = find(
            rows,
            "azure-eventhub",
            "update_checkpoint",
            "b6 store + PRAGMA synchronous=EXTRA (equal durability)",
        )
        assert_measured(equal, judged=True)
        assert equal.target == ">= 3x"

    scale = "Scale: 1,000 vs 5,000"
    assert_measured(
        find(
            rows, scale, "write, 32 partitions round-robin (SQLite)", "SQLPersister, 5,000 stored"
        ),
        judged=True,
    )
    assert_measured(
        find(rows, scale, "read by key (SQLite)", "SQLPersister, 5,000 stored"), judged=True
    )

    writers = "4 writer processes"
    for contender, target in (
        ("aggregate", ">= 0.75x"),
        ("longest single write", "<= 5000 ms"),
        ("99th percentile write", "<= 25 ms"),
    ):
        row = find(rows, writers, "writes per round", f"4 x SQLPersister: {contender}")
        assert NUMBER.match(row.median), row
        assert (row.target, row.verdict in VERDICTS) == (target, True), row
    errors = find(
        rows, writers, "writes per round", "4 x SQLPersister: failed writes (locked, ...)"
    )
    assert errors.median.isdigit()
    assert (errors.target, errors.verdict in VERDICTS) == ("<= 0 errors", True), errors
    for contender in ("aggregate", "longest single write", "99th percentile write"):
        row = find(rows, writers, "writes per round", f"4 x raw sqlite3: {contender}")
        assert NUMBER.match(row.median), row
        assert (row.target, row.verdict) == ("", ""), row
    # Group commit and the write queue are gone; nothing may still describe them.
    for gone in ("group commit", "write queue", "mailbox", "flock"):
        assert gone not in out.lower(), gone

    assert_eventhub_rows(rows)

    growth = find(rows, "Memory", "writes", "growth of Python memory (tracemalloc)")
    assert growth.target == "<= 256 KiB"
    assert growth.verdict in VERDICTS
    assert re.search(r"^targets: \d+ of \d+ met", out, re.MULTILINE)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--only", "sqlite,nosuch"], "unknown suite 'nosuch'"),
        (["--rounds", "3"], "--rounds must be at least 5"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(arguments: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


# -- what the optimizations the benchmarks called for changed in SQLPersister ------------------
# (SQL behaviour, kept next to the benchmarks that motivated it; test_sql.py is the natural home)

KEY = PartitionKey("ns.example", "hub", "cg", "0")


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_kept_connection_leaves_the_whole_pool_to_the_other_calls(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'one.db'}", None
    else:
        url, schema = request.getfixturevalue("postgres_schema")
    persister = SQLPersister(url, schema=schema, pool_size=1, max_overflow=0, pool_timeout=2)
    try:
        persister.write(*KEY, Checkpoint("1", 1))  # keeps a connection for writes and reads
        assert persister._connection._kept is not None
        # Detached from the pool: the pool's only connection is still free for anyone else
        # (kept in the pool, this checkout would wait pool_timeout and fail).
        pool = persister.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0
        with persister.engine.connect() as other:
            assert other.exec_driver_sql("SELECT 1").scalar_one() == 1
        assert [r.checkpoint for r in persister.list()] == [Checkpoint("1", 1)]
        assert persister.read(*KEY) == Checkpoint("1", 1)
        assert persister.delete(*KEY) == 1
        assert persister.read(*KEY) == Checkpoint.start_of_stream()
    finally:
        persister.close()


def test_sqlite_writers_leave_no_files_but_sqlites_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writers of one file wait through SQLite's own locking: no lock file nor anything else
    # next to the database that another user could plant or hold.
    path = tmp_path / "only.db"
    with SQLPersister(f"sqlite:///{path}") as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        persister.write_many({KEY._replace(partition_id="1"): Checkpoint("2", 2)})
        assert persister.read(*KEY) == Checkpoint("1", 1)
        assert {p.name for p in tmp_path.iterdir()} <= {"only.db", "only.db-wal", "only.db-shm"}
    assert {p.name for p in tmp_path.iterdir()} <= {"only.db", "only.db-wal", "only.db-shm"}
    memory = tmp_path / "memory"
    memory.mkdir()
    monkeypatch.chdir(memory)
    with SQLPersister("sqlite://") as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        assert persister.read(*KEY) == Checkpoint("1", 1)
    assert list(memory.iterdir()) == []
