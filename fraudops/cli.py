"""The `fraudops` command line.

The root app owns the shared-package commands (`data ...`). Each deployable unit contributes its
own sub-commands through the ``fraudops.cli`` entry-point group (see pyproject.toml), so this
package never imports the units and a unit's image only needs its own extra installed. A unit
whose extra is missing simply does not show up.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import typer

from fraudops.commands import data as data_commands
from fraudops.commands import rules as rules_commands

app = typer.Typer(
    name="fraudops",
    help="Kubernetes-native MLOps platform for real-time fraud detection.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(rules_commands.app, name="rules")


def _load_unit_commands(root: typer.Typer) -> None:
    for entry in entry_points(group="fraudops.cli"):
        try:
            command = entry.load()
        except ImportError as error:  # the unit's extra is not installed in this image
            logging.getLogger(__name__).debug("skipping %s: %s", entry.name, error)
            continue
        if isinstance(command, typer.Typer):
            root.add_typer(command, name=entry.name)
        else:
            root.command(name=entry.name)(command)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console-script entry point."""
    _load_unit_commands(app)
    app()
