"""FilePersister against the floor for a durable file write and against Go's non-atomic write."""

from __future__ import annotations

import json
import os
from pathlib import Path

from streamcheckpoint import Checkpoint, FilePersister, PartitionKey

from .cases import READ, WRITE, batch_case, compare, list_case
from .workload import HUB, LIST_GROUP, NAMESPACE, Context, Plan, group_items

__all__ = ["run"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


class RawFiles:
    """One JSON file per partition in one directory, written the ways being compared."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._temporary = 0

    def atomic(self, items: list[tuple[PartitionKey, Checkpoint]]) -> None:
        """Temporary file + write + fsync each, rename each over its target, fsync the dir."""
        renames = []
        for key, cp in items:
            self._temporary += 1
            temporary = f".tmp-{self._temporary}"
            fd = os.open(temporary, _CREATE, 0o666, dir_fd=self.fd)
            try:
                os.write(fd, cp.to_json().encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            renames.append((temporary, f"{key.partition_id}.json"))
        for temporary, name in renames:
            os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        os.fsync(self.fd)

    def in_place(self, key: PartitionKey, cp: Checkpoint, *, fsync: bool) -> None:
        """Truncate and overwrite the file (Go's ``os.Create`` + ``Write``), fsynced or not."""
        fd = os.open(f"{key.partition_id}.json", _TRUNCATE, 0o666, dir_fd=self.fd)
        try:
            os.write(fd, cp.to_json().encode())
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, key: PartitionKey) -> object:
        """Open, read and parse one file."""
        fd = os.open(f"{key.partition_id}.json", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            return json.loads(os.read(fd, 65536))
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the directory."""
        os.close(self.fd)


def read_directory(directory: Path) -> list[object]:
    """Every ``*.json`` file of ``directory``, parsed: the floor for ``list``."""
    with os.scandir(directory) as entries:
        return [
            json.loads(Path(entry.path).read_bytes())
            for entry in entries
            if entry.name.endswith(".json")
        ]


def run(ctx: Context) -> None:
    """Single writes, write_many, reads and list on the nested and Go layouts."""
    section = ctx.report.section(
        "Files (FilePersister: temporary file, fsync, rename, directory fsync)"
    )
    settings = ctx.settings
    plan = Plan.build(settings)
    directory = ctx.path("files")
    raw = RawFiles(directory / "raw")
    ctx.cleanup.callback(raw.close)
    go_style = RawFiles(directory / "go-style")
    ctx.cleanup.callback(go_style.close)
    nested = FilePersister(directory / "nested")
    go = FilePersister(directory / "go", layout="go")
    compare(
        ctx,
        section,
        WRITE,
        {
            "raw: temp file + write + fsync + rename + dir fsync (floor)": lambda i: raw.atomic(
                [plan.writes[i]]
            ),
            "raw: write + fsync in place (not atomic)": lambda i: raw.in_place(
                *plan.writes[i], fsync=True
            ),
            "Go-style: create/truncate + write, no fsync": lambda i: go_style.in_place(
                *plan.writes[i], fsync=False
            ),
            "FilePersister": lambda i: nested.write(*plan.writes[i][0], plan.writes[i][1]),
            "FilePersister(layout='go')": lambda i: go.write(*plan.writes[i][0], plan.writes[i][1]),
        },
        calls=settings.writes,
        targets={
            "raw: write + fsync in place (not atomic)": None,
            "Go-style: create/truncate + write, no fsync": None,
            "FilePersister": None,
            "FilePersister(layout='go')": None,
        },
    )
    compare(
        ctx,
        section,
        batch_case(settings.batch_size),
        {
            "raw: fsynced temp files, renames, one dir fsync (floor)": lambda i: raw.atomic(
                list(plan.batches[i].items())
            ),
            "FilePersister.write_many": lambda i: nested.write_many(plan.batches[i]),
        },
        calls=settings.batches,
        targets={"FilePersister.write_many": None},
    )
    compare(
        ctx,
        section,
        READ,
        {
            "raw: open + read + json.loads (floor)": lambda i: raw.read(plan.writes[i][0]),
            "FilePersister.read": lambda i: nested.read(*plan.writes[i][0]),
            "FilePersister(layout='go').read": lambda i: go.read(*plan.writes[i][0]),
        },
        calls=settings.writes,
        targets={"FilePersister.read": None, "FilePersister(layout='go').read": None},
    )
    items = list(group_items(LIST_GROUP, settings.list_partitions))
    for start in range(0, len(items), 1000):
        nested.write_many(items[start : start + 1000])
    group_directory = directory / "nested" / NAMESPACE / HUB / LIST_GROUP
    compare(
        ctx,
        section,
        list_case(settings.list_partitions),
        {
            "raw: scandir + read + json.loads (floor)": lambda i: read_directory(group_directory),
            "FilePersister.list": lambda i: nested.list(NAMESPACE, HUB, LIST_GROUP),
        },
        calls=1,
        targets={"FilePersister.list": None},
    )
    section.notes.append(
        "no targets for files (the issue sets none). FilePersister does the floor's syscalls "
        "plus opening its directory by path for every write (the floor keeps its directory "
        "open): that is how it notices a checkpoint directory that was removed or replaced, "
        "and walks no symlinks. The Go-style write is neither atomic nor durable: its ratio is "
        "the price of both"
    )
