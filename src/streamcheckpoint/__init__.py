"""Durable checkpoints for consumers of partitioned event streams.

A port of the Go package ``persist`` of azure-event-hubs-go, with its flaws fixed, and a SQL
persister (SQLite by default, PostgreSQL for many hosts) at its heart.
"""

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
    PersistConnectionError,
    PersistError,
    SchemaError,
)
from .memory import MemoryPersister
from .persister import BasePersister, CheckpointPersister

__all__ = [
    "END_OF_STREAM",
    "START_OF_STREAM",
    "BasePersister",
    "Checkpoint",
    "CheckpointPersister",
    "CheckpointRecord",
    "CheckpointRegressionError",
    "CorruptCheckpointError",
    "MemoryPersister",
    "PartitionKey",
    "PersistConnectionError",
    "PersistError",
    "SchemaError",
]

__version__ = "0.1.0"
