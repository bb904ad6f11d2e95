"""SQLPersister specifics: schema, clocks and time zones, SQLite settings, statements, failures.

The shared behaviour (read, write, list, delete, monotonic) is in test_contract.py, which runs on
SQLite (file and in memory) and PostgreSQL; here is what only a SQL store has.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import QueuePool, SingletonThreadPool, StaticPool

from conftest import POSTGRES_URL, require_server, run_concurrently
from streamcheckpoint import (
    Checkpoint,
    CheckpointRegressionError,
    CorruptCheckpointError,
    PartitionKey,
    PersistConnectionError,
    PersistError,
    SchemaError,
    SQLPersister,
)
from streamcheckpoint.sql.dialects import (
    DIALECTS,
    Dialect,
    MySQLDialect,
    PostgreSQLDialect,
    SQLiteDialect,
)
from streamcheckpoint.sql.dialects.mysql import key_hash
from streamcheckpoint.sql.dialects.sqlite import SQLiteTimestamp
from streamcheckpoint.sql.statements import statements_for

UTC = timezone.utc
PLUS_TWO = timezone(timedelta(hours=2))
KEY = PartitionKey("ns.example", "hub", "cg", "0")
KEY_COLUMNS = ["namespace", "name", "consumer_group", "partition_id"]
SQLITE_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


@dataclass
class Store:
    """One SQL database under test; ``open`` makes persisters, ``sql`` runs raw SQL on it."""

    kind: str
    url: str
    schema: str | None = None
    opened: list[SQLPersister] = field(default_factory=list)
    _admin: sa.Engine | None = None

    @property
    def table(self) -> str:
        return f'"{self.schema}".checkpoints' if self.schema else "checkpoints"

    def open(self, **options: Any) -> SQLPersister:
        persister = SQLPersister(self.url, schema=self.schema, **options)
        self.opened.append(persister)
        return persister

    def sql(self, text: str, **params: Any) -> list[Any]:
        """Run ``text`` (``{table}`` is the checkpoints table) in its own transaction."""
        if self._admin is None:
            self._admin = sa.create_engine(self.url)
        with self._admin.begin() as connection:
            result = connection.execute(sa.text(text.format(table=self.table)), params)
            return list(result.all()) if result.returns_rows else []

    def close(self) -> None:
        for persister in reversed(self.opened):
            persister.close()
        if self._admin is not None:
            self._admin.dispose()


def write_params(dialect: Dialect, checkpoint: Checkpoint) -> dict[str, Any]:
    """The bound parameters of the dialect's upsert of ``checkpoint`` for KEY, by name."""
    values = dialect.write_rows([(KEY, checkpoint)])[0]
    return dict(zip(dialect.upsert_params, values, strict=True))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store("sqlite", f"sqlite:///{tmp_path / 'checkpoints.db'}")
    yield store
    store.close()


@pytest.fixture
def postgres_store(postgres_schema: tuple[str, str]) -> Iterator[Store]:
    url, schema = postgres_schema
    store = Store("postgresql", url, schema)
    yield store
    store.close()


@pytest.fixture
def mysql_store(mysql_database: str) -> Iterator[Store]:
    store = Store("mysql", mysql_database)
    yield store
    store.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def store(request: pytest.FixtureRequest) -> Store:
    """A new SQLite file, then a new PostgreSQL schema, then a new MySQL database."""
    names = {"sqlite": "sqlite_store", "postgresql": "postgres_store", "mysql": "mysql_store"}
    result: Store = request.getfixturevalue(names[request.param])
    return result


# -- schema ----------------------------------------------------------------------------------


def test_table_has_the_columns_types_and_primary_key_of_the_spec(store: Store) -> None:
    persister = store.open()
    inspector = sa.inspect(persister.engine)
    columns = {c["name"]: c for c in inspector.get_columns("checkpoints", schema=store.schema)}
    hashed = ["key_hash"] if store.kind == "mysql" else []
    assert list(columns) == [
        *hashed,
        *KEY_COLUMNS,
        "stream_offset",
        "sequence_number",
        "enqueue_time",
        "updated_at",
        # Revision 0003: the Event Hubs stores' lag columns, never written by SQLPersister.
        "last_enqueued_sequence_number",
        "last_enqueued_offset",
        "last_enqueued_time",
    ]
    assert all(columns[name]["nullable"] for name in list(columns)[-3:])
    for name in KEY_COLUMNS:
        key_type = columns[name]["type"]
        assert isinstance(key_type, sa.String)
        assert key_type.length == 256
        assert columns[name]["nullable"] is False
    text_type = mysql.LONGTEXT if store.kind == "mysql" else sa.Text
    assert isinstance(columns["stream_offset"]["type"], text_type)
    assert isinstance(columns["sequence_number"]["type"], sa.BigInteger)
    assert [columns[n]["nullable"] for n in ("stream_offset", "sequence_number")] == [False] * 2
    assert columns["enqueue_time"]["nullable"] is True
    assert columns["updated_at"]["nullable"] is False
    for name in ("enqueue_time", "updated_at"):
        column_type = columns[name]["type"]
        if store.kind == "postgresql":
            assert isinstance(column_type, postgresql.TIMESTAMP)
            assert column_type.timezone is True
        elif store.kind == "mysql":
            assert isinstance(column_type, mysql.DATETIME)
            assert column_type.fsp == 6
        else:
            assert isinstance(column_type, sa.DateTime)
    primary_key = inspector.get_pk_constraint("checkpoints", schema=store.schema)
    assert primary_key["constrained_columns"] == (hashed or KEY_COLUMNS)


def test_mysql_keys_on_a_checked_hash_with_exact_key_columns(mysql_store: Store) -> None:
    persister = mysql_store.open()
    inspector = sa.inspect(persister.engine)
    columns = {c["name"]: c for c in inspector.get_columns("checkpoints")}
    for name in KEY_COLUMNS:
        assert getattr(columns[name]["type"], "collation", None) == "utf8mb4_nopad_bin"
    assert isinstance(columns["key_hash"]["type"], mysql.BINARY)
    assert columns["key_hash"]["type"].length == 32
    [index] = inspector.get_indexes("checkpoints")
    assert index["column_names"] == KEY_COLUMNS[:3]
    [check] = inspector.get_check_constraints("checkpoints")
    assert "sha2" in check["sqltext"].lower()
    # Keys that a case- or pad-insensitive collation would merge are four checkpoints.
    keys = [PartitionKey("ns", "hub", "cg", p) for p in ("p", "P", "p ", "\u00e9", "e\u0301")]
    persister.write_many({key: Checkpoint(str(i), i) for i, key in enumerate(keys)})
    for i, key in enumerate(keys):
        assert persister.read(*key) == Checkpoint(str(i), i)
    listed = [r.key.partition_id for r in persister.list("ns", "hub", "cg")]
    assert sorted(listed) == sorted(k[3] for k in keys)
    assert persister.list("ns", "hub", "CG") == []
    assert persister.delete("ns", "hub", "cg", "p") == 1
    assert persister.read("ns", "hub", "cg", "p ") == Checkpoint("2", 2)
    # A row written by hand must carry the right hash: a wrong one is refused.
    with pytest.raises(sa.exc.DBAPIError, match="ck_checkpoints_key_hash"):
        mysql_store.sql(
            "INSERT INTO {table} (key_hash, namespace, name, consumer_group, partition_id, "
            "stream_offset, sequence_number) VALUES (UNHEX(SHA2('x', 256)), 'a', 'b', 'c', 'd', "
            "'1', 1)"
        )
    mysql_store.sql(
        "INSERT INTO {table} (key_hash, namespace, name, consumer_group, partition_id, "
        "stream_offset, sequence_number) VALUES (UNHEX(SHA2(CONCAT_WS(X'00', 'a', 'b', 'c', "
        "'d'), 256)), 'a', 'b', 'c', 'd', '1', 1)"
    )
    assert persister.read("a", "b", "c", "d") == Checkpoint("1", 1)


def test_mysql_takes_the_longest_keys(mysql_store: Store) -> None:
    persister = mysql_store.open()
    key = PartitionKey(*(c * 256 for c in "\U0001f600\u00e9\u4e2dx"))
    persister.write(*key, Checkpoint("o" * 100_000, 1))
    assert persister.read(*key) == Checkpoint("o" * 100_000, 1)
    assert [r.key for r in persister.list(*key[:3])] == [key]


def test_postgresql_table_lives_in_the_given_schema(postgres_store: Store) -> None:
    persister = postgres_store.open()
    persister.write(*KEY, Checkpoint("7", 7))
    rows = postgres_store.sql("SELECT stream_offset FROM {table}")
    assert rows == [("7",)]
    assert persister.schema == postgres_store.schema


def test_schema_on_sqlite_is_refused(sqlite_store: Store) -> None:
    with pytest.raises(ValueError, match="schema"):
        SQLPersister(sqlite_store.url, schema="elsewhere")


def test_migrate_false_on_an_empty_database_names_the_command(sqlite_store: Store) -> None:
    with pytest.raises(SchemaError, match="upgrade"):
        sqlite_store.open(migrate=False)
    sqlite_store.open().close()  # migrate=True creates it
    assert sqlite_store.open(migrate=False).read(*KEY) == Checkpoint.start_of_stream()


# -- clocks and time zones -------------------------------------------------------------------


def test_updated_at_is_sqlite_utc_text_with_six_fraction_digits(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    persister.write(*KEY, Checkpoint("1", 1))
    [(text, kind)] = sqlite_store.sql("SELECT updated_at, typeof(updated_at) FROM {table}")
    assert kind == "text"
    assert len(text) == 26
    assert SQLITE_TEXT.fullmatch(text)
    # SQLite's own date functions compare with it (the spec's example).
    recent = "SELECT count(*) FROM {table} WHERE updated_at > datetime('now', '-5 minutes')"
    assert sqlite_store.sql(recent) == [(1,)]
    future = "SELECT count(*) FROM {table} WHERE updated_at > datetime('now', '+5 minutes')"
    assert sqlite_store.sql(future) == [(0,)]
    [record] = persister.list()
    assert record.updated_at == datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_updated_at_comes_from_the_database_clock(store: Store) -> None:
    persister = store.open()
    persister.write(*KEY, Checkpoint("1", 1))
    [record] = persister.list()
    clock = {
        "postgresql": "now()",
        "mysql": "UTC_TIMESTAMP(6)",
        "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    }[store.kind]
    [(database_now,)] = store.sql(f"SELECT {clock}")
    if isinstance(database_now, str):
        database_now = datetime.fromisoformat(database_now)
    if database_now.tzinfo is None:  # SQLite's text, MySQL's DATETIME: UTC
        database_now = database_now.replace(tzinfo=UTC)
    assert record.updated_at is not None
    assert record.updated_at.tzinfo == UTC
    assert timedelta(0) <= database_now - record.updated_at < timedelta(minutes=5)
    # Each write sets it again.
    persister.write(*KEY, Checkpoint("2", 2))
    [later] = persister.list()
    assert later.updated_at is not None
    assert later.updated_at >= record.updated_at


def test_a_row_inserted_by_hand_without_updated_at_gets_the_database_clock(store: Store) -> None:
    """Revision 0002: updated_at defaults to the database's clock on every database."""
    persister = store.open()
    persister.write(*KEY, Checkpoint("1", 1))  # for the time the database stamps a write with
    [written] = persister.list()
    columns = "namespace, name, consumer_group, partition_id, stream_offset, sequence_number"
    values = "'ns.example', 'hub', 'cg', 'by-hand', '42', 42"
    if store.kind == "mysql":
        hashed = "UNHEX(SHA2(CONCAT_WS(X'00', 'ns.example', 'hub', 'cg', 'by-hand'), 256))"
        columns, values = f"key_hash, {columns}", f"{hashed}, {values}"
    store.sql(f"INSERT INTO {{table}} ({columns}) VALUES ({values})")
    by_hand = {r.key.partition_id: r for r in persister.list()}["by-hand"]
    assert by_hand.checkpoint == Checkpoint("42", 42)
    assert by_hand.updated_at is not None
    assert written.updated_at is not None
    assert timedelta(0) <= by_hand.updated_at - written.updated_at < timedelta(minutes=5)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_upserts_take_updated_at_from_the_database_not_from_a_parameter(dialect: Any) -> None:
    statements = statements_for(dialect)
    sa_dialect = sa.make_url(f"{dialect.name}+{dialect.driver}://").get_dialect()()
    for statement in (statements.upsert, statements.upsert_monotonic):
        compiled = statement.compile(dialect=sa_dialect)
        assert "updated_at" not in " ".join(compiled.params)
        if dialect.name == "mysql":
            # The column's default (UTC_TIMESTAMP(6)) on insert, the clock on update.
            columns, update = compiled.string.split("ON DUPLICATE KEY UPDATE", 1)
            assert "updated_at" not in columns
            assert "UTC_TIMESTAMP(6)" in update
            continue
        clock = "now()" if dialect.name == "postgresql" else "strftime("
        values = compiled.string.split("VALUES", 1)[1]
        assert clock in values
        assert "excluded.updated_at" in compiled.string


def test_statements_are_built_once_per_database() -> None:
    for dialect in DIALECTS:
        assert statements_for(dialect) is statements_for(dialect)


def test_sqlite_stores_enqueue_time_as_utc_text(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    when = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=PLUS_TWO)
    persister.write(*KEY, Checkpoint("1", 1, when))
    assert sqlite_store.sql("SELECT enqueue_time FROM {table}") == [("2024-01-01 10:00:00.123456",)]
    assert persister.read(*KEY).enqueue_time == when
    assert persister.read(*KEY).enqueue_time == datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 1, 1, 10, 0, 0, 1, tzinfo=UTC),
        datetime(2024, 1, 1, 10, 0, 0, 999999, tzinfo=UTC),
        datetime(2024, 1, 1, 10, 0, 0, 0, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 3, 31, 2, 30, 0, 500000, tzinfo=timezone(timedelta(hours=-7))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
    ids=str,
)
def test_enqueue_time_round_trips_to_the_microsecond(store: Store, when: datetime) -> None:
    persister = store.open()
    persister.write(*KEY, Checkpoint("1", 1, when))
    back = persister.read(*KEY).enqueue_time
    assert back == when
    assert back is not None
    assert back.tzinfo == UTC
    assert back.microsecond == when.microsecond
    [record] = persister.list()
    assert record.checkpoint.enqueue_time == when


TOKYO_OPTIONS = "-c TimeZone=Asia/Tokyo"
EXTREME_TIMES = [
    datetime(9999, 12, 31, 23, 0, tzinfo=UTC),  # year 10000 in Tokyo
    datetime(1, 1, 1, 1, 0, tzinfo=UTC),  # year 0 in New York
]


def _session_setting(engine: sa.Engine, name: str) -> str:
    with engine.connect() as connection:
        return str(connection.exec_driver_sql(f"SHOW {name}").scalar_one())


@pytest.mark.postgres
@pytest.mark.parametrize("given_in", ["url", "connect_args"])
def test_postgresql_sessions_are_utc_whatever_the_options_say(
    postgres_store: Store, given_in: str
) -> None:
    url = postgres_store.url
    if given_in == "url":
        persister = SQLPersister(
            f"{url}?options=-c%20TimeZone%3DAsia/Tokyo", schema=postgres_store.schema
        )
    else:
        persister = SQLPersister(
            url, schema=postgres_store.schema, connect_args={"options": TOKYO_OPTIONS}
        )
    postgres_store.opened.append(persister)
    plain = sa.create_engine(url, connect_args={"options": TOKYO_OPTIONS})
    assert _session_setting(plain, "TimeZone") == "Asia/Tokyo"  # the option does work
    plain.dispose()
    assert _session_setting(persister.engine, "TimeZone") == "UTC"
    keys = [KEY._replace(partition_id=str(i)) for i in range(len(EXTREME_TIMES))]
    for key, when in zip(keys, EXTREME_TIMES, strict=True):
        persister.write(*key, Checkpoint("1", 1, when))
        assert persister.read(*key).enqueue_time == when
    assert [r.checkpoint.enqueue_time for r in persister.list()] == EXTREME_TIMES
    persister.write_many(
        {key: Checkpoint("2", 2, when) for key, when in zip(keys, EXTREME_TIMES, strict=True)}
    )
    assert [r.checkpoint for r in persister.list()] == [
        Checkpoint("2", 2, when) for when in EXTREME_TIMES
    ]


@pytest.mark.postgres
def test_postgresql_options_in_the_url_are_kept(postgres_store: Store) -> None:
    schema = postgres_store.schema
    # No schema=: the search_path in the URL's libpq options decides where the table goes.
    with SQLPersister(f"{postgres_store.url}?options=-csearch_path%3D{schema}") as persister:
        assert persister.schema is None
        assert _session_setting(persister.engine, "search_path") == schema
        assert _session_setting(persister.engine, "TimeZone") == "UTC"
        persister.write(*KEY, Checkpoint("1", 1, EXTREME_TIMES[0]))
    assert postgres_store.sql("SELECT stream_offset FROM {table}") == [("1",)]


def test_sqlite_text_written_by_hand_reads_back_as_aware_utc(sqlite_store: Store) -> None:
    sqlite_store.open().close()
    sqlite_store.sql(
        "INSERT INTO {table} (namespace, name, consumer_group, partition_id, stream_offset, "
        "sequence_number, enqueue_time, updated_at) VALUES ('ns.example', 'hub', 'cg', '0', "
        "'5', 5, '2024-01-01 10:00:00.123456', '2024-01-01 10:00:01.000000')"
    )
    persister = sqlite_store.open()
    assert persister.read(*KEY) == Checkpoint(
        "5", 5, datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    )
    [record] = persister.list()
    assert record.updated_at == datetime(2024, 1, 1, 10, 0, 1, tzinfo=UTC)


def test_sqlite_timestamps_are_sqlalchemys_datetime_text_in_utc() -> None:
    """What SQLAlchemy's own SQLite DATETIME would store for the UTC time, through both paths:
    the persister's (to_db) and SQLAlchemy's (the type's bind processor)."""
    sa_dialect = sqlite_dialect.dialect()
    stock = sqlite_dialect.DATETIME().bind_processor(sa_dialect)  # type: ignore[no-untyped-call]
    bind = SQLiteTimestamp().dialect_impl(sa_dialect).bind_processor(sa_dialect)
    assert stock is not None
    assert bind is not None

    def reference(value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive")
        return stock(value.astimezone(UTC).replace(tzinfo=None))  # type: ignore[no-any-return]

    def ours(value: datetime | None) -> str | None:
        return None if value is None else SQLiteTimestamp.to_db(value)

    samples = [
        None,
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(999, 5, 6, 7, 8, 9, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 12, 0, tzinfo=PLUS_TWO),
        datetime(2024, 1, 1, 0, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    for value in samples:
        assert ours(value) == reference(value) == bind(value)
    naive = datetime(2024, 1, 1)
    for convert in (ours, bind):
        with pytest.raises(ValueError, match="naive"):
            convert(naive)


# -- SQLite settings -------------------------------------------------------------------------


def _pragmas(engine: sa.Engine) -> tuple[str, int, int]:
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
        busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    return mode, synchronous, busy


def test_sqlite_engine_uses_wal_full_sync_and_a_busy_timeout(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    assert _pragmas(persister.engine) == ("wal", 2, 5000)  # synchronous 2 is FULL
    # ...and the write connection, kept between calls, has them too.
    persister.write(*KEY, Checkpoint("1", 1))
    kept = persister._connection._kept
    assert kept is not None
    cursor = kept.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    assert cursor.execute("PRAGMA synchronous").fetchone() == (2,)
    assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    cursor.close()


def test_sqlite_url_can_trade_durability_for_speed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fast.db'}?synchronous=normal&busy_timeout=7000"
    with SQLPersister(url) as persister:
        assert _pragmas(persister.engine) == ("wal", 1, 7000)  # 1 is NORMAL
        assert persister.engine.url.query == {}  # not passed on to the driver


@pytest.mark.parametrize("query", ["synchronous=fast", "busy_timeout=-1", "busy_timeout=soon"])
def test_sqlite_url_settings_are_validated(tmp_path: Path, query: str) -> None:
    name = query.split("=", maxsplit=1)[0]
    with pytest.raises(ValueError, match=name):
        SQLPersister(f"sqlite:///{tmp_path / 'x.db'}?{query}")
    assert not (tmp_path / "x.db").exists()


def test_sqlite_write_transactions_take_the_write_lock_first(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    with persister.engine.connect() as connection:
        assert connection.connection.driver_connection.isolation_level == "IMMEDIATE"  # type: ignore[union-attr]


def test_in_memory_sqlite_lives_as_long_as_its_engine() -> None:
    first = SQLPersister("sqlite://")
    assert _pragmas(first.engine)[0] == "memory"
    first.write(*KEY, Checkpoint("1", 1))
    second = SQLPersister(first.engine)
    assert second.read(*KEY) == Checkpoint("1", 1)
    second.close()  # not its engine: the data stays
    assert first.read(*KEY) == Checkpoint("1", 1)
    first.close()
    third = SQLPersister("sqlite://")
    assert third.list() == []
    third.close()


def test_a_callers_engine_is_used_as_is_and_not_disposed(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'own.db'}")
    persister = SQLPersister(engine)
    assert persister.engine is engine
    persister.write(*KEY, Checkpoint("1", 1))
    assert _pragmas(engine)[0] == "delete"  # our settings are only for engines we create
    persister.close()
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.checkedin() > 0  # not disposed
    engine.dispose()


def test_close_disposes_an_engine_it_created(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    persister.write(*KEY, Checkpoint("1", 1))
    persister.read(*KEY)
    pool = persister.engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedin() > 0
    persister.close()
    assert pool.checkedin() == 0
    with pytest.raises(PersistError, match="closed"):
        persister.read(*KEY)


def test_engine_options_reach_create_engine_and_refuse_an_engine(sqlite_store: Store) -> None:
    persister = SQLPersister(sqlite_store.url, pool_size=2, echo=False)
    assert isinstance(persister.engine.pool, QueuePool)
    assert persister.engine.pool.size() == 2
    with pytest.raises(TypeError, match="pool_size"):
        SQLPersister(persister.engine, pool_size=2)
    persister.close()


def test_arguments_are_type_checked(sqlite_store: Store) -> None:
    with pytest.raises(TypeError, match="migrate"):
        SQLPersister(sqlite_store.url, migrate="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="monotonic"):
        SQLPersister(sqlite_store.url, monotonic=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="url_or_engine"):
        SQLPersister(42)  # type: ignore[arg-type]


def test_unsupported_engines_are_refused_before_connecting() -> None:
    import pymysql

    # MySQL through the mysqlclient dialect (PyMySQL standing in for its module): not supported.
    engine = sa.create_engine("mysql+mysqldb://root@127.0.0.1:1/none", module=pymysql)
    with pytest.raises(ValueError, match=r"mysql\+mysqldb.*supported: .*mysql through pymysql"):
        SQLPersister(engine)
    engine.dispose()


def _in_another_thread(call: Callable[[], object]) -> object:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    thread.join()
    assert len(results) == 1, "the call failed in its thread"
    return results[0]


def test_a_default_in_memory_engine_is_refused_naming_the_fix() -> None:
    engine = sa.create_engine("sqlite://")
    assert isinstance(engine.pool, SingletonThreadPool)  # SQLAlchemy's default for it
    with pytest.raises(ValueError, match=r"SingletonThreadPool.*StaticPool.*check_same_thread"):
        SQLPersister(engine)
    engine.dispose()

    fixed = sa.create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    persister = SQLPersister(fixed)
    _in_another_thread(lambda: persister.write(*KEY, Checkpoint("1", 1)))
    assert persister.read(*KEY) == Checkpoint("1", 1)
    assert _in_another_thread(lambda: persister.read(*KEY)) == Checkpoint("1", 1)
    persister.close()
    fixed.dispose()


def test_a_file_engine_with_singleton_thread_pool_is_accepted(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'c.db'}", poolclass=SingletonThreadPool)
    persister = SQLPersister(engine)  # one connection per thread, all to the same file
    _in_another_thread(lambda: persister.write(*KEY, Checkpoint("1", 1)))
    assert persister.read(*KEY) == Checkpoint("1", 1)
    persister.close()
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("isolation_level", ["AUTOCOMMIT", None])
def test_a_callers_postgresql_engine_keeps_its_transaction_mode(
    postgres_store: Store, isolation_level: str | None
) -> None:
    """The persister switches connections to autocommit; the caller gets back what it had."""
    options = {"isolation_level": isolation_level} if isolation_level else {}
    engine = sa.create_engine(postgres_store.url, pool_size=1, max_overflow=0, **options)
    app_table = f'"{postgres_store.schema}".app'
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE TABLE {app_table} (x int)")
        persister = SQLPersister(engine, schema=postgres_store.schema)
        persister.write(*KEY, Checkpoint("1", 1))
        persister.write_many({KEY._replace(partition_id="1"): Checkpoint("2", 2)})
        # A call that finds the kept connection busy takes the pool's connection for itself.
        with persister._connection._lock:
            persister.write(*KEY, Checkpoint("3", 3))
            persister.write_many({KEY: Checkpoint("4", 4)})
        assert persister.read(*KEY) == Checkpoint("4", 4)
        persister.close()
        with engine.connect() as app:  # the pool's one connection, which the persister used
            app.exec_driver_sql(f"INSERT INTO {app_table} VALUES (1)")  # and no commit
        with engine.connect() as app:
            count = app.exec_driver_sql(f"SELECT count(*) FROM {app_table}").scalar_one()
    finally:
        engine.dispose()
    assert count == (1 if isolation_level == "AUTOCOMMIT" else 0)


# -- concurrency within one host -----------------------------------------------------------


def _run_threads(count: int, body: Callable[[int], None]) -> list[BaseException]:
    return run_concurrently([functools.partial(body, i) for i in range(count)])


def test_two_persisters_on_one_file_write_transactions_without_locked_errors(
    sqlite_store: Store,
) -> None:
    persisters = [sqlite_store.open(), sqlite_store.open()]
    reader = sqlite_store.open()

    def body(index: int) -> None:
        if index == 2:
            for _ in range(30):
                reader.list()
            return
        persister = persisters[index]
        for round_number in range(30):
            batch = {
                KEY._replace(partition_id=f"{index}-{p}"): Checkpoint(
                    str(round_number), round_number
                )
                for p in range(10)
            }
            persister.write_many(batch)
            persister.write(*KEY._replace(partition_id=f"{index}-single"), Checkpoint("1", 1))

    assert _run_threads(3, body) == []
    records = reader.list()
    assert len(records) == 22
    assert {
        r.checkpoint.sequence_number for r in records if "single" not in r.key.partition_id
    } == {29}


def test_threads_share_one_persister(store: Store) -> None:
    persister = store.open()

    def body(index: int) -> None:
        for i in range(40):
            persister.write(*KEY._replace(partition_id=str(index)), Checkpoint(str(i), i))
            assert persister.read(*KEY._replace(partition_id=str(index))).sequence_number == i

    assert _run_threads(6, body) == []
    assert {r.key.partition_id: r.checkpoint.sequence_number for r in persister.list()} == {
        str(i): 39 for i in range(6)
    }


def test_sqlite_writes_of_threads_wait_for_the_kept_connection_at_most_busy_timeout(
    tmp_path: Path,
) -> None:
    """On SQLite a thread's write waits for the persister's connection (woken when it is free)
    instead of sleeping in SQLite's busy handler on a connection of its own, and no longer than
    busy_timeout; reads still take another connection."""
    persister = SQLPersister(f"sqlite:///{tmp_path / 'c.db'}?busy_timeout=300")
    persister.write(*KEY, Checkpoint("1", 1))
    pool = persister.engine.pool
    assert isinstance(pool, sa.pool.QueuePool)
    with persister._connection._lock:  # another thread's call in progress on the kept one
        started = time.monotonic()
        with pytest.raises(PersistError, match=r"waited 0\.3 s for this persister's other calls"):
            persister.write(*KEY, Checkpoint("2", 2))
        assert 0.3 <= time.monotonic() - started < 3
        assert persister.read(*KEY) == Checkpoint("1", 1)  # on a pool connection
        assert pool.checkedout() == 0  # and back
        done = threading.Event()

        def write_then_say_so() -> None:
            persister.write(*KEY, Checkpoint("3", 3))
            done.set()

        writer = threading.Thread(target=write_then_say_so)
        writer.start()
        assert not done.wait(0.1)  # waiting for the kept connection
    writer.join(timeout=10)
    assert done.is_set()
    assert persister.read(*KEY) == Checkpoint("3", 3)
    persister.close()


def test_threads_share_an_in_memory_database() -> None:
    first = SQLPersister("sqlite://", monotonic=True)
    second = SQLPersister(first.engine, monotonic=True)

    def body(index: int) -> None:
        persister = (first, second)[index % 2]
        for i in range(30):
            persister.write_many({KEY._replace(partition_id=f"t{index}"): Checkpoint(str(i), i)})
            with contextlib.suppress(CheckpointRegressionError):
                persister.write(*KEY, Checkpoint(str(i), i * 10 + index))
            persister.list()

    assert _run_threads(4, body) == []
    assert first.read(*KEY).sequence_number == max(29 * 10 + i for i in range(4))
    assert len(first.list()) == 5
    second.close()
    first.close()


# -- monotonic: one statement --------------------------------------------------------------


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize("monotonic", [True, False])
def test_monotonic_upsert_reports_its_verdict_in_the_row_count(
    store: Store, monotonic: bool
) -> None:
    """Executed through SQLAlchemy as an asyncio persister would; PostgreSQL needs an option."""
    persister = store.open()
    dialect = PostgreSQLDialect() if store.kind == "postgresql" else SQLiteDialect()
    statements = statements_for(dialect)
    statement = statements.upsert_monotonic if monotonic else statements.upsert
    # SQLAlchemy keeps an INSERT's row count on PostgreSQL only when asked (preserve_rowcount).
    options: dict[str, Any] = {"preserve_rowcount": True}
    if store.schema:
        options["schema_translate_map"] = {None: store.schema}
    engine = persister.engine.execution_options(**options)
    counts = []
    for sequence_number in (5, 6, 6, 3):
        with engine.begin() as connection:
            result = connection.execute(
                statement, write_params(dialect, Checkpoint("x", sequence_number))
            )
            counts.append(result.rowcount)
    if monotonic:
        assert counts == [1, 1, 1, 0]
        assert persister.read(*KEY).sequence_number == 6
    else:
        assert counts == [1, 1, 1, 1]
        assert persister.read(*KEY).sequence_number == 3


def test_mysql_monotonic_upsert_leaves_a_row_ahead_untouched(mysql_store: Store) -> None:
    """ON DUPLICATE KEY UPDATE has no WHERE: every column must keep its value, updated_at too."""
    persister = mysql_store.open()
    persister.write(*KEY, Checkpoint("6", 6, datetime(2024, 1, 1, tzinfo=UTC)))
    before = mysql_store.sql(
        "SELECT stream_offset, sequence_number, enqueue_time, updated_at FROM {table}"
    )
    statement = statements_for(MySQLDialect()).upsert_monotonic
    with persister.engine.begin() as connection:
        connection.execute(statement, write_params(MySQLDialect(), Checkpoint("3", 3)))
    after = mysql_store.sql(
        "SELECT stream_offset, sequence_number, enqueue_time, updated_at FROM {table}"
    )
    assert after == before


def test_monotonic_refusal_names_the_first_regressed_key_of_a_batch(store: Store) -> None:
    persister = store.open(monotonic=True)
    keys = [KEY._replace(partition_id=str(i)) for i in range(5)]
    persister.write_many({k: Checkpoint("10", 10) for k in keys})
    persister.write(*keys[3], Checkpoint("50", 50))
    batch = {k: Checkpoint("20", 20) for k in keys}
    with pytest.raises(CheckpointRegressionError) as caught:
        persister.write_many(batch)
    assert caught.value.key == keys[3]
    assert caught.value.stored == Checkpoint("50", 50)
    assert caught.value.refused == Checkpoint("20", 20)
    assert [r.checkpoint.sequence_number for r in persister.list()] == [10, 10, 10, 50, 10]


def test_monotonic_write_after_a_concurrent_delete_is_written(store: Store) -> None:
    """A refusal is checked against the stored row; if it is gone, the write goes through."""
    persister = store.open(monotonic=True)
    persister.write(*KEY, Checkpoint("9", 9))
    persister.delete(*KEY)
    persister.write(*KEY, Checkpoint("1", 1))
    assert persister.read(*KEY) == Checkpoint("1", 1)


# -- failures ------------------------------------------------------------------------------


def test_unreachable_server_is_a_connection_error_with_the_password_masked() -> None:
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x"
    with pytest.raises(PersistConnectionError) as caught:
        SQLPersister(url, connect_args={"connect_timeout": 3})
    message = str(caught.value)
    assert "s3cret" not in message
    assert "postgres:***@127.0.0.1:1/x" in message
    assert caught.value.__cause__ is not None


@pytest.fixture
def postgres_database() -> Iterator[tuple[str, str, sa.Engine]]:
    """A new PostgreSQL database: yields its name, a URL with a password, and an admin engine.

    The URL's application_name is the database's name, to find its backends.
    """
    base = require_server(POSTGRES_URL)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"sc_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(base).set(password="s3cret", database=name)
    url = url.update_query_dict({"application_name": name})
    try:
        yield name, url.render_as_string(hide_password=False), admin
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _terminate(admin: sa.Engine, application_name: str) -> int:
    """Terminate every backend of ``application_name``; return how many there were."""
    with admin.connect() as connection:
        return int(
            connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": application_name},
            ).scalar_one()
        )


@pytest.mark.postgres
def test_a_lost_server_is_a_connection_error_and_the_next_call_reconnects(
    postgres_database: tuple[str, str, sa.Engine],
) -> None:
    name, url, admin = postgres_database
    persister = SQLPersister(url)
    persister.write(*KEY, Checkpoint("1", 1))
    persister.read(*KEY)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    assert _terminate(admin, name) >= 1
    calls: list[Callable[[], object]] = [
        lambda: persister.write(*KEY, Checkpoint("2", 2)),
        lambda: persister.write_many({KEY: Checkpoint("2", 2)}),
        lambda: persister.read(*KEY),
        persister.list,
        lambda: persister.delete(*KEY),
    ]
    for call in calls:
        with pytest.raises(PersistConnectionError) as caught:
            call()
        message = str(caught.value)
        assert "s3cret" not in message
        assert f"postgres:***@127.0.0.1:5432/{name}" in message
        assert isinstance(caught.value.__cause__, Exception)
    assert "partition_id='0'" in str(caught.value)  # delete names its key
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    persister.write(*KEY, Checkpoint("3", 3))
    assert persister.read(*KEY) == Checkpoint("3", 3)
    persister.close()


@pytest.mark.postgres
def test_terminated_backends_between_calls_cost_nothing(
    postgres_database: tuple[str, str, sa.Engine], caplog: pytest.LogCaptureFixture
) -> None:
    name, url, admin = postgres_database
    caplog.set_level("INFO", logger="streamcheckpoint")
    persister = SQLPersister(url)
    persister.write(*KEY, Checkpoint("0", 0))
    migrated = [r.getMessage() for r in caplog.records]
    assert any("upgrade from revision none to 0003" in m for m in migrated), migrated
    for i in range(1, 4):
        assert _terminate(admin, name) >= 1
        persister.write(*KEY, Checkpoint(str(i), i))
        _terminate(admin, name)
        assert persister.read(*KEY) == Checkpoint(str(i), i)
        _terminate(admin, name)
        persister.write_many({KEY._replace(partition_id="other"): Checkpoint(str(i), i)})
        _terminate(admin, name)
        assert len(persister.list()) == 2
    _terminate(admin, name)
    assert persister.delete(*KEY._replace(partition_id="other")) == 1
    persister.close()
    lost = [r for r in caplog.records if "lost the connection" in r.getMessage()]
    assert len(lost) >= 13  # each call after a termination, logged as a warning
    assert {r.levelname for r in lost} == {"WARNING"}
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "postgres:***@" in messages
    assert "s3cret" not in messages


@pytest.mark.postgres
def test_terminated_backends_mid_run_cost_at_most_the_call_in_flight(
    postgres_database: tuple[str, str, sa.Engine],
) -> None:
    name, url, admin = postgres_database
    persister = SQLPersister(url, monotonic=True)
    persister.write(*KEY, Checkpoint("0", 0))
    rounds = 15
    done = threading.Event()
    failures: list[BaseException] = []
    acknowledged = 0

    def terminator() -> None:
        try:
            for _ in range(rounds):
                _terminate(admin, name)
                done.wait(0.02)  # pacing only; nothing is asserted about timing
        finally:
            done.set()

    thread = threading.Thread(target=terminator)
    thread.start()
    sequence_number = 0
    while not done.is_set():
        sequence_number += 1
        try:
            if sequence_number % 3:
                persister.write(*KEY, Checkpoint(str(sequence_number), sequence_number))
            else:
                persister.write_many({KEY: Checkpoint(str(sequence_number), sequence_number)})
            acknowledged = sequence_number
        except PersistError as exc:
            failures.append(exc)
    thread.join()
    # Each round ends the connections of that moment: at most the one call in flight fails.
    assert len(failures) <= rounds
    assert all(isinstance(f, PersistConnectionError) for f in failures), failures
    assert persister.read(*KEY).sequence_number >= acknowledged
    persister.write(*KEY, Checkpoint("last", sequence_number + 1))
    assert persister.read(*KEY) == Checkpoint("last", sequence_number + 1)
    persister.close()


def test_missing_table_is_a_schema_error_naming_key_and_command(store: Store) -> None:
    persister = store.open()
    persister.write(*KEY, Checkpoint("1", 1))
    store.sql("DROP TABLE {table}")
    for call in (
        lambda: persister.write(*KEY, Checkpoint("2", 2)),
        lambda: persister.read(*KEY),
    ):
        with pytest.raises(SchemaError) as caught:
            call()
        assert "partition_id='0'" in str(caught.value)
        assert "upgrade" in str(caught.value)
        assert caught.value.__cause__ is not None
    with pytest.raises(SchemaError):
        persister.list()


def test_other_driver_errors_are_persist_errors_and_nothing_is_half_written(
    sqlite_store: Store,
) -> None:
    persister = sqlite_store.open()
    sqlite_store.sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints WHEN NEW.partition_id = '3' "
        "BEGIN SELECT RAISE(ABORT, 'partition 3 is refused'); END"
    )
    batch = {KEY._replace(partition_id=str(i)): Checkpoint(str(i), i) for i in range(6)}
    with pytest.raises(PersistError) as caught:
        persister.write_many(batch)
    assert type(caught.value) is PersistError
    assert "partition 3 is refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert persister.list() == []  # the batch was rolled back as a whole
    with pytest.raises(PersistError, match="partition_id='3'"):
        persister.write(*KEY._replace(partition_id="3"), Checkpoint("1", 1))
    persister.write(*KEY, Checkpoint("1", 1))  # the kept connection is still usable
    assert persister.read(*KEY) == Checkpoint("1", 1)


@pytest.mark.postgres
def test_postgresql_write_many_is_all_or_nothing_on_a_driver_error(postgres_store: Store) -> None:
    import psycopg

    persister = postgres_store.open()
    persister.write(*KEY, Checkpoint("old", 1))
    refuse = f'"{postgres_store.schema}".refuse'
    postgres_store.sql(
        f"CREATE FUNCTION {refuse}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.partition_id = '3' THEN RAISE EXCEPTION 'partition 3 is refused'; END IF; "
        "RETURN NEW; END $$"
    )
    postgres_store.sql(
        f"CREATE TRIGGER refuse BEFORE INSERT ON {{table}} FOR EACH ROW EXECUTE FUNCTION {refuse}()"
    )
    batch = {KEY._replace(partition_id=str(i)): Checkpoint(str(i), i + 10) for i in range(6)}
    with pytest.raises(PersistError) as caught:
        persister.write_many(batch)
    assert type(caught.value) is PersistError
    assert "partition 3 is refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.errors.RaiseException)
    # Rolled back as a whole: partition 0's update and the rows before 3 are not there.
    assert [record.key for record in persister.list()] == [KEY]
    assert persister.read(*KEY) == Checkpoint("old", 1)
    # The persister goes on working, on the same kept connection or a new one.
    persister.write(*KEY, Checkpoint("new", 2))
    del batch[KEY._replace(partition_id="3")]
    persister.write_many(batch)
    assert len(persister.list()) == 5
    assert persister.read(*KEY) == Checkpoint("0", 10)


def test_calls_that_were_past_the_open_check_when_close_ran_fail(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    persister.write(*KEY, Checkpoint("1", 1))
    persister.close()
    # What a thread that passed write()'s open check just before close() goes on to run:
    late_calls: list[Callable[[], object]] = [
        lambda: persister._write(KEY, Checkpoint("2", 2)),
        lambda: persister._write_many([(KEY, Checkpoint("2", 2))]),
    ]
    for call in late_calls:
        with pytest.raises(PersistError, match="closed"):
            call()
        with persister._connection._lock, pytest.raises(PersistError, match="closed"):
            call()  # the kept connection busy: the call would take one of its own
    assert persister._connection._kept is None  # no connection was kept again after close
    with sqlite_store.open() as again:
        assert again.read(*KEY) == Checkpoint("1", 1)


def test_a_busy_database_waits_instead_of_failing(sqlite_store: Store) -> None:
    persister = sqlite_store.open()
    path = sqlite_store.url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute(
        "INSERT INTO checkpoints (namespace, name, consumer_group, partition_id, stream_offset, "
        "sequence_number, enqueue_time, updated_at) VALUES ('ns.example', 'hub', 'cg', '0', "
        "'held', 1, NULL, "
        "'2024-01-01 00:00:00.000000')"
    )
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        persister.write(*KEY, Checkpoint("after", 2))  # waits for the holder, then wins
    finally:
        release.join()
        holder.close()
    assert persister.read(*KEY) == Checkpoint("after", 2)


def test_opening_waits_for_a_writer_in_the_old_journal_mode(tmp_path: Path) -> None:
    """Switching to WAL fails at once, busy_timeout or not, while such a writer holds its lock."""
    path = tmp_path / "rollback.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    assert holder.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        persister = SQLPersister(f"sqlite:///{path}")  # waits for the holder, then opens
    finally:
        release.join()
        holder.close()
    assert _pragmas(persister.engine)[0] == "wal"
    persister.write(*KEY, Checkpoint("1", 1))
    assert persister.read(*KEY) == Checkpoint("1", 1)
    persister.close()


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("stream_offset", "''", "offset"),
        ("enqueue_time", "'yesterday'", "yesterday"),
        ("sequence_number", "'many'", "sequence_number"),
    ],
)
def test_unreadable_rows_are_corrupt_checkpoint_errors_naming_the_key(
    sqlite_store: Store, column: str, value: str, expected: str
) -> None:
    persister = sqlite_store.open()
    other = KEY._replace(partition_id="1")
    persister.write_many({KEY: Checkpoint("1", 1), other: Checkpoint("2", 2)})
    sqlite_store.sql(f"UPDATE {{table}} SET {column} = {value} WHERE partition_id = '0'")
    for call in (lambda: persister.read(*KEY), persister.list):
        with pytest.raises(CorruptCheckpointError, match=expected) as caught:
            call()
        assert "partition_id='0'" in str(caught.value)
        assert caught.value.key == KEY
    assert persister.read(*other) == Checkpoint("2", 2)
    with pytest.raises(CorruptCheckpointError) as listed:
        persister.list()
    assert [r.key for r in listed.value.records] == [other]  # the rest, readable
    assert [e.key for e in listed.value.unreadable] == [KEY]


@pytest.mark.parametrize("column", ["enqueue_time", "updated_at"])
@pytest.mark.parametrize(
    "value",
    ["infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "10000-01-01 00:00:00+00"],
)
def test_postgresql_timestamps_python_cant_hold_are_corrupt_rows(
    postgres_store: Store, column: str, value: str
) -> None:
    """psycopg can't load them and fails the whole query: each such row is still reported on
    its own, as CorruptCheckpointError naming its key, and the other rows are read."""
    persister = postgres_store.open()
    other = KEY._replace(partition_id="1")
    persister.write_many({KEY: Checkpoint("1", 1), other: Checkpoint("2", 2)})
    postgres_store.sql(f"UPDATE {{table}} SET {column} = '{value}' WHERE partition_id = '0'")
    if column == "enqueue_time":
        with pytest.raises(CorruptCheckpointError, match="partition_id='0'") as read:
            persister.read(*KEY)
        assert read.value.key == KEY
    assert persister.read(*other) == Checkpoint("2", 2)
    with pytest.raises(CorruptCheckpointError, match="partition_id='0'") as listed:
        persister.list()
    assert [r.key for r in listed.value.records] == [other]
    assert [e.key for e in listed.value.unreadable] == [KEY]
    assert persister.delete(*KEY) == 1  # and it can always be deleted
    assert [r.key for r in persister.list()] == [other]


def test_postgresql_empty_offset_is_corrupt(postgres_store: Store) -> None:
    persister = postgres_store.open()
    persister.write(*KEY, Checkpoint("1", 1))
    postgres_store.sql("UPDATE {table} SET stream_offset = ''")
    with pytest.raises(CorruptCheckpointError, match="partition_id='0'"):
        persister.read(*KEY)


# -- validation before SQL -----------------------------------------------------------------


def test_invalid_arguments_are_refused_before_any_sql_runs(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'traced.db'}")
    statements: list[str] = []

    @sa.event.listens_for(engine, "connect")
    def trace(connection: Any, record: Any) -> None:
        connection.set_trace_callback(statements.append)

    persister = SQLPersister(engine, monotonic=True)
    persister.write(*KEY, Checkpoint("1", 1))
    assert any("INSERT INTO checkpoints" in s for s in statements)  # the trace works
    bad_calls: list[Callable[[], object]] = [
        lambda: persister.write("", "hub", "cg", "0", Checkpoint("1", 1)),
        lambda: persister.write("ns", "hub", "cg", "0" * 257, Checkpoint("1", 1)),
        lambda: persister.write("ns", "h\x00b", "cg", "0", Checkpoint("1", 1)),
        lambda: persister.write("ns", "hub", 7, "0", Checkpoint("1", 1)),  # type: ignore[arg-type]
        lambda: persister.write("ns", "hub", "cg", "0", {"offset": "1"}),  # type: ignore[arg-type]
        lambda: persister.write_many(
            [(KEY, Checkpoint("1", 1)), (KEY._replace(partition_id=""), Checkpoint("1", 1))]
        ),
        lambda: persister.write_many([(KEY, Checkpoint("1", 1)), (KEY, Checkpoint("2", 2))]),
        lambda: persister.read("ns", "hub", "cg", ""),
        lambda: persister.list(name=""),
        lambda: persister.delete("ns", "hub", ""),
        lambda: persister.delete("ns", "hub", "cg", "\x00"),
    ]
    for call in bad_calls:
        statements.clear()
        with pytest.raises((TypeError, ValueError)):
            call()
        assert statements == []
    assert persister.list() == [persister.list()[0]]
    persister.close()
    engine.dispose()


def test_batches_over_the_same_keys_in_opposite_orders_do_not_deadlock(store: Store) -> None:
    """Rows are written in key order whatever the order given (PostgreSQL deadlocked before)."""
    persister = store.open()
    keys = [KEY._replace(partition_id=str(i)) for i in range(200)]

    def writer(order: list[PartitionKey]) -> Callable[[], None]:
        def work() -> None:
            for round_number in range(10):
                persister.write_many(
                    [(k, Checkpoint(str(round_number), round_number)) for k in order]
                )

        return work

    assert run_concurrently([writer(keys), writer(keys[::-1])]) == []
    assert {r.checkpoint.sequence_number for r in persister.list()} == {9}


def _kill_mysql_sessions(admin: sa.Engine, database: str) -> int:
    """Kill every session using ``database``; return how many there were."""
    with admin.connect() as connection:
        ids = connection.execute(
            sa.text("SELECT id FROM information_schema.processlist WHERE db = :db"),
            {"db": database},
        ).scalars()
        killed = 0
        for session in ids:
            with contextlib.suppress(sa.exc.DBAPIError):  # it may have ended meanwhile
                connection.execute(sa.text(f"KILL {int(session)}"))
                killed += 1
        return killed


@pytest.mark.mysql
def test_mysql_sessions_killed_between_calls_cost_nothing(mysql_database: str) -> None:
    database = sa.make_url(mysql_database).database
    assert database is not None
    admin = sa.create_engine(sa.make_url(mysql_database).set(database="test"))
    persister = SQLPersister(mysql_database)
    try:
        persister.write(*KEY, Checkpoint("0", 0))
        for i in range(1, 4):
            assert _kill_mysql_sessions(admin, database) >= 1
            persister.write(*KEY, Checkpoint(str(i), i))
            _kill_mysql_sessions(admin, database)
            assert persister.read(*KEY) == Checkpoint(str(i), i)
            _kill_mysql_sessions(admin, database)
            persister.write_many({KEY._replace(partition_id="other"): Checkpoint(str(i), i)})
            _kill_mysql_sessions(admin, database)
            assert len(persister.list()) == 2
    finally:
        persister.close()
        admin.dispose()


@pytest.mark.mysql
def test_mysql_unreachable_server_is_a_connection_error_with_the_password_masked() -> None:
    with pytest.raises(PersistConnectionError) as caught:
        SQLPersister("mysql+pymysql://root:s3cret@127.0.0.1:1/x")
    message = str(caught.value)
    assert "s3cret" not in message
    assert "root:***@127.0.0.1:1/x" in message


def _lock_waits(store: Store) -> int:
    """How many lock waits the database has right now."""
    if store.kind == "mysql":
        query = "SELECT count(*) FROM information_schema.innodb_lock_waits"
    else:
        query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    [(count,)] = store.sql(query)
    return int(count)


@pytest.mark.parametrize(
    "store",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
@pytest.mark.parametrize("monotonic", [False, True], ids=["overwrite", "monotonic"])
def test_a_batch_chosen_as_deadlock_victim_is_run_again(
    store: Store, monotonic: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="streamcheckpoint")
    persister = store.open(monotonic=monotonic)
    first, second = KEY._replace(partition_id="1"), KEY._replace(partition_id="2")
    persister.write_many({first: Checkpoint("0", 0), second: Checkpoint("0", 0)})
    hashed = store.kind == "mysql"
    where = "key_hash = :h" if hashed else "partition_id = :p"

    def row(key: PartitionKey) -> dict[str, Any]:
        return {"h": key_hash(key)} if hashed else {"p": key.partition_id}

    admin = sa.create_engine(store.url)
    other = admin.connect()
    transaction = other.begin()
    # The other transaction has done more work, so MySQL picks the batch as the victim (and
    # PostgreSQL aborts the one that waited longer: the batch, too).
    other.execute(sa.text(f"CREATE TABLE {store.table}_ballast (n INT)"))
    transaction.commit()
    transaction = other.begin()
    other.execute(
        sa.text(f"INSERT INTO {store.table}_ballast (n) VALUES (:n)"),
        [{"n": n} for n in range(500)],
    )
    other.execute(
        sa.text(f"UPDATE {store.table} SET sequence_number = 1 WHERE {where}"), row(second)
    )
    batch = {first: Checkpoint("5", 5), second: Checkpoint("5", 5)}
    failures: list[BaseException] = []
    thread = threading.Thread(target=lambda: _collect(failures, persister.write_many, batch))
    thread.start()  # locks the first row, then waits for the second
    deadline = time.monotonic() + 30
    while _lock_waits(store) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _lock_waits(store) > 0
    other.execute(
        sa.text(f"UPDATE {store.table} SET sequence_number = 1 WHERE {where}"), row(first)
    )
    transaction.commit()
    other.execute(sa.text(f"DROP TABLE {store.table}_ballast"))
    other.commit()
    thread.join()
    other.close()
    admin.dispose()
    assert failures == []
    assert persister.read(*first) == Checkpoint("5", 5)
    assert persister.read(*second) == Checkpoint("5", 5)
    retried = [r for r in caplog.records if "to break a deadlock" in r.getMessage()]
    assert [r.levelname for r in retried] == ["INFO"]
    assert "attempt 2 of 5" in retried[0].getMessage()


def _collect(failures: list[BaseException], call: Callable[..., object], *args: object) -> None:
    try:
        call(*args)
    except BaseException as exc:  # the test asserts on it
        failures.append(exc)


@pytest.mark.mysql
def test_mysql_reads_by_key_whatever_the_connection_character_set(mysql_store: Store) -> None:
    key = KEY._replace(consumer_group="caf\u00e9", partition_id="\u00e9")
    mysql_store.open().write(*key, Checkpoint("1", 1))
    latin1 = SQLPersister(f"{mysql_store.url}?charset=latin1")
    mysql_store.opened.append(latin1)
    assert latin1.read(*key) == Checkpoint("1", 1)
    latin1.write(*key, Checkpoint("2", 2))
    assert mysql_store.open().read(*key) == Checkpoint("2", 2)
    assert latin1.delete(*key) == 1


@pytest.mark.mysql
@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql", "mariadb"])
def test_mysql_table_is_utf8mb4_innodb_in_a_latin1_database(
    mysql_database: str, scheme: str
) -> None:
    url = sa.make_url(mysql_database)
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"ALTER DATABASE `{url.database}` CHARACTER SET latin1"))
    admin.dispose()
    key = KEY._replace(partition_id="\U0001f600")
    with SQLPersister(url.set(drivername=scheme).render_as_string(hide_password=False)) as p:
        p.write(*key, Checkpoint("offset \U0001f680", 1))
        assert p.read(*key) == Checkpoint("offset \U0001f680", 1)
        with p.engine.connect() as connection:
            [(engine, collation)] = connection.execute(
                sa.text(
                    "SELECT engine, table_collation FROM information_schema.tables "
                    "WHERE table_schema = :db AND table_name = 'checkpoints'"
                ),
                {"db": url.database},
            ).all()
    assert (engine, collation.split("_")[0]) == ("InnoDB", "utf8mb4")


@pytest.mark.mysql
def test_mysql_url_without_a_database_is_refused_naming_the_fix(mysql_database: str) -> None:
    server = sa.make_url(mysql_database)._replace(database=None)
    url = server.render_as_string(hide_password=False)
    with pytest.raises(ValueError, match="names no database: add one"):
        SQLPersister(url)
    with pytest.raises(SchemaError, match="db upgrade"):
        SQLPersister(url, schema="sc_nowhere", migrate=False)
    # Migrating creates the database it is told to use, quoted as MySQL quotes.
    created = f"sc_made_{uuid.uuid4().hex[:8]}"
    try:
        with SQLPersister(url, schema=created) as persister:
            persister.write(*KEY, Checkpoint("1", 1))
            assert persister.read(*KEY) == Checkpoint("1", 1)
    finally:
        admin = sa.create_engine(mysql_database)
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{created}`")
        admin.dispose()
    # Naming the database by schema= works; the table lives there.
    database = sa.make_url(mysql_database).database
    with SQLPersister(url, schema=database) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
    with SQLPersister(mysql_database) as persister:
        assert persister.read(*KEY) == Checkpoint("1", 1)
