"""The Alembic scripts and streamcheckpoint.sql.migrations, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from conftest import POSTGRES_URL, require_server
from streamcheckpoint import PersistConnectionError, PersistError, SchemaError
from streamcheckpoint.sql import migrations as m
from streamcheckpoint.sql.dialects import SQLiteDialect, dialect_for_engine
from streamcheckpoint.sql.dialects.postgresql import PG_MIGRATION_LOCK_KEY
from streamcheckpoint.sql.engine import open_engine
from streamcheckpoint.sql.schema import OWNERSHIPS_TABLE_NAME, TABLE_NAME

REPO = Path(__file__).resolve().parent.parent
ALEMBIC = Path(sys.executable).parent / "alembic"
KEY_COLUMNS = ["namespace", "name", "consumer_group", "partition_id"]


@dataclass
class Database:
    """A new, empty database (SQLite file) or schema (PostgreSQL) for one test."""

    url: str
    schema: str | None
    engine: sa.Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each dialect in turn: a fresh SQLite file, PostgreSQL schema, or MySQL database."""
    schema: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    elif request.param == "mysql":
        url = request.getfixturevalue("mysql_database")
    else:
        url, schema = request.getfixturevalue("postgres_schema")
    engine = sa.create_engine(url)
    try:
        yield Database(url, schema, engine)
    finally:
        engine.dispose()


def table_names(engine: sa.Engine, schema: str | None) -> set[str]:
    return set(sa.inspect(engine).get_table_names(schema=schema))


def version_rows(engine: sa.Engine, schema: str | None) -> list[str]:
    table = sa.table(m.VERSION_TABLE, sa.column("version_num"), schema=schema)
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table.c.version_num)).scalars())


def schema_differences(engine: sa.Engine, schema: str | None) -> list[Any]:
    """What Alembic's autogenerate finds between the database and the code's tables."""
    target = sa.MetaData()
    dialect = dialect_for_engine(engine)
    for table in (dialect.table, dialect.ownerships):
        if schema is None:
            table.to_metadata(target)
        else:
            table.to_metadata(target, schema=schema)

    def only_our_schema(name: str | None, type_: str, parent_names: object) -> bool:
        return type_ != "schema" or name == schema

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "version_table": m.VERSION_TABLE,
                "version_table_schema": schema,
                "include_schemas": schema is not None,
                "include_name": only_our_schema,
            },
        )
        return list(compare_metadata(context, target))


def assert_schema_matches_code(engine: sa.Engine, schema: str | None) -> None:
    assert schema_differences(engine, schema) == []
    # compare_metadata ignores primary keys: check the composite key and its column order.
    hashed = engine.dialect.name in ("mysql", "mariadb")
    for table in (TABLE_NAME, OWNERSHIPS_TABLE_NAME):
        primary_key = sa.inspect(engine).get_pk_constraint(table, schema=schema)
        assert primary_key["constrained_columns"] == (["key_hash"] if hashed else KEY_COLUMNS)


# --- the scripts ------------------------------------------------------------------------------


def test_head_constant_is_the_newest_script() -> None:
    revisions = m.history()
    assert m.HEAD_REVISION == m.head() == revisions[0].revision
    assert revisions[-1].down_revision is None
    assert revisions[-1].revision == "0001"
    assert "checkpoints" in revisions[-1].description


def test_scripts_come_from_the_checkout_in_an_editable_install() -> None:
    assert m.script_location() == REPO / "migrations"


def test_schema_comparison_notices_a_difference(tmp_path: Path) -> None:
    """Guard for the tests below: a wrong type in the database is reported."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'wrong.db'}")
    wrong = sa.MetaData()
    sa.Table(
        TABLE_NAME,
        wrong,
        *(
            sa.Column(c.name, sa.Integer() if c.name == "sequence_number" else c.type)
            for c in SQLiteDialect.table.columns
        ),
    )
    wrong.create_all(engine)
    differences = schema_differences(engine, None)
    engine.dispose()
    assert any("sequence_number" in str(diff) for diff in differences)


# --- upgrade, downgrade, current --------------------------------------------------------------


def test_upgrade_downgrade_upgrade_matches_the_code(database: Database) -> None:
    engine, schema = database.engine, database.schema
    assert m.current(engine, schema=schema) is None

    m.upgrade(database.url, schema=schema)
    assert m.current(database.url, schema=schema) == m.head()
    assert version_rows(engine, schema) == [m.head()]
    assert_schema_matches_code(engine, schema)

    m.downgrade(engine, "base", schema=schema)
    assert m.current(engine, schema=schema) is None
    assert TABLE_NAME not in table_names(engine, schema)
    assert OWNERSHIPS_TABLE_NAME not in table_names(engine, schema)

    m.upgrade(engine, "head", schema=schema)
    assert m.current(engine, schema=schema) == m.head()
    assert_schema_matches_code(engine, schema)


LAG_COLUMNS = {"last_enqueued_sequence_number", "last_enqueued_offset", "last_enqueued_time"}


def test_revision_0003_adds_ownerships_and_lag_and_downgrades_keeping_checkpoints(
    database: Database,
) -> None:
    engine, schema = database.engine, database.schema
    m.upgrade(engine, "0002", schema=schema)
    table = sa.table(
        TABLE_NAME,
        *(sa.column(c) for c in [*KEY_COLUMNS, "stream_offset", "sequence_number"]),
        schema=schema,
    )
    row: dict[str, object] = {"stream_offset": "120", "sequence_number": 22}
    key = dict(zip(KEY_COLUMNS, ["ns", "hub", "$Default", "0"], strict=True))
    if database.dialect in ("mysql", "mariadb"):
        from streamcheckpoint.sql.dialects.mysql import key_hash

        table.append_column(sa.column("key_hash"))
        row["key_hash"] = key_hash(list(key.values()))
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(**key, **row))

    m.upgrade(engine, "0003", schema=schema)
    columns = {c["name"] for c in sa.inspect(engine).get_columns(TABLE_NAME, schema=schema)}
    assert columns >= LAG_COLUMNS
    assert OWNERSHIPS_TABLE_NAME in table_names(engine, schema)
    assert_schema_matches_code(engine, schema)

    m.downgrade(engine, "0002", schema=schema)
    columns = {c["name"] for c in sa.inspect(engine).get_columns(TABLE_NAME, schema=schema)}
    assert not LAG_COLUMNS & columns
    assert OWNERSHIPS_TABLE_NAME not in table_names(engine, schema)
    with engine.connect() as conn:  # the checkpoint survived both ways
        stored = conn.execute(sa.select(table.c.stream_offset, table.c.sequence_number)).all()
    assert [tuple(r) for r in stored] == [("120", 22)]


@pytest.mark.postgres
def test_schema_option_keeps_everything_in_that_schema(
    postgres_schema: tuple[str, str],
) -> None:
    url, schema = postgres_schema
    engine = sa.create_engine(url)
    try:
        public_before = table_names(engine, None)
        m.upgrade(engine, schema=schema)
        assert table_names(engine, schema) == {TABLE_NAME, OWNERSHIPS_TABLE_NAME, m.VERSION_TABLE}
        assert table_names(engine, None) == public_before
        columns = sa.inspect(engine).get_columns(TABLE_NAME, schema=schema)
        types = {c["name"]: c["type"] for c in columns}
        for name in ("enqueue_time", "updated_at"):
            column_type = types[name]
            assert isinstance(column_type, sa.TIMESTAMP)
            assert column_type.timezone is True
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_missing_postgres_schema_is_created_by_an_upgrade_quoted_as_given() -> None:
    """A command that needs the schema names the command that creates it and its SQL, quoted
    as PostgreSQL quotes (a hostile name can't turn the hint into other SQL); an upgrade
    creates it."""
    engine = sa.create_engine(require_server(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    canary = f"sc_canary_{uuid.uuid4().hex[:8]}"
    hostile = f'{canary}"; drop table "{canary}".canary; --'
    quoted = hostile.replace('"', '""')
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{canary}"')
            conn.exec_driver_sql(f'CREATE TABLE "{canary}".canary (x int)')
        with pytest.raises(SchemaError, match="db upgrade"):
            m.ensure_schema(engine, schema=hostile, migrate=False)
        with pytest.raises(SchemaError, match="db upgrade` creates it") as caught:
            m.downgrade(engine, "base", schema=hostile)
        assert f'CREATE SCHEMA IF NOT EXISTS "{quoted}"' in str(caught.value)
        m.ensure_schema(engine, schema=hostile)  # creates it, then the tables in it
        assert sa.inspect(engine).has_table(TABLE_NAME, schema=hostile)
        assert sa.inspect(engine).has_table("canary", schema=canary)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{quoted}" CASCADE')
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{canary}" CASCADE')
        engine.dispose()


@pytest.mark.postgres
def test_a_schema_the_role_may_not_create_names_the_sql_to_ask_for() -> None:
    admin = sa.create_engine(require_server(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    role = f"sc_weak_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    weak = sa.make_url(POSTGRES_URL).set(username=role)
    try:
        with pytest.raises(SchemaError) as caught:
            m.upgrade(weak, schema="sc_not_allowed")
        message = str(caught.value)
        assert "could not be created" in message
        assert "permission denied" in message
        assert "run CREATE SCHEMA IF NOT EXISTS sc_not_allowed," in message
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_applications_own_alembic_version_is_left_alone(database: Database) -> None:
    engine, schema = database.engine, database.schema
    app_version = sa.Table(
        "alembic_version",
        sa.MetaData(schema=schema),
        sa.Column("version_num", sa.String(32), primary_key=True),
    )
    app_version.create(engine)
    with engine.begin() as conn:
        conn.execute(app_version.insert().values(version_num="app_rev_42"))

    m.upgrade(engine, schema=schema)
    m.downgrade(engine, "base", schema=schema)
    m.upgrade(engine, schema=schema)

    assert m.current(engine, schema=schema) == m.head()
    with engine.connect() as conn:
        assert conn.execute(sa.select(app_version.c.version_num)).scalars().all() == ["app_rev_42"]


def test_someone_elses_checkpoints_table_is_not_touched(database: Database) -> None:
    engine, schema = database.engine, database.schema
    theirs = sa.Table(
        TABLE_NAME, sa.MetaData(schema=schema), sa.Column("id", sa.Integer, primary_key=True)
    )
    theirs.create(engine)
    with engine.begin() as conn:
        conn.execute(theirs.insert().values(id=7))

    with pytest.raises(SchemaError, match="already has a table 'checkpoints'"):
        m.ensure_schema(engine, schema=schema)
    with pytest.raises(SchemaError, match="not created by streamcheckpoint"):
        m.upgrade(engine, schema=schema)

    assert m.current(engine, schema=schema) is None
    with engine.connect() as conn:
        assert conn.execute(sa.select(theirs.c.id)).scalars().all() == [7]


def test_sqlite_engine_as_a_persister_makes_it(tmp_path: Path) -> None:
    engine, _, _ = open_engine(f"sqlite:///{tmp_path / 'p.db'}", {})
    try:
        m.ensure_schema(engine)
        assert m.current(engine) == m.head()
        m.downgrade(engine, "base")
        assert TABLE_NAME not in table_names(engine, None)
        m.ensure_schema(engine)
        assert_schema_matches_code(engine, None)
    finally:
        engine.dispose()


def test_downgrade_to_base_keeps_no_version(database: Database) -> None:
    m.ensure_schema(database.engine, schema=database.schema)
    m.downgrade(database.url, "base", schema=database.schema)
    assert version_rows(database.engine, database.schema) == []


# --- ensure_schema ----------------------------------------------------------------------------


def test_ensure_schema_without_migrate_names_the_command(database: Database) -> None:
    with pytest.raises(SchemaError) as caught:
        m.ensure_schema(database.engine, schema=database.schema, migrate=False)
    message = str(caught.value)
    assert "has no streamcheckpoint tables" in message
    assert "db upgrade" in message
    assert "streamcheckpoint.sql.migrations.upgrade(" in message
    assert "alembic -c alembic.ini -x url=" in message
    assert "upgrade head" in message
    if database.schema is not None:
        assert f"-x schema={database.schema}" in message
    assert table_names(database.engine, database.schema) == set()


def test_ensure_schema_without_migrate_accepts_a_database_at_head(database: Database) -> None:
    m.upgrade(database.engine, schema=database.schema)
    m.ensure_schema(database.engine, schema=database.schema, migrate=False)
    m.ensure_schema(database.engine, schema=database.schema)
    assert version_rows(database.engine, database.schema) == [m.head()]


def test_password_is_not_in_the_message() -> None:
    engine = sa.create_engine("postgresql+psycopg://app:s3cret@db.invalid/x")
    message = m._not_at_head_message(engine, "tenant", None)
    engine.dispose()
    assert "s3cret" not in message
    masked = "'postgresql+psycopg://app:***@db.invalid/x'"
    assert f"streamcheckpoint --url {masked} --schema tenant db upgrade" in message
    assert f"-x url={masked} -x schema=tenant upgrade head" in message


@pytest.mark.parametrize("migrate", [True, False])
def test_database_from_a_newer_version_is_refused(database: Database, migrate: bool) -> None:
    m.upgrade(database.engine, schema=database.schema)
    version = sa.table(m.VERSION_TABLE, sa.column("version_num"), schema=database.schema)
    with database.engine.begin() as conn:
        conn.execute(sa.update(version).values(version_num="9999_from_the_future"))
    with pytest.raises(SchemaError, match=r"9999_from_the_future.*does not know"):
        m.ensure_schema(database.engine, schema=database.schema, migrate=migrate)
    assert version_rows(database.engine, database.schema) == ["9999_from_the_future"]


def test_ensure_schema_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    m.upgrade(url)
    code = (
        "import sys, sqlalchemy as sa\n"
        "from streamcheckpoint.sql.migrations import ensure_schema\n"
        f"ensure_schema(sa.create_engine({url!r}), migrate=False)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'alembic'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert result.stdout.strip() == "[]"


# --- bad arguments and unreachable databases --------------------------------------------------


def test_schema_on_sqlite_is_a_value_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = sa.create_engine(url)
    with pytest.raises(ValueError, match="schema"):
        m.ensure_schema(engine, schema="s")
    with pytest.raises(ValueError, match="schema"):
        m.upgrade(url, schema="s")
    with pytest.raises(ValueError, match="schema"):
        m.upgrade(url, schema="s", sql=True)
    with pytest.raises(ValueError, match="schema"):
        m.current(engine, schema="s")
    engine.dispose()
    assert not (tmp_path / "x.db").exists()


def test_bad_arguments_are_refused_before_touching_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(TypeError, match="engine"):
        m.ensure_schema(url)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schema"):
        m.upgrade(url, schema=3, sql=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="revision"):
        m.downgrade(url, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"revision 'nope' is unknown.*0001"):
        m.upgrade(url, "nope")
    with pytest.raises(ValueError, match="revision 'nope' is unknown"):
        m.downgrade(url, "nope", sql=True)
    with pytest.raises(TypeError, match="url_or_engine"):
        m.current(42)  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()


def test_unreachable_server_is_a_connection_error() -> None:
    # Port 1 on the loopback interface refuses the connection at once.
    with pytest.raises(PersistConnectionError, match="could not connect"):
        m.current("postgresql+psycopg://postgres@127.0.0.1:1/test")


def test_a_password_in_the_query_is_masked_too() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test?password=Sekr1t"
    with pytest.raises(PersistConnectionError) as caught:
        m.current(url)
    assert "Sekr1t" not in str(caught.value)
    assert "password=***" in str(caught.value)
    engine = sa.create_engine(url)
    message = m._not_at_head_message(engine, None, None)
    engine.dispose()
    assert "Sekr1t" not in message
    assert "postgres@127.0.0.1:1/test?password=***" in message


@pytest.mark.postgres
def test_urls_are_accepted_as_a_persister_accepts_them(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    heroku, bare = (
        sa.make_url(url).set(drivername=name).render_as_string(hide_password=False)
        for name in ("postgres", "postgresql")
    )
    m.upgrade(heroku, schema=schema)
    assert m.current(bare, schema=schema) == m.head()
    m.downgrade(bare, "base", schema=schema)
    assert m.current(heroku, schema=schema) is None
    ddl = m.upgrade(heroku, schema=schema, sql=True)
    assert ddl is not None
    assert "TIMESTAMP WITH TIME ZONE" in ddl


def test_unsupported_databases_are_refused_before_connecting() -> None:
    import pymysql

    url = "mysql+mysqldb://root:s3cret@127.0.0.1:1/none"  # nothing listens on port 1
    # The mysqlclient dialect, with PyMySQL standing in for its module: not supported.
    engine = sa.create_engine(url, module=pymysql)
    calls: list[Callable[[], object]] = [
        lambda: m.ensure_schema(engine),
        lambda: m.upgrade(engine),
        lambda: m.current(url),
        lambda: m.downgrade(url, "base"),
        lambda: m.upgrade(url, sql=True),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="mysql") as caught:
            call()
        assert "s3cret" not in str(caught.value)
    engine.dispose()


@pytest.mark.parametrize(
    ("module", "url", "extra"),
    [
        ("psycopg", "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test", "postgres"),
        ("pymysql", "mysql://root:s3cret@127.0.0.1:1/test", "mysql"),
    ],
)
def test_a_missing_driver_is_named(
    monkeypatch: pytest.MonkeyPatch, module: str, url: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if the driver were not installed
    with pytest.raises(
        PersistError, match=re.escape(f"pip install 'streamcheckpoint[{extra}]'")
    ) as caught:
        m.current(url)
    assert "s3cret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)


def test_unopenable_sqlite_file_is_a_connection_error(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(PersistConnectionError, match="missing-dir"):
        m.ensure_schema(engine)
    engine.dispose()


# --- offline (--sql) --------------------------------------------------------------------------


def test_offline_sql_for_sqlite_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    ddl = m.upgrade(f"sqlite:///{path}", sql=True)
    assert ddl is not None
    assert "CREATE TABLE checkpoints" in ddl
    assert f"CREATE TABLE {m.VERSION_TABLE}" in ddl
    assert "alembic_version (" not in ddl.replace(m.VERSION_TABLE, "")
    assert "sequence_number BIGINT NOT NULL" in ddl
    assert not path.exists()


def test_offline_sql_for_postgres_in_a_schema() -> None:
    url = "postgresql+psycopg://nobody@db.invalid/never"  # offline: never connected to
    ddl = m.upgrade(url, schema="tenant", sql=True)
    assert ddl is not None
    assert "CREATE TABLE tenant.checkpoints" in ddl
    assert f"CREATE TABLE tenant.{m.VERSION_TABLE}" in ddl
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    assert "BEGIN;" in ddl
    assert "COMMIT;" in ddl

    down = m.downgrade(url, "base", schema="tenant", sql=True)
    assert down is not None
    assert "DROP TABLE tenant.checkpoints" in down
    assert "CREATE TABLE" not in down


@pytest.mark.parametrize(
    ("scheme", "collation"),
    [
        ("mariadb", "utf8mb4_nopad_bin"),
        ("mysql", "utf8mb4_0900_bin"),
        ("mariadb+pymysql", "utf8mb4_nopad_bin"),
    ],
)
def test_offline_sql_for_mysql_and_mariadb(scheme: str, collation: str) -> None:
    ddl = m.upgrade(f"{scheme}://nobody@db.invalid/never", sql=True)  # never connected to
    assert ddl is not None
    assert "PRIMARY KEY (key_hash)" in ddl
    assert "CONSTRAINT ck_checkpoints_key_hash CHECK" in ddl
    assert "KEY ix_checkpoints_group (namespace, name, consumer_group)" in ddl
    assert "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" in ddl
    assert f"VARCHAR(256) CHARACTER SET utf8mb4 COLLATE {collation}" in ddl
    assert "DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6))" in ddl
    down = m.downgrade(f"{scheme}://nobody@db.invalid/never", "base", sql=True)
    assert down is not None
    assert "DROP TABLE checkpoints" in down


@pytest.mark.parametrize(
    ("url", "table"),
    [
        ("sqlite:///never-0003.db", "ownerships"),
        ("postgresql+psycopg://nobody@db.invalid/never", "tenant.ownerships"),
        ("mariadb://nobody@db.invalid/never", "ownerships"),
    ],
)
def test_offline_sql_of_revision_0003_both_ways(url: str, table: str) -> None:
    schema = "tenant" if "postgresql" in url else None
    up = m.upgrade(url, "0002:0003", schema=schema, sql=True)
    assert up is not None
    assert f"CREATE TABLE {table}" in up
    assert "ADD COLUMN last_enqueued_sequence_number BIGINT" in up
    assert "last_enqueued_time" in up
    assert "UPDATE streamcheckpoint_alembic_version SET version_num='0003'" in up.replace(
        "tenant.", ""
    )
    if url.startswith("mariadb"):
        assert "CONSTRAINT ck_ownerships_key_hash CHECK" in up
        assert "PRIMARY KEY (key_hash)" in up
    down = m.downgrade(url, "0003:0002", schema=schema, sql=True)
    assert down is not None
    assert f"DROP TABLE {table}" in down
    if url.startswith("sqlite"):  # SQLite drops columns by copying the table without them
        assert "CREATE TABLE _alembic_tmp_checkpoints" in down
        assert "last_enqueued" not in down
    else:
        assert "DROP COLUMN last_enqueued_time" in down
    assert not Path("never-0003.db").exists()


def test_offline_sql_range(tmp_path: Path) -> None:
    ddl = m.upgrade(f"sqlite:///{tmp_path / 'x.db'}", "base:0001", sql=True)
    assert ddl is not None
    assert "CREATE TABLE checkpoints" in ddl


# --- the alembic command line from the repository root ----------------------------------------


def run_alembic(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STREAMCHECKPOINT_URL"}
    if url is not None:
        env["STREAMCHECKPOINT_URL"] = url
    return subprocess.run(
        [str(ALEMBIC), "-c", "alembic.ini", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_alembic_cli_with_x_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run_alembic("-x", f"url={url}", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert m.current(url) == m.head()
    engine = sa.create_engine(url)
    assert_schema_matches_code(engine, None)
    engine.dispose()

    result = run_alembic("-x", f"url={url}", "downgrade", "base")
    assert result.returncode == 0, result.stderr
    assert m.current(url) is None


def test_alembic_cli_with_environment_url_and_sql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run_alembic("upgrade", "head", "--sql", url=url)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE checkpoints" in result.stdout
    assert m.VERSION_TABLE in result.stdout
    assert not (tmp_path / "cli.db").exists()

    result = run_alembic("upgrade", "head", url=url)
    assert result.returncode == 0, result.stderr
    assert m.current(url) == m.head()


def test_alembic_cli_refuses_an_unsupported_database() -> None:
    result = run_alembic("-x", "url=oracle://scott:s3cret@127.0.0.1:1/x", "upgrade", "head")
    assert result.returncode != 0
    assert "'oracle' is not supported" in result.stderr
    assert "s3cret" not in result.stderr


def test_alembic_cli_names_an_unreachable_server_in_one_line() -> None:
    result = run_alembic("-x", "url=mysql+pymysql://root:s3cret@127.0.0.1:1/x", "upgrade", "head")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "could not connect to mysql+pymysql://root:***@127.0.0.1:1/x" in result.stderr
    assert "s3cret" not in result.stderr


def test_alembic_cli_without_url_says_how_to_give_one() -> None:
    result = run_alembic("upgrade", "head")
    assert result.returncode != 0
    assert "STREAMCHECKPOINT_URL" in result.stderr
    assert "-x url=" in result.stderr


@pytest.mark.postgres
def test_alembic_cli_with_schema(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    heroku = sa.make_url(url).set(drivername="postgres").render_as_string(hide_password=False)
    result = run_alembic("-x", f"url={heroku}", "-x", f"schema={schema}", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert m.current(url, schema=schema) == m.head()


# --- many hosts opening a new database at once ------------------------------------------------

OPENERS = 10

# One host opening its persister. It imports everything first, says "ready", and opens when the
# test writes a line to its stdin, so that all of them reach ensure_schema together. Styles:
# "persister" opens a SQLPersister (the engine it builds itself), "plain" migrates a default
# engine, "hooked" an engine whose own "begin" hook has already begun the transaction.
OPENER_SCRIPT = """
import sys
import alembic.command
import sqlalchemy as sa
from streamcheckpoint import Checkpoint, SQLPersister
from streamcheckpoint.sql.migrations import ensure_schema

url, schema, style = sys.argv[1], sys.argv[2] or None, sys.argv[3]
if style == "hooked":
    engine = sa.create_engine(url, connect_args={"isolation_level": None})
    sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
else:
    engine = sa.create_engine(url)
print("ready", flush=True)
sys.stdin.readline()
if style == "persister":
    with SQLPersister(url, schema=schema) as persister:
        persister.write("ns", "hub", "cg", sys.argv[4], Checkpoint("1", 1))
else:
    ensure_schema(engine, schema=schema)
print("opened", flush=True)
"""


@pytest.mark.slow
def test_concurrent_openers_migrate_once(database: Database) -> None:
    styles = ["persister", "plain"]
    if database.dialect == "sqlite":
        styles.append("hooked")
    openers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                OPENER_SCRIPT,
                database.url,
                database.schema or "",
                styles[i % len(styles)],
                str(i),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(OPENERS)
    ]
    try:
        for opener in openers:
            assert opener.stdout is not None
            assert opener.stdout.readline().strip() == "ready"
        for opener in openers:
            assert opener.stdin is not None
            opener.stdin.write("go\n")
            opener.stdin.flush()
        outcomes = [opener.communicate(timeout=120) for opener in openers]
    finally:
        for opener in openers:
            opener.kill() if opener.poll() is None else None
    assert [(out.strip(), err) for out, err in outcomes] == [("opened", "")] * OPENERS
    assert version_rows(database.engine, database.schema) == [m.head()]
    assert_schema_matches_code(database.engine, database.schema)
    table = sa.table(TABLE_NAME, sa.column("partition_id"), schema=database.schema)
    with database.engine.connect() as conn:
        written = set(conn.execute(sa.select(table.c.partition_id)).scalars())
    persisters = [i for i in range(OPENERS) if styles[i % len(styles)] == "persister"]
    assert written == {str(i) for i in persisters}


@pytest.mark.postgres
def test_postgres_migration_waits_for_the_advisory_lock(
    postgres_schema: tuple[str, str],
) -> None:
    url, schema = postgres_schema
    engine = sa.create_engine(url)
    errors: list[BaseException] = []

    def open_persister() -> None:
        try:
            m.ensure_schema(engine, schema=schema)
        except BaseException as exc:
            errors.append(exc)

    key = PG_MIGRATION_LOCK_KEY % 2**64  # pg_locks shows a bigint key as two unsigned halves
    waiting = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
    ).bindparams(high=key >> 32, low=key & 0xFFFFFFFF)
    try:
        with engine.connect() as holder, holder.begin():
            m.take_migration_lock(holder)
            opener = threading.Thread(target=open_persister)
            opener.start()
            with engine.connect() as probe:
                # Wait (without a time limit that could flake) until the opener blocks on our lock.
                while opener.is_alive() and not probe.execute(waiting).scalar_one():
                    probe.rollback()
                    time.sleep(0.01)
            assert opener.is_alive()
            assert m.current(engine, schema=schema) is None
        opener.join(timeout=120)
        assert not opener.is_alive()
        assert errors == []
        assert m.current(engine, schema=schema) == m.head()
    finally:
        engine.dispose()
