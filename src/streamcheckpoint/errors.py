"""Errors raised by streamcheckpoint.

Every error a caller may want to handle derives from :class:`PersistError`. Where a stdlib type
already describes the situation (a stored value that is not valid is a ``ValueError``), the error
subclasses it too, so ``except ValueError`` keeps working.

Invalid *arguments* (a bad key, a naive datetime) are plain ``ValueError``/``TypeError``: they are
programming mistakes, raised before any storage is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, CheckpointRecord, PartitionKey

__all__ = [
    "CheckpointRegressionError",
    "CorruptCheckpointError",
    "OwnershipLostError",
    "PersistConnectionError",
    "PersistError",
    "SchemaError",
]


class PersistError(Exception):
    """Base class of every storage error raised by streamcheckpoint."""


class CorruptCheckpointError(PersistError, ValueError):
    """A stored checkpoint exists but cannot be read.

    Raised instead of silently returning "start of stream", which would make a consumer
    re-process its whole partition. The message names the file or key and what is wrong.

    :attr:`key` is the unreadable checkpoint's key, where known. Raised by ``list``,
    :attr:`records` holds every checkpoint that could be read and :attr:`unreadable` one error
    per checkpoint that could not, so a caller can show the rest and deal with those (delete
    or overwrite them: neither reads the stored value).
    """

    def __init__(
        self,
        message: str,
        *,
        key: PartitionKey | None = None,
        records: Sequence[CheckpointRecord] = (),
        unreadable: Sequence[CorruptCheckpointError] = (),
    ) -> None:
        super().__init__(message)
        self.key = key
        self.records = list(records)
        self.unreadable = list(unreadable)

    def __reduce__(self) -> tuple[object, ...]:
        keywords = {"key": self.key, "records": self.records, "unreadable": self.unreadable}
        return (_rebuild_corrupt, (type(self), str(self), keywords))


class CheckpointRegressionError(PersistError):
    """A monotonic persister refused a write that would move a checkpoint backwards.

    Nothing was changed. This usually means another consumer now owns the partition and has
    made more progress; the caller should stop processing that partition.
    """

    def __init__(self, key: PartitionKey, stored: Checkpoint, refused: Checkpoint) -> None:
        self.key = key
        self.stored = stored
        self.refused = refused
        super().__init__(
            f"refused to move checkpoint for {key.describe()} backwards: stored sequence number "
            f"{stored.sequence_number} (offset {stored.offset!r}) is higher than "
            f"{refused.sequence_number} (offset {refused.offset!r}); nothing was written. "
            "Another consumer probably owns this partition now: stop processing it, or open the "
            "persister with monotonic=False to overwrite on purpose."
        )

    def __reduce__(self) -> tuple[type[CheckpointRegressionError], tuple[object, ...]]:
        return (type(self), (self.key, self.stored, self.refused))


class SchemaError(PersistError):
    """The database schema is missing or not at the revision this version of the code needs.

    The message names the exact command that brings the schema up to date.
    """


class PersistConnectionError(PersistError, ConnectionError):
    """The store could not be reached (database down, wrong host, refused credentials)."""


def _rebuild_corrupt(
    cls: type[CorruptCheckpointError], message: str, keywords: dict[str, object]
) -> CorruptCheckpointError:
    return cls(message, **keywords)  # type: ignore[arg-type]


class OwnershipLostError(PersistError):
    """A fenced checkpoint was refused: the partition's ownership no longer names its writer.

    Raised by :mod:`streamcheckpoint.eventhub`'s stores with ``fence_checkpoints=True`` when the
    processor writing the checkpoint is not (or no longer) the partition's owner: another
    processor claimed it during a rebalance, an operator released it, or this store never
    claimed it. Nothing was written. ``key`` is the partition, ``owner_id`` the owner this
    store claimed it with (``None`` if it never did), ``current_owner`` the owner stored now
    (``None`` if there is no ownership row, ``""`` if it was released).
    """

    def __init__(self, key: PartitionKey, owner_id: str | None, current_owner: str | None) -> None:
        self.key = key
        self.owner_id = owner_id
        self.current_owner = current_owner
        if owner_id is None:
            reason = "this store has not claimed it (fence_checkpoints needs the load balancing "
            reason += "of an EventHubConsumerClient with this store as its checkpoint_store)"
        elif current_owner is None:
            reason = f"it has no ownership row any more (this store claimed it as {owner_id!r})"
        elif current_owner == "":
            reason = f"it was released (this store claimed it as {owner_id!r})"
        else:
            reason = f"it is owned by {current_owner!r} now, not by {owner_id!r}"
        super().__init__(
            f"refused the checkpoint for {key.describe()}: {reason}; nothing was written. "
            "Stop processing this partition: its new owner carries on from its own checkpoint."
        )

    def __reduce__(self) -> tuple[type[OwnershipLostError], tuple[object, ...]]:
        return (type(self), (self.key, self.owner_id, self.current_owner))
