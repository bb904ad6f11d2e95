"""MariaDB: the PyMySQL floor only; SQLPersister can't create its table there yet."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from streamcheckpoint import Checkpoint, PartitionKey

from .cases import READ, WRITE, batch_case, compare, list_case, missing
from .workload import (
    COLUMNS,
    GROUP_MATCH,
    HUB,
    KEY_MATCH,
    LIST_GROUP,
    NAMESPACE,
    Context,
    Plan,
    group_items,
    unique_name,
)

__all__ = ["run"]

NOT_YET = (
    "revision 0001 can't be created on MariaDB: 4 x VARCHAR(256) utf8mb4 exceeds InnoDB's "
    "3072-byte key limit"
)
# Key columns of 190 characters: 4 x 190 x 4 bytes fits InnoDB's 3072-byte key limit.
_TABLE = """CREATE TABLE {table} (
    namespace VARCHAR(190) NOT NULL, name VARCHAR(190) NOT NULL,
    consumer_group VARCHAR(190) NOT NULL, partition_id VARCHAR(190) NOT NULL,
    stream_offset TEXT NOT NULL, sequence_number BIGINT NOT NULL,
    enqueue_time DATETIME(6) NULL, updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (namespace, name, consumer_group, partition_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def run(ctx: Context) -> None:
    """Write, write_many, read and list with PyMySQL, if the server answers."""
    section = ctx.report.section("MariaDB (raw PyMySQL floor)")
    missing(section, "SQLPersister", "not yet implemented", NOT_YET)
    connect = _connector(ctx)
    if isinstance(connect, str):
        missing(section, "raw PyMySQL", connect)
        return
    autocommit = connect(True)
    ctx.cleanup.callback(autocommit.close)
    table = unique_name("bench")
    with autocommit.cursor() as cursor:
        cursor.execute(_TABLE.format(table=table))
        cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
        version, flush = cursor.fetchone()
    ctx.cleanup.callback(_drop, autocommit, table)
    ctx.report.environment["MariaDB"] = f"{version} (innodb_flush_log_at_trx_commit={flush})"
    in_transaction = connect(False)
    ctx.cleanup.callback(in_transaction.close)
    floor = _Floor(table, autocommit, in_transaction, Plan.build(ctx.settings))
    settings = ctx.settings
    compare(
        ctx,
        section,
        WRITE,
        {
            "PyMySQL autocommit (floor)": floor.write,
            "PyMySQL, commit per write": floor.write_and_commit,
        },
        calls=settings.writes,
        targets={"PyMySQL, commit per write": None},
    )
    compare(
        ctx,
        section,
        batch_case(settings.batch_size),
        {"PyMySQL executemany in a transaction (floor)": floor.write_many},
        calls=settings.batches,
        targets={},
    )
    compare(
        ctx,
        section,
        READ,
        {"PyMySQL SELECT (floor)": floor.read},
        calls=settings.writes,
        targets={},
    )
    floor.fill(LIST_GROUP, settings.list_partitions)
    compare(
        ctx,
        section,
        list_case(settings.list_partitions),
        {"PyMySQL SELECT ... fetchall (floor)": floor.list},
        calls=1,
        targets={},
    )


class _Floor:
    """The same work as SQLPersister does, by hand with PyMySQL."""

    def __init__(self, table: str, autocommit: Any, in_transaction: Any, plan: Plan) -> None:
        self.autocommit = autocommit
        self.in_transaction = in_transaction
        self.plan = plan
        self.upsert = (
            f"INSERT INTO {table} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, NOW(6)) "
            "ON DUPLICATE KEY UPDATE stream_offset = VALUES(stream_offset), "
            "sequence_number = VALUES(sequence_number), enqueue_time = VALUES(enqueue_time), "
            "updated_at = VALUES(updated_at)"
        )
        self.select = (
            f"SELECT stream_offset, sequence_number, enqueue_time FROM {table} WHERE "
            + KEY_MATCH.format(p="%s")
        )
        self.listing = f"SELECT {COLUMNS} FROM {table} WHERE " + GROUP_MATCH.format(p="%s")

    @staticmethod
    def values(key: PartitionKey, cp: Checkpoint) -> tuple[Any, ...]:
        when = None if cp.enqueue_time is None else cp.enqueue_time.replace(tzinfo=None)
        return (*key, cp.offset, cp.sequence_number, when)  # DATETIME has no zone: UTC

    def write(self, i: int) -> None:
        with self.autocommit.cursor() as cursor:
            cursor.execute(self.upsert, self.values(*self.plan.writes[i]))

    def write_and_commit(self, i: int) -> None:
        with self.in_transaction.cursor() as cursor:
            cursor.execute(self.upsert, self.values(*self.plan.writes[i]))
        self.in_transaction.commit()

    def write_many(self, i: int) -> None:
        self._many(self.plan.batches[i].items())

    def _many(self, items: Iterable[tuple[PartitionKey, Checkpoint]]) -> None:
        with self.in_transaction.cursor() as cursor:
            cursor.executemany(self.upsert, [self.values(key, cp) for key, cp in items])
        self.in_transaction.commit()

    def fill(self, group: str, count: int) -> None:
        self._many(group_items(group, count))

    def read(self, i: int) -> None:
        with self.autocommit.cursor() as cursor:
            cursor.execute(self.select, self.plan.writes[i][0])
            cursor.fetchone()

    def list(self, i: int) -> None:
        with self.autocommit.cursor() as cursor:
            cursor.execute(self.listing, (NAMESPACE, HUB, LIST_GROUP))
            cursor.fetchall()


def _connector(ctx: Context) -> Any:
    """A function opening PyMySQL connections (``autocommit`` argument), or why it can't."""
    try:
        import pymysql
    except ImportError as exc:
        return f"unavailable: PyMySQL is not installed ({exc})"
    url = sa.make_url(ctx.mysql_url)

    def connect(autocommit: bool) -> Any:
        return pymysql.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=url.database,
            autocommit=autocommit,
            connect_timeout=5,
            charset="utf8mb4",
        )

    try:
        connect(True).close()
    except pymysql.Error as exc:
        return f"unavailable: {url.render_as_string(hide_password=True)} unreachable ({exc})"
    return connect


def _drop(connection: Any, table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
