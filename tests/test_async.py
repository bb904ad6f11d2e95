"""The asyncio API (``AsyncPersister``, ``AsyncSQLPersister``) on real backends.

pytest-asyncio isn't a dependency: each test is a plain test running its coroutine with
``asyncio.run``. Where a test must know that a call is really waiting inside the database (its
thread holds up behind another connection's lock), it polls the database for that state; the
moments that matter are signalled with events, never guessed with sleeps.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

import streamcheckpoint
from conftest import make_backend
from streamcheckpoint import (
    AsyncPersister,
    AsyncSQLPersister,
    BasePersister,
    Checkpoint,
    CheckpointRegressionError,
    MemoryPersister,
    PartitionKey,
    PersistConnectionError,
    PersistError,
    SchemaError,
    SQLPersister,
    open_async_persister,
    open_persister,
)
from streamcheckpoint.sql import connection as connection_module

T = TypeVar("T")
UTC = timezone.utc
NS, HUB, CG = "ns.example", "hub", "cg"
UNREACHABLE_URL = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"
WAIT_LIMIT = 60.0  # seconds; only reached when the code under test is broken


def key(partition_id: str = "0", group: str = CG) -> PartitionKey:
    return PartitionKey(NS, HUB, group, partition_id)


def outcome(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    """The type and message of what ``call`` raises (it must raise)."""
    try:
        call()
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("the call did not raise")


async def async_outcome(call: Callable[[], Coroutine[Any, Any, object]]) -> tuple[type, str]:
    """The type and message of what awaiting ``call()`` raises (it must raise)."""
    try:
        await call()
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("the call did not raise")


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a state only the database knows) while letting the loop run."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        await asyncio.sleep(0.005)


async def wait_for_event(event: threading.Event, what: str) -> None:
    """Wait (in a thread, so the loop runs meanwhile) until a worker thread sets ``event``."""
    if not await asyncio.to_thread(event.wait, WAIT_LIMIT):
        raise AssertionError(f"gave up waiting until {what}")


def wait_for_gate(gate: threading.Event) -> None:
    """Wait (in a worker thread) until the test opens ``gate``."""
    if not gate.wait(WAIT_LIMIT):
        raise AssertionError("the test never opened the gate")


async def settle(task: asyncio.Task[T]) -> T | None:
    """Await ``task``; None if it was cancelled."""
    try:
        return await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # this test itself was cancelled
        return None


def sync_closed(persister: AsyncPersister[Any]) -> bool:
    return bool(persister.sync.closed)


async def stored(persister: AsyncPersister[Any]) -> dict[PartitionKey, Checkpoint]:
    return {record.key: record.checkpoint for record in await persister.list()}


# -- backends ------------------------------------------------------------------------------


@dataclass
class AsyncBackend:
    """One store: ``open()`` gives an async persister, ``open_sync()`` a synchronous one.

    ``shared``: whether they see the same store (not so for in-memory SQLite, where each
    persister made from ``sqlite://`` has a database of its own).
    """

    name: str
    make_async: Callable[..., AsyncPersister[Any]]
    make_sync: Callable[..., BasePersister]
    shared: bool = True
    opened: list[AsyncPersister[Any]] = field(default_factory=list)
    opened_sync: list[BasePersister] = field(default_factory=list)

    def open(self, **options: Any) -> AsyncPersister[Any]:
        persister = self.make_async(**options)
        self.opened.append(persister)
        return persister

    def open_sync(self, **options: Any) -> BasePersister:
        persister = self.make_sync(**options)
        self.opened_sync.append(persister)
        return persister

    def close_all(self) -> None:
        async def close() -> None:
            for persister in self.opened:
                await persister.close()

        asyncio.run(close())
        for persister in self.opened_sync:
            persister.close()


ASYNC_BACKENDS = [
    "memory",
    "file-nested",
    "sqlite-file",
    "sqlite-memory",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
DURABLE_SQL_BACKENDS = [
    "sqlite-file",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
SQL_BACKENDS = [
    "sqlite-file",
    "sqlite-memory",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


def make_async_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncBackend:
    """Memory and files: AsyncPersister around conftest's backend; SQL: AsyncSQLPersister."""
    if name in ("memory", "file-nested"):
        backend = make_backend(name, tmp_path, request)
        request.addfinalizer(backend.close_all)
        return AsyncBackend(name, lambda **kw: AsyncPersister(backend.open(**kw)), backend.open)
    if name == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'checkpoints.db'}"
        return AsyncBackend(
            name,
            lambda **kw: AsyncSQLPersister(url, **kw),
            lambda **kw: SQLPersister(url, **kw),
        )
    if name == "sqlite-memory":
        return AsyncBackend(
            name,
            lambda **kw: AsyncSQLPersister("sqlite://", **kw),
            lambda **kw: SQLPersister("sqlite://", **kw),
            shared=False,
        )
    if name == "postgresql":
        pg_url, schema = request.getfixturevalue("postgres_schema")
        return AsyncBackend(
            name,
            lambda **kw: AsyncSQLPersister(pg_url, schema=schema, **kw),
            lambda **kw: SQLPersister(pg_url, schema=schema, **kw),
        )
    if name == "mysql":
        my_url = request.getfixturevalue("mysql_database")
        return AsyncBackend(
            name,
            lambda **kw: AsyncSQLPersister(my_url, **kw),
            lambda **kw: SQLPersister(my_url, **kw),
        )
    raise AssertionError(f"unknown backend {name}")


def _async_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AsyncBackend]:
    backend = make_async_backend(request.param, tmp_path, request)
    try:
        yield backend
    finally:
        backend.close_all()


@pytest.fixture(params=ASYNC_BACKENDS)
def async_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AsyncBackend]:
    """Every backend in turn, through the asyncio API."""
    yield from _async_backend(request, tmp_path)


@pytest.fixture(params=SQL_BACKENDS)
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AsyncBackend]:
    """The SQL backends, through AsyncSQLPersister."""
    yield from _async_backend(request, tmp_path)


@pytest.fixture(params=DURABLE_SQL_BACKENDS)
def durable_sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AsyncBackend]:
    """The SQL backends a second engine can reach (a SQLite file, PostgreSQL)."""
    yield from _async_backend(request, tmp_path)


# -- the contract --------------------------------------------------------------------------


def test_every_method_round_trips(async_backend: AsyncBackend) -> None:
    when = datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=UTC)

    async def main() -> None:
        store = async_backend.open()
        assert await store.read(*key("0")) == Checkpoint.start_of_stream()
        await store.write(*key("0"), Checkpoint("120", 22, when))
        assert await store.read(*key("0")) == Checkpoint("120", 22, when)

        batch = {key(str(p)): Checkpoint(str(p * 10), p) for p in (1, 2, 10)}
        await store.write_many(batch)
        other = {key("0", group="other"): Checkpoint("o", 1)}
        plain = ((tuple(k), cp) for k, cp in other.items())  # keys as plain 4-tuples
        await store.write_many(plain)  # type: ignore[arg-type]
        await store.write_many([])
        everything = {key("0"): Checkpoint("120", 22, when), **batch, **other}
        assert await stored(store) == everything

        in_group = await store.list(NS, HUB, CG)
        assert [r.key.partition_id for r in in_group] == ["0", "1", "2", "10"]  # natural order
        assert all(r.updated_at is not None and r.updated_at.tzinfo is not None for r in in_group)
        assert len(await store.list(NS)) == len(await store.list(NS, HUB)) == 5
        assert await store.list("elsewhere") == []

        assert await store.delete(NS, HUB, CG, "2") == 1
        assert await store.delete(NS, HUB, CG, "2") == 0
        assert await store.read(*key("2")) == Checkpoint.start_of_stream()
        assert await store.delete(NS, HUB, CG) == 3
        assert await stored(store) == other

        if async_backend.shared:  # the sync API over the same store sees the same data
            sync = async_backend.open_sync()
            assert {r.key: r.checkpoint for r in sync.list()} == other
            sync.write(*key("5"), Checkpoint("5", 5))
            assert await store.read(*key("5")) == Checkpoint("5", 5)

    asyncio.run(main())


def test_write_many_takes_its_items_when_called(async_backend: AsyncBackend) -> None:
    consumed_on: list[threading.Thread] = []

    def pairs() -> Iterator[tuple[PartitionKey, Checkpoint]]:
        consumed_on.append(threading.current_thread())
        yield key("1"), Checkpoint("1", 1)

    async def main() -> None:
        store = async_backend.open()
        items = {key("0"): Checkpoint("0", 0)}
        task = asyncio.create_task(store.write_many(items))
        await asyncio.sleep(0)  # the call is made: its thread may not have started yet
        items.clear()
        items[key("9")] = Checkpoint("9", 9)
        await task
        await store.write_many(pairs())
        assert consumed_on == [threading.main_thread()]  # the generator ran on the loop
        assert await stored(store) == {key("0"): Checkpoint("0", 0), key("1"): Checkpoint("1", 1)}

    asyncio.run(main())


def test_write_many_copies_the_lists_in_its_items() -> None:
    held = HeldMemoryPersister()

    async def main() -> None:
        store = AsyncPersister(held, max_workers=1)
        blocker = asyncio.create_task(store.write(*key("9"), GOOD))
        await wait_for_event(held.writing, "the only worker thread is busy")
        pair: list[Any] = [list(key("0")), Checkpoint("old", 1)]  # a list pair, a list key
        in_tuple = (list(key("1")), Checkpoint("one", 1))
        batch = asyncio.create_task(store.write_many([pair, in_tuple]))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the call is made; its items wait for the worker thread
        pair[0][3], pair[1] = "changed", Checkpoint("new", 2)
        in_tuple[0][3] = "changed too"
        held.release.set()
        await asyncio.gather(blocker, batch)
        assert await stored(store) == {
            key("0"): Checkpoint("old", 1),
            key("1"): Checkpoint("one", 1),
            key("9"): GOOD,
        }
        await store.close()

    asyncio.run(main())


def test_a_missing_key_reads_start_of_stream(async_backend: AsyncBackend) -> None:
    async def main() -> None:
        store = async_backend.open()
        await store.write(*key("1"), Checkpoint("5", 5))
        read = await store.read(*key("0"))
        assert read == Checkpoint.start_of_stream()
        assert (read.offset, read.sequence_number, read.enqueue_time) == ("-1", 0, None)

    asyncio.run(main())


def test_monotonic_regression_raises_from_the_await(async_backend: AsyncBackend) -> None:
    async def main() -> None:
        store = async_backend.open(monotonic=True)
        assert store.monotonic is True
        await store.write(*key("0"), Checkpoint("10", 10))
        with pytest.raises(CheckpointRegressionError) as raised:
            await store.write(*key("0"), Checkpoint("5", 5))
        assert raised.value.key == key("0")
        assert raised.value.stored == Checkpoint("10", 10)
        assert raised.value.refused == Checkpoint("5", 5)
        assert await store.read(*key("0")) == Checkpoint("10", 10)

        await store.write(*key("0"), Checkpoint("10b", 10))  # equal is accepted
        with pytest.raises(CheckpointRegressionError):
            await store.write_many({key("1"): Checkpoint("1", 1), key("0"): Checkpoint("9", 9)})
        assert await stored(store) == {key("0"): Checkpoint("10b", 10)}  # the batch: nothing
        await store.write_many({key("1"): Checkpoint("1", 1), key("0"): Checkpoint("11", 11)})
        assert await stored(store) == {key("0"): Checkpoint("11", 11), key("1"): Checkpoint("1", 1)}

    asyncio.run(main())


GOOD = Checkpoint("1", 1)
BAD_CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("int-partition", "write", (NS, HUB, CG, 5, GOOD)),
    ("empty-namespace", "write", ("", HUB, CG, "0", GOOD)),
    ("nul-in-group", "write", (NS, HUB, "c\x00g", "0", GOOD)),
    ("long-name", "write", (NS, "h" * 257, CG, "0", GOOD)),
    ("str-checkpoint", "write", (NS, HUB, CG, "0", "1")),
    ("none-checkpoint", "write", (NS, HUB, CG, "0", None)),
    ("read-int-partition", "read", (NS, HUB, CG, 0)),
    ("read-none-name", "read", (NS, None, CG, "0")),
    ("many-not-iterable", "write_many", (5,)),
    ("many-a-string", "write_many", ("abc",)),
    ("many-bad-checkpoint", "write_many", ([(key("0"), GOOD), (key("1"), "x")],)),
    ("many-key-twice", "write_many", ([(key("0"), GOOD), (key("0"), GOOD)],)),
    ("many-three-part-key", "write_many", ([(key("0"), GOOD), ((NS, HUB, CG), GOOD)],)),
    ("many-not-a-pair", "write_many", ([(key("0"), GOOD), key("1")],)),
    ("many-empty-partition", "write_many", ({key("0"): GOOD, key(""): GOOD},)),
    ("many-list-pair-short-key", "write_many", ([[[NS, HUB, CG], GOOD]],)),
    ("many-list-pair-bad-checkpoint", "write_many", ([[list(key("0")), "x"]],)),
    ("many-list-of-three", "write_many", ([[list(key("0")), GOOD, GOOD]],)),
    ("list-empty-name", "list", (None, "")),
    ("list-int", "list", (5,)),
    ("delete-int-partition", "delete", (NS, HUB, CG, 7)),
    ("delete-no-group", "delete", (NS, HUB, None)),
    ("delete-empty-namespace", "delete", ("", HUB, CG)),
]


@pytest.mark.parametrize(
    ("method", "args"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_arguments_raise_what_the_sync_api_raises(
    async_backend: AsyncBackend, method: str, args: tuple[Any, ...]
) -> None:
    expected = outcome(lambda: getattr(async_backend.open_sync(), method)(*args))
    assert issubclass(expected[0], (TypeError, ValueError))

    async def main() -> None:
        store = async_backend.open()
        assert await async_outcome(lambda: getattr(store, method)(*args)) == expected
        assert await store.list() == []  # nothing stored, not even the good items

    asyncio.run(main())


# write_many's items are checked in the worker thread (a large batch would hold the loop up).
CHECKED_IN_THE_THREAD = {name for name, method, _ in BAD_CALLS if method == "write_many"} - {
    "many-not-iterable",
    "many-a-string",
}


@pytest.mark.parametrize(
    ("method", "args"),
    [c[1:] for c in BAD_CALLS if c[0] not in CHECKED_IN_THE_THREAD],
    ids=[c[0] for c in BAD_CALLS if c[0] not in CHECKED_IN_THE_THREAD],
)
def test_bad_arguments_are_refused_before_anything_is_queued(
    method: str, args: tuple[Any, ...]
) -> None:
    # The server can't be reached: if the call were queued, opening would fail first.
    async def main() -> None:
        store = AsyncSQLPersister(UNREACHABLE_URL)
        error, _ = await async_outcome(lambda: getattr(store, method)(*args))
        assert issubclass(error, (TypeError, ValueError))
        assert not issubclass(error, PersistError)
        assert "not open yet" in repr(store)
        await store.close()

    asyncio.run(main())


# -- the loop is never blocked -------------------------------------------------------------


@dataclass
class HeldStore:
    """A SQL store whose writes another connection can hold up, and a way to see them wait."""

    name: str
    url: str
    schema: str | None
    database: Path | None = None
    _release: Callable[[], None] | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _valve: threading.Timer | None = None

    def open(self, **options: Any) -> AsyncSQLPersister:
        return AsyncSQLPersister(self.url, schema=self.schema, **options)

    def open_sync(self) -> SQLPersister:
        return SQLPersister(self.url, schema=self.schema)

    def hold(self, held: PartitionKey) -> None:
        """Make writes of ``held`` wait (the row must exist on PostgreSQL).

        The hold ends by itself after WAIT_LIMIT seconds, so that code blocking the event loop
        (which then can't release it) makes the test fail instead of hang.
        """
        self._release = self._hold_sqlite() if self.database is not None else self._hold_row(held)
        self._valve = threading.Timer(WAIT_LIMIT, self.release)
        self._valve.daemon = True
        self._valve.start()

    def _hold_sqlite(self) -> Callable[[], None]:
        assert self.database is not None
        blocker = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")  # the write lock of the whole file

        def release() -> None:
            blocker.execute("COMMIT")
            blocker.close()

        return release

    def _hold_row(self, held: PartitionKey) -> Callable[[], None]:
        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        connection = engine.connect()
        locked = connection.execute(
            sa.text(
                f'SELECT 1 FROM "{self.schema}".checkpoints WHERE namespace = :ns AND '
                "name = :name AND consumer_group = :cg AND partition_id = :pid FOR UPDATE"
            ),
            {"ns": held[0], "name": held[1], "cg": held[2], "pid": held[3]},
        ).all()
        assert locked, "hold() needs the row to exist"

        def release() -> None:
            connection.rollback()
            connection.close()
            engine.dispose()

        return release

    def release(self) -> None:
        with self._guard:
            release, self._release = self._release, None
            if self._valve is not None and threading.current_thread() is not self._valve:
                self._valve.cancel()
            if release is not None:
                release()

    def write_waiting(self) -> bool:
        """Whether one of our writes is waiting for the lock that ``hold`` took."""
        if self.database is not None:
            # A thread inside the persister's statement call, which SQLite's busy handler holds
            # up while hold() has the write lock.
            return any(_in_a_statement(frame) for frame in sys._current_frames().values())
        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                waiting = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND query LIKE :pattern"
                    ),
                    {"pattern": f"%{self.schema}%checkpoints%"},
                ).scalar_one()
        finally:
            engine.dispose()
        return bool(waiting)


def _in_a_statement(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs a statement on the persister's connection."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename == connection_module.__file__ and code.co_name in STATEMENT_CALLS:
            return True
        frame = frame.f_back
    return False


STATEMENT_CALLS = {"on_cursor", "_run_once"}


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def held_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HeldStore]:
    if request.param == "sqlite-file":
        database = tmp_path / "held.db"
        store = HeldStore("sqlite-file", f"sqlite:///{database}", None, database)
    else:
        url, schema = request.getfixturevalue("postgres_schema")
        store = HeldStore("postgresql", url, schema)
    try:
        yield store
    finally:
        store.release()


def test_the_loop_runs_while_a_write_waits_for_a_lock(held_store: HeldStore) -> None:
    async def main() -> None:
        async with held_store.open() as store:
            await store.write(*key("0"), Checkpoint("old", 1))
            held_store.hold(key("0"))
            try:
                write = asyncio.create_task(store.write(*key("0"), Checkpoint("new", 2)))
                await wait_until(held_store.write_waiting, "the write waits for the lock")
                ran = asyncio.Event()

                async def other_work() -> None:
                    ran.set()

                other = asyncio.create_task(other_work())
                await asyncio.wait_for(ran.wait(), WAIT_LIMIT)
                assert not write.done(), "the write finished before the other coroutine ran"
                await other
            finally:
                held_store.release()
            await write
            assert await store.read(*key("0")) == Checkpoint("new", 2)

    asyncio.run(main())


# -- concurrency ---------------------------------------------------------------------------

PARTITIONS = 32
WRITES_EACH = 12


def test_gathered_writes_to_32_partitions_all_land(sql_backend: AsyncBackend) -> None:
    async def main() -> None:
        store = sql_backend.open()

        async def partition(p: int) -> None:
            for sequence in range(WRITES_EACH):
                await store.write(*key(str(p)), Checkpoint(f"{p}:{sequence}", sequence))

        results = await asyncio.gather(
            *(partition(p) for p in range(PARTITIONS)), return_exceptions=True
        )
        assert [r for r in results if r is not None] == []
        last = WRITES_EACH - 1
        assert await stored(store) == {
            key(str(p)): Checkpoint(f"{p}:{last}", last) for p in range(PARTITIONS)
        }

    asyncio.run(main())


def test_gathered_monotonic_writes_keep_the_highest(sql_backend: AsyncBackend) -> None:
    writes = [(p, s) for p in range(PARTITIONS) for s in range(WRITES_EACH)]
    random.Random(7).shuffle(writes)

    async def main() -> None:
        store = sql_backend.open(monotonic=True)
        results = await asyncio.gather(
            *(store.write(*key(str(p)), Checkpoint(f"{p}:{s}", s)) for p, s in writes),
            return_exceptions=True,
        )
        refused = [r for r in results if r is not None]
        # Lower writes arriving after higher ones are refused; nothing else may fail.
        assert all(type(r) is CheckpointRegressionError for r in refused), refused[:3]
        assert len(refused) < len(writes)
        top = WRITES_EACH - 1
        assert await stored(store) == {
            key(str(p)): Checkpoint(f"{p}:{top}", top) for p in range(PARTITIONS)
        }

    asyncio.run(main())


# -- opening AsyncSQLPersister -------------------------------------------------------------


def test_the_constructor_does_no_io(tmp_path: Path) -> None:
    database = tmp_path / "lazy.db"

    async def main() -> None:
        store = AsyncSQLPersister(f"sqlite:///{database}")
        assert not database.exists()
        assert "not open yet" in repr(store)
        for attribute in ("sync", "engine"):
            with pytest.raises(RuntimeError, match=r"not open yet: await its open\(\)"):
                getattr(store, attribute)
        assert store.monotonic is False
        assert await store.open() is store
        assert database.exists()
        assert isinstance(store.engine, sa.Engine)
        assert store.engine.url.database == str(database)
        assert store.sync.engine is store.engine
        await store.close()

    asyncio.run(main())


def test_an_unreachable_server_fails_the_first_call_and_the_next_retries() -> None:
    async def main() -> None:
        store = AsyncSQLPersister(UNREACHABLE_URL)  # returns without connecting
        assert "s3cret" not in repr(store)
        assert "***" in repr(store)
        for _ in range(2):  # a failed open is tried again by the next call
            with pytest.raises(PersistConnectionError) as raised:
                await store.read(*key("0"))
            assert "s3cret" not in str(raised.value)
        with pytest.raises(RuntimeError, match="not open yet"):
            store.engine  # noqa: B018 - the property raises
        await store.close()
        assert "closed" in repr(store)

    asyncio.run(main())


def test_migrate_false_raises_schema_error_naming_the_command_then_retries(
    durable_sql_backend: AsyncBackend,
) -> None:
    sql_backend = durable_sql_backend

    async def main() -> None:
        store = sql_backend.open(migrate=False)  # on an empty database
        with pytest.raises(SchemaError, match=r"db upgrade") as raised:
            await store.write(*key("0"), Checkpoint("1", 1))
        assert "migrate=True" in str(raised.value)
        with pytest.raises(RuntimeError, match="not open yet"):
            store.sync  # noqa: B018 - the property raises
        sql_backend.open_sync().close()  # upgrades the database (migrate=True)
        await store.write(*key("0"), Checkpoint("1", 1))  # the next call opens it
        assert await store.read(*key("0")) == Checkpoint("1", 1)

    asyncio.run(main())


def test_a_bad_url_raises_from_the_constructor_as_sql_persisters_does() -> None:
    expected = outcome(lambda: SQLPersister("not a url"))
    assert expected[0] is ValueError
    assert outcome(lambda: AsyncSQLPersister("not a url")) == expected


BAD_OPTIONS: list[tuple[object, dict[str, Any]]] = [
    (5, {}),
    ("sqlite://", {"monotonic": "yes"}),
    ("sqlite://", {"migrate": 1}),
    ("sqlite://", {"schema": 5}),
]


@pytest.mark.parametrize(("url", "options"), BAD_OPTIONS)
def test_the_constructor_checks_types_as_sql_persister_does(
    url: Any, options: dict[str, Any]
) -> None:
    expected = outcome(lambda: SQLPersister(url, **options))
    assert expected[0] is TypeError
    assert outcome(lambda: AsyncSQLPersister(url, **options)) == expected


@pytest.mark.parametrize(
    ("workers", "error"), [(0, ValueError), ("4", TypeError), (True, TypeError)]
)
def test_max_workers_is_checked(workers: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_workers"):
        AsyncSQLPersister("sqlite://", max_workers=workers)
    with pytest.raises(error, match="max_workers"):
        AsyncPersister(MemoryPersister(), max_workers=workers)


class CountingSQLPersister(AsyncSQLPersister):
    """Counts how many times the synchronous persister is opened."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opens = 0
        self._count_lock = threading.Lock()

    def _create(self) -> SQLPersister:
        with self._count_lock:
            self.opens += 1
        return super()._create()


class GatedSQLPersister(AsyncSQLPersister):
    """Its opening starts, then waits for ``gate`` (a slow connect or migration)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = threading.Event()
        self.gate = threading.Event()
        self.made: list[SQLPersister] = []

    def _create(self) -> SQLPersister:
        self.started.set()
        wait_for_gate(self.gate)
        made = super()._create()
        self.made.append(made)
        return made


@pytest.mark.parametrize("then", ["call", "close"])
def test_an_opening_outlives_the_event_loop_that_started_it(tmp_path: Path, then: str) -> None:
    store = GatedSQLPersister(f"sqlite:///{tmp_path / 'gated.db'}")

    async def first_loop() -> None:
        opening = asyncio.create_task(store.open())
        await wait_for_event(store.started, "the opening started")
        assert not opening.done()
        # Returning ends the loop: asyncio.run cancels the open() waiting for the opening.

    async def next_loop() -> None:
        if then == "call":  # joins the opening still in progress, then uses the store
            read = asyncio.create_task(store.read(*key("0")))
            await asyncio.sleep(0)
            store.gate.set()
            assert await read == Checkpoint.start_of_stream()
            await store.write(*key("0"), GOOD)
            assert await store.read(*key("0")) == GOOD
        else:  # closes what the opening still in progress makes
            store.gate.set()
        await store.close()

    asyncio.run(first_loop())
    try:
        asyncio.run(asyncio.wait_for(next_loop(), WAIT_LIMIT))
    finally:
        store.gate.set()
    assert len(store.made) == 1  # one opening, shared by both loops
    assert store.sync is store.made[0]
    assert store.sync.closed


def test_cancelling_async_with_does_not_wait_for_the_opening(tmp_path: Path) -> None:
    store = GatedSQLPersister(f"sqlite:///{tmp_path / 'gated.db'}")

    async def use() -> None:
        async with store:
            raise AssertionError("entered a store that never opened")

    async def first_loop() -> None:
        task = asyncio.create_task(use())
        await wait_for_event(store.started, "the opening started")
        task.cancel()  # a deadline around the 'async with'
        await asyncio.wait({task}, timeout=WAIT_LIMIT)
        assert task.done(), "the cancelled 'async with' waited for the opening"
        assert task.cancelled()
        assert store.closed
        assert store.made == []  # still opening

    try:
        asyncio.run(first_loop())
    finally:
        store.gate.set()
    # The close begun in the background outlives the loop: it closes what the opening made.
    asyncio.run(store.close())
    assert len(store.made) == 1
    assert store.made[0].closed


def test_concurrent_first_calls_open_once(tmp_path: Path) -> None:
    async def main() -> None:
        store = CountingSQLPersister(f"sqlite:///{tmp_path / 'once.db'}")
        reads = await asyncio.gather(*(store.read(*key(str(p))) for p in range(16)))
        assert reads == [Checkpoint.start_of_stream()] * 16
        assert store.opens == 1
        await store.write(*key("0"), Checkpoint("1", 1))
        assert store.opens == 1
        await store.close()

    asyncio.run(main())


def test_concurrent_first_calls_share_a_failed_open() -> None:
    async def main() -> None:
        store = CountingSQLPersister(UNREACHABLE_URL)
        results = await asyncio.gather(
            *(store.read(*key(str(p))) for p in range(8)), return_exceptions=True
        )
        assert all(isinstance(r, PersistConnectionError) for r in results), results
        assert store.opens == 1
        with pytest.raises(PersistConnectionError):
            await store.read(*key("0"))
        assert store.opens == 2
        await store.close()

    asyncio.run(main())


def test_a_callers_engine_is_used_and_left_open() -> None:
    sync = SQLPersister("sqlite://")

    async def main() -> None:
        async with AsyncSQLPersister(sync.engine) as store:
            assert store.engine is sync.engine
            await store.write(*key("0"), Checkpoint("1", 1))
        assert store.sync.closed

    asyncio.run(main())
    assert sync.read(*key("0")) == Checkpoint("1", 1)  # the engine wasn't disposed
    sync.close()


def test_async_with_opens_and_closes(tmp_path: Path) -> None:
    async def main() -> None:
        store = AsyncSQLPersister(f"sqlite:///{tmp_path / 'with.db'}", monotonic=True)
        async with store as entered:
            assert entered is store
            assert store.sync.monotonic is True
            await store.write(*key("0"), Checkpoint("1", 1))
        assert store.closed
        assert store.sync.closed

        failing = AsyncSQLPersister(UNREACHABLE_URL)
        with pytest.raises(PersistConnectionError):
            async with failing:
                raise AssertionError("entered a store that could not open")
        assert failing.closed

    asyncio.run(main())


# -- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("yields", [0, 1, 2, 5])
def test_a_cancelled_write_leaves_the_old_or_the_new_checkpoint(
    async_backend: AsyncBackend, yields: int
) -> None:
    old, new = Checkpoint("old", 1), Checkpoint("new", 2)

    async def main() -> None:
        store = async_backend.open()
        await store.write(*key("0"), old)
        write = asyncio.create_task(store.write(*key("0"), new))
        for _ in range(yields):
            await asyncio.sleep(0)  # let the call get a little further each time
        write.cancel()
        await settle(write)
        assert await store.read(*key("0")) in (old, new)
        # Still usable.
        await store.write(*key("1"), Checkpoint("after", 3))
        assert await store.read(*key("1")) == Checkpoint("after", 3)
        await store.close()  # waits for the thread, which may have stored it meanwhile
        if async_backend.shared:
            assert async_backend.open_sync().read(*key("0")) in (old, new)

    asyncio.run(main())


@pytest.mark.parametrize("yields", [0, 1, 3])
def test_a_cancelled_write_many_is_all_old_or_all_new(
    sql_backend: AsyncBackend, yields: int
) -> None:
    old = {key(str(p)): Checkpoint(f"old{p}", 1) for p in range(100)}
    new = {key(str(p)): Checkpoint(f"new{p}", 2) for p in range(100)}

    async def main() -> None:
        store = sql_backend.open()
        await store.write_many(old)
        task = asyncio.create_task(store.write_many(new))
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        await settle(task)
        assert await stored(store) in (old, new)
        await store.close()

    asyncio.run(main())


def test_cancelling_a_write_held_in_the_database(held_store: HeldStore) -> None:
    old, new = Checkpoint("old", 1), Checkpoint("new", 2)

    async def main() -> None:
        store = held_store.open()
        await store.write(*key("0"), old)
        held_store.hold(key("0"))
        try:
            write = asyncio.create_task(store.write(*key("0"), new))
            await wait_until(held_store.write_waiting, "the write waits for the lock")
            write.cancel()
            await settle(write)
            assert write.cancelled()
            assert await store.read(*key("0")) == old  # the thread still waits to write
        finally:
            held_store.release()
        await store.write(*key("1"), Checkpoint("after", 3))  # still usable
        assert await store.read(*key("1")) == Checkpoint("after", 3)
        await store.close()  # waits for the cancelled call's thread, which writes now
        sync = held_store.open_sync()
        assert sync.read(*key("0")) == new  # the cancelled write was stored after all
        sync.close()

    asyncio.run(main())


# -- closing -------------------------------------------------------------------------------

VALID_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("write", (*key("0"), GOOD)),
    ("read", tuple(key("0"))),
    ("write_many", ({key("0"): GOOD},)),
    ("list", ()),
    ("list", (NS, HUB)),
    ("delete", (NS, HUB, CG)),
    ("delete", tuple(key("0"))),
]


def test_calls_after_close_raise_what_the_closed_sync_persister_raises(
    async_backend: AsyncBackend,
) -> None:
    closed = async_backend.open_sync()
    closed.close()

    async def main() -> None:
        store = async_backend.open()
        await store.write(*key("0"), GOOD)
        await store.close()
        assert store.closed
        assert store.sync.closed
        for method, args in VALID_CALLS:
            expected = outcome(partial(getattr(closed, method), *args))
            assert expected[0] is PersistError
            assert "is closed; open a new one" in expected[1]
            assert await async_outcome(partial(getattr(store, method), *args)) == expected
        assert await async_outcome(store.open) == expected
        await store.close()  # closing again is fine
        await asyncio.gather(store.close(), store.close())

    asyncio.run(main())


def test_bad_arguments_to_a_closed_store_raise_what_the_closed_sync_one_raises(
    async_backend: AsyncBackend,
) -> None:
    closed = async_backend.open_sync()
    closed.close()

    async def main() -> None:
        store = async_backend.open()
        await store.close()
        for name, method, args in BAD_CALLS:
            expected = outcome(partial(getattr(closed, method), *args))
            assert issubclass(expected[0], (TypeError, ValueError)), name  # checked first
            actual = await async_outcome(partial(getattr(store, method), *args))
            assert actual == expected, name

    asyncio.run(main())


def test_closing_a_store_never_opened_does_no_io(tmp_path: Path) -> None:
    database = tmp_path / "never.db"
    expected = outcome(lambda: _closed_sql_persister(tmp_path).read(*key("0")))

    async def main() -> None:
        store = AsyncSQLPersister(f"sqlite:///{database}")
        await store.close()
        assert not database.exists()
        assert await async_outcome(lambda: store.read(*key("0"))) == expected
        unreachable = AsyncSQLPersister(UNREACHABLE_URL)
        await unreachable.close()  # nothing to connect to, nothing to wait for

    asyncio.run(main())


def _closed_sql_persister(tmp_path: Path) -> SQLPersister:
    persister = SQLPersister(f"sqlite:///{tmp_path / 'closed.db'}")
    persister.close()
    return persister


def test_close_waits_for_a_call_in_flight(held_store: HeldStore) -> None:
    async def main() -> None:
        store = held_store.open()
        await store.write(*key("0"), Checkpoint("old", 1))
        held_store.hold(key("0"))
        try:
            write = asyncio.create_task(store.write(*key("0"), Checkpoint("new", 2)))
            await wait_until(held_store.write_waiting, "the write waits for the lock")
            close = asyncio.create_task(store.close())
            for _ in range(5):
                await asyncio.sleep(0)
            assert not close.done(), "close() didn't wait for the write in flight"
            assert store.closed
            with pytest.raises(PersistError, match="SQLPersister is closed; open a new one"):
                await store.read(*key("0"))  # refused: close() has begun
            assert not sync_closed(store)
        finally:
            held_store.release()
        await write  # it completes, and succeeds
        await close
        assert sync_closed(store)
        sync = held_store.open_sync()
        assert sync.read(*key("0")) == Checkpoint("new", 2)
        sync.close()

    asyncio.run(main())


def test_calls_waiting_for_the_first_open_finish_before_close(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opening.db'}"

    async def main() -> None:
        store = AsyncSQLPersister(url)
        writes = [
            asyncio.create_task(store.write(*key(str(p)), Checkpoint(str(p), p))) for p in range(8)
        ]
        await asyncio.sleep(0)  # the writes start, and wait for the opening they started
        assert not any(w.done() for w in writes)
        await store.close()
        assert all(w.done() for w in writes)
        await asyncio.gather(*writes)  # none failed

    asyncio.run(main())
    with SQLPersister(url) as sync:
        assert {r.key: r.checkpoint for r in sync.list()} == {
            key(str(p)): Checkpoint(str(p), p) for p in range(8)
        }


class HeldMemoryPersister(MemoryPersister):
    """A MemoryPersister whose writes wait until ``release`` is set, noting their threads."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()
        self.closing = threading.Event()
        self.threads: list[threading.Thread] = []

    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        self.threads.append(threading.current_thread())
        self.writing.set()
        wait_for_gate(self.release)
        super()._write(key, checkpoint)

    def close(self) -> None:
        super().close()
        self.closing.set()


def test_a_close_cut_short_by_the_end_of_its_loop_still_closes() -> None:
    held = HeldMemoryPersister()
    store = AsyncPersister(held)

    async def first_loop() -> None:
        write = asyncio.create_task(store.write(*key("0"), GOOD))
        await wait_for_event(held.writing, "the write runs")
        close = asyncio.create_task(store.close())
        await asyncio.sleep(0)  # close() begins, and waits for the write
        assert store.closed
        assert not close.done()
        assert not write.done()
        # Returning ends the loop: asyncio.run cancels both.

    try:
        asyncio.run(first_loop())
        assert not held.closed  # the write still runs in its thread
    finally:
        held.release.set()
    assert held.closing.wait(WAIT_LIMIT), "the persister was never closed"
    assert not any(thread.is_alive() for thread in held.threads)
    asyncio.run(store.close())  # closing again is fine
    assert held.closed


class ThreadRecordingPersister(MemoryPersister):
    """A MemoryPersister noting the thread each write runs on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        self.threads.append(threading.current_thread())
        super()._write(key, checkpoint)


@pytest.mark.parametrize("workers", [1, 4])
def test_calls_run_on_the_persisters_own_threads_until_close(workers: int) -> None:
    recorder = ThreadRecordingPersister()

    async def main() -> None:
        store = AsyncPersister(recorder, max_workers=workers)
        await asyncio.gather(*(store.write(*key(str(p)), GOOD) for p in range(40)))
        assert len(recorder.threads) == 40
        assert all(t.name.startswith("streamcheckpoint") for t in recorder.threads)
        assert threading.main_thread() not in recorder.threads
        assert 1 <= len(set(recorder.threads)) <= workers
        await store.close()
        assert recorder.closed
        assert not any(t.is_alive() for t in recorder.threads)

    asyncio.run(main())


# -- the wrapper itself --------------------------------------------------------------------


def test_async_persister_exposes_what_it_wraps() -> None:
    sync = MemoryPersister(monotonic=True)
    store = AsyncPersister(sync)
    assert store.sync is sync
    assert store.monotonic is True
    assert repr(store) == f"AsyncPersister({sync!r})"
    with pytest.raises(TypeError, match="persister must be a streamcheckpoint persister"):
        AsyncPersister(object())  # type: ignore[type-var]

    async def main() -> None:
        async with store as entered:
            assert entered is store
            await store.write(*key("0"), GOOD)
        assert sync.closed

    asyncio.run(main())


def test_async_sql_persister_repr_names_the_sync_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncSQLPersister(f"sqlite:///{tmp_path / 'r.db'}") as store:
            assert isinstance(store, AsyncPersister)
            assert repr(store) == f"AsyncSQLPersister({store.sync!r})"

    asyncio.run(main())


def test_open_async_persister_wraps_what_open_persister_opens(tmp_path: Path) -> None:
    expected = outcome(lambda: open_persister("nope://x"))

    async def main() -> None:
        memory = await open_async_persister("memory://", monotonic=True)
        assert type(memory.sync) is MemoryPersister
        assert memory.monotonic
        await memory.close()
        async with await open_async_persister(
            f"sqlite:///{tmp_path / 'o.db'}", max_workers=2
        ) as sql:
            assert type(sql.sync) is SQLPersister
            await sql.write(*key("0"), GOOD)
            assert await sql.read(*key("0")) == GOOD
        assert sql.sync.closed
        assert await async_outcome(lambda: open_async_persister("nope://x")) == expected

    asyncio.run(main())


def test_open_async_persister_cancelled_as_its_loop_ends_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, gate = threading.Event(), threading.Event()
    made: list[BasePersister] = []

    def slow_open(url: str, **options: Any) -> BasePersister:
        started.set()
        wait_for_gate(gate)
        made.append(open_persister(url, **options))
        return made[-1]

    monkeypatch.setattr(streamcheckpoint.aio, "open_persister", slow_open)

    async def main() -> None:
        opening = asyncio.create_task(open_async_persister(f"sqlite:///{tmp_path / 'o.db'}"))
        await wait_for_event(started, "the opening started")
        opening.cancel()
        assert await settle(opening) is None
        gate.set()
        # Returning ends the loop at once, while the thread opens the persister.

    try:
        asyncio.run(main())
    finally:
        gate.set()
    assert len(made) == 1
    assert made[0].closed


def test_the_async_api_is_exported() -> None:
    for name in ("AsyncPersister", "AsyncSQLPersister", "open_async_persister"):
        assert name in streamcheckpoint.__all__
        assert getattr(streamcheckpoint, name) is getattr(streamcheckpoint.aio, name)
