"""The Event Hubs commands: ``owners list|release``, ``import-blob`` (against Azurite), and
``status``'s owner, renewal and lag columns."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from streamcheckpoint import Checkpoint, SQLPersister
from streamcheckpoint.cli.render import EVENTHUB_FIELDS, STATUS_FIELDS
from streamcheckpoint.eventhub import SQLCheckpointStore
from test_cli import assert_error, invoke, ok

NS, HUB, CG = "ns.servicebus.windows.net", "hub", "$Default"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "STREAMCHECKPOINT_URL",
        "STREAMCHECKPOINT_SCHEMA",
        "AZURE_STORAGE_CONNECTION_STRING",
    ):
        monkeypatch.delenv(name, raising=False)


def claim(partition: str, owner: str, etag: str | None = None, hub: str = HUB) -> dict[str, Any]:
    document = {
        "fully_qualified_namespace": NS,
        "eventhub_name": hub,
        "consumer_group": CG,
        "partition_id": partition,
        "owner_id": owner,
    }
    if etag is not None:
        document["etag"] = etag
    return document


def checkpoint(partition: str, offset: str, sequence: int, hub: str = HUB) -> dict[str, Any]:
    return {
        "fully_qualified_namespace": NS,
        "eventhub_name": hub,
        "consumer_group": CG,
        "partition_id": partition,
        "offset": offset,
        "sequence_number": sequence,
    }


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A database where an Event Hubs processor owns partitions 0 and 1 and has checkpointed
    0 (with its last enqueued event: lag 15) and 1 (without); partition 2 was checkpointed by
    SQLPersister only."""
    url = f"sqlite:///{tmp_path / 'eh.db'}"
    with SQLCheckpointStore(url) as store:
        store.claim_ownership([claim("0", "owner-a"), claim("1", "owner-a")])
        store.update_checkpoint(
            checkpoint("0", "100", 10),
            last_enqueued_event_properties={"sequence_number": 25, "offset": "250"},
        )
        store.update_checkpoint(checkpoint("1", "110", 11))
        store.persister.write(NS, HUB, CG, "2", Checkpoint("7", 7))
    return url


def test_status_adds_owner_renewal_and_lag(url: str) -> None:
    rows = json.loads(ok("--url", url, "status", "--format", "json").stdout)
    assert [list(row) for row in rows] == [[*STATUS_FIELDS, *EVENTHUB_FIELDS]] * 3
    by_partition = {row["partition_id"]: row for row in rows}
    assert [by_partition[p]["owner_id"] for p in "012"] == ["owner-a", "owner-a", None]
    assert [by_partition[p]["lag"] for p in "012"] == [15, None, None]
    assert by_partition["0"]["last_enqueued_sequence_number"] == 25
    renewed = datetime.fromisoformat(str(by_partition["0"]["ownership_renewed_at"])[:-1])
    age = datetime.now(timezone.utc).replace(tzinfo=None) - renewed
    assert 0 <= age.total_seconds() < 60

    table = ok("--url", url, "status").stdout
    for header in ("Owner", "Renewed", "Lag"):
        assert header in table
    line = next(line for line in table.splitlines() if "│         0 │" in line)
    assert "owner-a" in line
    assert "s ago" in line
    assert line.rstrip("│ ").endswith("15")

    parsed = list(csv.DictReader(io.StringIO(ok("--url", url, "status", "--format", "csv").stdout)))
    assert parsed[0]["lag"] == "15"
    assert parsed[2]["owner_id"] == ""


def test_status_of_a_database_without_event_hubs_data_is_unchanged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    with SQLPersister(url) as persister:
        persister.write(NS, HUB, CG, "0", Checkpoint("1", 1))
    rows = json.loads(ok("--url", url, "status", "--format", "json").stdout)
    assert [list(row) for row in rows] == [list(STATUS_FIELDS)]
    assert "Owner" not in ok("--url", url, "status").stdout


def test_owners_list_in_every_format(url: str) -> None:
    table = ok("--url", url, "owners", "list").stdout
    assert table.count("owner-a") == 2
    rows = json.loads(ok("--url", url, "owners", "list", "--format", "json").stdout)
    assert [(r["partition_id"], r["owner_id"]) for r in rows] == [
        ("0", "owner-a"),
        ("1", "owner-a"),
    ]
    assert all(r["last_modified_time"].endswith("Z") and r["etag"] for r in rows)
    out = ok("--url", url, "owners", "list", "--format", "csv", "--namespace", NS).stdout
    assert out.splitlines()[0] == (
        "namespace,name,consumer_group,partition_id,owner_id,last_modified_time,etag"
    )
    assert len(out.splitlines()) == 3
    assert (
        json.loads(
            ok("--url", url, "owners", "list", "--namespace", "x", "--format", "json").stdout
        )
        == []
    )


def test_owners_release_frees_partitions_and_fences_their_owner(url: str) -> None:
    with SQLCheckpointStore(url, fence_checkpoints=True) as store:
        [mine] = store.claim_ownership([claim("5", "owner-b")])
        store.update_checkpoint(checkpoint("5", "50", 5))

        out = ok("--url", url, "owners", "release", NS, HUB, CG, "--partition", "5", "--yes").stdout
        assert "released 1 partition(s)" in out
        rows = {r["partition_id"]: r for r in store.list_ownership(NS, HUB, CG)}
        assert rows["5"]["owner_id"] == ""
        assert rows["0"]["owner_id"] == "owner-a"  # only that partition
        # Its owner can't renew with its old etag, and its checkpoints are refused.
        assert store.claim_ownership([claim("5", "owner-b", mine["etag"])]) == []
        from streamcheckpoint import OwnershipLostError

        with pytest.raises(OwnershipLostError):
            store.update_checkpoint(checkpoint("5", "51", 6))

    aborted = invoke("--url", url, "owners", "release", NS, HUB, CG, input="n\n")
    assert aborted.exit_code == 1
    assert "nothing changed" in aborted.stderr
    out = ok("--url", url, "owners", "release", NS, HUB, CG, input="y\n").stdout
    assert "released 2 partition(s)" in out
    assert "nothing to release" in ok("--url", url, "owners", "release", NS, HUB, CG).stdout
    rows = json.loads(ok("--url", url, "owners", "list", "--format", "json").stdout)
    assert {r["owner_id"] for r in rows} == {""}


def test_owners_list_filters_narrow_in_key_order(url: str) -> None:
    assert_error(
        invoke("--url", url, "owners", "list", "--name", HUB), 2, "--name needs --namespace"
    )
    out = ok("--url", url, "owners", "list", "--namespace", NS, "--name", HUB, "--format", "json")
    assert len(json.loads(out.stdout)) == 2


def test_owners_need_a_sql_database(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    result = invoke("--url", f"file://{tmp_path / 'files'}", "owners", "list")
    assert_error(result, 2, "SQL database")
    assert_error(
        invoke("--url", "sqlite:///missing.db", "owners", "list"), 1, "no checkpoint database"
    )


# -- import-blob ------------------------------------------------------------------------------


def fill_blob_store(connection: str, container: str) -> list[dict[str, Any]]:
    """What processors using the Blob store leave behind: two hubs, ownerships, checkpoints."""
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
    from azure.storage.blob import ContainerClient

    with ContainerClient.from_connection_string(connection, container) as client:
        client.create_container()
    with BlobCheckpointStore.from_connection_string(connection, container) as blob:
        owned = list(blob.claim_ownership([claim("0", "blob-owner", hub="MyHub"), claim("1", "")]))
        blob.update_checkpoint(checkpoint("0", "geo:0:41", 41, hub="MyHub"))
        blob.update_checkpoint(checkpoint("3", "300", 30))
    return owned


def test_import_blob_copies_ownerships_and_checkpoints(azurite: str, url: str) -> None:
    owned = fill_blob_store(azurite, "checkpoints")
    args = (
        "--url",
        url,
        "import-blob",
        "--connection-string",
        azurite,
        "--container",
        "checkpoints",
    )
    out = ok(*args, "--spelling", "MyHub").stdout
    assert "imported 2 ownership(s) and 2 checkpoint(s) of 2 consumer group(s)" in out
    assert "AccountKey" not in out

    with SQLCheckpointStore(url) as store:
        # $Default and MyHub come back with their capitals (the Blob store lower-cased them).
        [mine] = store.list_ownership(NS, "MyHub", CG)
        assert (mine["owner_id"], mine["partition_id"]) == ("blob-owner", "0")
        blob_time = next(o for o in owned if o["owner_id"] == "blob-owner")["last_modified_time"]
        assert abs(mine["last_modified_time"] - blob_time) < 1
        assert store.list_checkpoints(NS, "MyHub", CG) == [checkpoint("0", "geo:0:41", 41, "MyHub")]
        ours = {r["partition_id"]: r for r in store.list_checkpoints(NS, HUB, CG)}
        assert ours["3"] == checkpoint("3", "300", 30)
        assert ours["0"]["sequence_number"] == 10  # ours, untouched
        released = {r["partition_id"]: r["owner_id"] for r in store.list_ownership(NS, HUB, CG)}
        assert released["1"] == ""  # the Blob store's release replaced our owner-a
        assert released["0"] == "owner-a"

        # Again: idempotent; --monotonic never moves ours backwards.
        store.update_checkpoint(checkpoint("3", "900", 90))
    out = ok(*args, "--spelling", "MyHub", "--monotonic").stdout
    assert "skipped 1 checkpoint(s) where ours was further ahead" in out
    with SQLCheckpointStore(url) as store:
        assert {
            r["partition_id"]: r["sequence_number"] for r in store.list_checkpoints(NS, HUB, CG)
        }["3"] == 90


def test_import_blob_errors_are_one_line_without_the_key(url: str) -> None:
    unreachable = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    result = invoke(
        "--url", url, "import-blob", "--connection-string", unreachable, "--container", "x-y-z"
    )
    line = assert_error(result, 1, "could not read the Blob checkpoint store")
    assert "c2VjcmV0a2V5" not in result.output
    assert line
    result = invoke(
        "--url", url, "import-blob", "--connection-string", "nonsense", "--container", "abc"
    )
    assert_error(result, 2, "connection string")
