"""The ``streamcheckpoint`` command. Commands only: storage logic lives in the library."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console
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
from ..errors import CheckpointRegressionError, PersistError
from ..file import FilePersister
from ..persister import BasePersister, normalize_scope
from ..redaction import bad_url_message, mask_url, redact
from ..urls import locate, open_persister
from .render import is_stale, iso_utc, parse_duration, status_csv, status_json, status_table

if TYPE_CHECKING:
    import sqlalchemy as sa

DEFAULT_URL = "sqlite:///checkpoints.db"
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_STALE = 3

_F = TypeVar("_F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    # Wide enough that tables aren't folded when output is piped or captured.
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160, highlight=False)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _handle_errors(func: _F) -> _F:
    """Turn library errors into one line on stderr: exit 1 at run time, 2 for bad input."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        candidates = ((ctx.obj or {}).get("url"), kwargs.get("src_url"), kwargs.get("dst_url"))
        urls = [u for u in candidates if isinstance(u, str)]

        def clean(message: str) -> str:
            for url in urls:
                message = redact(message, url)
            return message.splitlines()[0] if message else message

        try:
            return func(*args, **kwargs)
        except PersistError as exc:
            _fail(clean(str(exc)), EXIT_RUNTIME)
        except (ValueError, TypeError) as exc:
            _fail(clean(str(exc)), EXIT_USAGE)
        except OSError as exc:
            _fail(clean(str(exc)), EXIT_RUNTIME)

    return wrapper  # type: ignore[return-value]


def _is_sql_url(url: str) -> bool:
    return locate(url).kind == "sql"


def _require_existing_store(url: str) -> None:
    """Refuse a missing SQLite file or checkpoint directory instead of creating an empty one.

    For read-only commands: a mistyped path would otherwise look like a store with no
    checkpoints (and ``copy`` would report success, having copied nothing).
    """
    location = locate(url)
    if location.path is None or location.path.exists():
        return
    if location.kind == "sql":
        raise PersistError(
            f"no checkpoint database at {location.path} (URL {mask_url(url)}); check --url, or "
            "create it with `streamcheckpoint db upgrade`"
        )
    raise PersistError(
        f"no checkpoint directory at {location.path} (URL {mask_url(url)}); check the URL"
    )


@contextmanager
def _open(
    url: str, *, writing: bool, monotonic: bool = False, schema: str | None = None
) -> Iterator[BasePersister]:
    """Open the store at ``url``; read-only commands never create or migrate a database."""
    options: dict[str, Any] = {"monotonic": monotonic}
    if _is_sql_url(url):
        options["migrate"] = writing
        if schema is not None:
            options["schema"] = schema
    if not writing:
        _require_existing_store(url)
    persister = open_persister(url, **options)
    try:
        yield persister
    finally:
        persister.close()


def _url(ctx: click.Context) -> str:
    return str(ctx.obj["url"])


def _schema(ctx: click.Context) -> str | None:
    schema = ctx.obj.get("schema")
    return None if schema is None else str(schema)


class _OneLineErrors(click.Group):
    """A group whose usage errors are one line on stderr (exit 2), like every other error."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split())  # click's may span lines
            _fail(f"{message}{hint}", EXIT_USAGE)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted; nothing changed", EXIT_RUNTIME)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="STREAMCHECKPOINT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Checkpoint store: sqlite:///file.db, postgresql+psycopg://..., mysql+pymysql://..., "
    "file:///dir[?layout=go], memory://. Also read from STREAMCHECKPOINT_URL.",
)
@click.option(
    "--schema",
    envvar="STREAMCHECKPOINT_SCHEMA",
    help="PostgreSQL schema (MySQL: database) holding the checkpoints table (default: the "
    "search path; the URL's database). Also read from STREAMCHECKPOINT_SCHEMA.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show what the library does (migrations, reconnects, retries) on stderr.",
)
@click.version_option(package_name="streamcheckpoint")
@click.pass_context
def cli(ctx: click.Context, url: str, schema: str | None, verbose: bool) -> None:
    """Inspect and manage stream consumer checkpoints."""
    ctx.ensure_object(dict)
    ctx.obj["url"] = url
    ctx.obj["schema"] = schema
    if verbose:
        _log_to_stderr(ctx)


def _log_to_stderr(ctx: click.Context) -> None:
    """Send the library's INFO records and above to stderr while the command runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("streamcheckpoint")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx.call_on_close(restore)


# -- status -----------------------------------------------------------------------------------


@cli.command()
@click.option("--namespace", help="Only this Event Hubs namespace.")
@click.option("--name", help="Only this event hub (needs --namespace).")
@click.option("--consumer-group", help="Only this consumer group (needs --name).")
@click.option(
    "--stale",
    metavar="DURATION",
    help="Mark partitions not updated for this long (e.g. 30s, 5m, 2h, 1d); exit 3 if any.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.pass_context
@_handle_errors
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
    with _open(_url(ctx), writing=False, schema=_schema(ctx)) as persister:
        records = persister.list(namespace, name, consumer_group)
    now = datetime.now(timezone.utc)
    flags = [is_stale(r, now, threshold) for r in records] if threshold is not None else None
    if fmt == "json":
        click.echo(status_json(records, flags))
    elif fmt == "csv":
        click.echo(status_csv(records, flags), nl=False)
    else:
        _console().print(status_table(records, now, flags))
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
@_handle_errors
def read(
    ctx: click.Context, namespace: str, name: str, consumer_group: str, partition_id: str, fmt: str
) -> None:
    """Print one partition's checkpoint (start of stream if none was written)."""
    make_key(namespace, name, consumer_group, partition_id)
    with _open(_url(ctx), writing=False, schema=_schema(ctx)) as persister:
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
@_handle_errors
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
    with _open(_url(ctx), writing=True, monotonic=monotonic, schema=_schema(ctx)) as persister:
        persister.write(namespace, name, consumer_group, partition_id, checkpoint)
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
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@click.pass_context
@_handle_errors
def reset(
    ctx: click.Context,
    namespace: str,
    name: str,
    consumer_group: str,
    partition: str | None,
    target: str,
    yes: bool,
) -> None:
    """Reset a consumer group's (or one partition's) checkpoints to start, end, or nothing."""
    normalize_scope(namespace, name, consumer_group)
    if partition is not None:
        check_key_component("partition_id", partition)
    # Read-only open: a mistyped URL must not create (and migrate) an empty database.
    with _open(_url(ctx), writing=False, schema=_schema(ctx)) as persister:
        records = [
            r
            for r in persister.list(namespace, name, consumer_group)
            if partition is None or r.key.partition_id == partition
        ]
        keys = [r.key for r in records]
        if partition is not None and not keys and target != "delete":
            keys = [PartitionKey(namespace, name, consumer_group, partition)]
        if not keys:
            click.echo("nothing to reset: no checkpoints stored for that consumer group")
            return
        _console().print(_reset_plan(records, keys, target))
        if not yes and not click.confirm(f"Reset {len(keys)} checkpoint(s)?", default=False):
            click.echo("aborted; nothing changed", err=True)
            sys.exit(EXIT_RUNTIME)
        if target == "delete":
            removed = persister.delete(namespace, name, consumer_group, partition)
            click.echo(f"deleted {removed} checkpoint(s)")
        else:
            checkpoint = _RESET_TARGETS[target]()
            persister.write_many(dict.fromkeys(keys, checkpoint))
            click.echo(f"reset {len(keys)} checkpoint(s) to {target} of stream")


def _reset_plan(records: list[CheckpointRecord], keys: list[PartitionKey], target: str) -> Table:
    current = {r.key: r.checkpoint for r in records}
    table = Table(title=f"Reset to {target}", title_justify="left")
    for header in ("Partition", "Current offset", "Current sequence", "New"):
        table.add_column(header)
    new = "deleted" if target == "delete" else _RESET_TARGETS[target]().offset
    for key in keys:
        old = current.get(key)
        table.add_row(
            Text(key.partition_id),
            Text(old.offset if old else "-"),
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
@click.option("--name", help="Only this event hub (needs --namespace).")
@click.option("--consumer-group", help="Only this consumer group (needs --name).")
@click.option(
    "--monotonic", is_flag=True, help="Never move a destination checkpoint backwards (skip those)."
)
@click.option("--src-schema", help="Schema of SRC_URL (default: the global --schema).")
@click.option("--dst-schema", help="Schema of DST_URL (default: the global --schema).")
@click.pass_context
@_handle_errors
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
    with _open(src_url, writing=False, schema=src_schema or _schema(ctx)) as source:
        if isinstance(source, FilePersister) and source.layout == "go" and len(scope) < 3:
            raise ValueError(
                "copying from a Go-layout directory needs --namespace, --name and "
                "--consumer-group: Go's file names drop `$` (so `$Default` would be copied as "
                "`Default`) and can't be split reliably"
            )
        records = source.list(namespace, name, consumer_group)
    copied = skipped = 0
    dest_store = _open(
        dst_url, writing=True, monotonic=monotonic, schema=dst_schema or _schema(ctx)
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
    """Write a batch in one go; on a monotonic refusal, fall back to one by one, skipping those."""
    try:
        dest.write_many([(r.key, r.checkpoint) for r in batch])
        return len(batch), 0
    except CheckpointRegressionError:
        pass
    copied = 0
    for r in batch:
        try:
            dest.write(*r.key, r.checkpoint)
            copied += 1
        except CheckpointRegressionError:
            continue
    return copied, len(batch) - copied


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_console(stderr=True),
        transient=False,
    )


# -- db ---------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Manage the SQL schema (Alembic migrations shipped with the package)."""


def _sql_url_or_fail(ctx: click.Context) -> sa.URL:
    """``--url`` parsed as the persister would (``postgres://`` aliases, supported databases)."""
    from ..sql.dialects import dialect_for_url
    from ..sql.engine import parse_url

    url = _url(ctx)
    if not _is_sql_url(url):
        raise ValueError(f"db commands need a SQL database URL, not {mask_url(url)}")
    parsed = parse_url(url)
    try:
        dialect_for_url(parsed)
    except ValueError as exc:
        raise ValueError(bad_url_message(url, str(exc))) from exc
    return parsed


@db.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (offline mode).")
@click.pass_context
@_handle_errors
def db_upgrade(ctx: click.Context, revision: str, sql: bool) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    from ..sql import migrations

    url = _sql_url_or_fail(ctx)
    _report_migration(ctx, url, migrations.upgrade(url, revision, schema=_schema(ctx), sql=sql))


# ignore_unknown_options: Alembic's relative `downgrade -1` must be an argument, not an option.
@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (offline mode).")
@click.pass_context
@_handle_errors
def db_downgrade(ctx: click.Context, revision: str, sql: bool) -> None:
    """Downgrade the schema to REVISION: base removes everything, -1 undoes one step."""
    from ..sql import migrations

    url = _sql_url_or_fail(ctx)
    if not sql:
        _require_existing_store(_url(ctx))
    _report_migration(ctx, url, migrations.downgrade(url, revision, schema=_schema(ctx), sql=sql))


def _report_migration(ctx: click.Context, url: sa.URL, sql: str | None) -> None:
    """Print the offline SQL, or the revision the database is at now."""
    from ..sql import migrations

    if sql is not None:
        click.echo(sql)
        return
    now = migrations.current(url, schema=_schema(ctx))
    click.echo(f"{mask_url(_url(ctx))} is at revision {now or 'base (empty)'}")


@db.command("current")
@click.pass_context
@_handle_errors
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database (none if it has no tables of ours)."""
    from ..sql import migrations

    url = _sql_url_or_fail(ctx)
    _require_existing_store(_url(ctx))
    revision = migrations.current(url, schema=_schema(ctx))
    head = migrations.head()
    state = "up to date" if revision == head else f"head is {head}"
    click.echo(f"{revision or 'none'} ({state})")


@db.command("history")
@_handle_errors
def db_history() -> None:
    """List the migrations shipped with this version, newest first."""
    from ..sql import migrations

    table = Table(title="Migrations", title_justify="left")
    for header in ("Revision", "Down revision", "Description"):
        table.add_column(header)
    for revision, down, description in migrations.history():
        table.add_row(revision, down or "base", Text(description))
    _console().print(table)


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
@_handle_errors
def demo(
    ctx: click.Context,
    partitions: int,
    events: int,
    checkpoint_every: int,
    crash_after: int | None,
) -> None:
    """Consume a synthetic stream, checkpointing as it goes; resumes where it stopped."""
    from .demo import DEMO_CONSUMER_GROUP, DEMO_NAME, DEMO_NAMESPACE, run_demo

    url = _url(ctx)
    with _open(url, writing=True, monotonic=True, schema=_schema(ctx)) as persister:
        run_demo(
            persister,
            url=mask_url(url),
            partitions=partitions,
            events=events,
            checkpoint_every=checkpoint_every,
            crash_after=crash_after,
            console=_console(),
        )
        records = persister.list(DEMO_NAMESPACE, DEMO_NAME, DEMO_CONSUMER_GROUP)
    _console().print(status_table(records, datetime.now(timezone.utc)))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="streamcheckpoint")
