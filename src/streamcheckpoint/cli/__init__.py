"""The ``streamcheckpoint`` command line interface."""

from . import commands, db, eventhub  # noqa: F401 - importing them adds their commands to the group
from .app import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="streamcheckpoint")
