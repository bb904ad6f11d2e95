"""The CLI's pure helpers: durations, ages, UTC times and the status as JSON, CSV or a table."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from streamcheckpoint import Checkpoint, CheckpointRecord, PartitionKey
from streamcheckpoint.cli.render import (
    STATUS_FIELDS,
    format_age,
    is_stale,
    iso_utc,
    parse_duration,
    status_csv,
    status_json,
    status_rows,
    status_table,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
PLUS_2 = timezone(timedelta(hours=2))


def record(
    partition: str, updated_at: datetime | None, enqueued: datetime | None = None
) -> CheckpointRecord:
    key = PartitionKey("ns", "hub", "$Default", partition)
    return CheckpointRecord(key, Checkpoint("4096", 7, enqueued), updated_at)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("0s", 0),
        (" 5M ", 300),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


# "\u0665m": an ARABIC-INDIC DIGIT FIVE is a digit to str.isdigit, not to the parser.
@pytest.mark.parametrize(
    "text", ["", "5", "m", "5x", "-5m", "5 m", "5m3", "m5", "1h 30m", "\u0665m"]
)
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("age", "shown"),
    [
        (timedelta(0), "0s ago"),
        (timedelta(seconds=59.9), "59s ago"),
        (timedelta(seconds=60), "1m ago"),
        (timedelta(minutes=3, seconds=59), "3m ago"),
        (timedelta(hours=2, minutes=59), "2h ago"),
        (timedelta(days=3, hours=23), "3d ago"),
        (timedelta(seconds=-5), "just now"),  # the writer's clock is ahead of ours
    ],
)
def test_format_age(age: timedelta, shown: str) -> None:
    assert format_age(NOW - age, NOW) == shown


def test_format_age_of_an_unknown_time() -> None:
    assert format_age(None, NOW) == "unknown"


def test_iso_utc_converts_to_utc_with_z() -> None:
    assert iso_utc(datetime(2026, 6, 30, 14, 0, 0, 500000, tzinfo=PLUS_2)) == (
        "2026-06-30T12:00:00.500000Z"
    )
    assert iso_utc(datetime(2026, 6, 30, 14, 0, tzinfo=PLUS_2)) == "2026-06-30T12:00:00Z"
    assert iso_utc(None) is None


def test_is_stale_only_past_the_threshold() -> None:
    threshold = timedelta(minutes=5)
    assert is_stale(record("0", NOW - timedelta(minutes=5, seconds=1)), NOW, threshold)
    assert not is_stale(record("0", NOW - threshold), NOW, threshold)
    assert not is_stale(record("0", NOW), NOW, threshold)
    assert not is_stale(record("0", None), NOW, threshold)  # no time: can't call it stale
    assert not is_stale(record("0", NOW - timedelta(days=9)), NOW, None)


def test_status_rows_use_the_documented_keys_and_utc_text() -> None:
    enqueued = datetime(2026, 6, 30, 14, 0, tzinfo=PLUS_2)
    (row,) = status_rows([record("3", NOW, enqueued)])
    assert list(row) == list(STATUS_FIELDS)
    assert row == {
        "namespace": "ns",
        "name": "hub",
        "consumer_group": "$Default",
        "partition_id": "3",
        "offset": "4096",
        "sequence_number": 7,
        "enqueue_time": "2026-06-30T12:00:00Z",
        "updated_at": "2026-11-28T12:00:00Z",
    }


def test_status_json_adds_stale_only_when_asked() -> None:
    records = [record("1", NOW), record("2", None)]

    plain = json.loads(status_json(records))
    flagged = json.loads(status_json(records, [True, False]))

    assert [list(r) for r in plain] == [list(STATUS_FIELDS)] * 2
    assert plain[1]["updated_at"] is None
    assert [r["stale"] for r in flagged] == [True, False]
    assert json.loads(status_json([])) == []


def test_status_csv_header_and_empty_cells() -> None:
    out = status_csv([record("1", None)], [False])
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == [*STATUS_FIELDS, "stale"]
    assert rows[1] == ["ns", "hub", "$Default", "1", "4096", "7", "", "", "False"]
    assert status_csv([]) == ",".join(STATUS_FIELDS) + "\n"


def test_status_table_shows_ages_and_a_stale_column_only_when_asked() -> None:
    records = [record("1", NOW - timedelta(minutes=10)), record("2", NOW)]

    def render(stale: list[bool] | None) -> str:
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(status_table(records, NOW, stale))
        return console.export_text()

    plain, flagged = render(None), render([True, False])

    assert "10m ago" in plain
    assert "0s ago" in plain
    assert "Stale" not in plain
    assert "Stale" in flagged
    assert flagged.count("STALE") == 1
    stale_line = next(line for line in flagged.splitlines() if "STALE" in line)
    assert "10m ago" in stale_line


def test_markup_in_names_is_shown_literally() -> None:
    key = PartitionKey("[bold]ns[/bold]", "hub", "cg", "0")
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(status_table([CheckpointRecord(key, Checkpoint("[red]x"), NOW)], NOW))
    text = console.export_text()
    assert "[bold]ns[/bold]" in text
    assert "[red]x" in text
