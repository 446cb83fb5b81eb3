"""`fraudops data import`: turn a user's CSV/Parquet into the platform's layout."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from fraudops.data.exceptions import DataError
from fraudops.data.importer import (
    DEFAULT_CHUNK_SIZE,
    ImportReport,
    ProgressCallback,
    import_dataset,
)


def import_data(
    source: Annotated[Path, typer.Argument(help="CSV (optionally .gz/.zst/...) or Parquet file.")],
    mapping: Annotated[
        Path, typer.Option("--mapping", "-m", help="Column mapping (YAML), see examples/mappings/.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Rows per chunk (bounds memory).")
    ] = DEFAULT_CHUNK_SIZE,
    report_json: Annotated[Path | None, typer.Option(help="Also write the report as JSON.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import a CSV or Parquet data set through a declarative column mapping."""
    console, errors = Console(), Console(stderr=True)
    try:
        with _progress_bar(console, enabled=progress, label=source.name) as on_progress:
            report = import_dataset(
                source, mapping, out, chunk_size=chunk_size, on_progress=on_progress
            )
    except DataError as error:
        errors.print(f"[bold red]import failed:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=1) from None
    console.print(report_table(report))
    if report_json is not None:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


@contextmanager
def _progress_bar(
    console: Console, *, enabled: bool, label: str
) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"importing {label}", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def report_table(report: ImportReport) -> Table:
    """The import report as a rich table."""
    table = Table(title="Import report", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rate = "n/a (no labels)" if math.isnan(report.label_rate) else f"{report.label_rate:.4%}"
    rows = [
        ("source", report.source),
        ("output", report.output),
        ("rows read", f"{report.rows_read:,}"),
        ("rows written", f"{report.rows_written:,}"),
        ("rows dropped", f"{report.rows_dropped:,}"),
        ("label rate (fraud)", rate),
        ("passthrough features", str(len(report.extra_features))),
        ("rows/s", f"{report.rows_per_second:,.0f}" if report.seconds else "n/a"),
    ]
    rows += [(f"  dropped: {reason}", f"{n:,}") for reason, n in report.dropped.items()]
    rows += [(f"  replaced: {name}", f"{n:,}") for name, n in report.defaulted.items()]
    if report.label_stream is not None:
        rows.append(("label stream", f"{report.label_stream} ({report.labels_written:,} labels)"))
        rows += [(f"  label not in the stream: {reason}", f"{n:,}")
                 for reason, n in report.labels_skipped.items()]
    for row in rows:
        table.add_row(*row)
    return table
