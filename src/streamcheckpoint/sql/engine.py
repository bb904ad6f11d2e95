"""Creating the engine a :class:`~streamcheckpoint.sql.SQLPersister` uses.

A URL becomes an engine configured for the database (see :mod:`.dialects`); an engine the
caller made is used as it is. Bad URLs, unsupported databases and missing drivers are clear
errors here, before anything connects.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ..errors import PersistError
from ..urls import bad_url_message, mask_url
from .dialects import Dialect, dialect_for_engine, dialect_for_url

__all__ = ["open_engine", "parse_url", "shared_connection_lock"]

# Bare scheme names people use for PostgreSQL; SQLAlchemy would pick psycopg2 for the first and
# refuses the second. Both mean psycopg 3 here.
_POSTGRESQL_ALIASES = ("postgresql", "postgres")


def parse_url(url: str | sa.URL) -> sa.URL:
    """Parse ``url``; ``ValueError`` naming the (masked) URL and the supported forms if bad."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ValueError(bad_url_message(str(url), f"it is not a URL ({exc})")) from exc
    if parsed.drivername in _POSTGRESQL_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def open_engine(
    url_or_engine: str | sa.URL | sa.Engine, engine_options: dict[str, Any]
) -> tuple[sa.Engine, Dialect, bool]:
    """Return ``(engine, dialect, created)`` for what SQLPersister was given.

    ``created`` says whether the engine was made here (and must be disposed of by its user).
    """
    if isinstance(url_or_engine, sa.Engine):
        if engine_options:
            raise TypeError(
                f"engine options ({', '.join(sorted(engine_options))}) only apply when "
                "SQLPersister creates the engine from a URL; configure your engine instead"
            )
        return url_or_engine, dialect_for_engine(url_or_engine), False
    if not isinstance(url_or_engine, (str, sa.URL)):
        raise TypeError(
            "url_or_engine must be a URL (str or sqlalchemy.URL) or a sqlalchemy.Engine, not "
            f"{type(url_or_engine).__name__}"
        )
    url = parse_url(url_or_engine)
    try:
        dialect = dialect_for_url(url)
    except ValueError as exc:
        raise ValueError(bad_url_message(str(url_or_engine), str(exc))) from exc
    url, arguments, on_connect = dialect.configure(url, engine_options)
    try:
        engine = sa.create_engine(url, **arguments)
    except ImportError as exc:
        raise PersistError(
            f"can't open {mask_url(str(url_or_engine))}: the {dialect.driver} driver is not "
            f"installed ({exc}); install it, e.g. pip install 'streamcheckpoint[postgres]'"
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"can't open {mask_url(str(url_or_engine))}: {exc}") from exc
    if on_connect is not None:
        sa.event.listen(engine, "connect", on_connect)
    return engine, dialect, True


_shared_locks: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_shared_locks_guard = threading.Lock()


def shared_connection_lock(engine: sa.Engine) -> threading.RLock | None:
    """The lock serializing every use of an engine that has only one connection, else None.

    An in-memory SQLite engine (``StaticPool``) hands the same connection to every user, so
    persisters sharing it must not interleave their transactions.
    """
    if not isinstance(engine.pool, StaticPool):
        return None
    with _shared_locks_guard:
        lock = _shared_locks.get(engine)
        if lock is None:
            lock = _shared_locks[engine] = threading.RLock()
        return lock
