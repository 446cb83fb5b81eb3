"""`fraudops data ...`: generate synthetic data, import a user's data."""

from __future__ import annotations

import typer

app = typer.Typer(help="Create and import transaction data sets.", no_args_is_help=True)
