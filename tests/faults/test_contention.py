"""Eight processes writing monotonic checkpoints at once: no errors, and the highest one wins.

Each of :data:`WORKERS` processes makes :data:`WRITES` writes with ``monotonic=True``, released
together: every other write goes to one of :data:`SHARED` partitions that all of them write, with
sequence numbers drawn from one shuffled range (so writers really go backwards against each
other), the rest to partitions of its own, in increasing order. A write refused with
:class:`~streamcheckpoint.CheckpointRegressionError` is the monotonic rule at work, not an error:
it is counted, and checked to name a stored checkpoint that is ahead of the refused one. Anything
else raised is an error. Afterwards every partition holds exactly the checkpoint with the highest
sequence number written to it. The latency of each call (accepted or refused) is reported (p50,
p99, max; shown with ``-rA`` and as the ``latency`` property in JUnit XML), not asserted.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamcheckpoint import Checkpoint, CheckpointRegressionError, PartitionKey, SQLPersister

WORKERS = 8
WRITES = 300
SHARED = 4
OWN = 2
GROUP = ("ns", "hub", "$Default")

Plan = list[tuple[str, int]]
"""A worker's writes in order: (partition id, sequence number)."""

_start: threading.Barrier | None = None  # in each worker process: wait here for the others


def _set_start(barrier: threading.Barrier) -> None:
    global _start
    _start = barrier


def checkpoint(partition: str, number: int) -> Checkpoint:
    """What is written for ``number`` on ``partition``: the offset names both."""
    return Checkpoint(f"{partition}@{number}", number)


def make_plans(rng: random.Random) -> list[Plan]:
    """Every worker's writes: odd ones to the shared partitions, with numbers from one shuffled
    range; even ones to its own partitions, increasing."""
    shared_numbers = list(range(1, WORKERS * WRITES // 2 + 1))
    rng.shuffle(shared_numbers)
    plans: list[Plan] = []
    for worker in range(WORKERS):
        plan: Plan = []
        for index in range(WRITES):
            if index % 2:
                number = shared_numbers.pop()
                plan.append((f"shared-{rng.randrange(SHARED)}", number))
            else:
                plan.append((f"own-{worker}-{index // 2 % OWN}", index + 1))
        plans.append(plan)
    return plans


@dataclass
class Outcome:
    """What one worker saw."""

    accepted: int
    refused: int
    errors: list[str]
    latencies: list[float]  # of accepted writes, in seconds
    refusal_latencies: list[float]


def run_plan(url: str, schema: str | None, plan: Plan) -> Outcome:
    """One worker: write ``plan`` in monotonic mode, timing each call."""
    accepted = refused = 0
    errors: list[str] = []
    latencies: list[float] = []
    refusal_latencies: list[float] = []
    with SQLPersister(url, schema=schema, monotonic=True) as persister:
        if _start is not None:
            _start.wait()
        for partition, number in plan:
            written = checkpoint(partition, number)
            began = time.perf_counter()
            try:
                persister.write(*GROUP, partition, written)
            except CheckpointRegressionError as exc:
                refusal_latencies.append(time.perf_counter() - began)
                key = PartitionKey(*GROUP, partition)
                if exc.key != key or exc.refused != written or exc.stored.sequence_number <= number:
                    errors.append(f"refused for no reason: {exc!r}")
                refused += 1
            except Exception as exc:  # reported by the test
                errors.append(f"{partition} {number}: {type(exc).__name__}: {exc}")
            else:
                latencies.append(time.perf_counter() - began)
                accepted += 1
    return Outcome(accepted, refused, errors, latencies, refusal_latencies)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(latencies: list[float]) -> str:
    """p50, p99 and max of ``latencies`` (seconds) in milliseconds."""
    p50, p99 = (percentile(latencies, f) * 1000 for f in (0.5, 0.99))
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms"


def contend(url: str, schema: str | None, backend: str, record_property: Any) -> None:
    """Run the workers on one store and check what they did and what it holds."""
    SQLPersister(url, schema=schema).close()  # the schema exists before the race starts
    plans = make_plans(random.Random(int.from_bytes(os.urandom(4), "big")))
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    began = time.monotonic()
    with context.Pool(WORKERS, initializer=_set_start, initargs=(start,)) as pool:
        outcomes = pool.starmap(run_plan, [(url, schema, plan) for plan in plans])
    elapsed = time.monotonic() - began

    errors = [error for outcome in outcomes for error in outcome.errors]
    assert errors == []
    refused = sum(o.refused for o in outcomes)
    assert sum(o.accepted for o in outcomes) + refused == WORKERS * WRITES
    assert refused > 0  # the shared partitions really went backwards
    highest: dict[str, int] = {}
    for plan in plans:
        for partition, number in plan:
            highest[partition] = max(highest.get(partition, 0), number)
    with SQLPersister(url, schema=schema) as persister:
        final = {r.key.partition_id: r.checkpoint for r in persister.list()}
    assert final == {p: checkpoint(p, n) for p, n in highest.items()}

    accepted = [latency for outcome in outcomes for latency in outcome.latencies]
    refusals = [latency for outcome in outcomes for latency in outcome.refusal_latencies]
    summary = (
        f"{backend}: {WORKERS} processes x {WRITES} monotonic writes, {refused} refused as "
        f"regressions, 0 errors; every call {describe(accepted + refusals)}; accepted "
        f"{describe(accepted)}; refused {describe(refusals)}; {elapsed:.1f} s with start-up"
    )
    print(summary)
    record_property("latency", summary)


def test_sqlite(tmp_path: Path, record_property: Any) -> None:
    contend(f"sqlite:///{tmp_path / 'shared.db'}", None, "sqlite", record_property)


@pytest.mark.postgres
def test_postgresql(postgres_schema: tuple[str, str], record_property: Any) -> None:
    url, schema = postgres_schema
    contend(url, schema, "postgresql", record_property)


@pytest.mark.mysql
def test_mysql(mysql_database: str, record_property: Any) -> None:
    contend(mysql_database, None, "mysql", record_property)
