"""Several writer processes on one SQLite file: throughput, lock errors, the longest wait.

Each writer process owns its share of the 32 partitions (as consumers do) and writes them
round-robin through its own durable ``SQLPersister``; writers of one file wait for each other in
SQLite's own busy handler, for at most ``busy_timeout``. The floor is one ``sqlite3`` writer doing
as many writes alone, in this process. Two more groups give the context: as many raw ``sqlite3``
processes with the same pragmas (what the machine allows any writer that commits its own writes
and waits in the busy handler), and the floor's own work done by one raw writer process through
the same start/stop machinery (what the measuring arrangement itself costs). Rounds rotate them
all; each group's processes start once and wait at a barrier between rounds, so start-up is not
measured.

Every group also reports its CPU time (user + system, all its processes) and context switches
per write: a write handed from one process to another costs a wake-up and a re-read of the
pages the other process changed, so several processes need more CPU per write than one, and
their throughput depends on how much of the machine's CPU other work leaves them. The load
average before and after the rounds is printed with the table for that reason.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import resource
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path

from streamcheckpoint import Checkpoint, PartitionKey, PersistError, SQLPersister
from streamcheckpoint.sql.dialects.sqlite import SQLITE_BUSY_TIMEOUT_MS

from .harness import MISSED, OK, Row, Section, Target, format_seconds
from .workload import (
    GROUP,
    HUB,
    NAMESPACE,
    PARTITIONS,
    SQLITE_UPSERT,
    Context,
    checkpoint,
    raw_sqlite,
    round_robin_key,
    sqlite_time_text,
    sqlite_url,
)

__all__ = ["run"]

THROUGHPUT = Target(">=", 0.75)
MAX_WAIT = Target("<=", SQLITE_BUSY_TIMEOUT_MS, " ms")
"""No write waits longer than the documented ``busy_timeout`` (the default)."""
P99 = Target("<=", 25, " ms")
LOCK_ERRORS = Target("<=", 0, " errors")
_TIMEOUT = 300.0
OURS = "SQLPersister"
RAW = "raw sqlite3"
RAW_ALONE = "raw sqlite3, the floor's work in a writer process"
KINDS = (OURS, RAW, RAW_ALONE)


@dataclass(frozen=True)
class WorkerRound:
    """What one writer process reports for one round."""

    start: float
    end: float
    waits: list[float]
    errors: int
    cpu: float
    """User + system seconds of the process during the round."""
    switches: int
    """Context switches of the process during the round (voluntary and involuntary)."""


class _RawWriter:
    """``sqlite3`` with SQLPersister's pragmas: one autocommitted upsert per write."""

    def __init__(self, path: str) -> None:
        self.connection = raw_sqlite(Path(path), make_schema=False)

    def write(self, *args: object) -> None:
        *key, cp = args
        assert isinstance(cp, Checkpoint)
        self.connection.execute(
            SQLITE_UPSERT,
            (*key, cp.offset, cp.sequence_number, sqlite_time_text(cp.enqueue_time)),
        )

    def close(self) -> None:
        self.connection.close()


def _open_writer(kind: str, path: str) -> SQLPersister | _RawWriter:
    if kind == OURS:
        return SQLPersister(sqlite_url(Path(path)))
    return _RawWriter(path)


def _worker(
    kind: str,
    path: str,
    worker: int,
    processes: int,
    writes: int,
    rounds: int,
    barrier: Barrier,
    results: multiprocessing.Queue[WorkerRound],
) -> None:
    partitions = [p for p in range(PARTITIONS) if p % processes == worker]
    writer = _open_writer(kind, path)
    try:
        for round_number in range(rounds):
            barrier.wait(_TIMEOUT)
            waits: list[float] = []
            errors = 0
            cost = _Cost.now()
            start = time.perf_counter()
            for j in range(writes):
                key = PartitionKey(NAMESPACE, HUB, GROUP, str(partitions[j % len(partitions)]))
                cp = checkpoint(round_number * writes + j)
                began = time.perf_counter()
                try:
                    writer.write(*key, cp)
                except (PersistError, sqlite3.Error):
                    errors += 1
                waits.append(time.perf_counter() - began)
            end = time.perf_counter()
            cpu, switches = cost.since()
            results.put(WorkerRound(start, end, waits, errors, cpu, switches))
    except threading.BrokenBarrierError:
        pass  # the run was interrupted
    finally:
        writer.close()


@dataclass(frozen=True)
class _Cost:
    """This process's CPU time and context switches so far."""

    cpu: float
    switches: int

    @classmethod
    def now(cls) -> _Cost:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw)

    def since(self) -> tuple[float, int]:
        """CPU seconds and context switches from this snapshot to now."""
        later = _Cost.now()
        return later.cpu - self.cpu, later.switches - self.switches


@dataclass
class Costs:
    """CPU seconds and context switches of one contender (all its processes), per round."""

    cpu: list[float] = field(default_factory=list)
    switches: list[int] = field(default_factory=list)

    def add(self, cpu: float, switches: int) -> None:
        """Record one round."""
        self.cpu.append(cpu)
        self.switches.append(switches)

    def per_write(self, writes: int) -> tuple[float, float]:
        """Median CPU seconds and context switches per write, for ``writes`` per round."""
        return statistics.median(self.cpu) / writes, statistics.median(self.switches) / writes


@dataclass
class Group:
    """Writer processes on one database file, started once, released round by round."""

    processes: Sequence[BaseProcess]
    barrier: Barrier
    results: multiprocessing.Queue[WorkerRound]
    times: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    errors: int = 0
    costs: Costs = field(default_factory=Costs)

    @classmethod
    def start(
        cls,
        spawn: ForkServerContext | SpawnContext,
        kind: str,
        path: Path,
        count: int,
        writes: int,
        rounds: int,
    ) -> Group:
        """Start ``count`` writer processes of ``kind`` waiting for their first round."""
        barrier = spawn.Barrier(count + 1)
        results: multiprocessing.Queue[WorkerRound] = spawn.Queue()
        processes = [
            spawn.Process(
                target=_worker,
                args=(kind, str(path), k, count, writes, rounds, barrier, results),
                daemon=True,
            )
            for k in range(count)
        ]
        for process in processes:
            process.start()
        return cls(processes, barrier, results)

    def round(self, *, record: bool) -> None:
        """Release the processes for one round and collect what they report."""
        self.barrier.wait(_TIMEOUT)
        reports = []
        for _ in self.processes:
            try:
                reports.append(self.results.get(timeout=_TIMEOUT))
            except queue.Empty as exc:
                raise RuntimeError("a writer process did not report back") from exc
        if record:
            self.times.append(max(r.end for r in reports) - min(r.start for r in reports))
            self.waits += [w for r in reports for w in r.waits]
            self.errors += sum(r.errors for r in reports)
            self.costs.add(sum(r.cpu for r in reports), sum(r.switches for r in reports))

    def stop(self) -> None:
        """Wake and end the processes (they exit by themselves after the last round)."""
        self.barrier.abort()
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join()


def run(ctx: Context) -> None:
    """Rotate rounds of every group and of the floor, one raw writer in this process."""
    settings = ctx.settings
    processes, writes = settings.writer_processes, settings.writes_per_process
    total = processes * writes
    section = ctx.report.section(
        f"{processes} writer processes on one SQLite file (durable default), "
        f"{writes} writes each per round"
    )
    directory = ctx.path("concurrency")
    raw = raw_sqlite(directory / "raw.db")
    ctx.cleanup.callback(raw.close)
    spawn = _process_context()
    rounds = settings.rounds + 1  # the first is a warm-up
    groups = {}
    for number, kind in enumerate(KINDS):
        path = directory / f"group{number}.db"
        raw_sqlite(path).close()
        count = 1 if kind == RAW_ALONE else processes
        group = Group.start(spawn, kind, path, count, total // count, rounds)
        groups[kind] = group
        ctx.cleanup.callback(group.stop)
    raw_times: list[float] = []
    raw_costs = Costs()

    def raw_round(round_number: int) -> None:
        cost = _Cost.now()
        start = time.perf_counter()
        for j in range(total):
            key = round_robin_key(j)
            cp = checkpoint(round_number * total + j)
            raw.execute(
                SQLITE_UPSERT,
                (*key, cp.offset, cp.sequence_number, sqlite_time_text(cp.enqueue_time)),
            )
        if round_number:
            raw_times.append(time.perf_counter() - start)
            raw_costs.add(*cost.since())

    load_before = os.getloadavg()[0]
    for round_number in range(rounds):
        steps: list[Callable[[int], None]] = [
            raw_round,
            *(lambda n, g=g: g.round(record=n > 0) for g in groups.values()),
        ]
        shift = round_number % len(steps)
        for step in steps[shift:] + steps[:shift]:
            step(round_number)
    load_after = os.getloadavg()[0]
    case = f"{total} writes per round"
    floor_label = "raw sqlite3, one writer (floor)"
    section.rows.append(Row(case, floor_label, _rate(total, raw_times)))
    for name, group in groups.items():
        label = f"{len(group.processes)} x {name}"
        if name == RAW_ALONE:
            _report_throughput(section, case, label, total, raw_times, group)
        else:
            _report(section, case, label, total, raw_times, group, name == OURS)
    section.rows.append(_cost_row(case, floor_label, total, raw_costs, None))
    section.rows += [
        _cost_row(case, f"{len(group.processes)} x {name}", total, group.costs, raw_costs)
        for name, group in groups.items()
    ]
    section.notes += [
        "every writer commits its own writes; one that finds another's write transaction in "
        "progress waits in SQLite's busy handler (busy_timeout=5000 ms, SQLPersister's "
        "default), which sleeps and tries again (1, 2, 5, 10, ... up to 100 ms between tries), "
        "so the waits are uneven: the longest single write is judged against busy_timeout, the "
        "99th percentile against 25 ms. The raw sqlite3 group does the same with the same "
        "pragmas",
        "CPU time (user + system) and context switches per write: all of a group's processes; "
        "the ratio is the CPU time's to the floor's. A write handed to another process costs a "
        "wake-up and a re-read of the pages it changed, so when other work takes the cores the "
        "groups of several processes lose throughput first "
        f"(1-minute load average {load_before:.1f} before the rounds, {load_after:.1f} after, "
        f"on {os.cpu_count()} cores)",
    ]


def _process_context() -> ForkServerContext | SpawnContext:
    """Forkserver where there is one (workers fork from a process that imported this module
    once), else spawn; never a plain fork of this process with its open connections."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _report_throughput(
    section: Section, case: str, label: str, total: int, raw_times: list[float], group: Group
) -> None:
    """The aggregate throughput row of an informational group."""
    ratio = _throughput_ratio(raw_times, group)
    section.rows.append(
        Row(case, f"{label}: aggregate", _rate(total, group.times), f"{ratio:.2f}x")
    )


def _cost_row(case: str, label: str, total: int, costs: Costs, floor: Costs | None) -> Row:
    """CPU time and context switches per write; the ratio is the CPU time's to the floor's."""
    cpu, switches = costs.per_write(total)
    ratio = ""
    if floor is not None:
        floor_cpu, _ = floor.per_write(total)
        ratio = f"{cpu / floor_cpu:.2f}x" if floor_cpu else ""
    measured = f"{format_seconds(cpu)}, {switches:.2f} switches"
    return Row(case, f"{label}: CPU time, context switches per write", measured, ratio)


def _report(
    section: Section,
    case: str,
    label: str,
    total: int,
    raw_times: list[float],
    group: Group,
    checked: bool,
) -> None:
    """Rows for one group; ``checked`` puts the targets next to them (else informational)."""
    ratio = _throughput_ratio(raw_times, group)
    worst = max(group.waits)
    p99 = statistics.quantiles(group.waits, n=100)[98]

    def judged(target: Target, value: float) -> dict[str, str]:
        if not checked:
            return {}
        return {"target": str(target), "verdict": OK if target.met(value) else MISSED}

    section.rows += [
        Row(
            case,
            f"{label}: aggregate",
            _rate(total, group.times),
            f"{ratio:.2f}x",
            **judged(THROUGHPUT, ratio),
        ),
        Row(
            case,
            f"{label}: longest single write",
            format_seconds(worst),
            **judged(MAX_WAIT, worst * 1e3),
        ),
        Row(
            case,
            f"{label}: 99th percentile write",
            format_seconds(p99),
            **judged(P99, p99 * 1e3),
        ),
        Row(
            case,
            f"{label}: failed writes (locked, ...)",
            str(group.errors),
            **judged(LOCK_ERRORS, group.errors),
        ),
    ]


def _throughput_ratio(raw_times: list[float], group: Group) -> float:
    """The median over the rounds of the group's throughput divided by the floor's."""
    return statistics.median(r / o for r, o in zip(raw_times, group.times, strict=True))


def _rate(total: int, times: list[float]) -> str:
    return f"{total / statistics.median(times):,.0f} writes/s"
