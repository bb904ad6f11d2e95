"""Fixtures of the fault suite: small file systems to fill, and peers to stop.

Everything here needs root (mounting a tmpfs). Without it the tests skip, except under
``STREAMCHECKPOINT_REQUIRE_SERVERS=1`` (CI), where they fail. Every test in this folder is marked
``faults``: ``pytest -m "not faults"`` leaves them out.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REQUIRE_SERVERS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)


def require_root(what: str) -> None:
    """Skip (fail under REQUIRE_SERVERS) unless this process is root."""
    if os.geteuid() == 0:
        return
    message = f"{what} needs root"
    if REQUIRE_SERVERS:
        pytest.fail(f"{message}; STREAMCHECKPOINT_REQUIRE_SERVERS=1 requires it")
    pytest.skip(message)


class SmallDisk:
    """A tmpfs of a few megabytes mounted at :attr:`path`, which the test can fill up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / f"filler-{uuid.uuid4().hex}"

    def fill(self) -> None:
        """Take every free byte (the file system's blocks run out, not the inodes)."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):  # big blocks, then the last partial ones
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    require_root("mounting a tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
