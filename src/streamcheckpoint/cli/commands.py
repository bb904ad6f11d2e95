"""The commands that work on checkpoints: status, read, write, reset, copy and demo."""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timezone

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from ..checkpoint import (
    Checkpoint,
    CheckpointRecord,
    PartitionKey,
    check_key_component,
    make_key,
)
from ..errors import CheckpointRegressionError, CorruptCheckpointError
from ..file import FilePersister
from ..persister import BasePersister, normalize_scope
from ..redaction import mask_url
from ..sql.engine import sql_identity
from ..urls import locate
from .app import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_STALE,
    TABLE_FORMAT,
    cli,
    confirm,
    console,
    fail,
    handle_errors,
    open_store,
    schema_of,
    url_of,
)
from .eventhub import eventhub_fields
from .render import is_stale, iso_utc, parse_duration, status_csv, status_json, status_table

# -- status -----------------------------------------------------------------------------------


@cli.command()
@click.option("--namespace", help="Only this Event Hubs namespace.")
@click.option("--name", help="Only this event hub.")
@click.option("--consumer-group", help="Only this consumer group.")
@click.option(
    "--stale",
    metavar="DURATION",
    help="Mark partitions not updated for this long (e.g. 30s, 5m, 2h, 1d); exit 3 if any.",
)
@TABLE_FORMAT
@click.pass_context
@handle_errors
def status(
    ctx: click.Context,
    namespace: str | None,
    name: str | None,
    consumer_group: str | None,
    stale: str | None,
    fmt: str,
) -> None:
    """One row per partition: position, enqueue time and age of the last checkpoint."""
    normalize_scope(namespace, name, consumer_group)
    threshold = parse_duration(stale) if stale is not None else None
    with open_store(url_of(ctx), writing=False, schema=schema_of(ctx)) as persister:
        records, unreadable = _readable_records(persister, namespace, name, consumer_group)
        extra = eventhub_fields(persister, records)  # owner, renewal, lag: Event Hubs stores
    now = datetime.now(timezone.utc)
    flags = [is_stale(r, now, threshold) for r in records] if threshold is not None else None
    if fmt == "json":
        click.echo(status_json(records, flags, unreadable, extra))
    elif fmt == "csv":
        click.echo(status_csv(records, flags, unreadable, extra), nl=False)
    else:
        console().print(status_table(records, now, flags, unreadable, extra))
    if unreadable:
        first = unreadable[0].key
        hint = (
            f" (to forget one: streamcheckpoint reset {shlex.join(first[:3])} --partition "
            f"{shlex.quote(first[3])} --to delete)"
            if first is not None
            else ""
        )
        fail(
            f"{len(unreadable)} stored checkpoint(s) can't be read; fix or delete them{hint}. "
            f"First: {unreadable[0]}",
            EXIT_RUNTIME,
        )
    if flags is not None and any(flags):
        if fmt == "table":
            click.echo(f"{sum(flags)} partition(s) stale (older than {stale})", err=True)
        sys.exit(EXIT_STALE)


# -- read / write -----------------------------------------------------------------------------


@cli.command()
@click.argument("namespace")
@click.argument("name")
@click.argument("consumer_group")
@click.argument("partition_id")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
@handle_errors
def read(
    ctx: click.Context, namespace: str, name: str, consumer_group: str, partition_id: str, fmt: str
) -> None:
    """Print one partition's checkpoint (start of stream if none was written)."""
    make_key(namespace, name, consumer_group, partition_id)
    with open_store(url_of(ctx), writing=False, schema=schema_of(ctx)) as persister:
        checkpoint = persister.read(namespace, name, consumer_group, partition_id)
    if fmt == "json":
        click.echo(checkpoint.to_json())
    else:
        click.echo(
            f"offset={checkpoint.offset} sequence_number={checkpoint.sequence_number} "
            f"enqueue_time={iso_utc(checkpoint.enqueue_time) or '-'}"
        )


def _parse_enqueue_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--enqueue-time {text!r} is not ISO 8601; use e.g. 2026-11-28T04:15:56.123456Z"
        ) from None
    if value.tzinfo is None:
        raise ValueError(
            f"--enqueue-time {text!r} has no time zone; add Z or an offset like +02:00"
        )
    return value


@cli.command()
@click.argument("namespace")
@click.argument("name")
@click.argument("consumer_group")
@click.argument("partition_id")
@click.option("--offset", required=True, help="Offset of the last processed event.")
@click.option("--sequence", type=int, required=True, help="Its sequence number.")
@click.option("--enqueue-time", help="Its enqueue time, ISO 8601 with a time zone.")
@click.option("--monotonic", is_flag=True, help="Refuse to move the checkpoint backwards.")
@click.pass_context
@handle_errors
def write(
    ctx: click.Context,
    namespace: str,
    name: str,
    consumer_group: str,
    partition_id: str,
    offset: str,
    sequence: int,
    enqueue_time: str | None,
    monotonic: bool,
) -> None:
    """Set one partition's checkpoint."""
    make_key(namespace, name, consumer_group, partition_id)
    checkpoint = Checkpoint(offset, sequence, _parse_enqueue_time(enqueue_time))
    with open_store(
        url_of(ctx), writing=True, monotonic=monotonic, schema=schema_of(ctx)
    ) as persister:
        try:
            persister.write(namespace, name, consumer_group, partition_id, checkpoint)
        except CheckpointRegressionError as exc:
            fail(
                f"refused: the stored checkpoint is at sequence number "
                f"{exc.stored.sequence_number} (offset {exc.stored.offset!r}), ahead of "
                f"{sequence}; nothing was written. Leave out --monotonic to overwrite it.",
                EXIT_RUNTIME,
            )
    click.echo(
        f"wrote {namespace}/{name}/{consumer_group}/{partition_id}: offset={checkpoint.offset} "
        f"sequence_number={checkpoint.sequence_number}"
    )


# -- reset ------------------------------------------------------------------------------------

_RESET_TARGETS = {"start": Checkpoint.start_of_stream, "end": Checkpoint.end_of_stream}


@cli.command()
@click.argument("namespace")
@click.argument("name")
@click.argument("consumer_group")
@click.option("--partition", help="Only this partition (default: the whole consumer group).")
@click.option(
    "--to",
    "target",
    type=click.Choice(["start", "end", "delete"]),
    required=True,
    help="start: re-read everything retained; end: skip to new events; delete: forget.",
)
@click.option(
    "--create",
    is_flag=True,
    help="With --partition: write the checkpoint even if that partition has none yet.",
)
@click.option("--yes", is_flag=True, help="Don't ask for confirmation (needed without a terminal).")
@click.pass_context
@handle_errors
def reset(
    ctx: click.Context,
    namespace: str,
    name: str,
    consumer_group: str,
    partition: str | None,
    target: str,
    create: bool,
    yes: bool,
) -> None:
    """Reset a consumer group's (or one partition's) checkpoints to start, end, or nothing.

    Shows what changes, then asks (on a terminal; elsewhere it needs --yes). Checkpoints that
    can't be read are reset or deleted too.
    """
    check_key_component("namespace", namespace)
    check_key_component("name", name)
    check_key_component("consumer_group", consumer_group)
    if partition is not None:
        check_key_component("partition_id", partition)
    # A mistyped URL must not create (and migrate) an empty database.
    with open_store(url_of(ctx), writing=True, create=False, schema=schema_of(ctx)) as persister:
        found, unreadable = _readable_records(persister, namespace, name, consumer_group)
        records = [r for r in found if partition is None or r.key.partition_id == partition]
        keys = [r.key for r in records] + [
            e.key
            for e in unreadable
            if e.key is not None and (partition is None or e.key.partition_id == partition)
        ]
        if partition is not None and not keys:
            if not create or target == "delete":
                fail(
                    f"no checkpoint is stored for partition {partition!r} of "
                    f"{namespace}/{name}/{consumer_group}; check the names, or pass --create "
                    "to write one anyway",
                    EXIT_RUNTIME,
                )
            keys = [PartitionKey(namespace, name, consumer_group, partition)]
        if not keys:
            click.echo("nothing to reset: no checkpoints stored for that consumer group")
            return
        bad = {e.key for e in unreadable if e.key is not None}
        console().print(_reset_plan(records, keys, target, bad))
        if target == "delete":
            confirm(f"Delete {len(keys)} checkpoint(s)", yes)
        else:
            confirm(f"Reset {len(keys)} checkpoint(s) to {target} of stream", yes)
        if target == "delete":
            removed = persister.delete(namespace, name, consumer_group, partition)
            click.echo(f"deleted {removed} checkpoint(s)")
        else:
            checkpoint = _RESET_TARGETS[target]()
            persister.write_many(dict.fromkeys(keys, checkpoint))
            click.echo(f"reset {len(keys)} checkpoint(s) to {target} of stream")


def _reset_plan(
    records: list[CheckpointRecord],
    keys: list[PartitionKey],
    target: str,
    unreadable: set[PartitionKey],
) -> Table:
    current = {r.key: r.checkpoint for r in records}
    table = Table(title=f"Reset to {target}", title_justify="left")
    for header in ("Partition", "Current offset", "Current sequence", "New"):
        table.add_column(header)
    new = "deleted" if target == "delete" else _RESET_TARGETS[target]().offset
    for key in keys:
        old = current.get(key)
        table.add_row(
            Text(key.partition_id),
            Text(old.offset if old else ("unreadable" if key in unreadable else "-")),
            str(old.sequence_number) if old else "-",
            Text(new),
        )
    return table


# -- copy -------------------------------------------------------------------------------------

_COPY_BATCH = 500


@cli.command()
@click.argument("src_url")
@click.argument("dst_url")
@click.option("--namespace", help="Only this namespace.")
@click.option("--name", help="Only this event hub.")
@click.option("--consumer-group", help="Only this consumer group.")
@click.option(
    "--monotonic", is_flag=True, help="Never move a destination checkpoint backwards (skip those)."
)
@click.option("--src-schema", help="Schema of SRC_URL (default: the global --schema).")
@click.option("--dst-schema", help="Schema of DST_URL (default: the global --schema).")
@click.pass_context
@handle_errors
def copy(
    ctx: click.Context,
    src_url: str,
    dst_url: str,
    namespace: str | None,
    name: str | None,
    consumer_group: str | None,
    monotonic: bool,
    src_schema: str | None,
    dst_schema: str | None,
) -> None:
    """Copy checkpoints from SRC_URL to DST_URL (any two stores). Idempotent.

    A directory written by the Go package (file:///dir?layout=go) needs --namespace, --name and
    --consumer-group: Go's file names drop `$` and can't be split reliably.
    """
    scope = normalize_scope(namespace, name, consumer_group)
    if _same_store(src_url, src_schema or schema_of(ctx), dst_url, dst_schema or schema_of(ctx)):
        raise ValueError(
            f"{mask_url(src_url)} and {mask_url(dst_url)} are the same store: copying it onto "
            "itself would change nothing; give another destination (or --dst-schema)"
        )
    with open_store(src_url, writing=False, schema=src_schema or schema_of(ctx)) as source:
        if isinstance(source, FilePersister) and source.layout == "go" and None in scope:
            raise ValueError(
                "copying from a Go-layout directory needs --namespace, --name and "
                "--consumer-group: Go's file names drop `$` (so `$Default` would be copied as "
                "`Default`) and can't be split reliably"
            )
        records = source.list(namespace, name, consumer_group)
    copied = skipped = 0
    dest_store = open_store(
        dst_url, writing=True, monotonic=monotonic, schema=dst_schema or schema_of(ctx)
    )
    with dest_store as dest, _progress() as progress:
        task = progress.add_task("copying", total=len(records))
        for start in range(0, len(records), _COPY_BATCH):
            batch = records[start : start + _COPY_BATCH]
            done, refused = _copy_batch(dest, batch)
            copied += done
            skipped += refused
            progress.advance(task, len(batch))
    message = f"copied {copied} checkpoint(s) from {mask_url(src_url)} to {mask_url(dst_url)}"
    if skipped:
        message += f"; skipped {skipped} where the destination was further ahead"
    click.echo(message)


def _copy_batch(dest: BasePersister, batch: list[CheckpointRecord]) -> tuple[int, int]:
    """Write a batch in one go, keeping each record's ``updated_at``; on a monotonic refusal,
    fall back to one by one, skipping those."""
    try:
        dest.write_many(batch)
        return len(batch), 0
    except CheckpointRegressionError:
        pass
    copied = 0
    for record in batch:
        try:
            dest.write_many([record])
            copied += 1
        except CheckpointRegressionError:
            continue
    return copied, len(batch) - copied


def _same_store(
    source: str, source_schema: str | None, destination: str, destination_schema: str | None
) -> bool:
    """Whether two URLs (and schemas) name the same store: one file or directory, or one
    server's database and schema. In-memory stores are never the same."""
    a, b = locate(source), locate(destination)
    if a.kind != b.kind or a.kind == "memory":
        return False
    if a.path is not None and b.path is not None:
        return a.path.exists() and b.path.exists() and os.path.samefile(a.path, b.path)
    if a.path is not None or b.path is not None:
        return False
    identity = sql_identity(source, source_schema)
    return identity is not None and identity == sql_identity(destination, destination_schema)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console(stderr=True),
        transient=False,
    )


# -- demo -------------------------------------------------------------------------------------


@cli.command()
@click.option("--partitions", type=click.IntRange(1, 1024), default=4, show_default=True)
@click.option("--events", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--crash-after",
    type=click.IntRange(1),
    help="Kill the process abruptly after this many events (then run again to resume).",
)
@click.pass_context
@handle_errors
def demo(
    ctx: click.Context,
    partitions: int,
    events: int,
    checkpoint_every: int,
    crash_after: int | None,
) -> None:
    """Consume a synthetic stream, checkpointing as it goes; resumes where it stopped."""
    from .demo import DEMO_CONSUMER_GROUP, DEMO_NAME, DEMO_NAMESPACE, run_demo

    url = url_of(ctx)
    with open_store(url, writing=True, monotonic=True, schema=schema_of(ctx)) as persister:
        try:
            run_demo(
                persister,
                url=mask_url(url),
                partitions=partitions,
                events=events,
                checkpoint_every=checkpoint_every,
                crash_after=crash_after,
                console=console(),
            )
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
        records = persister.list(DEMO_NAMESPACE, DEMO_NAME, DEMO_CONSUMER_GROUP)
    console().print(status_table(records, datetime.now(timezone.utc)))
    if interrupted:
        fail(
            "interrupted: the checkpoints above were stored before it; run the demo again to "
            "resume right after them",
            EXIT_INTERRUPTED,
        )


def _readable_records(
    persister: BasePersister,
    namespace: str | None,
    name: str | None,
    consumer_group: str | None,
) -> tuple[list[CheckpointRecord], list[CorruptCheckpointError]]:
    """The stored checkpoints that can be read, and an error for each that can't."""
    try:
        return persister.list(namespace, name, consumer_group), []
    except CorruptCheckpointError as exc:
        return exc.records, exc.unreadable
