"""Our Event Hubs checkpoint stores against azure-eventhub-checkpointstoreblob 1.2.0 on Azurite.

The same work through azure-eventhub's ``CheckpointStore`` methods, as an ``EventProcessor``
calls them: ``update_checkpoint`` to 32 partitions round-robin; a claim cycle, which is what a
processor does every ``load_balancing_interval`` (``list_ownership``, then ``claim_ownership``
renewing the 32 partitions it owns, each with the etag it just listed); ``list_checkpoints`` of
the 32. Sync stores against the sync Blob store, asyncio ones against the asyncio Blob store
(``azure-eventhub-checkpointstoreblob-aio`` 1.2.0, over aiohttp). Ours run on SQLite (durable
default) and PostgreSQL. Azurite runs on loopback, in memory: the Blob store's numbers carry no
network and no disk, which flatters it.

A second section compares the asyncio store's ``update_checkpoint`` on PostgreSQL with a raw
``psycopg.AsyncConnection`` in autocommit running the same upsert (the floor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy as sa

from .azurite import Azurite, find_azurite
from .cases import compare, missing
from .harness import Section, Target
from .servers import postgres_admin, postgres_schema, psycopg_connect
from .workload import (
    GROUP,
    HUB,
    NAMESPACE,
    PARTITIONS,
    SQLITE_UPSERT,
    Context,
    Plan,
    checkpoint_documents,
    pg_upsert_sql,
    raw_sqlite,
    sqlite_url,
    suite_event_loop,
    unique_name,
)

__all__ = ["run"]

TITLE = (
    "Event Hubs checkpoint stores: azure-eventhub-checkpointstoreblob 1.2.0 on Azurite vs "
    "SQLCheckpointStore (ratio: how many times the Blob store's throughput)"
)
FLOOR_TITLE = (
    "asyncio SQLCheckpointStore.update_checkpoint on PostgreSQL vs psycopg.AsyncConnection"
)
BLOB, BLOB_AIO = "BlobCheckpointStore (floor)", "asyncio BlobCheckpointStore (floor)"
TEN_TIMES = Target(">=", 10.0)
CLAIM_CYCLES = 3
"""Claim cycles per contender per round (a Blob cycle takes a tenth of a second or more)."""

Operation = Callable[[int], object]


def run(ctx: Context) -> None:
    """update_checkpoint, the claim cycle and list_checkpoints against the Blob store."""
    section = ctx.report.section(TITLE)
    executable = find_azurite()
    if executable is None:
        missing(section, "BlobCheckpointStore", "unavailable: Azurite is not installed")
        return
    azurite = Azurite(executable)
    ctx.cleanup.callback(azurite.stop)
    loop = suite_event_loop(ctx)
    stores = _open_stores(ctx, azurite, loop, section)
    ctx.report.environment["Blob store"] = (
        "azure-eventhub-checkpointstoreblob(-aio) 1.2.0 on Azurite (in memory, loopback)"
    )
    _compare_stores(ctx, section, stores, loop)
    floor = ctx.report.section(FLOOR_TITLE)
    _compare_with_psycopg(ctx, floor, stores, loop)


def _open_stores(
    ctx: Context, azurite: Azurite, loop: asyncio.AbstractEventLoop, section: Section
) -> dict[str, Any]:
    """Every contender's store, keyed by its row name; closed at the end (on ``loop``)."""
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
    from azure.eventhub.extensions.checkpointstoreblobaio import (
        BlobCheckpointStore as AsyncBlobCheckpointStore,
    )
    from azure.storage.blob import ContainerClient

    from streamcheckpoint.eventhub import SQLCheckpointStore
    from streamcheckpoint.eventhub import aio as eventhub_aio

    stores: dict[str, Any] = {}
    for name in ("sync", "aio"):
        container = f"bench-{name}"
        with ContainerClient.from_connection_string(azurite.connection_string, container) as c:
            c.create_container()
    blob = BlobCheckpointStore.from_connection_string(azurite.connection_string, "bench-sync")
    ctx.cleanup.callback(blob.close)
    stores[BLOB] = blob
    blob_aio = AsyncBlobCheckpointStore.from_connection_string(
        azurite.connection_string, "bench-aio"
    )
    ctx.cleanup.callback(lambda: loop.run_until_complete(blob_aio.close()))
    stores[BLOB_AIO] = blob_aio

    directory = ctx.path("eventhub-stores")
    where: dict[str, tuple[Any, str | None]] = {
        "SQLite": (sqlite_url(directory / "sync.db"), None),
        "SQLite aio": (sqlite_url(directory / "aio.db"), None),
    }
    admin = postgres_admin(ctx)
    if isinstance(admin, str):
        missing(section, "SQLCheckpointStore on PostgreSQL", admin)
    else:
        for name in ("PostgreSQL", "PostgreSQL aio"):
            where[name] = (admin.url, postgres_schema(ctx, admin, "bench_eventhub"))
    for name, (url, schema) in where.items():
        if name.endswith("aio"):
            store: Any = eventhub_aio.SQLCheckpointStore(url, schema=schema)
            loop.run_until_complete(store.open())
            ctx.cleanup.callback(_closer(loop, store))
            stores[f"asyncio SQLCheckpointStore, {name.removesuffix(' aio')}"] = store
        else:
            store = SQLCheckpointStore(url, schema=schema)
            ctx.cleanup.callback(store.close)
            stores[f"SQLCheckpointStore, {name}"] = store
    return stores


def _compare_stores(
    ctx: Context, section: Section, stores: dict[str, Any], loop: asyncio.AbstractEventLoop
) -> None:
    settings = ctx.settings
    plan = Plan.build(settings)
    documents = checkpoint_documents(plan)
    sync = {name: store for name, store in stores.items() if not _is_async(name)}
    aio = {name: store for name, store in stores.items() if _is_async(name)}

    def updater(name: str, store: Any) -> Operation:
        if _is_async(name):
            return lambda i: loop.run_until_complete(store.update_checkpoint(documents[i]))
        return lambda i: store.update_checkpoint(documents[i])

    bounds = _raw_bounds(ctx, plan)
    for kind, group in (("sync", sync), ("asyncio", aio)):
        extra = bounds if kind == "sync" else {}
        targets: dict[str, Target | None] = dict.fromkeys(list(group)[1:], TEN_TIMES)
        compare(
            ctx,
            section,
            f"update_checkpoint, 32 partitions round-robin ({kind})",
            {**{name: updater(name, store) for name, store in group.items()}, **extra},
            calls=settings.writes,
            targets={**targets, **dict.fromkeys(extra)},
            invert=True,
        )
    owner = unique_name("owner")
    claims = [
        {
            "fully_qualified_namespace": NAMESPACE,
            "eventhub_name": HUB,
            "consumer_group": GROUP,
            "partition_id": str(p),
            "owner_id": owner,
        }
        for p in range(PARTITIONS)
    ]
    for name, store in stores.items():  # each owns the 32 partitions before the cycles
        _call(loop, name, store.claim_ownership, [dict(c) for c in claims])

    def cycle(name: str, store: Any) -> Operation:
        if _is_async(name):

            async def once() -> None:
                listed = await store.list_ownership(NAMESPACE, HUB, GROUP)
                await store.claim_ownership(listed)

            return lambda i: loop.run_until_complete(once())

        def run_cycle(i: int) -> None:
            store.claim_ownership(store.list_ownership(NAMESPACE, HUB, GROUP))

        return run_cycle

    def lister(name: str, store: Any) -> Operation:
        if _is_async(name):
            return lambda i: loop.run_until_complete(store.list_checkpoints(NAMESPACE, HUB, GROUP))
        return lambda i: store.list_checkpoints(NAMESPACE, HUB, GROUP)

    for kind, group in (("sync", sync), ("asyncio", aio)):
        compare(
            ctx,
            section,
            f"claim cycle: list_ownership + claim_ownership renewing 32 ({kind})",
            {name: cycle(name, store) for name, store in group.items()},
            calls=CLAIM_CYCLES,
            targets=dict.fromkeys(list(group)[1:], TEN_TIMES),
            invert=True,
        )
        compare(
            ctx,
            section,
            f"list_checkpoints, 32 partitions ({kind})",
            {name: lister(name, store) for name, store in group.items()},
            calls=CLAIM_CYCLES,
            targets=dict.fromkeys(list(group)[1:]),
            invert=True,
        )
    section.notes += [
        "ratio = the Blob store's time / ours (how many times its throughput); each asyncio "
        "operation is one run_until_complete on a loop kept for the suite",
        "Azurite keeps blobs in memory on loopback: the Blob store pays no network round trip "
        "to Azure and no disk; ours on SQLite is durable (WAL, synchronous=FULL), PostgreSQL "
        "commits with synchronous_commit=on",
        "the (bound) rows run the same upsert with the raw driver: no store on that database "
        "can beat them",
        "a claim cycle is what each processor does every load_balancing_interval (30 s by "
        "default): the Blob store makes one HTTP call per partition, ours one transaction",
    ]


def _closer(loop: asyncio.AbstractEventLoop, store: Any) -> Callable[[], None]:
    return lambda: loop.run_until_complete(store.close())


def _raw_bounds(ctx: Context, plan: Plan) -> dict[str, Operation]:
    """The same upsert by hand with the raw drivers: the most any store on these databases can
    get against the Blob store (informational rows)."""
    path = ctx.path("eventhub-raw") / "raw.db"
    connection = raw_sqlite(path)
    ctx.cleanup.callback(connection.close)

    def sqlite_upsert(i: int) -> None:
        key, cp = plan.writes[i]
        connection.execute(SQLITE_UPSERT, (*key, cp.offset, cp.sequence_number, None))

    bounds: dict[str, Operation] = {"raw sqlite3 upsert, same pragmas (bound)": sqlite_upsert}
    admin = postgres_admin(ctx)
    if not isinstance(admin, str):
        upsert = pg_upsert_sql(postgres_schema(ctx, admin, "bench_eventhub_bound"))
        psycopg = psycopg_connect(ctx, autocommit=True)

        def pg_upsert(i: int) -> None:
            key, cp = plan.writes[i]
            psycopg.execute(upsert, (*key, cp.offset, cp.sequence_number, None))

        bounds["psycopg autocommit upsert (bound)"] = pg_upsert
    return bounds


def _compare_with_psycopg(
    ctx: Context, section: Section, stores: dict[str, Any], loop: asyncio.AbstractEventLoop
) -> None:
    ours = stores.get("asyncio SQLCheckpointStore, PostgreSQL")
    if ours is None:
        missing(section, "asyncio SQLCheckpointStore", "unavailable: no PostgreSQL server")
        return
    import psycopg

    plan = Plan.build(ctx.settings)
    documents = checkpoint_documents(plan)
    conninfo = sa.make_url(ctx.postgres_url).set(drivername="postgresql")
    connection = loop.run_until_complete(
        psycopg.AsyncConnection.connect(
            conninfo.render_as_string(hide_password=False), autocommit=True
        )
    )
    ctx.cleanup.callback(lambda: loop.run_until_complete(connection.close()))
    loop.run_until_complete(connection.execute("SET TIME ZONE 'UTC'"))
    # The raw side writes a table of its own, made by the same migrations.
    admin = postgres_admin(ctx)
    assert not isinstance(admin, str), admin
    upsert = pg_upsert_sql(postgres_schema(ctx, admin, "bench_eventhub_raw"))

    def raw(i: int) -> None:
        key, cp = plan.writes[i]
        values = (*key, cp.offset, cp.sequence_number, None)  # the SDK passes no enqueue time
        loop.run_until_complete(connection.execute(upsert, values))

    compare(
        ctx,
        section,
        "update_checkpoint vs the same upsert, 32 partitions round-robin",
        {
            "psycopg.AsyncConnection autocommit (floor)": raw,
            "asyncio SQLCheckpointStore.update_checkpoint": lambda i: loop.run_until_complete(
                ours.update_checkpoint(documents[i])
            ),
        },
        calls=ctx.settings.writes,
        targets={"asyncio SQLCheckpointStore.update_checkpoint": Target("<=", 1.3)},
    )
    section.notes.append(
        "both run one run_until_complete per write on the suite's loop; ours includes the hop "
        "to a worker thread and back (SQLPersister's write there, on its kept connection)"
    )


def _is_async(name: str) -> bool:
    return name.startswith("asyncio ")


def _call(
    loop: asyncio.AbstractEventLoop, name: str, method: Callable[..., Any], *args: Any
) -> Any:
    result = method(*args)
    if _is_async(name):
        coroutine: Coroutine[Any, Any, Any] = result
        return loop.run_until_complete(coroutine)
    return result
