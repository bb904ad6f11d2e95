"""Run the benchmarks and print one table: ``python -m benchmarks [--quick] [--only NAME,...]``.

Suites (all but ``profile`` run by default):

* ``sqlite``: SQLPersister on SQLite, durable default and ``?synchronous=NORMAL``, against
  ``sqlite3`` with the same pragmas (commit per write, ``executemany``);
* ``postgres``: SQLPersister against psycopg 3 in autocommit and in a transaction;
* ``mysql``: SQLPersister on MariaDB/MySQL against PyMySQL running the same statements;
* ``files``: FilePersister against a raw durable write and a Go-style non-atomic write;
* ``b6``: azure-eventhub 5.0.0b6's SQLite checkpoint store (downloaded with pip at run time);
* ``scale``: write and read latency with 1,000 vs 1,000,000 stored checkpoints, ``list``;
* ``concurrency``: 4 writer processes on one SQLite file against one raw writer;
* ``memory``: tracemalloc over 100,000 writes of one long-running writer;
* ``eventhub``: the Event Hubs stores against azure-eventhub-checkpointstoreblob 1.2.0 on Azurite
  (``update_checkpoint``, the claim cycle, ``list_checkpoints``; sync and asyncio), and the
  asyncio store on PostgreSQL against a raw ``psycopg.AsyncConnection``;
* ``profile``: cProfile of SQLPersister's write, write_many and read (calls and CPU per op).

Servers come from ``STREAMCHECKPOINT_TEST_POSTGRES_URL`` and ``STREAMCHECKPOINT_TEST_MYSQL_URL``
(or ``--postgres-url``/``--mysql-url``); an unreachable one makes its rows say so. Everything is
created in a temporary directory, a PostgreSQL schema and a MariaDB table of its own, all removed
at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # lets the relative imports below work

from .harness import Report, Settings
from .machine import describe_machine
from .workload import MYSQL_URL, POSTGRES_URL, Context

__all__ = ["SUITES", "main"]


def _suites() -> dict[str, Callable[[Context], None]]:
    from . import (
        suite_b6,
        suite_concurrency,
        suite_eventhub,
        suite_files,
        suite_memory,
        suite_mysql,
        suite_postgres,
        suite_profile,
        suite_scale,
        suite_sqlite,
    )

    return {
        "sqlite": suite_sqlite.run,
        "postgres": suite_postgres.run,
        "mysql": suite_mysql.run,
        "files": suite_files.run,
        "b6": suite_b6.run,
        "scale": suite_scale.run,
        "concurrency": suite_concurrency.run,
        "memory": suite_memory.run,
        "eventhub": suite_eventhub.run,
        "profile": suite_profile.run,
    }


SUITES = (
    "sqlite",
    "postgres",
    "mysql",
    "files",
    "b6",
    "scale",
    "concurrency",
    "memory",
    "eventhub",
    "profile",
)
DEFAULT_SUITES = SUITES[:-1]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docs."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare streamcheckpoint's stores with the raw drivers and the alternatives.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the harness, not the numbers"
    )
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_SUITES),
        help=f"comma-separated suites out of {', '.join(SUITES)} (default: all but profile)",
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds per comparison (>= 5; default 9, --quick 5)"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for the README)"
    )
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--mysql-url", default=MYSQL_URL)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="where the azure-eventhub wheel is downloaded to and kept (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)}")
    if args.rounds is not None and args.rounds < 5:
        parser.error("--rounds must be at least 5: the medians need them")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites and print the table.

    Exit status 0 even if a target was missed; 1 if a suite failed (the others still run and
    the table says which one failed); 130 after Ctrl-C, once everything was cleaned up.
    """
    args = parse_arguments(argv)
    if args.rounds is None:
        settings = Settings.smoke() if args.quick else Settings.full()
    else:
        settings = Settings.smoke(args.rounds) if args.quick else Settings.full(args.rounds)
    signal.signal(signal.SIGTERM, _interrupt)
    suites = _suites()
    with ExitStack() as cleanup:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="scbench-")))
        report = Report(environment=describe_machine(directory))
        report.environment["method"] = (
            f"median of {settings.rounds} rounds ({settings.single_rounds} shorter ones for "
            "single writes and reads), contenders alternating within each round"
            + (" (--quick: tiny sizes, numbers not meaningful)" if settings.quick else "")
        )
        ctx = Context(
            settings=settings,
            directory=directory,
            report=report,
            cleanup=cleanup,
            postgres_url=args.postgres_url,
            mysql_url=args.mysql_url,
            cache_dir=args.cache_dir,
        )
        failed = False
        try:
            for name in args.only:
                failed |= not _run_suite(name, suites[name], ctx)
        except KeyboardInterrupt:
            print("interrupted; cleaning up", file=sys.stderr)
            return 130
    print(report.render_markdown() if args.markdown else report.render_text())
    return 1 if failed else 0


def _run_suite(name: str, suite: Callable[[Context], None], ctx: Context) -> bool:
    """Run one suite with its own cleanup; on an error, say so in the report and go on."""
    try:
        with ExitStack() as suite_cleanup:
            ctx.cleanup = suite_cleanup
            suite(ctx)
    except Exception as exc:  # a broken suite must not hide the others' results
        traceback.print_exc()
        ctx.report.section(f"{name}: FAILED").notes.append(f"{type(exc).__name__}: {exc}")
        return False
    return True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
