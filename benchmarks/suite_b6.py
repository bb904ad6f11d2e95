"""azure-eventhub 5.0.0b6's SQLite checkpoint store, the only other SQL store for that SDK.

Its wheel is downloaded with pip when the suite runs (into ``--cache-dir`` or a temporary
directory) and its ``sqlite3_checkpoint_store.py`` is imported from the extracted file; none of
its code is part of this repository. Reading that module: ``Sqlite3CheckpointStore(db_filename,
ownership_table, checkpoint_table)`` opens ``sqlite3.connect(db_filename)`` with Python's
defaults and ``update_checkpoint(checkpoint: dict)`` runs ``INSERT OR REPLACE`` and commits.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamcheckpoint import SQLPersister
from streamcheckpoint.eventhub import SQLCheckpointStore

from .cases import compare, list_case, missing
from .harness import Target
from .workload import (
    HUB,
    LIST_GROUP,
    NAMESPACE,
    Context,
    Plan,
    checkpoint_documents,
    group_items,
    sqlite_url,
)

__all__ = ["load_store_class", "run"]

REQUIREMENT = "azure-eventhub==5.0.0b6"
MODULE = "azure/eventhub/_eventprocessor/sqlite3_checkpoint_store.py"
BASE_MODULE = "azure/eventhub/_eventprocessor/checkpoint_store.py"
PACKAGE = "_scbench_b6_eventprocessor"

REFERENCE = "SQLPersister, durable default (reference)"
AT_DEFAULTS = "b6 store at its defaults (rollback journal, synchronous=FULL)"
EQUAL = "b6 store + PRAGMA synchronous=EXTRA (equal durability)"
WAL = "b6 store + journal_mode=WAL, synchronous=FULL (our pragmas)"
ADAPTER = "SQLCheckpointStore.update_checkpoint (ours, durable default)"


def load_store_class(ctx: Context) -> type[Any] | str:
    """Download the wheel (once per cache dir) and import the store; or say why not."""
    cache = ctx.cache_dir or ctx.directory / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = _find_wheel(cache)
    if wheel is None:
        try:
            done = subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", REQUIREMENT, "--no-deps"),
                    *("--only-binary=:all:", "--quiet", "--dest", str(cache)),
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable: pip download {REQUIREMENT} failed ({exc})"
        wheel = _find_wheel(cache)
        if done.returncode != 0 or wheel is None:
            lines = (done.stderr or done.stdout).strip().splitlines()
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            return f"unavailable: pip download {REQUIREMENT} failed ({reason})"
    target = ctx.directory / "b6" / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in (BASE_MODULE, MODULE):
                (target / Path(member).name).write_bytes(archive.read(member))
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        return f"unavailable: {wheel.name} has no usable {MODULE} ({exc})"
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(target)]
    sys.modules[PACKAGE] = package
    module = importlib.import_module(f"{PACKAGE}.sqlite3_checkpoint_store")
    store: type[Any] = module.Sqlite3CheckpointStore
    return store


def _find_wheel(cache: Path) -> Path | None:
    return next(iter(sorted(cache.glob("azure_eventhub-5.0.0b6-*.whl"))), None)


def run(ctx: Context) -> None:
    """update_checkpoint against SQLPersister.write, at its defaults and at equal durability."""
    section = ctx.report.section(
        "azure-eventhub 5.0.0b6 Sqlite3CheckpointStore (ratio: how many times SQLPersister's "
        "throughput)"
    )
    store_class = load_store_class(ctx)
    if isinstance(store_class, str):
        missing(section, "b6 Sqlite3CheckpointStore", store_class)
        return
    ctx.report.environment["azure-eventhub"] = "5.0.0b6 (wheel from PyPI, imported from a temp dir)"
    settings = ctx.settings
    plan = Plan.build(settings)
    directory = ctx.path("b6-stores")
    ours = SQLPersister(sqlite_url(directory / "ours.db"))
    ctx.cleanup.callback(ours.close)
    adapter = SQLCheckpointStore(sqlite_url(directory / "adapter.db"))
    ctx.cleanup.callback(adapter.close)
    stores = {
        AT_DEFAULTS: _open(ctx, store_class, directory / "defaults.db", []),
        EQUAL: _open(ctx, store_class, directory / "extra.db", ["synchronous=EXTRA"]),
        WAL: _open(
            ctx, store_class, directory / "wal.db", ["journal_mode=WAL", "synchronous=FULL"]
        ),
    }
    documents = checkpoint_documents(plan)

    def updater(store: Any) -> Callable[[int], None]:
        return lambda i: store.update_checkpoint(documents[i])

    compare(
        ctx,
        section,
        "update_checkpoint vs write, 32 partitions",
        {
            REFERENCE: lambda i: ours.write(*plan.writes[i][0], plan.writes[i][1]),
            **{name: updater(store) for name, store in stores.items()},
            ADAPTER: updater(adapter),
        },
        calls=settings.writes,
        targets={AT_DEFAULTS: None, EQUAL: Target(">=", 3.0), WAL: None, ADAPTER: None},
    )
    items = list(group_items(LIST_GROUP, settings.list_partitions))
    ours.write_many(items)
    stores[AT_DEFAULTS].conn.executemany(
        "INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?, ?, ?, ?)",
        [(*key, cp.sequence_number, cp.offset) for key, cp in items],
    )
    stores[AT_DEFAULTS].conn.commit()
    compare(
        ctx,
        section,
        list_case(settings.list_partitions) + " (list_checkpoints vs list)",
        {
            "SQLPersister.list (reference)": lambda i: ours.list(NAMESPACE, HUB, LIST_GROUP),
            "b6 store list_checkpoints": lambda i: stores[AT_DEFAULTS].list_checkpoints(
                NAMESPACE, HUB, LIST_GROUP
            ),
        },
        calls=1,
        targets={"b6 store list_checkpoints": None},
    )
    section.notes += [
        "b6 at its defaults is not power-loss durable: in rollback-journal mode a commit is the "
        "journal's unlink, which synchronous=FULL does not fsync (SQLite fsyncs the directory "
        "after the unlink only at synchronous=EXTRA), so a power loss right after a commit can "
        "roll it back",
        "equal durability = its defaults + PRAGMA synchronous=EXTRA; the WAL row shows how much "
        "of the gap is the journal mode alone (b6 exposes no setting for either)",
    ]


def _open(ctx: Context, store_class: type[Any], path: Path, pragmas: list[str]) -> Any:
    store = store_class(db_filename=str(path))
    for pragma in pragmas:
        store.conn.execute(f"PRAGMA {pragma}")
    ctx.cleanup.callback(store.close)
    return store
