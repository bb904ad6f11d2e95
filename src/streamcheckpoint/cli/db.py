"""``streamcheckpoint db``: the SQL schema's migrations (upgrade, downgrade, current, history)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text

from ..redaction import bad_url_message, mask_url
from .app import (
    cli,
    confirm,
    console,
    handle_errors,
    is_sql_url,
    require_existing_store,
    schema_of,
    url_of,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

# -- db ---------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Manage the SQL schema (Alembic migrations shipped with the package)."""


def _sql_url_or_fail(ctx: click.Context) -> sa.URL:
    """``--url`` parsed as the persister would (``postgres://`` aliases, supported databases)."""
    from ..sql.dialects import dialect_for_url
    from ..sql.engine import parse_url

    url = url_of(ctx)
    if not is_sql_url(url):
        raise ValueError(f"db commands need a SQL database URL, not {mask_url(url)}")
    parsed = parse_url(url)
    try:
        dialect_for_url(parsed)
    except ValueError as exc:
        raise ValueError(bad_url_message(url, str(exc))) from exc
    return parsed


@db.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (offline mode).")
@click.pass_context
@handle_errors
def db_upgrade(ctx: click.Context, revision: str, sql: bool) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    from ..sql import migrations

    url = _sql_url_or_fail(ctx)
    _report_migration(ctx, url, migrations.upgrade(url, revision, schema=schema_of(ctx), sql=sql))


# ignore_unknown_options: Alembic's relative `downgrade -1` must be an argument, not an option.
@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (offline mode).")
@click.option(
    "--yes", is_flag=True, help="Don't ask before deleting checkpoints (needed without a terminal)."
)
@click.pass_context
@handle_errors
def db_downgrade(ctx: click.Context, revision: str, sql: bool, yes: bool) -> None:
    """Downgrade the schema to REVISION: base removes everything, -1 undoes one step."""
    from ..sql import migrations

    url = _sql_url_or_fail(ctx)
    if not sql:
        require_existing_store(url_of(ctx))
        doomed = migrations.checkpoints_a_downgrade_drops(url, revision, schema=schema_of(ctx))
        if doomed:
            confirm(
                f"Downgrade to {revision}: drop the checkpoints table and delete the {doomed} "
                "checkpoint(s) in it",
                yes,
            )
    _report_migration(ctx, url, migrations.downgrade(url, revision, schema=schema_of(ctx), sql=sql))


def _report_migration(ctx: click.Context, url: sa.URL, sql: str | None) -> None:
    """Print the offline SQL, or the revision the database is at now."""
    from ..sql import migrations

    if sql is not None:
        click.echo(sql)
        return
    now = migrations.current(url, schema=schema_of(ctx))
    click.echo(f"{mask_url(url_of(ctx))} is at revision {now or 'base (empty)'}")


@db.command("current")
@click.pass_context
@handle_errors
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database (none if it has no tables of ours)."""
    from ..sql import migrations

    url = _sql_url_or_fail(ctx)
    require_existing_store(url_of(ctx))
    revision = migrations.current(url, schema=schema_of(ctx))
    head = migrations.head()
    state = "up to date" if revision == head else f"head is {head}"
    click.echo(f"{revision or 'none'} ({state})")


@db.command("history")
@handle_errors
def db_history() -> None:
    """List the migrations shipped with this version, newest first."""
    from ..sql import migrations

    table = Table(title="Migrations", title_justify="left")
    for header in ("Revision", "Down revision", "Description"):
        table.add_column(header)
    for revision, down, description in migrations.history():
        table.add_row(revision, down or "base", Text(description))
    console().print(table)
