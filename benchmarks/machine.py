"""What the numbers were measured on: CPU, cores, kernel, file system, library versions."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path

__all__ = ["describe_machine", "file_system", "library_versions"]


def describe_machine(directory: Path) -> dict[str, str]:
    """The machine line and the library versions line of the report."""
    return {
        "machine": (
            f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"temp files on {file_system(directory)}"
        ),
        "versions": library_versions(),
    }


def library_versions() -> str:
    """Python, SQLite and every library the contenders use, as installed."""
    parts = [
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    for distribution in ("streamcheckpoint", "SQLAlchemy", "psycopg", "PyMySQL"):
        try:
            parts.append(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{distribution} not installed")
    return ", ".join(parts)


def file_system(directory: Path) -> str:
    """The file system type and device of the mount holding ``directory`` (Linux)."""
    target = str(directory.resolve())
    best: tuple[int, str] = (-1, "unknown file system")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best[1]
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, fs_type = fields[0], fields[1], fields[2]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best[0]:
            best = (len(mount_point), f"{fs_type} ({device} at {mount_point})")
    return best[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
