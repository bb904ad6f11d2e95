"""A PostgreSQL server restarted under a writer: the same persister goes on writing.

The test runs its own cluster (:mod:`faults._pgcluster`) and restarts it twice while writers
write through one persister: once cleanly (``pg_ctl stop -m fast``: sessions are terminated) and
once as a crash (``-m immediate``: the server recovers from its WAL when it starts). The calls
in flight when the server stops, and those made while it is down, fail with
``PersistConnectionError``; every call started once the server is back succeeds on the same
persister, never reopened; every acknowledged write is there afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from conftest import REQUIRE_SERVERS
from faults._pgcluster import Node, cluster, missing_prerequisite
from faults._writers import Api, Writers
from streamcheckpoint import PersistConnectionError, SQLPersister

CALLS_BETWEEN = 30
"""Successful calls before the first restart and after each one."""


@pytest.fixture
def node() -> Iterator[Node]:
    """A PostgreSQL cluster of this test's own."""
    problem = missing_prerequisite()
    if problem is not None:
        if REQUIRE_SERVERS:
            pytest.fail(f"{problem}; STREAMCHECKPOINT_REQUIRE_SERVERS=1 requires it")
        pytest.skip(problem)
    with cluster() as running:
        yield running


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_restart_mid_run_costs_only_the_calls_it_interrupts(api: Api, node: Node) -> None:
    writers = Writers(api, node.url, tasks=1 if api == "sync" else 4)
    outages: list[tuple[float, float]] = []
    writers.start()
    try:
        since = time.monotonic()
        for mode in ("fast", "immediate"):
            writers.wait_for_successes(CALLS_BETWEEN, after=since)
            down = time.monotonic()
            node.stop(mode)
            node.start()
            since = time.monotonic()
            outages.append((down, since))
        first_after = writers.wait_for_successes(CALLS_BETWEEN, after=since)
    finally:
        writers.stop()

    failures = writers.failures()
    for call in failures:
        assert isinstance(call.error, PersistConnectionError), repr(call.error)
        assert any(call.overlaps(*outage) for outage in outages), (
            f"a call failed outside the restarts: {call}"
        )
    back = outages[-1][1]
    late = [call for call in writers.calls if call.started > back and call.error is not None]
    assert not late, f"calls started after the server was back failed: {late}"

    reader = SQLPersister(node.url, migrate=False)
    try:
        stored = {record.key: record.checkpoint for record in reader.list()}
    finally:
        reader.close()
    keys = writers.check_store(stored)
    in_flight = sum(
        any(call.started < down < call.ended for down, _ in outages) for call in failures
    )
    print(
        f"\nrestart {api}: {len(outages)} restarts, outages "
        f"{[round(up - down, 2) for down, up in outages]} s, {len(writers.calls)} calls, "
        f"{len(failures)} failed ({in_flight} in flight at the stop, the rest made while the "
        f"server was down), first success {first_after - back:.3f} s after the server was "
        f"back, {keys} partitions checked"
    )
