"""Azurite, the Azure Storage emulator, on a free loopback port: for the Blob store comparison
and the ``import-blob`` tests.

Installed by ``.ci/run`` into ``.ci/node`` (``npm install --prefix .ci/node azurite@3``); found
there, at ``STREAMCHECKPOINT_AZURITE`` (the path of ``azurite-blob``), or on ``PATH``. Runs the
Blob service only, in memory, in loose mode, and is stopped when the context ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["ACCOUNT", "Azurite", "find_azurite"]

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's documented development account key (the same for every installation).
_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_START_LIMIT = 60.0


def find_azurite() -> Path | None:
    """The ``azurite-blob`` executable, or ``None`` if it isn't installed."""
    given = os.environ.get("STREAMCHECKPOINT_AZURITE")
    candidates = [
        Path(given) if given else None,
        ROOT / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Azurite:
    """A running Azurite Blob service: ``connection_string`` reaches it."""

    def __init__(self, executable: Path) -> None:
        self.port = _free_port()
        # Azurite writes its bookkeeping (and debug logs) to the working directory.
        self._workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        self._process = subprocess.Popen(
            [
                str(executable),
                *("--blobHost", "127.0.0.1", "--blobPort", str(self.port)),
                "--inMemoryPersistence",
                "--loose",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self._workspace.name,
        )
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _START_LIMIT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read() if self._process.stderr else ""
                raise RuntimeError(f"Azurite exited with {self._process.returncode}: {error}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(
            f"Azurite did not listen on 127.0.0.1:{self.port} within {_START_LIMIT} s"
        )

    def stop(self) -> None:
        """Stop Azurite (its data was only in memory)."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._workspace.cleanup()

    def __enter__(self) -> Azurite:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
