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
