"""Writers SIGKILLed at random moments lose no acknowledged checkpoint and invent none.

Each case runs writer processes (forked by ``_writer_server.py`` from a pre-imported parent, each
opening its own persister after the fork) that write ever-increasing counters to partitions of
their own, one ``write`` at a time and every fifth counter as one ``write_many`` to all of them;
a writer logs each counter to its ack file before the call (``try``) and, only once the call
returned, again (``ack``, fsynced). Every writer gets a random lifetime, is SIGKILLed when it
ends (while opening the store, inside a write, between two) and restarted with the next counters,
every other incarnation in monotonic mode, until at least :data:`KILLS` kills have happened.

After every kill, with the other writers still running, and at the end with a fresh persister
once all are dead: each partition holds at least the last checkpoint acknowledged for it, and
only a checkpoint its owner really tried to write (every field derives from writer, partition and
counter). At the end the store also passes its integrity check: SQLite's ``PRAGMA
integrity_check``, MariaDB's ``CHECK TABLE``; in a file store every file parses and no temporary
file shows up as a checkpoint.

The first writer of a new database creates its tables as it opens: writers killed at random
moments of that leave a database the next persister opens (finishing the upgrade). On MySQL,
which commits DDL at once, the states such a kill leaves are also put in place one by one.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from faults._writer_server import KEY_GROUP, checkpoint_for
from streamcheckpoint import (
    Checkpoint,
    CheckpointRecord,
    FilePersister,
    PartitionKey,
    SchemaError,
    SQLPersister,
)
from streamcheckpoint.filenames import LOCK_NAME, TEMP_PREFIX
from streamcheckpoint.persister import BasePersister
from streamcheckpoint.sql import migrations
from test_migrations import assert_schema_matches_code

SERVER = str(Path(__file__).with_name("_writer_server.py"))
KILLS = 60
"""Kills per case (the issue asks for at least 50)."""
PARTITIONS_PER_WRITER = 3
COUNTERS_PER_INCARNATION = 1_000_000
"""Incarnation ``i`` of a writer writes counters from ``i * COUNTERS_PER_INCARNATION`` on."""
LIFETIME = {"sqlite": 0.3, "postgresql": 0.3, "mysql": 0.6, "file-nested": 0.2, "file-go": 0.2}
"""A writer is killed a uniformly random time between 0 and this many seconds after its start
(or 2.5 times what the first writer took to acknowledge its first write, if that is longer, on
a busy machine): long enough to open the store and make some writes, short enough that many
kills land while it opens."""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, SIGKILL, PR_SET_PDEATHSIG")


@dataclass
class Log:
    """What one incarnation of a writer wrote to its ack file (complete lines only)."""

    opened: bool = False
    tried: dict[str, set[int]] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    acks: int = 0
    batch_acks: int = 0  # acknowledged write_many calls
    errors: list[str] = field(default_factory=list)


def read_log(path: Path) -> Log:
    """Parse an ack file; a line still being written (no newline yet) is left out."""
    log = Log()
    try:
        text = path.read_text()
    except FileNotFoundError:  # killed before it created the file
        return log
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "opened":
            log.opened = True
        elif kind == "error":
            log.errors.append(rest)
        else:
            counter, partitions = rest.split(" ")
            for partition in partitions.split(","):
                if kind == "try":
                    log.tried.setdefault(partition, set()).add(int(counter))
                else:
                    assert kind == "ack", line
                    log.acked[partition] = int(counter)
            log.acks += kind == "ack"
            log.batch_acks += kind == "ack" and "," in partitions
    return log


@dataclass
class Incarnation:
    """One writer process: which writer it is, its ack file, its process id, when it dies."""

    writer: int
    number: int
    ack_file: Path
    pid: int
    deadline: float


class WriterServer:
    """The test's end of ``_writer_server.py``: start and kill writers, one request at a time."""

    def __init__(self, store: dict[str, Any]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, SERVER, json.dumps(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._answer() == "ready"

    def _answer(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        assert line.endswith("\n"), f"the writer server died ({self._process.poll()})"
        return line.rstrip("\n")

    def _ask(self, request: str) -> str:
        assert self._process.stdin is not None
        self._process.stdin.write(request + "\n")
        self._process.stdin.flush()
        return self._answer()

    def start(
        self,
        writer: int,
        first_counter: int,
        monotonic: bool,
        partitions: list[str],
        ack: Path,
        store: dict[str, Any] | None = None,
    ) -> int:
        """Fork a writer on the server's store (or on ``store``); return its process id."""
        other = "" if store is None else " " + json.dumps(store, separators=(",", ":"))
        answer = self._ask(
            f"start {writer} {first_counter} {int(monotonic)} {','.join(partitions)} {ack}{other}"
        )
        word, pid = answer.split()
        assert word == "started", answer
        return int(pid)

    def kill(self, pid: int) -> str:
        """SIGKILL writer ``pid``; return how it ended (``signal 9`` unless it had died)."""
        answer = self._ask(f"kill {pid}")
        assert answer.startswith(f"killed {pid} "), answer
        return answer.split(" ", 2)[2]

    def close(self) -> None:
        """End the server, which kills what still runs; kill the server if it doesn't end."""
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(timeout=30)
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()


@contextmanager
def writer_server(store: dict[str, Any]) -> Iterator[WriterServer]:
    server = WriterServer(store)
    try:
        yield server
    finally:
        server.close()


@dataclass
class Case:
    """A store under test: how writers open it, and how the test reads and checks it."""

    kind: str
    writers: int
    store: dict[str, Any]
    directory: Path | None = None  # the file store's directory
    sqlite_file: Path | None = None

    @property
    def go_layout(self) -> bool:
        return self.kind == "file-go"

    def open(self, *, migrate: bool = False) -> BasePersister:
        """A persister on the store; an SQL one only checks the schema unless ``migrate``."""
        if self.directory is not None:
            return FilePersister(self.directory, layout=self.store["layout"])
        return SQLPersister(self.store["url"], schema=self.store.get("schema"), migrate=migrate)


def make_case(kind: str, writers: int, tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    if kind == "sqlite":
        path = tmp_path / "checkpoints.db"
        return Case(kind, writers, {"url": f"sqlite:///{path}"}, sqlite_file=path)
    if kind == "postgresql":
        url, schema = request.getfixturevalue("postgres_schema")
        return Case(kind, writers, {"url": url, "schema": schema})
    if kind == "mysql":
        return Case(kind, writers, {"url": request.getfixturevalue("mysql_database")})
    directory = tmp_path / "checkpoints"
    return Case(kind, writers, {"directory": str(directory), "layout": kind[5:]}, directory)


def partitions_of(writer: int) -> list[str]:
    return [str(writer * PARTITIONS_PER_WRITER + j) for j in range(PARTITIONS_PER_WRITER)]


def check_checkpoints(
    records: list[CheckpointRecord],
    acked: dict[str, int],
    tried: dict[str, set[int]],
    writers: int,
    context: str,
    *,
    go_layout: bool = False,
) -> None:
    """Each partition holds at least its acknowledged counter, and a checkpoint really tried.

    ``acked`` must have been read before the store, ``tried`` after it. Go's file names drop
    the ``$`` of ``$Default``, so with ``go_layout`` the listing says ``Default``.
    """
    stored = {r.key.partition_id: r.checkpoint for r in records}
    group = tuple(c.replace("$", "") for c in KEY_GROUP) if go_layout else KEY_GROUP
    assert all(r.key[:3] == group for r in records), context
    assert set(stored) <= {p for w in range(writers) for p in partitions_of(w)}, context
    for writer in range(writers):
        for partition in partitions_of(writer):
            checkpoint = stored.get(partition)
            if partition in acked:
                assert checkpoint is not None, f"{partition} lost its acknowledged write; {context}"
                assert checkpoint.sequence_number >= acked[partition], (partition, context)
            if checkpoint is None:
                continue
            counter = checkpoint.sequence_number
            assert counter in tried.get(partition, set()), (partition, checkpoint, context)
            assert checkpoint == checkpoint_for(writer, partition, counter), (partition, context)


def check_files(directory: Path) -> int:
    """Every visible file below ``directory`` parses as a checkpoint; hidden files are only our
    temporary and lock files. Return how many temporary files there are."""
    temporary = 0
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            if name.startswith(TEMP_PREFIX):
                temporary += 1
                continue
            if name == LOCK_NAME:
                continue
            assert not name.startswith("."), f"{name} is neither ours nor a checkpoint"
            data = (Path(dirpath) / name).read_bytes()
            assert data, f"{name} is empty"
            Checkpoint.from_json(data)  # CorruptCheckpointError on a partial file
    return temporary


def check_integrity(case: Case) -> str:
    """Run the store's own integrity check; return what it said."""
    if case.sqlite_file is not None:
        log = Path(f"{case.sqlite_file}-wal")
        left = f"{log.stat().st_size} bytes of log left by the kills" if log.exists() else "no log"
        db = sqlite3.connect(case.sqlite_file)
        try:
            result = db.execute("PRAGMA integrity_check").fetchall()
        finally:
            db.close()
        assert result == [("ok",)], result
        return f"{left}, integrity_check ok"
    if case.kind == "mysql":
        engine = sa.create_engine(case.store["url"])
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("CHECK TABLE checkpoints EXTENDED")).all()
        finally:
            engine.dispose()
        assert [row[3] for row in rows if row[2] == "status"] == ["OK"], rows
        return "CHECK TABLE OK"
    if case.directory is not None:
        return f"{check_files(case.directory)} temporary files left, ignored"
    return "lookups by key agree with the listing"


@dataclass
class Tally:
    """What the kills of one case did, for the assertions and the report."""

    kills: int = 0
    before_open: int = 0
    incarnations_with_acks: int = 0
    acks: int = 0
    batch_acks: int = 0
    checks: int = 0


@pytest.mark.parametrize(
    ("kind", "writers"),
    [
        pytest.param("sqlite", 1, id="sqlite-1"),
        pytest.param("sqlite", 4, id="sqlite-4"),
        pytest.param("postgresql", 2, id="postgresql-2", marks=pytest.mark.postgres),
        pytest.param("mysql", 2, id="mysql-2", marks=pytest.mark.mysql),
        pytest.param("file-nested", 2, id="file-nested-2"),
        pytest.param("file-go", 2, id="file-go-2"),
    ],
)
def test_sigkilled_writers_lose_no_acknowledged_checkpoint(
    kind: str,
    writers: int,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_property: Any,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    case = make_case(kind, writers, tmp_path, request)
    case.open(
        migrate=True
    ).close()  # the store exists (and is migrated) before the first writer starts
    logs = tmp_path / "acks"
    logs.mkdir()
    finished: list[tuple[int, Log]] = []  # (writer, log) of every killed incarnation
    next_number = dict.fromkeys(range(writers), 0)
    tally = Tally()
    started_at = time.monotonic()

    def merged(extra: list[tuple[int, Log]]) -> tuple[dict[str, int], dict[str, set[int]]]:
        acked: dict[str, int] = {}
        tried: dict[str, set[int]] = {}
        for _, log in [*finished, *extra]:
            for partition, counter in log.acked.items():
                acked[partition] = max(acked.get(partition, -1), counter)
            for partition, counters in log.tried.items():
                tried.setdefault(partition, set()).update(counters)
        return acked, tried

    def finish(incarnation: Incarnation, how: str) -> None:
        log = read_log(incarnation.ack_file)
        assert log.errors == [], log.errors
        assert how == "signal 9", f"writer {incarnation.writer} ended with {how} before the kill"
        tally.kills += 1
        tally.before_open += not log.opened
        tally.incarnations_with_acks += log.acks > 0
        tally.acks += log.acks
        tally.batch_acks += log.batch_acks
        finished.append((incarnation.writer, log))

    with writer_server(case.store) as server:
        checker = case.open()
        try:

            def start(writer: int) -> Incarnation:
                number = next_number[writer]
                next_number[writer] += 1
                ack = logs / f"w{writer}-{number}.ack"
                first = number * COUNTERS_PER_INCARNATION
                pid = server.start(writer, first, number % 2 == 1, partitions_of(writer), ack)
                deadline = time.monotonic() + rng.uniform(0, lifetime)
                return Incarnation(writer, number, ack, pid, deadline)

            began = time.monotonic()
            lifetime = LIFETIME[kind]
            running = [start(writer) for writer in range(writers)]
            wait_until_acknowledged(running[0].ack_file)
            lifetime = max(lifetime, 2.5 * (time.monotonic() - began))
            for incarnation in running:
                incarnation.deadline = time.monotonic() + rng.uniform(0, lifetime)
            while tally.kills < KILLS:
                victim = min(running, key=lambda inc: inc.deadline)
                time.sleep(max(0.0, victim.deadline - time.monotonic()))
                finish(victim, server.kill(victim.pid))
                running[running.index(victim)] = start(victim.writer)

                # The others still write: acknowledgements read before the store, tries after.
                acked, _ = merged([(inc.writer, read_log(inc.ack_file)) for inc in running])
                records = checker.list()
                _, tried = merged([(inc.writer, read_log(inc.ack_file)) for inc in running])
                context = f"seed {seed}, kill {tally.kills}"
                check_checkpoints(records, acked, tried, writers, context, go_layout=case.go_layout)
                if case.directory is not None:
                    check_files(case.directory)
                tally.checks += 1
        finally:
            # The last writers die with nobody else having the store open: a SQLite file is
            # left with its log to recover, as after a crash of the only process using it.
            checker.close()
        for incarnation in sorted(running, key=lambda inc: inc.deadline):  # at random moments too
            time.sleep(max(0.0, incarnation.deadline - time.monotonic()))
            finish(incarnation, server.kill(incarnation.pid))

    integrity = check_integrity(case)
    acked, tried = merged([])
    with case.open() as fresh:  # opens cleanly, and the schema is current
        records = fresh.list()
        context = f"seed {seed}, after all kills"
        check_checkpoints(records, acked, tried, writers, context, go_layout=case.go_layout)
        for record in records:  # lookups by key agree with the listing
            assert fresh.read(*record.key) == record.checkpoint
    assert {r.key.partition_id for r in records} == set(acked)  # every acked partition, no other
    if case.directory is not None:
        with FilePersister(case.directory, layout=case.store["layout"]) as again:
            assert again.list() == records

    elapsed = time.monotonic() - started_at
    summary = (
        f"{request.node.callspec.id}: {tally.kills} kills within {lifetime:.2f} s of a start "
        f"({tally.before_open} before the store "
        f"was open), {tally.acks} acks, {tally.incarnations_with_acks} incarnations acked "
        f"something, {tally.checks} checks while writing, {integrity}, {elapsed:.1f} s, "
        f"seed {seed}"
    )
    print(summary)
    record_property("sigkill", summary)
    assert tally.kills >= KILLS
    assert tally.acks > tally.kills  # more than one acknowledged write per kill on average
    assert tally.incarnations_with_acks >= tally.kills // 4  # kills landed amid writes too
    assert 0 < tally.batch_acks < tally.acks  # both write and write_many were acknowledged


def test_the_check_tells_a_lost_or_invented_checkpoint() -> None:
    """The checks above would fail if a write were lost or a value made up."""
    partition = partitions_of(0)[0]
    key = PartitionKey(*KEY_GROUP, partition)
    tried = {partition: {3, 8}}
    now = checkpoint_for(0, partition, 8)

    def records(checkpoint: Checkpoint) -> list[CheckpointRecord]:
        from datetime import datetime, timezone

        return [CheckpointRecord(key, checkpoint, datetime.now(timezone.utc))]

    check_checkpoints(records(now), {partition: 8}, tried, 1, "ok")
    with pytest.raises(AssertionError):  # older than acknowledged
        check_checkpoints(records(checkpoint_for(0, partition, 3)), {partition: 8}, tried, 1, "")
    with pytest.raises(AssertionError):  # never tried
        check_checkpoints(records(checkpoint_for(0, partition, 9)), {partition: 8}, tried, 1, "")
    with pytest.raises(AssertionError):  # the right counter, the wrong writer's offset
        check_checkpoints(records(Checkpoint("w1.p0.c8", 8, now.enqueue_time)), {}, tried, 1, "")
    with pytest.raises(AssertionError):  # lost
        check_checkpoints([], {partition: 8}, tried, 1, "")


# -- killed while it upgrades a new database ---------------------------------------------------

FIRST_OPEN_ROUNDS = 30
"""Rounds per database of :func:`test_a_writer_killed_while_it_creates_the_store`."""


@contextmanager
def new_stores(case: Case, tmp_path: Path) -> Iterator[Callable[[int], dict[str, Any]]]:
    """Hand out a new, empty store of ``case``'s kind for each round; drop them afterwards."""
    made: list[str] = []
    admin = None if case.kind == "sqlite" else sa.create_engine(case.store["url"])

    def new(round_number: int) -> dict[str, Any]:
        if case.kind == "sqlite":
            return {"url": f"sqlite:///{tmp_path / f'new-{round_number}.db'}"}
        if case.kind == "postgresql":
            made.append(f"{case.store['schema']}_{round_number}")
            return {"url": case.store["url"], "schema": made[-1]}
        made.append(f"{sa.make_url(case.store['url']).database}_{round_number}")
        assert admin is not None
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{made[-1]}` CHARACTER SET utf8mb4"))
        url = sa.make_url(case.store["url"]).set(database=made[-1])
        return {"url": url.render_as_string(hide_password=False)}

    try:
        yield new
    finally:
        if admin is not None:
            with admin.begin() as conn:
                for name in made:
                    if case.kind == "postgresql":
                        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                    else:
                        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
            admin.dispose()


def what_a_kill_left(store: dict[str, Any]) -> str:
    """The revision recorded and the tables there, before anyone opens the store again."""
    engine = sa.create_engine(store["url"])
    try:
        revision = migrations.current(engine, schema=store.get("schema"))
        tables = sa.inspect(engine).get_table_names(schema=store.get("schema"))
    finally:
        engine.dispose()
    return f"revision {revision}, tables {', '.join(sorted(tables)) or 'none'}"


def wait_until_acknowledged(ack: Path) -> None:
    deadline = time.monotonic() + 60
    while read_log(ack).acks == 0:
        assert time.monotonic() < deadline, "the writer acknowledged nothing in 60 s"
        time.sleep(0.005)


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_writer_killed_while_it_creates_the_store_leaves_one_that_opens(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, record_property: Any
) -> None:
    """The first writer of a new database creates the tables as it opens: killed at any moment
    of that, the next persister opens it (finishing the upgrade) and finds what was acked."""
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    case = make_case(kind, 1, tmp_path, request)
    states: dict[str, int] = {}
    started_at = time.monotonic()
    lifetime = 0.0  # set by the first round, which runs until the writer's first ack
    with new_stores(case, tmp_path) as new_store, writer_server(case.store) as server:
        for round_number in range(FIRST_OPEN_ROUNDS):
            store = new_store(round_number)
            ack = tmp_path / f"open-{round_number}.ack"
            began = time.monotonic()
            pid = server.start(0, 0, round_number % 2 == 1, partitions_of(0), ack, store)
            if round_number == 0:
                wait_until_acknowledged(ack)
                lifetime = 1.5 * (time.monotonic() - began)
            else:
                time.sleep(rng.uniform(0, lifetime))
            assert server.kill(pid) == "signal 9"
            log = read_log(ack)
            assert log.errors == []
            state = what_a_kill_left(store)
            states[state] = states.get(state, 0) + 1
            with SQLPersister(store["url"], schema=store.get("schema")) as fresh:
                context = f"round {round_number}, {state}"
                check_checkpoints(fresh.list(), log.acked, log.tried, 1, context)
                fresh.write(*KEY_GROUP, "0", Checkpoint("x", 1))  # and it takes writes
            assert migrations.current(store["url"], schema=store.get("schema")) == (
                migrations.HEAD_REVISION
            )
    summary = (
        f"{kind}: {FIRST_OPEN_ROUNDS} writers killed within {lifetime:.2f} s of starting on a "
        f"new database, which they left as: "
        + "; ".join(f"{n} x {state}" for state, n in sorted(states.items()))
        + f"; {time.monotonic() - started_at:.1f} s"
    )
    print(summary)
    record_property("first_open", summary)
    assert sum(states.values()) == FIRST_OPEN_ROUNDS


LAST_ENQUEUED = (
    "ADD COLUMN last_enqueued_sequence_number BIGINT NULL, "
    "ADD COLUMN last_enqueued_offset LONGTEXT CHARACTER SET utf8mb4 NULL, "
    "ADD COLUMN last_enqueued_time DATETIME(6) NULL"
)


def _leave_mysql_as_a_kill_would(url: str, moment: str) -> None:
    """Put a MySQL database in the state a process killed at ``moment`` of its first upgrade
    leaves: MySQL can't roll DDL back, so what ran stays, while the revision recorded is the
    one before (it is written, in the migration's transaction, after the DDL)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if moment == "after 0001's table":
                migrations.upgrade(conn.engine, "0001")
                conn.execute(sa.text(f"DELETE FROM {migrations.VERSION_TABLE}"))
            elif moment == "after 0003's first statement":
                migrations.upgrade(conn.engine, "0002")
                conn.execute(sa.text(f"ALTER TABLE checkpoints {LAST_ENQUEUED}"))
            else:
                assert moment == "after 0003's last statement"
                migrations.upgrade(conn.engine, "0003")
                conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0002'"))
    finally:
        engine.dispose()


@pytest.mark.mysql
@pytest.mark.parametrize(
    "moment",
    ["after 0001's table", "after 0003's first statement", "after 0003's last statement"],
)
def test_a_mysql_upgrade_killed_between_its_statements_is_finished_by_the_next_open(
    mysql_database: str, moment: str
) -> None:
    _leave_mysql_as_a_kill_would(mysql_database, moment)
    assert migrations.current(mysql_database) != migrations.HEAD_REVISION
    with SQLPersister(mysql_database) as store:
        store.write(*KEY_GROUP, "0", Checkpoint("1", 1))
        assert store.read(*KEY_GROUP, "0") == Checkpoint("1", 1)
    assert migrations.current(mysql_database) == migrations.HEAD_REVISION
    engine = sa.create_engine(mysql_database)
    try:
        assert_schema_matches_code(engine, None)
    finally:
        engine.dispose()


@pytest.mark.mysql
def test_a_table_like_ours_that_holds_rows_is_still_not_taken_for_an_interrupted_upgrade(
    mysql_database: str,
) -> None:
    _leave_mysql_as_a_kill_would(mysql_database, "after 0001's table")
    engine = sa.create_engine(mysql_database)
    try:
        with engine.begin() as conn:  # someone wrote, so the table is not a killed upgrade's
            conn.execute(
                sa.text(
                    "INSERT INTO checkpoints (key_hash, namespace, name, consumer_group, "
                    "partition_id, stream_offset, sequence_number) VALUES (UNHEX(SHA2("
                    "CONCAT_WS(X'00', 'a', 'b', 'c', 'd'), 256)), 'a', 'b', 'c', 'd', '1', 1)"
                )
            )
        with pytest.raises(SchemaError, match="not created by streamcheckpoint"):
            SQLPersister(mysql_database)
        assert migrations.current(engine) is None
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM checkpoints")).scalar() == 1
    finally:
        engine.dispose()
