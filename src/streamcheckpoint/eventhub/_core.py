"""What the sync and asyncio Event Hubs stores share: the SDK's dicts, and the work behind them.

The parsing of what azure-eventhub passes (ownership and checkpoint dicts) and the building of
what it gets back are pure functions, run where the call is made (on the event loop, for the
asyncio store: they are cheap, and nothing the SDK may change later is read in a thread).
:class:`StoreCore` does the I/O, synchronously, on a :class:`~streamcheckpoint.SQLPersister`'s
database through :class:`~streamcheckpoint.sql.eventhub_tables.EventHubTables`; the sync store
calls it directly, the asyncio one in its worker threads. Imports nothing of azure-eventhub.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..checkpoint import (
    MAX_KEY_LENGTH,
    Checkpoint,
    CheckpointRecord,
    PartitionKey,
    check_key_component,
    make_key,
)
from ..sql.eventhub_statements import Claim, LastEnqueued, OwnershipRecord
from ..sql.eventhub_tables import EventHubTables

__all__ = [
    "CHECKPOINT_KEYS",
    "OWNERSHIP_KEYS",
    "ClaimedOwners",
    "StoreCore",
    "checkpoint_dict",
    "claims_from",
    "group_prefix",
    "ownership_dict",
    "parse_checkpoint",
    "starting_position_from",
]

_KEY_NAMES = ("fully_qualified_namespace", "eventhub_name", "consumer_group", "partition_id")
"""A :class:`PartitionKey`'s fields in the SDK's names, in the same order."""

OWNERSHIP_KEYS = (*_KEY_NAMES, "owner_id", "etag", "last_modified_time")
"""The keys of an ownership dict, as azure-eventhub reads them."""

CHECKPOINT_KEYS = (*_KEY_NAMES, "sequence_number", "offset")
"""The keys of a checkpoint dict, as azure-eventhub reads them."""

LAST_ENQUEUED_KWARG = "last_enqueued_event_properties"
"""``update_checkpoint``'s keyword for the partition's last enqueued event (for lag)."""

ENQUEUED_TIME_KWARG = "enqueued_time"
"""``update_checkpoint``'s keyword for the enqueue time of the checkpointed event."""


# -- what the SDK passes --------------------------------------------------------------------


def group_prefix(
    fully_qualified_namespace: str, eventhub_name: str, consumer_group: str
) -> tuple[str, str, str]:
    """The three names of a consumer group, validated as every key component is."""
    return (
        check_key_component("fully_qualified_namespace", fully_qualified_namespace),
        check_key_component("eventhub_name", eventhub_name),
        check_key_component("consumer_group", consumer_group),
    )


def _key_of(document: Mapping[str, Any], what: str) -> PartitionKey:
    if not isinstance(document, Mapping):
        raise TypeError(f"each {what} must be a dict, not {type(document).__name__}")
    try:
        return make_key(*(document[name] for name in _KEY_NAMES))
    except KeyError as exc:
        raise ValueError(f"the {what} {dict(document)!r} has no {exc.args[0]!r}") from None


def _owner_id(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"owner_id must be a str, not {type(value).__name__}: {value!r}")
    if len(value) > MAX_KEY_LENGTH or "\x00" in value:
        raise ValueError(
            f"owner_id must be at most {MAX_KEY_LENGTH} characters without NUL: {value[:40]!r}"
        )
    return value


def claims_from(ownership_list: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """The claims in ``claim_ownership``'s argument (read once, not kept)."""
    claims = []
    for document in ownership_list:
        key = _key_of(document, "ownership")
        if "owner_id" not in document:
            raise ValueError(f"the ownership of {key.describe()} has no 'owner_id'")
        etag = document.get("etag")
        if etag is not None and not isinstance(etag, str):
            raise TypeError(f"etag must be a str or absent, not {type(etag).__name__}")
        claims.append(Claim(key, _owner_id(document["owner_id"]), etag))
    return claims


def parse_checkpoint(
    document: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[PartitionKey, Checkpoint, LastEnqueued | None]:
    """The key, checkpoint and last enqueued event of an ``update_checkpoint`` call.

    ``offset`` is a non-empty str (an int is taken as its decimal text, as the Blob store
    does); ``None`` is refused. ``options`` are the call's keyword arguments: ours are
    ``enqueued_time`` (an aware datetime, stored as the checkpoint's enqueue time) and
    ``last_enqueued_event_properties`` (a ``PartitionContext.last_enqueued_event_properties``
    dict); any other is the SDK's or another store's, and ignored.
    """
    key = _key_of(document, "checkpoint")
    offset, sequence_number = document.get("offset"), document.get("sequence_number")
    if offset is None or sequence_number is None:
        missing = "offset" if offset is None else "sequence_number"
        raise ValueError(
            f"the checkpoint for {key.describe()} has no {missing} (None): checkpoint an event "
            "received from Event Hubs, which has both"
        )
    if isinstance(offset, int) and not isinstance(offset, bool):
        offset = str(offset)
    checkpoint = Checkpoint(offset, sequence_number, options.get(ENQUEUED_TIME_KWARG))
    return key, checkpoint, _last_enqueued(options.get(LAST_ENQUEUED_KWARG))


def _last_enqueued(properties: object) -> LastEnqueued | None:
    if properties is None:
        return None
    if not isinstance(properties, Mapping):
        raise TypeError(
            f"{LAST_ENQUEUED_KWARG} must be a dict (PartitionContext."
            f"last_enqueued_event_properties), not {type(properties).__name__}"
        )
    sequence_number = properties.get("sequence_number")
    offset = properties.get("offset")
    when = properties.get("enqueued_time")
    if sequence_number is not None and (
        isinstance(sequence_number, bool) or not isinstance(sequence_number, int)
    ):
        raise TypeError(f"the last enqueued sequence_number must be an int: {sequence_number!r}")
    if offset is not None and not isinstance(offset, str):
        raise TypeError(f"the last enqueued offset must be a str: {offset!r}")
    if when is not None and (not isinstance(when, datetime) or when.utcoffset() is None):
        raise TypeError(f"the last enqueued enqueued_time must be an aware datetime: {when!r}")
    if sequence_number is None and offset is None and when is None:
        return None
    return LastEnqueued(sequence_number, offset, when)


# -- what the SDK gets back -----------------------------------------------------------------


def _key_dict(key: PartitionKey) -> dict[str, Any]:
    """A key in the SDK's names."""
    return dict(zip(_KEY_NAMES, key, strict=True))


def ownership_dict(record: OwnershipRecord) -> dict[str, Any]:
    """A fresh ownership dict; ``last_modified_time`` in epoch seconds (a float), as the SDK
    compares it with ``time.time()``."""
    return {
        **_key_dict(record.key),
        "owner_id": record.owner_id,
        "etag": record.etag,
        "last_modified_time": record.last_modified.timestamp(),
    }


def checkpoint_dict(record: CheckpointRecord) -> dict[str, Any]:
    """A fresh checkpoint dict: ``offset`` a str, ``sequence_number`` an int."""
    return {
        **_key_dict(record.key),
        "sequence_number": record.checkpoint.sequence_number,
        "offset": record.checkpoint.offset,
    }


def starting_position_from(records: Sequence[CheckpointRecord]) -> dict[str, Any]:
    """``EventHubConsumerClient.receive``'s keyword arguments that resume after ``records``.

    ``starting_position`` maps each partition to its stored offset, and
    ``starting_position_inclusive`` is ``False`` for each: the checkpoint is the last event
    processed, so reading resumes with the one after it (the store's own rule). A partition
    without a checkpoint is left out: the SDK then starts it at its default (``"-1"``, the
    start of the stream).
    """
    return {
        "starting_position": {r.key.partition_id: r.checkpoint.offset for r in records},
        "starting_position_inclusive": dict.fromkeys((r.key.partition_id for r in records), False),
    }


# -- the work -------------------------------------------------------------------------------


class ClaimedOwners:
    """The owner id each partition was last claimed with through one store, by its own
    successful ``claim_ownership`` calls (what a fenced checkpoint must still find stored)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[PartitionKey, str] = {}

    def get(self, key: PartitionKey) -> str | None:
        """The owner id ``key`` was claimed with, or ``None``."""
        with self._lock:
            return self._owners.get(key)

    def update(self, claims: Sequence[Claim], won: Sequence[OwnershipRecord]) -> None:
        """Remember the claims that won; forget a partition released or lost."""
        winners = {record.key: record.owner_id for record in won}
        with self._lock:
            for claim in claims:
                owner = winners.get(claim.key)
                if owner:
                    self._owners[claim.key] = owner
                elif owner == "" or self._owners.get(claim.key) == claim.owner_id:
                    self._owners.pop(claim.key, None)


class StoreCore:
    """The four methods of azure-eventhub's ``CheckpointStore``, synchronously, on ``tables``.

    With ``fence`` every checkpoint is written only if the partition's ownership row still
    names the owner id this store claimed it with, and only forwards (see
    :meth:`EventHubTables.write_checkpoint`).
    """

    def __init__(self, tables: EventHubTables, *, fence: bool) -> None:
        self.tables = tables
        self.fence = fence
        self.claimed = ClaimedOwners()

    def list_ownership(self, prefix: tuple[str, str, str]) -> list[dict[str, Any]]:
        """Every ownership row of the consumer group, as fresh dicts."""
        return [ownership_dict(record) for record in self.tables.ownerships(prefix)]

    def claim_ownership(self, claims: Sequence[Claim]) -> list[dict[str, Any]]:
        """The claims that won, as fresh dicts with their new etag and time."""
        won = self.tables.claim(claims)
        self.claimed.update(claims, won)
        return [ownership_dict(record) for record in won]

    def update_checkpoint(
        self, key: PartitionKey, checkpoint: Checkpoint, last_enqueued: LastEnqueued | None
    ) -> None:
        """Store the checkpoint (fenced if the store is)."""
        owner = self.claimed.get(key) if self.fence else None
        self.tables.write_checkpoint(
            key, checkpoint, owner_id=owner, fenced=self.fence, last_enqueued=last_enqueued
        )

    def list_checkpoints(self, prefix: tuple[str, str, str]) -> list[dict[str, Any]]:
        """Every checkpoint of the consumer group, as fresh dicts."""
        return [checkpoint_dict(record) for record in self.tables.persister.list(*prefix)]
