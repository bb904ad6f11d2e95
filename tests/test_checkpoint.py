"""The checkpoint model: validation, Go-compatible JSON, errors and sort keys."""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcheckpoint import (
    END_OF_STREAM,
    START_OF_STREAM,
    Checkpoint,
    CheckpointRecord,
    CheckpointRegressionError,
    CorruptCheckpointError,
    PartitionKey,
    PersistError,
)
from streamcheckpoint.checkpoint import GO_ZERO_TIME, make_key, natural_sort_key, record_sort_key

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
GO_ZERO_TEXT = "0001-01-01T00:00:00Z"

# No deadline: timing must never decide a test on this noisy 2-core machine.
PROPERTY = settings(deadline=None, max_examples=200)


def go_json(offset: str, seq: int, enqueue: str) -> str:
    """The exact bytes Go's encoding/json writes (offset given already escaped)."""
    return f'{{"offset":"{offset}","sequenceNumber":{seq},"enqueueTime":"{enqueue}"}}'


# -- construction and validation ------------------------------------------------------------


def test_defaults_and_stream_markers() -> None:
    assert START_OF_STREAM == "-1"
    assert END_OF_STREAM == "@latest"
    assert Checkpoint("5") == Checkpoint("5", 0, None)
    start, end = Checkpoint.start_of_stream(), Checkpoint.end_of_stream()
    assert (start.offset, start.sequence_number, start.enqueue_time) == ("-1", 0, None)
    assert (end.offset, end.sequence_number, end.enqueue_time) == ("@latest", 0, None)


def test_keyword_construction() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    cp = Checkpoint(offset="9", sequence_number=7, enqueue_time=when)
    assert (cp.offset, cp.sequence_number, cp.enqueue_time) == ("9", 7, when)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("", ValueError),
        ("12\x0034", ValueError),
        ("\ud800", ValueError),  # a lone surrogate can't be encoded as UTF-8
        (12, TypeError),
        (None, TypeError),
        (b"12", TypeError),
    ],
    ids=["empty", "nul", "lone-surrogate", "int", "none", "bytes"],
)
def test_bad_offset_is_refused_naming_the_field(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="offset"):
        Checkpoint(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (False, TypeError),
        (1.0, TypeError),
        ("1", TypeError),
        (None, TypeError),
        (INT64_MAX + 1, ValueError),
        (INT64_MIN - 1, ValueError),
        (2**100, ValueError),
    ],
    ids=["true", "false", "float", "str", "none", "max+1", "min-1", "huge"],
)
def test_bad_sequence_number_is_refused_naming_the_field(
    value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="sequence_number"):
        Checkpoint("1", value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [INT64_MIN, -1, 0, INT64_MAX])
def test_sequence_number_int64_bounds_are_inclusive(value: int) -> None:
    assert Checkpoint("1", value).sequence_number == value


def test_naive_enqueue_time_is_refused_and_the_message_says_to_pass_tzinfo() -> None:
    with pytest.raises(ValueError, match="enqueue_time") as info:
        Checkpoint("1", 1, datetime(2026, 1, 1, 12, 0))
    assert "tzinfo" in str(info.value)


@pytest.mark.parametrize(
    "value",
    ["2026-01-01T00:00:00Z", date(2026, 1, 1), 1700000000, 1.5],
    ids=["str", "date", "int", "float"],
)
def test_enqueue_time_of_the_wrong_type_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="enqueue_time"):
        Checkpoint("1", 1, value)  # type: ignore[arg-type]


def test_enqueue_time_outside_the_utc_range_is_refused() -> None:
    late = datetime(9999, 12, 31, 23, 0, tzinfo=PST)  # 9999-12-31 23:00-08:00 is year 10000 UTC
    with pytest.raises(ValueError, match="enqueue_time"):
        Checkpoint("1", 1, late)


def test_enqueue_time_is_normalized_to_utc_and_equal_instants_hash_equal() -> None:
    in_india = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=IST)
    in_utc = datetime(2025, 1, 1, 21, 34, 5, 123456, tzinfo=UTC)
    a, b = Checkpoint("1", 2, in_india), Checkpoint("1", 2, in_utc)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a.enqueue_time is not None
    assert a.enqueue_time.utcoffset() == timedelta(0)
    assert a.enqueue_time.tzinfo is UTC
    assert (a.enqueue_time.hour, a.enqueue_time.minute) == (21, 34)


def test_go_zero_time_given_as_enqueue_time_means_none() -> None:
    assert Checkpoint("1", 0, GO_ZERO_TIME).enqueue_time is None
    assert Checkpoint("1", 0, datetime(1, 1, 1, tzinfo=UTC)) == Checkpoint("1")
    # The same instant written with an offset is still Go's zero time.
    assert Checkpoint("1", 0, datetime(1, 1, 1, 5, 30, tzinfo=IST)).enqueue_time is None
    # One microsecond later is a real time.
    assert Checkpoint("1", 0, datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)).enqueue_time is not None


def test_checkpoint_is_frozen_and_slotted() -> None:
    cp = Checkpoint("1", 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.offset = "2"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.sequence_number = 3  # type: ignore[misc]
    assert not hasattr(cp, "__dict__")
    assert set(Checkpoint.__slots__) == {"offset", "sequence_number", "enqueue_time"}
    assert dataclasses.replace(cp, sequence_number=3) == Checkpoint("1", 3)


def test_partition_key_and_record() -> None:
    key = PartitionKey("ns", "hub", "$Default", "3")
    assert key == ("ns", "hub", "$Default", "3")
    assert key._fields == ("namespace", "name", "consumer_group", "partition_id")
    assert (key.namespace, key.name, key.consumer_group, key.partition_id) == tuple(key)
    assert "'$Default'" in key.describe()
    assert "partition_id='3'" in key.describe()
    record = CheckpointRecord(key, Checkpoint("1"))
    assert record.updated_at is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.checkpoint = Checkpoint("2")  # type: ignore[misc]


@pytest.mark.parametrize("field", ["namespace", "name", "consumer_group", "partition_id"])
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("", ValueError),
        ("a\x00b", ValueError),
        ("x" * 257, ValueError),
        ("\udc80", ValueError),
        (7, TypeError),
        (None, TypeError),
    ],
    ids=["empty", "nul", "257-chars", "lone-surrogate", "int", "none"],
)
def test_make_key_names_the_bad_component(field: str, bad: object, error: type[Exception]) -> None:
    parts: dict[str, object] = dict.fromkeys(("namespace", "name", "consumer_group"), "x")
    parts["partition_id"] = "0"
    parts[field] = bad
    with pytest.raises(error, match=field):
        make_key(**parts)


def test_make_key_accepts_256_characters_of_any_text() -> None:
    long = "é" * 256
    assert make_key(long, "😀" * 256, " ", "0") == PartitionKey(long, "😀" * 256, " ", "0")


# -- JSON: what we write --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        (
            Checkpoint("120", 22, datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=UTC)),
            go_json("120", 22, "2026-11-28T04:15:56.123456Z"),
        ),
        (
            Checkpoint("4096", 4096, datetime(2026, 6, 30, 12, 0, 0, 500000, tzinfo=UTC)),
            go_json("4096", 4096, "2026-06-30T12:00:00.5Z"),
        ),
        (
            Checkpoint("1", 1, datetime(2026, 6, 30, 12, 0, 0, tzinfo=UTC)),
            go_json("1", 1, "2026-06-30T12:00:00Z"),
        ),
        (
            Checkpoint("1", 1, datetime(2026, 6, 30, 12, 0, 0, 120000, tzinfo=UTC)),
            go_json("1", 1, "2026-06-30T12:00:00.12Z"),
        ),
        (
            Checkpoint("1", 1, datetime(2026, 6, 30, 12, 0, 0, 1, tzinfo=UTC)),
            go_json("1", 1, "2026-06-30T12:00:00.000001Z"),
        ),
        (
            Checkpoint("1", 1, datetime(5, 3, 4, 5, 6, 7, tzinfo=UTC)),
            go_json("1", 1, "0005-03-04T05:06:07Z"),
        ),
        (Checkpoint("7", INT64_MAX), go_json("7", INT64_MAX, GO_ZERO_TEXT)),
        (Checkpoint("7", INT64_MIN), go_json("7", INT64_MIN, GO_ZERO_TEXT)),
        (Checkpoint.start_of_stream(), go_json("-1", 0, GO_ZERO_TEXT)),
        (Checkpoint.end_of_stream(), go_json("@latest", 0, GO_ZERO_TEXT)),
    ],
    ids=[
        "micro",
        "half-second",
        "whole-second",
        "trailing-zeros",
        "one-micro",
        "year-5",
        "int64-max",
        "int64-min",
        "start",
        "end",
    ],
)
def test_to_json_is_exactly_what_go_writes(checkpoint: Checkpoint, expected: str) -> None:
    assert checkpoint.to_json() == expected


def test_to_json_writes_a_non_utc_time_in_utc_with_z() -> None:
    cp = Checkpoint("1", 1, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=PST))
    assert cp.to_json() == go_json("1", 1, "2000-01-01T07:59:59.999999Z")


@pytest.mark.parametrize(
    ("offset", "escaped"),
    [
        ("a<b>&c", r"a\u003cb\u003e\u0026c"),
        ("\u2028\u2029", r"\u2028\u2029"),
        ("\n\r\t", r"\n\r\t"),
        ("\x01\x08\x0c\x1f", r"\u0001\u0008\u000c\u001f"),
        ('say "hi" \\ bye', r"say \"hi\" \\ bye"),
        ("é😀\x7f/ü", "é😀\x7f/ü"),
    ],
    ids=["html", "line-separators", "newline-cr-tab", "controls", "quote-backslash", "raw"],
)
def test_to_json_escapes_strings_like_go(offset: str, escaped: str) -> None:
    cp = Checkpoint(offset, 1)
    assert cp.to_json() == go_json(escaped, 1, GO_ZERO_TEXT)
    assert json.loads(cp.to_json())["offset"] == offset
    assert Checkpoint.from_json(cp.to_json()) == cp


# -- JSON: what we read ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T04:15:56Z", datetime(2026, 11, 28, 4, 15, 56, tzinfo=UTC)),
        ("2026-11-28T04:15:56.5Z", datetime(2026, 11, 28, 4, 15, 56, 500000, tzinfo=UTC)),
        ("2026-11-28T04:15:56.123Z", datetime(2026, 11, 28, 4, 15, 56, 123000, tzinfo=UTC)),
        ("2026-11-28T04:15:56.123456Z", datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=UTC)),
        ("2026-11-28T04:15:56.1234567Z", datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=UTC)),
        ("2026-11-28T04:15:56.123456789Z", datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=UTC)),
        # Truncated, never rounded: rounding .999999999 would carry into the next year.
        ("1999-12-31T23:59:59.999999999Z", datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2025-01-02T03:04:05+05:30", datetime(2025, 1, 1, 21, 34, 5, tzinfo=UTC)),
        ("1999-12-31T23:59:59.999999-08:00", datetime(2000, 1, 1, 7, 59, 59, 999999, tzinfo=UTC)),
        ("2025-01-02T03:04:05+00:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05.000000001-00:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
    ids=[
        "no-fraction",
        "1-digit",
        "3-digits",
        "6-digits",
        "7-digits",
        "9-digits",
        "9-nines",
        "plus-0530",
        "minus-0800",
        "plus-zero",
        "one-nano",
    ],
)
def test_from_json_reads_go_times(text: str, expected: datetime) -> None:
    cp = Checkpoint.from_json(go_json("5", 6, text))
    assert cp == Checkpoint("5", 6, expected)
    assert cp.enqueue_time is not None
    assert cp.enqueue_time.tzinfo is UTC


def test_from_json_reads_go_zero_time_as_none() -> None:
    assert Checkpoint.from_json(go_json("-1", 0, GO_ZERO_TEXT)) == Checkpoint.start_of_stream()


@pytest.mark.parametrize(
    "document",
    [
        '{"offset":"9","sequenceNumber":3}',
        '{"offset":"9","sequenceNumber":3,"enqueueTime":null}',
        '{"enqueueTime":null,"sequenceNumber":3,"offset":"9","partitionId":"1","extra":[1,{}]}',
        ' \n{ "offset" : "9" , "sequenceNumber" : 3 }\n',
    ],
    ids=["missing-time", "null-time", "unknown-keys-any-order", "whitespace"],
)
def test_from_json_optional_and_unknown_fields(document: str) -> None:
    assert Checkpoint.from_json(document) == Checkpoint("9", 3)


def test_from_json_accepts_bytes() -> None:
    raw = go_json("é<", 1, "2026-06-30T12:00:00.5Z").encode("utf-8")
    expected = Checkpoint("é<", 1, datetime(2026, 6, 30, 12, 0, 0, 500000, tzinfo=UTC))
    assert Checkpoint.from_json(raw) == expected


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        ("this is not json", "JSON"),
        ("", "JSON"),
        ('{"offset":"1","sequenceNumber":1', "JSON"),
        ('[{"offset":"1","sequenceNumber":1}]', "object"),
        ('"1"', "object"),
        ("null", "object"),
        ('{"sequenceNumber":1}', "offset"),
        ('{"offset":"","sequenceNumber":1}', "offset"),
        ('{"offset":"a\\u0000b","sequenceNumber":1}', "offset"),
        ('{"offset":"\\ud800","sequenceNumber":1}', "offset"),
        ('{"offset":120,"sequenceNumber":1}', "offset"),
        ('{"offset":null,"sequenceNumber":1}', "offset"),
        ('{"offset":"1"}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":"22"}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":22.0}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":2e1}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":true}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":null}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":NaN}', "sequenceNumber"),
        ('{"offset":"1","sequenceNumber":9223372036854775808}', "64-bit"),
        ('{"offset":"1","sequenceNumber":-9223372036854775809}', "64-bit"),
        ('{"offset":"1","sequenceNumber":1,"enqueueTime":1700000000}', "enqueueTime"),
        ('{"offset":"1","sequenceNumber":1,"enqueueTime":{}}', "enqueueTime"),
    ],
    ids=[
        "not-json",
        "empty",
        "truncated",
        "array",
        "string",
        "null",
        "missing-offset",
        "empty-offset",
        "nul-offset",
        "surrogate-offset",
        "number-offset",
        "null-offset",
        "missing-seq",
        "string-seq",
        "float-seq",
        "exponent-seq",
        "bool-seq",
        "null-seq",
        "nan-seq",
        "seq-above-int64",
        "seq-below-int64",
        "number-time",
        "object-time",
    ],
)
def test_from_json_refuses_corrupt_documents(document: str, detail: str) -> None:
    with pytest.raises(ValueError, match=detail) as info:
        Checkpoint.from_json(document)
    assert type(info.value) is ValueError  # a persister says where: CorruptCheckpointError


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "",
        "2025-01-02",
        "2025-01-02T03:04:05",
        "2025-01-02 03:04:05Z",
        "2025-01-02T03:04Z",
        "2025-1-02T03:04:05Z",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025-01-02T24:00:00Z",
        "2025-01-02T03:60:00Z",
        "2025-01-02T03:04:60Z",
        "2025-01-02T03:04:05.Z",
        "2025-01-02T03:04:05.1234567890Z",
        "2025-01-02T03:04:05+0530",
        "2025-01-02T03:04:05+05",
        "2025-01-02T03:04:05+24:00",
        "2025-01-02T03:04:05+05:99",
        "2025-01-02T03:04:05Z ",
        "\u0662\u0660\u0662\u0665-01-02T03:04:05Z",  # Arabic-Indic digits are not RFC 3339
        "9999-12-31T23:00:00-08:00",  # past year 9999 in UTC
    ],
    ids=[
        "word",
        "empty",
        "date-only",
        "no-zone",
        "space-separator",
        "no-seconds",
        "short-month",
        "month-13",
        "feb-30",
        "hour-24",
        "minute-60",
        "second-60",
        "empty-fraction",
        "10-digit-fraction",
        "offset-without-colon",
        "offset-hours-only",
        "offset-hour-24",
        "offset-minute-99",
        "trailing-space",
        "non-ascii-digits",
        "beyond-9999-utc",
    ],
)
def test_from_json_refuses_bad_time_text_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="enqueueTime") as info:
        Checkpoint.from_json(go_json("1", 1, text))
    assert repr(text) in str(info.value)


def test_from_json_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        Checkpoint.from_json(b'{"offset":"\xff\xfe","sequenceNumber":1}')


# -- the files Go wrote -----------------------------------------------------------------------


def _manifest(go_fixtures_dir: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((go_fixtures_dir / "manifest.json").read_text())
    assert len(entries) == 6
    return entries


def _expected_time(entry: dict[str, Any]) -> datetime | None:
    if entry["enqueue_time_is_zero"]:
        return None
    micros = entry["enqueue_time_unix_nano"] // 1000  # truncate, as from_json must
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def test_every_go_written_document_reads_with_the_manifest_values(go_fixtures_dir: Path) -> None:
    for entry in _manifest(go_fixtures_dir):
        expected = Checkpoint(entry["offset"], entry["sequence_number"], _expected_time(entry))
        assert Checkpoint.from_json(entry["json"]) == expected, entry["json"]


def test_go_utc_documents_without_nanoseconds_are_written_byte_identical(
    go_fixtures_dir: Path,
) -> None:
    identical = 0
    for entry in _manifest(go_fixtures_dir):
        written = Checkpoint.from_json(entry["json"]).to_json()
        is_utc = entry["json"].endswith('Z"}')
        has_nanos = (
            entry["enqueue_time_unix_nano"] % 1000 != 0 and not entry["enqueue_time_is_zero"]
        )
        if is_utc and not has_nanos:
            assert written == entry["json"]
            identical += 1
    assert identical == 3  # partitions 1, 2 and 31


# -- properties ----------------------------------------------------------------------------

_offsets = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
_zones = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
# A day of margin at both ends so that every offset stays within datetime's range in UTC.
_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones
)
_checkpoints = st.builds(
    Checkpoint,
    offset=_offsets,
    sequence_number=st.integers(INT64_MIN, INT64_MAX),
    enqueue_time=st.none() | _times,
)
_GO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d*[1-9]))?Z")


def _read_go_time_independently(text: str) -> datetime | None:
    if text == GO_ZERO_TEXT:
        return None
    match = _GO_TIME.fullmatch(text)
    assert match is not None, f"{text!r} is not Go's trimmed RFC 3339 in UTC"
    whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return whole + timedelta(microseconds=int((match.group(1) or "").ljust(6, "0")))


@PROPERTY
@given(_checkpoints)
def test_json_round_trips_every_valid_checkpoint(cp: Checkpoint) -> None:
    assert Checkpoint.from_json(cp.to_json()) == cp
    assert Checkpoint.from_json(cp.to_json().encode("utf-8")) == cp


@PROPERTY
@given(_checkpoints)
def test_to_json_is_valid_json_with_the_same_values(cp: Checkpoint) -> None:
    text = cp.to_json()
    decoded = json.loads(text)
    assert list(decoded) == ["offset", "sequenceNumber", "enqueueTime"]
    assert decoded["offset"] == cp.offset
    assert decoded["sequenceNumber"] == cp.sequence_number
    assert _read_go_time_independently(decoded["enqueueTime"]) == cp.enqueue_time
    assert not re.search("[<>&\u2028\u2029\x00-\x1f]", text)
    assert text == text.strip()


@PROPERTY
@given(_checkpoints, _zones)
def test_the_same_instant_in_any_zone_is_the_same_checkpoint(
    cp: Checkpoint, zone: timezone
) -> None:
    when = cp.enqueue_time
    shifted = Checkpoint(
        cp.offset, cp.sequence_number, None if when is None else when.astimezone(zone)
    )
    assert shifted == cp
    assert hash(shifted) == hash(cp)
    assert shifted.to_json() == cp.to_json()


# -- errors ------------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(CorruptCheckpointError, PersistError)
    assert issubclass(CorruptCheckpointError, ValueError)
    assert issubclass(CheckpointRegressionError, PersistError)
    assert not issubclass(CheckpointRegressionError, ValueError)


def test_regression_error_carries_key_and_both_checkpoints_and_pickles() -> None:
    key = PartitionKey("ns", "hub", "$Default", "7")
    stored, refused = Checkpoint("200", 20), Checkpoint("100", 10)
    error = CheckpointRegressionError(key, stored, refused)
    assert (error.key, error.stored, error.refused) == (key, stored, refused)
    message = str(error)
    for fragment in ("'ns'", "'hub'", "'$Default'", "'7'", "20", "10", "monotonic"):
        assert fragment in message
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.key, copy.stored, copy.refused, str(copy)) == (key, stored, refused, message)


# -- sort keys ------------------------------------------------------------------------------


def test_natural_sort_key_orders_partition_ids_numerically() -> None:
    ids = ["0", "1", "2", "3", "9", "10", "11", "20", "100", "101"]
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=natural_sort_key) == ids


def test_natural_sort_key_mixed_text() -> None:
    names = ["p10", "p2", "a", "p1", "10", "2", "p2x", "p2a10", "p2a9", "", "x"]
    assert sorted(names, key=natural_sort_key) == [
        "",
        "2",
        "10",
        "a",
        "p1",
        "p2",
        "p2a9",
        "p2a10",
        "p2x",
        "p10",
        "x",
    ]


def test_natural_sort_key_keeps_leading_zeros_distinct() -> None:
    assert natural_sort_key("01") != natural_sort_key("1")
    assert sorted(["1", "01", "001"], key=natural_sort_key) == ["001", "01", "1"]


@PROPERTY
@given(st.lists(st.integers(0, 10**30)))
def test_natural_sort_key_matches_numeric_order(numbers: list[int]) -> None:
    texts = [str(n) for n in numbers]
    assert sorted(texts, key=natural_sort_key) == [str(n) for n in sorted(numbers)]


@PROPERTY
@given(st.text(), st.text())
def test_natural_sort_key_is_a_total_order_that_tells_strings_apart(a: str, b: str) -> None:
    ka, kb = natural_sort_key(a), natural_sort_key(b)
    assert (ka == kb) == (a == b)
    assert (ka < kb) + (ka == kb) + (ka > kb) == 1


def test_record_sort_key_orders_by_key_then_natural_partition() -> None:
    def record(ns: str, name: str, group: str, pid: str) -> CheckpointRecord:
        return CheckpointRecord(PartitionKey(ns, name, group, pid), Checkpoint("1"))

    expected = [
        record("a", "hub", "cg", "2"),
        record("a", "hub", "cg", "10"),
        record("a", "hub", "cg2", "1"),
        record("a", "hub2", "cg", "0"),
        record("b", "a", "a", "0"),
    ]
    shuffled = expected[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != expected
    assert sorted(shuffled, key=record_sort_key) == expected


@PROPERTY
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"[0-9]{1,25}", fullmatch=True),
            st.text(alphabet="0123456789a-_٣", min_size=1, max_size=8),
        ),
        min_size=2,
    )
)
def test_natural_sort_key_orders_all_digit_ids_like_mixed_ones(ids: list[str]) -> None:
    """The all-digits shortcut sorts exactly as the general digit-run split does."""
    import re

    def general(text: str) -> list[object]:
        parts: list[object] = re.split(r"([0-9]+)", text)
        for i in range(1, len(parts), 2):
            parts[i] = (int(str(parts[i])), parts[i])
        return parts

    assert sorted(ids, key=natural_sort_key) == sorted(ids, key=general)
    for text in ids:
        assert natural_sort_key(text) == general(text)
