"""Every SQL query in the README's schema section runs on the databases it names, on known
checkpoints, and returns what the README says it measures.

The queries are read from README.md itself: a block starts with a comment naming its
databases. Each kind of query (stale consumers, positions, lag, per group, a row written by
hand) must be there for SQLite, PostgreSQL and MySQL/MariaDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from streamcheckpoint import Checkpoint, CheckpointRecord, PartitionKey, SQLPersister

README = Path(__file__).resolve().parent.parent / "README.md"
DATABASES = {"PostgreSQL": "postgresql", "SQLite": "sqlite", "MySQL": "mysql", "MariaDB": "mysql"}
KINDS = {
    "stale": "WHERE updated_at <",
    "position": "event_age_s",
    "lag": "WITH head AS",
    "groups": "GROUP BY",
    "by hand": "INSERT INTO",
}
NOW = datetime.now(timezone.utc)
FRESH = [
    (
        PartitionKey("myns", "myhub", "$Default", "0"),
        Checkpoint("0", 1000, NOW - timedelta(hours=2)),
    ),
    (
        PartitionKey("myns", "myhub", "$Default", "1"),
        Checkpoint("1", 1700, NOW - timedelta(minutes=30)),
    ),
    (PartitionKey("otherns", "otherhub", "$Default", "0"), Checkpoint("2", 7)),
]
STALE = CheckpointRecord(
    PartitionKey("myns", "myhub", "slow", "0"), Checkpoint("3", 5), NOW - timedelta(days=1)
)


@dataclass(frozen=True)
class Query:
    kind: str
    databases: frozenset[str]
    sql: str


def readme_queries() -> list[Query]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The SQL schema and progress queries", 1)[1].split("\n## ", 1)[0]
    # The Event Hubs lag and ownership queries have their own test (test_readme_eventhub_queries).
    section = section.split("Lag and ownership of Event Hubs consumers", 1)[0]
    queries = []
    for block in re.findall(r"```sql\n(.*?)```", section, re.DOTALL):
        header = block.splitlines()[0]
        assert header.startswith("-- "), f"a SQL block without its databases: {block[:60]!r}"
        databases = frozenset(
            DATABASES[n] for n in re.findall(r"PostgreSQL|SQLite|MySQL|MariaDB", header)
        )
        kinds = [kind for kind, marker in KINDS.items() if marker in block]
        assert len(kinds) == 1, f"which kind of query is this? {block[:80]!r}"
        queries.append(Query(kinds[0], databases, block))
    return queries


QUERIES = readme_queries()

Store = tuple[str, sa.Engine, SQLPersister]


def test_every_kind_of_query_is_there_for_every_database() -> None:
    for kind in KINDS:
        covered = set().union(*(q.databases for q in QUERIES if q.kind == kind))
        assert covered >= ({"mysql"} if kind == "by hand" else {"sqlite", "postgresql", "mysql"}), (
            kind
        )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, sa.Engine, SQLPersister]]:
    """A store holding FRESH and STALE, the engine to query it with, and its persister."""
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'checkpoints.db'}", None
    elif request.param == "postgresql":
        url, schema = request.getfixturevalue("postgres_schema")
    else:
        url, schema = request.getfixturevalue("mysql_database"), None
    persister = SQLPersister(url, schema=schema)
    persister.write_many(dict(FRESH))
    persister.write_many([STALE])  # written a day ago, as far as the table knows
    options = {"connect_args": {"options": f"-c search_path={schema}"}} if schema else {}
    engine = sa.create_engine(url, **options)
    try:
        yield request.param, engine, persister
    finally:
        persister.close()
        engine.dispose()


def run(engine: sa.Engine, sql: str) -> list[Any]:
    rows: list[Any] = []
    with engine.begin() as connection:
        for statement in filter(None, (part.strip() for part in sql.split(";"))):
            result = connection.exec_driver_sql(
                statement.replace("%", "%%") if engine.dialect.name != "sqlite" else statement
            )
            if result.returns_rows:
                rows = [tuple(row) for row in result]
    return rows


def test_the_readme_queries_measure_what_they_say(database: Store) -> None:
    kind_of_database, engine, persister = database
    mine = [q for q in QUERIES if kind_of_database in q.databases]
    assert {q.kind for q in mine} >= {"stale", "position", "lag", "groups"}
    for query in mine:
        if query.kind == "by hand":
            continue  # below: it changes the data
        rows = run(engine, query.sql)
        EXPECTATIONS[query.kind](rows)
    for query in (q for q in mine if q.kind == "by hand"):
        run(engine, query.sql)
        assert persister.read("myns", "myhub", "$Default", "0") == Checkpoint("-1", 0)
        [record] = [
            r for r in persister.list("myns", "myhub", "$Default") if r.key.partition_id == "0"
        ]
        assert record.updated_at is not None
        assert abs(record.updated_at - datetime.now(timezone.utc)) < timedelta(minutes=5)


def expect_stale(rows: list[Any]) -> None:
    # Only the partition last written a day ago: a consumer that stopped checkpointing.
    assert [row[:5] for row in rows] == [("myns", "myhub", "slow", "0", 5)]


def expect_positions(rows: list[Any]) -> None:
    by_partition = {(row[0], row[1]): row for row in rows}
    assert set(by_partition) == {("$Default", "0"), ("$Default", "1"), ("slow", "0")}
    _, _, sequence, offset, event_age, since_checkpoint = by_partition[("$Default", "0")]
    assert (sequence, offset) == (1000, "0")
    assert abs(float(event_age) - 7200) < 600  # the last processed event is two hours old
    assert float(since_checkpoint) < 600  # although its checkpoint was written just now
    assert abs(float(by_partition[("slow", "0")][5]) - 86400) < 600
    assert by_partition[("slow", "0")][4] is None  # no enqueue time stored: no age


def expect_lag(rows: list[Any]) -> None:
    assert [(row[0], int(row[1])) for row in rows] == [("0", 500), ("1", 20)]


def expect_groups(rows: list[Any]) -> None:
    assert [row[:6] for row in rows] == [
        ("myns", "myhub", "$Default", 2, 1000, 1700),
        ("myns", "myhub", "slow", 1, 5, 5),
        ("otherns", "otherhub", "$Default", 1, 7, 7),
    ]


EXPECTATIONS = {
    "stale": expect_stale,
    "position": expect_positions,
    "lag": expect_lag,
    "groups": expect_groups,
}
