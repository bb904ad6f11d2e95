"""The README's lag and ownership queries, read from README.md and run on SQLite, PostgreSQL and
MariaDB against what the Event Hubs store wrote, with their results checked."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from streamcheckpoint import Checkpoint, PartitionKey
from streamcheckpoint.eventhub import SQLCheckpointStore
from streamcheckpoint.sql.eventhub_statements import OwnershipRecord
from streamcheckpoint.sql.eventhub_tables import EventHubTables

README = Path(__file__).resolve().parent.parent / "README.md"
NS, HUB, CG = "myns.servicebus.windows.net", "myhub", "$Default"
LABELS = {
    "all three": None,
    "PostgreSQL": "postgresql",
    "SQLite": "sqlite",
    "MySQL / MariaDB": "mysql",
}


def readme_queries() -> list[tuple[str | None, str, str]]:
    """(database or None for all three, first comment line, SQL) of each query in the block."""
    text = README.read_text(encoding="utf-8")
    start = text.index("Lag and ownership of Event Hubs consumers")
    block = text[start:].split("```sql\n", 1)[1].split("```", 1)[0]
    queries = []
    for chunk in block.strip().split(";"):
        lines = [line for line in chunk.strip().splitlines() if line.strip()]
        if not lines:
            continue
        comment = lines[0]
        assert comment.startswith("-- "), chunk
        label = re.split(r":", comment[3:], maxsplit=1)[0].strip()
        assert label in LABELS, label
        sql = "\n".join(line for line in lines if not line.startswith("--"))
        queries.append((LABELS[label], comment, sql))
    return queries


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, sa.Engine]:
    """Partition 0: lag 15, owned by owner-a now; 1: no lag recorded, owned by owner-b but not
    renewed for 2 minutes; 2: lag 0, released; another hub's partition: lag 3, unowned."""
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'q.db'}", None
    elif request.param == "mysql":
        url, schema = request.getfixturevalue("mysql_database"), None
    else:
        url, schema = request.getfixturevalue("postgres_schema")
    with SQLCheckpointStore(url, schema=schema) as store:

        def write(hub: str, partition: str, sequence: int, newest: int | None) -> None:
            lag = None if newest is None else {"sequence_number": newest, "offset": str(newest)}
            store.update_checkpoint(
                {
                    "fully_qualified_namespace": NS,
                    "eventhub_name": hub,
                    "consumer_group": CG,
                    "partition_id": partition,
                    "offset": str(sequence),
                    "sequence_number": sequence,
                },
                last_enqueued_event_properties=lag,
            )

        write(HUB, "0", 10, 25)
        write(HUB, "1", 11, None)
        write(HUB, "2", 5, 5)
        write("otherhub", "0", 7, 10)
        now = datetime.now(timezone.utc)
        EventHubTables(store.persister).import_ownerships(
            [
                OwnershipRecord(PartitionKey(NS, HUB, CG, "0"), "owner-a", "", now),
                OwnershipRecord(
                    PartitionKey(NS, HUB, CG, "1"), "owner-b", "", now - timedelta(minutes=2)
                ),
                OwnershipRecord(PartitionKey(NS, HUB, CG, "2"), "", "", now - timedelta(minutes=5)),
            ]
        )
        assert store.persister.read(NS, HUB, CG, "1") == Checkpoint("11", 11)
    # The README's queries name no schema: the PostgreSQL one is found on the search path.
    options = {} if schema is None else {"options": f"-csearch_path={schema}"}
    return request.param, sa.create_engine(url, connect_args=options)


EXPECTED = {
    "how many events": [("$Default", "0", 10, 15), ("$Default", "2", 5, 0)],
    "total and worst": [(NS, "myhub", "$Default", 15, 15), (NS, "otherhub", "$Default", 3, 3)],
    "owned partitions": [("$Default", "1", "owner-b")],
    "each partition's checkpoint": [("0", 10, "owner-a"), ("1", 11, "owner-b"), ("2", 5, "")],
}


def test_every_readme_query_runs_with_the_documented_result(filled: tuple[str, sa.Engine]) -> None:
    database, engine = filled
    ran = []
    try:
        with engine.connect() as connection:
            for target, comment, sql in readme_queries():
                if target not in (None, database):
                    continue
                rows = [tuple(row) for row in connection.exec_driver_sql(sql)]
                if target is None:
                    purpose = next(key for key in EXPECTED if key in comment)
                else:
                    purpose = "owned partitions"
                expected = EXPECTED[purpose]
                if purpose == "owned partitions":
                    rows = [row[:3] for row in rows]
                if purpose == "total and worst":
                    rows = sorted((*row[:3], int(row[3]), int(row[4])) for row in rows)
                assert rows == expected, (comment, rows)
                ran.append(purpose)
    finally:
        engine.dispose()
    assert sorted(ran) == sorted(EXPECTED)
