"""`fraudops data import`: turn a user's CSV/Parquet into the platform's layout."""

from __future__ import annotations

from pathlib import Path

import typer


def import_data(
    source: Path = typer.Argument(..., help="CSV or Parquet file to import."),
    mapping: Path = typer.Option(..., "--mapping", help="Column mapping (YAML)."),
    out: Path = typer.Option(..., "--out", help="Output Parquet path."),
) -> None:
    """Import a CSV or Parquet data set through a column mapping."""
    raise typer.Exit(code=2)
