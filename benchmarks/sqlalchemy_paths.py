"""SQLAlchemy's own ways of running SQLPersister's statements: the evidence for its kept cursor.

``SQLPersister`` runs its writes through ``Connection.exec_driver_sql`` on a kept ``AUTOCOMMIT``
connection, and its reads by key on that connection's driver cursor, because SQLAlchemy's path
measured slower for them. These contenders do a single write and a read by key the two ways
SQLAlchemy offers, on a connection of their own made like the persister's (same engine settings,
``AUTOCOMMIT``, kept for the suite), on a store of their own:

* ``Connection.execute(statement, {name: value})``: the persister's statements as SQLAlchemy
  constructs (:func:`streamcheckpoint.sql.statements.statements_for`), compiled once and then
  found in SQLAlchemy's compiled cache, bound and type-processed by SQLAlchemy;
* ``Connection.exec_driver_sql(text, tuple)``: the same statements as the driver's SQL text
  (:func:`~streamcheckpoint.sql.statements.compile_statements`) with the values the persister
  binds (:meth:`~streamcheckpoint.sql.dialects.Dialect.write_rows`, ``key_values``).

A read fetches every row (``.all()``), as the persister does; neither path builds a
``Checkpoint``. No targets: these rows are the measurement, not a promise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from streamcheckpoint import Checkpoint, PartitionKey, SQLPersister
from streamcheckpoint.sql.dialects import dialect_for_engine
from streamcheckpoint.sql.dialects.base import KEY_PARAMS, WRITE_PARAMS
from streamcheckpoint.sql.statements import compile_statements, statements_for

from .harness import Operation
from .workload import Context, Plan

__all__ = ["EXECUTE", "EXEC_DRIVER_SQL", "NOTE", "SQLAlchemyPaths"]

EXECUTE = "SQLAlchemy Connection.execute(statement)"
EXEC_DRIVER_SQL = "SQLAlchemy Connection.exec_driver_sql"

NOTE = (
    f"'{EXECUTE}' and '{EXEC_DRIVER_SQL}': SQLPersister's own statements run through "
    "SQLAlchemy on an AUTOCOMMIT connection kept for the suite, made like the persister's "
    "(the first with the SQLAlchemy construct and values by name, through the compiled cache; "
    "the second with the compiled SQL text and a tuple); a read fetches its rows and builds no "
    "Checkpoint. SQLPersister writes the second way and reads on its connection's driver "
    "cursor (no target: the evidence for that choice)"
)


@dataclass(frozen=True)
class SQLAlchemyPaths:
    """Two connections, one per path, on the store of ``persister`` (opened for them alone)."""

    plan: Plan
    by_construct: sa.Connection
    by_text: sa.Connection
    upsert: sa.Insert
    select: sa.Select[Any]
    upsert_text: str
    select_text: str
    encode: Callable[[Sequence[tuple[PartitionKey, Checkpoint]]], list[tuple[Any, ...]]]
    """The dialect's ``write_rows``: the values the persister binds, in its order."""

    @classmethod
    def open(cls, ctx: Context, plan: Plan, persister: SQLPersister) -> SQLAlchemyPaths:
        """Connections on ``persister``'s engine and table, closed (with it) at the end."""
        engine, schema = persister.engine, persister.schema
        dialect = dialect_for_engine(engine)
        if dialect.upsert_params != WRITE_PARAMS or dialect.key_params != KEY_PARAMS:
            raise ValueError(f"{dialect.name} binds other values; SQLite and PostgreSQL only")
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
        if schema is not None:
            options["schema_translate_map"] = {None: schema}
        autocommit = engine.execution_options(**options)
        statements = statements_for(dialect)
        compiled = compile_statements(dialect, engine.dialect, schema)
        paths = cls(
            plan=plan,
            by_construct=autocommit.connect(),
            by_text=autocommit.connect(),
            upsert=statements.upsert,
            select=statements.select_checkpoint,
            upsert_text=compiled.upsert,
            select_text=compiled.select_checkpoint,
            encode=dialect.write_rows,
        )
        ctx.cleanup.callback(persister.close)
        ctx.cleanup.callback(paths.by_construct.close)
        ctx.cleanup.callback(paths.by_text.close)
        return paths

    @property
    def connections(self) -> tuple[sa.Connection, sa.Connection]:
        """Both connections (to pin their PostgreSQL backends)."""
        return self.by_construct, self.by_text

    def writes(self) -> dict[str, Operation]:
        """A single write of ``plan.writes[i]`` each way."""
        writes, encode = self.plan.writes, self.encode
        by_construct, by_text = self.by_construct, self.by_text
        upsert, upsert_text = self.upsert, self.upsert_text

        def execute(i: int) -> None:
            key, cp = writes[i]
            values = (*key, cp.offset, cp.sequence_number, cp.enqueue_time)
            by_construct.execute(upsert, dict(zip(WRITE_PARAMS, values, strict=True)))

        def exec_driver_sql(i: int) -> None:
            by_text.exec_driver_sql(upsert_text, encode([writes[i]])[0])

        return {EXECUTE: execute, EXEC_DRIVER_SQL: exec_driver_sql}

    def reads(self) -> dict[str, Operation]:
        """A read by key of ``plan.writes[i]``'s key each way."""
        writes = self.plan.writes
        by_construct, by_text = self.by_construct, self.by_text
        select, select_text = self.select, self.select_text

        def execute(i: int) -> object:
            return by_construct.execute(
                select, dict(zip(KEY_PARAMS, writes[i][0], strict=True))
            ).all()

        def exec_driver_sql(i: int) -> object:
            return by_text.exec_driver_sql(select_text, tuple(writes[i][0])).all()

        return {EXECUTE: execute, EXEC_DRIVER_SQL: exec_driver_sql}
