"""azure-eventhub's own EventProcessor with our stores, in two OS processes sharing one database.

Each process runs ``tests/_eventhub_processor.py``: the SDK's ``EventProcessor`` (sync or
asyncio) over a stub client that hands out synthetic events, with no network, as the SDK's own
processor tests do. Here: two processors split 4 partitions 2 and 2; after one is killed with
SIGKILL the survivor takes all 4 once their ownership expires, and resumes each right after the
offset its predecessor stored; with ``fence_checkpoints=True`` a processor that was stopped
while its partitions were taken over has its next checkpoint refused. On SQLite, PostgreSQL and
MariaDB, sync and asyncio. Ownership expires after 2.5 s and processors balance every 0.4 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from streamcheckpoint.eventhub import SQLCheckpointStore

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_eventhub_processor.py"
NAMESPACE, HUB, GROUP = "ns.servicebus.windows.net", "hub", "$Default"
PARTITIONS = {"0", "1", "2", "3"}
WAIT_LIMIT = 60.0  # seconds; reached only when something is broken

pytestmark = pytest.mark.slow


class Processor:
    """A processor process and what it has printed so far."""

    def __init__(
        self, db: tuple[str, str | None], mode: str, name: str, fence: bool, control: Path
    ):
        url, schema = db
        self.name = name
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                url,
                schema or "",
                mode,
                name,
                "1" if fence else "0",
                str(control),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.owner = str(self.wait_for(lambda line: "owner" in line)["owner"])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            with self._lock:
                self.lines.append(json.loads(text))

    def seen(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self._lock:
            return [line for line in self.lines if predicate(line)]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            found = self.seen(predicate)
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        stderr = self.process.stderr.read() if self.process.poll() is not None else ""  # type: ignore[union-attr]
        raise AssertionError(f"{self.name} never printed what was expected; stderr: {stderr}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stderr is not None
        assert self.process.stdout is not None
        self.process.stderr.close()
        self.process.stdout.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """One database the processes share: (url, schema)."""
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'shared.db'}", None
    elif request.param == "mysql":
        url, schema = request.getfixturevalue("mysql_database"), None
    else:
        url, schema = request.getfixturevalue("postgres_schema")
    SQLCheckpointStore(url, schema=schema).close()  # migrated before the processes race to it
    return url, schema


@pytest.fixture
def processors(tmp_path: Path) -> Iterator[list[Processor]]:
    started: list[Processor] = []
    yield started
    for processor in started:
        processor.stop()


def owners(db: tuple[str, str | None]) -> dict[str, str]:
    """partition -> owner id, of the partitions whose ownership hasn't expired."""
    with SQLCheckpointStore(db[0], schema=db[1]) as store:
        rows = store.list_ownership(NAMESPACE, HUB, GROUP)
    now = time.time()
    return {
        row["partition_id"]: row["owner_id"]
        for row in rows
        if row["owner_id"] and row["last_modified_time"] + 2.5 > now
    }


def stored(db: tuple[str, str | None]) -> dict[str, tuple[str, int]]:
    """partition -> (offset, sequence number) stored."""
    with SQLCheckpointStore(db[0], schema=db[1]) as store:
        rows = store.list_checkpoints(NAMESPACE, HUB, GROUP)
    return {row["partition_id"]: (row["offset"], row["sequence_number"]) for row in rows}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def split_two_and_two(
    db: tuple[str, str | None], mode: str, fence: bool, control: Path, started: list[Processor]
) -> tuple[Processor, Processor]:
    """Start A, then B; wait until each owns 2 partitions and has checkpointed both."""
    first = Processor(db, mode, "A", fence, control)
    started.append(first)
    wait_until(lambda: set(owners(db).values()) == {first.owner}, "A owns partitions")
    second = Processor(db, mode, "B", fence, control)
    started.append(second)

    def balanced() -> bool:
        now = owners(db)
        counts = [list(now.values()).count(p.owner) for p in (first, second)]
        return set(now) == PARTITIONS and counts == [2, 2]

    wait_until(balanced, "A and B own 2 partitions each")
    for processor in (first, second):
        mine = {p for p, owner in owners(db).items() if owner == processor.owner}
        wait_until(partial(checkpointed, processor, mine), f"{processor.name} checkpointed")
    return first, second


def checkpointed(processor: Processor, partitions: set[str]) -> bool:
    """Whether ``processor`` has checkpointed each of ``partitions``."""
    done = {line["ckpt"] for line in processor.seen(lambda line: "ckpt" in line)}
    return partitions <= done


def started_at_a_checkpoint(partition: str, line: dict[str, Any]) -> bool:
    return line.get("start") == partition and line.get("position") != "-1"


def first_event(partition: str, line: dict[str, Any]) -> bool:
    return line.get("first") == partition


def assert_resumed_after(survivor: Processor, partitions: set[str], before: dict[str, Any]) -> None:
    """The survivor started each partition right after the offset stored for it."""
    for partition in partitions:
        offset, sequence = before[partition]
        start = survivor.wait_for(partial(started_at_a_checkpoint, partition))
        assert (start["position"], start["inclusive"]) == (offset, False), start
        first = survivor.wait_for(partial(first_event, partition))
        assert first["seq"] == sequence + 1, (partition, first, before)


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_survivor_takes_all_partitions_after_a_sigkill_and_resumes_after_stored_offsets(
    shared_db: tuple[str, str | None], mode: str, tmp_path: Path, processors: list[Processor]
) -> None:
    victim, survivor = split_two_and_two(shared_db, mode, False, tmp_path, processors)
    orphaned = {p for p, owner in owners(shared_db).items() if owner == victim.owner}

    victim.process.kill()
    victim.process.wait()
    left_behind = stored(shared_db)  # nobody writes the orphans until the survivor takes them
    assert all(left_behind[p][0] == f"geo:{p}:{left_behind[p][1]}" for p in orphaned)

    wait_until(
        lambda: owners(shared_db) == dict.fromkeys(PARTITIONS, survivor.owner),
        "the survivor owns all 4 partitions",
    )
    assert_resumed_after(survivor, orphaned, left_behind)
    wait_until(
        lambda: all(stored(shared_db)[p][1] > left_behind[p][1] for p in orphaned),
        "the survivor checkpoints the partitions it took over",
    )
    assert victim.seen(lambda line: "error" in line) == []
    assert survivor.seen(lambda line: "error" in line) == []


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_fenced_checkpoint_of_a_processor_that_lost_its_partition_is_refused(
    shared_db: tuple[str, str | None], mode: str, tmp_path: Path, processors: list[Processor]
) -> None:
    stale, successor = split_two_and_two(shared_db, mode, True, tmp_path, processors)
    taken = {p for p, owner in owners(shared_db).items() if owner == stale.owner}

    (tmp_path / "pause-A").touch()
    paused = stale.wait_for(lambda line: "paused" in line)
    (tmp_path / "pause-A").unlink()
    wait_until(
        lambda: Path(f"/proc/{stale.process.pid}/stat").read_text().split()[2] == "T",
        "A is stopped",
    )
    before = stored(shared_db)
    wait_until(
        lambda: owners(shared_db) == dict.fromkeys(PARTITIONS, successor.owner),
        "the successor owns all 4 partitions",
    )
    assert_resumed_after(successor, taken, before)
    # The successor's progress on the partition A was holding an event of when it stopped.
    partition = str(paused["paused"])
    wait_until(lambda: stored(shared_db)[partition][1] > paused["seq"], "the successor moves on")

    stale.process.send_signal(signal.SIGCONT)
    # Refused: OwnershipLostError, or, if A's balancing won the partition back first (it steals
    # one from B once it has none), CheckpointRegressionError: B has moved past that event.
    refusals = {"OwnershipLostError", "CheckpointRegressionError"}
    stale.wait_for(lambda line: line.get("error") in refusals and line["partition"] == partition)
    errors = stale.seen(lambda line: "error" in line)
    assert {line["error"] for line in errors} <= refusals, errors
    assert not stale.seen(
        lambda line: line.get("ckpt") == partition and line["seq"] == paused["seq"]
    )
    assert stored(shared_db)[partition][1] > paused["seq"]
    # B may lose a partition to A's rebalancing in turn: its checkpoints are refused the same way.
    assert {line["error"] for line in successor.seen(lambda line: "error" in line)} <= refusals
    os.kill(stale.process.pid, signal.SIGKILL)
