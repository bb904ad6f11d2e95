"""MemoryPersister specifics: thread safety and updated_at. The contract is in test_contract.py."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from conftest import run_concurrently
from streamcheckpoint import (
    Checkpoint,
    CheckpointRegressionError,
    MemoryPersister,
    PartitionKey,
)

THREADS = 8
UTC = timezone.utc


def run_together(workers: list[Callable[[], None]]) -> None:
    """Run each worker in its own thread, released at once; re-raise the first failure."""
    failures = run_concurrently(workers)
    if failures:
        raise failures[0]


def test_threads_writing_distinct_and_shared_keys() -> None:
    persister = MemoryPersister()
    writes = 300
    shared = PartitionKey("ns", "hub", "cg", "shared")

    def writer(worker: int) -> Callable[[], None]:
        def work() -> None:
            for n in range(writes):
                persister.write("ns", "hub", "cg", f"{worker}-{n}", Checkpoint(str(n), n))
                persister.write(*shared, Checkpoint(f"{worker}:{n}", n))
                if n % 50 == 0:
                    persister.list("ns")  # listing while others write must not fail

        return work

    run_together([writer(w) for w in range(THREADS)])
    records = persister.list()
    assert len(records) == THREADS * writes + 1
    for worker in range(THREADS):
        for n in range(writes):
            assert persister.read("ns", "hub", "cg", f"{worker}-{n}") == Checkpoint(str(n), n)
    last = persister.read(*shared)
    # Some thread's final write wins, whole: offset and sequence number belong together.
    winner, final = last.offset.split(":")
    assert 0 <= int(winner) < THREADS
    assert last.sequence_number == int(final) == writes - 1


def test_monotonic_race_on_one_key_ends_at_the_maximum() -> None:
    persister = MemoryPersister(monotonic=True)
    key = PartitionKey("ns", "hub", "cg", "0")
    numbers = list(range(2000))
    random.Random(5).shuffle(numbers)
    shares = [numbers[i::THREADS] for i in range(THREADS)]
    accepted: list[int] = []
    refused: list[CheckpointRegressionError] = []

    def writer(share: list[int]) -> Callable[[], None]:
        def work() -> None:
            for n in share:
                try:
                    persister.write(*key, Checkpoint(str(n), n))
                except CheckpointRegressionError as exc:
                    refused.append(exc)
                else:
                    accepted.append(n)

        return work

    run_together([writer(share) for share in shares])
    assert persister.read(*key) == Checkpoint("1999", 1999)
    assert len(accepted) + len(refused) == len(numbers)
    assert 1999 in accepted
    for error in refused:
        assert error.key == key
        assert error.refused.sequence_number < error.stored.sequence_number


def test_write_many_is_seen_whole_by_concurrent_readers() -> None:
    persister = MemoryPersister()
    keys = [PartitionKey("ns", "hub", "cg", str(p)) for p in range(4)]
    persister.write_many(dict.fromkeys(keys, Checkpoint("0", 0)))
    rounds = 500
    torn: list[set[int]] = []

    def batch_writer() -> None:
        for n in range(1, rounds + 1):
            persister.write_many({k: Checkpoint(str(n), n) for k in keys})

    def reader() -> None:
        for _ in range(rounds):
            seen = {record.checkpoint.sequence_number for record in persister.list()}
            if len(seen) != 1:
                torn.append(seen)

    run_together([batch_writer, reader, reader])
    assert torn == []
    assert {r.checkpoint.sequence_number for r in persister.list()} == {rounds}


def test_updated_at_is_the_utc_time_of_the_last_write() -> None:
    persister = MemoryPersister()
    before = datetime.now(UTC)
    persister.write("ns", "hub", "cg", "0", Checkpoint("1", 1))
    after = datetime.now(UTC)
    [first] = persister.list()
    assert first.updated_at is not None
    assert first.updated_at.tzinfo is UTC
    assert before <= first.updated_at <= after

    persister.write_many({first.key: Checkpoint("2", 2)})
    after_second = datetime.now(UTC)
    [second] = persister.list()
    assert second.updated_at is not None
    assert first.updated_at <= second.updated_at <= after_second
    assert second.checkpoint == Checkpoint("2", 2)


def test_a_refused_write_leaves_updated_at_alone() -> None:
    persister = MemoryPersister(monotonic=True)
    persister.write("ns", "hub", "cg", "0", Checkpoint("5", 5))
    [record] = persister.list()
    with pytest.raises(CheckpointRegressionError):
        persister.write("ns", "hub", "cg", "0", Checkpoint("4", 4))
    assert persister.list() == [record]


def test_instances_do_not_share_data() -> None:
    first, second = MemoryPersister(), MemoryPersister()
    first.write("ns", "hub", "cg", "0", Checkpoint("1", 1))
    assert second.read("ns", "hub", "cg", "0") == Checkpoint.start_of_stream()
    assert second.list() == []


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_monotonic_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match="monotonic"):
        MemoryPersister(monotonic=value)  # type: ignore[arg-type]


def test_monotonic_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        MemoryPersister(True)  # type: ignore[call-arg]
