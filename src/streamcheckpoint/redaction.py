"""How URLs appear in messages and logs: with every secret masked.

The bottom of the package: anything may import it, it imports nothing of ours. Every message,
log record and ``repr`` that shows a URL, or a driver's error text that may echo one, goes
through :func:`mask_url` or :func:`redact`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SUPPORTED_URLS", "bad_url_message", "mask_url", "redact"]

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
# The value ends where the URL does in running text too: a space, a quote, or the ": " that
# introduces a driver's reason after it.
_QUERY_PASSWORD = re.compile(
    rf"([?&](?:{'|'.join(_PASSWORD_KEYS)})=)[^&#\s'\"]*?(?=: |[&#\s'\"]|$)", re.IGNORECASE
)


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


def bad_url_message(url: str | sa.URL, reason: str) -> str:
    """The one-line error for a URL that can't be opened: the masked URL, why, what works."""
    return f"can't open {mask_url(url)!r}: {reason}. Supported: {SUPPORTED_URLS}"
