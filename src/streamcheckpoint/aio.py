"""The asyncio API: the synchronous persisters, run in worker threads.

:class:`AsyncPersister` wraps any persister (:class:`~streamcheckpoint.MemoryPersister`,
:class:`~streamcheckpoint.FilePersister`, :class:`~streamcheckpoint.SQLPersister`) and runs each
call on it in a thread of a :class:`~concurrent.futures.ThreadPoolExecutor` of its own, so the
event loop never waits for a disk or a database. :class:`AsyncSQLPersister` is the same over a
:class:`~streamcheckpoint.SQLPersister` that it opens (connects, migrates) in a worker thread on
first use, so that constructing it does no I/O.

Nothing is implemented twice: validation, statements, migrations, error translation and the
monotonic rule are the synchronous persister's, which is thread-safe. Cheap argument checks run
on the loop, before anything is queued, with the synchronous API's own functions, so a bad
argument raises the same exception, with the same message, from the awaited call.
"""

from __future__ import annotations

import asyncio
import builtins
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa

from .checkpoint import (
    Checkpoint,
    CheckpointRecord,
    check_checkpoint,
    make_key,
)
from .errors import PersistError
from .persister import (
    BasePersister,
    CheckpointItems,
    check_bool,
    check_delete_target,
    normalize_items,
    normalize_scope,
)
from .redaction import mask_url
from .sql import SQLPersister
from .sql.engine import UrlOrEngine
from .sql.persister import check_arguments
from .urls import open_persister

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["AsyncPersister", "AsyncSQLPersister", "open_async_persister"]

_P = TypeVar("_P", bound=BasePersister)
_T = TypeVar("_T")

_THREAD_NAME_PREFIX = "streamcheckpoint"
"""The names of the worker threads start with this."""


class AsyncPersister(Generic[_P]):
    """An asyncio persister running every call on ``persister`` in a worker thread.

    The methods are those of :class:`~streamcheckpoint.BasePersister`, as coroutines, with the
    same arguments, results, guarantees and errors: ``write``, ``read``, ``write_many``,
    ``list``, ``delete``, then ``close`` (or ``async with``, which closes on exit). The
    wrapped persister is :attr:`sync`; this object owns it and closes it.

    Each call runs in a thread of an executor owned by this object (``max_workers`` threads,
    named ``streamcheckpoint_N``), through :meth:`asyncio.loop.run_in_executor`, so calls from
    many tasks run side by side up to ``max_workers`` at a time; the persisters are
    thread-safe. Arguments are checked on the loop before the call is queued (a bad key or
    checkpoint never waits for a thread); the items of ``write_many`` are checked in the
    thread, since checking a large batch would hold the loop up.

    Cancellation: cancelling the task awaiting a call neither stops nor interrupts the thread
    running it. A cancelled write may or may not have been stored; read it back to know. The
    store then holds the old checkpoint or the new one, never anything else, and a cancelled
    ``write_many`` keeps its all-or-nothing guarantee. The persister stays usable.

    :meth:`close` refuses new calls, waits for the calls in flight (and for threads still
    running cancelled calls), closes the wrapped persister in a thread and shuts the executor
    down. A call after close raises :class:`~streamcheckpoint.errors.PersistError`, as the
    closed persister does.

    One event loop at a time: the persister may be used from one loop, then (once that loop
    has ended) from another, but not from two loops running in two threads at once.
    """

    _sync: _P | None

    def __init__(self, persister: _P, *, max_workers: int = 4) -> None:
        if not isinstance(persister, BasePersister):
            raise TypeError(
                "persister must be a streamcheckpoint persister (a BasePersister such as "
                f"SQLPersister, FilePersister or MemoryPersister), not {type(persister).__name__}"
            )
        self._start(max_workers)
        self._sync = persister

    def _start(self, max_workers: int) -> None:
        """Set up what every async persister has: the executor and the bookkeeping of close."""
        _check_max_workers(max_workers)
        self._sync = None
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=_THREAD_NAME_PREFIX
        )
        self._active = 0  # calls between their start and their end, on the loop
        self._closing = False  # close() has begun: new calls are refused
        # The closing itself runs in a thread of its own, started by close() or, if calls are in
        # flight, by the last of them to end: it doesn't depend on the loop that began it.
        self._released: Future[None] | None = None
        self._idle: asyncio.Future[None] | None = None  # done once the release has started

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._sync!r})"

    @property
    def sync(self) -> _P:
        """The synchronous persister every call runs on."""
        if self._sync is None:
            raise RuntimeError(
                f"{type(self).__name__} is not open yet: await its open() (or any call), or "
                "use it in 'async with', first"
            )
        return self._sync

    @property
    def monotonic(self) -> bool:
        """Whether a write moving a checkpoint backwards is refused."""
        return self.sync.monotonic

    @property
    def read_only(self) -> bool:
        """Whether the store was opened only to read (writes and deletes are refused)."""
        return self.sync.read_only

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    # -- the contract ---------------------------------------------------------------------

    async def write(
        self,
        namespace: str,
        name: str,
        consumer_group: str,
        partition_id: str,
        checkpoint: Checkpoint,
    ) -> None:
        """Store ``checkpoint`` for the partition; durable once the call returns."""
        key = make_key(namespace, name, consumer_group, partition_id)
        check_checkpoint(checkpoint)
        await self._call(lambda sync: sync.write(*key, checkpoint))

    async def read(
        self, namespace: str, name: str, consumer_group: str, partition_id: str
    ) -> Checkpoint:
        """Return the stored checkpoint, or :meth:`Checkpoint.start_of_stream` if none."""
        key = make_key(namespace, name, consumer_group, partition_id)
        return await self._call(lambda sync: sync.read(*key))

    # -- the extensions -------------------------------------------------------------------

    async def write_many(self, items: CheckpointItems) -> None:
        """Store several checkpoints, all or nothing (see ``BasePersister.write_many``).

        ``items`` is copied when the call is made (with the lists in it: pairs, keys), so
        changing it while the call is awaited changes nothing; its items are checked in the
        worker thread.
        """
        snapshot = _snapshot(items)
        if self._closing:
            normalize_items(snapshot)  # bad items are refused before a closed store, as in sync
        await self._call(lambda sync: sync.write_many(snapshot))

    async def list(
        self,
        namespace: str | None = None,
        name: str | None = None,
        consumer_group: str | None = None,
    ) -> builtins.list[CheckpointRecord]:
        """Return stored checkpoints, optionally narrowed by namespace, then name, then group.

        Sorted by key, partition ids in natural order (``"2"`` before ``"10"``).
        """
        normalize_scope(namespace, name, consumer_group)
        return await self._call(lambda sync: sync.list(namespace, name, consumer_group))

    async def delete(
        self,
        namespace: str,
        name: str,
        consumer_group: str,
        partition_id: str | None = None,
    ) -> int:
        """Delete one partition's checkpoint, or the whole consumer group's; return the count."""
        check_delete_target(namespace, name, consumer_group, partition_id)
        return await self._call(
            lambda sync: sync.delete(namespace, name, consumer_group, partition_id)
        )

    # -- opening and closing --------------------------------------------------------------

    async def open(self) -> Self:
        """Make sure the persister is open, and return it; raises what opening raises.

        :class:`AsyncSQLPersister` connects (and migrates) here; without ``open()`` the first
        call does it. For a wrapped persister, which is open already, this does nothing.
        """
        self._enter()
        try:
            await self._opened()
        finally:
            self._leave()
        return self

    async def close(self) -> None:
        """Wait for the calls in flight, close the wrapped persister, stop the threads.

        Calls made once ``close`` has begun are refused. Closing again does nothing (a second
        ``close`` during the first waits for it). An opening in progress is waited for, and
        what it opens closed: against a server that doesn't answer, that can take the driver's
        connect timeout. A task cancelled while awaiting ``close`` doesn't stop it: it finishes
        in a thread of its own, even if the event loop ends.
        """
        released = self._released
        if released is not None and released.done():
            return
        self._begin_close()
        while self._released is None:  # calls in flight: the last one to end starts it
            await asyncio.wait({self._idle_future()})
        # Shielded: a cancelled close() leaves the closing to its thread.
        await asyncio.shield(asyncio.wrap_future(self._released))

    async def __aenter__(self) -> Self:
        try:
            return await self.open()
        except Exception:
            await self.close()
            raise
        except BaseException:  # cancelled (a timeout): don't wait for an opening to end
            self._begin_close()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- running calls --------------------------------------------------------------------

    async def _call(self, work: Callable[[_P], _T]) -> _T:
        """Run ``work`` on the synchronous persister in a worker thread."""
        self._enter()
        try:
            sync = await self._opened()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, work, sync)
        finally:
            self._leave()

    async def _opened(self) -> _P:
        """The synchronous persister, once it is open."""
        return self.sync

    def _enter(self) -> None:
        """Count a call in flight, unless the persister is closed."""
        if self._closing:
            raise PersistError(f"{self._sync_name()} is closed; open a new one")
        self._active += 1

    def _leave(self) -> None:
        self._active -= 1
        if self._active == 0 and self._closing:
            self._begin_close()

    def _sync_name(self) -> str:
        """The class name the closed persister's error gives (the synchronous persister's)."""
        return type(self.sync).__name__

    def _begin_close(self) -> None:
        """Refuse new calls; once none is in flight, start the release (once)."""
        self._closing = True
        if self._active or self._released is not None:
            return
        # A thread of its own, not on our executor (the release waits for its threads, including
        # any still running a call whose task was cancelled, or an opening) nor on the loop's
        # default one (shut down when the loop ends).
        closer = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{_THREAD_NAME_PREFIX}_close"
        )
        self._released = closer.submit(self._release)
        closer.shutdown(wait=False)
        idle = self._idle
        if idle is not None and not idle.done() and not idle.get_loop().is_closed():
            idle.set_result(None)

    def _idle_future(self) -> asyncio.Future[None]:
        """A future of the running loop, done once the release has started."""
        loop = asyncio.get_running_loop()
        idle = self._idle
        if idle is None or idle.done() or idle.get_loop() is not loop:
            idle = self._idle = loop.create_future()
        return idle

    def _release(self) -> None:
        """Stop the threads (after their work), then close the persister (in a thread)."""
        self._executor.shutdown(wait=True)
        if self._sync is not None:
            self._sync.close()


class AsyncSQLPersister(AsyncPersister[SQLPersister]):
    """An asyncio :class:`~streamcheckpoint.SQLPersister`: see :class:`AsyncPersister`.

    The arguments are ``SQLPersister``'s (``url_or_engine``, ``schema``, ``migrate``,
    ``monotonic``, ``engine_options``) plus ``max_workers``, the number of worker threads. The
    constructor checks them as ``SQLPersister`` does (a bad URL, schema or option raises
    ``TypeError``/``ValueError`` there), and does no I/O. The ``SQLPersister`` (which connects
    and, with ``migrate=True``, upgrades the schema) is created in a worker thread on first use:
    by ``await persister.open()``, by ``async with``, or by the first call; tasks calling at once
    share one opening. What opening raises (a server that can't be reached:
    :class:`~streamcheckpoint.errors.PersistConnectionError`; ``migrate=False`` on a database
    that isn't current: :class:`~streamcheckpoint.errors.SchemaError`, naming the command to
    run) is raised by the awaited call that opened, and the next call tries again.
    :attr:`engine` and :attr:`sync` are available once it is open.

    Each call then runs on the ``SQLPersister`` in a worker thread: its guarantees are the
    synchronous ones (one upsert per write, one transaction per ``write_many``, the monotonic
    check inside the statement). A cancelled write may or may not have been stored; read it
    back to know.
    """

    def __init__(
        self,
        url_or_engine: UrlOrEngine,
        *,
        max_workers: int = 4,
        schema: str | None = None,
        migrate: bool = True,
        monotonic: bool = False,
        read_only: bool = False,
        **engine_options: Any,
    ) -> None:
        check_arguments(url_or_engine, schema, migrate, monotonic, engine_options)
        check_bool("read_only", read_only)
        self._start(max_workers)
        self._url_or_engine = url_or_engine
        self._schema = schema
        self._migrate = migrate
        self._monotonic = monotonic
        self._read_only = read_only
        self._engine_options = engine_options
        # The opening runs on the executor and belongs to no event loop: it survives the loop
        # that started it, and sets _sync from its thread. _waiting is the opening as a future
        # of the loop in use, which its callers share (they also share a failure: it is
        # forgotten, so that the next call tries again, once the loop has delivered it).
        self._opening: Future[SQLPersister] | None = None
        self._waiting: asyncio.Future[SQLPersister] | None = None
        self._open_lock = threading.Lock()  # between the loop and the opening thread

    def __repr__(self) -> str:
        if self._sync is not None:
            return f"{type(self).__name__}({self._sync!r})"
        where = self._url_or_engine
        url = mask_url(where.url if isinstance(where, sa.Engine) else where)
        schema = "" if self._schema is None else f", schema={self._schema!r}"
        state = "closed" if self.closed else "not open yet"
        return f"{type(self).__name__}({url!r}{schema}, monotonic={self._monotonic}, {state})"

    @property
    def engine(self) -> sa.Engine:
        """The engine in use (once open)."""
        return self.sync.engine

    @property
    def monotonic(self) -> bool:
        """Whether a write moving a checkpoint backwards is refused."""
        return self._monotonic

    @property
    def read_only(self) -> bool:
        """Whether the store is opened only to read (writes and deletes are refused)."""
        return self._read_only

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema or MySQL database of the table (``None``: the default)."""
        return self._schema

    async def _opened(self) -> SQLPersister:
        sync = self._sync
        if sync is not None:
            return sync
        waiting = self._join_opening()
        if isinstance(waiting, SQLPersister):
            return waiting
        # Shielded: a caller cancelled while it waits doesn't cancel the others' opening.
        return await asyncio.shield(waiting)

    def _join_opening(self) -> SQLPersister | asyncio.Future[SQLPersister]:
        """The open persister, or the opening in progress as a future of the running loop.

        An opening is started if there is none, or if the one there failed while another
        loop (which has ended) was waiting for it.
        """
        loop = asyncio.get_running_loop()
        with self._open_lock:
            if self._sync is not None:
                return self._sync
            waiting = self._waiting
            if waiting is not None and waiting.get_loop() is loop:
                return waiting
            opening = self._opening
            if opening is None or _failed(opening):  # (a success would have set _sync)
                opening = self._opening = self._executor.submit(self._open_in_thread)
            waiting = self._waiting = asyncio.wrap_future(opening)
        waiting.add_done_callback(partial(self._opening_delivered, opening))
        return waiting

    def _create(self) -> SQLPersister:
        """Open the synchronous persister (in a worker thread: it connects and migrates)."""
        return SQLPersister(
            self._url_or_engine,
            schema=self._schema,
            migrate=self._migrate,
            monotonic=self._monotonic,
            read_only=self._read_only,
            **self._engine_options,
        )

    def _open_in_thread(self) -> SQLPersister:
        """Open, and set ``_sync`` before any loop hears of it (or the executor can stop).

        So ``sync`` is set once a caller has the result, and close() always finds (and
        closes) what an opening made, whichever loop, if any, is still running.
        """
        sync = self._create()
        with self._open_lock:
            self._sync = sync
            self._opening = None
        return sync

    def _opening_delivered(
        self, opening: Future[SQLPersister], waiting: asyncio.Future[SQLPersister]
    ) -> None:
        # On the loop, once the opening's callers there have its outcome: a failure is
        # forgotten, so that the next call tries again.
        with self._open_lock:
            if self._waiting is waiting:
                self._waiting = None
            if self._opening is opening and _failed(opening):
                self._opening = None

    def _sync_name(self) -> str:
        return SQLPersister.__name__


async def open_async_persister(
    url: str, *, max_workers: int = 4, **options: Any
) -> AsyncPersister[BasePersister]:
    """Open :func:`~streamcheckpoint.open_persister`'s persister in a thread and wrap it.

    ``url`` and ``options`` are ``open_persister``'s (``memory://``, ``file:``, SQL URLs);
    ``max_workers`` is :class:`AsyncPersister`'s. Raises what opening raises.
    """
    _check_max_workers(max_workers)
    handover = _Handover(partial(open_persister, url, **options))
    opening = asyncio.get_running_loop().run_in_executor(None, handover.open)
    try:
        persister = await asyncio.shield(opening)
    except BaseException:  # cancelled: whoever of the thread and us comes second closes it
        handover.abandon()
        raise
    return AsyncPersister(persister, max_workers=max_workers)


class _Handover:
    """A persister opened in a thread for a caller that may leave (be cancelled) meanwhile.

    Whichever comes second closes it: the thread, if the caller has left by the time it is
    open, else the caller as it leaves. Neither depends on the event loop, which may be ending.
    """

    def __init__(self, opener: Callable[[], BasePersister]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._opened: BasePersister | None = None
        self._abandoned = False

    def open(self) -> BasePersister:
        """Open the persister (in a worker thread); close it if the caller has left."""
        persister = self._opener()
        with self._lock:
            self._opened = persister
            abandoned = self._abandoned
        if abandoned:
            persister.close()
        return persister

    def abandon(self) -> None:
        """The caller leaves: close the persister if it is open already (in a thread)."""
        with self._lock:
            self._abandoned = True
            opened = self._opened
        if opened is not None:
            name = f"{_THREAD_NAME_PREFIX}_close"
            threading.Thread(target=opened.close, name=name).start()


# -- helpers ------------------------------------------------------------------------------


def _snapshot(items: CheckpointItems) -> CheckpointItems:
    """A copy of ``write_many``'s argument, taken on the loop when the call is made.

    So no other task can change it while a thread reads it, and an iterator is consumed by the
    caller's thread. What is not a collection of pairs at all is refused here, as the
    synchronous API refuses it.
    """
    given: object = items  # checked for what it is, not for what it is declared to be
    if isinstance(given, Mapping):
        return dict(given)
    if isinstance(given, Iterable) and not isinstance(given, (str, bytes)):
        pairs: builtins.list[Any] = [_copy_pair(pair) for pair in given]
        return pairs
    normalize_items(items)  # raises the synchronous API's TypeError
    return items


def _copy_pair(pair: object) -> object:
    """``pair`` with the lists in it (the pair, its key) copied; what else it holds can't change.

    Lists stay lists, so an invalid pair's error message is the one the original would get.
    """
    if type(pair) is list:
        copied = pair[:]
        if copied and type(copied[0]) is list:
            copied[0] = copied[0][:]
        return copied
    if type(pair) is tuple and pair and type(pair[0]) is list:
        return (pair[0][:], *pair[1:])
    return pair


def _failed(opening: Future[Any]) -> bool:
    """Whether a finished ``opening`` failed (an unfinished one has not)."""
    return opening.done() and (opening.cancelled() or opening.exception() is not None)


def _check_max_workers(max_workers: object) -> None:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
