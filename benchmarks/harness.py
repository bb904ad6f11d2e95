"""Measuring side by side and reporting: alternating rounds, medians, ratios against targets.

A suite hands :func:`alternate` a few contenders doing the same work; each round runs every
contender once (``calls`` operations), the starting contender rotating from round to round, so a
machine that speeds up or slows down mid-run hits all of them alike. A ratio is the median of the
per-round ratios of two contenders measured in the same rounds.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "MISSED",
    "OK",
    "Report",
    "Row",
    "Settings",
    "Target",
    "alternate",
    "format_seconds",
    "median_ratio",
]

OK = "ok"
MISSED = "MISSED"

Operation = Callable[[int], object]
"""One operation of a contender; the argument is the operation's index in the whole run."""


@dataclass(frozen=True)
class Settings:
    """How much work each suite does; ``quick`` is the smoke-test size."""

    quick: bool
    rounds: int
    """Rounds of the comparisons of batches and lists."""
    single_rounds: int
    """Rounds of the comparisons of single writes and reads: short rounds, so that each
    contender's share of a burst of disk or CPU contention from elsewhere stays small."""
    writes: int
    """Single writes (and reads) per contender per round."""
    batches: int
    """``write_many`` calls per contender per round."""
    batch_size: int
    list_partitions: int
    """Partitions in the consumer group that ``list`` returns."""
    small_store: int
    large_store: int
    """Stored checkpoints of the two databases the scale suite compares."""
    writer_processes: int
    writes_per_process: int
    memory_writes: int
    warmup_writes: int
    """Warm-up single operations per contender: a new SQLite database's WAL file grows during
    its first few hundred commits (and a commit that extends a file costs more to fsync),
    which a long-running writer pays once; the rounds measure the steady state after it."""

    @classmethod
    def full(cls, rounds: int = 9) -> Settings:
        """The published run (about four minutes on a 2-core machine with both servers)."""
        return cls(
            quick=False,
            rounds=rounds,
            single_rounds=rounds * 5,
            writes=120,
            batches=3,
            batch_size=1000,
            list_partitions=10_000,
            small_store=1_000,
            large_store=1_000_000,
            writer_processes=4,
            writes_per_process=500,
            memory_writes=100_000,
            warmup_writes=500,
        )

    @classmethod
    def smoke(cls, rounds: int = 5) -> Settings:
        """Every suite, tiny: checks the harness works, not the numbers."""
        return cls(
            quick=True,
            rounds=rounds,
            single_rounds=rounds,
            writes=10,
            batches=1,
            batch_size=50,
            list_partitions=200,
            small_store=1_000,
            large_store=5_000,
            writer_processes=4,
            writes_per_process=25,
            memory_writes=2_000,
            warmup_writes=30,
        )

    def warmup(self, calls: int) -> int:
        """Warm-up operations before rounds of ``calls`` operations (batches and lists: 1-2)."""
        return self.warmup_writes if calls >= self.writes else min(calls, 2)

    def rounds_for(self, calls: int) -> int:
        """How many rounds a comparison of ``calls`` operations per round runs."""
        return self.single_rounds if calls >= self.writes else self.rounds

    def operations(self, calls: int) -> int:
        """How many operation indexes :func:`alternate` hands out for ``calls`` per round."""
        return self.warmup(calls) + self.rounds_for(calls) * calls


def alternate(
    contenders: Mapping[str, Operation], *, rounds: int, calls: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per operation of each contender, one entry per round.

    Each contender first runs ``warmup`` operations (caches, prepared statements, a growing WAL
    file), then ``rounds`` rounds of ``calls`` operations. Operation indexes run from 0 upwards,
    the same for every contender; the contender starting a round rotates.
    """
    names = list(contenders)
    for run in contenders.values():
        for index in range(warmup):
            run(index)
    times: dict[str, list[float]] = {name: [] for name in names}
    # Collect garbage before each contender's turn, so that no turn pays for another's; what
    # exists now (inputs, connections) is frozen out of the collections, which keeps them cheap.
    gc.collect()
    gc.freeze()
    try:
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                run = contenders[name]
                first = warmup + round_number * calls
                gc.collect()
                start = time.perf_counter()
                for index in range(first, first + calls):
                    run(index)
                times[name].append((time.perf_counter() - start) / calls)
    finally:
        gc.unfreeze()
    return times


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median of the per-round ratios ``numerator[i] / denominator[i]``."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


def format_seconds(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits readable."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


@dataclass(frozen=True)
class Target:
    """A value that must stay at or below (``<=``) or at or above (``>=``) ``value``.

    Usually a ratio (``unit`` ``"x"``); a few targets are absolute (``" ms"``, ``" errors"``).
    """

    op: Literal["<=", ">="]
    value: float
    unit: str = "x"

    def met(self, ratio: float) -> bool:
        """Whether ``ratio`` meets the target."""
        return ratio <= self.value if self.op == "<=" else ratio >= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}{self.unit}"


@dataclass(frozen=True)
class Row:
    """One line of the table. Empty strings are shown as blanks."""

    case: str
    contender: str
    measured: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Section:
    """A titled group of rows, with notes printed under it."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


HEADERS = ("case", "contender", "median", "ratio", "target", "verdict")


@dataclass
class Report:
    """Everything measured in a run, printed as one table."""

    environment: dict[str, str] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    progress: bool = True

    def section(self, title: str) -> Section:
        """Start a new group of rows."""
        if self.progress:
            print(f"... {title}", file=sys.stderr, flush=True)
        section = Section(title)
        self.sections.append(section)
        return section

    def compare(
        self,
        section: Section,
        case: str,
        times: Mapping[str, Sequence[float]],
        floor: str,
        targets: Mapping[str, Target | None],
        *,
        invert: bool = False,
    ) -> dict[str, float]:
        """Add a row for ``floor`` and one per other contender with its ratio to the floor.

        ``invert`` reports floor/contender instead (how many times faster the contender is).
        Returns the ratios by contender.
        """
        section.rows.append(Row(case, floor, format_seconds(statistics.median(times[floor]))))
        ratios: dict[str, float] = {}
        for name, target in targets.items():
            ours = times[name]
            ratio = median_ratio(times[floor], ours) if invert else median_ratio(ours, times[floor])
            ratios[name] = ratio
            section.rows.append(
                Row(
                    case,
                    name,
                    format_seconds(statistics.median(ours)),
                    f"{ratio:.2f}x",
                    "" if target is None else str(target),
                    verdict(ratio, target),
                )
            )
        return ratios

    @property
    def rows(self) -> list[Row]:
        """Every row of every section."""
        return [row for section in self.sections for row in section.rows]

    def misses(self) -> list[Row]:
        """The rows whose ratio missed its target."""
        return [row for row in self.rows if row.verdict == MISSED]

    def render_text(self) -> str:
        """The table as aligned plain text."""
        lines = [f"{name}: {value}" for name, value in self.environment.items()]
        widths = [len(h) for h in HEADERS]
        for row in self.rows:
            for index, cell in enumerate(_cells(row)):
                widths[index] = max(widths[index], len(cell))
        rule = "  ".join("-" * w for w in (*widths[:-1], min(widths[-1], 20)))
        for section in self.sections:
            lines += ["", f"== {section.title}", _line(HEADERS, widths), rule]
            lines += [_line(_cells(row), widths) for row in section.rows]
            lines += [f"   note: {note}" for note in section.notes]
        lines += ["", _summary(self)]
        return "\n".join(lines)

    def render_markdown(self) -> str:
        """The table as Markdown (one table per section)."""
        lines = [f"- {name}: {value}" for name, value in self.environment.items()]
        for section in self.sections:
            lines += ["", f"**{section.title}**", ""]
            lines += ["| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
            lines += [
                "| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |"
                for row in section.rows
            ]
            if section.notes:
                lines.append("")
                lines += [f"- {note}" for note in section.notes]
        lines += ["", _summary(self)]
        return "\n".join(lines)


def verdict(ratio: float, target: Target | None) -> str:
    """``ok``/``MISSED`` for a ratio with a target, blank for an informational one."""
    if target is None:
        return ""
    return OK if target.met(ratio) else MISSED


def _cells(row: Row) -> tuple[str, ...]:
    return (row.case, row.contender, row.measured, row.ratio, row.target, row.verdict)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _summary(report: Report) -> str:
    checked = [row for row in report.rows if row.verdict in (OK, MISSED)]
    missed = report.misses()
    text = f"targets: {len(checked) - len(missed)} of {len(checked)} met"
    if missed:
        text += "; MISSED: " + "; ".join(f"{row.case} / {row.contender}" for row in missed)
    return text
