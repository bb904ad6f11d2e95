"""Checkpoints in a SQL database: :class:`SQLPersister` (SQLite, PostgreSQL).

``schema`` holds the table metadata, ``dialects`` every difference between the databases,
``statements`` the SQL and its pure parameter and row mappings, ``driver`` the write hot path,
``engine`` how engines are created from URLs.
"""

from .persister import SQLPersister

__all__ = ["SQLPersister"]
