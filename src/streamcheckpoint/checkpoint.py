"""The checkpoint model: :class:`Checkpoint`, :class:`PartitionKey`, :class:`CheckpointRecord`.

Also the JSON format, byte-compatible with what Go's ``encoding/json`` writes for
``persist.Checkpoint`` of azure-event-hubs-go, and the validation every backend shares.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

__all__ = [
    "END_OF_STREAM",
    "GO_ZERO_TIME",
    "KEY_FIELDS",
    "MAX_KEY_LENGTH",
    "START_OF_STREAM",
    "Checkpoint",
    "CheckpointRecord",
    "PartitionKey",
    "make_key",
    "natural_sort_key",
    "record_sort_key",
]

START_OF_STREAM = "-1"
"""Offset meaning "the first event still retained in the partition" (Go's ``StartOfStream``)."""

END_OF_STREAM = "@latest"
"""Offset meaning "only events enqueued from now on" (Go's ``EndOfStream``)."""

MAX_KEY_LENGTH = 256
"""Maximum length, in characters, of each key component."""

KEY_FIELDS = ("namespace", "name", "consumer_group", "partition_id")

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)
"""Go's ``time.Time{}``: what Go writes for a checkpoint without an enqueue time."""
_GO_ZERO_TIME_TEXT = "0001-01-01T00:00:00Z"


def _check_text(field: str, value: object, *, max_length: int | None = None) -> str:
    """Validate a non-empty, NUL-free, UTF-8 encodable string and return it."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}: {value!r}")
    if not value:
        raise ValueError(f"{field} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{field} must not contain a NUL character: {value!r}")
    if max_length is not None and len(value) > max_length:
        raise ValueError(
            f"{field} is {len(value)} characters long; at most {max_length} are allowed: "
            f"{value[:40]!r}..."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{field} must be valid Unicode text (it contains a lone surrogate): {value!r}"
        ) from exc
    return value


def _to_utc(field: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{field} must be timezone-aware; got the naive datetime {value.isoformat()}. "
            "Pass tzinfo, e.g. datetime(..., tzinfo=timezone.utc)"
        )
    try:
        return value.astimezone(timezone.utc)
    except OverflowError as exc:
        raise ValueError(f"{field} {value.isoformat()} is out of range in UTC") from exc


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a consumer is in one partition: the last event it processed.

    ``offset`` is the event's offset (or :data:`START_OF_STREAM` / :data:`END_OF_STREAM`),
    ``sequence_number`` its sequence number and ``enqueue_time`` when it was enqueued.

    Values are validated at construction. ``enqueue_time`` must be timezone-aware and is
    normalized to UTC, so equal instants compare and hash equal. Go's zero time
    (0001-01-01T00:00:00Z), which Go uses for "no enqueue time", is normalized to ``None``.
    """

    offset: str
    sequence_number: int = 0
    enqueue_time: datetime | None = None

    def __post_init__(self) -> None:
        offset, seq, when = self.offset, self.sequence_number, self.enqueue_time
        if (  # the common case, checked in a few C calls; anything else is checked below
            type(offset) is str
            and offset.isascii()
            and offset
            and "\x00" not in offset
            and type(seq) is int
            and _INT64_MIN <= seq <= _INT64_MAX
            and (when is None or (type(when) is datetime and when.tzinfo is timezone.utc))
            and when != GO_ZERO_TIME
        ):
            return
        _check_text("offset", self.offset)
        seq = self.sequence_number
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError(f"sequence_number must be an int, not {type(seq).__name__}: {seq!r}")
        if not _INT64_MIN <= seq <= _INT64_MAX:
            raise ValueError(
                f"sequence_number {seq} is outside the signed 64-bit range "
                f"[{_INT64_MIN}, {_INT64_MAX}]"
            )
        when = self.enqueue_time
        if when is not None:
            if not isinstance(when, datetime):
                raise TypeError(
                    f"enqueue_time must be a datetime or None, not {type(when).__name__}: {when!r}"
                )
            utc = _to_utc("enqueue_time", when)
            object.__setattr__(self, "enqueue_time", None if utc == GO_ZERO_TIME else utc)

    @classmethod
    def start_of_stream(cls) -> Checkpoint:
        """A checkpoint at the start of the stream (Go's ``NewCheckpointFromStartOfStream``)."""
        return cls(START_OF_STREAM)

    @classmethod
    def end_of_stream(cls) -> Checkpoint:
        """A checkpoint at the end of the stream (Go's ``NewCheckpointFromEndOfStream``)."""
        return cls(END_OF_STREAM)

    def to_json(self) -> str:
        """Return exactly what Go's ``encoding/json`` writes for this ``persist.Checkpoint``."""
        return (
            f'{{"offset":{_go_json_string(self.offset)},'
            f'"sequenceNumber":{self.sequence_number},'
            f'"enqueueTime":"{format_go_time(self.enqueue_time)}"}}'
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> Checkpoint:
        """Parse what :meth:`to_json` or Go's ``encoding/json`` wrote.

        Raises ``ValueError`` saying what is wrong (a persister reading a stored checkpoint
        raises :class:`~streamcheckpoint.errors.CorruptCheckpointError` naming where it was).
        """
        if isinstance(data, (bytes, bytearray)):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"checkpoint is not valid UTF-8: {exc}") from exc
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"checkpoint is not valid JSON: {exc}") from exc
        except RecursionError as exc:  # "[[[[..." deeper than the parser goes
            raise ValueError(f"checkpoint JSON is nested too deeply: {exc}") from exc
        if not isinstance(obj, dict):
            raise ValueError(f"checkpoint JSON must be an object, got {type(obj).__name__}")
        return _checkpoint_from_mapping(obj)


def _checkpoint_from_mapping(obj: dict[str, Any]) -> Checkpoint:
    offset = obj.get("offset")
    if not isinstance(offset, str):
        raise ValueError(f'checkpoint JSON needs "offset" as a string, got {offset!r}')
    seq = obj.get("sequenceNumber")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise ValueError(f'checkpoint JSON needs "sequenceNumber" as an integer, got {seq!r}')
    raw_time = obj.get("enqueueTime")
    if raw_time is None:
        enqueue_time = None
    elif isinstance(raw_time, str):
        enqueue_time = parse_go_time(raw_time)
    else:
        raise ValueError(
            f'checkpoint JSON needs "enqueueTime" as an RFC 3339 string, got {raw_time!r}'
        )
    try:
        return Checkpoint(offset, seq, enqueue_time)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint JSON holds an invalid value: {exc}") from exc


# Go's encoding/json escapes these besides '"' and '\\'; control characters other than
# \n, \r and \t are written as \u00XX (Go 1.19, the version the fixtures were written with).
_GO_ESCAPES: dict[int, str] = {c: f"\\u{c:04x}" for c in range(0x20)}
_GO_ESCAPES.update(
    {
        ord("\n"): "\\n",
        ord("\r"): "\\r",
        ord("\t"): "\\t",
        ord('"'): '\\"',
        ord("\\"): "\\\\",
        ord("<"): "\\u003c",
        ord(">"): "\\u003e",
        ord("&"): "\\u0026",
        0x2028: "\\u2028",
        0x2029: "\\u2029",
    }
)


def _go_json_string(value: str) -> str:
    return '"' + value.translate(_GO_ESCAPES) + '"'


def format_go_time(value: datetime | None) -> str:
    """Format like Go's ``time.Time.MarshalJSON`` (RFC 3339, fraction trimmed) for a UTC time."""
    if value is None:
        return _GO_ZERO_TIME_TEXT
    text = f"{value.year:04d}-{value:%m-%dT%H:%M:%S}"
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_go_time(text: str) -> datetime | None:
    """Parse an RFC 3339 time as Go writes it; Go's zero time gives ``None``.

    Fractions of up to nine digits are truncated (never rounded) to microseconds.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            f'checkpoint "enqueueTime" {text!r} is not an RFC 3339 time '
            "like 2026-11-28T04:15:56.123456789Z"
        )
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f'checkpoint "enqueueTime" {text!r} has a bad offset')
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((frac or "").ljust(6, "0")[:6])
    try:
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
        utc = value.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f'checkpoint "enqueueTime" {text!r} is not a valid time: {exc}') from exc
    return None if utc == GO_ZERO_TIME else utc


class PartitionKey(NamedTuple):
    """The identity of one checkpoint: Event Hubs namespace, hub name, consumer group, partition."""

    namespace: str
    name: str
    consumer_group: str
    partition_id: str

    def describe(self) -> str:
        """A human-readable form for messages."""
        return (
            f"namespace={self.namespace!r} name={self.name!r} "
            f"consumer_group={self.consumer_group!r} partition_id={self.partition_id!r}"
        )


def is_plain_key(
    namespace: object, name: object, consumer_group: object, partition_id: object
) -> bool:
    """Whether the components are valid the common way: ASCII ``str`` of 1 to 256 characters.

    A fast check only: ``False`` means "check fully", not "invalid".
    """
    if (
        type(namespace) is str
        and type(name) is str
        and type(consumer_group) is str
        and type(partition_id) is str
        and 0 < len(namespace) <= MAX_KEY_LENGTH
        and 0 < len(name) <= MAX_KEY_LENGTH
        and 0 < len(consumer_group) <= MAX_KEY_LENGTH
        and 0 < len(partition_id) <= MAX_KEY_LENGTH
    ):
        joined = namespace + name + consumer_group + partition_id
        return joined.isascii() and "\x00" not in joined
    return False


def make_key(
    namespace: object, name: object, consumer_group: object, partition_id: object
) -> PartitionKey:
    """Validate the four key components and return them as a :class:`PartitionKey`.

    Each must be a non-empty ``str`` without NUL of at most :data:`MAX_KEY_LENGTH` characters;
    a ``ValueError``/``TypeError`` names the bad component.
    """
    values = (namespace, name, consumer_group, partition_id)
    if is_plain_key(namespace, name, consumer_group, partition_id):
        return PartitionKey(namespace, name, consumer_group, partition_id)  # type: ignore[arg-type]
    checked = [
        _check_text(field, value, max_length=MAX_KEY_LENGTH)
        for field, value in zip(KEY_FIELDS, values, strict=True)
    ]
    return PartitionKey(*checked)


def check_key_component(field: str, value: object) -> str:
    """Validate one key component (used for ``list``/``delete`` filters)."""
    return _check_text(field, value, max_length=MAX_KEY_LENGTH)


def check_checkpoint(checkpoint: object) -> Checkpoint:
    """Return ``checkpoint`` if it is a :class:`Checkpoint`, else raise ``TypeError``."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(
            f"checkpoint must be a streamcheckpoint.Checkpoint, not "
            f"{type(checkpoint).__name__}: {checkpoint!r}"
        )
    return checkpoint


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A stored checkpoint with its key and, where the backend knows it, when it was written.

    ``updated_at`` is an aware UTC datetime, or ``None`` where the backend can't know.
    """

    key: PartitionKey
    checkpoint: Checkpoint
    updated_at: datetime | None = None


_DIGITS = re.compile(r"([0-9]+)", re.ASCII)


def natural_sort_key(text: str) -> list[Any]:
    """Sort key putting ``"2"`` before ``"10"``: digit runs compare as numbers."""
    if text.isdigit() and text.isascii():  # most partition ids; what the split below gives
        return ["", (int(text), text), ""]
    parts: list[Any] = _DIGITS.split(text)
    for i in range(1, len(parts), 2):
        parts[i] = (int(parts[i]), parts[i])
    return parts


def record_sort_key(record: CheckpointRecord) -> tuple[str, str, str, list[Any]]:
    """Order records by key, partition ids in natural order."""
    key = record.key
    return (key.namespace, key.name, key.consumer_group, natural_sort_key(key.partition_id))
