"""How the writers of one SQLite file take turns, and commit each other's writes.

**The queue.** SQLite's busy handler lets a waiting writer sleep (1, 2, 5, 10, ... 100 ms) and
try again, so the lock often sits free while everyone sleeps and a writer can lose race after
race for a second or more. Writers holding :class:`WriteQueue`'s lock file,
``<database>-lock`` (``flock``, exclusive), around their write transactions wait in the kernel
instead and are woken the moment it is released.

**Group commit** (Linux). A durable write costs one fsync; with several writer processes most
of a write's time is somebody else's fsync. So a single write that finds the queue taken posts
itself in a mailbox shared by the file's writers, ``<database>-mailbox`` (memory-mapped), and
sleeps on a futex in it. The next writer to hold the queue (the leader) takes the posted writes
that run the same statement with the same durability (``PRAGMA synchronous`` and the journal
mode), runs them after its own in one transaction, and commits them with one fsync. It then
marks each one done with its row count and wakes the sleepers, who return. A waiter returns
only after the leader's commit, so a write that returned is as durable as one its own process
committed.

What keeps that correct when processes die:

* A posted write is run only while its writer is alive and waiting: the writer holds a lock
  (an open file description lock, ``F_OFD_SETLK``) on its slot's byte while the slot is its
  own, and the leader checks it when it takes the write and again once its transaction holds
  SQLite's write lock, so nothing (a reset, say) can come between that check and the commit.
  The kernel drops the lock of a dead process, so a write whose writer died first is thrown
  away, never committed later. A writer interrupted while waiting takes its write back; one
  that has stopped looking at its write for a second is not taken (``_FRESH_NS``).
* A leader that dies drops the queue's ``flock``. A waiter that then gets the queue and finds
  its write still taken runs it again itself: it may or may not have been committed, and a
  write is an upsert, so running it twice leaves what running it once would have.
* A batch that fails (any error) is rolled back; every write in it is run again by its own
  writer, by itself (nobody takes it into a batch again), so each gets its own error.
* An interrupted waiter takes its write back; if the leader has already checked it inside
  its transaction, it may or may not be stored (as for any interrupted write), but it is never
  stored later than that transaction.
* The mailbox is used only if it is a regular file owned by the database's owner and no more
  widely writable than the database: whoever can write it can hand writes to leaders.

The threads of one process do the same among themselves, in memory and on every platform: a
single write that finds another thread of its process writing waits for it, and that thread, if
it leads, commits the waiting writes with its own.

Locks belong to open file descriptions, which a plain ``fork`` shares with the child: a child
keeping them would keep its dead parent's queue held, or its posted write looking alive. So a
child drops its copies of every queue's files when it starts (``os.register_at_fork``).

Everything else -- a writer that doesn't use the mailbox (another program, an older
streamcheckpoint, ``write_many``), an unusable mailbox (no futex, a full mailbox, a file that
can't be opened or mapped, a write too large for a slot) -- falls back to taking turns. The
database's own locking decides correctness throughout: the queue and the mailbox only decide
who writes when.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import mmap
import os
import platform
import stat
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

if sys.platform != "win32":
    import fcntl

__all__ = ["Mailbox", "Taken", "WriteQueue"]

Collect = Callable[[], list[Sequence[Any]]]
"""The other writes of a batch (their parameters): asked once its transaction holds the
database's write lock, so that nothing (a reset, say) can come between taking them and the
commit. Asked again (the transaction was started again on a new connection), it raises: the
batch fails, and every write in it is run again by its own writer."""

Together = Callable[[Collect], list[int]]
"""Run our write and the others ``collect()`` gives in one transaction; the row counts, ours
first."""

_FRESH_NS = 1_000_000_000
"""A posted write older than this (nanoseconds since its writer last looked at it) is not taken:
its writer runs it. A waiter looks every ``_WAIT`` at most while it polls (up to ``_POLL``), so
only a write its writer has stopped waiting for (it was interrupted twice over), or one whose
writer has queued in the kernel behind a queue held for over a second, gets that old; the
latter runs by itself when its turn comes."""

_WAIT = 0.05
"""How long a waiter sleeps without being woken before it looks again itself (seconds). Only a
leader that died, a writer that doesn't use the mailbox, or a commit slower than this leaves it
unwoken that long."""

_POLL = 0.5
"""How long a waiter that isn't woken keeps looking (and keeps its write fresh for leaders)
before it queues in the kernel for the queue instead (seconds): less than ``_FRESH_NS``."""

# -- the mailbox file ----------------------------------------------------------------------
_MAGIC = b"SCKPMBX2"
_SLOTS = 64
_SLOT_SIZE = 2048
_HEADER_SIZE = 64
_FILE_SIZE = _HEADER_SIZE + _SLOTS * _SLOT_SIZE
# header: magic, then native unsigned 32-bit fields
_POSTED = 8  # slots in state POSTED
_NUDGED = 12  # the slot nudged last
_LAYOUT = 20  # _SLOTS, _SLOT_SIZE: a file of another layout is not used
# a slot: state byte; its bell (u32), the futex word its writer sleeps on, bumped (under the
# mailbox lock) to wake it; ticket (u64), statement tag (16 bytes), result (i64), payload
# length (u32), the CLOCK_MONOTONIC nanoseconds its writer last looked at it (u64), payload
_BELL = 4
_TICKET = 8  # then tag at 16, result at 32, length at 40: _SLOT_HEAD
_RESULT = 32
_STAMP = 48
_PAYLOAD = 56
_MAX_PAYLOAD = _SLOT_SIZE - _PAYLOAD
# byte-range locks, beyond the file's end: the mailbox lock and one liveness byte per slot
_MAILBOX_LOCK = 1 << 30
_LIVE = _MAILBOX_LOCK + 1

FREE, POSTED, TAKEN, DONE, RETRY = range(5)

_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_SLOT_HEAD = struct.Struct("=Q16sqI")  # ticket, tag, result, length (from _TICKET)
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: type, whence, start, len, pid

_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98, "arm64": 98}
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Futex:
    """Linux futex wait and wake on a word of shared memory, through libc's ``syscall``."""

    def __init__(self, number: int) -> None:
        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._number = ctypes.c_long(number)

    def wait(self, address: int, expected: int, timeout: float) -> None:
        """Sleep while the word at ``address`` is ``expected``, at most ``timeout`` seconds."""
        whole = int(timeout)
        span = _Timespec(whole, int((timeout - whole) * 1e9))
        self._syscall(
            self._number,
            ctypes.c_void_p(address),
            ctypes.c_int(_FUTEX_WAIT),
            ctypes.c_uint32(expected),
            ctypes.byref(span),
            None,
            ctypes.c_int(0),
        )

    def wake(self, address: int) -> None:
        """Wake everyone sleeping on the word at ``address``."""
        self._syscall(
            self._number,
            ctypes.c_void_p(address),
            ctypes.c_int(_FUTEX_WAKE),
            ctypes.c_int(2**31 - 1),
            None,
            None,
            ctypes.c_int(0),
        )


@functools.cache
def _futex() -> _Futex | None:
    """The futex calls, where this platform has them (Linux on x86-64 and ARM64)."""
    number = _FUTEX_SYSCALL.get(platform.machine())
    if sys.platform != "linux" or number is None or not hasattr(fcntl, "F_OFD_SETLK"):
        return None
    try:
        return _Futex(number)
    except (OSError, AttributeError):
        return None


def _range_lock(fd: int, command: int, kind: int, offset: int) -> int:
    """An open-file-description lock call on one byte; the lock type it reports back."""
    answer = fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, offset, 1, 0))
    return int(_FLOCK.unpack(answer)[0])


@dataclass(frozen=True)
class Taken:
    """A posted write a leader has taken: its slot, its ticket and its parameters."""

    slot: int
    ticket: int
    parameters: list[Any]


class Mailbox:
    """The shared ``<database>-mailbox`` file: slots where waiting writers post their writes.

    Every change happens under the mailbox lock (a byte-range lock, so that it can't meet the
    queue's ``flock``); only counters are read without it, to skip work when they are zero.
    """

    def __init__(self, fd: int, memory: mmap.mmap, futex: _Futex) -> None:
        self._fd = fd
        self._memory = memory
        self._futex = futex
        self._view = ctypes.c_char.from_buffer(memory)
        self._address = ctypes.addressof(self._view)
        self._next_ticket = int.from_bytes(os.urandom(8), "little")
        self._slot = 0  # of the one write this mailbox has posted (its queue posts one at a time)
        self.posted: int | None = None
        """The ticket of our posted write until we collect or abandon it (set before the write
        is visible to others, so that whatever interrupts posting can abandon it)."""

    @classmethod
    def open(cls, path: str, mode: int, owner: int) -> Mailbox | None:
        """Open (creating it with ``mode``) the mailbox at ``path``; None where it can't be used.

        An existing file is used only if it is a regular file (not a link) owned by ``owner``
        whose permissions are no wider than ``mode``: whoever can write the mailbox can hand
        writes to the leaders, so only those who can write the database may.
        """
        futex = _futex()
        if futex is None:
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        except OSError:
            return None
        memory = None
        try:
            info = os.fstat(fd)
            trusted = (
                stat.S_ISREG(info.st_mode)
                and info.st_uid == owner
                and not info.st_mode & 0o777 & ~mode
            )
            usable = False
            if trusted:
                with _locked(fd):
                    usable = _prepare(fd)
            memory = mmap.mmap(fd, _FILE_SIZE) if usable else None
        except (OSError, ValueError):
            memory = None
        finally:
            if memory is None:  # unusable, or interrupted
                os.close(fd)
        if memory is None:
            return None
        return cls(fd, memory, futex)

    def close(self) -> None:
        """Unmap and close the file (it stays, for the other writers)."""
        del self._view  # the mapping can't close while ctypes holds a pointer into it
        self._memory.close()
        os.close(self._fd)

    # -- waiting writers -------------------------------------------------------------------

    def post(self, tag: bytes, parameters: Sequence[Any]) -> int | None:
        """Post a write; its ticket, or None if it can't be posted (too big, mailbox full)."""
        payload = _encode(parameters)
        if payload is None:
            return None
        try:
            return self._post(tag, payload)
        except OSError:  # no lock to be had (ENOLCK): take turns instead
            return None

    def _post(self, tag: bytes, payload: bytes) -> int | None:
        with _locked(self._fd):
            slot = self._free_slot()
            if slot is None:
                return None
            ticket = self._next_ticket
            self._next_ticket = (ticket + 1) % 2**64
            # Recorded before anything else: whatever interrupts posting can abandon it.
            self._slot, self.posted = slot, ticket
            _range_lock(self._fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, _LIVE + slot)
            base = _slot_base(slot)
            memory = self._memory
            _SLOT_HEAD.pack_into(memory, base + _TICKET, ticket, tag, 0, len(payload))
            _U64.pack_into(memory, base + _STAMP, time.monotonic_ns())
            memory[base + _PAYLOAD : base + _PAYLOAD + len(payload)] = payload
            self._add(_POSTED, 1)  # first: a writer killed in between leaves it high, harmless
            memory[base] = POSTED
        return ticket

    def bell(self) -> int:
        """Our slot's bell, read before looking at the slot and going to sleep."""
        return self._read(_slot_base(self._slot) + _BELL)

    def state(self) -> int:
        """Our slot's state, read without the lock: a hint, for skipping a locked look."""
        return self._memory[_slot_base(self._slot)]

    def refresh(self) -> None:
        """Say we are still waiting for our posted write (see ``_FRESH_NS``)."""
        _U64.pack_into(self._memory, _slot_base(self._slot) + _STAMP, time.monotonic_ns())

    def wait(self, bell: int, timeout: float) -> None:
        """Sleep until our slot's bell rings after ``bell`` (at once if it has rung since)."""
        self._futex.wait(self._address + _slot_base(self._slot) + _BELL, bell, timeout)

    def collect(self, ticket: int, *, withdraw: bool = False) -> tuple[int, int] | None:
        """The outcome of our posted write: ``(DONE, row count)`` or ``(RETRY, 0)``, freeing
        the slot; None while it waits. ``withdraw`` frees a waiting write's slot too (the
        caller holds the queue, so no leader can be taking it): then None means "run it"."""
        with _locked(self._fd):
            slot = self._slot
            base = _slot_base(slot)
            state = self._memory[base]
            mine = _SLOT_HEAD.unpack_from(self._memory, base + _TICKET)[0] == ticket
            if not mine:  # not possible while we hold its lock; run it again, to be safe
                self._let_go(slot)
                self.posted = None
                return (RETRY, 0)
            if state == DONE:
                result = _SLOT_HEAD.unpack_from(self._memory, base + _TICKET)[2]
                self._free(slot)
                self.posted = None
                return (DONE, int(result))
            if state == RETRY:
                self._free(slot)
                self.posted = None
                return (RETRY, 0)
            if withdraw:
                self._free(slot)
                self.posted = None
            return None

    def abandon(self, ticket: int) -> None:
        """Take our write back, whatever its state (the caller was interrupted)."""
        with _locked(self._fd):
            base = _slot_base(self._slot)
            if _SLOT_HEAD.unpack_from(self._memory, base + _TICKET)[0] == ticket:
                self._free(self._slot)
            if self.posted == ticket:
                self.posted = None
                # Interrupted while posting, the slot may not say so yet: let go of it anyway,
                # or a later writer there, dead, would look alive.
                self._let_go(self._slot)

    # -- the leader --------------------------------------------------------------------------

    def any_posted(self) -> bool:
        """Whether writes may be posted (read without the lock: a hint)."""
        return bool(self._read(_POSTED))

    def take(self, tag: bytes, width: int) -> list[Taken]:
        """Take the posted writes of live writers with statement ``tag`` (``width`` values)."""
        if not self._read(_POSTED):
            return []
        taken: list[Taken] = []
        memory = self._memory
        now = time.monotonic_ns()
        with _locked(self._fd):
            for slot in _slots_in(self._states(), POSTED):
                base = _slot_base(slot)
                if not self._alive(slot):
                    self._free(slot)  # its writer died before anyone ran it: never run it
                    continue
                ticket, slot_tag, _, length = _SLOT_HEAD.unpack_from(memory, base + _TICKET)
                if slot_tag != tag or now - _U64.unpack_from(memory, base + _STAMP)[0] > _FRESH_NS:
                    continue
                parameters = _decode(memory[base + _PAYLOAD : base + _PAYLOAD + length], width)
                if parameters is None:
                    continue  # left to its writer
                memory[base] = TAKEN
                taken.append(Taken(slot, ticket, parameters))
            # Counted afresh: a writer killed while changing a slot can leave the count off.
            _U32.pack_into(memory, _POSTED, self._states().count(POSTED))
        return taken

    def finish(self, taken: Sequence[Taken], counts: Sequence[int] | None) -> None:
        """Mark taken writes done with their row counts, or (``counts`` None) to be retried,
        and wake their writers."""
        memory = self._memory
        ring: list[int] = []
        with _locked(self._fd):
            for index, item in enumerate(taken):
                base = _slot_base(item.slot)
                head = _SLOT_HEAD.unpack_from(memory, base + _TICKET)
                if memory[base] != TAKEN or head[0] != item.ticket:
                    continue  # its writer gave up on it
                if counts is None:
                    memory[base] = RETRY
                else:
                    struct.pack_into("=q", memory, base + _RESULT, counts[index])
                    memory[base] = DONE
                ring.append(self._ring(item.slot))
        for address in ring:
            self._futex.wake(address)

    def nudge(self) -> None:
        """After the queue is released: wake one writer whose posted write nobody took, to
        lead the next batch (the others' writes are in it)."""
        if not self._read(_POSTED):
            return
        memory = self._memory
        address = None
        with _locked(self._fd):
            after = self._read(_NUDGED) + 1
            for step in range(_SLOTS):  # round the slots, so that nobody waits for ever
                slot = (after + step) % _SLOTS
                if memory[_slot_base(slot)] == POSTED:
                    _U32.pack_into(memory, _NUDGED, slot)
                    address = self._ring(slot)
                    break
        if address is not None:
            self._futex.wake(address)

    def _ring(self, slot: int) -> int:
        """Bump ``slot``'s bell (under the lock); the address to wake its writer at."""
        field = _slot_base(slot) + _BELL
        _U32.pack_into(self._memory, field, (self._read(field) + 1) % 2**32)
        return self._address + field

    def states(self) -> list[int]:
        """Every slot's state (FREE, POSTED, TAKEN, DONE, RETRY), for diagnostics and tests."""
        with _locked(self._fd):
            return list(self._states())

    def _states(self) -> bytes:
        """Every slot's state byte, in one copy."""
        return self._memory[_HEADER_SIZE:_FILE_SIZE:_SLOT_SIZE]

    # -- slots ------------------------------------------------------------------------------

    def _free_slot(self) -> int | None:
        """A free slot; slots of writers that died are freed when none is."""
        slot = self._states().find(FREE)
        if slot >= 0:
            return slot
        for slot in range(_SLOTS):
            if not self._alive(slot):
                self._free(slot)
                return slot
        return None

    def _free(self, slot: int) -> None:
        base = _slot_base(slot)
        state = self._memory[base]
        if state == FREE:
            return
        self._memory[base] = FREE
        if state == POSTED:  # after: a writer killed in between leaves the count high, harmless
            self._add(_POSTED, -1)
        self._let_go(slot)  # ours, or a dead writer's slot (then a no-op)

    def _let_go(self, slot: int) -> None:
        """Release our liveness lock on ``slot`` (a no-op where this file description has none,
        so it never touches another writer's)."""
        _range_lock(self._fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _LIVE + slot)

    def _alive(self, slot: int) -> bool:
        """Whether another open file description holds the slot's liveness byte."""
        kind = _range_lock(self._fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, _LIVE + slot)
        return kind != fcntl.F_UNLCK

    def _read(self, field: int) -> int:
        return int(_U32.unpack_from(self._memory, field)[0])

    def _add(self, field: int, delta: int) -> None:
        _U32.pack_into(self._memory, field, min(max(0, self._read(field) + delta), _SLOTS))


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """Hold the mailbox lock (an open-file-description write lock on its byte).

    Taken inside the ``try``: whatever interrupts the call that takes it still releases it
    (releasing a lock not held does nothing), or every other writer would wait for ever.
    """
    try:
        _range_lock(fd, fcntl.F_OFD_SETLKW, fcntl.F_WRLCK, _MAILBOX_LOCK)
        yield
    finally:
        _range_lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _MAILBOX_LOCK)


def _prepare(fd: int) -> bool:
    """Lay out a new (empty) mailbox file; whether the file is a mailbox we can use."""
    size = os.fstat(fd).st_size
    header = _MAGIC + bytes(12) + _U32.pack(_SLOTS) + _U32.pack(_SLOT_SIZE)
    # All zeros: a writer that made the file died before writing the header.
    if size == 0 or (size == _FILE_SIZE and os.pread(fd, 8, 0) == bytes(8)):
        os.ftruncate(fd, _FILE_SIZE)
        os.pwrite(fd, header, 0)
        return True
    return (
        size == _FILE_SIZE
        and os.pread(fd, 8, 0) == _MAGIC
        and (os.pread(fd, 8, _LAYOUT) == header[_LAYOUT:])
    )


def _slot_base(slot: int) -> int:
    return _HEADER_SIZE + slot * _SLOT_SIZE


def _slots_in(states: bytes, state: int) -> list[int]:
    return [slot for slot, value in enumerate(states) if value == state]


def _encode(parameters: Sequence[Any]) -> bytes | None:
    try:
        payload = json.dumps(list(parameters), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, UnicodeError):
        return None
    return payload if len(payload) <= _MAX_PAYLOAD else None


def _decode(payload: bytes, width: int) -> list[Any] | None:
    """A posted write's parameters, if they are ``width`` plain values; else None."""
    try:
        values = json.loads(payload)
    except (ValueError, UnicodeError):
        return None
    if not isinstance(values, list) or len(values) != width:
        return None
    for value in values:
        if value is not None and type(value) not in (str, int, float):
            return None
    return values


@dataclass(eq=False)
class _Write:
    """A single write: what runs it, alone or with others, and (waiting) its outcome."""

    tag: bytes
    parameters: list[Any]
    alone: Callable[[], int]
    together: Together
    outcome: tuple[int, int] | None = None
    """``(DONE, row count)`` once another thread committed it, ``(RETRY, 0)`` if that failed."""
    solo: bool = False
    """Its batch failed once: it runs by itself now, and nobody takes it into a batch."""


class _BatchRerunError(Exception):
    """A batch's transaction was started again: its writes go back to their writers."""


@dataclass
class _Batch:
    """The other writes a leader took into its transaction."""

    posted: list[Taken] = field(default_factory=list)
    local: list[_Write] = field(default_factory=list)
    rows: list[Sequence[Any]] | None = None

    def take(self, queue: WriteQueue, mailbox: Mailbox | None, write: _Write) -> None:
        """Take the posted writes of other processes and the waiting ones of our threads."""
        if mailbox is not None:
            with contextlib.suppress(OSError):  # no lock to be had (ENOLCK): lead without
                self.posted = mailbox.take(write.tag, len(write.parameters))
        self.local = queue._take_local(write.tag)
        rows: list[Sequence[Any]] = [item.parameters for item in self.posted]
        self.rows = rows + [item.parameters for item in self.local]

    def finish(
        self, queue: WriteQueue, mailbox: Mailbox | None, counts: Sequence[int] | None
    ) -> None:
        """Report the outcome (``counts``, or None: each runs again by itself), once."""
        posted, local = self.posted, self.local
        self.posted, self.local = [], []
        if posted or local:
            queue._finish(mailbox, posted, local, counts)


_QUEUES: weakref.WeakSet[WriteQueue] = weakref.WeakSet()
"""Every open queue, for :func:`_forget_after_fork`."""


def _forget_after_fork() -> None:
    """In a child made by ``fork``: drop the copies of every queue's files.

    Locks belong to open file descriptions, which a fork shares: a child keeping its parent's
    would keep the parent's queue held, or its posted write looking alive, after the parent
    died. The child opens its own when it writes.
    """
    for queue in list(_QUEUES):
        queue._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class WriteQueue:
    """Makes the writers of one SQLite file take turns, and commit each other's single writes.

    See the module's description. ``database`` is the file's absolute path; the queue uses
    ``<database>-lock`` and ``<database>-mailbox`` next to it, which stay when it closes. If
    the lock file can't be opened or locked (a read-only directory, a file system without
    ``flock``), writes go on without the queue: SQLite's own locking is enough to be correct.

    ``flock`` belongs to an open file, not to a thread, so the threads of this process take
    turns first (one at a time is "busy"): a single write that finds another thread busy waits
    in :attr:`_waiting`, and the busy thread, when it leads, commits it with its own -- group
    commit among threads, on every platform.
    """

    durability_queries = ("PRAGMA synchronous", "PRAGMA journal_mode")
    """What a connection's durability is: writes are committed together only if it matches."""

    def __init__(self, database: str) -> None:
        self.path = database + "-lock"
        self._database = database
        self._fd: int | None = None
        self._usable = True
        self._closed = False
        self._locked = False
        self._turn = threading.Condition(threading.Lock())
        self._busy = False
        self._sleeping = 0  # threads waiting on _turn
        self._waiting: list[_Write] = []
        self._mailbox: Mailbox | None = None
        self._mailbox_opened = False
        self.shared_writes = 0
        """How many writes of other threads or processes this queue's leaders committed with
        their own (for tests and benchmarks)."""
        _QUEUES.add(self)

    def _forget(self) -> None:
        """Drop the inherited files and turn without closing what the parent still uses."""
        fd, self._fd = self._fd, None
        mailbox, self._mailbox = self._mailbox, None
        self._mailbox_opened = self._locked = self._busy = False
        self._turn = threading.Condition(threading.Lock())
        self._sleeping = 0
        self._waiting = []
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # the parent's lock stays: its own descriptor still holds it
        if mailbox is not None:
            with contextlib.suppress(OSError):
                mailbox.close()

    # -- taking turns ---------------------------------------------------------------------

    def acquire(self) -> None:
        """Wait for our turn: threads of this process first, then other processes."""
        self._take_turn()
        try:
            if self._open():
                self._flock(blocking=True)
        except BaseException:
            self._unflock()
            self._end_turn()
            raise

    def release(self) -> None:
        """Let the next writer go."""
        try:
            self._unflock()
        finally:
            self._end_turn()

    def close(self) -> None:
        """Close the lock file and the mailbox; the files stay, for the other processes."""
        self._take_turn()
        try:
            self._closed = True
            fd, self._fd = self._fd, None
            mailbox, self._mailbox = self._mailbox, None
        finally:
            self._end_turn()
        if fd is not None:
            os.close(fd)
        if mailbox is not None:
            mailbox.close()

    def _take_turn(self) -> None:
        with self._turn:
            while self._busy:
                self._sleep()
            self._busy = True

    def _end_turn(self) -> None:
        with self._turn:
            self._busy = False
            if self._sleeping:
                self._turn.notify_all()

    def _sleep(self) -> None:
        """Wait for the turn to change (holding ``_turn``)."""
        self._sleeping += 1
        try:
            self._turn.wait()
        finally:
            self._sleeping -= 1

    # -- group commit ----------------------------------------------------------------------

    def write(
        self, tag: bytes, parameters: list[Any], alone: Callable[[], int], together: Together
    ) -> int:
        """Run one single write in turn, with other waiting writers' if it can; its row count.

        ``alone`` runs our write by itself, committed. ``together`` runs it, then other writes
        of the same statement, in one transaction (see :data:`Together`). ``tag`` names the
        statement and its durability: only writes with the same tag are run together.
        """
        mine = _Write(tag, parameters, alone, together)
        with self._turn:
            idle = not self._busy
            self._busy = True
        while not idle:
            with self._turn:
                self._waiting.append(mine)
                try:
                    while self._busy and mine.outcome is None:
                        self._sleep()
                finally:
                    if mine in self._waiting:  # not taken by another thread meanwhile
                        self._waiting.remove(mine)
                outcome, mine.outcome = mine.outcome, None
                if outcome is None:
                    self._busy = True
                    break
            if outcome[0] == DONE:
                return outcome[1]
            mine.solo = True  # the batch another thread ran it in failed
        try:
            return self._represent(mine)
        finally:
            if self._locked:  # something interrupted us holding it
                self._unflock()
            self._end_turn()

    def _represent(self, write: _Write) -> int:
        """Our turn among this process's threads: now take turns with the other processes."""
        if not self._open():
            return self._lead(write)
        mailbox = self._mailbox
        if mailbox is None or write.solo:
            self._flock(blocking=True)
        elif not self._flock(blocking=False):
            try:
                ticket = mailbox.post(write.tag, write.parameters)
                if ticket is not None:
                    return self._await(mailbox, ticket, write)
            except BaseException:
                posted = mailbox.posted
                if posted is not None:  # never leave it for a leader to run after we gave up
                    mailbox.abandon(posted)
                raise
            self._flock(blocking=True)
        return self._lead(write)

    def _await(self, mailbox: Mailbox, ticket: int, write: _Write) -> int:
        """Wait for a leader to run our posted write, or lead ourselves when the queue frees.

        Whatever interrupts this, the caller abandons the posted write.
        """
        deadline = time.monotonic() + _POLL
        while True:
            bell = mailbox.bell()
            mailbox.refresh()
            if mailbox.state() in (DONE, RETRY):
                outcome = mailbox.collect(ticket)
                if outcome is not None and outcome[0] == DONE:
                    return outcome[1]
                write.solo = True  # the batch failed: run it by itself, in turn
                self._flock(blocking=True)
                return self._lead(write)
            if self._flock(blocking=False):
                return self._withdraw(mailbox, ticket, write)
            mailbox.wait(bell, _WAIT)
            if mailbox.bell() == bell and time.monotonic() > deadline:
                # Not woken for a while: the queue's holder doesn't use the mailbox, or is
                # slow. Queue in the kernel (still posted: a leader may yet take it).
                self._flock(blocking=True)
                return self._withdraw(mailbox, ticket, write)

    def _withdraw(self, mailbox: Mailbox, ticket: int, write: _Write) -> int:
        """Holding the queue with our write posted: its outcome if a leader ran it, else lead.

        A write still taken when we get the queue was taken by a leader that died: it may or
        may not be committed, so we run it again (an upsert: same state either way).
        """
        outcome = mailbox.collect(ticket, withdraw=True)
        if outcome is not None and outcome[0] == DONE:
            self._unflock()
            return outcome[1]
        write.solo = write.solo or outcome is not None  # RETRY: the batch failed
        return self._lead(write)

    def _lead(self, write: _Write) -> int:
        """Our turn (holding the queue if it is usable): run our write, with the waiting ones
        of this process's threads and, holding the queue, the posted ones of other processes
        (unless ours must run by itself)."""
        mailbox = self._mailbox if self._locked else None
        batch = None
        try:
            if write.solo or not self._others_wait(mailbox):
                return write.alone()
            batch = _Batch()

            def collect() -> list[Sequence[Any]]:
                if batch.rows is not None:
                    # Run again (on a new connection): the writers may have gone since the
                    # check. Fail the batch: each write is then run again by its own writer.
                    raise _BatchRerunError
                batch.take(self, mailbox, write)
                return batch.rows or []

            try:
                counts = write.together(collect)
            except Exception:
                if not batch.rows:
                    raise  # nobody else's write was in it: the error is ours
                batch.finish(self, mailbox, None)  # each runs again by itself
                return write.alone()
            batch.finish(self, mailbox, counts[1:])
            self.shared_writes += len(counts) - 1
            return counts[0]
        finally:
            if batch is not None:  # if interrupted: their writers run them again
                batch.finish(self, mailbox, None)
            self._unflock()

    def _others_wait(self, mailbox: Mailbox | None) -> bool:
        """Whether writes of other threads or processes may be waiting (read without locks)."""
        return bool(self._waiting) or (mailbox is not None and mailbox.any_posted())

    def _take_local(self, tag: bytes) -> list[_Write]:
        """The waiting writes of this process's other threads that can run with ours."""
        with self._turn:
            taken = [item for item in self._waiting if item.tag == tag and not item.solo]
            if taken:
                self._waiting = [item for item in self._waiting if item.tag != tag or item.solo]
        return taken

    def _finish(
        self,
        mailbox: Mailbox | None,
        posted: list[Taken],
        local: list[_Write],
        counts: Sequence[int] | None,
    ) -> None:
        """Report a batch's outcome: ``counts`` for ``posted`` then ``local``, or None (it
        failed: each runs again by itself)."""
        if posted and mailbox is not None:
            with contextlib.suppress(OSError):  # unreported: their writers run them again
                mailbox.finish(posted, None if counts is None else counts[: len(posted)])
        if local:
            with self._turn:
                for index, item in enumerate(local, start=len(posted)):
                    item.outcome = (RETRY, 0) if counts is None else (DONE, counts[index])
                self._turn.notify_all()

    # -- the lock file ------------------------------------------------------------------------

    def _open(self) -> bool:
        """Open the lock file and the mailbox if needed; whether the queue is usable.

        In our turn.
        """
        if not self._usable or self._closed:
            return False
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError:
                self._usable = False
                return False
        if not self._mailbox_opened:
            self._mailbox_opened = True
            with contextlib.suppress(OSError):
                database = os.stat(self._database)
                self._mailbox = Mailbox.open(
                    self._database + "-mailbox", database.st_mode & 0o666, database.st_uid
                )
        return True

    def _flock(self, *, blocking: bool) -> bool:
        """Take the lock file; False if ``blocking`` is off and another writer holds it.

        An unusable lock file counts as taken: SQLite's own locking is enough to be correct.
        """
        fd = self._fd
        if fd is None:
            return True
        self._locked = True  # first: an interruption right after the call still unlocks it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._locked = False
            return False
        except OSError:
            self._locked = False
            self._usable = False
            return True
        return True

    def _unflock(self) -> None:
        """Release the lock file, then wake the writers waiting in the mailbox."""
        if not self._locked:
            return
        self._locked = False
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:  # closing the file releases the lock too
            self._usable = False
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
        if self._mailbox is not None:
            with contextlib.suppress(OSError):
                self._mailbox.nudge()
