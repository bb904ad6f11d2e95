"""The ``streamcheckpoint`` group and what its commands share: options, opening stores, errors.

Commands only: storage logic lives in the library.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console

from ..errors import PersistError
from ..persister import BasePersister
from ..redaction import mask_url, redact
from ..urls import locate, open_persister

if TYPE_CHECKING:
    pass

DEFAULT_URL = "sqlite:///checkpoints.db"
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_STALE = 3
EXIT_INTERRUPTED = 130

_F = TypeVar("_F", bound=Callable[..., Any])


TABLE_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
"""The ``--format`` option of the commands that list rows."""


def console(stderr: bool = False) -> Console:
    # Wide enough that tables aren't folded when output is piped or captured.
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160, highlight=False)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def confirm(action: str, yes: bool) -> None:
    """Ask before ``action`` (which removes or overwrites stored checkpoints; it says how many).

    On a terminal the user answers; elsewhere (a script, a pipe) the command refuses unless it
    was given ``--yes``. Either refusal exits without changing anything.
    """
    if yes:
        return
    if not stdin_is_a_terminal():
        fail(f"{action}: refusing without --yes (there is no terminal to ask)", EXIT_USAGE)
    try:
        agreed = click.confirm(f"{action}?", default=False)
    except click.Abort:  # end of input or Ctrl-C at the question
        agreed = False
    if not agreed:
        fail("aborted; nothing changed", EXIT_RUNTIME)


def stdin_is_a_terminal() -> bool:
    """Whether a question can be asked (a function of its own, so tests can answer)."""
    return sys.stdin is not None and sys.stdin.isatty()


def handle_errors(func: _F) -> _F:
    """Turn library errors into one line on stderr: exit 1 at run time, 2 for bad input."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        candidates = ((ctx.obj or {}).get("url"), kwargs.get("src_url"), kwargs.get("dst_url"))
        urls = [u for u in candidates if isinstance(u, str)]

        def clean(message: str) -> str:
            for url in urls:
                message = redact(message, url)
            return message.splitlines()[0] if message else message

        try:
            return func(*args, **kwargs)
        except PersistError as exc:
            fail(clean(str(exc)), EXIT_RUNTIME)
        except (ValueError, TypeError) as exc:
            fail(clean(str(exc)), EXIT_USAGE)
        except OSError as exc:
            fail(clean(str(exc)), EXIT_RUNTIME)

    return wrapper  # type: ignore[return-value]


def is_sql_url(url: str) -> bool:
    return locate(url).kind == "sql"


def require_existing_store(url: str) -> None:
    """Refuse a missing SQLite file or checkpoint directory instead of creating an empty one.

    For read-only commands: a mistyped path would otherwise look like a store with no
    checkpoints (and ``copy`` would report success, having copied nothing).
    """
    location = locate(url)
    if location.path is None or location.path.exists():
        return
    if location.kind == "sql":
        raise PersistError(
            f"no checkpoint database at {location.path} (URL {mask_url(url)}); check --url, or "
            "create it with `streamcheckpoint db upgrade`"
        )
    raise PersistError(
        f"no checkpoint directory at {location.path} (URL {mask_url(url)}); check the URL"
    )


@contextmanager
def open_store(
    url: str,
    *,
    writing: bool,
    create: bool = True,
    monotonic: bool = False,
    schema: str | None = None,
) -> Iterator[BasePersister]:
    """Open the store at ``url``.

    Commands that only read open it read-only: they never create, migrate or change a file
    (a SQLite database is read without creating its ``-wal``/``-shm``). ``create=False``: a
    command that writes to what must already be there (``reset``) neither creates nor migrates.
    """
    options: dict[str, Any] = {"monotonic": monotonic}
    if not writing:
        options["read_only"] = True
    if is_sql_url(url):
        options["migrate"] = writing and create
        if schema is not None:
            options["schema"] = schema
    if not (writing and create):
        require_existing_store(url)
    persister = open_persister(url, **options)
    try:
        yield persister
    finally:
        persister.close()


def url_of(ctx: click.Context) -> str:
    return str(ctx.obj["url"])


def schema_of(ctx: click.Context) -> str | None:
    schema = ctx.obj.get("schema")
    return None if schema is None else str(schema)


class _OneLineErrors(click.Group):
    """A group whose usage errors are one line on stderr (exit 2), like every other error."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split())  # click's may span lines
            fail(f"{message}{hint}", EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:  # Ctrl-C: what was written before it stays written
            fail("interrupted; whatever the command had written by then stays", EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="STREAMCHECKPOINT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Checkpoint store: sqlite:///file.db, postgresql+psycopg://..., mysql+pymysql://..., "
    "file:///dir[?layout=go], memory://. Also read from STREAMCHECKPOINT_URL.",
)
@click.option(
    "--schema",
    envvar="STREAMCHECKPOINT_SCHEMA",
    help="PostgreSQL schema (MySQL: database) holding the checkpoints table (default: the "
    "search path; the URL's database). Also read from STREAMCHECKPOINT_SCHEMA.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show what the library does (migrations, reconnects, retries) on stderr.",
)
@click.version_option(package_name="streamcheckpoint")
@click.pass_context
def cli(ctx: click.Context, url: str, schema: str | None, verbose: bool) -> None:
    """Inspect and manage stream consumer checkpoints."""
    ctx.ensure_object(dict)
    ctx.obj["url"] = url
    ctx.obj["schema"] = schema
    if verbose:
        _log_to_stderr(ctx)


def _log_to_stderr(ctx: click.Context) -> None:
    """Send the library's INFO records and above to stderr while the command runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("streamcheckpoint")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx.call_on_close(restore)
