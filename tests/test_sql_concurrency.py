"""Several processes writing one SQL store at once: no errors, and the final state is right.

Four processes each make 1000 writes over the same few partitions of one SQLite file, then of
one PostgreSQL schema. Without ``monotonic`` each partition ends at the last write some process
made to it; with it, at the highest sequence number any process wrote, whatever the order.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from streamcheckpoint import Checkpoint, CheckpointRegressionError, SQLPersister

WORKERS = 4
WRITES = 1000
PARTITIONS = 8
NAMESPACE, HUB, GROUP = "ns.example", "hub", "cg"

pytestmark = pytest.mark.slow

_start: threading.Barrier | None = None  # in each worker process: wait here for the others


def _set_start(barrier: threading.Barrier) -> None:
    global _start
    _start = barrier


def sequence_number(worker: int, index: int) -> int:
    """Unique across workers and increasing within each worker."""
    return index * WORKERS + worker


def write_many_times(
    url: str, schema: str | None, monotonic: bool, worker: int
) -> tuple[int, list[str]]:
    """One process's share: return how many writes were refused and every other error."""
    refused = 0
    errors: list[str] = []
    with SQLPersister(url, schema=schema, monotonic=monotonic) as persister:
        if _start is not None:
            _start.wait()  # all start writing together, not one after the other
        for index in range(WRITES):
            number = sequence_number(worker, index)
            partition = str(index % PARTITIONS)
            try:
                persister.write(NAMESPACE, HUB, GROUP, partition, Checkpoint(str(number), number))
            except CheckpointRegressionError:
                refused += 1
            except Exception as exc:  # reported by the test
                errors.append(f"{type(exc).__name__}: {exc}")
    return refused, errors


def run_workers(url: str, schema: str | None, monotonic: bool) -> dict[str, int]:
    """Run the workers at once; return each partition's final sequence number."""
    SQLPersister(url, schema=schema).close()  # the schema exists before the race starts
    context = multiprocessing.get_context("spawn")
    arguments: list[Any] = [(url, schema, monotonic, worker) for worker in range(WORKERS)]
    start = context.Barrier(WORKERS)
    with context.Pool(WORKERS, initializer=_set_start, initargs=(start,)) as pool:
        results = pool.starmap(write_many_times, arguments)
    errors = [error for _, worker_errors in results for error in worker_errors]
    assert errors == []
    if not monotonic:
        assert sum(refused for refused, _ in results) == 0
    with SQLPersister(url, schema=schema) as persister:
        return {r.key.partition_id: r.checkpoint.sequence_number for r in persister.list()}


def last_writes(partition: int) -> set[int]:
    """The sequence number of each worker's last write to ``partition``."""
    last_index = max(i for i in range(WRITES) if i % PARTITIONS == partition)
    return {sequence_number(worker, last_index) for worker in range(WORKERS)}


def check_final_state(final: dict[str, int], monotonic: bool) -> None:
    assert sorted(final) == [str(p) for p in range(PARTITIONS)]
    for partition in range(PARTITIONS):
        candidates = last_writes(partition)
        if monotonic:
            assert final[str(partition)] == max(candidates)
        else:
            assert final[str(partition)] in candidates


@pytest.mark.parametrize("monotonic", [False, True], ids=["overwrite", "monotonic"])
def test_processes_share_one_sqlite_file(tmp_path: Path, monotonic: bool) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    check_final_state(run_workers(url, None, monotonic), monotonic)


@pytest.mark.postgres
@pytest.mark.parametrize("monotonic", [False, True], ids=["overwrite", "monotonic"])
def test_processes_share_one_postgresql_schema(
    postgres_schema: tuple[str, str], monotonic: bool
) -> None:
    url, schema = postgres_schema
    check_final_state(run_workers(url, schema, monotonic), monotonic)


@pytest.mark.mysql
@pytest.mark.parametrize("monotonic", [False, True], ids=["overwrite", "monotonic"])
def test_processes_share_one_mysql_database(mysql_database: str, monotonic: bool) -> None:
    check_final_state(run_workers(mysql_database, None, monotonic), monotonic)
