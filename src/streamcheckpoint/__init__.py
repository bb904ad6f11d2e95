"""Durable checkpoints for consumers of partitioned event streams.

A port of the Go package ``persist`` of azure-event-hubs-go, with its flaws fixed, and a SQL
persister (SQLite by default, PostgreSQL for many hosts) at its heart.

The library logs through the ``streamcheckpoint`` logger (reconnects, retries, migrations,
files cleaned up) and prints nothing: configure :mod:`logging` to see the records.
"""

import logging

from .aio import AsyncPersister, AsyncSQLPersister, open_async_persister
from .checkpoint import (
    END_OF_STREAM,
    START_OF_STREAM,
    Checkpoint,
    CheckpointRecord,
    PartitionKey,
)
from .errors import (
    CheckpointRegressionError,
    CorruptCheckpointError,
    OwnershipLostError,
    PersistConnectionError,
    PersistError,
    SchemaError,
)
from .file import FilePersister
from .memory import MemoryPersister
from .persister import BasePersister, CheckpointPersister
from .sql import SQLPersister
from .urls import open_persister

__all__ = [
    "END_OF_STREAM",
    "START_OF_STREAM",
    "AsyncPersister",
    "AsyncSQLPersister",
    "BasePersister",
    "Checkpoint",
    "CheckpointPersister",
    "CheckpointRecord",
    "CheckpointRegressionError",
    "CorruptCheckpointError",
    "FilePersister",
    "MemoryPersister",
    "OwnershipLostError",
    "PartitionKey",
    "PersistConnectionError",
    "PersistError",
    "SQLPersister",
    "SchemaError",
    "open_async_persister",
    "open_persister",
]

__version__ = "0.1.0"

# Records go where the application's logging sends them; none to stderr if it configures none.
logging.getLogger(__name__).addHandler(logging.NullHandler())
