"""The Event Hubs commands: ``owners list|release``, ``import-blob``, and ``status``'s owner
and lag columns.

They read and write the ``ownerships`` table and the last-enqueued columns through
:class:`~streamcheckpoint.sql.eventhub_tables.EventHubTables` (no azure-eventhub needed), except
``import-blob``, which reads an Azure Blob checkpoint store (``pip install
'streamcheckpoint[eventhub-blob]'``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..checkpoint import Checkpoint, CheckpointRecord, PartitionKey, check_key_component
from ..errors import PersistError
from ..persister import BasePersister, normalize_scope
from ..sql import SQLPersister
from ..sql.eventhub_statements import OwnershipRecord
from ..sql.eventhub_tables import EventHubTables
from .app import (
    EXIT_RUNTIME,
    TABLE_FORMAT,
    cli,
    console,
    handle_errors,
    open_store,
    schema_of,
    url_of,
)
from .render import format_age, iso_utc

__all__ = ["eventhub_fields"]

_SECRET = re.compile(r"((?:AccountKey|SharedAccessSignature|sig)=)[^;&\s]+", re.IGNORECASE)

# A one-shot command: a few quick retries (Azure Storage's default waits minutes before failing).
_RETRIES: dict[str, Any] = {"retry_total": 2, "initial_backoff": 0.5, "increment_base": 1}

DEFAULT_SPELLINGS = ("$Default",)
"""Names that the Blob store's lower-cased blob names give back with their capitals."""


def eventhub_fields(
    persister: BasePersister, records: Sequence[CheckpointRecord]
) -> list[dict[str, object]] | None:
    """``status``'s :data:`~.render.EVENTHUB_FIELDS` for each record, or ``None`` if the store
    holds no ownership nor last enqueued event for any of them (or isn't SQL)."""
    if not isinstance(persister, SQLPersister) or not records:
        return None
    prefix = _common_prefix([r.key for r in records])
    tables = EventHubTables(persister)
    owned = {o.key: o for o in tables.ownerships(prefix)}
    newest = {r.key: r.last_enqueued.sequence_number for r in tables.last_enqueued(prefix)}
    keys = [r.key for r in records]
    if not any(key in owned or newest.get(key) is not None for key in keys):
        return None
    fields: list[dict[str, object]] = []
    for record in records:
        ownership = owned.get(record.key)
        renewed = None if ownership is None else iso_utc(ownership.last_modified)
        last = newest.get(record.key)
        fields.append(
            {
                "owner_id": None if ownership is None else ownership.owner_id,
                "ownership_renewed_at": renewed,
                "last_enqueued_sequence_number": last,
                "lag": None if last is None else max(0, last - record.checkpoint.sequence_number),
            }
        )
    return fields


def _common_prefix(keys: Sequence[PartitionKey]) -> tuple[str, ...]:
    prefix: list[str] = []
    for position in range(3):
        values = {key[position] for key in keys}
        if len(values) != 1:
            break
        prefix.append(values.pop())
    return tuple(prefix)


def _prefix(namespace: str | None, name: str | None, consumer_group: str | None) -> tuple[str, ...]:
    """The filters of ``owners list``, which narrow in key order, as a key prefix."""
    given = (("--namespace", namespace), ("--name", name), ("--consumer-group", consumer_group))
    prefix: list[str] = []
    for position, (option, value) in enumerate(given):
        if value is None:
            later = [o for o, v in given[position + 1 :] if v is not None]
            if later:
                raise ValueError(f"{later[0]} needs {option} too")
            break
        prefix.append(check_key_component(option.lstrip("-").replace("-", "_"), value))
    return tuple(prefix)


def _tables(persister: BasePersister, url: str) -> EventHubTables:
    if not isinstance(persister, SQLPersister):
        raise ValueError(f"ownerships live in a SQL database; {url} is not one")
    return EventHubTables(persister)


# -- owners -----------------------------------------------------------------------------------


@cli.group()
def owners() -> None:
    """Event Hubs partition ownership (azure-eventhub processors using our store)."""


@owners.command("list")
@click.option("--namespace", help="Only this Event Hubs namespace.")
@click.option("--name", help="Only this event hub (needs --namespace).")
@click.option("--consumer-group", help="Only this consumer group (needs --name).")
@TABLE_FORMAT
@click.pass_context
@handle_errors
def owners_list(
    ctx: click.Context,
    namespace: str | None,
    name: str | None,
    consumer_group: str | None,
    fmt: str,
) -> None:
    """One row per partition: its owner ("" once released) and when it was last renewed."""
    import csv
    import io
    import json

    prefix = _prefix(namespace, name, consumer_group)
    url = url_of(ctx)
    with open_store(url, writing=False, schema=schema_of(ctx)) as persister:
        rows = _tables(persister, url).ownerships(prefix)
    rows.sort(key=lambda r: (r.key[:3], len(r.key.partition_id), r.key.partition_id))
    plain = [
        {
            "namespace": r.key.namespace,
            "name": r.key.name,
            "consumer_group": r.key.consumer_group,
            "partition_id": r.key.partition_id,
            "owner_id": r.owner_id,
            "last_modified_time": iso_utc(r.last_modified),
            "etag": r.etag,
        }
        for r in rows
    ]
    if fmt == "json":
        click.echo(json.dumps(plain, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        out = io.StringIO()
        fields = ["namespace", "name", "consumer_group", "partition_id", "owner_id"]
        writer = csv.DictWriter(out, [*fields, "last_modified_time", "etag"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(plain)
        click.echo(out.getvalue(), nl=False)
    else:
        console().print(_owners_table(rows, datetime.now(timezone.utc)))


def _owners_table(rows: Sequence[OwnershipRecord], now: datetime) -> Table:
    table = Table(title="Ownerships", title_justify="left")
    for header in ("Namespace", "Hub", "Consumer group", "Partition", "Owner", "Renewed"):
        table.add_column(header, justify="right" if header == "Partition" else "left")
    for r in rows:
        owner = Text(r.owner_id) if r.owner_id else Text("(released)", style="dim")
        cells = [Text(c) for c in r.key]
        table.add_row(*cells, owner, format_age(r.last_modified, now))
    return table


@owners.command("release")
@click.argument("namespace")
@click.argument("name")
@click.argument("consumer_group")
@click.option("--partition", help="Only this partition (default: the whole consumer group).")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@click.pass_context
@handle_errors
def owners_release(
    ctx: click.Context,
    namespace: str,
    name: str,
    consumer_group: str,
    partition: str | None,
    yes: bool,
) -> None:
    """Release a consumer group's partitions (or one): any processor may claim them at once.

    Their owner's next renewal fails, so it stops processing them (and, with
    fence_checkpoints, its checkpoints for them are refused).
    """
    normalize_scope(namespace, name, consumer_group)
    if partition is not None:
        check_key_component("partition_id", partition)
    url = url_of(ctx)
    # It writes (to a store that must already be there), so not read-only.
    with open_store(url, writing=True, create=False, schema=schema_of(ctx)) as persister:
        tables = _tables(persister, url)
        held = [
            r
            for r in tables.ownerships((namespace, name, consumer_group))
            if r.owner_id and (partition is None or r.key.partition_id == partition)
        ]
        if not held:
            click.echo("nothing to release: no partition of that consumer group is owned")
            return
        shown = ", ".join(f"{r.key.partition_id} ({r.owner_id})" for r in held)
        click.echo(f"owned: {shown}")
        if not yes and not click.confirm(f"Release {len(held)} partition(s)?", default=False):
            click.echo("aborted; nothing changed", err=True)
            sys.exit(EXIT_RUNTIME)
        released = tables.release(namespace, name, consumer_group, partition)
    click.echo(f"released {released} partition(s)")


# -- import-blob ------------------------------------------------------------------------------


@cli.command("import-blob")
@click.option(
    "--connection-string",
    required=True,
    envvar="AZURE_STORAGE_CONNECTION_STRING",
    help="The storage account's connection string (also AZURE_STORAGE_CONNECTION_STRING).",
)
@click.option("--container", required=True, help="The Blob checkpoint store's container.")
@click.option(
    "--spelling",
    "spellings",
    multiple=True,
    metavar="NAME",
    help="The exact spelling of a namespace, event hub or consumer group: the Blob store "
    "lower-cases its blob names, our keys are exact. Repeatable; $Default is known.",
)
@click.option(
    "--monotonic", is_flag=True, help="Never move a checkpoint of ours backwards (skip those)."
)
@click.pass_context
@handle_errors
def import_blob(
    ctx: click.Context,
    connection_string: str,
    container: str,
    spellings: tuple[str, ...],
    monotonic: bool,
) -> None:
    """Copy the ownerships and checkpoints of an Azure Blob checkpoint store into ours.

    So processors switch from BlobCheckpointStore to SQLCheckpointStore without reprocessing.
    Stop the processors first; run it again to pick up checkpoints written since (idempotent).
    """
    from .commands import _copy_batch

    ownerships, checkpoints, groups = _read_blob_store(connection_string, container, spellings)
    url = url_of(ctx)
    with open_store(url, writing=True, monotonic=monotonic, schema=schema_of(ctx)) as persister:
        _tables(persister, url).import_ownerships(ownerships)
        copied, skipped = _copy_batch(persister, checkpoints) if checkpoints else (0, 0)
    message = (
        f"imported {len(ownerships)} ownership(s) and {copied} checkpoint(s) of {groups} "
        f"consumer group(s) from container {container!r}"
    )
    if skipped:
        message += f"; skipped {skipped} checkpoint(s) where ours was further ahead"
    click.echo(message)


def _read_blob_store(
    connection_string: str, container: str, spellings: tuple[str, ...]
) -> tuple[list[OwnershipRecord], list[CheckpointRecord], int]:
    """Every ownership and checkpoint in the container, read by the Blob store itself."""
    try:
        from azure.core.exceptions import AzureError
        from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
        from azure.storage.blob import ContainerClient
    except ImportError as exc:
        raise PersistError(
            f"import-blob needs the Blob checkpoint store ({exc}): "
            "pip install 'streamcheckpoint[eventhub-blob]'"
        ) from exc
    spelled = {name.lower(): name for name in (*DEFAULT_SPELLINGS, *spellings)}
    try:
        with ContainerClient.from_connection_string(
            connection_string, container, **_RETRIES
        ) as client:
            names = list(client.list_blob_names())
        groups = sorted(
            {
                tuple(spelled.get(part, part) for part in name.split("/")[:3])
                for name in names
                if name.count("/") == 4 and name.split("/")[3] in ("ownership", "checkpoint")
            }
        )
        store = BlobCheckpointStore.from_connection_string(connection_string, container, **_RETRIES)
        with store:
            ownerships = [o for group in groups for o in store.list_ownership(*group)]
            checkpoints = [c for group in groups for c in store.list_checkpoints(*group)]
    except AzureError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = _SECRET.sub(r"\1***", detail)
        raise PersistError(f"could not read the Blob checkpoint store: {detail}") from None
    except ValueError as exc:  # a malformed connection string
        raise ValueError(
            f"--connection-string is not a storage connection string ({exc})"
        ) from None
    return (
        [_ownership(document) for document in ownerships],
        [_checkpoint(document) for document in checkpoints],
        len(groups),
    )


def _key(document: dict[str, Any]) -> PartitionKey:
    return PartitionKey(
        document["fully_qualified_namespace"],
        document["eventhub_name"],
        document["consumer_group"],
        document["partition_id"],
    )


def _ownership(document: dict[str, Any]) -> OwnershipRecord:
    when = datetime.fromtimestamp(float(document["last_modified_time"]), timezone.utc)
    # A released partition's owner is "", which Blob metadata may give back as nothing.
    return OwnershipRecord(_key(document), str(document.get("owner_id") or ""), "", when)


def _checkpoint(document: dict[str, Any]) -> CheckpointRecord:
    checkpoint = Checkpoint(str(document["offset"]), int(document["sequence_number"]))
    return CheckpointRecord(_key(document), checkpoint, datetime.now(timezone.utc))
