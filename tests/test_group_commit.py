"""Group commit of SQLite writes through the shared mailbox (``sql/writequeue.py``).

A single ``write()`` that finds ``<db>-lock`` taken posts itself in ``<db>-mailbox`` and sleeps;
the next queue holder (the leader) runs the posted writes of the same statement and durability
after its own, in one transaction, and reports each one's row count back. These tests check, on
real SQLite files and real processes:

* it happens (several processes: ``shared_writes`` > 0) and loses nothing;
* a leader reports row counts (1, or 0 for a refused monotonic write, which the waiting
  persister turns into CheckpointRegressionError);
* a posted write whose writer died is never run, and its slot is freed;
* a leader that died after taking writes (committed or not) leaves them to their writers;
* a failed batch is rolled back and each write retried by its own writer (RETRY);
* writes of another durability (``PRAGMA synchronous``) or shape are never taken;
* a mailbox file that isn't ours, a full mailbox and a write too large for a slot all fall
  back to taking turns, and still write;
* SIGKILLing writer processes mid-run never loses an acknowledged write;
* ``abandon()`` takes a posted (or taken) write back for good;
* the review's findings (section 12): a write interrupted right after posting, and a leader
  interrupted while taking, leave nothing behind (no posted write, no held queue); a leader
  runs a taken write only if, once it holds SQLite's write lock, its writer is alive and still
  waits for it, and never takes a write nobody looked at for a second; a fork doesn't keep a
  dead parent's write alive; a corrupt counter, a mailbox others could write (wider
  permissions, a symlink, another owner) and a thread interrupted inside another thread's
  batch (KeyboardInterrupt, not ValueError) are all handled.

Handles on the mailbox opened with ``Mailbox.open`` are separate open file descriptions, so to
the persisters they are other live writers. Holding ``<db>-lock`` from the test (an ``flock`` on
our own descriptor) makes a persister's write wait, and post.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import pytest

from streamcheckpoint import Checkpoint, CheckpointRegressionError, PartitionKey, SQLPersister
from streamcheckpoint.sql import writequeue
from streamcheckpoint.sql.writequeue import DONE, FREE, POSTED, RETRY, TAKEN, Mailbox

if sys.platform != "win32":
    import fcntl

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or writequeue._futex() is None,
    reason="group commit needs Linux futexes and OFD locks (x86-64 or ARM64)",
)

NAMESPACE, HUB, GROUP = "ns.example", "hub", "cg"
DEADLINE = 2.0  # seconds a waiting write may take to return once it can
OTHER_TAG = b"another-statemnt"  # 16 bytes, like a real tag; no persister uses it


# -- helpers ------------------------------------------------------------------------------


def key(partition: str) -> PartitionKey:
    return PartitionKey(NAMESPACE, HUB, GROUP, partition)


def write(persister: SQLPersister, partition: str, checkpoint: Checkpoint) -> None:
    persister.write(NAMESPACE, HUB, GROUP, partition, checkpoint)


def stored(database: Path, partition: str) -> tuple[str, int] | None:
    """``(offset, sequence number)`` stored for ``partition``, read with plain sqlite3."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        row = connection.execute(
            "SELECT stream_offset, sequence_number FROM checkpoints WHERE namespace = ? AND "
            "name = ? AND consumer_group = ? AND partition_id = ?",
            tuple(key(partition)),
        ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def tag_of(persister: SQLPersister) -> bytes:
    """The group tag of ``persister``'s single writes (statement and durability)."""
    return persister._writer._group_tag(persister._upsert)


def parameters_of(persister: SQLPersister, partition: str, checkpoint: Checkpoint) -> list[Any]:
    """The driver parameters ``persister`` would post for this write."""
    values = persister._upsert.parameters(persister._write_values(key(partition), checkpoint))
    assert isinstance(values, list)
    return values


def shared_writes(persister: SQLPersister) -> int:
    queue = persister._writer._queue
    assert queue is not None
    return queue.shared_writes


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.002)


def in_thread(work: Callable[[], object]) -> Future[None]:
    """Run ``work`` in a daemon thread; the future holds what it raised."""
    future: Future[None] = Future()

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test through the future
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, daemon=True).start()
    return future


def flock_waiters(lock_file: Path) -> int:
    """How many ``flock`` requests are blocked on ``lock_file`` (from /proc/locks)."""
    inode = f":{os.stat(lock_file).st_ino} "
    with open("/proc/locks") as locks:
        return sum(1 for line in locks if "-> FLOCK" in line and inode in line)


def hold_queue_as(persister: SQLPersister) -> None:
    """Take ``persister``'s queue lock through its own descriptor: other writers now wait (and
    post), and its next write finds the queue already its own, so it leads."""
    queue = persister._writer._queue
    assert queue is not None
    assert queue._fd is not None, "the persister must have written once"
    fcntl.flock(queue._fd, fcntl.LOCK_EX)


def open_mailbox(mailbox_path: str) -> Mailbox | None:
    """Another handle on a database's mailbox, opened as its persisters open it."""
    database = os.stat(mailbox_path.removesuffix("-mailbox"))
    return Mailbox.open(mailbox_path, database.st_mode & 0o666, database.st_uid)


def count(states: list[int], state: int) -> int:
    return sum(1 for s in states if s == state)


@dataclass
class Store:
    """One SQLite file under test: persisters and mailbox handles on it, closed at the end."""

    database: Path
    persisters: list[SQLPersister] = field(default_factory=list)
    handles: list[Mailbox] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def lock_file(self) -> Path:
        return Path(f"{self.database}-lock")

    @property
    def mailbox_file(self) -> Path:
        return Path(f"{self.database}-mailbox")

    def open(self, query: str = "", **options: Any) -> SQLPersister:
        persister = SQLPersister(self.url + query, **options)
        self.persisters.append(persister)
        return persister

    def handle(self) -> Mailbox:
        """Another writer's view of the mailbox (a separate open file description)."""
        mailbox = open_mailbox(str(self.mailbox_file))
        assert mailbox is not None, "the mailbox should be usable"
        self.handles.append(mailbox)
        return mailbox

    def close_handle(self, mailbox: Mailbox) -> None:
        """Close ``mailbox`` now: to the others its writer is gone."""
        self.handles.remove(mailbox)
        mailbox.close()

    @contextlib.contextmanager
    def holding_queue(self) -> Iterator[Callable[[], None]]:
        """Hold ``<db>-lock`` as another writer would; yields a function releasing it early
        (closing the descriptor, as a process dying would)."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = [fd]

        def release() -> None:
            while held:
                os.close(held.pop())

        try:
            yield release
        finally:
            release()

    def close_all(self) -> None:
        for mailbox in self.handles:
            mailbox.close()
        for persister in self.persisters:
            persister.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite file with its schema and a warmed-up mailbox."""
    result = Store(tmp_path / "checkpoints.db")
    with SQLPersister(result.url) as first:  # schema, lock file and mailbox exist
        write(first, "warm-up", Checkpoint("0", 0))
    try:
        yield result
    finally:
        result.close_all()


# -- 1. several processes ------------------------------------------------------------------

WORKERS = 4
WRITES = 300
PARTITIONS_EACH = 3

_start: threading.Barrier | None = None  # in each worker process: wait here for the others


def _set_start(barrier: threading.Barrier) -> None:
    global _start
    _start = barrier


def write_own_partitions(url: str, worker: int) -> tuple[int, list[str]]:
    """One process's share: ``WRITES`` increasing writes over its own partitions; returns its
    persister's ``shared_writes`` and every error."""
    errors: list[str] = []
    with SQLPersister(url) as persister:
        if _start is not None:
            _start.wait()
        for index in range(WRITES):
            partition = f"{worker}-{index % PARTITIONS_EACH}"
            try:
                write(persister, partition, Checkpoint(str(index), index))
            except Exception as exc:  # reported by the test
                errors.append(f"{type(exc).__name__}: {exc}")
        return shared_writes(persister), errors


def test_processes_commit_each_others_writes(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    with context.Pool(WORKERS, initializer=_set_start, initargs=(start,)) as pool:
        results = pool.starmap(write_own_partitions, [(store.url, w) for w in range(WORKERS)])
    assert [error for _, errors in results for error in errors] == []
    for worker in range(WORKERS):
        for offset in range(PARTITIONS_EACH):
            last = max(i for i in range(WRITES) if i % PARTITIONS_EACH == offset)
            assert stored(store.database, f"{worker}-{offset}") == (str(last), last)
    assert sum(shared for shared, _ in results) > 0, "no write was ever committed by a leader"


# -- 2. a leader runs posted writes and reports their row counts ---------------------------


def test_leader_runs_a_posted_write_and_reports_its_row_count(store: Store) -> None:
    leader = store.open()
    poster = store.handle()
    ticket = poster.post(tag_of(leader), parameters_of(leader, "posted", Checkpoint("7", 7)))
    assert ticket is not None
    write(leader, "own", Checkpoint("3", 3))
    assert poster.collect(ticket) == (DONE, 1)
    assert stored(store.database, "own") == ("3", 3)
    assert stored(store.database, "posted") == ("7", 7)
    assert shared_writes(leader) == 1
    assert count(poster.states(), FREE) == len(poster.states())


def test_leader_reports_a_refused_monotonic_write_as_zero_rows(store: Store) -> None:
    leader = store.open(monotonic=True)
    write(leader, "ahead", Checkpoint("10", 10))
    poster = store.handle()
    behind = parameters_of(leader, "ahead", Checkpoint("5", 5))
    ticket = poster.post(tag_of(leader), behind)
    assert ticket is not None
    write(leader, "own", Checkpoint("1", 1))
    assert poster.collect(ticket) == (DONE, 0)
    assert stored(store.database, "ahead") == ("10", 10)
    assert stored(store.database, "own") == ("1", 1)


def test_waiting_write_refused_by_a_leader_raises_regression(store: Store) -> None:
    leader = store.open(monotonic=True)
    waiter = store.open(monotonic=True)
    write(leader, "ahead", Checkpoint("10", 10))  # opens the leader's lock file too
    hold_queue_as(leader)
    handle = store.handle()
    waiting = in_thread(lambda: write(waiter, "ahead", Checkpoint("5", 5)))
    wait_until(lambda: count(handle.states(), POSTED) == 1, "the waiting write is posted")
    write(leader, "own", Checkpoint("1", 1))
    with pytest.raises(CheckpointRegressionError):
        waiting.result(timeout=DEADLINE)
    assert shared_writes(leader) == 1, "the leader should have run the waiting write"
    assert shared_writes(waiter) == 0
    assert stored(store.database, "ahead") == ("10", 10)
    assert stored(store.database, "own") == ("1", 1)


def test_waiting_write_run_by_a_leader_returns(store: Store) -> None:
    leader = store.open()
    waiter = store.open()
    write(leader, "own", Checkpoint("0", 0))
    hold_queue_as(leader)
    handle = store.handle()
    waiting = in_thread(lambda: write(waiter, "waiting", Checkpoint("5", 5)))
    wait_until(lambda: count(handle.states(), POSTED) == 1, "the waiting write is posted")
    assert stored(store.database, "waiting") is None
    write(leader, "own", Checkpoint("1", 1))
    waiting.result(timeout=DEADLINE)
    assert shared_writes(leader) == 1
    assert stored(store.database, "waiting") == ("5", 5)


# -- 3. a posted write whose writer died ---------------------------------------------------


def post_and_die(mailbox_path: str, tag: bytes, parameters: list[Any]) -> None:
    """In a child process: post a write, then exit without taking it back."""
    mailbox = open_mailbox(mailbox_path)
    ticket = None if mailbox is None else mailbox.post(tag, parameters)
    os._exit(0 if ticket is not None else 3)


def test_write_of_a_dead_writer_is_never_run(store: Store) -> None:
    leader = store.open()
    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=post_and_die,
        args=(
            str(store.mailbox_file),
            tag_of(leader),
            parameters_of(leader, "orphan", Checkpoint("9", 9)),
        ),
    )
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0, "the child could not post its write"
    observer = store.handle()
    assert count(observer.states(), POSTED) == 1, "the dead writer's write should be posted"
    write(leader, "own", Checkpoint("1", 1))
    assert stored(store.database, "orphan") is None
    assert stored(store.database, "own") == ("1", 1)
    assert count(observer.states(), FREE) == len(observer.states())
    assert shared_writes(leader) == 0


# -- 4. a leader that died -----------------------------------------------------------------


def take_posted_write(
    store: Store, waiter: SQLPersister, partition: str, checkpoint: Checkpoint
) -> tuple[Future[None], writequeue.Taken]:
    """Play a leader while the caller holds the queue: let ``waiter`` post its write, take it
    and close our mailbox handle without finishing. Returns the waiting write and what was
    taken; the caller lets the leader die (releases the queue)."""
    handle = store.handle()
    waiting = in_thread(lambda: write(waiter, partition, checkpoint))
    wait_until(lambda: count(handle.states(), POSTED) == 1, "the waiting write is posted")
    expected = parameters_of(waiter, partition, checkpoint)
    taken = handle.take(tag_of(waiter), len(expected))
    assert [item.parameters for item in taken] == [expected]
    assert count(handle.states(), TAKEN) == 1
    store.close_handle(handle)
    return waiting, taken[0]


def test_write_taken_by_a_leader_that_died_is_run_by_its_writer(store: Store) -> None:
    waiter = store.open()
    with store.holding_queue() as release:
        waiting, _ = take_posted_write(store, waiter, "K", Checkpoint("4", 4))
        assert not waiting.done(), "a taken write must wait for its leader"
        assert stored(store.database, "K") is None
        release()  # the leader dies without finishing
        waiting.result(timeout=DEADLINE)
    assert stored(store.database, "K") == ("4", 4)
    assert count(store.handle().states(), FREE) == writequeue._SLOTS


@pytest.mark.parametrize("monotonic", [False, True], ids=["overwrite", "monotonic"])
def test_write_committed_by_a_leader_that_died_is_run_again_harmlessly(
    store: Store, monotonic: bool
) -> None:
    waiter = store.open(monotonic=monotonic)
    with store.holding_queue() as release:
        waiting, taken = take_posted_write(store, waiter, "K", Checkpoint("4", 4))
        with contextlib.closing(sqlite3.connect(store.database)) as connection:
            connection.execute(waiter._upsert.sql, taken.parameters)  # the leader's commit
            connection.commit()
        assert stored(store.database, "K") == ("4", 4)
        release()  # ... then it dies before marking the write done
        waiting.result(timeout=DEADLINE)  # no CheckpointRegressionError either
    assert stored(store.database, "K") == ("4", 4)
    assert count(store.handle().states(), FREE) == writequeue._SLOTS


# -- 5. a failed batch ---------------------------------------------------------------------


def test_failed_batch_is_retried_by_each_writer(store: Store) -> None:
    leader = store.open()
    poster = store.handle()
    bad = parameters_of(leader, "bad", Checkpoint("1", 1))
    bad[4] = None  # stream_offset is NOT NULL
    ticket = poster.post(tag_of(leader), bad)
    assert ticket is not None
    write(leader, "own", Checkpoint("2", 2))
    assert stored(store.database, "own") == ("2", 2)
    assert stored(store.database, "bad") is None
    assert poster.collect(ticket) == (RETRY, 0)
    assert shared_writes(leader) == 0
    assert count(poster.states(), FREE) == writequeue._SLOTS


# -- 6. other durability, other shapes -----------------------------------------------------


def test_writes_of_another_durability_are_never_taken(store: Store) -> None:
    full = store.open()
    normal = store.open("?synchronous=NORMAL")
    assert tag_of(full) != tag_of(normal)
    poster = store.handle()
    ticket = poster.post(tag_of(normal), parameters_of(normal, "normal", Checkpoint("1", 1)))
    assert ticket is not None
    write(full, "full", Checkpoint("2", 2))
    assert count(poster.states(), POSTED) == 1
    assert stored(store.database, "normal") is None
    assert shared_writes(full) == 0
    # A leader of the same durability does take it.
    write(normal, "normal-own", Checkpoint("3", 3))
    assert poster.collect(ticket) == (DONE, 1)
    assert stored(store.database, "normal") == ("1", 1)


def test_monotonic_and_overwriting_writes_are_never_mixed(store: Store) -> None:
    overwriting = store.open()
    monotonic = store.open(monotonic=True)
    assert tag_of(overwriting) != tag_of(monotonic)
    poster = store.handle()
    params = parameters_of(monotonic, "monotonic", Checkpoint("1", 1))
    assert poster.post(tag_of(monotonic), params) is not None
    write(overwriting, "own", Checkpoint("2", 2))
    assert count(poster.states(), POSTED) == 1
    assert stored(store.database, "monotonic") is None


def test_posted_write_of_the_wrong_shape_is_left_to_its_writer(store: Store) -> None:
    leader = store.open()
    poster = store.handle()
    params = parameters_of(leader, "short", Checkpoint("1", 1))
    assert poster.post(tag_of(leader), params[:-1]) is not None  # one value missing
    write(leader, "own", Checkpoint("2", 2))
    assert count(poster.states(), POSTED) == 1
    assert stored(store.database, "short") is None


# -- 7. a mailbox file that isn't ours -----------------------------------------------------


def foreign_mailbox(kind: str) -> bytes:
    """Contents of a ``<db>-mailbox`` that isn't a mailbox we can use: each differs from a
    usable one in one way only."""
    size = writequeue._FILE_SIZE
    layout = struct.pack("=II", writequeue._SLOTS, writequeue._SLOT_SIZE)
    magic = writequeue._MAGIC
    if kind == "short":
        return b"not a mailbox, but somebody's file\n"
    if kind == "long":
        size += 4096
    elif kind == "wrong-magic":
        magic = b"NOTAMBX1"
    elif kind == "wrong-layout":
        layout = struct.pack("=II", writequeue._SLOTS * 2, writequeue._SLOT_SIZE // 2)
    header = magic + bytes(12) + layout
    return header + bytes(size - len(header))


@pytest.mark.parametrize("kind", ["short", "long", "wrong-magic", "wrong-layout"])
def test_mailbox_file_that_is_not_ours_is_left_alone(tmp_path: Path, kind: str) -> None:
    store = Store(tmp_path / "checkpoints.db")
    content = foreign_mailbox(kind)
    store.mailbox_file.write_bytes(content)
    try:
        persister = store.open()
        write(persister, "first", Checkpoint("1", 1))
        assert persister._writer._queue is not None
        assert persister._writer._queue._mailbox is None
        assert open_mailbox(str(store.mailbox_file)) is None
        with store.holding_queue() as release:  # under contention: it takes turns
            waiting = in_thread(lambda: write(persister, "second", Checkpoint("2", 2)))
            wait_until(lambda: flock_waiters(store.lock_file) == 1, "the write waits in turn")
            release()
            waiting.result(timeout=DEADLINE)
        assert stored(store.database, "first") == ("1", 1)
        assert stored(store.database, "second") == ("2", 2)
        assert store.mailbox_file.read_bytes() == content
    finally:
        store.close_all()


# -- 8. no room in the mailbox -------------------------------------------------------------


def write_under_contention(store: Store, persister: SQLPersister, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to partition "K" while the queue is held; it must take its turn
    (wait in ``flock``) and be written once the queue is released."""
    with store.holding_queue() as release:
        waiting = in_thread(lambda: write(persister, "K", checkpoint))
        wait_until(lambda: flock_waiters(store.lock_file) == 1, "the write waits in turn")
        assert stored(store.database, "K") is None
        release()
        waiting.result(timeout=DEADLINE)
    assert stored(store.database, "K") == (checkpoint.offset, checkpoint.sequence_number)


def test_full_mailbox_falls_back_to_taking_turns(store: Store) -> None:
    persister = store.open()
    filler = parameters_of(persister, "filler", Checkpoint("0", 0))
    for _ in range(writequeue._SLOTS):
        assert store.handle().post(OTHER_TAG, filler) is not None
    observer = store.handles[0]
    assert count(observer.states(), POSTED) == writequeue._SLOTS
    write_under_contention(store, persister, Checkpoint("1", 1))
    assert count(observer.states(), POSTED) == writequeue._SLOTS
    assert stored(store.database, "filler") is None


def test_write_too_large_for_a_slot_falls_back_to_taking_turns(store: Store) -> None:
    persister = store.open()
    observer = store.handle()
    write_under_contention(store, persister, Checkpoint("x" * 5000, 1))
    assert count(observer.states(), FREE) == writequeue._SLOTS


# -- 9. crash safety -----------------------------------------------------------------------

CRASH_WORKERS = 3
GENERATION = 10**9  # a restarted worker's sequence numbers start above its predecessor's
_ACK = struct.Struct("=qq")  # (partition, sequence number); partition -1: done, shared_writes


def acknowledge_writes(
    url: str, worker: int, generation: int, stop: Any, channel: Connection
) -> None:
    """Write increasing sequence numbers to the worker's two partitions until ``stop`` is set,
    reporting each write after it returned."""
    with SQLPersister(url) as persister:
        index = 0
        while not stop.is_set():
            partition = 2 * worker + index % 2
            number = generation * GENERATION + index
            write(persister, str(partition), Checkpoint(str(number), number))
            channel.send_bytes(_ACK.pack(partition, number))  # one atomic pipe write
            index += 1
        channel.send_bytes(_ACK.pack(-1, shared_writes(persister)))


@dataclass
class CrashRun:
    """The parent's view of the crash test's workers."""

    url: str
    context: Any
    stop: Any
    processes: dict[int, Any] = field(default_factory=dict)
    channels: dict[Connection, tuple[int, int]] = field(default_factory=dict)  # worker, gen
    generations: dict[int, int] = field(default_factory=dict)
    acks: dict[int, int] = field(default_factory=dict)  # this generation's, per worker
    acknowledged: dict[int, int] = field(default_factory=dict)  # partition: last acked
    shared: int = 0

    def start(self, worker: int, generation: int) -> None:
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=acknowledge_writes, args=(self.url, worker, generation, self.stop, sender)
        )
        process.start()
        sender.close()
        self.processes[worker] = process
        self.channels[receiver] = (worker, generation)
        self.generations[worker] = generation
        self.acks[worker] = 0

    def receive(self, timeout: float) -> None:
        """Record what the workers reported within ``timeout`` seconds."""
        for ready in wait(list(self.channels), timeout):
            assert isinstance(ready, Connection)
            try:
                partition, number = _ACK.unpack(ready.recv_bytes())
            except EOFError:
                del self.channels[ready]
                ready.close()
                continue
            if partition == -1:
                self.shared += number
                continue
            # A killed worker's last acknowledgements may arrive after its successor's.
            self.acknowledged[partition] = max(number, self.acknowledged.get(partition, -1))
            worker, generation = self.channels[ready]
            if generation == self.generations[worker]:
                self.acks[worker] += 1

    def wait_for_acks(self, worker: int, acks: int, deadline: float) -> None:
        while self.acks[worker] < acks:
            assert time.monotonic() < deadline, f"worker {worker} stopped acknowledging"
            self.receive(0.5)


@pytest.mark.slow
def test_killed_writers_never_lose_an_acknowledged_write(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    run = CrashRun(store.url, context, context.Event())
    deadline = time.monotonic() + 120
    rng = random.Random()
    for worker in range(CRASH_WORKERS):
        run.start(worker, generation=0)
    try:
        for _ in range(2):
            victim = rng.randrange(CRASH_WORKERS)
            run.wait_for_acks(victim, rng.randrange(20, 200), deadline)
            os.kill(run.processes[victim].pid, signal.SIGKILL)
            run.processes[victim].join(timeout=30)
            assert run.processes[victim].exitcode == -signal.SIGKILL
            run.start(victim, run.generations[victim] + 1)
        for worker in range(CRASH_WORKERS):
            run.wait_for_acks(worker, 100, deadline)
        run.stop.set()
        while run.channels:
            assert time.monotonic() < deadline, "workers did not stop"
            run.receive(0.5)
    finally:
        run.stop.set()
        for process in run.processes.values():
            process.join(timeout=30)
            if process.exitcode is None:
                process.kill()
    assert [p.exitcode for p in run.processes.values()] == [0] * CRASH_WORKERS
    for partition, number in run.acknowledged.items():
        found = stored(store.database, str(partition))
        assert found is not None, f"partition {partition} lost"
        assert found[1] >= number, f"partition {partition} went back"
    assert sorted(run.acknowledged) == list(range(2 * CRASH_WORKERS))
    with contextlib.closing(sqlite3.connect(store.database)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert run.shared > 0, "no write was committed by a leader during the run"


# -- 10. abandon ---------------------------------------------------------------------------


def test_abandoned_write_is_never_run(store: Store) -> None:
    leader = store.open()
    poster = store.handle()
    ticket = poster.post(tag_of(leader), parameters_of(leader, "abandoned", Checkpoint("1", 1)))
    assert ticket is not None
    poster.abandon(ticket + 1)  # not ours: nothing happens
    assert count(poster.states(), POSTED) == 1
    poster.abandon(ticket)
    assert count(poster.states(), FREE) == writequeue._SLOTS
    write(leader, "own", Checkpoint("2", 2))
    assert stored(store.database, "abandoned") is None
    assert shared_writes(leader) == 0


def test_write_abandoned_after_it_was_taken_is_not_marked_done(store: Store) -> None:
    leader = store.open()
    poster = store.handle()
    params = parameters_of(leader, "abandoned", Checkpoint("1", 1))
    ticket = poster.post(tag_of(leader), params)
    assert ticket is not None
    other_leader = store.handle()
    taken = other_leader.take(tag_of(leader), len(params))
    assert len(taken) == 1
    poster.abandon(ticket)
    assert count(poster.states(), FREE) == writequeue._SLOTS
    other_leader.finish(taken, [1])
    assert count(poster.states(), FREE) == writequeue._SLOTS
    assert poster.collect(ticket) is None  # nothing to collect: it was taken back


# -- 11. threads of one process --------------------------------------------------------------

THREADS = 8


def waiting_threads(persister: SQLPersister) -> int:
    """How many single writes of ``persister``'s threads wait for the busy thread."""
    queue = persister._writer._queue
    assert queue is not None
    with queue._turn:
        return len(queue._waiting)


def threads_behind_one(
    store: Store,
    persister: SQLPersister,
    writes: list[tuple[str, Checkpoint]],
    first_waits: Callable[[], bool] | None = None,
) -> list[Future[None]]:
    """Start a thread per write while another process holds the queue: the first thread's
    write waits for the queue (``first_waits`` says when it does; by default, once it is
    posted), the others wait for that thread. Then release."""
    if first_waits is None:
        handle = store.handle()

        def posted() -> bool:
            return count(handle.states(), POSTED) == 1

        first_waits = posted

    def start(partition: str, checkpoint: Checkpoint) -> Future[None]:
        return in_thread(lambda: write(persister, partition, checkpoint))

    with store.holding_queue():
        futures = [start(*writes[0])]
        wait_until(first_waits, "the first write waits for the queue")
        futures += [start(*item) for item in writes[1:]]
        wait_until(lambda: waiting_threads(persister) == len(writes) - 1, "the other threads wait")
    for future in futures:
        future.exception(timeout=DEADLINE)
    return futures


def test_threads_commit_each_others_writes(store: Store) -> None:
    persister = store.open()
    writes = [(f"t{k}", Checkpoint(str(k), k)) for k in range(THREADS)]
    futures = threads_behind_one(store, persister, writes)
    assert [future.exception() for future in futures] == [None] * THREADS
    assert shared_writes(persister) == THREADS - 1  # one transaction for all eight
    for partition, checkpoint in writes:
        assert stored(store.database, partition) == (checkpoint.offset, checkpoint.sequence_number)


def test_threads_whose_batch_failed_each_write_by_themselves(store: Store) -> None:
    persister = store.open()
    writer = persister._writer
    original = writer._together
    batches: list[int] = []

    def failing_once(statement: Any, ours: list[Any], collect: Any) -> Any:
        if batches:
            return original(statement, ours, collect)

        def fail(connection: Any, cursor: Any) -> list[int]:
            batches.append(1 + len(collect()))
            raise sqlite3.OperationalError("injected: the batch fails")

        return fail

    writer._together = failing_once  # type: ignore[method-assign,assignment]
    writes = [(f"t{k}", Checkpoint(str(k), k)) for k in range(THREADS)]
    futures = threads_behind_one(store, persister, writes)
    assert [future.exception() for future in futures] == [None] * THREADS
    assert batches == [THREADS]  # after the failed batch every write ran by itself
    assert shared_writes(persister) == 0
    for partition, checkpoint in writes:
        assert stored(store.database, partition) == (checkpoint.offset, checkpoint.sequence_number)


def test_thread_whose_monotonic_write_was_refused_in_a_batch_raises(store: Store) -> None:
    persister = store.open(monotonic=True)
    write(persister, "ahead", Checkpoint("100", 100))
    writes = [
        ("t0", Checkpoint("5", 5)),
        ("ahead", Checkpoint("50", 50)),
        ("t2", Checkpoint("7", 7)),
    ]
    futures = threads_behind_one(store, persister, writes)
    assert future_errors(futures) == [None, CheckpointRegressionError, None]
    assert shared_writes(persister) == 2
    assert stored(store.database, "ahead") == ("100", 100)
    assert stored(store.database, "t0") == ("5", 5)
    assert stored(store.database, "t2") == ("7", 7)


def future_errors(futures: list[Future[None]]) -> list[type[BaseException] | None]:
    errors = [future.exception() for future in futures]
    return [None if error is None else type(error) for error in errors]


# -- 12. review findings ---------------------------------------------------------------------
# One test per fix of the group-commit review (171fcab); each fails on the code before it
# (80cb591), except the corrupt counter under a lone write, kept as the uncontended half of
# that check. The reviewer's reproductions used real signals and sleeps; here the interruption
# is injected at the exact point (a wrapped method raising KeyboardInterrupt) and every wait
# polls for the state it needs.


def mailbox_of(persister: SQLPersister) -> Mailbox:
    """``persister``'s own mailbox handle (it must have written once, to open it)."""
    queue = persister._writer._queue
    assert queue is not None
    assert queue._mailbox is not None, "the persister should be using the mailbox"
    return queue._mailbox


def all_free(store: Store) -> bool:
    return count(store.handle().states(), FREE) == writequeue._SLOTS


def queue_is_free(lock_file: Path) -> bool:
    """Whether ``<db>-lock`` can be taken at once, through a descriptor of our own."""
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the lock, if we got it
    return True


def test_write_interrupted_right_after_posting_is_abandoned(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted = store.open()
    write(interrupted, "warm", Checkpoint("0", 0))
    mailbox = mailbox_of(interrupted)
    post = mailbox.post

    def post_then_interrupt(tag: bytes, parameters: list[Any]) -> int | None:
        post(tag, parameters)
        raise KeyboardInterrupt  # Ctrl-C arrives as post returns

    monkeypatch.setattr(mailbox, "post", post_then_interrupt)
    with store.holding_queue():
        waiting = in_thread(lambda: write(interrupted, "K", Checkpoint("100", 100)))
        assert isinstance(waiting.exception(timeout=DEADLINE), KeyboardInterrupt)
        assert all_free(store), "the interrupted write should have been taken back"
    leader = store.open()
    write(leader, "own", Checkpoint("1", 1))
    assert stored(store.database, "K") is None
    assert stored(store.database, "own") == ("1", 1)
    assert shared_writes(leader) == 0


def fork_then_write(url: str, channel: Connection, go: Any) -> None:
    """In a spawned process P: write once (the mailbox opens), fork a child that only sleeps
    and send its pid, then on ``go`` write partition "K" (the test holds the queue: it posts)."""
    persister = SQLPersister(url)
    write(persister, "P", Checkpoint("1", 1))
    child = os.fork()
    if child == 0:
        time.sleep(60)  # unrelated work; the test kills it
        os._exit(0)
    channel.send(child)
    go.wait(30)
    write(persister, "K", Checkpoint("100", 100))
    os._exit(0)  # not reached: the test kills P while its write is posted


def test_posted_write_of_a_dead_process_is_not_run_while_its_fork_lives(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    go = context.Event()
    process = context.Process(target=fork_then_write, args=(store.url, sender, go))
    process.start()
    sender.close()
    child: int | None = None
    try:
        assert receiver.poll(30), "P did not start"
        child = int(receiver.recv())
        observer = store.handle()
        with store.holding_queue():
            go.set()
            wait_until(lambda: count(observer.states(), POSTED) == 1, "P's write is posted")
            process.kill()  # SIGKILL
            # Not join(): the fork holds P's end of the pipe join() waits on.
            wait_until(lambda: process.exitcode is not None, "P is dead")
            assert process.exitcode == -signal.SIGKILL
        assert queue_is_free(store.lock_file), "the fork holds the queue's lock"
        leader = store.open()
        write(leader, "own", Checkpoint("1", 1))
        assert stored(store.database, "K") is None
        assert stored(store.database, "own") == ("1", 1)
        assert shared_writes(leader) == 0
        # Freed as a dead writer's (a write merely too old to take would stay POSTED).
        assert count(observer.states(), FREE) == writequeue._SLOTS
    finally:
        receiver.close()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if process.exitcode is None:
            process.kill()
            wait_until(lambda: process.exitcode is not None, "P is dead")


def reset_partition(operator: sqlite3.Connection, partition: str) -> None:
    """Delete ``partition``'s row, as an operator's reset would, in ``operator``'s transaction."""
    operator.execute(
        "DELETE FROM checkpoints WHERE namespace = ? AND name = ? AND consumer_group = ? AND "
        "partition_id = ?",
        tuple(key(partition)),
    )


def entering_transactions(
    persister: SQLPersister, monkeypatch: pytest.MonkeyPatch
) -> threading.Event:
    """An event set when ``persister``'s writer starts a transaction: a leader's batch runs in
    one, which it starts after taking the posted writes."""
    entered = threading.Event()
    writer = persister._writer
    transaction = writer._transaction

    def entering(*args: Any) -> Any:
        entered.set()
        return transaction(*args)

    monkeypatch.setattr(writer, "_transaction", entering)
    return entered


@pytest.mark.parametrize("gives_up", ["dies", "abandons"])
def test_write_given_up_after_a_leader_took_it_is_not_run(
    store: Store, monkeypatch: pytest.MonkeyPatch, gives_up: str
) -> None:
    leader = store.open()
    write(leader, "K", Checkpoint("1", 1))
    params = parameters_of(leader, "K", Checkpoint("100", 100))
    observer = store.handle()
    in_transaction = entering_transactions(leader, monkeypatch)
    with contextlib.closing(sqlite3.connect(store.database, isolation_level=None)) as operator:
        operator.execute("BEGIN IMMEDIATE")  # the leader's transaction must wait for it
        poster = store.handle()
        ticket = poster.post(tag_of(leader), params)
        assert ticket is not None
        leading = in_thread(lambda: write(leader, "own", Checkpoint("7", 7)))
        # The leader took the write and now waits for SQLite's write lock, held by the operator.
        wait_until(in_transaction.is_set, "the leader starts its batch's transaction")
        assert count(observer.states(), TAKEN) + count(observer.states(), POSTED) == 1
        if gives_up == "dies":
            store.close_handle(poster)
        else:
            poster.abandon(ticket)
        reset_partition(operator, "K")
        operator.execute("COMMIT")
        leading.result(timeout=DEADLINE)
    assert stored(store.database, "K") is None, "the given-up write was committed after the reset"
    assert stored(store.database, "own") == ("7", 7)
    assert shared_writes(leader) == 0
    assert count(observer.states(), DONE) == 0


def test_leader_interrupted_while_taking_releases_the_queue(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = store.open()
    write(leader, "warm", Checkpoint("0", 0))
    poster = store.handle()
    ticket = poster.post(tag_of(leader), parameters_of(leader, "posted", Checkpoint("5", 5)))
    assert ticket is not None

    def interrupted_take(tag: bytes, width: int) -> list[writequeue.Taken]:
        raise KeyboardInterrupt  # Ctrl-C arrives while the leader holds the queue

    monkeypatch.setattr(mailbox_of(leader), "take", interrupted_take)
    with pytest.raises(KeyboardInterrupt):
        write(leader, "own", Checkpoint("1", 1))
    assert queue_is_free(store.lock_file), "the interrupted leader still holds the queue"
    monkeypatch.undo()
    write(leader, "own", Checkpoint("2", 2))  # and it leads again, with the posted write
    assert poster.collect(ticket) == (DONE, 1)
    assert stored(store.database, "posted") == ("5", 5)


def make_stale(mailbox: Mailbox) -> None:
    """Date ``mailbox``'s posted write as last looked at by its writer 2 s ago."""
    stamp = writequeue._slot_base(mailbox._slot) + writequeue._STAMP
    struct.pack_into("=Q", mailbox._memory, stamp, time.monotonic_ns() - 2_000_000_000)


def test_posted_write_nobody_looked_at_for_a_second_is_not_taken(store: Store) -> None:
    leader = store.open()
    write(leader, "warm", Checkpoint("0", 0))
    poster = store.handle()
    ticket = poster.post(tag_of(leader), parameters_of(leader, "stale", Checkpoint("9", 9)))
    assert ticket is not None
    make_stale(poster)
    write(leader, "own", Checkpoint("1", 1))
    assert count(poster.states(), POSTED) == 1
    assert stored(store.database, "stale") is None
    assert shared_writes(leader) == 0
    # Looked at again, it is taken: the stamp alone kept it out.
    poster.refresh()
    write(leader, "own", Checkpoint("2", 2))
    assert poster.collect(ticket) == (DONE, 1)
    assert stored(store.database, "stale") == ("9", 9)


def corrupt_posted_counter(mailbox: Mailbox) -> None:
    struct.pack_into("=I", mailbox._memory, writequeue._POSTED, 0xFFFFFFFF)


def posted_counter(mailbox: Mailbox) -> int:
    return int(struct.unpack_from("=I", mailbox._memory, writequeue._POSTED)[0])


def test_corrupt_posted_counter_does_not_break_a_write_alone(store: Store) -> None:
    persister = store.open()
    observer = store.handle()
    corrupt_posted_counter(observer)
    write(persister, "K", Checkpoint("1", 1))
    assert stored(store.database, "K") == ("1", 1)
    assert posted_counter(observer) == 0  # recounted by the leader


def test_corrupt_posted_counter_does_not_break_writes_under_contention(store: Store) -> None:
    leader = store.open()
    waiter = store.open()
    write(leader, "own", Checkpoint("0", 0))
    observer = store.handle()
    corrupt_posted_counter(observer)
    hold_queue_as(leader)
    waiting = in_thread(lambda: write(waiter, "K", Checkpoint("5", 5)))
    wait_until(
        lambda: waiting.done() or count(observer.states(), POSTED) == 1, "the write is posted"
    )
    assert not waiting.done(), f"the waiting write ended early: {waiting.exception()!r}"
    write(leader, "own", Checkpoint("1", 1))
    waiting.result(timeout=DEADLINE)
    assert stored(store.database, "K") == ("5", 5)
    assert stored(store.database, "own") == ("1", 1)
    assert shared_writes(leader) == 1
    assert count(observer.states(), FREE) == writequeue._SLOTS
    assert posted_counter(observer) == 0


def make_untrusted(store: Store, how: str, elsewhere: Path) -> None:
    """Leave a usable mailbox file at ``<db>-mailbox`` that a persister must not trust:
    writable by more than the database is (``wider``), a symlink to a mailbox (``symlink``),
    or owned by another user (``someone-elses``)."""
    os.chmod(store.database, 0o644)
    os.chmod(store.mailbox_file, 0o644)
    if how == "wider":
        os.chmod(store.mailbox_file, 0o666)
    elif how == "symlink":
        os.replace(store.mailbox_file, elsewhere)
        store.mailbox_file.symlink_to(elsewhere)
    else:
        os.chown(store.mailbox_file, os.getuid() + 1, -1)


@pytest.mark.parametrize("how", ["wider", "symlink", "someone-elses"])
def test_mailbox_anyone_else_could_write_is_not_used(
    store: Store, tmp_path: Path, how: str
) -> None:
    if how == "someone-elses" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    make_untrusted(store, how, tmp_path / "elsewhere-mailbox")
    assert open_mailbox(str(store.mailbox_file)) is None
    persister = store.open()
    write(persister, "first", Checkpoint("1", 1))
    assert persister._writer._queue is not None
    assert persister._writer._queue._mailbox is None
    write_under_contention(store, persister, Checkpoint("2", 2))  # takes turns, and writes
    assert stored(store.database, "first") == ("1", 1)


def test_thread_interrupted_while_another_thread_runs_its_write_gets_keyboard_interrupt(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    persister = store.open()
    write(persister, "warm", Checkpoint("0", 0))
    writer = persister._writer
    queue = writer._queue
    assert queue is not None
    in_batch, interrupted = threading.Event(), threading.Event()
    leaders: list[int] = []
    together = writer._together

    def held_batch(*args: Any) -> Any:
        """The leading thread's batch: it waits, holding the other thread's write, until that
        thread was interrupted."""
        work = together(*args)

        def run(connection: Any, cursor: Any) -> Any:
            leaders.append(threading.get_ident())
            in_batch.set()
            interrupted.wait(DEADLINE)
            return work(connection, cursor)

        return run

    turn_wait = queue._turn.wait

    def wait(timeout: float | None = None) -> bool:
        """The waiting thread's wait: Ctrl-C arrives once its write is in the leader's batch
        (before its outcome is set). Polls, so as to notice that."""
        if in_batch.is_set() and threading.get_ident() not in leaders:
            interrupted.set()
            raise KeyboardInterrupt
        return turn_wait(0.005 if timeout is None else min(timeout, 0.005))

    monkeypatch.setattr(writer, "_together", held_batch)
    monkeypatch.setattr(queue._turn, "wait", wait)
    handle = store.handle()
    with store.holding_queue():
        leading = in_thread(lambda: write(persister, "leader", Checkpoint("1", 1)))
        wait_until(lambda: count(handle.states(), POSTED) == 1, "the first write posts")
        waiting = in_thread(lambda: write(persister, "waiter", Checkpoint("2", 2)))
        wait_until(lambda: waiting_threads(persister) == 1, "the other thread waits")
    leading.result(timeout=DEADLINE)
    error = waiting.exception(timeout=DEADLINE)
    assert isinstance(error, KeyboardInterrupt), f"got {error!r}"
    assert stored(store.database, "leader") == ("1", 1)
    monkeypatch.undo()
    assert waiting_threads(persister) == 0
    write(persister, "after", Checkpoint("3", 3))  # the persister is not left busy
    assert stored(store.database, "after") == ("3", 3)


# -- 13. without futexes (other platforms) -----------------------------------------------------


def test_without_futexes_threads_still_commit_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the mailbox can't work (no futex: macOS, other CPUs), no mailbox file is made,
    writes take turns in ``flock``, and the threads of one process still share a transaction."""
    monkeypatch.setattr(writequeue, "_futex", lambda: None)
    store = Store(tmp_path / "checkpoints.db")
    try:
        persister = store.open()
        write(persister, "warm-up", Checkpoint("0", 0))
        queue = persister._writer._queue
        assert queue is not None
        assert queue._mailbox is None
        assert not store.mailbox_file.exists()
        writes = [(f"t{k}", Checkpoint(str(k), k)) for k in range(THREADS)]
        futures = threads_behind_one(
            store, persister, writes, lambda: flock_waiters(store.lock_file) == 1
        )
        assert [future.exception() for future in futures] == [None] * THREADS
        assert shared_writes(persister) == THREADS - 1
        for partition, checkpoint in writes:
            assert stored(store.database, partition) == (
                checkpoint.offset,
                checkpoint.sequence_number,
            )
    finally:
        store.close_all()


# -- 14. second review's findings -----------------------------------------------------------


def interrupt_after(
    monkeypatch: pytest.MonkeyPatch, command: int, kind: int, offset: Callable[[int], bool]
) -> list[int]:
    """Make the first lock call ``command``/``kind`` on a matching offset succeed, then raise
    KeyboardInterrupt (a signal handled as the call returns); the offsets hit are recorded."""
    original = writequeue._range_lock
    hit: list[int] = []

    def range_lock(fd: int, call: int, lock: int, at: int) -> int:
        result = original(fd, call, lock, at)
        if not hit and call == command and lock == kind and offset(at):
            hit.append(at)
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(writequeue, "_range_lock", range_lock)
    return hit


def test_interrupt_as_the_mailbox_lock_is_taken_releases_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = store.handle()
    mine = store.handle()
    hit = interrupt_after(
        monkeypatch, fcntl.F_OFD_SETLKW, fcntl.F_WRLCK, lambda at: at == writequeue._MAILBOX_LOCK
    )
    with pytest.raises(KeyboardInterrupt):
        mine.states()
    assert hit
    monkeypatch.undo()
    looked = in_thread(other.states)  # would wait for ever if the lock had been kept
    assert looked.exception(timeout=DEADLINE) is None


def test_interrupt_after_the_liveness_lock_lets_go_of_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    persister = store.open()
    write(persister, "first", Checkpoint("1", 1))  # the mailbox is open
    hit = interrupt_after(
        monkeypatch, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, lambda at: at > writequeue._MAILBOX_LOCK
    )
    with store.holding_queue():
        waiting = in_thread(lambda: write(persister, "interrupted", Checkpoint("2", 2)))
        assert isinstance(waiting.exception(timeout=DEADLINE), KeyboardInterrupt)
    monkeypatch.undo()
    slot = hit[0] - writequeue._LIVE
    assert not store.handle()._alive(slot), "the interrupted writer still holds its slot's lock"
    assert all_free(store)
    assert stored(store.database, "interrupted") is None


def test_batch_started_again_on_a_new_connection_goes_back_to_its_writers(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction ``Writer._run`` starts again (its connection was lost) must not run the
    others' writes it took the first time without checking them again: the batch fails and
    each write is run by its own writer."""
    persister = store.open()
    writer = persister._writer
    original = writer._together
    reruns: list[BaseException] = []

    def run_twice(statement: Any, ours: list[Any], collect: Any) -> Any:
        work = original(statement, ours, collect)

        def again(connection: Any, cursor: Any) -> list[int]:
            connection.rollback()
            try:
                collect()
            except Exception as exc:  # what a second run's collect() does
                reruns.append(exc)
                raise
            raise AssertionError("collect() answered twice")

        def first_then_again(connection: Any, cursor: Any) -> list[int]:
            cursor.execute("BEGIN IMMEDIATE")
            collect()
            return again(connection, cursor)

        return first_then_again if not reruns else work

    writer._together = run_twice  # type: ignore[method-assign,assignment]
    writes = [(f"t{k}", Checkpoint(str(k), k)) for k in range(3)]
    futures = threads_behind_one(store, persister, writes)
    assert [future.exception() for future in futures] == [None] * 3
    assert len(reruns) == 1
    assert shared_writes(persister) == 0  # the batch failed; each ran by itself
    for partition, checkpoint in writes:
        assert stored(store.database, partition) == (checkpoint.offset, checkpoint.sequence_number)
