"""`fraudops data generate`: write a synthetic, labelled transaction data set (Parquet) and,
beside it, its label stream (verdicts with the time each became known)."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fraudops.data import tabular
from fraudops.data.generate import DRIFTS, GeneratorConfig
from fraudops.data.generate import generate as generate_frame
from fraudops.data.labels import (
    LabelStreamConfig,
    generate_labels,
    label_stream_summary,
    labels_path,
    write_labels,
)

#: Stages `generate` reports, plus writing the file.
STAGES = ("population", "legitimate traffic", "fraud incidents", "drift", "assembling frame",
          "label stream", "writing parquet")


def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="Number of transactions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0,
    fraud_rate: Annotated[float, typer.Option(help="Share of fraudulent rows (0-0.3).")] = 0.015,
    start: Annotated[str, typer.Option(help="First day of the span (YYYY-MM-DD, UTC).")] = (
        "2026-01-01"),
    days: Annotated[int, typer.Option(help="Length of the span in days.")] = 75,
    drift: Annotated[str, typer.Option(help=f"Drift scenario: {', '.join(DRIFTS)}.")] = "none",
    drift_start: Annotated[str, typer.Option(
        help="When drift begins: a fraction of the span (0-1) or an ISO datetime.")] = "0.5",
    labels_out: Annotated[Path | None, typer.Option(
        help="Label stream file (default: <out>.labels.parquet beside --out).")] = None,
    flag_fraud_share: Annotated[float, typer.Option(
        help="Share of fraud a screen flags for review when it happens.")] = 0.7,
    never_reviewed_share: Annotated[float, typer.Option(
        help="Share of flagged transactions no analyst ever reviews.")] = 0.1,
    chargeback_median_days: Annotated[float, typer.Option(
        help="Median delay of a chargeback on missed fraud, in days.")] = 12.0,
    maturity_days: Annotated[float, typer.Option(
        help="Days after which an undisputed transaction counts as legitimate.")] = 30.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate synthetic transactions with labelled fraud scenarios (and optional drift),
    and their label stream: analyst verdicts within hours on flagged transactions, chargebacks
    days to weeks later on missed fraud, legitimate after a maturity period."""
    console, errors = Console(), Console(stderr=True)
    try:
        stream = LabelStreamConfig(flag_fraud_share=flag_fraud_share,
                                   never_reviewed_share=never_reviewed_share,
                                   chargeback_median_days=chargeback_median_days,
                                   maturity_days=maturity_days)
        config = GeneratorConfig(rows=rows, seed=seed, fraud_rate=fraud_rate,
                                 start=date.fromisoformat(start), days=days, drift=drift,
                                 drift_start=_parse_drift_start(drift_start), labels=stream)
    except (ValidationError, ValueError) as error:
        errors.print(f"[bold red]invalid options:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=2) from None
    began = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not progress) as bar:
        task = bar.add_task("generating", total=len(STAGES))

        def advance(stage: str) -> None:
            bar.update(task, completed=STAGES.index(stage), description=stage)

        frame = generate_frame(config, progress=advance)
        advance("label stream")
        labels = generate_labels(frame, config.seed, config.labels)
        advance("writing parquet")
        tabular.write(frame, out)
        write_labels(labels, labels_out or labels_path(out))
        bar.update(task, completed=len(STAGES))
    table = summary_table(frame, config, out, time.perf_counter() - began)
    add_label_rows(table, frame, labels, labels_out or labels_path(out))
    console.print(table)


def _parse_drift_start(text: str) -> float | datetime:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text)


def summary_table(frame: pd.DataFrame, config: GeneratorConfig, out: Path,
                  seconds: float) -> Table:
    """Rows, fraud rate overall and per scenario, time and throughput, as a rich table."""
    table = Table(title=f"Generated {out}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = len(frame)
    table.add_row("rows", f"{rows:,}")
    table.add_row("accounts", f"{frame['account_id'].nunique():,}")
    table.add_row("span", f"{frame['timestamp'].min():%Y-%m-%d %H:%M} .. "
                          f"{frame['timestamp'].max():%Y-%m-%d %H:%M}")
    table.add_row("fraud rate", f"{tabular.label_rate(frame):.3%}")
    for name, count in frame["fraud_scenario"].value_counts().sort_index().items():
        table.add_row(f"  {name}", f"{count:,} ({count / rows:.3%})")
    if config.drift != "none":
        table.add_row("drift", f"{config.drift} from {config.drift_start_datetime():%Y-%m-%d %H:%M}")
    table.add_row("time", f"{seconds:.2f} s")
    table.add_row("throughput", f"{rows / seconds:,.0f} rows/s")
    return table


def add_label_rows(table: Table, frame: pd.DataFrame, labels: pd.DataFrame, path: Path) -> None:
    """The label stream's file, size, how the fraud got labelled and the median delays."""
    figures = label_stream_summary(frame, labels)
    table.add_row("label stream", f"{path} ({len(labels):,} labels)")
    for name in ("fraud_by_analyst", "fraud_by_chargeback", "fraud_never_labelled"):
        table.add_row(f"  {name.replace('_', ' ')}", f"{figures[name]:.1%}")
    table.add_row("  median review delay", f"{figures['median_review_hours']:.1f} h")
    table.add_row("  median chargeback delay", f"{figures['median_chargeback_days']:.1f} d")
