"""azure-eventhub's asyncio ``checkpoint_store=`` on streamcheckpoint's SQL tables.

:class:`SQLCheckpointStore` is a :class:`azure.eventhub.aio.CheckpointStore` for
``azure.eventhub.aio.EventHubConsumerClient``. It is the synchronous store's work run in worker
threads, as :class:`~streamcheckpoint.AsyncSQLPersister` runs ``SQLPersister``'s (it is built
on it): the event loop never waits for the database. The SDK's dicts are read and built on the
loop; only the I/O goes to a thread.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from azure.eventhub.aio import CheckpointStore

from ..aio import AsyncPersister, AsyncSQLPersister
from ..persister import BasePersister
from ..sql import SQLPersister
from ..sql.engine import UrlOrEngine
from ..sql.eventhub_tables import EventHubTables
from . import SQLCheckpointStore as _SyncStore
from ._core import (
    ENQUEUED_TIME_KWARG,
    LAST_ENQUEUED_KWARG,
    StoreCore,
    claims_from,
    group_prefix,
    parse_checkpoint,
    starting_position_from,
)

if TYPE_CHECKING:
    from azure.eventhub import EventData
    from azure.eventhub.aio import PartitionContext

    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["SQLCheckpointStore", "starting_position", "update_checkpoint_with_lag"]

_T = TypeVar("_T")


class _Runner(AsyncSQLPersister):
    """An :class:`AsyncSQLPersister` that also runs other work on its persister in its
    threads (opening it first, as every call does)."""

    async def run(self, work: Callable[[SQLPersister], _T]) -> _T:
        return await self._call(work)


class SQLCheckpointStore(CheckpointStore):
    """The asyncio twin of :class:`streamcheckpoint.eventhub.SQLCheckpointStore`.

    The same arguments (plus ``max_workers``, the worker threads, default 4), guarantees and
    errors; the four methods are coroutines. The constructor checks its arguments and does no
    I/O; the database is opened (connected, migrated) in a worker thread by ``await
    store.open()``, ``async with``, or the first call. Cancelling a call doesn't stop its
    thread: a cancelled claim or checkpoint may or may not have been stored. ``await close()``
    waits for the calls in flight and closes the connection.
    """

    def __init__(
        self,
        url_or_engine: UrlOrEngine,
        *,
        schema: str | None = None,
        migrate: bool = True,
        monotonic: bool = False,
        fence_checkpoints: bool = False,
        max_workers: int = 4,
        **engine_options: Any,
    ) -> None:
        if not isinstance(fence_checkpoints, bool):
            raise TypeError(
                f"fence_checkpoints must be a bool, not {type(fence_checkpoints).__name__}"
            )
        self._runner = _Runner(
            url_or_engine,
            max_workers=max_workers,
            schema=schema,
            migrate=migrate,
            monotonic=monotonic,
            **engine_options,
        )
        self.fence_checkpoints = fence_checkpoints
        self._core: StoreCore | None = None
        self._core_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._runner!r}, fence={self.fence_checkpoints})"

    @property
    def persister(self) -> AsyncSQLPersister:
        """The :class:`~streamcheckpoint.AsyncSQLPersister` the store works through."""
        return self._runner

    # -- azure-eventhub's CheckpointStore -------------------------------------------------

    async def list_ownership(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every ownership of the consumer group, as a list of fresh dicts."""
        prefix = group_prefix(fully_qualified_namespace, eventhub_name, consumer_group)
        return await self._runner.run(lambda p: self._core_of(p).list_ownership(prefix))

    async def claim_ownership(
        self, ownership_list: Iterable[dict[str, Any]], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Claim partitions (one transaction); return new dicts for the claims that won."""
        claims = claims_from(ownership_list)
        return await self._runner.run(lambda p: self._core_of(p).claim_ownership(claims))

    async def update_checkpoint(self, checkpoint: dict[str, Any], **kwargs: Any) -> None:
        """Store a checkpoint; see the synchronous store's ``update_checkpoint``."""
        key, parsed, last_enqueued = parse_checkpoint(checkpoint, kwargs)
        await self._runner.run(
            lambda p: self._core_of(p).update_checkpoint(key, parsed, last_enqueued)
        )

    async def list_checkpoints(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every checkpoint of the consumer group, as a list of fresh dicts."""
        prefix = group_prefix(fully_qualified_namespace, eventhub_name, consumer_group)
        return await self._runner.run(lambda p: self._core_of(p).list_checkpoints(prefix))

    # -- ours -----------------------------------------------------------------------------

    async def open(self) -> Self:
        """Connect (and migrate) now rather than at the first call; return the store."""
        await self._runner.open()
        return self

    async def close(self) -> None:
        """Wait for the calls in flight, then close the connection. Idempotent."""
        await self._runner.close()

    async def __aenter__(self) -> Self:
        try:
            return await self.open()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _core_of(self, persister: SQLPersister) -> StoreCore:
        """The work behind the four methods, on the opened persister (in a worker thread)."""
        with self._core_lock:
            if self._core is None:
                self._core = StoreCore(EventHubTables(persister), fence=self.fence_checkpoints)
            return self._core


async def update_checkpoint_with_lag(
    partition_context: PartitionContext, event: EventData | None = None
) -> None:
    """The asyncio :func:`streamcheckpoint.eventhub.update_checkpoint_with_lag`."""
    received = event or partition_context._last_received_event
    options: dict[str, Any] = {
        LAST_ENQUEUED_KWARG: partition_context.last_enqueued_event_properties,
    }
    if received is not None:
        options[ENQUEUED_TIME_KWARG] = received.enqueued_time
    await partition_context.update_checkpoint(event, **options)


async def starting_position(
    store: SQLCheckpointStore | _SyncStore | AsyncPersister[Any] | BasePersister,
    fully_qualified_namespace: str,
    eventhub_name: str,
    consumer_group: str,
) -> dict[str, Any]:
    """The asyncio :func:`streamcheckpoint.eventhub.starting_position`: ``store`` is one of the
    Event Hubs stores, an asyncio persister, or a persister (read in a thread)."""
    prefix = group_prefix(fully_qualified_namespace, eventhub_name, consumer_group)
    if isinstance(store, SQLCheckpointStore):
        records = await store.persister.list(*prefix)
    elif isinstance(store, AsyncPersister):
        records = await store.list(*prefix)
    else:
        sync = store.persister if isinstance(store, _SyncStore) else store
        records = await asyncio.to_thread(sync.list, *prefix)
    return starting_position_from(records)
