"""An in-process persister, for tests and single-process use.

Nothing survives the process: use :class:`~streamcheckpoint.file.FilePersister` or
:class:`~streamcheckpoint.sql.SQLPersister` for checkpoints that must outlive a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

from .checkpoint import Checkpoint, CheckpointRecord, PartitionKey
from .persister import BasePersister, Scope, Times, check_monotonic, in_scope

__all__ = ["MemoryPersister"]


class MemoryPersister(BasePersister):
    """Thread-safe, process-local checkpoints in a dict (Go's ``MemoryPersister``).

    For tests and single-process use: everything is lost when the process ends.
    """

    def __init__(self, *, monotonic: bool = False, read_only: bool = False) -> None:
        super().__init__(monotonic=monotonic, read_only=read_only)
        self._lock = threading.Lock()
        self._data: dict[PartitionKey, CheckpointRecord] = {}

    def _write(self, key: PartitionKey, checkpoint: Checkpoint) -> None:
        self._write_many([(key, checkpoint)])

    def _write_many(
        self, pairs: list[tuple[PartitionKey, Checkpoint]], times: Times = None
    ) -> None:
        now = datetime.now(timezone.utc)
        with self._lock:
            if self.monotonic:
                for key, checkpoint in pairs:
                    stored = self._data.get(key)
                    check_monotonic(key, None if stored is None else stored.checkpoint, checkpoint)
            for index, (key, checkpoint) in enumerate(pairs):
                when = now if times is None else times[index]
                self._data[key] = CheckpointRecord(key, checkpoint, when)

    def _read(self, key: PartitionKey) -> Checkpoint | None:
        with self._lock:
            record = self._data.get(key)
        return None if record is None else record.checkpoint

    def _list(self, scope: Scope) -> Iterator[CheckpointRecord]:
        with self._lock:
            records = list(self._data.values())
        return (r for r in records if in_scope(r.key, scope))

    def _delete(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None
    ) -> int:
        group = (namespace, name, consumer_group)
        with self._lock:
            doomed = [
                k
                for k in self._data
                if k[:3] == group and (partition_id is None or k.partition_id == partition_id)
            ]
            for k in doomed:
                del self._data[k]
        return len(doomed)
