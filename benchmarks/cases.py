"""The cases every store is measured on, and running one comparison into the report."""

from __future__ import annotations

from collections.abc import Mapping

from .harness import Operation, Row, Section, Target, alternate
from .workload import Context

__all__ = ["READ", "WRITE", "batch_case", "compare", "list_case", "missing"]

WRITE = "write, 32 partitions round-robin"
READ = "read by key"


def batch_case(size: int) -> str:
    """The name of the batch case for ``write_many`` of ``size`` checkpoints."""
    return f"write_many({size})"


def list_case(partitions: int) -> str:
    """The name of the list case for a consumer group of ``partitions`` partitions."""
    return f"list, {partitions:,} partitions"


def compare(
    ctx: Context,
    section: Section,
    case: str,
    contenders: Mapping[str, Operation],
    *,
    calls: int,
    targets: Mapping[str, Target | None],
    invert: bool = False,
) -> dict[str, float]:
    """Run ``contenders`` alternating; the first is the floor the others are compared with."""
    floor = next(iter(contenders))
    settings = ctx.settings
    times = alternate(
        contenders,
        rounds=settings.rounds_for(calls),
        calls=calls,
        warmup=settings.warmup(calls),
    )
    return ctx.report.compare(section, case, times, floor, targets, invert=invert)


def missing(section: Section, contender: str, verdict: str, detail: str = "") -> None:
    """A row for a contender that can't be measured (yet), and a note saying why."""
    section.rows.append(Row("all cases", contender, verdict=verdict))
    if detail:
        section.notes.append(f"{contender}: {verdict}: {detail}")
