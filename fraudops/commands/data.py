"""`fraudops data ...`: generate synthetic data, import a user's data."""

from __future__ import annotations

import typer

from fraudops.commands.data_generate import generate
from fraudops.commands.data_import import import_data

app = typer.Typer(help="Create and import transaction data sets.", no_args_is_help=True)
app.command("generate")(generate)
app.command("import")(import_data)
