"""Opening the persister a URL names, and telling what a URL names without opening it.

``memory://``
    :class:`~streamcheckpoint.MemoryPersister`.
``file:///absolute/dir``, ``file:relative/dir`` (relative to the working directory)
    :class:`~streamcheckpoint.file.FilePersister`; ``?layout=go`` for Go's file naming,
    ``?layout=nested`` (the default) otherwise.
anything else
    :class:`~streamcheckpoint.sql.SQLPersister`, e.g. ``sqlite:///checkpoints.db``,
    ``sqlite://`` (in memory), ``postgresql+psycopg://user:password@host:5432/dbname``,
    ``mysql+pymysql://user:password@host:3306/dbname``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from .redaction import bad_url_message, mask_url

if TYPE_CHECKING:
    from .persister import BasePersister

__all__ = ["StoreLocation", "locate", "open_persister"]

_FILE_LAYOUTS = ("nested", "go")


def open_persister(url: str, **options: Any) -> BasePersister:
    """Open the persister a URL names (see the module documentation for the forms).

    ``options`` go to the persister's constructor: ``monotonic`` for all; ``layout`` for
    ``file:``; ``schema``, ``migrate`` and SQLAlchemy engine options for SQL URLs.

    Raises:
        ValueError: the URL is malformed or of an unsupported kind; the message names the
            URL (password masked) and the supported forms.
        PersistError: the store can't be opened (e.g. a database driver isn't installed, the
            server is unreachable: :class:`~streamcheckpoint.errors.PersistConnectionError`).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    kind = _kind(url)
    if kind == "memory":
        from .memory import MemoryPersister

        return MemoryPersister(**options)
    if kind == "file":
        directory, layout = _parse_file_url(url)
        if layout is not None:
            given = options.setdefault("layout", layout)
            if given != layout:
                raise ValueError(
                    f"layout={given!r} contradicts ?layout={layout} in {mask_url(url)!r}"
                )
        from .file import FilePersister

        return FilePersister(directory, **options)
    from .sql import SQLPersister

    return SQLPersister(url, **options)


@dataclass(frozen=True)
class StoreLocation:
    """What :func:`locate` finds out about a URL without opening the store."""

    kind: Literal["memory", "file", "sql"]
    """Which persister :func:`open_persister` makes for it."""

    path: Path | None
    """Where the store lives on this machine: a ``file:`` URL's directory, a SQLite URL's
    database file; ``None`` for in-memory stores and database servers."""


def locate(url: str) -> StoreLocation:
    """The kind of store ``url`` names and its path on this machine, without opening it.

    Raises ``ValueError`` for a malformed ``memory:`` or ``file:`` URL; a malformed SQL URL has
    no path here, and :func:`open_persister` says what is wrong with it.
    """
    kind = _kind(url)
    if kind == "file":
        return StoreLocation(kind, Path(_parse_file_url(url)[0]))
    if kind == "sql" and url.lower().startswith("sqlite"):
        return StoreLocation(kind, _sqlite_file(url))
    return StoreLocation(kind, None)


def _kind(url: str) -> Literal["memory", "file", "sql"]:
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    if scheme == "memory":
        if url.lower() not in ("memory://", "memory:"):
            raise ValueError(bad_url_message(url, "a memory URL is exactly memory://"))
        return "memory"
    return "file" if scheme == "file" else "sql"


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URL; None in memory or if it doesn't parse."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # e.g. a port that isn't a number
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if parsed.query.get("mode") == "memory" or parsed.query.get("uri"):
        return None
    return Path(database)


def _parse_file_url(url: str) -> tuple[str, str | None]:
    """Return the directory and the ``layout`` query value of a ``file:`` URL."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            bad_url_message(
                url, f"file URLs name a local directory; {parts.netloc!r} is another host"
            )
        )
    directory = unquote(parts.path)
    if not directory:
        raise ValueError(bad_url_message(url, "the file URL names no directory"))
    if parts.fragment:
        raise ValueError(bad_url_message(url, "file URLs take no #fragment"))
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ValueError(bad_url_message(url, f"its query is malformed ({exc})")) from exc
    unknown = sorted(set(query) - {"layout"})
    if unknown:
        raise ValueError(
            bad_url_message(url, f"file URLs take only ?layout=, not {', '.join(unknown)}")
        )
    layouts = query.get("layout", [])
    if len(layouts) > 1:
        raise ValueError(bad_url_message(url, "layout is given more than once"))
    if layouts and layouts[0] not in _FILE_LAYOUTS:
        raise ValueError(bad_url_message(url, f"layout must be one of {', '.join(_FILE_LAYOUTS)}"))
    return directory, (layouts[0] if layouts else None)
