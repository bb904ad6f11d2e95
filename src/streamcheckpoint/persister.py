"""The persister contract and the base every built-in backend shares.

:class:`CheckpointPersister` is Go's ``persist.CheckpointPersister``: exactly ``write`` and
``read``. :class:`BasePersister` adds ``write_many``, ``list``, ``delete``, ``close`` and the
monotonic rule, and does all argument validation *before* a backend touches storage, so every
backend accepts and refuses exactly the same input.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from .checkpoint import (
    Checkpoint,
    CheckpointRecord,
    PartitionKey,
    check_checkpoint,
    check_key_component,
    is_plain_key,
    make_key,
    record_sort_key,
)
from .errors import CheckpointRegressionError, CorruptCheckpointError, PersistError

__all__ = [
    "BasePersister",
    "CheckpointItems",
    "CheckpointPersister",
    "check_bool",
    "check_delete_target",
    "check_monotonic",
    "in_scope",
    "normalize_items",
    "normalize_scope",
    "scope_prefix",
]

_Self = TypeVar("_Self", bound="BasePersister")

CheckpointItems: TypeAlias = (
    "Mapping[PartitionKey, Checkpoint] | Iterable[tuple[PartitionKey, Checkpoint]]"
    " | Iterable[CheckpointRecord]"
)

Times: TypeAlias = "Sequence[datetime] | None"
"""When each of a batch's checkpoints was last written (``write_many`` of records), or ``None``:
now, by the store's clock."""


@runtime_checkable
class CheckpointPersister(Protocol):
    """Stores and retrieves checkpoints keyed on namespace, name, consumer group and partition.

    The contract of Go's ``persist.CheckpointPersister``. ``read`` of a key that was never
    written returns :meth:`Checkpoint.start_of_stream`.
    """

    def write(
        self,
        namespace: str,
        name: str,
        consumer_group: str,
        partition_id: str,
        checkpoint: Checkpoint,
    ) -> None:
        """Store ``checkpoint`` for the partition; durable once this returns."""

    def read(self, namespace: str, name: str, consumer_group: str, partition_id: str) -> Checkpoint:
        """Return the stored checkpoint, or start of stream if none was written."""


def check_bool(field: str, value: object) -> None:
    """Refuse (``TypeError``) an option that must be a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{field} must be a bool, not {type(value).__name__}")


def check_delete_target(
    namespace: object, name: object, consumer_group: object, partition_id: object
) -> None:
    """Validate the arguments of ``delete`` (``partition_id`` None: the whole group)."""
    check_key_component("namespace", namespace)
    check_key_component("name", name)
    check_key_component("consumer_group", consumer_group)
    if partition_id is not None:
        check_key_component("partition_id", partition_id)


def normalize_items(
    items: CheckpointItems,
) -> tuple[list[tuple[PartitionKey, Checkpoint]], list[datetime] | None]:
    """Validate a ``write_many`` argument: its (key, checkpoint) pairs, and their times where
    it is records.

    Accepts a mapping, an iterable of pairs whose keys are :class:`PartitionKey` or any
    4-tuple of strings, or an iterable of :class:`CheckpointRecord` (a record without
    ``updated_at`` is stamped now). A key given twice is refused: which should win is ambiguous.
    """
    if not isinstance(items, (Mapping, str, bytes)) and isinstance(items, Iterable):
        given: list[Any] = list(items)
        if given and all(type(item) is CheckpointRecord for item in given):
            now = datetime.now(timezone.utc)
            times = [now if r.updated_at is None else r.updated_at for r in given]
            return _normalize_pairs([(r.key, r.checkpoint) for r in given]), times
        items = given
    return _normalize_pairs(items), None


def _normalize_pairs(items: CheckpointItems) -> list[tuple[PartitionKey, Checkpoint]]:
    if isinstance(items, Mapping):
        # Mapping keys can't repeat: plain keys and checkpoints need no further checks.
        given = list(items.items())
        if all(
            type(k) is PartitionKey and type(v) is Checkpoint and is_plain_key(*k) for k, v in given
        ):
            return given
    pairs: Iterable[object] = items.items() if isinstance(items, Mapping) else items
    if isinstance(pairs, (str, bytes)):
        raise TypeError("write_many needs a mapping or an iterable of (key, checkpoint) pairs")
    result: list[tuple[PartitionKey, Checkpoint]] = []
    seen: set[PartitionKey] = set()
    for index, pair in enumerate(pairs):
        # Exact type checks first: the ABC isinstance checks cost more than the write itself.
        if type(pair) is not tuple or len(pair) != 2:
            _check_pair_shape(index, pair)
        raw_key: Sequence[object]
        item: object
        raw_key, item = pair  # type: ignore[misc]
        if type(raw_key) is not PartitionKey and (type(raw_key) is not tuple or len(raw_key) != 4):
            _check_key_shape(index, raw_key)
        key = make_key(*raw_key)
        checkpoint = item if type(item) is Checkpoint else check_checkpoint(item)
        if key in seen:
            raise ValueError(f"write_many got {key.describe()} more than once; pass each key once")
        seen.add(key)
        result.append((key, checkpoint))
    return result


def _check_pair_shape(index: int, pair: object) -> None:
    if not isinstance(pair, Sequence) or isinstance(pair, (str, bytes)) or len(pair) != 2:
        raise TypeError(f"write_many item {index} must be a (key, checkpoint) pair, got {pair!r}")


def _check_key_shape(index: int, raw_key: object) -> None:
    if not isinstance(raw_key, Sequence) or isinstance(raw_key, str) or len(raw_key) != 4:
        raise TypeError(
            f"write_many item {index}: the key must be a PartitionKey(namespace, name, "
            f"consumer_group, partition_id), got {raw_key!r}"
        )


Scope: TypeAlias = "tuple[str | None, str | None, str | None]"
"""What ``list`` keeps: the namespace, name and consumer group it must have (``None``: any)."""


def normalize_scope(namespace: object, name: object, consumer_group: object) -> Scope:
    """Validate ``list`` filters (any of them may be ``None``) and return them as a scope."""
    given = (("namespace", namespace), ("name", name), ("consumer_group", consumer_group))
    scope = tuple(None if v is None else check_key_component(f, v) for f, v in given)
    return scope  # type: ignore[return-value]


def scope_prefix(scope: Scope) -> tuple[str, ...]:
    """The leading components a scope fixes: where a walk in key order can start."""
    prefix: list[str] = []
    for value in scope:
        if value is None:
            break
        prefix.append(value)
    return tuple(prefix)


def in_scope(key: PartitionKey, scope: Scope) -> bool:
    """Whether ``key`` has every component ``scope`` asks for."""
    return all(wanted is None or wanted == have for wanted, have in zip(scope, key, strict=False))


def check_monotonic(key: PartitionKey, stored: Checkpoint | None, new: Checkpoint) -> None:
    """Raise :class:`CheckpointRegressionError` if ``new`` would move ``stored`` backwards."""
    if stored is not None and new.sequence_number < stored.sequence_number:
        raise CheckpointRegressionError(key, stored, new)


class BasePersister(abc.ABC):
    """Shared behaviour of the built-in persisters.

    Subclasses implement the underscored storage methods; everything here validates first.
    With ``monotonic=True`` a write whose sequence number is lower than the stored one raises
    :class:`~streamcheckpoint.errors.CheckpointRegressionError` and changes nothing. With
    ``read_only=True`` the store is opened for reading (nothing is created, migrated or
    cleaned up) and ``write``, ``write_many`` and ``delete`` raise
    :class:`~streamcheckpoint.errors.PersistError`.
    """

    def __init__(self, *, monotonic: bool = False, read_only: bool = False) -> None:
        check_bool("monotonic", monotonic)
        check_bool("read_only", read_only)
        self.monotonic = monotonic
        self.read_only = read_only
        self._closed = False

    # -- the contract ---------------------------------------------------------------------

    def write(
        self,
        namespace: str,
        name: str,
        consumer_group: str,
        partition_id: str,
        checkpoint: Checkpoint,
    ) -> None:
        """Store ``checkpoint`` for the partition; durable once this returns."""
        key = make_key(namespace, name, consumer_group, partition_id)
        check_checkpoint(checkpoint)
        self._check_writable()
        self._write(key, checkpoint)

    def read(self, namespace: str, name: str, consumer_group: str, partition_id: str) -> Checkpoint:
        """Return the stored checkpoint, or :meth:`Checkpoint.start_of_stream` if none."""
        key = make_key(namespace, name, consumer_group, partition_id)
        self._check_open()
        stored = self._read(key)
        return Checkpoint.start_of_stream() if stored is None else stored

    # -- the extensions -------------------------------------------------------------------

    def write_many(self, items: CheckpointItems) -> None:
        """Store several checkpoints, all or nothing.

        ``items`` is a mapping ``PartitionKey -> Checkpoint``, an iterable of such pairs, or an
        iterable of :class:`CheckpointRecord` (what ``list`` returns: copying a store), whose
        ``updated_at`` is kept rather than set to now. In monotonic mode one regression rejects
        the whole batch.
        """
        pairs, times = normalize_items(items)
        self._check_writable()
        if pairs:
            self._write_many(pairs, times)

    def list(
        self,
        namespace: str | None = None,
        name: str | None = None,
        consumer_group: str | None = None,
    ) -> builtins.list[CheckpointRecord]:
        """Return stored checkpoints, of the given namespace, name and consumer group (any
        combination of them; ``None``: all).

        Sorted by key, partition ids in natural order (``"2"`` before ``"10"``). If some stored
        checkpoints can't be read, raises :class:`~streamcheckpoint.errors.CorruptCheckpointError`
        carrying the others (``.records``) and an error per unreadable one (``.unreadable``).
        """
        scope = normalize_scope(namespace, name, consumer_group)
        self._check_open()
        records: builtins.list[CheckpointRecord] = []
        unreadable: builtins.list[CorruptCheckpointError] = []
        for found in self._list(scope):
            if isinstance(found, CorruptCheckpointError):
                unreadable.append(found)
            else:
                records.append(found)
        records.sort(key=record_sort_key)
        if unreadable:
            raise CorruptCheckpointError(
                f"{unreadable[0]} ({len(unreadable)} of {len(records) + len(unreadable)} "
                "stored checkpoints can't be read; the error's .records holds the others)",
                key=unreadable[0].key,
                records=records,
                unreadable=unreadable,
            )
        return records

    def delete(
        self,
        namespace: str,
        name: str,
        consumer_group: str,
        partition_id: str | None = None,
    ) -> int:
        """Delete one partition's checkpoint, or the whole consumer group's; return the count."""
        check_delete_target(namespace, name, consumer_group, partition_id)
        self._check_writable()
        return self._delete(namespace, name, consumer_group, partition_id)

    def close(self) -> None:
        """Release resources; the persister can't be used afterwards. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise PersistError(
                f"{type(self).__name__} was opened with read_only=True and doesn't write; open "
                "another one without it to write"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise PersistError(f"{type(self).__name__} is closed; open a new one")

    # -- what a backend implements --------------------------------------------------------

    @abc.abstractmethod
    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        """Store one validated checkpoint (honouring ``self.monotonic``)."""

    @abc.abstractmethod
    def _write_many(
        self, pairs: builtins.list[tuple[PartitionKey, Checkpoint]], times: Times = None
    ) -> None:
        """Store validated, distinct pairs atomically (honouring ``self.monotonic``), last
        written at ``times`` (one per pair), or now."""

    @abc.abstractmethod
    def _read(self, key: PartitionKey) -> Checkpoint | None:
        """Return the stored checkpoint or ``None``."""

    @abc.abstractmethod
    def _list(self, scope: Scope) -> Iterable[CheckpointRecord | CorruptCheckpointError]:
        """Yield the records of keys :func:`in_scope` (any order), and for a stored checkpoint
        that can't be read, its :class:`CorruptCheckpointError` (with its ``key``)."""

    @abc.abstractmethod
    def _delete(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None
    ) -> int:
        """Delete and return how many checkpoints were removed."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources."""
