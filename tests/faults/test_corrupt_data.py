"""Stored data that can't be read is a CorruptCheckpointError naming where it is, never a crash.

A row of every kind that streamcheckpoint never writes, put in with raw SQL on SQLite,
PostgreSQL and MariaDB, each column bad in turn (what each database lets in: wrong types on
SQLite, NUL characters, values past Python's range, dates Python can't hold, keys the API can't
name): ``read`` raises ``CorruptCheckpointError`` naming the key, and ``list`` raises it carrying
the readable rows (``.records``) and one error per unreadable row (``.unreadable``); the row can
still be deleted or overwritten. And a checkpoint file of every kind, in both layouts: the
error names the path. (What ``tests/test_sql.py``, ``tests/test_file.py`` and
``tests/test_checkpoint.py`` already cover is not repeated: SQLite's empty offset, text
sequence number and garbage time; PostgreSQL's infinite, BC and year-10000 times.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from streamcheckpoint import (
    Checkpoint,
    CorruptCheckpointError,
    FilePersister,
    PartitionKey,
    SQLPersister,
)
from streamcheckpoint.filenames import go_file_name, nested_path

KEY = PartitionKey("ns", "hub", "cg", "0")
OTHER = KEY._replace(partition_id="1")


# -- rows ----------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str
    url: str
    schema: str | None
    table: str

    def execute(self, statement: str) -> None:
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as connection:
                if self.kind == "mysql":  # let in what a permissive session would
                    connection.exec_driver_sql("SET SESSION sql_mode = ''")
                connection.exec_driver_sql(statement.format(table=self.table))
        finally:
            engine.dispose()


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database("sqlite", f"sqlite:///{tmp_path / 'checkpoints.db'}", None, "checkpoints")
    if request.param == "postgresql":
        url, schema = request.getfixturevalue("postgres_schema")
        return Database("postgresql", url, schema, f'"{schema}".checkpoints')
    url = request.getfixturevalue("mysql_database")
    return Database("mysql", url, None, "checkpoints")


@pytest.fixture
def persister(database: Database) -> Iterator[SQLPersister]:
    with SQLPersister(database.url, schema=database.schema) as opened:
        opened.write_many({KEY: Checkpoint("1", 1), OTHER: Checkpoint("2", 2)})
        yield opened


# (what, databases, SET clause for partition 0's row); values are each database's own SQL.
BAD_VALUES = [
    ("offset-blob", {"sqlite"}, "stream_offset = X'FF00'"),
    ("offset-with-nul", {"sqlite", "mysql"}, "stream_offset = CONCAT('a', CHAR(0), 'b')"),
    ("offset-empty", {"mysql"}, "stream_offset = ''"),
    ("sequence-real", {"sqlite"}, "sequence_number = 1.5"),
    ("sequence-past-int64", {"sqlite"}, "sequence_number = 9223372036854775808"),
    ("sequence-blob", {"sqlite"}, "sequence_number = X'01'"),
    ("time-integer", {"sqlite"}, "enqueue_time = 1700000000"),
    ("time-blob", {"sqlite"}, "enqueue_time = X'00'"),
    ("time-past-9999-in-utc", {"sqlite"}, "enqueue_time = '9999-12-31 23:00:00-05:00'"),
    ("time-before-year-1-in-utc", {"sqlite"}, "enqueue_time = '0001-01-01 00:00:00+01:00'"),
    ("time-zero-date", {"mysql"}, "enqueue_time = '0000-00-00 00:00:00'"),
    ("time-year-0", {"mysql"}, "enqueue_time = '0000-06-01 00:00:00'"),
    ("updated-garbage", {"sqlite"}, "updated_at = 'garbage'"),
    ("updated-zero-date", {"mysql"}, "updated_at = '0000-00-00 00:00:00'"),
]

# A key the API can't name (so it can't be read by key): list reports the row.
BAD_KEYS = [
    ("key-empty", {"sqlite", "postgresql", "mysql"}, "partition_id = ''"),
    ("key-too-long", {"sqlite"}, "partition_id = '{long}'"),
    ("key-with-nul", {"sqlite", "mysql"}, "partition_id = CONCAT('0', CHAR(0))"),
    ("key-blob", {"sqlite"}, "partition_id = X'FF'"),
]


def _sql(database: Database, assignment: str) -> str:
    if database.kind == "sqlite":  # SQLite spells these its own way
        assignment = assignment.replace("CONCAT('a', CHAR(0), 'b')", "'a' || char(0) || 'b'")
        assignment = assignment.replace("CONCAT('0', CHAR(0))", "'0' || char(0)")
    assignment = assignment.replace("{long}", "9" * 300)
    if database.kind == "mysql" and assignment.startswith(("partition_id", "namespace")):
        # the key hash follows the key (a CHECK constraint holds it to that)
        column = assignment.split(" = ")[0]
        value = assignment.split(" = ", 1)[1]
        hashed = ", ".join(value if c == column else c for c in _KEY_COLUMNS)
        assignment += f", key_hash = UNHEX(SHA2(CONCAT_WS(X'00', {hashed}), 256))"
    return f"UPDATE {{table}} SET {assignment} WHERE partition_id = '0'"


_KEY_COLUMNS = ("namespace", "name", "consumer_group", "partition_id")


_MARKS = {"sqlite": (), "postgresql": (pytest.mark.postgres,), "mysql": (pytest.mark.mysql,)}


def _cases(cases: list[tuple[str, set[str], str]]) -> list[object]:
    """``(database, assignment)`` for each case on each database it can be stored in."""
    return [
        pytest.param(kind, sql, id=f"{kind}-{name}", marks=_MARKS[kind])
        for name, kinds, sql in cases
        for kind in _MARKS
        if kind in kinds
    ]


@pytest.mark.parametrize(("database", "assignment"), _cases(BAD_VALUES), indirect=["database"])
def test_a_bad_value_in_a_row_is_a_corrupt_checkpoint_naming_its_key(
    database: Database, persister: SQLPersister, assignment: str
) -> None:
    database.execute(_sql(database, assignment))
    if not assignment.startswith("updated_at"):  # read doesn't fetch updated_at
        with pytest.raises(CorruptCheckpointError, match="partition_id='0'") as read:
            persister.read(*KEY)
        assert read.value.key == KEY
    assert persister.read(*OTHER) == Checkpoint("2", 2)
    with pytest.raises(CorruptCheckpointError, match="partition_id='0'") as listed:
        persister.list()
    assert [r.key for r in listed.value.records] == [OTHER]
    assert [e.key for e in listed.value.unreadable] == [KEY]
    persister.write(*KEY, Checkpoint("3", 3))  # overwriting it needs no read of it
    assert persister.read(*KEY) == Checkpoint("3", 3)
    assert len(persister.list()) == 2


@pytest.mark.parametrize(
    "database",
    [pytest.param(kind, marks=marks) for kind, marks in _MARKS.items()],
    indirect=True,
)
def test_odd_but_valid_values_are_not_corrupt(database: Database, persister: SQLPersister) -> None:
    """The lowest sequence number, an offset that isn't a number, no enqueue time: all valid."""
    database.execute(
        "UPDATE {table} SET sequence_number = -9223372036854775808, stream_offset = 'geo:a-b', "
        "enqueue_time = NULL WHERE partition_id = '0'"
    )
    assert persister.read(*KEY) == Checkpoint("geo:a-b", -(2**63))
    assert [r.checkpoint for r in persister.list()] == [
        Checkpoint("geo:a-b", -(2**63)),
        Checkpoint("2", 2),
    ]


@pytest.mark.parametrize(("database", "assignment"), _cases(BAD_KEYS), indirect=["database"])
def test_a_row_whose_key_the_api_cant_name_is_reported_by_list(
    database: Database, persister: SQLPersister, assignment: str
) -> None:
    database.execute(_sql(database, assignment))
    assert persister.read(*KEY) == Checkpoint.start_of_stream()  # KEY is not stored any more
    unusable = r"a key that can't be used \(namespace="
    with pytest.raises(CorruptCheckpointError, match=unusable) as listed:
        persister.list()
    assert [r.key for r in listed.value.records] == [OTHER]
    assert len(listed.value.unreadable) == 1
    assert listed.value.unreadable[0].key is None  # no key the API could take


# -- files ---------------------------------------------------------------------------------

BAD_FILES = {
    "not-json": b"offset=1",
    "wrong-types": b'{"offset":["1"],"sequenceNumber":{},"enqueueTime":[]}',
    "missing-fields": b"{}",
    "bad-time": b'{"offset":"1","sequenceNumber":1,"enqueueTime":"2026-02-30T00:00:00Z"}',
    "time-past-9999-in-utc": b'{"offset":"1","sequenceNumber":1,'
    b'"enqueueTime":"9999-12-31T23:00:00-05:00"}',
    "deeply-nested": b"[" * 100_000,
    "deeply-nested-object": b'{"offset":' + b'{"a":' * 100_000,
    "huge": b'{"offset":"' + b"1" * (64 * 1024 * 1024),
    "bom": b'\xef\xbb\xbf{"offset":"1","sequenceNumber":1}',
    "utf-16": '{"offset":"1","sequenceNumber":1}'.encode("utf-16"),
    "nul-bytes": b"\0" * 64,
    "huge-number": b'{"offset":"1","sequenceNumber":' + b"9" * 5000 + b"}",
    "go-file-cut-short": None,  # tests/data/go-persist's first file, its last byte gone
}


@pytest.mark.parametrize("layout", ["nested", "go"])
@pytest.mark.parametrize("content", list(BAD_FILES))
def test_a_bad_checkpoint_file_is_a_corrupt_checkpoint_naming_its_path(
    tmp_path: Path, go_fixtures_dir: Path, layout: str, content: str
) -> None:
    data = BAD_FILES[content]
    if data is None:
        data = next(iter(sorted((go_fixtures_dir / "files").iterdir()))).read_bytes()[:-1]
    store = tmp_path / "store"
    with FilePersister(store, layout=layout) as persister:
        persister.write_many({KEY: Checkpoint("1", 1), OTHER: Checkpoint("2", 2)})
        path = store / go_file_name(KEY) if layout == "go" else store.joinpath(*nested_path(KEY))
        path.write_bytes(data)
        named = re.escape(str(path))
        with pytest.raises(CorruptCheckpointError, match=named) as read:
            persister.read(*KEY)
        assert isinstance(read.value.__cause__, ValueError)
        with pytest.raises(CorruptCheckpointError, match=named) as listed:
            persister.list()
        assert [r.key for r in listed.value.records] == [OTHER]
        assert [e.key for e in listed.value.unreadable] == [KEY]
        persister.write(*KEY, Checkpoint("3", 3))
        assert persister.read(*KEY) == Checkpoint("3", 3)
