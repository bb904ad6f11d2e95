"""Create, upgrade and inspect the streamcheckpoint tables with the Alembic scripts.

The scripts live in ``migrations/`` at the top of a source checkout and are shipped inside the
wheel as ``streamcheckpoint/_migrations``; :func:`script_location` finds whichever is installed.
Alembic keeps its bookkeeping in a version table of our own, ``streamcheckpoint_alembic_version``,
so a database whose application already uses Alembic (``alembic_version``) is left alone.

:func:`ensure_schema` is what a persister calls when it opens: when the database is already at
:data:`HEAD_REVISION` it costs one ``SELECT`` and does not import Alembic. Migrations are
serialized across hosts (a PostgreSQL advisory lock, SQLite's write lock, MySQL's
``GET_LOCK``) and the revision is read again once the lock is held, so many processes opening
a new database at once do not race.

Every function takes a URL (``str`` or :class:`sqlalchemy.URL`; an engine is created as
:class:`~streamcheckpoint.sql.SQLPersister` creates it, so the same URLs work, and disposed of)
or an :class:`sqlalchemy.Engine` (used as is, not disposed of). Only the databases SQLPersister
supports are accepted. ``schema=`` puts the table *and* the version table in that schema
(PostgreSQL; on MySQL a schema is a database); an upgrade creates a missing one when the
database user may.
"""

from __future__ import annotations

import io
import logging
import re
import shlex
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

import sqlalchemy as sa

from ..errors import PersistConnectionError, PersistError, SchemaError
from ..redaction import mask_url, redact
from .dialects import dialect_for_engine
from .engine import open_engine, resolve_url
from .schema import TABLE_NAME

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HEAD_REVISION",
    "VERSION_TABLE",
    "Revision",
    "checkpoints_a_downgrade_drops",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "history",
    "script_location",
    "upgrade",
]

VERSION_TABLE: Final = "streamcheckpoint_alembic_version"
"""Alembic's version table for our scripts; never the application's ``alembic_version``."""

HEAD_REVISION: Final = "0003"
"""The revision this version of the code reads and writes: the newest script in ``versions/``.

Kept as a constant so that :func:`ensure_schema` need not load Alembic on every open; a test
checks that it equals :func:`head`.
"""

UrlOrEngine = str | sa.URL | sa.Engine

logger = logging.getLogger(__name__)

# Keys of Config.attributes that env.py reads when the API (not the alembic CLI) drives it.
ATTR_CONNECTION: Final = "connection"
ATTR_URL: Final = "streamcheckpoint.url"
ATTR_SCHEMA: Final = "streamcheckpoint.schema"
CONTEXT_SCHEMA_OPTION: Final = "streamcheckpoint_schema"
"""Option of the migration context that tells the scripts where to create their tables."""

# Alembic's `context` and `op` are module-level proxies: two threads of one process must not run
# scripts at the same time, whatever the database. Taken before the database lock, never after.
_alembic_lock = threading.Lock()

_RELATIVE_REVISION = re.compile(r"[+-]\d+")
_SPECIAL_REVISIONS = frozenset({"head", "heads", "base"})


class Revision(NamedTuple):
    """One migration script, as :func:`history` lists it."""

    revision: str
    down_revision: str | None
    description: str


def script_location() -> Path:
    """Return the directory of the Alembic scripts (``env.py``, ``versions/``) in use.

    The copy shipped inside the package when it is installed from a wheel; otherwise (an
    editable install or a source checkout) the top-level ``migrations/`` directory.
    """
    package_dir = Path(__file__).resolve().parent.parent
    shipped = package_dir / "_migrations"
    if (shipped / "env.py").is_file():
        return shipped
    checkout = package_dir.parent.parent / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise SchemaError(
        f"the streamcheckpoint migration scripts are missing: neither {shipped} nor {checkout} "
        "holds an env.py; reinstall streamcheckpoint"
    )


def head() -> str:
    """Return the newest revision of the scripts (what ``upgrade()`` goes to by default)."""
    revision = _script_directory().get_current_head()
    if revision is None:  # pragma: no cover - the package always ships at least one script
        raise SchemaError(f"no migration scripts in {script_location()}")
    return revision


def history() -> list[Revision]:
    """Return every migration script, newest first."""
    revisions = []
    for script in _script_directory().walk_revisions():
        down = script.down_revision
        if isinstance(down, (tuple, list)):  # a merge point; we have none, but be truthful
            down = ",".join(down)
        revisions.append(Revision(script.revision, down, script.doc))
    return revisions


def current(url_or_engine: UrlOrEngine, *, schema: str | None = None) -> str | None:
    """Return the revision the database is at, or ``None`` when it has none of our tables."""
    with _engine_for(url_or_engine) as engine:
        dialect_for_engine(engine).check_schema(schema, engine.url)
        return _read_revision(engine, schema)


def upgrade(
    url_or_engine: UrlOrEngine,
    revision: str = "head",
    *,
    schema: str | None = None,
    sql: bool = False,
) -> str | None:
    """Upgrade the database to ``revision`` (default: the newest).

    With ``sql=True`` nothing is executed and nothing connects: the DDL is returned as text, for
    a DBA to review and run. Offline mode starts from the empty database unless ``revision`` is
    a range ``"from:to"``. Online, returns ``None``; the migration holds the migration lock.
    """
    _check_revision_argument(revision, allow_range=sql)
    if sql:
        return _offline(url_or_engine, schema, "upgrade", revision)
    with _engine_for(url_or_engine) as engine:
        dialect_for_engine(engine).check_schema(schema, engine.url)
        _migrate_locked(engine, schema, "upgrade", _upgrade_to(engine, schema, revision))
    return None


def downgrade(
    url_or_engine: UrlOrEngine,
    revision: str,
    *,
    schema: str | None = None,
    sql: bool = False,
) -> str | None:
    """Downgrade the database to ``revision`` (``"base"`` drops every streamcheckpoint table).

    With ``sql=True`` the DDL is returned as text instead; Alembic needs to know where to start
    from, so ``revision`` may be a range ``"from:to"`` and otherwise starts at :func:`head`.
    """
    _check_revision_argument(revision, allow_range=sql)
    if sql:
        if ":" not in revision:
            revision = f"{head()}:{revision}"
        return _offline(url_or_engine, schema, "downgrade", revision)
    with _engine_for(url_or_engine) as engine:
        dialect_for_engine(engine).check_schema(schema, engine.url)
        _migrate_locked(
            engine, schema, "downgrade", lambda conn: _run(conn, schema, "downgrade", revision)
        )
    return None


def checkpoints_a_downgrade_drops(
    url_or_engine: UrlOrEngine, revision: str, *, schema: str | None = None
) -> int | None:
    """How many stored checkpoints a downgrade to ``revision`` would delete with the
    ``checkpoints`` table (which only a downgrade to base drops): ``None`` if it keeps them.

    ``revision`` is what :func:`downgrade` takes: ``base``, a revision, or ``-N`` steps down.
    """
    _check_revision_argument(revision, allow_range=False)
    with _engine_for(url_or_engine) as engine:
        dialect_for_engine(engine).check_schema(schema, engine.url)
        now = _read_revision(engine, schema)
        if now is None or not _reaches_base(now, revision):
            return None
        with _connect(engine) as conn:
            table = sa.table(TABLE_NAME, schema=schema)
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _reaches_base(now: str, revision: str) -> bool:
    """Whether downgrading from ``now`` to ``revision`` goes all the way down to base."""
    if revision == "base":
        return True
    if not _RELATIVE_REVISION.fullmatch(revision):
        return False
    steps = -int(revision)
    script = _script_directory()
    current: str | None = now
    for _ in range(steps):
        found = script.get_revision(current) if current is not None else None
        if found is None:
            return True
        down = found.down_revision
        current = down if isinstance(down, str) or down is None else down[0]
    return current is None


def ensure_schema(engine: sa.Engine, *, schema: str | None = None, migrate: bool = True) -> None:
    """Make sure the database is at :data:`HEAD_REVISION`; called each time a persister opens.

    ``migrate=True`` upgrades an empty or older database, serialized with every other process
    doing the same. ``migrate=False`` never changes the database and raises
    :class:`~streamcheckpoint.errors.SchemaError` naming the command to run when it is not at
    head. A database at a revision this code does not know (written by a newer streamcheckpoint)
    raises :class:`~streamcheckpoint.errors.SchemaError` either way.

    Raises:
        ValueError: ``schema`` given for SQLite, or a database streamcheckpoint doesn't support.
        PersistConnectionError: the database cannot be reached.
        SchemaError: the schema is not at head (and may not or could not be upgraded).
    """
    if not isinstance(engine, sa.Engine):
        raise TypeError(f"engine must be a sqlalchemy.Engine, not {type(engine).__name__}")
    dialect_for_engine(engine).check_schema(schema, engine.url)
    found = _read_revision(engine, schema)
    if found == HEAD_REVISION:
        return
    _check_known(engine, schema, found)
    if not migrate:
        raise SchemaError(_not_at_head_message(engine, schema, found))

    _migrate_locked(engine, schema, "upgrade", _upgrade_to(engine, schema, HEAD_REVISION))


# --- argument checks --------------------------------------------------------------------------


def _check_revision_argument(revision: str, *, allow_range: bool) -> None:
    if not isinstance(revision, str):
        raise TypeError(f"revision must be a str, not {type(revision).__name__}")
    parts = revision.split(":") if allow_range else [revision]
    if not revision or len(parts) > 2:
        raise ValueError(f"revision {revision!r} is not a revision or a range 'from:to'")
    script = _script_directory()
    for part in parts:
        if part in _SPECIAL_REVISIONS or _RELATIVE_REVISION.fullmatch(part):
            continue
        if _resolve(script, part) is None:
            known = ", ".join(r.revision for r in history())
            raise ValueError(f"revision {part!r} is unknown; known revisions: {known}")


def _resolve(script: ScriptDirectory, revision: str) -> str | None:
    from alembic.util import CommandError

    try:
        found = script.get_revision(revision)
    except CommandError:
        return None
    return found.revision if found is not None else None


def _check_known(engine: sa.Engine, schema: str | None, revision: str | None) -> None:
    """Refuse a database written by a newer streamcheckpoint (its revision is not ours)."""
    if revision is None or revision == HEAD_REVISION:
        return
    if _resolve(_script_directory(), revision) is None:
        raise SchemaError(
            f"{_describe(engine, schema)} is at schema revision {revision!r}, which this "
            f"version of streamcheckpoint does not know (its newest is {HEAD_REVISION!r}): "
            "a newer streamcheckpoint migrated it. Upgrade streamcheckpoint, or downgrade the "
            "database with that newer version."
        )


# --- reading the version table ----------------------------------------------------------------


def _version_table(schema: str | None) -> sa.TableClause:
    return sa.table(VERSION_TABLE, sa.column("version_num", sa.String()), schema=schema)


def _select_revision(conn: sa.Connection, schema: str | None) -> str | None:
    rows = conn.execute(sa.select(_version_table(schema).c.version_num)).scalars().all()
    if len(rows) > 1:
        raise SchemaError(
            f"{VERSION_TABLE} holds {len(rows)} revisions ({', '.join(rows)}); streamcheckpoint "
            "expects one. Was a branch applied by hand?"
        )
    return rows[0] if rows else None


def _read_revision(engine: sa.Engine, schema: str | None) -> str | None:
    """The database's revision, in one query when the version table exists."""
    with _connect(engine) as conn:
        try:
            return _select_revision(conn, schema)
        except sa.exc.DBAPIError as exc:
            conn.rollback()
            if not _has_version_table(conn, schema, exc):
                return None
        # The table exists now: another process has just migrated. Read what it committed.
        try:
            return _select_revision(conn, schema)
        except sa.exc.DBAPIError as exc:
            raise SchemaError(
                f"could not read {VERSION_TABLE} in {_describe(engine, schema)}: {exc.orig}"
            ) from exc


def _read_revision_in(conn: sa.Connection, schema: str | None) -> str | None:
    """The revision, inside a transaction that a failed statement must not abort."""
    if not sa.inspect(conn).has_table(VERSION_TABLE, schema=schema):
        return None
    return _select_revision(conn, schema)


def _has_version_table(conn: sa.Connection, schema: str | None, cause: Exception) -> bool:
    try:
        return sa.inspect(conn).has_table(VERSION_TABLE, schema=schema)
    except sa.exc.DBAPIError as exc:
        raise SchemaError(f"could not read {VERSION_TABLE}: {cause}; then: {exc.orig}") from exc


# --- running Alembic --------------------------------------------------------------------------


@contextmanager
def _engine_for(url_or_engine: UrlOrEngine) -> Iterator[sa.Engine]:
    """The caller's engine, or one made from the URL as a persister makes it (then disposed)."""
    engine, _, created = open_engine(url_or_engine, {})
    try:
        yield engine
    finally:
        if created:
            engine.dispose()


@contextmanager
def _connect(engine: sa.Engine) -> Iterator[sa.Connection]:
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        detail = redact(str(exc.orig), engine.url)
        if dialect_for_engine(engine).classify(exc.orig or exc) == "connection":
            raise PersistConnectionError(
                f"could not connect to {_describe(engine, None)}: {detail}"
            ) from exc
        raise PersistError(f"could not open {_describe(engine, None)}: {detail}") from exc
    with conn:
        yield conn


def _migrate_locked(
    engine: sa.Engine,
    schema: str | None,
    action: str,
    body: Callable[[sa.Connection], None],
) -> None:
    """Run ``body`` in one transaction that holds the migration lock, then commit."""
    from alembic.util import CommandError

    with _alembic_lock, _connect(engine) as conn:
        try:
            try:
                with conn.begin():
                    take_migration_lock(conn)
                    _check_schema_exists(conn, engine, schema, create=action == "upgrade")
                    body(conn)
            finally:
                release_migration_lock(conn)
        except sa.exc.DBAPIError as exc:
            raise SchemaError(
                f"could not {action} the streamcheckpoint schema in "
                f"{_describe(engine, schema)}: {exc.orig}"
            ) from exc
        except CommandError as exc:
            raise SchemaError(
                f"could not {action} the streamcheckpoint schema in "
                f"{_describe(engine, schema)}: {exc}"
            ) from exc


def take_migration_lock(conn: sa.Connection) -> None:
    """Hold the database-wide migration lock until ``conn``'s transaction ends.

    Call it first thing in the transaction. PostgreSQL: a transaction-level advisory lock
    (:data:`~.sql.dialects.PG_MIGRATION_LOCK_KEY`). SQLite: the write lock, taken with
    ``BEGIN IMMEDIATE`` (``sqlite3`` begins transactions only at the first data-changing
    statement, on a persister's engine as on a plain one), unless a ``begin`` hook of the
    engine has already begun one. MySQL/MariaDB: ``GET_LOCK`` (a session's lock: call
    :func:`release_migration_lock` after the transaction). Any other database: ``ValueError``,
    nothing is migrated unlocked. Also used by ``env.py`` when the alembic command line runs
    the scripts.
    """
    dialect_for_engine(conn.engine).take_migration_lock(conn)


def release_migration_lock(conn: sa.Connection) -> None:
    """Release the migration lock once ``conn``'s transaction has ended, where it outlives it.

    MySQL's ``GET_LOCK`` belongs to the session, not the transaction; elsewhere this does
    nothing. A connection that is gone releases it anyway.
    """
    if conn.closed or conn.invalidated:
        return
    dialect_for_engine(conn.engine).release_migration_lock(conn)


def _check_schema_exists(
    conn: sa.Connection, engine: sa.Engine, schema: str | None, *, create: bool
) -> None:
    """Make sure ``schema`` (a PostgreSQL schema, a MySQL database) exists: an upgrade
    creates it if missing; otherwise, or if that isn't allowed, SchemaError gives the SQL."""
    if schema is None or sa.inspect(conn).has_schema(schema):
        return
    statement = sa.schema.CreateSchema(schema, if_not_exists=True)
    sql = str(statement.compile(dialect=engine.dialect))  # quoted as the database quotes
    if create:
        try:
            conn.execute(statement)
        except sa.exc.DBAPIError as exc:
            raise SchemaError(
                f"schema {schema!r} does not exist in {_describe(engine, None)} and could not "
                f"be created ({exc.orig}): ask someone who may to run {sql}, or pass another "
                "schema"
            ) from exc
        logger.info("%s: created schema %s", _describe(engine, None), schema)
        return
    raise SchemaError(
        f"schema {schema!r} does not exist in {_describe(engine, None)}: `streamcheckpoint db "
        f"upgrade` creates it (or run {sql}), or pass another schema"
    )


def _upgrade_to(
    engine: sa.Engine, schema: str | None, revision: str
) -> Callable[[sa.Connection], None]:
    """The body of an upgrade, run once the migration lock is held."""

    def upgrade_unless_done(conn: sa.Connection) -> None:
        now = _read_revision_in(conn, schema)
        if now == revision:  # another process migrated while we waited for the lock
            return
        _check_known(engine, schema, now)
        if now is None:
            _refuse_foreign_table(conn, engine, schema)
        _run(conn, schema, "upgrade", revision)

    return upgrade_unless_done


def _refuse_foreign_table(conn: sa.Connection, engine: sa.Engine, schema: str | None) -> None:
    """A ``checkpoints`` table without our revision is not ours to touch (or was made by hand),
    unless it is what our first migration on MySQL leaves when killed before it recorded the
    revision (see :func:`_interrupted_first_migration`)."""
    inspector = sa.inspect(conn)
    if inspector.has_table(TABLE_NAME, schema=schema):
        if _interrupted_first_migration(conn, inspector, schema):
            logger.info(
                "%s: finishing a first upgrade that was interrupted", _describe(engine, schema)
            )
            return
        raise SchemaError(
            f"{_describe(engine, schema)} already has a table {TABLE_NAME!r} but no "
            f"streamcheckpoint revision in {VERSION_TABLE}: it was not created by "
            "streamcheckpoint's migrations (another application's table, or created by hand). "
            "Nothing was changed. Use another database or schema; or, if that table is exactly "
            f"revision {HEAD_REVISION!r}'s, record it with `alembic -c alembic.ini -x url=... "
            f"stamp {HEAD_REVISION}` from a source checkout."
        )


_MYSQL_0001_COLUMNS = frozenset(
    {
        "key_hash",
        "namespace",
        "name",
        "consumer_group",
        "partition_id",
        "stream_offset",
        "sequence_number",
        "enqueue_time",
        "updated_at",
    }
)


def _interrupted_first_migration(
    conn: sa.Connection, inspector: sa.Inspector, schema: str | None
) -> bool:
    """Whether MySQL's ``checkpoints`` is revision 0001's, made by our upgrade that was killed
    before it recorded the revision: MySQL commits DDL at once, so the table stays while the
    revision (written in the migration's transaction) is lost. It is ours if our version table
    exists (the upgrade makes it first), the table has exactly 0001's columns and holds no row
    (nothing can write before the revision is recorded). 0001 then leaves it as it is."""
    if not dialect_for_engine(conn.engine).ddl_commits_at_once:
        return False
    if not inspector.has_table(VERSION_TABLE, schema=schema):
        return False
    columns = {column["name"] for column in inspector.get_columns(TABLE_NAME, schema=schema)}
    if columns != _MYSQL_0001_COLUMNS:
        return False
    table = sa.table(TABLE_NAME, schema=schema)
    return conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is None


def _run(conn: sa.Connection, schema: str | None, command_name: str, revision: str) -> None:
    from alembic import command

    before = _read_revision_in(conn, schema)
    config = _config({ATTR_CONNECTION: conn, ATTR_SCHEMA: schema})
    getattr(command, command_name)(config, revision)
    logger.info(
        "%s: %s from revision %s to %s",
        _describe(conn.engine, schema),
        command_name,
        before or "none",
        _read_revision_in(conn, schema) or "none",
    )


def _offline(
    url_or_engine: UrlOrEngine, schema: str | None, command_name: str, revision: str
) -> str:
    from alembic import command

    url, dialect = resolve_url(url_or_engine)
    dialect.check_schema(schema)  # offline: the URL need not name a database
    buffer = io.StringIO()
    config = _config({ATTR_URL: url, ATTR_SCHEMA: schema}, output_buffer=buffer)
    with _alembic_lock:
        getattr(command, command_name)(config, revision, sql=True)
    return buffer.getvalue()


def _config(attributes: dict[str, object], *, output_buffer: io.StringIO | None = None) -> Config:
    from alembic.config import Config

    config = Config(output_buffer=output_buffer, stdout=io.StringIO(), attributes=attributes)
    # Config values go through ConfigParser interpolation: a literal % must be doubled.
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    return config


def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(script_location()))


# --- messages ---------------------------------------------------------------------------------


def _describe(engine: sa.Engine, schema: str | None) -> str:
    where = f"database {mask_url(engine.url)}"
    return f"{where}, schema {schema!r}" if schema is not None else where


def upgrade_commands(url: sa.URL, schema: str | None) -> str:
    """The ways to bring a database up to date, as text for an error message."""
    shown = mask_url(url)
    schema_cli = f" --schema {shlex.quote(schema)}" if schema is not None else ""
    schema_x = f" -x schema={shlex.quote(schema)}" if schema is not None else ""
    schema_py = f", schema={schema!r}" if schema is not None else ""
    return (
        f"`streamcheckpoint --url {shlex.quote(shown)}{schema_cli} db upgrade`, or in Python "
        f"`streamcheckpoint.sql.migrations.upgrade({shown!r}{schema_py})`, or from a source "
        f"checkout `alembic -c alembic.ini -x url={shlex.quote(shown)}{schema_x} upgrade head`"
    )


def _not_at_head_message(engine: sa.Engine, schema: str | None, found: str | None) -> str:
    state = "has no streamcheckpoint tables" if found is None else f"is at revision {found!r}"
    return (
        f"{_describe(engine, schema)} {state}; this version of streamcheckpoint needs schema "
        f"revision {HEAD_REVISION!r}. Run {upgrade_commands(engine.url, schema)} "
        "(put the password back in the URL), or open the persister with migrate=True."
    )
