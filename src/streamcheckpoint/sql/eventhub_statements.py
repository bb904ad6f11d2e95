"""The SQL of the Event Hubs checkpoint stores, compiled once, and the mapping of its rows.

Nothing here does I/O: :func:`compile_eventhub_statements` builds, from a database's
:class:`~.dialects.Dialect`, what :class:`~.eventhub_tables.EventHubTables` runs on the
``ownerships`` table (list, claim, release) and on the last-enqueued columns of ``checkpoints``.
Checkpoints themselves are written with SQLPersister's own upserts (:mod:`.statements`).

A claim is optimistic concurrency in one statement per partition: a claim without an etag
inserts the row unless the key is taken (:meth:`.Dialect.insert_if_absent`), a claim with one
updates the row only ``WHERE etag = <the etag the claimant saw>``; the row count says who won.
A fenced checkpoint write first reads the partition's owner with a shared row lock
(``FOR SHARE``; SQLite's ``BEGIN IMMEDIATE`` holds the whole database), so no claim can commit
between that read and the checkpoint written in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa

from ..checkpoint import PartitionKey
from .dialects.base import KEY_PARAMS, Dialect
from .schema import KEY_COLUMN_NAMES, LAG_COLUMN_NAMES
from .statements import TimeReader, compile_for, corrupt_row_error, key_from_row

__all__ = [
    "Claim",
    "Compiled",
    "EventHubStatements",
    "LastEnqueued",
    "LastEnqueuedRecord",
    "OwnershipRecord",
    "compile_eventhub_statements",
    "key_bindings",
    "last_enqueued_from_row",
    "ownership_from_row",
]

_Claiming = TypeVar("_Claiming", sa.Insert, sa.Update)

OWNER_ID = "p_owner_id"
ETAG = "p_etag"
MODIFIED = "p_modified"
EXPECTED_ETAG = "p_expected_etag"
LAST_SEQUENCE = "p_last_sequence_number"
LAST_OFFSET = "p_last_offset"
LAST_TIME = "p_last_time"


class OwnershipRecord(NamedTuple):
    """One row of ``ownerships``: who owns the partition (``""``: released) since when."""

    key: PartitionKey
    owner_id: str
    etag: str
    last_modified: datetime
    """Aware UTC, from the database's clock."""


class Claim(NamedTuple):
    """A claim of ``key`` for ``owner_id``; ``etag`` ``None`` claims a partition nobody has a
    row for, else the row must still have that etag."""

    key: PartitionKey
    owner_id: str
    etag: str | None


class LastEnqueued(NamedTuple):
    """The partition's newest event when a checkpoint was written (for lag)."""

    sequence_number: int | None
    offset: str | None
    enqueued_time: datetime | None


class LastEnqueuedRecord(NamedTuple):
    """A partition's recorded :class:`LastEnqueued`, as ``status`` shows it."""

    key: PartitionKey
    last_enqueued: LastEnqueued


@dataclass(frozen=True)
class Compiled:
    """One statement as the driver's SQL text, and the names of its values in bind order."""

    sql: str
    params: tuple[str, ...]

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional values for ``values`` keyed by parameter name."""
        return tuple(values[name] for name in self.params)


@dataclass(frozen=True)
class EventHubStatements:
    """Everything the Event Hubs stores run besides SQLPersister's own statements."""

    clock: Compiled
    """``SELECT`` the database's time (what a claim stores as ``last_modified_time``)."""
    list_ownerships: tuple[Compiled, ...]
    """Ownership rows whose key starts with the first ``n`` components, indexed by ``n``."""
    insert_ownership: Compiled
    """Insert a claim's row unless the key is taken; row count 1 if it won."""
    update_ownership: Compiled
    """Update a claim's row if its etag is still the expected one; row count 1 if it won."""
    overwrite_ownership: Compiled
    """Update a row whatever its etag (importing from another store)."""
    release_group: Compiled
    """Release (empty ``owner_id``, new etag) every owned partition of a consumer group."""
    release_partition: Compiled
    """Release one partition if it is owned."""
    owner_for_share: Compiled
    """A partition's ``owner_id``, locked against claims until the transaction ends."""
    record_last_enqueued: Compiled
    """Set a checkpoint row's last-enqueued columns."""
    list_last_enqueued: tuple[Compiled, ...]
    """Key and last-enqueued columns of checkpoints by key prefix length, as above."""


def key_bindings(dialect: Dialect, key: PartitionKey) -> dict[str, Any]:
    """The bound values naming ``key`` in any of these statements."""
    values: dict[str, Any] = dict(zip(KEY_PARAMS, key, strict=True))
    values.update(zip(dialect.key_params, dialect.key_values(key), strict=True))
    return values


@functools.cache
def _statements(dialect: Dialect) -> dict[str, sa.ClauseElement | tuple[sa.ClauseElement, ...]]:
    """Build (once per database) the statements, as SQLAlchemy constructs."""
    owned = dialect.ownerships
    checkpoints = dialect.table
    key = [owned.c[name] for name in KEY_COLUMN_NAMES]
    row = [*key, owned.c.owner_id, owned.c.etag, owned.c.last_modified_time]
    claimed = {
        "owner_id": sa.bindparam(OWNER_ID, type_=owned.c.owner_id.type),
        "etag": sa.bindparam(ETAG, type_=owned.c.etag.type),
        "last_modified_time": sa.bindparam(MODIFIED, type_=owned.c.last_modified_time.type),
    }
    inserted = {
        **{name: sa.bindparam(p) for name, p in zip(KEY_COLUMN_NAMES, KEY_PARAMS, strict=True)},
        **claimed,
    }
    released: dict[str, Any] = {
        "owner_id": sa.literal_column("''"),
        "etag": sa.bindparam(ETAG, type_=owned.c.etag.type),
        "last_modified_time": dialect.clock(),
    }
    lag_columns = [checkpoints.c[name] for name in LAG_COLUMN_NAMES]
    lag_values = {
        name: sa.bindparam(param, type_=checkpoints.c[name].type)
        for name, param in zip(
            LAG_COLUMN_NAMES, (LAST_SEQUENCE, LAST_OFFSET, LAST_TIME), strict=True
        )
    }
    checkpoint_key = [checkpoints.c[name] for name in KEY_COLUMN_NAMES]
    return {
        "clock": sa.select(dialect.clock()),
        "list_ownerships": tuple(
            sa.select(*row).where(*dialect.key_filter(n, owned)) for n in range(4)
        ),
        "insert_ownership": _returning(dialect, dialect.insert_if_absent(owned, inserted)),
        "update_ownership": _returning(
            dialect,
            sa.update(owned)
            .where(*dialect.key_filter(4, owned), owned.c.etag == sa.bindparam(EXPECTED_ETAG))
            .values(**claimed),
        ),
        "overwrite_ownership": sa.update(owned)
        .where(*dialect.key_filter(4, owned))
        .values(**claimed),
        "release_group": sa.update(owned)
        .where(*dialect.key_filter(3, owned), owned.c.owner_id != sa.literal_column("''"))
        .values(**released),
        "release_partition": sa.update(owned)
        .where(*dialect.key_filter(4, owned), owned.c.owner_id != sa.literal_column("''"))
        .values(**released),
        "owner_for_share": sa.select(owned.c.owner_id)
        .where(*dialect.key_filter(4, owned))
        .with_for_update(read=True),
        "record_last_enqueued": sa.update(checkpoints)
        .where(*dialect.key_filter(4))
        .values(**lag_values),
        "list_last_enqueued": tuple(
            sa.select(*checkpoint_key, *lag_columns).where(*dialect.key_filter(n)) for n in range(4)
        ),
    }


def _returning(dialect: Dialect, statement: _Claiming) -> _Claiming:
    """A claim's statement, returning the row it changed where the dialect counts that way
    (:meth:`.Dialect.changed_per_row`)."""
    if not dialect.returns_changed_rows:
        return statement
    return statement.returning(dialect.ownerships.c.etag)


def compile_eventhub_statements(
    dialect: Dialect, engine_dialect: sa.Dialect, schema: str | None
) -> EventHubStatements:
    """The statements of ``dialect`` as SQL text for an engine of ``engine_dialect``, with the
    tables in ``schema`` (``None``: the default one)."""
    target = dialect.compile_dialect(engine_dialect)

    def text(statement: sa.ClauseElement) -> Compiled:
        compiled = compile_for(statement, target, schema)
        return Compiled(compiled.string, tuple(compiled.positiontup or ()))

    built: dict[str, Any] = {
        name: tuple(text(s) for s in statement) if isinstance(statement, tuple) else text(statement)
        for name, statement in _statements(dialect).items()
    }
    return EventHubStatements(**built)


# -- row mapping ----------------------------------------------------------------------------


def ownership_from_row(row: Sequence[Any], source: str, from_db: TimeReader) -> OwnershipRecord:
    """Turn the driver's row of :attr:`EventHubStatements.list_ownerships` into a record."""
    key = key_from_row(row, source)
    try:
        return OwnershipRecord(key, str(row[4]), str(row[5]), from_db(row[6]))
    except (TypeError, ValueError, OverflowError) as exc:
        raise corrupt_row_error(key, source, exc) from exc


def last_enqueued_from_row(
    row: Sequence[Any], source: str, from_db: TimeReader
) -> LastEnqueuedRecord:
    """Turn the driver's row of :attr:`EventHubStatements.list_last_enqueued` into a record."""
    key = key_from_row(row, source)
    sequence_number, offset, when = row[4:7]
    try:
        return LastEnqueuedRecord(
            key,
            LastEnqueued(
                None if sequence_number is None else int(sequence_number),
                None if offset is None else str(offset),
                None if when is None else from_db(when),
            ),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise corrupt_row_error(key, source, exc) from exc
