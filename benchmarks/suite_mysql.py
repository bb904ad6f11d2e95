"""SQLPersister on MariaDB/MySQL against PyMySQL running the same statements by hand.

Each contender gets a database of its own, made by streamcheckpoint's migrations, so the floor
writes the very table SQLPersister writes: keyed on ``key_hash``, with its CHECK constraint and
group index (see ``streamcheckpoint.sql.schema``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from streamcheckpoint import AsyncSQLPersister, Checkpoint, PartitionKey, SQLPersister
from streamcheckpoint.sql import migrations as m
from streamcheckpoint.sql.dialects.mysql import key_hash

from .cases import READ, WRITE, batch_case, compare, list_case, missing
from .workload import (
    ASYNC_NOTE,
    COLUMNS,
    GROUP_MATCH,
    HUB,
    LIST_GROUP,
    NAMESPACE,
    Context,
    OurContenders,
    Plan,
    group_items,
    open_async,
    suite_event_loop,
    unique_name,
)

__all__ = ["run"]

TITLE = "MariaDB (SQLPersister: autocommit single writes, one transaction per write_many)"

_UPSERT = (
    "INSERT INTO checkpoints (key_hash, namespace, name, consumer_group, partition_id, "
    "stream_offset, sequence_number, enqueue_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE stream_offset = VALUES(stream_offset), "
    "enqueue_time = VALUES(enqueue_time), sequence_number = VALUES(sequence_number), "
    "updated_at = UTC_TIMESTAMP(6)"
)
_SELECT = "SELECT stream_offset, sequence_number, enqueue_time FROM checkpoints WHERE key_hash = %s"
_LIST = f"SELECT {COLUMNS} FROM checkpoints WHERE " + GROUP_MATCH.format(p="%s")


def run(ctx: Context) -> None:
    """Write, write_many, read and list, if the server answers."""
    section = ctx.report.section(TITLE)
    connect = _connector(ctx)
    if isinstance(connect, str):
        missing(section, "SQLPersister", connect)
        return
    admin = connect(None, True)
    ctx.cleanup.callback(admin.close)
    with admin.cursor() as cursor:
        cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
        version, flush = cursor.fetchone()
    ctx.report.environment["MariaDB"] = f"{version} (innodb_flush_log_at_trx_commit={flush})"
    url = sa.make_url(ctx.mysql_url)
    purposes = ("raw", "ours", "monotonic", "async")
    databases = {name: _database(ctx, admin, url, name) for name in purposes}
    loop = suite_event_loop(ctx)
    aio = open_async(ctx, loop, AsyncSQLPersister(databases["async"]))
    ours = SQLPersister(databases["ours"])
    ctx.cleanup.callback(ours.close)
    guarded = SQLPersister(databases["monotonic"], monotonic=True)
    ctx.cleanup.callback(guarded.close)
    raw_database = sa.make_url(databases["raw"]).database
    floor = _Floor(
        connect(raw_database, True), connect(raw_database, False), Plan.build(ctx.settings)
    )
    ctx.cleanup.callback(floor.close)
    settings = ctx.settings
    contenders = OurContenders(floor.plan, ours, guarded, aio, loop)
    compare(
        ctx,
        section,
        WRITE,
        {
            "PyMySQL autocommit (floor)": floor.write,
            "PyMySQL, BEGIN ... COMMIT per write": floor.write_and_commit,
            **contenders.writes(),
        },
        calls=settings.writes,
        targets={
            "PyMySQL, BEGIN ... COMMIT per write": None,
            "SQLPersister": None,
            "SQLPersister(monotonic=True)": None,
            "AsyncSQLPersister": None,
        },
    )
    compare(
        ctx,
        section,
        batch_case(settings.batch_size),
        {
            "PyMySQL executemany in a transaction (floor)": floor.write_many,
            **contenders.batches(),
        },
        calls=settings.batches,
        targets={"SQLPersister.write_many": None, "AsyncSQLPersister.write_many": None},
    )
    compare(
        ctx,
        section,
        READ,
        {
            "PyMySQL SELECT by key_hash (floor)": floor.read,
            **contenders.reads(),
        },
        calls=settings.writes,
        targets={"SQLPersister.read": None, "AsyncSQLPersister.read": None},
    )
    floor.fill(LIST_GROUP, settings.list_partitions)
    ours.write_many(group_items(LIST_GROUP, settings.list_partitions))
    compare(
        ctx,
        section,
        list_case(settings.list_partitions),
        {
            "PyMySQL SELECT ... fetchall (floor)": floor.list,
            "SQLPersister.list": lambda i: ours.list(NAMESPACE, HUB, LIST_GROUP),
        },
        calls=1,
        targets={"SQLPersister.list": None},
    )
    section.notes.append(ASYNC_NOTE)
    section.notes.append(
        "MariaDB: no targets were set for it; SQLPersister(monotonic=True) runs each write as "
        "a transaction that reads the row back (ON DUPLICATE KEY UPDATE has no WHERE)."
    )


class _Floor:
    """The same work as SQLPersister does, by hand with PyMySQL, on the same table."""

    def __init__(self, autocommit: Any, in_transaction: Any, plan: Plan) -> None:
        self.autocommit = autocommit
        self.in_transaction = in_transaction
        self.plan = plan

    @staticmethod
    def values(key: PartitionKey, cp: Checkpoint) -> tuple[Any, ...]:
        when = None if cp.enqueue_time is None else cp.enqueue_time.replace(tzinfo=None)
        # DATETIME has no zone: UTC.
        return (key_hash(key), *key, cp.offset, cp.sequence_number, when)

    def write(self, i: int) -> None:
        with self.autocommit.cursor() as cursor:
            cursor.execute(_UPSERT, self.values(*self.plan.writes[i]))

    def write_and_commit(self, i: int) -> None:
        self.in_transaction.begin()
        with self.in_transaction.cursor() as cursor:
            cursor.execute(_UPSERT, self.values(*self.plan.writes[i]))
        self.in_transaction.commit()

    def write_many(self, i: int) -> None:
        self._many(self.plan.batches[i].items())

    def _many(self, items: Iterable[tuple[PartitionKey, Checkpoint]]) -> None:
        self.in_transaction.begin()
        with self.in_transaction.cursor() as cursor:
            cursor.executemany(_UPSERT, [self.values(key, cp) for key, cp in items])
        self.in_transaction.commit()

    def fill(self, group: str, count: int) -> None:
        self._many(group_items(group, count))

    def read(self, i: int) -> None:
        with self.autocommit.cursor() as cursor:
            cursor.execute(_SELECT, (key_hash(self.plan.writes[i][0]),))
            cursor.fetchone()

    def list(self, i: int) -> None:
        with self.autocommit.cursor() as cursor:
            cursor.execute(_LIST, (NAMESPACE, HUB, LIST_GROUP))
            cursor.fetchall()

    def close(self) -> None:
        self.autocommit.close()
        self.in_transaction.close()


def _database(ctx: Context, admin: Any, url: sa.URL, purpose: str) -> str:
    """A new database at the head revision, dropped at the end; returns its URL."""
    name = unique_name(f"bench_{purpose}")
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    ctx.cleanup.callback(_drop, admin, name)
    database_url = url.set(database=name).render_as_string(hide_password=False)
    m.upgrade(database_url)
    return database_url


def _connector(ctx: Context) -> Callable[[str | None, bool], Any] | str:
    """A function opening PyMySQL connections (database, autocommit), or why it can't."""
    try:
        import pymysql
    except ImportError as exc:
        return f"unavailable: PyMySQL is not installed ({exc})"
    url = sa.make_url(ctx.mysql_url)

    def connect(database: str | None, autocommit: bool) -> Any:
        return pymysql.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=database,
            autocommit=autocommit,
            connect_timeout=5,
            charset="utf8mb4",
        )

    try:
        connect(url.database, True).close()
    except pymysql.Error as exc:
        return f"unavailable: {url.render_as_string(hide_password=True)} unreachable ({exc})"
    return connect


def _drop(connection: Any, database: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
