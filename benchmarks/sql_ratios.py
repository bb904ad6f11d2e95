"""How much SQLPersister costs over the raw drivers: the SQLite and PostgreSQL suites only.

Kept as an entry point of its own; the full harness is ``python -m benchmarks``.

    .venv/bin/python benchmarks/sql_ratios.py [--quick] [--rounds 7] [--postgres-url URL]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/sql_ratios.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import main as run_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m benchmarks --only sqlite,postgres`` with these arguments."""
    arguments = sys.argv[1:] if argv is None else argv
    return run_main(["--only", "sqlite,postgres", *arguments])


if __name__ == "__main__":
    sys.exit(main())
