"""azure-eventhub's ``checkpoint_store=`` on streamcheckpoint's SQL tables.

:class:`SQLCheckpointStore` is a :class:`azure.eventhub.CheckpointStore` for
``EventHubConsumerClient`` (``streamcheckpoint.eventhub.aio.SQLCheckpointStore`` for
``azure.eventhub.aio``): partition ownership for load balancing between processes and hosts,
and checkpoints in the ``checkpoints`` table that :class:`~streamcheckpoint.SQLPersister` and
``streamcheckpoint status`` read. Needs ``pip install 'streamcheckpoint[eventhub]'``.

:func:`update_checkpoint_with_lag` checkpoints an event together with the partition's last
enqueued event, so that lag is a SQL query; :func:`starting_position` turns stored checkpoints
into ``EventHubConsumerClient.receive``'s starting position, for consumers that don't balance.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    from azure.eventhub import CheckpointStore
except ImportError as exc:  # pragma: no cover - exercised in a process without azure-eventhub
    raise ImportError(
        "streamcheckpoint.eventhub needs azure-eventhub: pip install 'streamcheckpoint[eventhub]'"
        f" ({exc})"
    ) from exc

from ..persister import BasePersister
from ..sql import SQLPersister
from ..sql.engine import UrlOrEngine
from ..sql.eventhub_tables import EventHubTables
from ..sql.persister import check_arguments
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
    from azure.eventhub import EventData, PartitionContext

    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["SQLCheckpointStore", "starting_position", "update_checkpoint_with_lag"]


class SQLCheckpointStore(CheckpointStore):
    """Partition ownership and checkpoints for ``EventHubConsumerClient`` in a SQL database.

    ``url_or_engine``, ``schema``, ``migrate``, ``monotonic`` and ``engine_options`` are
    :class:`~streamcheckpoint.SQLPersister`'s (SQLite for many processes on one host,
    PostgreSQL or MySQL/MariaDB for many hosts); opening connects and, with ``migrate=True``,
    upgrades the schema. Checkpoints go to the ``checkpoints`` table
    (``fully_qualified_namespace`` is the namespace, ``eventhub_name`` the name), ownerships to
    ``ownerships``.

    The contract is azure-eventhub's: ``list_ownership`` and ``list_checkpoints`` return lists
    of fresh dicts (``last_modified_time`` in epoch seconds, a float); ``claim_ownership`` runs
    every claim of a call in one transaction, each conditional on the etag the claimant saw
    (or, without one, on nobody having the partition), and returns the claims that won (losers
    are left out); ``update_checkpoint`` is one upsert. Database errors are raised as
    :class:`~streamcheckpoint.errors.PersistError` subclasses, passwords masked.

    ``fence_checkpoints=True``: a checkpoint is written only if the partition's ownership row
    still names the owner id that this store claimed it with (by its own ``claim_ownership``),
    and only if it doesn't move the partition backwards; otherwise nothing is written and
    :class:`~streamcheckpoint.errors.OwnershipLostError` (or
    :class:`~streamcheckpoint.errors.CheckpointRegressionError`) is raised, which the SDK hands
    to ``on_error``. The check and the write are one transaction that holds the ownership row
    (see the README's "Fencing" for what is and isn't guarded). Give each processor its own
    store: the store can't tell apart two processors that share it.

    Thread-safe. ``close()`` (or ``with``) closes the connection and, if it made it, the engine.
    """

    def __init__(
        self,
        url_or_engine: UrlOrEngine,
        *,
        schema: str | None = None,
        migrate: bool = True,
        monotonic: bool = False,
        fence_checkpoints: bool = False,
        **engine_options: Any,
    ) -> None:
        check_arguments(url_or_engine, schema, migrate, monotonic, engine_options)
        if not isinstance(fence_checkpoints, bool):
            raise TypeError(
                f"fence_checkpoints must be a bool, not {type(fence_checkpoints).__name__}"
            )
        self.persister = SQLPersister(
            url_or_engine, schema=schema, migrate=migrate, monotonic=monotonic, **engine_options
        )
        """The :class:`~streamcheckpoint.SQLPersister` the store reads and writes through."""
        self.fence_checkpoints = fence_checkpoints
        self._core = StoreCore(EventHubTables(self.persister), fence=fence_checkpoints)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.persister!r}, fence={self.fence_checkpoints})"

    # -- azure-eventhub's CheckpointStore -------------------------------------------------

    def list_ownership(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every ownership of the consumer group, as a list of fresh dicts."""
        prefix = group_prefix(fully_qualified_namespace, eventhub_name, consumer_group)
        return self._core.list_ownership(prefix)

    def claim_ownership(
        self, ownership_list: Iterable[dict[str, Any]], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Claim partitions (one transaction); return new dicts for the claims that won."""
        return self._core.claim_ownership(claims_from(ownership_list))

    def update_checkpoint(self, checkpoint: dict[str, Any], **kwargs: Any) -> None:
        """Store a checkpoint (``offset`` and ``sequence_number``) for its partition.

        Keyword arguments of ours (others are ignored): ``enqueued_time``, the event's enqueue
        time, and ``last_enqueued_event_properties``, the partition's last enqueued event; see
        :func:`update_checkpoint_with_lag`.
        """
        self._core.update_checkpoint(*parse_checkpoint(checkpoint, kwargs))

    def list_checkpoints(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every checkpoint of the consumer group, as a list of fresh dicts."""
        prefix = group_prefix(fully_qualified_namespace, eventhub_name, consumer_group)
        return self._core.list_checkpoints(prefix)

    # -- ours -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (and the engine, if the store made it). Idempotent."""
        self.persister.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def update_checkpoint_with_lag(
    partition_context: PartitionContext, event: EventData | None = None
) -> None:
    """``partition_context.update_checkpoint(event)``, recording beside the checkpoint the
    event's enqueue time and the partition's last enqueued event, in the same transaction.

    The last enqueued event is known when the consumer was started with
    ``track_last_enqueued_event_properties=True``; then ``last_enqueued_sequence_number -
    sequence_number`` in the ``checkpoints`` table is the partition's lag (``streamcheckpoint
    status`` shows it). Through a store that isn't ours the extra keywords reach that store.
    """
    received = event or partition_context._last_received_event
    options: dict[str, Any] = {
        LAST_ENQUEUED_KWARG: partition_context.last_enqueued_event_properties,
    }
    if received is not None:
        options[ENQUEUED_TIME_KWARG] = received.enqueued_time
    partition_context.update_checkpoint(event, **options)


def starting_position(
    store: SQLCheckpointStore | BasePersister,
    fully_qualified_namespace: str,
    eventhub_name: str,
    consumer_group: str,
) -> dict[str, Any]:
    """Keyword arguments of ``EventHubConsumerClient.receive`` that resume each partition of
    the consumer group right after its stored checkpoint, for consumers without load balancing
    (no ``checkpoint_store``): ``client.receive(on_event, **starting_position(...))``.

    ``starting_position`` maps partition ids to offsets and ``starting_position_inclusive`` is
    ``False`` for each (the stored event was processed). Partitions without a checkpoint are
    left out; the SDK starts those at the start of the stream. ``store`` is one of these stores
    or any persister.
    """
    persister = store.persister if isinstance(store, SQLCheckpointStore) else store
    prefix = group_prefix(fully_qualified_namespace, eventhub_name, consumer_group)
    return starting_position_from(persister.list(*prefix))
