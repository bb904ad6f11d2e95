"""Shared fixtures: one ``backend`` fixture parametrized over every persister backend.

External servers come from environment variables. Unreachable means skip, except under
``STREAMCHECKPOINT_REQUIRE_SERVERS=1`` (set by ``.ci/run``), where it fails.
"""

from __future__ import annotations

import os
import pickle
import pwd
import select
import signal
import stat
import subprocess
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from streamcheckpoint import BasePersister, MemoryPersister

POSTGRES_URL = os.environ.get(
    "STREAMCHECKPOINT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get(
    "STREAMCHECKPOINT_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
REQUIRE_SERVERS = os.environ.get("STREAMCHECKPOINT_REQUIRE_SERVERS", "") not in ("", "0")

_server_checks: dict[str, str | None] = {}


def run_concurrently(workers: Sequence[Callable[[], object]]) -> list[BaseException]:
    """Run each worker in its own thread, all released at once; return what they raised."""
    barrier = threading.Barrier(len(workers))
    failures: list[BaseException] = []

    def run(work: Callable[[], object]) -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # collected for the test to assert on
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def require_package_readable_by_others() -> None:
    """Fail (skip outside CI) unless another OS user can import streamcheckpoint from here.

    Tests that fork a process and become another user load the package (and its migrations)
    from this checkout: a checkout in a directory only its owner may enter (``mktemp -d`` makes
    one) would fail them with a PermissionError that says nothing about why.
    """
    import streamcheckpoint

    package = Path(streamcheckpoint.__file__).resolve().parent
    closed = [d for d in [package, *package.parents] if not d.stat().st_mode & stat.S_IXOTH]
    if not closed:
        return
    message = (
        f"tests run as another OS user need {package} readable by other users, but "
        f"{closed[-1]} is mode {stat.filemode(closed[-1].stat().st_mode)}: "
        f"chmod o+rx it, or check the project out elsewhere"
    )
    if REQUIRE_SERVERS:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def throwaway_os_user(prefix: str) -> Iterator[pwd.struct_passwd]:
    """A new OS user with no home and no login shell, deleted afterwards.

    Needs root (skipped without it, failed under REQUIRE_SERVERS) and a checkout the user can
    read (:func:`require_package_readable_by_others`).
    """
    if os.geteuid() != 0:
        message = "creating OS users needs root"
        if REQUIRE_SERVERS:
            pytest.fail(f"{message}; STREAMCHECKPOINT_REQUIRE_SERVERS=1 requires it")
        pytest.skip(message)
    require_package_readable_by_others()
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def become(user: pwd.struct_passwd) -> None:
    """Turn this (forked) process into ``user``: its uid and gid, no supplementary groups."""
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


T = TypeVar("T")


def in_child(
    work: Callable[[], T], user: pwd.struct_passwd | None = None, timeout: float = 60
) -> T:
    """Run ``work`` in a forked process (as ``user`` if given) and return its result.

    What it raised fails the test with its traceback; a child that hasn't answered within
    ``timeout`` seconds is killed and fails the test.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            if user is not None:
                become(user)
            outcome: tuple[bool, Any] = (True, work())
        except BaseException:
            outcome = (False, traceback.format_exc())
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the child process hung for {timeout} s")
        with os.fdopen(read, "rb", closefd=False) as pipe:
            succeeded, value = pickle.load(pipe)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    if not succeeded:
        who = f" as {user.pw_name}" if user is not None else ""
        raise AssertionError(f"the child process{who} failed:\n{value}")
    return value  # type: ignore[no-any-return]


def require_server(url: str) -> str:
    """Return ``url`` if its server answers; otherwise skip (or fail under REQUIRE_SERVERS)."""
    if url not in _server_checks:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            _server_checks[url] = None
        except Exception as exc:  # any driver error means "not reachable"
            _server_checks[url] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            engine.dispose()
    problem = _server_checks[url]
    if problem is not None:
        message = f"database server at {url} is unreachable ({problem})"
        if REQUIRE_SERVERS:
            pytest.fail(f"{message}; STREAMCHECKPOINT_REQUIRE_SERVERS=1 requires it")
        pytest.skip(message)
    return url


def _azurite_module() -> Any:
    """``benchmarks/azurite.py``, which starts Azurite for the tests and the benchmarks alike."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "azurite.py"
    spec = importlib.util.spec_from_file_location("_streamcheckpoint_azurite", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def azurite() -> Iterator[str]:
    """Azurite's Blob service on a free loopback port, in memory, for one test: yields its
    connection string. Skipped if Azurite isn't installed (``.ci/run`` installs it), unless
    STREAMCHECKPOINT_REQUIRE_SERVERS=1."""
    module = _azurite_module()
    executable = module.find_azurite()
    if executable is None:
        message = "Azurite is not installed (npm install --prefix .ci/node azurite@3)"
        if REQUIRE_SERVERS:
            pytest.fail(f"{message}; STREAMCHECKPOINT_REQUIRE_SERVERS=1 requires it")
        pytest.skip(message)
    with module.Azurite(executable) as running:
        yield running.connection_string


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema for one test: yields (url, schema) and drops it afterwards."""
    import sqlalchemy as sa

    url = require_server(POSTGRES_URL)
    schema = f"sc_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def mysql_database() -> Iterator[str]:
    """A fresh MySQL/MariaDB database for one test: yields a URL naming it, drops it afterwards."""
    import sqlalchemy as sa

    server = require_server(MYSQL_URL)
    database = f"sc_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    try:
        yield sa.make_url(server).set(database=database).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{database}`"))
        engine.dispose()


@dataclass
class Backend:
    """One store under test. ``open()`` returns a new persister over the *same* store."""

    name: str
    opener: Callable[..., BasePersister]
    durable: bool = True  # a persister opened after all others closed still sees the data
    go_layout: bool = False  # Go's file naming: `$` is dropped from names, `_` is ambiguous
    opened: list[BasePersister] = field(default_factory=list)

    def open(self, **options: Any) -> BasePersister:
        persister = self.opener(**options)
        self.opened.append(persister)
        return persister

    def close_all(self) -> None:
        for persister in reversed(self.opened):
            persister.close()


BACKEND_NAMES = [
    "memory",
    "file-nested",
    "file-go",
    "sqlite-file",
    "sqlite-memory",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


def _memory_backend() -> Backend:
    shared: list[MemoryPersister] = []

    # MemoryPersister has no shared store, so "reopening" hands back views of one dict.
    def opener(monotonic: bool = False) -> BasePersister:
        persister = MemoryPersister(monotonic=monotonic)
        if shared:
            persister._data = shared[0]._data
            persister._lock = shared[0]._lock
        shared.append(persister)
        return persister

    return Backend("memory", opener, durable=False)


def make_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    """Build the backend called ``name`` in ``tmp_path``."""
    if name == "memory":
        return _memory_backend()
    if name in ("file-nested", "file-go"):
        from streamcheckpoint import FilePersister  # type: ignore[attr-defined,unused-ignore]

        layout = "go" if name == "file-go" else "nested"
        directory = tmp_path / "checkpoints"
        return Backend(
            name,
            lambda **kw: FilePersister(directory, layout=layout, **kw),
            go_layout=layout == "go",
        )
    from streamcheckpoint import SQLPersister  # type: ignore[attr-defined,unused-ignore]

    if name == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'checkpoints.db'}"
        return Backend(name, lambda **kw: SQLPersister(url, **kw))
    if name == "sqlite-memory":
        first: list[Any] = []

        def opener(**kw: Any) -> BasePersister:
            persister = SQLPersister(first[0].engine if first else "sqlite://", **kw)
            first.append(persister)
            return persister  # type: ignore[no-any-return,unused-ignore]

        return Backend(name, opener, durable=False)
    if name == "postgresql":
        url, schema = request.getfixturevalue("postgres_schema")
        return Backend(name, lambda **kw: SQLPersister(url, schema=schema, **kw))
    if name == "mysql":
        database_url = request.getfixturevalue("mysql_database")
        return Backend(name, lambda **kw: SQLPersister(database_url, **kw))
    raise AssertionError(f"unknown backend {name}")


DURABLE_BACKEND_NAMES = [
    "file-nested",
    "file-go",
    "sqlite-file",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = make_backend(request.param, tmp_path, request)
    try:
        yield b
    finally:
        b.close_all()


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend in turn; closes what the test opened."""
    yield from _backend(request, tmp_path)


@pytest.fixture(params=DURABLE_BACKEND_NAMES)
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend whose data outlives its persisters (files, SQLite file, PostgreSQL)."""
    yield from _backend(request, tmp_path)


@pytest.fixture
def persister(backend: Backend) -> BasePersister:
    """A persister (monotonic=False) on each backend in turn."""
    return backend.open()


@pytest.fixture
def go_fixtures_dir() -> Path:
    """Files written by Go's ``persist.FilePersister`` (see tests/data/go-persist/README.md)."""
    return Path(__file__).parent / "data" / "go-persist"
