"""Creating the engine a :class:`~streamcheckpoint.sql.SQLPersister` uses.

A URL becomes an engine configured for the database (see :mod:`.dialects`); an engine the
caller made is used as it is. Bad URLs, unsupported databases and missing drivers are clear
errors here, before anything connects.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..errors import PersistError
from ..redaction import bad_url_message, mask_url
from .dialects import DIALECTS, Dialect, dialect_for_engine, dialect_for_url

__all__ = ["UrlOrEngine", "open_engine", "parse_url", "resolve_url", "sql_identity"]

UrlOrEngine = str | sa.URL | sa.Engine
"""What SQLPersister and the migration functions accept as ``url_or_engine``."""


_AT_IN_PASSWORD = (
    "there is an '@' after the one that ends the user name and password: an '@' (or ':', '/', "
    "'?', '#') in a password must be percent-encoded ('@' is %40, ':' is %3A)"
)


def parse_url(url: str | sa.URL) -> sa.URL:
    """Parse ``url``; ``ValueError`` naming the (masked) URL and the supported forms if bad.

    A bare scheme name that means one of our databases with its driver (``postgresql://``,
    ``postgres://``, ``mysql://``, ``mariadb://``: see :attr:`.Dialect.bare_names`) gets that
    driver spelled out.
    """
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    if text.partition("//")[2].partition("/")[0].count("@") > 1:
        raise ValueError(bad_url_message(url, _AT_IN_PASSWORD))
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        # Not the parser's own words: they can quote any part of the URL, its password too.
        raise ValueError(bad_url_message(url, "it is not a URL that can be parsed")) from exc
    for dialect in DIALECTS:
        if parsed.drivername in dialect.bare_names:
            backend = parsed.drivername if parsed.drivername in dialect.names else dialect.name
            return parsed.set(drivername=f"{backend}+{dialect.driver}")
    return parsed


def resolve_url(url_or_engine: UrlOrEngine) -> tuple[sa.URL, Dialect]:
    """The URL and :class:`~.dialects.Dialect` of ``url_or_engine``; creates nothing.

    Raises ``TypeError`` for anything but a URL or an engine and ``ValueError`` for a bad URL
    or a database that isn't supported, naming the URL with its password masked.
    """
    if isinstance(url_or_engine, sa.Engine):
        return url_or_engine.url, dialect_for_engine(url_or_engine)
    if not isinstance(url_or_engine, (str, sa.URL)):
        raise TypeError(
            "url_or_engine must be a URL (str or sqlalchemy.URL) or a sqlalchemy.Engine, not "
            f"{type(url_or_engine).__name__}"
        )
    url = parse_url(url_or_engine)
    try:
        dialect = dialect_for_url(url)
    except ValueError as exc:
        raise ValueError(bad_url_message(url_or_engine, str(exc))) from exc
    return url, dialect


def open_engine(
    url_or_engine: UrlOrEngine, engine_options: dict[str, Any], *, read_only: bool = False
) -> tuple[sa.Engine, Dialect, bool]:
    """Return ``(engine, dialect, created)`` for what SQLPersister was given.

    ``created`` says whether the engine was made here (and must be disposed of by its user).
    The migration functions build their engines here too, so they accept the same URLs.
    """
    url, dialect = resolve_url(url_or_engine)
    if isinstance(url_or_engine, sa.Engine):
        return url_or_engine, dialect, False
    url, arguments, hooks = dialect.configure(url, engine_options, read_only=read_only)
    try:
        engine = sa.create_engine(url, **arguments)
    except ImportError as exc:
        raise PersistError(
            f"can't open {mask_url(url_or_engine)}: the {dialect.driver} driver is not "
            f"installed ({exc}); install it"
            + (f": pip install 'streamcheckpoint[{dialect.extra}]'" if dialect.extra else "")
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"can't open {mask_url(url_or_engine)}: {exc}") from exc
    for event, hook in hooks.items():
        sa.event.listen(engine, event, hook)
    return engine, dialect, True


def sql_identity(url: str | sa.URL, schema: str | None) -> tuple[object, ...] | None:
    """What a server database URL points at: database kind, host, port, database and schema,
    so that two spellings of one location compare equal; ``None`` for a SQLite database (its
    file says where it is) or a URL that doesn't parse."""
    try:
        parsed, dialect = resolve_url(url)
    except ValueError:
        return None
    if dialect.default_port is None:
        return None
    host = (parsed.host or "localhost").lower()
    return dialect.name, host, parsed.port or dialect.default_port, parsed.database, schema
