"""Checkpoints in a SQL database: :class:`SQLPersister` (SQLite, PostgreSQL, MySQL/MariaDB).

``persister`` is the persister; ``schema`` the table's shape; ``dialects`` one module per
database with everything that differs there; ``statements`` the SQL, compiled once, and the
mapping of rows; ``connection`` the connection the statements run on; ``engine`` how engines are
made from URLs; ``migrations`` the Alembic commands and the check a persister makes on opening.
"""

from .persister import SQLPersister

__all__ = ["SQLPersister"]
