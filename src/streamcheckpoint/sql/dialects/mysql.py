"""MySQL and MariaDB through PyMySQL: everything SQLPersister does differently there.

**The key.** InnoDB keys are at most 3072 bytes, and four ``VARCHAR(256)`` in ``utf8mb4`` need
4096. So the table is keyed on ``key_hash``, the SHA-256 of the four components joined by NUL
(which a component can't contain), and a ``CHECK`` constraint holds it to that, so a row written
by hand with a wrong hash is refused. The key columns use a binary, no-pad collation, so names
that differ in case or trailing spaces stay distinct. Writes and reads by key bind the hash,
computed in Python from the key's UTF-8 bytes, so a connection in another character set can't
make a read miss what a write stored. ``updated_at`` is ``UTC_TIMESTAMP(6)``; timestamps are
``DATETIME(6)`` in UTC.

**Monotonic writes.** ``INSERT ... ON DUPLICATE KEY UPDATE`` has no ``WHERE``: the monotonic
upsert keeps a row whose sequence number is higher by assigning every column its own value, and
SQLAlchemy's MySQL dialects always report rows found rather than changed, so a refused write
can't be told from a new row by its row count. Monotonic writes therefore run in a transaction
that reads the written rows back before it commits (``BEGIN``, one query per 500 keys,
``COMMIT``).

**Engines.** One SQLPersister creates is pooled with ``pool_pre_ping`` (so a server restart costs
no call) and ``pool_recycle=3600`` (MySQL drops connections idle for ``wait_timeout``), and
connects with ``charset=utf8mb4``, ``connect_timeout=10``, ``read_timeout=30`` and
``write_timeout=30`` (seconds: every query, whatever the server does) and
``innodb_lock_wait_timeout=20`` (``init_command``) unless the URL or ``connect_args`` say
otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ...checkpoint import PartitionKey
from ...errors import PersistError
from ..schema import (
    KEY_COLUMN_NAMES,
    OWNERSHIPS_TABLE_NAME,
    TABLE_NAME,
    UTCTimestamp,
    as_utc,
    checkpoint_columns,
    ownership_columns,
)
from .base import (
    CONNECT_TIMEOUT_S,
    QUERY_TIMEOUT_S,
    UPDATED_COLUMNS,
    WRITE_PARAMS,
    Dialect,
    EngineHooks,
    Failure,
    Pairs,
    with_connect_defaults,
)

__all__ = ["KEY_HASH_SQL", "MYSQL_MIGRATION_LOCK", "MySQLDialect", "MySQLTimestamp", "key_hash"]

MYSQL_MIGRATION_LOCK = "streamcheckpoint_migration"
"""``GET_LOCK`` name every streamcheckpoint process migrates under on MySQL/MariaDB."""

_MIGRATION_WAIT_S = 600

_CLOCK = "UTC_TIMESTAMP(6)"

KEY_HASH_SQL = (
    "key_hash = UNHEX(SHA2(CONCAT_WS(X'00', namespace, name, consumer_group, partition_id), 256))"
)
"""The rule ``key_hash`` follows, as the CHECK constraint states it."""

_READBACK_CHUNK = 500
"""How many keys a monotonic batch reads back per query."""

# Can't connect, refused (access, host, limits), server gone away, lost connection, and the like.
_GONE_CODES = frozenset(
    {1040, 1044, 1045, 1049, 1053, 1129, 1130, 1203, 1226, 1698, 1927}
    | {2002, 2003, 2005, 2006, 2013, 2026, 2059, 2061, 4031}
)
# Deadlock (the transaction was rolled back): run it again. A lock wait that timed out (1205)
# is not: whoever holds the row has held it for LOCK_WAIT_S already.
_TRANSIENT_CODES = frozenset({1213})

LOCK_WAIT_S = QUERY_TIMEOUT_S * 2 // 3
"""``innodb_lock_wait_timeout`` of our sessions: a lock wait ends with its own error (1205)
before the query's read timeout cuts the connection."""

_CONNECT_DEFAULTS = {
    "charset": "utf8mb4",
    "connect_timeout": CONNECT_TIMEOUT_S,
    # PyMySQL's connect_timeout covers the TCP connect only: these bound the handshake and
    # every query, whatever the server does (or doesn't).
    "read_timeout": QUERY_TIMEOUT_S,
    "write_timeout": QUERY_TIMEOUT_S,
    "init_command": f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_S}",
}
"""PyMySQL arguments of the engines SQLPersister creates, unless the URL or ``connect_args``
give them."""
# Server errors for a missing table or column.
_SCHEMA_CODES = frozenset({1146, 1054})


def key_hash(key: Sequence[str]) -> bytes:
    """The ``key_hash`` of a key: SHA-256 of its components joined by NUL."""
    return hashlib.sha256("\0".join(key).encode()).digest()


class MySQLTimestamp(UTCTimestamp):
    """``DATETIME(6)`` holding UTC: naive datetimes at the driver."""

    impl = mysql.DATETIME(fsp=6)
    cache_ok = True

    @staticmethod
    def to_db(value: datetime) -> datetime:
        return as_utc(value).replace(tzinfo=None)


def _hashed_table() -> sa.Table:
    return sa.Table(
        TABLE_NAME,
        sa.MetaData(),
        sa.Column("key_hash", mysql.BINARY(32), nullable=False),
        *checkpoint_columns(
            MySQLTimestamp(),
            offset_type=mysql.LONGTEXT(),
            updated_default=sa.text("(UTC_TIMESTAMP(6))"),
        ),
        sa.PrimaryKeyConstraint("key_hash"),
        sa.Index("ix_checkpoints_group", "namespace", "name", "consumer_group"),
        sa.CheckConstraint(sa.text(KEY_HASH_SQL), name="ck_checkpoints_key_hash"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def _hashed_ownerships(checkpoints: sa.Table) -> sa.Table:
    """``ownerships``, keyed like ``checkpoints`` (on the hash), in its metadata."""
    return sa.Table(
        OWNERSHIPS_TABLE_NAME,
        checkpoints.metadata,
        sa.Column("key_hash", mysql.BINARY(32), nullable=False),
        *ownership_columns(MySQLTimestamp(), modified_default=sa.text(f"({_CLOCK})")),
        sa.PrimaryKeyConstraint("key_hash"),
        sa.Index("ix_ownerships_group", "namespace", "name", "consumer_group"),
        sa.CheckConstraint(sa.text(KEY_HASH_SQL), name="ck_ownerships_key_hash"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


class MySQLDialect(Dialect):
    """MySQL and MariaDB through PyMySQL (see the module documentation)."""

    name = "mysql"
    aliases = ("mariadb",)
    ddl_commits_at_once = True
    driver = "pymysql"
    url_example = "mysql+pymysql://user:password@host:3306/dbname"
    extra = "mysql"
    # SQLAlchemy picks mysqlclient (MySQLdb) for these.
    bare_names = ("mysql", "mariadb")
    default_port = 3306
    table: ClassVar[sa.Table] = _hashed_table()
    ownerships: ClassVar[sa.Table] = _hashed_ownerships(table)
    timestamp = MySQLTimestamp
    key_params = ("p_key_hash",)
    upsert_params = ("p_key_hash", *WRITE_PARAMS)
    confirms_in_transaction = True

    def upserts(self, values: Mapping[str, Any]) -> tuple[sa.Insert, sa.Insert]:
        table = self.table
        # key_hash first; updated_at is left to the column's default on insert, so that the
        # VALUES list is nothing but placeholders: PyMySQL then sends an executemany as one
        # multi-row INSERT.
        hashed = {"key_hash": sa.bindparam(self.key_params[0], type_=table.c.key_hash.type)}
        hashed.update(values)
        insert = mysql.insert(table).values(**hashed)
        new = insert.inserted
        clock: sa.ColumnElement[Any] = new.updated_at if "updated_at" in values else self.clock()
        changes = [(name, new[name]) for name in UPDATED_COLUMNS if name != "updated_at"]
        upsert = insert.on_duplicate_key_update([*changes, ("updated_at", clock)])
        # Assignments run left to right and see the ones before them: the sequence number,
        # which every condition reads, is assigned last.
        accepted = table.c.sequence_number <= new.sequence_number
        guarded = [
            (name, sa.case((accepted, value), else_=table.c[name]))
            for name, value in [*changes[:-1], ("updated_at", clock), changes[-1]]
        ]
        return upsert, insert.on_duplicate_key_update(guarded)

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.literal_column(_CLOCK)

    def insert_if_absent(self, table: sa.Table, values: Mapping[str, Any]) -> sa.Insert:
        # IGNORE turns only a taken key into "0 rows" here: every other value is checked in
        # Python first (lengths, the hash), so nothing else can be ignored.
        hashed = {"key_hash": sa.bindparam(self.key_params[0], type_=table.c.key_hash.type)}
        hashed.update(values)
        return mysql.insert(table).values(**hashed).prefix_with("IGNORE")

    def key_filter(
        self, length: int, table: sa.Table | None = None
    ) -> list[sa.ColumnElement[bool]]:
        if length == len(KEY_COLUMN_NAMES):
            column = (self.table if table is None else table).c.key_hash
            return [column == sa.bindparam(self.key_params[0], type_=column.type)]
        return super().key_filter(length, table)

    def write_rows(self, pairs: Pairs) -> list[tuple[Any, ...]]:
        rows = super().write_rows(pairs)
        return [(key_hash(key), *row) for (key, _), row in zip(pairs, rows, strict=True)]

    def key_values(self, key: PartitionKey) -> Sequence[Any]:
        return (key_hash(key),)

    def row_key(self, key: PartitionKey) -> tuple[Any, ...]:
        return (key_hash(key), *key)

    def none_refused(self, connection: sa.Connection, pairs: Pairs, rowcount: int) -> bool:
        """Read back, in the write's transaction, whether a stored row is ahead of ours."""
        column = self.table.c.key_hash
        query = sa.select(column, self.table.c.sequence_number).where(
            column.in_(sa.bindparam("hashes", expanding=True))
        )
        for start in range(0, len(pairs), _READBACK_CHUNK):
            chunk = pairs[start : start + _READBACK_CHUNK]
            hashes = [key_hash(key) for key, _ in chunk]
            stored = {row[0]: row[1] for row in connection.execute(query, {"hashes": hashes})}
            for (_, checkpoint), hashed in zip(chunk, hashes, strict=True):
                sequence_number = stored.get(hashed)
                if sequence_number is None or sequence_number > checkpoint.sequence_number:
                    return False
        return True

    def check_schema(self, schema: str | None, url: sa.URL | None = None) -> None:
        super().check_schema(schema, url)
        if schema is None and url is not None and not url.database:
            raise ValueError(
                f"the MySQL URL {url.render_as_string(hide_password=True)} names no database: "
                f"add one ({self.url_example}) or pass schema='dbname'"
            )

    def configure(
        self, url: sa.URL, options: dict[str, Any], *, read_only: bool = False
    ) -> tuple[sa.URL, dict[str, Any], EngineHooks]:
        arguments = with_connect_defaults(url, options, _CONNECT_DEFAULTS)
        arguments.setdefault("pool_pre_ping", True)
        arguments.setdefault("pool_recycle", 3600)
        return url, arguments, {}

    def take_migration_lock(self, connection: sa.Connection) -> None:
        # A session-level lock: release_migration_lock() gives it back after the transaction.
        got = connection.execute(
            sa.select(sa.func.get_lock(MYSQL_MIGRATION_LOCK, _MIGRATION_WAIT_S))
        ).scalar()
        if got != 1:
            raise PersistError(
                f"timed out after {_MIGRATION_WAIT_S} s waiting for the migration lock "
                f"{MYSQL_MIGRATION_LOCK!r} (another process is migrating, or holds it)"
            )

    def release_migration_lock(self, connection: sa.Connection) -> None:
        connection.execute(sa.select(sa.func.release_lock(MYSQL_MIGRATION_LOCK)))
        connection.commit()

    def is_transient(self, error: BaseException) -> bool:
        return _code(error) in _TRANSIENT_CODES

    def classify(self, error: BaseException) -> Failure:
        import pymysql

        code = _code(error)
        if code in _SCHEMA_CODES:
            return "schema"
        if isinstance(error, pymysql.InterfaceError) or code in _GONE_CODES:
            return "connection"
        return "other"


def _code(error: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error."""
    code = error.args[0] if error.args else None
    return code if isinstance(code, int) else None
