"""Opening a persister from a URL, and showing URLs without their passwords.

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

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .persister import BasePersister

__all__ = [
    "SUPPORTED_URLS",
    "StoreLocation",
    "bad_url_message",
    "locate",
    "mask_url",
    "open_persister",
    "redact",
]

SUPPORTED_URLS = (
    "memory://, file:///absolute/dir or file:relative/dir (?layout=go|nested), "
    "sqlite:///path/to/file.db, sqlite:// (in memory), "
    "postgresql+psycopg://user:password@host:5432/dbname, "
    "mysql+pymysql://user:password@host:3306/dbname"
)
"""The URL forms :func:`open_persister` accepts, for error messages."""

_MASK = "***"
_USERINFO_PASSWORD = re.compile(r"(//[^/?#@:]*:)[^/?#]*(@)")
_PASSWORD_KEYS = ("password", "passwd", "pwd")
_QUERY_PASSWORD = re.compile(rf"([?&](?:{'|'.join(_PASSWORD_KEYS)})=)[^&#]*", re.IGNORECASE)
_FILE_LAYOUTS = ("nested", "go")


def mask_url(url: str | sa.URL) -> str:
    """Return ``url`` with its password, and any ``password=`` query value, shown as ``***``.

    The one way every message and ``repr`` of the library shows a URL. Works on a
    :class:`sqlalchemy.URL` and on any text, also on what isn't a valid URL: nothing after
    ``user:`` and before ``@`` survives.
    """
    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    masked = _USERINFO_PASSWORD.sub(rf"\g<1>{_MASK}\g<2>", text)
    return _QUERY_PASSWORD.sub(rf"\g<1>{_MASK}", masked)


def _url_secrets(url: str | sa.URL) -> list[str]:
    """The password of ``url`` and any ``?password=`` value (what a driver may echo)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not an SQLAlchemy URL: mask_url has done what can be done
        return []
    secrets: list[object] = [parsed.password]
    for key, value in parsed.query.items():
        if key.lower() in _PASSWORD_KEYS:
            secrets.extend([value] if isinstance(value, str) else value)
    return [str(secret) for secret in secrets if secret]


def redact(text: str, url: str | sa.URL) -> str:
    """Mask ``url``'s secrets wherever they appear in ``text`` (e.g. a driver's error message).

    URLs in ``text`` are masked as :func:`mask_url` does; the password itself is replaced only
    where it stands as a whole word, so a password such as ``p`` or ``postgres`` doesn't
    mangle the ``postgresql+psycopg`` around it, while an echoed ``password=p`` is masked.
    """
    text = mask_url(text)
    for secret in _url_secrets(url):
        text = re.sub(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", _MASK, text)
    return text


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


def bad_url_message(url: str | sa.URL, reason: str) -> str:
    """The one-line error for a URL that can't be opened: the masked URL, why, what works."""
    return f"can't open {mask_url(url)!r}: {reason}. Supported: {SUPPORTED_URLS}"
