"""The ``streamcheckpoint`` command, run in-process with click's runner against real stores.

Every invocation runs with ``catch_exceptions=False``: an exception the CLI fails to turn into
a one-line error escapes and fails the test, so no test can pass on a traceback's exit code 1.
Subprocess runs of the installed script are in ``test_cli_process.py``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from streamcheckpoint import Checkpoint, CheckpointRecord
from streamcheckpoint.cli import app as cli_app
from streamcheckpoint.cli import cli
from streamcheckpoint.cli.demo import (
    DEMO_CONSUMER_GROUP,
    DEMO_NAME,
    DEMO_NAMESPACE,
    event_checkpoint,
)
from streamcheckpoint.cli.render import STATUS_FIELDS
from streamcheckpoint.sql.migrations import VERSION_TABLE
from streamcheckpoint.urls import open_persister

Key = tuple[str, ...]
GROUP: Key = ("ns.servicebus.windows.net", "hub", "$Default")
UNREACHABLE = "postgresql+psycopg://u:s3cret@127.0.0.1:1/x"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every command in tmp_path (the default URL is relative) with no URL from the env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMCHECKPOINT_URL", raising=False)
    monkeypatch.delenv("STREAMCHECKPOINT_SCHEMA", raising=False)


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the CLI; exceptions it doesn't handle propagate (a traceback fails the test)."""
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def ok(*args: str, input: str | None = None) -> Result:
    """Run the CLI and require success."""
    result = invoke(*args, input=input)
    assert result.exit_code == 0, f"{args} exited {result.exit_code}:\n{result.output}"
    return result


def assert_error(result: Result, code: int, *needles: str) -> str:
    """Exit ``code`` with exactly one line, ``error: ...``, on stderr; return that line."""
    assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}:\n{result.output}"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"wanted one line on stderr, got {lines}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def go_url(directory: Path) -> str:
    return f"file://{directory}?layout=go"


def records(url: str, *scope: str, schema: str | None = None) -> list[CheckpointRecord]:
    """What the library (not the CLI) reads from the store at ``url``."""
    options = {"schema": schema} if schema is not None else {}
    with open_persister(url, **options) as store:
        return store.list(*scope)


def positions(url: str, *scope: str, schema: str | None = None) -> dict[str, tuple[str, int]]:
    """partition id -> (offset, sequence number) of the stored checkpoints."""
    return {
        r.key.partition_id: (r.checkpoint.offset, r.checkpoint.sequence_number)
        for r in records(url, *scope, schema=schema)
    }


def write_args(
    url: str, partition: str, offset: str, sequence: int, *more: str, group: Key = GROUP
) -> list[str]:
    """The command line of ``streamcheckpoint --url URL write ...``."""
    checkpoint = ["--offset", offset, "--sequence", str(sequence)]
    return ["--url", url, "write", *group, partition, *checkpoint, *more]


def write(url: str, partition: str, sequence: int, group: Key = GROUP) -> None:
    """Store a checkpoint at offset ``sequence * 10`` through the CLI."""
    ok(*write_args(url, partition, str(sequence * 10), sequence, group=group))


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the rich tables in ``output``, as stripped cells."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def status_json(url: str, *args: str) -> list[dict[str, object]]:
    rows = json.loads(ok("--url", url, "status", "--format", "json", *args).stdout)
    assert isinstance(rows, list)
    return rows


def age_row(db: Path, partition: str, age: timedelta) -> None:
    """Make one row's last update ``age`` old, writing the UTC text the SQLite type stores."""
    when = (datetime.now(timezone.utc) - age).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(db) as conn:
        changed = conn.execute(
            "UPDATE checkpoints SET updated_at = ? WHERE partition_id = ?", (when, partition)
        ).rowcount
    conn.close()
    assert changed == 1


def table_names(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    return names


def empty_sqlite_file(path: Path) -> Path:
    """A SQLite database that exists but has none of our tables (not migrated)."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite file with four partitions of GROUP (ids 10, 2, 1, 0) and one of another group."""
    path = tmp_path / "store.db"
    url = sqlite_url(path)
    for partition, sequence in (("10", 100), ("2", 20), ("1", 10), ("0", 0)):
        write(url, partition, sequence)
    write(url, "0", 7, group=(GROUP[0], GROUP[1], "other"))
    return path


@pytest.fixture
def go_dir(tmp_path: Path, go_fixtures_dir: Path) -> Path:
    """A copy of the directory written by Go's FilePersister."""
    target = tmp_path / "go"
    shutil.copytree(go_fixtures_dir / "files", target)
    return target


GO_NAMES = ("--namespace", "myns", "--name", "myhub", "--consumer-group", "$Default")
GO_DEFAULT_GROUP = {"0": ("120", 22), "1": ("-1", 0), "2": ("@latest", 0)}


# -- where the store is -----------------------------------------------------------------------


def test_default_url_is_checkpoints_db_in_the_working_directory(tmp_path: Path) -> None:
    ok("write", *GROUP, "0", "--offset", "5", "--sequence", "3")

    assert (tmp_path / "checkpoints.db").is_file()
    assert positions(sqlite_url(tmp_path / "checkpoints.db")) == {"0": ("5", 3)}
    assert "offset=5 sequence_number=3" in ok("read", *GROUP, "0").stdout


def test_environment_url_is_used_and_url_option_wins(tmp_path: Path) -> None:
    from_env, from_option = tmp_path / "env.db", tmp_path / "option.db"
    env = {"STREAMCHECKPOINT_URL": sqlite_url(from_env)}

    result = invoke("write", *GROUP, "0", "--offset", "1", "--sequence", "1", env=env)
    assert result.exit_code == 0, result.output
    result = invoke(*write_args(sqlite_url(from_option), "0", "2", 2), env=env)
    assert result.exit_code == 0, result.output

    assert positions(sqlite_url(from_env)) == {"0": ("1", 1)}
    assert positions(sqlite_url(from_option)) == {"0": ("2", 2)}
    assert not (tmp_path / "checkpoints.db").exists()


def test_file_and_memory_urls_work(tmp_path: Path) -> None:
    nested = f"file://{tmp_path / 'dir'}"
    write(nested, "3", 30)

    assert positions(nested) == {"3": ("300", 30)}
    assert "offset=300 sequence_number=30" in ok("--url", nested, "read", *GROUP, "3").stdout
    assert [row["partition_id"] for row in status_json(nested)] == ["3"]
    assert len(status_json(nested.replace("file:", "FILE:"))) == 1  # schemes ignore case
    assert status_json("memory://") == []


# -- status -----------------------------------------------------------------------------------


def test_status_json_lists_partitions_in_natural_order(db: Path) -> None:
    rows = status_json(
        sqlite_url(db), "--namespace", GROUP[0], "--name", GROUP[1], "--consumer-group", GROUP[2]
    )

    assert [row["partition_id"] for row in rows] == ["0", "1", "2", "10"]
    assert all(list(row) == list(STATUS_FIELDS) for row in rows)
    first = rows[1]
    assert first["namespace"] == GROUP[0]
    assert first["name"] == GROUP[1]
    assert first["consumer_group"] == GROUP[2]
    assert (first["offset"], first["sequence_number"]) == ("100", 10)
    assert first["enqueue_time"] is None
    updated = datetime.fromisoformat(str(first["updated_at"]).replace("Z", "+00:00"))
    assert str(first["updated_at"]).endswith("Z")
    assert abs(datetime.now(timezone.utc) - updated) < timedelta(hours=1)


def test_status_filters_narrow_by_namespace_then_hub_then_group(db: Path) -> None:
    url = sqlite_url(db)
    assert len(status_json(url)) == 5
    assert len(status_json(url, "--namespace", GROUP[0], "--name", GROUP[1])) == 5
    other = status_json(
        url, "--namespace", GROUP[0], "--name", GROUP[1], "--consumer-group", "other"
    )
    assert [(r["consumer_group"], r["sequence_number"]) for r in other] == [("other", 7)]
    assert status_json(url, "--namespace", "nobody") == []


def test_status_csv_has_a_header_and_the_same_keys(db: Path) -> None:
    out = ok("--url", sqlite_url(db), "status", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))

    assert out.splitlines()[0] == ",".join(STATUS_FIELDS)
    assert [(r["consumer_group"], r["partition_id"]) for r in rows] == [
        ("$Default", "0"),
        ("$Default", "1"),
        ("$Default", "2"),
        ("$Default", "10"),
        ("other", "0"),
    ]
    assert rows[3]["sequence_number"] == "100"
    assert rows[3]["enqueue_time"] == ""


def test_status_table_shows_ages_and_utc_enqueue_times(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "t.db")
    for partition in ("10", "9"):
        ok(*write_args(url, partition, "4096", 8, "--enqueue-time", "2026-06-30T14:00:00.5+02:00"))

    out = ok("--url", url, "status").stdout
    rows = table_rows(out)

    assert "Enqueued (UTC)" in out
    assert "Updated" in out
    assert "Stale" not in out
    assert [row[3] for row in rows] == ["9", "10"]
    for row in rows:
        assert row[:3] == list(GROUP)
        assert row[4:7] == ["4096", "8", "2026-06-30T12:00:00.500000Z"]
        assert row[7].endswith("s ago") or row[7].endswith("m ago"), row


def test_status_of_an_empty_store_is_an_empty_table(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "empty.db")
    ok("--url", url, "db", "upgrade")

    result = ok("--url", url, "status")

    assert "Namespace" in result.stdout
    assert table_rows(result.stdout) == []
    assert status_json(url) == []
    assert ok("--url", url, "status", "--format", "csv").stdout.strip() == ",".join(STATUS_FIELDS)


def test_stale_marks_only_old_partitions_and_exits_3(db: Path) -> None:
    url = sqlite_url(db)
    age_row(db, "2", timedelta(minutes=10))

    result = invoke("--url", url, "status", "--format", "json", "--stale", "5m")
    assert result.exit_code == 3, result.output
    stale = {
        (r["consumer_group"], r["partition_id"]): r["stale"] for r in json.loads(result.stdout)
    }
    assert stale == {
        ("$Default", "0"): False,
        ("$Default", "1"): False,
        ("$Default", "2"): True,
        ("$Default", "10"): False,
        ("other", "0"): False,
    }

    result = invoke("--url", url, "status", "--format", "csv", "--stale", "5m")
    assert result.exit_code == 3
    flags = [(r["partition_id"], r["stale"]) for r in csv.DictReader(io.StringIO(result.stdout))]
    assert [p for p, flag in flags if flag == "True"] == ["2"]

    result = invoke("--url", url, "status", "--stale", "5m")
    assert result.exit_code == 3
    rows = table_rows(result.stdout)
    assert [(row[3], row[7], row[8]) for row in rows if row[8] != "ok"] == [
        ("2", "10m ago", "STALE")
    ]
    assert len(rows) == 5
    assert "1 partition(s) stale" in result.stderr


def test_stale_threshold_not_reached_exits_0(db: Path) -> None:
    age_row(db, "2", timedelta(minutes=10))

    rows = status_json(sqlite_url(db), "--stale", "1h")

    assert {row["stale"] for row in rows} == {False}
    assert "stale" not in status_json(sqlite_url(db))[0]


@pytest.mark.parametrize("value", ["5x", "5", "m", "-5m", "5 m"])
def test_bad_stale_value_is_a_usage_error(db: Path, value: str) -> None:
    result = invoke("--url", sqlite_url(db), "status", "--stale", value)
    assert_error(result, 2, repr(value), "30s")


def test_status_filters_by_any_combination(db: Path) -> None:
    """--name or --consumer-group alone, or any combination, narrows the listing."""
    namespace, hub, group = GROUP
    write(sqlite_url(db), "0", 3, group=(namespace, "another-hub", group))
    write(sqlite_url(db), "0", 4, group=("another.ns", hub, "other"))
    everything = status_json(sqlite_url(db))
    for options, wanted in [
        (["--name", hub], {"name": hub}),
        (["--consumer-group", group], {"consumer_group": group}),
        (["--name", hub, "--consumer-group", "other"], {"name": hub, "consumer_group": "other"}),
        (
            ["--namespace", namespace, "--consumer-group", group],
            {"namespace": namespace, "consumer_group": group},
        ),
    ]:
        expected = [r for r in everything if all(r[f] == v for f, v in wanted.items())]
        assert expected
        assert status_json(sqlite_url(db), *options) == expected


def test_status_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_error(invoke("--url", sqlite_url(missing), "status"), 1, str(missing))
    assert not missing.exists()

    directory = tmp_path / "no-such-dir"
    result = invoke("--url", f"file://{directory}", "status")
    assert_error(result, 1, str(directory))
    assert not directory.exists()


def test_status_never_migrates_a_database(tmp_path: Path) -> None:
    path = empty_sqlite_file(tmp_path / "plain.db")

    assert_error(invoke("--url", sqlite_url(path), "status"), 1, "db upgrade")
    assert_error(invoke("--url", sqlite_url(path), "read", *GROUP, "0"), 1, "db upgrade")
    assert table_names(path) == {"unrelated"}


def test_the_upgrade_command_an_error_suggests_works(tmp_path: Path) -> None:
    path = empty_sqlite_file(tmp_path / "plain.db")
    message = assert_error(invoke("--url", sqlite_url(path), "status"), 1)

    suggested = shlex.split(message.split("`")[1])
    assert suggested[0] == "streamcheckpoint"
    ok(*suggested[1:])
    assert ok("--url", sqlite_url(path), "status", "--format", "json").stdout.strip() == "[]"


# -- read / write -----------------------------------------------------------------------------


def test_read_of_an_unwritten_partition_is_start_of_stream(db: Path) -> None:
    out = ok("--url", sqlite_url(db), "read", *GROUP, "99").stdout
    assert out.strip() == "offset=-1 sequence_number=0 enqueue_time=-"


def test_write_then_read_round_trips_in_utc(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "rw.db")
    when = "2025-01-02T03:04:05.25+05:30"
    result = ok(*write_args(url, "4", "8589934592", 2**63 - 1, "--enqueue-time", when))
    assert "offset=8589934592" in result.stdout

    text = ok("--url", url, "read", *GROUP, "4").stdout.strip()
    as_json = ok("--url", url, "read", *GROUP, "4", "--format", "json").stdout.strip()

    assert text == (
        "offset=8589934592 sequence_number=9223372036854775807 "
        "enqueue_time=2025-01-01T21:34:05.250000Z"
    )
    expected = Checkpoint(
        "8589934592",
        9223372036854775807,
        datetime(2025, 1, 1, 21, 34, 5, 250000, tzinfo=timezone.utc),
    )
    assert Checkpoint.from_json(as_json) == expected
    assert records(url)[0].checkpoint == expected


def test_write_creates_and_migrates_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "sub.db"
    write(sqlite_url(path), "0", 1)
    assert {"checkpoints", VERSION_TABLE} <= table_names(path)


def test_verbose_shows_the_librarys_log_on_stderr_and_only_while_asked(tmp_path: Path) -> None:
    quiet = ok(*write_args("sqlite:///quiet.db", "0", "5", 5))
    assert "streamcheckpoint" not in quiet.stderr
    loud = ok("-v", *write_args("sqlite:///loud.db", "0", "5", 5))
    expected = "INFO streamcheckpoint.sql.migrations: database sqlite:///loud.db: upgrade from "
    assert expected in loud.stderr
    again = ok(*write_args("sqlite:///again.db", "0", "5", 5))
    assert "streamcheckpoint" not in again.stderr  # the handler went with the command


def test_write_monotonic_refuses_to_go_backwards(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "m.db")
    write(url, "0", 50)

    result = invoke(*write_args(url, "0", "1", 1, "--monotonic"))

    line = assert_error(result, 1, "sequence number 50", "ahead of 1", "Leave out --monotonic")
    assert "monotonic=False" not in line  # CLI messages name CLI options
    assert positions(url) == {"0": ("500", 50)}
    write(url, "0", 1)  # without --monotonic it is the operator's call
    assert positions(url) == {"0": ("10", 1)}


@pytest.mark.parametrize(
    ("value", "needle"),
    [("yesterday", "not ISO 8601"), ("2026-01-01T00:00:00", "no time zone")],
)
def test_bad_enqueue_time_is_a_usage_error_and_writes_nothing(
    tmp_path: Path, value: str, needle: str
) -> None:
    path = tmp_path / "w.db"
    result = invoke(*write_args(sqlite_url(path), "0", "1", 1, "--enqueue-time", value))
    assert_error(result, 2, "--enqueue-time", needle)
    assert not path.exists()


@pytest.mark.parametrize("command", ["read", "write"])
def test_empty_namespace_is_a_usage_error_before_the_store_is_touched(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "w.db"
    options = ["--offset", "1", "--sequence", "1"] if command == "write" else []
    result = invoke("--url", sqlite_url(path), command, "", "hub", "cg", "0", *options)
    assert_error(result, 2, "namespace must not be empty")
    assert not path.exists()


def test_click_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = invoke("write", *GROUP, "0", "--offset", "1", "--sequence", "many")
    assert result.exit_code == 2
    assert "'many' is not a valid integer" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "checkpoints.db").exists()


# -- errors common to every command -----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("read", *GROUP, "0"),
        ("write", *GROUP, "0", "--offset", "1", "--sequence", "1"),
        ("reset", *GROUP, "--to", "start", "--yes"),
        ("db", "current"),
        ("demo", "--events", "1"),
    ],
    ids=lambda args: args[0],
)
def test_unknown_url_scheme_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = invoke("--url", "bogus://host/x", *args)
    assert_error(result, 2, "bogus://host/x", "sqlite:///")


@pytest.mark.parametrize("url", ["sqlite:x", "FILE:no/such/dir/../../x?layout=nope"])
def test_malformed_urls_are_usage_errors(url: str) -> None:
    assert_error(invoke("--url", url, "status"), 2, "Supported:")


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("read", *GROUP, "0"),
        ("write", *GROUP, "0", "--offset", "1", "--sequence", "1"),
        ("db", "current"),
        ("db", "upgrade"),
    ],
    ids=lambda args: args[0] + "-" + args[1] if args[0] == "db" else args[0],
)
def test_unreachable_database_is_a_runtime_error_with_the_password_masked(
    args: tuple[str, ...],
) -> None:
    result = invoke("--url", UNREACHABLE, *args)
    assert_error(result, 1, "***", "127.0.0.1")
    assert "s3cret" not in result.output


def test_password_in_the_query_string_is_masked_too() -> None:
    for url in (
        "postgresql+psycopg://u@127.0.0.1:1/x?password=qu3ry",
        "postgresql+psycopg://u:s3cret@127.0.0.1:1/x?password=qu3ry",
    ):
        result = invoke("--url", url, "status")
        assert_error(result, 1, "***")
        assert "qu3ry" not in result.output
        assert "s3cret" not in result.output


@pytest.mark.parametrize("password", ["p", "postgres"])
def test_masking_a_short_password_leaves_the_message_readable(password: str) -> None:
    result = invoke("--url", f"postgresql+psycopg://postgres:{password}@127.0.0.1:1/x", "status")
    line = assert_error(result, 1, "could not connect to database postgresql+psycopg://")
    assert ":***@127.0.0.1:1/x" in line
    assert "port 1" in line


def test_schema_on_sqlite_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("--schema", "x", *write_args(sqlite_url(tmp_path / "s.db"), "0", "1", 1))
    assert_error(result, 2, "schema", "SQLite")


# -- reset ------------------------------------------------------------------------------------


def test_reset_group_to_start_with_yes_leaves_other_groups_alone(db: Path) -> None:
    url = sqlite_url(db)

    result = ok("--url", url, "reset", *GROUP, "--to", "start", "--yes")

    assert "reset 4 checkpoint(s) to start of stream" in result.stdout
    assert positions(url, *GROUP) == dict.fromkeys(("0", "1", "2", "10"), ("-1", 0))
    assert positions(url, GROUP[0], GROUP[1], "other") == {"0": ("70", 7)}


def test_reset_one_partition_to_end(db: Path) -> None:
    url = sqlite_url(db)

    ok("--url", url, "reset", *GROUP, "--partition", "2", "--to", "end", "--yes")

    assert positions(url, *GROUP) == {
        "0": ("0", 0),
        "1": ("100", 10),
        "2": ("@latest", 0),
        "10": ("1000", 100),
    }


def _damage(db: Path, partition: str) -> None:
    """Write a value into partition's row that no checkpoint can have (by hand, as people do)."""
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(
            "UPDATE checkpoints SET enqueue_time = 'yesterday' WHERE partition_id = ?",
            (partition,),
        )
    connection.close()


def test_status_shows_the_readable_partitions_and_marks_a_damaged_one(db: Path) -> None:
    url = sqlite_url(db)
    _damage(db, "2")
    table = invoke("--url", url, "status")
    assert table.exit_code == 1
    rows = {row[3]: row for row in table_rows(table.stdout)}
    assert set(rows) == {"0", "1", "2", "10"}
    assert rows["2"][4] == "UNREADABLE"
    assert rows["10"][5] == "100"  # the others as ever
    error = [line for line in table.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1
    assert "1 stored checkpoint(s) can't be read" in error[0]
    assert "--partition 2 --to delete" in error[0]
    as_json = invoke("--url", url, "status", "--format", "json")
    assert as_json.exit_code == 1
    by_partition = {row["partition_id"]: row for row in json.loads(as_json.stdout)}
    assert by_partition["1"]["error"] is None
    assert "yesterday" in str(by_partition["2"]["error"])
    as_csv = invoke("--url", url, "status", "--format", "csv")
    assert as_csv.stdout.splitlines()[0].endswith(",error")
    # A damaged checkpoint can always be deleted (or overwritten) with reset.
    reset = ok("--url", url, "reset", *GROUP, "--partition", "2", "--to", "delete", "--yes")
    assert "unreadable" in reset.stdout
    assert "deleted 1 checkpoint(s)" in reset.stdout
    assert set(positions(url, *GROUP)) == {"0", "1", "10"}
    _damage(db, "1")
    ok("--url", url, "reset", *GROUP, "--to", "start", "--yes")
    assert set(positions(url, *GROUP).values()) == {("-1", 0)}


def test_reset_of_a_partition_without_checkpoint_needs_create(db: Path) -> None:
    url = sqlite_url(db)
    before = positions(url)

    refused = invoke("--url", url, "reset", *GROUP, "--partition", "7", "--to", "start", "--yes")
    assert_error(refused, 1, "no checkpoint is stored for partition '7'", "--create")
    assert positions(url) == before  # a typo creates nothing

    ok("--url", url, "reset", *GROUP, "--partition", "7", "--to", "start", "--create", "--yes")
    assert positions(url, *GROUP)["7"] == ("-1", 0)


def test_reset_delete_removes_the_group_or_one_partition(db: Path) -> None:
    url = sqlite_url(db)

    result = ok("--url", url, "reset", *GROUP, "--partition", "10", "--to", "delete", "--yes")
    assert "deleted 1 checkpoint(s)" in result.stdout
    assert sorted(positions(url, *GROUP)) == ["0", "1", "2"]

    result = ok("--url", url, "reset", *GROUP, "--to", "delete", "--yes")
    assert "deleted 3 checkpoint(s)" in result.stdout
    assert positions(url, *GROUP) == {}
    assert positions(url, GROUP[0], GROUP[1], "other") == {"0": ("70", 7)}

    result = ok("--url", url, "reset", *GROUP, "--to", "delete", "--yes")
    assert "nothing to reset" in result.stdout


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI believes it runs on a terminal, so it asks (the answers come from ``input``)."""
    monkeypatch.setattr(cli_app, "stdin_is_a_terminal", lambda: True)


def test_without_a_terminal_destructive_commands_need_yes(db: Path) -> None:
    url = sqlite_url(db)
    before = positions(url)
    result = invoke("--url", url, "reset", *GROUP, "--to", "end", input="y\n")
    assert_error(result, 2, "Reset 4 checkpoint(s) to end of stream", "refusing without --yes")
    assert positions(url) == before


@pytest.mark.usefixtures("terminal")
@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "end-of-input"])
def test_reset_shows_the_plan_and_not_answering_yes_changes_nothing(db: Path, answer: str) -> None:
    url = sqlite_url(db)
    before = positions(url)

    result = invoke("--url", url, "reset", *GROUP, "--to", "end", input=answer)

    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "Reset 4 checkpoint(s) to end of stream?" in result.stdout
    plan = {row[0]: row[1:] for row in table_rows(result.stdout)}
    assert plan == {
        "0": ["0", "0", "@latest"],
        "1": ["100", "10", "@latest"],
        "2": ["200", "20", "@latest"],
        "10": ["1000", "100", "@latest"],
    }
    assert result.exit_code == 1
    assert "aborted; nothing changed" in result.stderr
    assert positions(url) == before


@pytest.mark.usefixtures("terminal")
def test_reset_answering_yes_applies_it(db: Path) -> None:
    url = sqlite_url(db)

    result = ok("--url", url, "reset", *GROUP, "--to", "end", input="y\n")

    assert "Reset 4 checkpoint(s) to end of stream?" in result.stdout
    assert set(positions(url, *GROUP).values()) == {("@latest", 0)}


def test_reset_with_bad_arguments_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    result = invoke(
        "--url", sqlite_url(path), "reset", *GROUP, "--partition", "", "--to", "start", "--yes"
    )
    assert_error(result, 2, "partition_id")
    result = invoke("--url", sqlite_url(path), "reset", *GROUP, "--to", "middle", "--yes")
    assert result.exit_code == 2
    assert "'middle' is not one of" in result.stderr
    assert not path.exists()


# -- copy -------------------------------------------------------------------------------------


def test_copy_go_directory_into_sqlite_is_idempotent(go_dir: Path, tmp_path: Path) -> None:
    dest = sqlite_url(tmp_path / "dest.db")
    source_records = records(go_url(go_dir), "myns", "myhub", "$Default")

    for _ in range(2):
        result = ok("copy", go_url(go_dir), dest, *GO_NAMES)
        assert f"copied 3 checkpoint(s) from {go_url(go_dir)} to {dest}" in result.stdout
        assert "3/3" in result.stderr  # the progress bar
        copied = records(dest)
        assert [r.key for r in copied] == [r.key for r in source_records]
        assert [r.checkpoint for r in copied] == [r.checkpoint for r in source_records]

    assert positions(dest, "myns", "myhub", "$Default") == GO_DEFAULT_GROUP
    enqueued = copied[0].checkpoint.enqueue_time
    assert enqueued == datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=timezone.utc)


@pytest.mark.postgres
def test_copy_go_directory_into_postgresql(go_dir: Path, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    dest = (
        sa.make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )

    ok("copy", go_url(go_dir), dest, *GO_NAMES)
    ok("copy", go_url(go_dir), dest, *GO_NAMES)

    # Written into the schema that search_path selected: seen there through --schema.
    assert positions(url, schema=schema) == GO_DEFAULT_GROUP
    rows = json.loads(ok("--url", url, "--schema", schema, "status", "--format", "json").stdout)
    assert [(r["consumer_group"], r["partition_id"]) for r in rows] == [
        ("$Default", "0"),
        ("$Default", "1"),
        ("$Default", "2"),
    ]


def test_copy_monotonic_skips_where_the_destination_is_ahead(go_dir: Path, tmp_path: Path) -> None:
    dest = sqlite_url(tmp_path / "dest.db")
    ok(*write_args(dest, "0", "999", 99, group=("myns", "myhub", "$Default")))

    result = ok("copy", go_url(go_dir), dest, *GO_NAMES, "--monotonic")

    assert "copied 2 checkpoint(s)" in result.stdout
    assert "skipped 1 where the destination was further ahead" in result.stdout
    assert positions(dest) == {**GO_DEFAULT_GROUP, "0": ("999", 99)}

    result = ok("copy", go_url(go_dir), dest, *GO_NAMES)  # without --monotonic: overwrite
    assert "copied 3 checkpoint(s)" in result.stdout
    assert positions(dest) == GO_DEFAULT_GROUP


def test_copy_keeps_when_each_checkpoint_was_last_written(db: Path, tmp_path: Path) -> None:
    """After a migration of stores, a stale partition must still look stale."""
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(
            "UPDATE checkpoints SET updated_at = '2020-02-02 02:02:02.020202' "
            "WHERE partition_id = '1'"
        )
    connection.close()
    source = {r.key: r.updated_at for r in records(sqlite_url(db))}
    for target in (sqlite_url(tmp_path / "copy.db"), f"file:{tmp_path / 'copy-files'}"):
        ok("copy", sqlite_url(db), target)
        assert {r.key: r.updated_at for r in records(target)} == source
    stale = invoke("--url", sqlite_url(tmp_path / "copy.db"), "status", "--stale", "1d")
    assert stale.exit_code == 3
    assert "1 partition(s) stale" in stale.stderr


def test_copy_refuses_to_copy_a_store_onto_itself(db: Path, tmp_path: Path) -> None:
    before = positions(sqlite_url(db))
    same = [
        (sqlite_url(db), sqlite_url(db)),
        (sqlite_url(db), f"sqlite:///{os.path.relpath(db)}"),  # another spelling
    ]
    for source, destination in same:
        assert_error(invoke("copy", source, destination), 2, "are the same store")
    assert positions(sqlite_url(db)) == before
    ok("copy", sqlite_url(db), f"file:{tmp_path / 'files'}")
    assert_error(
        invoke("copy", f"file:{tmp_path / 'files'}", f"file:{tmp_path / 'files'}/"), 2, "same store"
    )


@pytest.mark.postgres
def test_copy_refuses_one_postgresql_schema_onto_itself_but_not_onto_another(
    postgres_schema: tuple[str, str],
) -> None:
    url, schema = postgres_schema
    ok("--schema", schema, "--url", url, "write", *GROUP, "0", "--offset", "5", "--sequence", "5")
    bare = url.replace("postgresql+psycopg://", "postgres://")  # another spelling of it
    assert_error(invoke("--schema", schema, "copy", url, bare), 2, "are the same store")
    other = f"{schema}_copy"
    try:
        ok("copy", "--src-schema", schema, "--dst-schema", other, url, url)
        assert positions(url, schema=other) == {"0": ("5", 5)}
    finally:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
        engine.dispose()


def test_copy_never_creates_its_source(tmp_path: Path) -> None:
    dest = tmp_path / "dest.db"
    for missing in (tmp_path / "missing.db", tmp_path / "missing-dir"):
        source = sqlite_url(missing) if missing.suffix else f"file://{missing}?layout=go"
        result = invoke("copy", source, sqlite_url(dest))
        assert_error(result, 1, str(missing))
        assert not missing.exists()
    assert not dest.exists()


def test_copy_to_an_unreachable_database_masks_the_password(go_dir: Path) -> None:
    result = invoke("copy", go_url(go_dir), UNREACHABLE, *GO_NAMES)
    assert_error(result, 1, "***")
    assert "s3cret" not in result.output


def test_copy_between_two_nested_file_stores_keeps_every_key(db: Path, tmp_path: Path) -> None:
    files = f"file://{tmp_path / 'nested'}"
    ok("copy", sqlite_url(db), files)
    back = sqlite_url(tmp_path / "back.db")
    ok("copy", files, back)

    assert positions(back) == positions(sqlite_url(db))
    assert [r.key for r in records(back)] == [r.key for r in records(sqlite_url(db))]


# -- db ---------------------------------------------------------------------------------------


def test_db_commands_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    url = sqlite_url(path)

    assert_error(invoke("--url", url, "db", "current"), 1, str(path))
    assert not path.exists()

    assert "is at revision 0003" in ok("--url", url, "db", "upgrade").stdout
    assert ok("--url", url, "db", "current").stdout.strip() == "0003 (up to date)"
    assert "checkpoints" in table_names(path)

    history = table_rows(ok("--url", url, "db", "history").stdout)
    assert [row[:2] for row in history] == [["0003", "0002"], ["0002", "0001"], ["0001", "base"]]
    assert "at revision 0002" in ok("--url", url, "db", "downgrade", "-1").stdout  # Alembic's idiom
    ok("--url", url, "db", "upgrade")
    assert "base (empty)" in ok("--url", url, "db", "downgrade", "base").stdout
    assert "checkpoints" not in table_names(path)
    assert ok("--url", url, "db", "current").stdout.strip() == "none (head is 0003)"


def test_a_downgrade_that_deletes_checkpoints_asks_first(db: Path) -> None:
    url = sqlite_url(db)
    before = positions(url)
    refused = invoke("--url", url, "db", "downgrade", "base")
    assert_error(refused, 2, "delete the 5 checkpoint(s)", "refusing without --yes")
    assert_error(invoke("--url", url, "db", "downgrade", "-3"), 2, "delete the 5 checkpoint(s)")
    assert positions(url) == before
    # Steps that keep the table ask nothing.
    assert "at revision 0002" in ok("--url", url, "db", "downgrade", "-1").stdout
    assert "at revision 0001" in ok("--url", url, "db", "downgrade", "-1").stdout
    assert positions(url) == before
    ok("--url", url, "db", "upgrade")
    assert "base (empty)" in ok("--url", url, "db", "downgrade", "base", "--yes").stdout
    assert "checkpoints" not in table_names(db)


@pytest.mark.usefixtures("terminal")
def test_a_downgrade_that_deletes_checkpoints_asks_on_a_terminal(db: Path) -> None:
    url = sqlite_url(db)
    before = positions(url)
    declined = invoke("--url", url, "db", "downgrade", "base", input="n\n")
    assert declined.exit_code == 1
    assert "Downgrade to base: drop the checkpoints table and delete the 5 checkpoint(s)" in (
        declined.stdout
    )
    assert positions(url) == before
    ok("--url", url, "db", "downgrade", "base", input="y\n")
    assert "checkpoints" not in table_names(db)


def test_db_upgrade_sql_prints_ddl_without_touching_the_database(tmp_path: Path) -> None:
    path = tmp_path / "offline.db"

    out = ok("--url", sqlite_url(path), "db", "upgrade", "--sql").stdout
    down = ok("--url", sqlite_url(path), "db", "downgrade", "base", "--sql").stdout

    assert "CREATE TABLE checkpoints" in out
    assert f"CREATE TABLE {VERSION_TABLE}" in out
    assert "DROP TABLE checkpoints" in down
    assert not path.exists()


def test_db_errors(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "m.db")
    assert_error(invoke("--url", url, "db", "upgrade", "nope"), 2, "'nope' is unknown")
    assert_error(invoke("--url", url, "db", "downgrade", "base"), 1, "no checkpoint database")
    assert_error(invoke("--url", f"file://{tmp_path}", "db", "upgrade"), 2, "SQL database URL")
    assert not (tmp_path / "m.db").exists()


@pytest.mark.postgres
def test_db_commands_on_postgresql_with_schema(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    where = ("--url", url, "--schema", schema)

    offline = ok(*where, "db", "upgrade", "--sql").stdout
    assert f"CREATE TABLE {schema}.checkpoints" in offline
    assert ok(*where, "db", "current").stdout.strip() == "none (head is 0003)"

    ok(*where, "db", "upgrade")
    assert ok(*where, "db", "current").stdout.strip() == "0003 (up to date)"
    assert json.loads(ok(*where, "status", "--format", "json").stdout) == []
    ok(*where, "write", *GROUP, "0", "--offset", "1", "--sequence", "1")
    assert positions(url, schema=schema) == {"0": ("1", 1)}

    ok(*where, "db", "downgrade", "base", "--yes")
    assert ok(*where, "db", "current").stdout.strip() == "none (head is 0003)"
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names(schema=schema) == [VERSION_TABLE]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_db_commands_accept_the_postgres_scheme_alias_like_every_command(
    postgres_schema: tuple[str, str],
) -> None:
    url, schema = postgres_schema
    alias = sa.make_url(url).set(drivername="postgres").render_as_string(hide_password=False)
    where = ("--url", alias, "--schema", schema)

    ok(*where, "db", "upgrade")

    assert ok(*where, "db", "current").stdout.strip() == "0003 (up to date)"
    assert json.loads(ok(*where, "status", "--format", "json").stdout) == []


@pytest.mark.postgres
def test_successful_output_masks_the_password(
    postgres_schema: tuple[str, str], go_dir: Path
) -> None:
    url, schema = postgres_schema
    # The test server trusts local connections, so any password gets in.
    with_password = sa.make_url(url).set(password="hunter2")
    secret = with_password.render_as_string(hide_password=False)
    in_schema = with_password.update_query_dict({"options": f"-csearch_path={schema}"})
    where = ("--url", secret, "--schema", schema)

    outputs = [
        ok(*where, "db", "upgrade"),
        ok(*where, "demo", "--partitions", "1", "--events", "3"),
        ok("copy", go_url(go_dir), in_schema.render_as_string(hide_password=False), *GO_NAMES),
        ok(*where, "db", "downgrade", "base", "--yes"),
    ]

    for result in outputs:
        assert "hunter2" not in result.output
    assert "***" in outputs[0].stdout
    assert "***" in "".join(outputs[1].stdout.split())
    assert "***" in outputs[2].stdout


@pytest.mark.postgres
def test_unmigrated_postgres_schema_error_suggests_a_working_command(
    postgres_schema: tuple[str, str],
) -> None:
    url, schema = postgres_schema
    message = assert_error(invoke("--url", url, "--schema", schema, "status"), 1, "db upgrade")

    suggested = shlex.split(message.split("`")[1])
    assert suggested[0] == "streamcheckpoint"
    ok(*suggested[1:])
    assert (
        json.loads(ok("--url", url, "--schema", schema, "status", "--format", "json").stdout) == []
    )


# -- demo -------------------------------------------------------------------------------------

DEMO_KEY = (DEMO_NAMESPACE, DEMO_NAME, DEMO_CONSUMER_GROUP)
DEMO_SIZES = ("--partitions", "3", "--events", "500", "--checkpoint-every", "50")


def assert_demo_finished(url: str, partitions: int = 3, events: int = 500) -> None:
    stored = records(url, *DEMO_KEY)
    assert [r.key.partition_id for r in stored] == [str(p) for p in range(partitions)]
    for r in stored:
        assert r.checkpoint == event_checkpoint(int(r.key.partition_id), events - 1)


def test_demo_runs_from_start_with_the_default_url(tmp_path: Path) -> None:
    result = ok("demo", *DEMO_SIZES)

    out = result.stdout
    assert out.count("start of stream (no checkpoint)") == 3
    assert "processed 1500 events this run; every partition is at sequence 499" in out
    assert "ev/s" in out
    assert DEMO_KEY == ("demo.servicebus.windows.net", "demo-hub", "$Default")
    status = [row for row in table_rows(out) if row[0] == DEMO_NAMESPACE]
    assert [(row[3], row[5]) for row in status] == [("0", "499"), ("1", "499"), ("2", "499")]
    assert_demo_finished(sqlite_url(tmp_path / "checkpoints.db"))


def test_demo_resumes_after_stored_checkpoints(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "demo.db")
    ok(*write_args(url, "1", "x", 99, group=DEMO_KEY))
    done = event_checkpoint(2, 499)
    assert done.enqueue_time is not None
    when = done.enqueue_time.isoformat()
    ok(*write_args(url, "2", done.offset, 499, "--enqueue-time", when, group=DEMO_KEY))

    out = ok("--url", url, "demo", *DEMO_SIZES).stdout

    resume = {row[0]: row[1:] for row in table_rows(out) if len(row) == 3}
    assert resume == {
        "0": ["0", "start of stream (no checkpoint)"],
        "1": ["100", "after checkpoint at 99"],
        "2": ["500", "already complete"],
    }
    assert "processed 900 events this run" in out
    assert_demo_finished(url)

    # A stream every partition has finished starts over, so the demo can always run again.
    again = ok("--url", url, "demo", *DEMO_SIZES).stdout
    assert "finished the 500-event stream in an earlier run: starting it over" in again
    assert again.count("start of stream (no checkpoint)") == 3
    assert "processed 1500 events this run" in again
    assert_demo_finished(url)


def test_demo_on_a_file_store(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'demo-files'}"
    ok("--url", url, "demo", "--partitions", "2", "--events", "30", "--checkpoint-every", "7")
    assert_demo_finished(url, partitions=2, events=30)


def test_demo_shows_a_url_with_brackets_literally(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "[bold]x.db")
    out = ok("--url", url, "demo", "--partitions", "1", "--events", "2").stdout
    assert f"Resumingfrom{url}" in "".join(out.split())  # the title may be folded


def test_demo_rejects_bad_sizes(tmp_path: Path) -> None:
    result = invoke("demo", "--partitions", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "checkpoints.db").exists()


def test_demo_checkpoint_helper_is_deterministic() -> None:
    checkpoint = event_checkpoint(2, 499)
    assert checkpoint == event_checkpoint(2, 499)
    assert checkpoint.sequence_number == 499
    assert checkpoint.offset == str(499 * 512)
    assert checkpoint.enqueue_time == datetime(2026, 1, 1, 0, 0, 4, 992000, tzinfo=timezone.utc)


# -- help -------------------------------------------------------------------------------------


def _commands() -> Iterator[list[str]]:
    import click

    for name, command in cli.commands.items():
        yield [name]
        if isinstance(command, click.Group):
            for sub in command.commands:
                yield [name, sub]


@pytest.mark.parametrize("path", list(_commands()), ids=" ".join)
def test_every_command_has_help(path: list[str]) -> None:
    out = ok(*path, "--help").stdout
    assert out.splitlines()[0].startswith(f"Usage: cli {' '.join(path)}")
    assert "--help" in out


def test_version() -> None:
    assert "0.1.0" in ok("--version").stdout


def test_copy_from_a_go_directory_needs_the_three_names(go_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest.db"
    result = invoke("copy", go_url(go_dir), sqlite_url(dest), "--namespace", "myns")
    assert_error(result, 2, "--consumer-group", "$Default")
    assert not dest.exists()


def test_copy_honours_schemas_on_both_sides(
    go_dir: Path, postgres_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = postgres_schema
    ok("--schema", schema, "copy", go_url(go_dir), url, *GO_NAMES)
    assert positions(url, schema=schema) == GO_DEFAULT_GROUP
    # and back out of that schema with --src-schema into a file store
    out = f"file://{tmp_path / 'out'}"
    ok("copy", url, out, "--src-schema", schema)
    assert positions(out) == GO_DEFAULT_GROUP


def test_reset_of_a_mistyped_database_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    result = invoke("--url", sqlite_url(typo), "reset", *GROUP, "--to", "start", "--yes")
    assert_error(result, 1, "typo.db")
    assert not typo.exists()


def test_reset_of_a_go_layout_group_leaves_a_longer_group_alone(tmp_path: Path) -> None:
    url = go_url(tmp_path / "go")
    ok("--url", url, "write", "ns", "hub", "a", "1", "--offset", "10", "--sequence", "10")
    ok("--url", url, "write", "ns", "hub", "a_b", "2", "--offset", "20", "--sequence", "20")
    ok("--url", url, "reset", "ns", "hub", "a", "--to", "start", "--yes")
    assert ok("--url", url, "read", "ns", "hub", "a_b", "2").stdout.startswith("offset=20 ")
    assert ok("--url", url, "read", "ns", "hub", "a", "1").stdout.startswith("offset=-1 ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("write", "ns", "hub", "cg", "0", "--offset", "1", "--sequence", "x"), "--sequence"),
        (("status", "--format", "xml"), "--format"),
        (("reset", "ns", "hub", "cg"), "--to"),
        (("nosuch",), "nosuch"),
    ],
)
def test_click_usage_errors_are_one_line_too(args: tuple[str, ...], needle: str) -> None:
    line = assert_error(invoke(*args), 2, needle)
    assert "--help" in line  # says where to look


def test_help_and_version_exit_0() -> None:
    assert "Inspect and manage" in ok("--help").stdout
    assert "version" in ok("--version").stdout
