"""`fraudops rules ...`: check a rule set, backtest it on a labelled data set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import yaml

from fraudops.rules import RulesError, compile_rule_set, load_rule_set

app = typer.Typer(help="Rule sets beside the model: validate and backtest.",
                  no_args_is_help=True)
RulesFile = Annotated[Path, typer.Argument(help="The rule set (YAML).")]


@app.command("check")
def check(path: RulesFile) -> None:
    """Validate a rule set; prints every problem and exits 1 if there is any."""
    try:
        compiled = compile_rule_set(load_rule_set(path))
    except RulesError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{path}: rule set {compiled.version} is valid ({len(compiled.rules)} enabled "
               f"rules, lists: {', '.join(compiled.lists) or 'none'})")


@app.command("backtest")
def backtest(
    path: RulesFile,
    data: Annotated[Path, typer.Option("--data", help="Labelled data set (Parquet or CSV).")],
    lists: Annotated[Path | None, typer.Option(
        "--lists", help="YAML mapping of list name to entries (default: empty lists).")] = None,
    sequence_model: Annotated[str | None, typer.Option(
        help="Sequence model (MLflow URI or directory): adds the model beside the rules.")]
    = None,
    autoencoder_model: Annotated[str | None, typer.Option(
        help="Autoencoder model (with --sequence-model).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
) -> None:
    """Replay a labelled data set: alert volume, precision, recall and value caught per rule
    and overall (beside the model alone when the models are given)."""
    from fraudops.data import tabular
    from fraudops.rules.backtest import backtest as run_backtest

    try:
        rule_set = load_rule_set(path)
        frame = tabular.read(data)
        entries = yaml.safe_load(lists.read_text()) if lists else {}
        scores = _scores(frame, sequence_model, autoencoder_model)
        report = run_backtest(rule_set, frame, lists=entries or {}, scores=scores)
    except (RulesError, tabular.FrameError, OSError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    _print(report)
    if out:
        out.write_text(json.dumps(report.to_dict(), indent=2))


def _scores(frame, sequence_uri: str | None, autoencoder_uri: str | None):
    """The models' scores for every row of `frame` (None when no model is given)."""
    if sequence_uri is None and autoencoder_uri is None:
        return None
    if not (sequence_uri and autoencoder_uri):
        raise RulesError("give both --sequence-model and --autoencoder-model")
    from fraudops.features import compute_batch, gather_sequences, sequence_index, spec_from_names
    from fraudops.models.scorer import load_scorer
    from fraudops.rules.backtest import Scores

    scorer = load_scorer(sequence_uri, autoencoder_uri)
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    ordered = frame.iloc[order].reset_index(drop=True)
    features = compute_batch(ordered, spec_from_names(scorer.feature_names))
    x, mask = gather_sequences(features, sequence_index(ordered, scorer.seq_len))
    result = scorer.score(x, mask)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))  # the scores in the frame's own order
    return Scores(result.fraud_probability[back], result.anomaly_score[back],
                  np.asarray(result.decision)[back])


def _print(report) -> None:
    typer.echo(f"rule set {report.rule_set_version}: {report.rows} transactions, "
               f"{report.labelled} labelled, {report.frauds} fraud "
               f"(value {report.fraud_value:,.2f})")
    header = f"{'':28} {'action':>12} {'alerts':>8} {'rate':>8} {'TP':>6} {'precision':>9} " \
             f"{'recall':>7} {'value caught':>14}"
    typer.echo(header)
    for line in report.rules + report.overall:
        typer.echo(f"{line.name[:28]:28} {line.action:>12} {line.alerts:>8} "
                   f"{line.alert_rate:>8.4f} {line.true_positives:>6} "
                   f"{_ratio(line.precision):>9} {_ratio(line.recall):>7} "
                   f"{line.value_caught:>14,.2f}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
