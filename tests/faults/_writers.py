"""Writers that write checkpoints continuously while a test breaks the database under them.

:class:`Writers` runs in a thread of its own: with ``api="sync"`` one loop of calls on a
:class:`~streamcheckpoint.SQLPersister` (one call in flight at a time), with ``api="async"``
``tasks`` asyncio tasks on one :class:`~streamcheckpoint.AsyncSQLPersister` (up to ``tasks``
calls in flight). Each writer owns two partitions and writes them increasing sequence numbers:
every fifth call a ``write_many`` of both, otherwise a ``write`` of the first. Every call is
logged (:class:`Call`: what, when, how it ended); a call that raised is followed by a short
pause, so an outage costs a few failed calls, not thousands. Writers never reopen: the same
persister serves the whole run.

:meth:`Writers.check_store` then compares the store with the log: each partition holds its last
acknowledged checkpoint or a later one whose call failed (it may have committed before the
connection died), never anything that wasn't written.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from streamcheckpoint import AsyncSQLPersister, Checkpoint, PartitionKey, SQLPersister

__all__ = ["Api", "Call", "Writers"]

Api = Literal["sync", "async"]

PAUSE_AFTER_ERROR_S = 0.05
"""How long a writer waits after a failed call before the next one."""


@dataclass(frozen=True)
class Call:
    """One call a writer made: the checkpoints it carried, when, and what it raised."""

    writes: tuple[tuple[PartitionKey, int], ...]
    started: float  # time.monotonic()
    ended: float
    error: BaseException | None

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the call was in flight at some moment between ``start`` and ``end``."""
        return self.started <= end and self.ended >= start


class Writers:
    """``tasks`` writers writing to ``url`` (schema ``schema``) until :meth:`stop`."""

    def __init__(self, api: Api, url: str, *, schema: str | None = None, tasks: int = 1) -> None:
        if api == "sync" and tasks != 1:
            raise ValueError("a synchronous writer has one call in flight: tasks=1")
        self.api = api
        self.url = url
        self.schema = schema
        self.tasks = tasks
        self.calls: list[Call] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failure: BaseException | None = None  # raised by the harness itself
        self._thread = threading.Thread(target=self._main, name="writers", daemon=True)

    # -- the test's side ------------------------------------------------------------------

    def start(self) -> None:
        """Open the persister and start writing; returns once the first call succeeded."""
        self._thread.start()
        if not self._ready.wait(60):
            raise AssertionError("the writers did not write within 60 s")
        self._check_harness()

    def stop(self) -> None:
        """Stop writing, close the persister."""
        self._stopping.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the writers did not stop within 60 s"
        self._check_harness()

    def wait_for_successes(self, count: int, *, after: float, timeout: float = 30) -> float:
        """Wait until ``count`` calls started after ``after`` succeeded; when the first did."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = [c for c in self.calls if c.error is None and c.started > after]
            if len(done) >= count:
                return min(c.ended for c in done)
            self._check_harness()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(done)} of {count} calls started after the fault succeeded within "
                    f"{timeout} s: the persister did not recover"
                )
            time.sleep(0.01)

    def failures(self) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.error is not None]

    def acknowledged(self) -> dict[PartitionKey, int]:
        """The highest sequence number each partition was acknowledged with."""
        acked: dict[PartitionKey, int] = {}
        for call in self.calls:
            if call.error is None:
                for key, sequence in call.writes:
                    acked[key] = max(acked.get(key, -1), sequence)
        return acked

    def check_store(self, stored: dict[PartitionKey, Checkpoint]) -> int:
        """Assert every acknowledged write is in ``stored`` (the store read afterwards, on
        whichever server now has it) and nothing that wasn't written; the number of keys."""
        attempted: dict[PartitionKey, set[int]] = {}
        for call in self.calls:
            for key, sequence in call.writes:
                attempted.setdefault(key, set()).add(sequence)
        acked = self.acknowledged()
        assert acked, "nothing was acknowledged"
        for key, sequence in acked.items():
            assert key in stored, f"{key} was acknowledged with {sequence} and is gone"
            found = stored[key]
            assert found.sequence_number >= sequence, (
                f"{key}: acknowledged {sequence}, stored {found.sequence_number}: lost"
            )
            assert found.sequence_number in attempted[key], f"{key}: {found} was never written"
            assert found.offset == str(found.sequence_number)
        assert set(stored) <= set(attempted), "a partition nobody wrote is stored"
        return len(acked)

    # -- the writers' side ----------------------------------------------------------------

    def _check_harness(self) -> None:
        if self._failure is not None:
            raise AssertionError("the writers' harness failed") from self._failure

    def _main(self) -> None:
        try:
            if self.api == "sync":
                self._run_sync()
            else:
                asyncio.run(self._run_async())
        except BaseException as exc:  # reported to the test thread
            self._failure = exc
            self._ready.set()

    def _plan(self, writer: int, number: int) -> tuple[tuple[PartitionKey, int], ...]:
        first = PartitionKey("ns", "hub", "$Default", f"w{writer}")
        if number % 5 == 4:
            second = first._replace(partition_id=f"w{writer}-batch")
            return ((first, number), (second, number))
        return ((first, number),)

    def _log(
        self,
        writes: tuple[tuple[PartitionKey, int], ...],
        started: float,
        error: BaseException | None,
    ) -> None:
        with self._lock:
            self.calls.append(Call(writes, started, time.monotonic(), error))
        if error is None:
            self._ready.set()

    def _run_sync(self) -> None:
        persister = SQLPersister(self.url, schema=self.schema)
        try:
            number = 0
            while not self._stopping.is_set():
                writes = self._plan(0, number)
                number += 1
                started = time.monotonic()
                try:
                    _call(writes, persister.write, persister.write_many)
                except Exception as exc:  # logged, judged by the test
                    self._log(writes, started, exc)
                    time.sleep(PAUSE_AFTER_ERROR_S)
                    continue
                self._log(writes, started, None)
        finally:
            persister.close()

    async def _run_async(self) -> None:
        async with AsyncSQLPersister(
            self.url, schema=self.schema, max_workers=self.tasks
        ) as persister:

            async def writer(index: int) -> None:
                number = 0
                while not self._stopping.is_set():
                    writes = self._plan(index, number)
                    number += 1
                    started = time.monotonic()
                    try:
                        if len(writes) == 1:
                            key, sequence = writes[0]
                            await persister.write(*key, _checkpoint(sequence))
                        else:
                            await persister.write_many({k: _checkpoint(s) for k, s in writes})
                    except Exception as exc:  # logged, judged by the test
                        self._log(writes, started, exc)
                        await asyncio.sleep(PAUSE_AFTER_ERROR_S)
                        continue
                    self._log(writes, started, None)

            await asyncio.gather(*(writer(i) for i in range(self.tasks)))


def _checkpoint(sequence: int) -> Checkpoint:
    return Checkpoint(str(sequence), sequence)


def _call(
    writes: tuple[tuple[PartitionKey, int], ...],
    write: Callable[..., None],
    write_many: Callable[..., None],
) -> None:
    if len(writes) == 1:
        key, sequence = writes[0]
        write(*key, _checkpoint(sequence))
    else:
        write_many({key: _checkpoint(sequence) for key, sequence in writes})
