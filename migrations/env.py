"""Alembic environment for streamcheckpoint's own tables.

Driven two ways:

* by :mod:`streamcheckpoint.sql.migrations` (the API, the ``streamcheckpoint db`` commands, a
  persister opened with ``migrate=True``): the live connection, or the URL for ``--sql``, and the
  schema arrive in ``config.attributes``;
* by the alembic command line from a source checkout (``alembic -c alembic.ini upgrade head``):
  the URL comes from ``-x url=...``, else ``STREAMCHECKPOINT_URL``; the schema from
  ``-x schema=...``.

Either way the version table is ``streamcheckpoint_alembic_version`` and online migrations hold
the same migration lock as :func:`streamcheckpoint.sql.migrations.ensure_schema`.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError

from streamcheckpoint.errors import PersistError
from streamcheckpoint.redaction import mask_url, redact
from streamcheckpoint.sql.dialects import Dialect, dialect_for_engine
from streamcheckpoint.sql.engine import open_engine, resolve_url
from streamcheckpoint.sql.migrations import (
    ATTR_CONNECTION,
    ATTR_SCHEMA,
    ATTR_URL,
    CONTEXT_SCHEMA_OPTION,
    VERSION_TABLE,
    release_migration_lock,
    take_migration_lock,
)

URL_VARIABLE = "STREAMCHECKPOINT_URL"

config = context.config


def command_line_url() -> str:
    """The URL given to the alembic command line: ``-x url=``, then the environment."""
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(URL_VARIABLE)
    if not url:
        raise CommandError(
            f"no database URL: pass -x url=DIALECT+DRIVER://... or set {URL_VARIABLE}, e.g. "
            "alembic -c alembic.ini -x url=sqlite:///checkpoints.db upgrade head"
        )
    return url


def target_schema(dialect: Dialect) -> str | None:
    """The schema that holds the table and the version table (None: the default one)."""
    if ATTR_SCHEMA in config.attributes:
        schema = config.attributes[ATTR_SCHEMA]
    else:
        schema = context.get_x_argument(as_dictionary=True).get("schema") or None
    try:
        dialect.check_schema(schema)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    return schema  # type: ignore[no-any-return]


def configure_options(dialect: Dialect) -> dict[str, Any]:
    """Options common to online and offline runs."""
    schema = target_schema(dialect)
    return {
        "target_metadata": dialect.table.metadata,
        "version_table": VERSION_TABLE,
        "version_table_schema": schema,
        "render_as_batch": True,
        "compare_type": True,
        CONTEXT_SCHEMA_OPTION: schema,
    }


def run_migrations_offline() -> None:
    """Write the SQL to the output buffer instead of executing it (``--sql``)."""
    try:
        url, dialect = resolve_url(config.attributes.get(ATTR_URL) or command_line_url())
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(dialect),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Execute on the API's connection, or on a new one made from the command line's URL."""
    connection = config.attributes.get(ATTR_CONNECTION)
    if connection is not None:
        # The caller holds the transaction and the migration lock; it commits.
        context.configure(
            connection=connection, **configure_options(dialect_for_engine(connection.engine))
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    try:
        # As a persister makes it: the same URLs work (postgres://), only supported databases.
        engine, _, _ = open_engine(command_line_url(), {"poolclass": sa.pool.NullPool})
    except (ValueError, PersistError) as exc:
        raise CommandError(str(exc)) from exc
    try:
        try:
            connection_context = engine.connect()
        except sa.exc.DBAPIError as exc:
            detail = redact(str(exc.orig), engine.url)
            raise CommandError(f"could not connect to {mask_url(engine.url)}: {detail}") from exc
        with connection_context as connection:
            try:
                with connection.begin():
                    take_migration_lock(connection)
                    context.configure(
                        connection=connection,
                        **configure_options(dialect_for_engine(connection.engine)),
                    )
                    context.run_migrations()
            finally:
                release_migration_lock(connection)
    finally:
        engine.dispose()


if config.config_file_name is not None:  # the alembic command line: log as alembic.ini says
    fileConfig(config.config_file_name)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
