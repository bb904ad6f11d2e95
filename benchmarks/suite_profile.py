"""Where SQLPersister's time goes: CPU per operation, and cProfile's costliest functions.

Not part of the default run: ``python -m benchmarks --only profile``. Each operation runs
``count`` times three ways: timed by the wall clock, by the process's CPU clock (so waiting for
fsync or the network is left out: what remains is ours and the driver's work), and under cProfile,
which counts the Python function calls per operation and names the functions that take longest.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from pathlib import Path

from streamcheckpoint import SQLPersister

from .harness import Row, Section
from .servers import postgres_admin, postgres_schema
from .workload import HUB, LIST_GROUP, NAMESPACE, Context, Plan, group_items, sqlite_url

__all__ = ["run"]

_TOP = 3
Operation = Callable[[int], object]


def run(ctx: Context) -> None:
    """Profile each operation on SQLite and, if reachable, PostgreSQL."""
    section = ctx.report.section(
        "Profile: wall and CPU time per operation (CPU excludes waiting for I/O), "
        "Python calls per operation"
    )
    plan = Plan.build(ctx.settings)
    stores = {"SQLite": SQLPersister(sqlite_url(ctx.path("profile") / "profile.db"))}
    ctx.cleanup.callback(stores["SQLite"].close)
    admin = postgres_admin(ctx)
    if isinstance(admin, str):
        section.notes.append(f"PostgreSQL: {admin}")
    else:
        schema = postgres_schema(ctx, admin, "bench_profile")
        stores["PostgreSQL"] = SQLPersister(admin.url, schema=schema)
        ctx.cleanup.callback(stores["PostgreSQL"].close)
    for database, store in stores.items():
        store.write_many(list(group_items(LIST_GROUP, ctx.settings.list_partitions)))
        for name, (count, operation) in _operations(ctx, plan, store).items():
            _profile(section, database, name, count, operation)


def _operations(ctx: Context, plan: Plan, store: SQLPersister) -> dict[str, tuple[int, Operation]]:
    writes = len(plan.writes) // 2  # two passes below (timed, profiled) over different inputs

    def write(i: int) -> None:
        store.write(*plan.writes[i][0], plan.writes[i][1])

    def write_many(i: int) -> None:
        store.write_many(plan.batches[i % len(plan.batches)])

    def read(i: int) -> None:
        store.read(*plan.writes[i][0])

    def list_group(i: int) -> None:
        store.list(NAMESPACE, HUB, LIST_GROUP)

    return {
        "write": (writes, write),
        f"write_many({ctx.settings.batch_size})": (len(plan.batches), write_many),
        "read": (writes, read),
        f"list, {ctx.settings.list_partitions:,} partitions": (3, list_group),
    }


def _profile(section: Section, database: str, name: str, count: int, operation: Operation) -> None:
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for index in range(count):
        operation(index)
    wall = (time.perf_counter() - wall_start) / count
    cpu = (time.process_time() - cpu_start) / count
    profile = cProfile.Profile()
    profile.enable()
    for index in range(count, 2 * count):
        operation(index)
    profile.disable()
    stats = pstats.Stats(profile)
    calls: int = stats.total_calls  # type: ignore[attr-defined]
    section.rows.append(
        Row(
            database,
            name,
            f"{_us(wall)} wall, {_us(cpu)} CPU",
            verdict=f"{calls / count:.0f} Python calls per op",
        )
    )
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    table = stats.stats  # type: ignore[attr-defined]
    top = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:_TOP]
    section.notes.append(
        f"{database} {name}, most time (cProfile): "
        + ", ".join(f"{_where(function)} {_us(entry[2] / count)}" for function, entry in top)
    )


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def _where(function: tuple[str, int, str]) -> str:
    file, line, name = function
    if file == "~":
        return name  # a builtin, e.g. <method 'execute' of 'sqlite3.Cursor' objects>
    return f"{Path(file).name}:{line}({name})"
