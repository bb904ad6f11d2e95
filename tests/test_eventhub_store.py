"""streamcheckpoint.eventhub's stores against azure-eventhub's CheckpointStore contract.

Every test runs on SQLite, PostgreSQL and MariaDB, and (where it says ``kind``) on the sync
store and on the asyncio one, whose coroutines are run through a facade that awaits each call
on a new event loop (the store allows one loop after another).
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import run_concurrently
from streamcheckpoint import (
    Checkpoint,
    CheckpointRegressionError,
    CorruptCheckpointError,
    OwnershipLostError,
    PersistConnectionError,
    SQLPersister,
)
from streamcheckpoint.eventhub import SQLCheckpointStore, starting_position
from streamcheckpoint.eventhub import aio as eventhub_aio
from streamcheckpoint.sql.dialects import DIALECTS
from streamcheckpoint.sql.eventhub_statements import LastEnqueued
from streamcheckpoint.sql.eventhub_tables import EventHubTables
from streamcheckpoint.sql.statements import compile_statements

NS, HUB, CG = "ns.servicebus.windows.net", "hub", "$Default"
OWNERSHIP_KEYS = {
    "fully_qualified_namespace",
    "eventhub_name",
    "consumer_group",
    "partition_id",
    "owner_id",
    "etag",
    "last_modified_time",
}
CHECKPOINT_KEYS = {
    "fully_qualified_namespace",
    "eventhub_name",
    "consumer_group",
    "partition_id",
    "sequence_number",
    "offset",
}
UNREACHABLE = "postgresql+psycopg://app:s3cret@127.0.0.1:1/test"


def claim(partition: str, owner: str, etag: str | None = None) -> dict[str, Any]:
    """A claim as azure-eventhub's ownership manager builds it (no etag key if never owned)."""
    document = {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": CG,
        "partition_id": partition,
        "owner_id": owner,
    }
    if etag is not None:
        document["etag"] = etag
    return document


def checkpoint(partition: str, offset: Any, sequence: Any) -> dict[str, Any]:
    return {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": CG,
        "partition_id": partition,
        "offset": offset,
        "sequence_number": sequence,
    }


class AioFacade:
    """The asyncio store with its coroutines awaited: the same calls as the sync store."""

    def __init__(self, store: eventhub_aio.SQLCheckpointStore) -> None:
        self.store = store
        asyncio.run(store.open())
        self.persister: SQLPersister = store.persister.sync

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        return lambda *args, **kwargs: asyncio.run(method(*args, **kwargs))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """A fresh database: (url, schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'eventhub.db'}", None
    if request.param == "mysql":
        return request.getfixturevalue("mysql_database"), None
    url, schema = request.getfixturevalue("postgres_schema")
    return url, schema


@pytest.fixture(params=["sync", "aio"])
def open_store(
    request: pytest.FixtureRequest, db: tuple[str, str | None]
) -> Iterator[Callable[..., Any]]:
    """Opens stores of the kind under test on ``db``; closes them afterwards."""
    opened: list[Any] = []

    def opener(**options: Any) -> Any:
        url, schema = db
        if request.param == "sync":
            store: Any = SQLCheckpointStore(url, schema=schema, **options)
        else:
            store = AioFacade(eventhub_aio.SQLCheckpointStore(url, schema=schema, **options))
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


# -- ownership ------------------------------------------------------------------------------


def test_list_ownership_returns_a_fresh_list_of_fresh_dicts(open_store: Callable[..., Any]) -> None:
    store = open_store()
    assert store.list_ownership(NS, HUB, CG) == []
    before = time.time()
    store.claim_ownership([claim("0", "a"), claim("1", "a")])
    listed = store.list_ownership(NS, HUB, CG)
    assert isinstance(listed, list)
    assert [row["partition_id"] for row in listed] == ["0", "1"]
    for row in listed:
        assert set(row) == OWNERSHIP_KEYS
        assert isinstance(row["last_modified_time"], float)  # the SDK adds seconds to it
        assert before - 1 <= row["last_modified_time"] <= time.time() + 1
        assert isinstance(row["etag"], str)
        assert row["etag"]
    pristine = copy.deepcopy(listed)
    for row in listed:  # as the SDK does: it edits what it was given
        row["owner_id"] = "someone else"
    listed.clear()
    assert store.list_ownership(NS, HUB, CG) == pristine
    assert store.list_ownership(NS, "other hub", CG) == []


def test_claims_are_optimistic_and_losers_are_left_out(open_store: Callable[..., Any]) -> None:
    store = open_store()
    first_claim = claim("0", "a")
    [won] = store.claim_ownership([first_claim])
    assert won is not first_claim
    assert first_claim == claim("0", "a")  # the argument is not changed
    assert (won["owner_id"], set(won)) == ("a", OWNERSHIP_KEYS)

    # No etag: only a partition nobody has a row for.
    assert store.claim_ownership([claim("0", "b")]) == []
    # A stale etag loses; the current one wins, with a new etag and a time not before the old.
    assert store.claim_ownership([claim("0", "b", etag="stale")]) == []
    [stolen] = store.claim_ownership([claim("0", "b", etag=won["etag"])])
    assert stolen["owner_id"] == "b"
    assert stolen["etag"] != won["etag"]
    assert stolen["last_modified_time"] >= won["last_modified_time"]
    assert store.claim_ownership([claim("0", "a", etag=won["etag"])]) == []

    # owner_id "" releases the partition and keeps its row.
    [released] = store.claim_ownership([{**claim("0", ""), "etag": stolen["etag"]}])
    [row] = store.list_ownership(NS, HUB, CG)
    assert row == released
    assert (row["owner_id"], row["etag"] != stolen["etag"]) == ("", True)

    # Winners and losers of one call: only the winners come back.
    result = store.claim_ownership(
        [claim("1", "c"), claim("0", "c", etag="stale"), claim("0", "c", etag=row["etag"])]
    )
    assert sorted(r["partition_id"] for r in result) == ["0", "1"]
    assert {r["owner_id"] for r in store.list_ownership(NS, HUB, CG)} == {"c"}


def test_one_transaction_per_claim_call_and_its_statements_in_worker_threads(
    open_store: Callable[..., Any],
) -> None:
    store = open_store()
    store.list_ownership(NS, HUB, CG)  # opened
    seen: list[tuple[str, str]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append((statement.split(maxsplit=1)[0].upper(), threading.current_thread().name))

    engine = store.persister.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        won = store.claim_ownership([claim(str(p), "a") for p in range(8)])
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(won) == 8
    verbs = [verb for verb, _ in seen]
    assert verbs.count("BEGIN") == 1
    assert verbs.count("COMMIT") == 1
    assert verbs[0] == "BEGIN"
    assert verbs[-1] == "COMMIT"
    if isinstance(store, AioFacade):  # the event loop never ran a statement itself
        assert all(thread.startswith("streamcheckpoint_") for _, thread in seen), seen


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_land_in_the_checkpoints_table(
    open_store: Callable[..., Any], db: tuple[str, str | None]
) -> None:
    store = open_store()
    store.update_checkpoint(checkpoint("0", "geo:7:abc", 42))
    store.update_checkpoint(checkpoint("1", 120, 7))  # an int offset is its text, as Blob's
    with SQLPersister(db[0], schema=db[1]) as persister:
        assert persister.read(NS, HUB, CG, "0") == Checkpoint("geo:7:abc", 42)
        assert persister.read(NS, HUB, CG, "1") == Checkpoint("120", 7)
        persister.write(NS, HUB, CG, "2", Checkpoint("9", 9))
    listed = store.list_checkpoints(NS, HUB, CG)
    assert listed == [
        {**checkpoint("0", "geo:7:abc", 42)},
        {**checkpoint("1", "120", 7)},
        {**checkpoint("2", "9", 9)},
    ]
    assert all(set(row) == CHECKPOINT_KEYS for row in listed)
    listed[0]["offset"] = "changed"
    assert store.list_checkpoints(NS, HUB, CG)[0]["offset"] == "geo:7:abc"


@pytest.mark.parametrize(("offset", "sequence"), [(None, 1), ("5", None)])
def test_a_checkpoint_without_offset_or_sequence_number_is_refused(
    open_store: Callable[..., Any], offset: Any, sequence: Any
) -> None:
    store = open_store()
    missing = "offset" if offset is None else "sequence_number"
    with pytest.raises(ValueError, match=f"has no {missing}"):
        store.update_checkpoint(checkpoint("0", offset, sequence))
    assert store.list_checkpoints(NS, HUB, CG) == []


def test_unfenced_checkpoints_overwrite_as_the_blob_store_does(
    open_store: Callable[..., Any],
) -> None:
    store = open_store()
    store.update_checkpoint(checkpoint("0", "20", 20))
    store.update_checkpoint(checkpoint("0", "10", 10))
    assert store.list_checkpoints(NS, HUB, CG)[0]["sequence_number"] == 10
    guarded = open_store(monotonic=True)
    with pytest.raises(CheckpointRegressionError):
        guarded.update_checkpoint(checkpoint("0", "5", 5))


def test_fenced_checkpoints_need_the_ownership_this_store_claimed(
    open_store: Callable[..., Any],
) -> None:
    first, second = open_store(fence_checkpoints=True), open_store(fence_checkpoints=True)
    with pytest.raises(OwnershipLostError, match="has not claimed it") as never:
        first.update_checkpoint(checkpoint("0", "1", 1))
    assert (never.value.owner_id, never.value.current_owner) == (None, None)

    [mine] = first.claim_ownership([claim("0", "owner-a")])
    first.update_checkpoint(checkpoint("0", "10", 10))
    [theirs] = second.claim_ownership([claim("0", "owner-b", etag=mine["etag"])])

    with pytest.raises(OwnershipLostError, match="owned by 'owner-b'") as lost:
        first.update_checkpoint(checkpoint("0", "11", 11))
    assert (lost.value.owner_id, lost.value.current_owner) == ("owner-a", "owner-b")
    assert lost.value.key.partition_id == "0"
    assert store_sequence(second) == 10  # nothing was written

    second.update_checkpoint(checkpoint("0", "12", 12))
    with pytest.raises(CheckpointRegressionError):  # fenced writes are monotonic too
        second.update_checkpoint(checkpoint("0", "11", 11))
    assert store_sequence(first) == 12

    EventHubTables(second.persister).release(NS, HUB, CG, "0")  # what `owners release` does
    with pytest.raises(OwnershipLostError, match="released") as released:
        second.update_checkpoint(checkpoint("0", "13", 13))
    assert released.value.current_owner == ""
    assert theirs["owner_id"] == "owner-b"
    assert store_sequence(second) == 12


def store_sequence(store: Any) -> int:
    [row] = store.list_checkpoints(NS, HUB, CG)
    return int(row["sequence_number"])


def test_lag_is_recorded_beside_the_checkpoint_and_sqlpersister_leaves_it(
    open_store: Callable[..., Any], db: tuple[str, str | None]
) -> None:
    from datetime import datetime, timezone

    store = open_store(fence_checkpoints=False)
    enqueued = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    newest = datetime(2026, 12, 1, 10, 5, 0, tzinfo=timezone.utc)
    store.update_checkpoint(
        checkpoint("0", "100", 10),
        enqueued_time=enqueued,
        last_enqueued_event_properties={
            "sequence_number": 25,
            "offset": "250",
            "enqueued_time": newest,
            "retrieval_time": newest,
        },
        unknown_option_of_another_store=True,
    )
    tables = EventHubTables(store.persister)
    [record] = tables.last_enqueued((NS, HUB, CG))
    assert record.last_enqueued == LastEnqueued(25, "250", newest)
    with SQLPersister(db[0], schema=db[1]) as persister:
        assert persister.read(NS, HUB, CG, "0") == Checkpoint("100", 10, enqueued)
        persister.write(NS, HUB, CG, "0", Checkpoint("200", 20))  # SQLPersister: no lag
        persister.write(NS, HUB, CG, "1", Checkpoint("1", 1))
    by_partition = {r.key.partition_id: r.last_enqueued for r in tables.last_enqueued((NS,))}
    assert by_partition == {
        "0": LastEnqueued(25, "250", newest),
        "1": LastEnqueued(None, None, None),
    }


def test_sqlpersister_statements_never_name_the_lag_columns() -> None:
    for dialect in DIALECTS:
        engine_dialect = sa.create_engine(dialect.url_example).dialect
        compiled = compile_statements(dialect, engine_dialect, None)
        for text in (
            compiled.upsert,
            compiled.upsert_monotonic,
            compiled.select_checkpoint,
            *compiled.select_records,
        ):
            assert "last_enqueued" not in text, (dialect.name, text)
            assert "ownerships" not in text


# -- racing claimants -----------------------------------------------------------------------

RACERS = 8


def race(store: SQLCheckpointStore, index: int, etag: str | None, results: dict[int, Any]) -> None:
    results[index] = store.claim_ownership([claim("0", f"r{index}", etag)])


def test_racing_threads_for_one_partition_make_exactly_one_winner(
    db: tuple[str, str | None],
) -> None:
    url, schema = db
    stores = [SQLCheckpointStore(url, schema=schema) for _ in range(RACERS)]
    try:
        for round_ in range(3):
            listed = stores[0].list_ownership(NS, HUB, CG)
            etag = listed[0]["etag"] if listed else None
            results: dict[int, list[dict[str, Any]]] = {}
            racers = [partial(race, stores[i], i, etag, results) for i in range(RACERS)]
            failures = run_concurrently(racers)
            assert failures == []
            winners = [i for i, won in results.items() if won]
            assert len(winners) == 1, (round_, results)
            [row] = stores[0].list_ownership(NS, HUB, CG)
            assert row["owner_id"] == f"r{winners[0]}"
            assert row["etag"] == results[winners[0]][0]["etag"]
    finally:
        for store in stores:
            store.close()


CLAIMANT = """
import json, sys
from streamcheckpoint.eventhub import SQLCheckpointStore
url, schema, index, etag = sys.argv[1], sys.argv[2] or None, sys.argv[3], sys.argv[4] or None
store = SQLCheckpointStore(url, schema=schema)
store.list_ownership("ns.servicebus.windows.net", "hub", "$Default")  # connected
document = {"fully_qualified_namespace": "ns.servicebus.windows.net", "eventhub_name": "hub",
            "consumer_group": "$Default", "partition_id": "0", "owner_id": "p" + index}
if etag:
    document["etag"] = etag
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(store.claim_ownership([document])), flush=True)
store.close()
"""


@pytest.mark.slow
def test_racing_processes_for_one_partition_make_exactly_one_winner(
    db: tuple[str, str | None],
) -> None:
    import json

    url, schema = db
    SQLCheckpointStore(url, schema=schema).close()
    for round_ in range(2):
        with SQLCheckpointStore(url, schema=schema) as reader:
            listed = reader.list_ownership(NS, HUB, CG)
        etag = listed[0]["etag"] if listed else ""
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", CLAIMANT, url, schema or "", str(i), etag],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        try:
            for racer in racers:
                assert racer.stdout is not None
                assert racer.stdout.readline().strip() == "ready"
            for racer in racers:
                assert racer.stdin is not None
                racer.stdin.write("go\n")
                racer.stdin.flush()
            outcomes = [racer.communicate(timeout=120) for racer in racers]
        finally:
            for racer in racers:
                if racer.poll() is None:
                    racer.kill()
        assert [err for _, err in outcomes] == [""] * 4
        results = [json.loads(out) for out, _ in outcomes]
        winners = [i for i, won in enumerate(results) if won]
        assert len(winners) == 1, (round_, results)
        with SQLCheckpointStore(url, schema=schema) as reader:
            [row] = reader.list_ownership(NS, HUB, CG)
        assert (row["owner_id"], row["etag"]) == (f"p{winners[0]}", results[winners[0]][0]["etag"])


# -- errors, the SDK's client, imports ------------------------------------------------------


def test_a_hand_damaged_ownership_row_is_a_corrupt_row_not_a_crash(
    open_store: Callable[..., Any], db: tuple[str, str | None]
) -> None:
    store = open_store()
    store.claim_ownership([claim("0", "a"), claim("1", "a")])
    url, schema = db
    table = f'"{schema}".ownerships' if schema else "ownerships"
    damage = sa.text(f"UPDATE {table} SET partition_id = '' WHERE partition_id = '1'")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # a key the API could never have written
            if url.startswith("mysql"):  # the key hash's CHECK constraint keeps it out
                with pytest.raises(sa.exc.OperationalError, match="ck_ownerships_key_hash"):
                    conn.execute(damage)
                return
            conn.execute(damage)
    finally:
        engine.dispose()
    with pytest.raises(CorruptCheckpointError, match=r"key that can't be used .*partition_id=''"):
        store.list_ownership(NS, HUB, CG)


def test_database_errors_are_persist_errors_without_the_password() -> None:
    with pytest.raises(PersistConnectionError) as caught:
        SQLCheckpointStore(UNREACHABLE)
    assert "s3cret" not in str(caught.value)

    async def asynchronous() -> None:
        store = eventhub_aio.SQLCheckpointStore(UNREACHABLE)  # no I/O yet
        try:
            with pytest.raises(PersistConnectionError) as caught:
                await store.list_ownership(NS, HUB, CG)
            assert "s3cret" not in str(caught.value)
        finally:
            await store.close()

    asyncio.run(asynchronous())


def test_a_schema_error_names_the_command_and_masks_the_password(tmp_path: Path) -> None:
    from streamcheckpoint import SchemaError

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(SchemaError, match="db upgrade"):
        SQLCheckpointStore(url, migrate=False)


def test_the_sdks_clients_accept_both_stores(tmp_path: Path) -> None:
    from azure.eventhub import EventHubConsumerClient
    from azure.eventhub.aio import EventHubConsumerClient as AsyncClient

    connection = (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"
    )
    url = f"sqlite:///{tmp_path / 'clients.db'}"
    with SQLCheckpointStore(url) as store:
        client = EventHubConsumerClient.from_connection_string(
            connection, "$Default", eventhub_name=HUB, checkpoint_store=store
        )
        assert client._checkpoint_store is store
        client.close()

    async def asynchronous() -> None:
        async with eventhub_aio.SQLCheckpointStore(url) as store:
            client = AsyncClient.from_connection_string(
                connection, "$Default", eventhub_name=HUB, checkpoint_store=store
            )
            assert client._checkpoint_store is store
            await client.close()

    asyncio.run(asynchronous())


def test_the_asyncio_store_mirrors_the_sync_one() -> None:
    import inspect

    for name in ("list_ownership", "claim_ownership", "update_checkpoint", "list_checkpoints"):
        sync, asynchronous = (
            getattr(c, name) for c in (SQLCheckpointStore, eventhub_aio.SQLCheckpointStore)
        )
        assert inspect.iscoroutinefunction(asynchronous), name
        assert inspect.signature(sync) == inspect.signature(asynchronous), name
    assert inspect.iscoroutinefunction(eventhub_aio.SQLCheckpointStore.close)


def test_importing_without_azure_eventhub_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['azure.eventhub'] = None\n"
        "try:\n"
        "    import streamcheckpoint.eventhub\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'streamcheckpoint[eventhub]'" in done.stdout


# -- starting_position ----------------------------------------------------------------------


def test_starting_position_resumes_after_each_checkpoint_as_the_sdk_reads_it(
    tmp_path: Path,
) -> None:
    from azure.eventhub._client_base import _Address
    from azure.eventhub._eventprocessor.event_processor import EventProcessor

    url = f"sqlite:///{tmp_path / 'positions.db'}"
    with SQLCheckpointStore(url) as store:
        store.update_checkpoint(checkpoint("0", "geo:0:41", 41))
        store.update_checkpoint(checkpoint("2", "77", 7))
        position = starting_position(store, NS, HUB, CG)
        with SQLPersister(url) as persister:
            assert starting_position(persister, NS, HUB, CG) == position
        assert asyncio.run(eventhub_aio.starting_position(store, NS, HUB, CG)) == position
    assert position == {
        "starting_position": {"0": "geo:0:41", "2": "77"},
        "starting_position_inclusive": {"0": False, "2": False},
    }

    class Client:  # what EventProcessor reads of EventHubConsumerClient to get started
        eventhub_name = HUB
        _address = _Address(hostname=NS, path=HUB)

    processor = EventProcessor(
        Client(),  # type: ignore[arg-type]
        CG,
        lambda context, event: None,
        initial_event_position=position["starting_position"],
        initial_event_position_inclusive=position["starting_position_inclusive"],
    )
    assert processor.get_init_event_position("0", None) == ("geo:0:41", False)
    assert processor.get_init_event_position("2", None) == ("77", False)
    assert processor.get_init_event_position("1", None) == ("-1", False)  # start of stream
