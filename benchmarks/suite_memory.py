"""The memory of a long-running writer must stay flat: tracemalloc over many writes."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

from streamcheckpoint import SQLPersister

from .harness import MISSED, OK, Row, Target
from .workload import Context, checkpoint, round_robin_key, sqlite_url

__all__ = ["run"]

GROWTH = Target("<=", 256, " KiB")
"""Under 3 bytes per write over 90,000 writes: leaking one object per write would miss it."""

_SAMPLES = 10


def run(ctx: Context) -> None:
    """Write to 32 partitions round-robin; compare traced memory after 10% and at the end."""
    total = ctx.settings.memory_writes
    section = ctx.report.section(
        f"Memory: one SQLPersister (SQLite, durable default) writing {total:,} checkpoints"
    )
    persister = SQLPersister(sqlite_url(ctx.path("memory") / "memory.db"))
    ctx.cleanup.callback(persister.close)
    step = total // _SAMPLES
    samples: list[tuple[int, int, int]] = []  # (writes so far, traced bytes, resident bytes)
    tracemalloc.start()
    ctx.cleanup.callback(tracemalloc.stop)
    for index in range(total):
        persister.write(*round_robin_key(index), checkpoint(index))
        if (index + 1) % step == 0:
            gc.collect()
            samples.append((index + 1, tracemalloc.get_traced_memory()[0], _resident()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    (first, traced_start, rss_start), (last, traced_end, rss_end) = samples[0], samples[-1]
    growth = (traced_end - traced_start) / 1024
    case = f"writes {first:,} to {last:,}"
    section.rows += [
        Row(
            case,
            "growth of Python memory (tracemalloc)",
            f"{growth:+.1f} KiB",
            target=str(GROWTH),
            verdict=OK if GROWTH.met(growth) else MISSED,
        ),
        Row(case, "traced after the first 10%", f"{traced_start / 1024:.1f} KiB"),
        Row(case, "peak traced", f"{peak / 1024:.1f} KiB"),
        Row(case, "growth of resident memory (RSS)", f"{(rss_end - rss_start) / 1024:+.0f} KiB"),
    ]
    section.notes.append(
        "traced memory at each tenth: "
        + ", ".join(f"{traced / 1024:.0f}" for _, traced, _ in samples)
        + " KiB"
    )


def _resident() -> int:
    """This process's resident set size in bytes (Linux), 0 where unknown."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
