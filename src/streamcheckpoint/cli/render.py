"""Pure helpers of the CLI: durations, ages, and status rows as table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from rich.table import Table
from rich.text import Text

from ..checkpoint import CheckpointRecord
from ..errors import CorruptCheckpointError

__all__ = [
    "EVENTHUB_FIELDS",
    "STATUS_FIELDS",
    "format_age",
    "iso_utc",
    "parse_duration",
    "status_csv",
    "status_json",
    "status_rows",
    "status_table",
]

STATUS_FIELDS = (
    "namespace",
    "name",
    "consumer_group",
    "partition_id",
    "offset",
    "sequence_number",
    "enqueue_time",
    "updated_at",
)

EVENTHUB_FIELDS = ("owner_id", "ownership_renewed_at", "last_enqueued_sequence_number", "lag")
"""Fields ``status`` adds when the database holds Event Hubs ownerships or last enqueued events
(``None`` where a partition has none): who owns the partition (``""`` released), when that was
last renewed, the partition's newest event when it was checkpointed, and lag (newest minus
checkpoint)."""

Extra = Sequence[dict[str, object]]
"""One dict of :data:`EVENTHUB_FIELDS` per record, or nothing."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``5m``, ``1.5h``, ``2d`` (or a sum such as ``1h30m``) into a timedelta."""
    cleaned = text.strip().lower()
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(cleaned):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(cleaned):
        raise ValueError(
            f"{text!r} is not a duration; use a number with s, m, h or d, e.g. 30s, 5m, 2h, 1d"
        )
    return timedelta(seconds=total)


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, microseconds kept when present."""
    if value is None:
        return None
    text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    return text + "Z"


def format_age(updated_at: datetime | None, now: datetime) -> str:
    """``"3m ago"``-style age of a timestamp; ``"unknown"`` when there is none."""
    if updated_at is None:
        return "unknown"
    seconds = int((now - updated_at).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def is_stale(record: CheckpointRecord, now: datetime, stale: timedelta | None) -> bool:
    """Whether ``record`` was last written longer than ``stale`` ago."""
    if stale is None or record.updated_at is None:
        return False
    return now - record.updated_at > stale


def status_rows(records: Sequence[CheckpointRecord]) -> list[dict[str, object]]:
    """One plain dict per record, keyed by :data:`STATUS_FIELDS` (times as ISO 8601 UTC)."""
    return [
        {
            "namespace": r.key.namespace,
            "name": r.key.name,
            "consumer_group": r.key.consumer_group,
            "partition_id": r.key.partition_id,
            "offset": r.checkpoint.offset,
            "sequence_number": r.checkpoint.sequence_number,
            "enqueue_time": iso_utc(r.checkpoint.enqueue_time),
            "updated_at": iso_utc(r.updated_at),
        }
        for r in records
    ]


def _with_marks(
    rows: list[dict[str, object]],
    flags: Sequence[bool] | None,
    unreadable: Sequence[CorruptCheckpointError],
) -> list[dict[str, object]]:
    """``rows`` with ``stale`` (when a threshold was given) and, when some stored checkpoints
    can't be read, an ``error`` for each and a row per unreadable one."""
    if flags is not None:
        rows = [{**row, "stale": flag} for row, flag in zip(rows, flags, strict=True)]
    if not unreadable:
        return rows
    bad = [
        {**dict.fromkeys(rows[0] if rows else STATUS_FIELDS), **_key_fields(e), "error": str(e)}
        for e in unreadable
    ]
    return [*({**row, "error": None} for row in rows), *bad]


def _with_extra(rows: list[dict[str, object]], extra: Extra | None) -> list[dict[str, object]]:
    if extra is None:
        return rows
    return [{**row, **fields} for row, fields in zip(rows, extra, strict=True)]


def _key_fields(error: CorruptCheckpointError) -> dict[str, object]:
    return dict(zip(STATUS_FIELDS[:4], error.key or ("?", "?", "?", "?"), strict=True))


def status_json(
    records: Sequence[CheckpointRecord],
    stale: Sequence[bool] | None = None,
    unreadable: Sequence[CorruptCheckpointError] = (),
    extra: Extra | None = None,
) -> str:
    """The status as a JSON list of objects (``stale`` added when a threshold was given;
    ``error`` when some stored checkpoints can't be read, each then a row of its own; the
    :data:`EVENTHUB_FIELDS` when ``extra`` is)."""
    rows = _with_marks(_with_extra(status_rows(records), extra), stale, unreadable)
    return json.dumps(rows, indent=2, ensure_ascii=False)


def status_csv(
    records: Sequence[CheckpointRecord],
    stale: Sequence[bool] | None = None,
    unreadable: Sequence[CorruptCheckpointError] = (),
    extra: Extra | None = None,
) -> str:
    """The status as CSV with a header row (columns ``stale`` and ``error`` as for JSON, the
    :data:`EVENTHUB_FIELDS` when ``extra`` is)."""
    fields = [*STATUS_FIELDS, *(EVENTHUB_FIELDS if extra is not None else ())]
    fields += ["stale"] if stale is not None else []
    if unreadable:
        fields.append("error")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in _with_marks(_with_extra(status_rows(records), extra), stale, unreadable):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def status_table(
    records: Sequence[CheckpointRecord],
    now: datetime,
    stale: Sequence[bool] | None = None,
    unreadable: Sequence[CorruptCheckpointError] = (),
    extra: Extra | None = None,
) -> Table:
    """A rich table, one row per partition, last update shown as an age; a stored checkpoint
    that can't be read is a row marked UNREADABLE (with ``extra``: the owner, how long ago its
    ownership was renewed, and the lag)."""
    table = Table(title="Checkpoints", title_justify="left")
    for header in ("Namespace", "Hub", "Consumer group", "Partition", "Offset", "Sequence"):
        table.add_column(header, justify="right" if header in ("Partition", "Sequence") else "left")
    table.add_column("Enqueued (UTC)")
    table.add_column("Updated")
    if extra is not None:
        table.add_column("Owner")
        table.add_column("Renewed")
        table.add_column("Lag", justify="right")
    if stale is not None:
        table.add_column("Stale")
    for index, r in enumerate(records):
        enqueued = iso_utc(r.checkpoint.enqueue_time) or "-"
        cells: list[Text | str] = [
            r.key.namespace,
            r.key.name,
            r.key.consumer_group,
            r.key.partition_id,
            r.checkpoint.offset,
            str(r.checkpoint.sequence_number),
            enqueued,
            format_age(r.updated_at, now),
        ]
        if extra is not None:
            cells += _eventhub_cells(extra[index], now)
        cells = [Text(c) if isinstance(c, str) else c for c in cells]
        if stale is not None:
            cells.append(Text("STALE", style="bold red") if stale[index] else Text("ok"))
        table.add_row(*cells)
    for error in unreadable:
        key = [Text(str(part)) for part in _key_fields(error).values()]
        mark = Text("UNREADABLE", style="bold red")
        table.add_row(*key, mark, *([Text("-")] * (len(table.columns) - len(key) - 1)))
    return table


def _eventhub_cells(fields: dict[str, object], now: datetime) -> list[Text | str]:
    owner, renewed, lag = fields["owner_id"], fields["ownership_renewed_at"], fields["lag"]
    if renewed is None:
        age = "-"
    else:
        age = format_age(datetime.fromisoformat(str(renewed).replace("Z", "+00:00")), now)
    shown = "-" if owner is None else str(owner) or Text("(released)", style="dim")
    return [shown, age, "-" if lag is None else str(lag)]
