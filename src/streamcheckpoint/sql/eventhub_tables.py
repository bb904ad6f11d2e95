"""The Event Hubs stores' work on a SQLPersister's database: ownerships, fenced and lag writes.

:class:`EventHubTables` runs :mod:`.eventhub_statements` (and SQLPersister's own upserts) on the
persister's connection (:class:`~.connection.KeptConnection`), with the persister's error
translation: a driver error is a :class:`~streamcheckpoint.errors.PersistError` subclass naming
the database with its password masked. It imports nothing of azure-eventhub, so the command line
uses it too (``streamcheckpoint owners``, ``status``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from ..checkpoint import Checkpoint, PartitionKey
from ..errors import OwnershipLostError, PersistError
from .dialects.base import KEY_PARAMS
from .eventhub_statements import (
    ETAG,
    EXPECTED_ETAG,
    LAST_OFFSET,
    LAST_SEQUENCE,
    LAST_TIME,
    MODIFIED,
    OWNER_ID,
    Claim,
    LastEnqueued,
    LastEnqueuedRecord,
    OwnershipRecord,
    compile_eventhub_statements,
    key_bindings,
    last_enqueued_from_row,
    ownership_from_row,
)
from .persister import SQLPersister

__all__ = ["EventHubTables", "new_etag"]

logger = logging.getLogger(__name__)

_ATTEMPTS = 5
"""How many times a guarded write refused by a row that then changed is tried (as SQLPersister)."""


def new_etag() -> str:
    """A new opaque etag: 32 hexadecimal digits, never seen before."""
    return uuid.uuid4().hex


class EventHubTables:
    """Ownership claims, fenced checkpoints and last-enqueued positions on ``persister``'s
    database (which must be at the current schema revision; the persister migrates it).

    Thread-safe as the persister is. It uses the persister's connection, statements and error
    translation, and is closed with it.
    """

    def __init__(self, persister: SQLPersister) -> None:
        self.persister = persister
        """The persister whose database and connection this works on."""
        self._dialect = persister._dialect
        self._sql = compile_eventhub_statements(
            self._dialect, persister.engine.dialect, persister.schema
        )
        self._connection = persister._connection
        self._from_db = self._dialect.timestamp.from_db
        self._to_db = self._dialect.timestamp.to_db
        self._errors = persister._errors
        self._where = persister._where

    # -- ownerships -----------------------------------------------------------------------

    def ownerships(self, prefix: tuple[str, ...]) -> list[OwnershipRecord]:
        """The ownership rows whose key starts with ``prefix`` (0 to 3 components)."""
        statement = self._sql.list_ownerships[len(prefix)]
        try:
            rows = self._connection.run(lambda c: c.exec_driver_sql(statement.sql, prefix).all())
        except self._errors as exc:
            self.persister._fail(exc, "list_ownership", None)
        return [ownership_from_row(row, self._where, self._from_db) for row in rows]

    def claim(self, claims: Sequence[Claim]) -> list[OwnershipRecord]:
        """Claim partitions in one transaction; return the claims that won, with their new etag
        and the database's time (the same for all of them).

        A claim without an etag wins only if nobody has a row for its partition; one with an
        etag only if the row still has that etag. An empty ``owner_id`` releases the partition
        (the row stays). Losers are left out. Rows are locked in key order (no deadlock between
        two processors claiming overlapping partitions).
        """
        if not claims:
            return []
        ordered = sorted(claims, key=lambda claim: claim.key)
        sql, dialect, to_db = self._sql, self._dialect, self._to_db
        won: list[OwnershipRecord] = []

        def body(c: sa.Connection) -> bool:
            won.clear()  # the transaction may run again (a deadlock broken, a connection lost)
            now = self._from_db(c.exec_driver_sql(sql.clock.sql).scalar_one())
            modified = to_db(now)
            inserts: list[tuple[Claim, str, tuple[Any, ...]]] = []
            updates: list[tuple[Claim, str, tuple[Any, ...]]] = []
            for claim in ordered:
                etag = new_etag()
                values = key_bindings(dialect, claim.key)
                values.update({OWNER_ID: claim.owner_id, ETAG: etag, MODIFIED: modified})
                if claim.etag is None:
                    inserts.append((claim, etag, sql.insert_ownership.bind(values)))
                else:
                    values[EXPECTED_ETAG] = claim.etag
                    updates.append((claim, etag, sql.update_ownership.bind(values)))
            for statement, batch in (
                (sql.insert_ownership, inserts),
                (sql.update_ownership, updates),
            ):
                changed = dialect.changed_per_row(c, statement.sql, [row for _, _, row in batch])
                won.extend(
                    OwnershipRecord(claim.key, claim.owner_id, etag, now)
                    for (claim, etag, _), count in zip(batch, changed, strict=True)
                    if count == 1
                )
            return True

        self._transaction(body, "claim_ownership", ordered[0].key if len(ordered) == 1 else None)
        if len(won) < len(ordered):  # routine while processors rebalance: debug, not a warning
            lost = sorted({c.key for c in ordered} - {r.key for r in won})
            logger.debug(
                "%d of %d claims lost on %s: %s",
                len(lost),
                len(ordered),
                self._where,
                ", ".join(key.describe() for key in lost),
            )
        return list(won)

    def release(
        self, namespace: str, name: str, consumer_group: str, partition_id: str | None = None
    ) -> int:
        """Release the owned partitions of a consumer group (or one partition): empty
        ``owner_id``, new etag, the database's time. Any processor may claim them at once, and
        their owner's next renewal (with its old etag) fails. Returns how many were released."""
        key = None
        values: dict[str, Any] = {ETAG: new_etag()}
        if partition_id is None:
            statement = self._sql.release_group
            group = (namespace, name, consumer_group)
            values.update(zip(KEY_PARAMS[:3], group, strict=True))
        else:
            key = PartitionKey(namespace, name, consumer_group, partition_id)
            statement = self._sql.release_partition
            values.update(key_bindings(self._dialect, key))
        bound = statement.bind(values)
        try:
            released = self._connection.run(
                lambda c: int(c.exec_driver_sql(statement.sql, bound).rowcount), write=True
            )
        except self._errors as exc:
            self.persister._fail(exc, "release", key)
        scope = key.describe() if key is not None else "/".join((namespace, name, consumer_group))
        logger.info("released %d owned partition(s) of %s on %s", released, scope, self._where)
        return released

    def import_ownerships(self, records: Sequence[OwnershipRecord]) -> None:
        """Store ``records`` as they are (owner and time), each with a new etag, in one
        transaction: for moving ownerships from another checkpoint store."""
        sql, dialect, to_db = self._sql, self._dialect, self._to_db

        def body(c: sa.Connection) -> bool:
            for record in sorted(records, key=lambda r: r.key):
                values = key_bindings(dialect, record.key)
                modified = to_db(record.last_modified)
                values.update({OWNER_ID: record.owner_id, ETAG: new_etag(), MODIFIED: modified})
                insert = sql.insert_ownership
                if c.exec_driver_sql(insert.sql, insert.bind(values)).rowcount != 1:
                    overwrite = sql.overwrite_ownership
                    c.exec_driver_sql(overwrite.sql, overwrite.bind(values))
            return True

        if records:
            self._transaction(body, "import ownerships", None)

    # -- checkpoints ----------------------------------------------------------------------

    def write_checkpoint(
        self,
        key: PartitionKey,
        checkpoint: Checkpoint,
        *,
        owner_id: str | None = None,
        fenced: bool = False,
        last_enqueued: LastEnqueued | None = None,
    ) -> None:
        """Store ``checkpoint`` (and, if given, the partition's last enqueued event).

        Unfenced and without ``last_enqueued``, this is the persister's own ``write`` (one
        upsert; monotonic if the persister is). Otherwise one transaction: with ``fenced``, it
        reads the partition's owner under a shared lock and refuses
        (:class:`~streamcheckpoint.errors.OwnershipLostError`) unless it is ``owner_id``, then
        writes with the monotonic upsert (a lower sequence number than the stored one:
        :class:`~streamcheckpoint.errors.CheckpointRegressionError`); nothing is written when
        it refuses.
        """
        persister = self.persister
        if not fenced and last_enqueued is None:
            persister.write(*key, checkpoint)
            return
        if fenced and owner_id is None:
            raise OwnershipLostError(key, None, None)
        guarded = fenced or persister.monotonic
        upsert = persister._sql.upsert_monotonic if guarded else persister._sql.upsert
        row = self._dialect.write_rows([(key, checkpoint)])[0]
        keyed = key_bindings(self._dialect, key)
        owner_sql, lag_sql = self._sql.owner_for_share, self._sql.record_last_enqueued
        lag = None
        if last_enqueued is not None:
            when = last_enqueued.enqueued_time
            keyed.update(
                {
                    LAST_SEQUENCE: last_enqueued.sequence_number,
                    LAST_OFFSET: last_enqueued.offset,
                    LAST_TIME: None if when is None else self._to_db(when),
                }
            )
            lag = lag_sql.bind(keyed)
        refusal: list[str | None] = []

        def body(c: sa.Connection) -> bool:
            refusal.clear()
            if fenced:
                rows = c.exec_driver_sql(owner_sql.sql, owner_sql.bind(keyed)).all()
                current = str(rows[0][0]) if rows else None
                if current != owner_id:
                    refusal.append(current)
                    return False
            count = c.exec_driver_sql(upsert, row).rowcount
            if guarded and not self._dialect.none_refused(c, [(key, checkpoint)], count):
                return False
            if lag is not None:
                c.exec_driver_sql(lag_sql.sql, lag)
            return True

        for _ in range(_ATTEMPTS):
            if self._transaction(body, "update_checkpoint", key):
                return
            if refusal:
                raise OwnershipLostError(key, owner_id, refusal[0])
            persister._raise_regression([(key, checkpoint)])  # else the row changed: again
        raise PersistError(
            f"update_checkpoint for {key.describe()} on {self._where} was refused {_ATTEMPTS} "
            "times although no stored checkpoint was ahead when read back: it keeps being "
            "changed or deleted concurrently. Nothing was written."
        )

    def last_enqueued(self, prefix: tuple[str, ...]) -> list[LastEnqueuedRecord]:
        """The recorded last enqueued events of the checkpoints whose key starts with
        ``prefix`` (0 to 3 components); all fields ``None`` where none was recorded."""
        statement = self._sql.list_last_enqueued[len(prefix)]
        try:
            rows = self._connection.run(lambda c: c.exec_driver_sql(statement.sql, prefix).all())
        except self._errors as exc:
            self.persister._fail(exc, "list", None)
        return [last_enqueued_from_row(row, self._where, self._from_db) for row in rows]

    # -- running --------------------------------------------------------------------------

    def _transaction(
        self, body: Callable[[sa.Connection], bool], action: str, key: PartitionKey | None
    ) -> bool:
        """Run ``body`` in one transaction on the persister's connection (committed if it
        returns true); a driver error is raised as the persister raises it."""
        connection = self._connection
        try:
            committed: bool = connection.run(lambda c: connection.transaction(c, body), write=True)
        except self._errors as exc:
            self.persister._fail(exc, action, key)
        return committed
