"""open_persister: each URL form opens the right persister; bad URLs are one clear line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from streamcheckpoint import (
    Checkpoint,
    CheckpointRegressionError,
    FilePersister,
    MemoryPersister,
    PersistConnectionError,
    PersistError,
    SchemaError,
    SQLPersister,
    open_persister,
)
from streamcheckpoint.redaction import SUPPORTED_URLS, mask_url, redact
from streamcheckpoint.urls import locate

KEY = ("ns.example", "hub", "cg", "0")


def test_memory_url_opens_a_memory_persister() -> None:
    with open_persister("memory://", monotonic=True) as persister:
        assert isinstance(persister, MemoryPersister)
        assert persister.monotonic is True
        persister.write(*KEY, Checkpoint("5", 5))
        with pytest.raises(CheckpointRegressionError):
            persister.write(*KEY, Checkpoint("4", 4))


def test_absolute_file_url_opens_a_file_persister(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    with open_persister(f"file://{directory}") as persister:
        assert isinstance(persister, FilePersister)
        assert persister.layout == "nested"
        persister.write(*KEY, Checkpoint("1", 1))
    with open_persister(directory.as_uri()) as again:  # file:///... as pathlib writes it
        assert again.read(*KEY) == Checkpoint("1", 1)


def test_relative_file_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_persister("file:data/checkpoints") as persister:
        persister.write(*KEY, Checkpoint("1", 1))
    assert (tmp_path / "data" / "checkpoints").is_dir()
    with open_persister(f"file://{tmp_path / 'data' / 'checkpoints'}") as same:
        assert same.read(*KEY) == Checkpoint("1", 1)


def test_file_url_layout_and_options(tmp_path: Path) -> None:
    with open_persister(f"file://{tmp_path}/go?layout=go", monotonic=True) as persister:
        assert isinstance(persister, FilePersister)
        assert persister.layout == "go"
        assert persister.monotonic is True
        persister.write(*KEY, Checkpoint("1", 1))
    assert (tmp_path / "go" / "ns.example_hub_cg_0").is_file()
    with open_persister(f"file://{tmp_path}/nested", layout="go") as by_option:
        assert isinstance(by_option, FilePersister)
        assert by_option.layout == "go"
    with open_persister(f"file://{tmp_path}/space%20name?layout=nested") as quoted:
        quoted.write(*KEY, Checkpoint("1", 1))
    assert (tmp_path / "space name").is_dir()


@pytest.mark.parametrize(
    "url",
    [
        "file://otherhost/dir",
        "file:",
        "file:///dir?layout=flat",
        "file:///dir?layout=go&layout=nested",
        "file:///dir?mode=fast",
        "file:///dir#part",
        "memory://somewhere",
    ],
)
def test_bad_file_and_memory_urls_are_value_errors(url: str) -> None:
    with pytest.raises(ValueError, match="Supported: memory://") as caught:
        open_persister(url)
    assert "\n" not in str(caught.value)


def test_layout_option_contradicting_the_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        open_persister(f"file://{tmp_path}?layout=go", layout="nested")


def test_sqlite_url_opens_a_sql_persister_with_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with pytest.raises(SchemaError):
        open_persister(url, migrate=False)
    with open_persister(url, monotonic=True, pool_size=3) as persister:
        assert isinstance(persister, SQLPersister)
        assert persister.monotonic is True
        persister.write(*KEY, Checkpoint("1", 1))
    with open_persister(url, migrate=False) as again:
        assert again.read(*KEY) == Checkpoint("1", 1)
    with open_persister("sqlite://") as memory:
        assert isinstance(memory, SQLPersister)


@pytest.mark.postgres
def test_postgresql_urls_use_psycopg(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    bare = url.replace("postgresql+psycopg://", "postgresql://")
    with open_persister(bare, schema=schema) as persister:
        assert isinstance(persister, SQLPersister)
        assert persister.engine.dialect.driver == "psycopg"
        persister.write(*KEY, Checkpoint("1", 1))
    heroku_style = url.replace("postgresql+psycopg://", "postgres://")
    with open_persister(heroku_style, schema=schema) as again:
        assert isinstance(again, SQLPersister)
        assert again.engine.dialect.driver == "psycopg"
        assert again.read(*KEY) == Checkpoint("1", 1)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nonsense", "not a URL"),
        ("", "not a URL"),
        ("oracle://scott:tiger@db.example/orcl", "'oracle' is not supported"),
        ("mysql+nosuchdriver://root:pw@127.0.0.1/test", "driver 'nosuchdriver'"),
        ("mariadb+mysqldb://root:pw@127.0.0.1/test", "use mariadb+pymysql://"),
        ("mssql+pyodbc://sa:pw@127.0.0.1/test", "'mssql' is not supported"),
        ("postgresql+psycopg2://postgres:pw@127.0.0.1/test", "driver 'psycopg2'"),
        ("sqlite+nosuchdriver:///x.db", "driver 'nosuchdriver'"),
    ],
)
def test_bad_sql_urls_are_one_clear_line(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as caught:
        open_persister(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "Supported" in message or "+psycopg://" in message or "+pymysql://" in message
    for secret in ("tiger", ":pw@"):
        assert secret not in message
    if "@" in url:
        assert "***" in message


def test_a_driver_that_is_not_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    with pytest.raises(PersistError, match="psycopg") as caught:
        open_persister("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test")
    assert "s3cret" not in str(caught.value)
    assert "pip install" in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)


def test_unreachable_server_is_a_connection_error() -> None:
    with pytest.raises(PersistConnectionError) as caught:
        open_persister(
            "postgresql://postgres:s3cret@127.0.0.1:1/x", connect_args={"connect_timeout": 3}
        )
    assert "s3cret" not in str(caught.value)


SECRET = "Sekr1t"
UNREACHABLE_WITH_PASSWORDS = [
    f"postgresql+psycopg://postgres@127.0.0.1:1/test?password={SECRET}",
    f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/test",
    f"postgresql://postgres@127.0.0.1:1/test?sslmode=disable&password={SECRET}",
]


@pytest.mark.parametrize("url", UNREACHABLE_WITH_PASSWORDS)
def test_connection_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(PersistConnectionError) as caught:
        open_persister(url, connect_args={"connect_timeout": 3})
    message = str(caught.value)
    assert SECRET not in message
    assert "127.0.0.1:1/test" in message
    assert "***" in message
    assert "Connection refused" in message  # the driver's reason stays, after the masked URL


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:Pq7@Zx9@127.0.0.1:5432/test",
        "mysql://root:Pq7@Zx9@Wv4@127.0.0.1:3306/test",
        "postgresql://postgres:Pq7@Zx9:Wv4@db.example:5432/test",
    ],
)
def test_an_unencoded_at_in_a_password_is_refused_showing_none_of_it(url: str) -> None:
    with pytest.raises(ValueError, match="must be percent-encoded") as caught:
        open_persister(url)
    message = str(caught.value)
    for part in ("Pq7", "Zx9", "Wv4"):
        assert part not in message


def test_sqlite_with_two_slashes_says_what_the_url_looks_like() -> None:
    with pytest.raises(ValueError, match=re.escape("sqlite:///checkpoints.db")):
        open_persister("sqlite://checkpoints.db")


def test_a_file_that_is_not_a_database_is_not_a_connection_error(tmp_path: Path) -> None:
    """Retry loops retry ConnectionError: a file that isn't a database must not be one."""
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database")
    with pytest.raises(PersistError, match="file is not a database") as caught:
        open_persister(f"sqlite:///{junk}")
    assert not isinstance(caught.value, ConnectionError)


def test_a_short_password_does_not_garble_the_message() -> None:
    # "o" is in "port", "Connection", "postgres": only the password itself is masked.
    with pytest.raises(PersistConnectionError) as caught:
        open_persister(
            "postgresql+psycopg://postgres:o@127.0.0.1:1/test", connect_args={"connect_timeout": 3}
        )
    message = str(caught.value)
    assert "postgresql+psycopg://postgres:***@127.0.0.1:1/test" in message
    assert "port 1 failed" in message


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["query", "userinfo"])
def test_repr_never_shows_the_password(postgres_schema: tuple[str, str], where: str) -> None:
    import sqlalchemy as sa

    url, schema = postgres_schema  # the test server trusts: any password is accepted
    parsed = sa.make_url(url)
    if where == "query":
        parsed = parsed.update_query_dict({"password": SECRET})
    else:
        parsed = parsed.set(password=SECRET)
    with open_persister(parsed.render_as_string(hide_password=False), schema=schema) as persister:
        shown = repr(persister)
    assert SECRET not in shown
    assert "***" in shown
    assert "127.0.0.1:5432/test" in shown


def test_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="url"):
        open_persister(Path("/tmp"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://u:s3cret@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgresql://:s3cret@h/db", "postgresql://:***@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=s3cret&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
        ("file:///tmp/dir?layout=go", "file:///tmp/dir?layout=go"),
        ("memory://", "memory://"),
        ("not a url but has //user:s3cret@host", "not a url but has //user:***@host"),
    ],
)
def test_mask_url_hides_passwords_only(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_supported_forms_name_every_kind() -> None:
    for form in (
        "memory://",
        "file:///",
        "file:relative",
        "sqlite:///",
        "sqlite://",
        "postgresql+psycopg://",
    ):
        assert form in SUPPORTED_URLS


def test_redact_masks_a_urls_secrets_where_a_driver_echoes_them() -> None:
    url = "postgresql+psycopg://app:p@db.invalid/x?password=zz9"
    text = "connect to postgresql+psycopg://app:p@db.invalid/x failed: password=p rejected (zz9)"
    out = redact(text, url)
    assert out == (
        "connect to postgresql+psycopg://app:***@db.invalid/x failed: password=*** rejected (***)"
    )
    # a secret that is part of a longer word is left alone: the message stays readable
    assert redact("psycopg: bad password", "postgresql://u:psycopg@h/d") == "***: bad password"
    assert redact("postgresql says no", "postgresql://u:p@h/d") == "postgresql says no"


@pytest.mark.parametrize(
    ("url", "kind", "path"),
    [
        ("memory://", "memory", None),
        ("file:///srv/ckpt?layout=go", "file", Path("/srv/ckpt")),
        ("file:rel/dir", "file", Path("rel/dir")),
        ("sqlite:///rel.db", "sql", Path("rel.db")),
        ("sqlite:////abs/c.db?synchronous=NORMAL", "sql", Path("/abs/c.db")),
        ("sqlite://", "sql", None),
        ("sqlite:///shared?mode=memory&cache=shared", "sql", None),
        ("sqlite://h:xx/a.db", "sql", None),
        ("postgresql+psycopg://u:p@h/db", "sql", None),
        ("mysql+pymysql://u:p@h/db", "sql", None),
    ],
)
def test_locate_names_the_kind_and_local_path_without_opening(
    url: str, kind: str, path: Path | None
) -> None:
    location = locate(url)
    assert (location.kind, location.path) == (kind, path)
    assert not Path("rel.db").exists()  # nothing was created


def test_locate_refuses_a_malformed_file_or_memory_url() -> None:
    with pytest.raises(ValueError, match="another host"):
        locate("file://elsewhere/dir")
    with pytest.raises(ValueError, match="exactly memory://"):
        locate("memory://x")
