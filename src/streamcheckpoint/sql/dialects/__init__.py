"""The databases SQLPersister supports, one module each, and finding the one a URL or engine uses.

SQLite through the standard library's ``sqlite3`` (:mod:`.sqlite`), PostgreSQL through psycopg 3
(:mod:`.postgresql`), MySQL/MariaDB through PyMySQL (:mod:`.mysql`); :mod:`.base` is what each
must provide.
"""

from __future__ import annotations

import sqlalchemy as sa

from .base import Dialect, Failure
from .mysql import MySQLDialect
from .postgresql import PostgreSQLDialect
from .sqlite import SQLiteDialect

__all__ = [
    "DIALECTS",
    "Dialect",
    "Failure",
    "MySQLDialect",
    "PostgreSQLDialect",
    "SQLiteDialect",
    "dialect_for_engine",
    "dialect_for_url",
    "supported_text",
]

DIALECTS: tuple[Dialect, ...] = (SQLiteDialect(), PostgreSQLDialect(), MySQLDialect())
"""Every supported database."""


def supported_text() -> str:
    """The supported databases and their URLs, for messages."""
    return ", ".join(f"{d.name} through {d.driver} ({d.url_example})" for d in DIALECTS)


def dialect_for_url(url: sa.URL) -> Dialect:
    """The :class:`Dialect` for a parsed URL; ``ValueError`` if it isn't supported."""
    backend, _, driver = url.drivername.partition("+")
    for dialect in DIALECTS:
        if backend in dialect.names:
            if driver not in ("", dialect.driver):
                raise ValueError(
                    f"the driver {driver!r} is not supported for {backend}; "
                    f"use {backend}+{dialect.driver}:// ({dialect.url_example})"
                )
            return dialect
    raise ValueError(f"the database {backend!r} is not supported")


def dialect_for_engine(engine: sa.Engine) -> Dialect:
    """The :class:`Dialect` for an existing engine; ``ValueError`` if it isn't supported."""
    name, driver = engine.dialect.name, engine.dialect.driver
    for dialect in DIALECTS:
        if name in dialect.names and driver == dialect.driver:
            return dialect
    raise ValueError(
        f"streamcheckpoint can't use an engine for {name}+{driver}; supported: {supported_text()}"
    )
