"""``python -m streamcheckpoint``: the command line interface."""

from .cli import main

main()
