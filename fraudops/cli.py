"""The `fraudops` command line.

The root app owns the shared-package commands (`data ...`, `rules ...`, `db ...`). Each
deployable unit contributes its own sub-commands through the ``fraudops.cli`` entry-point group
(see pyproject.toml), so this package never imports the units and a unit's image only needs its
own extra installed. A unit whose extra is missing simply does not show up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

import typer

from fraudops.commands import data as data_commands
from fraudops.commands import db as db_commands
from fraudops.commands import rules as rules_commands

app = typer.Typer(
    name="fraudops",
    help="Kubernetes-native MLOps platform for real-time fraud detection.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(rules_commands.app, name="rules")
app.add_typer(db_commands.app, name="db")


def _load_unit_commands(root: typer.Typer, argv: Sequence[str] = ()) -> None:
    """Add the units' commands: only the one named on the command line when it is a unit's (a
    unit imports its stack, kfp, torch or KServe, which takes seconds: `fraudops consume` need
    not import the training pipeline's), none for the root's own, every one otherwise (help)."""
    wanted = next((arg for arg in argv if not arg.startswith("-")), None)
    entries = list(entry_points(group="fraudops.cli"))
    if wanted in {entry.name for entry in entries}:
        entries = [entry for entry in entries if entry.name == wanted]
    elif wanted in {group.name for group in root.registered_groups}:
        entries = []
    for entry in entries:
        try:
            command = entry.load()
        except ImportError as error:  # the unit's extra is not installed in this image
            logging.getLogger(__name__).debug("skipping %s: %s", entry.name, error)
            continue
        if isinstance(command, typer.Typer):
            root.add_typer(command, name=entry.name)
        else:
            root.command(name=entry.name)(command)


def configure_logging(verbose: bool = False) -> None:
    """Log INFO (DEBUG when `verbose`) and above to stderr; a no-op once logging is set up."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    configure_logging(verbose)


def main() -> None:
    """Console-script entry point."""
    _load_unit_commands(app, sys.argv[1:])
    app()
