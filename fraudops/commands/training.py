"""`fraudops train`, `fraudops evaluate`, `fraudops features build`.

Registered through the ``fraudops.cli`` entry points (they need the training extra).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fraudops.models.exceptions import ModelError
from fraudops.training.exceptions import TrainingError

log = logging.getLogger(__name__)
console = Console(stderr=True)
features_app = typer.Typer(help="Featurize data sets.", no_args_is_help=True)

#: Score metrics, one row each; per-scenario recall at 1% FPR follows (the full set goes to
#: --metrics-out).
SCORE_ROWS = ("auprc", "roc_auc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr",
              "precision_at_100", "amount_caught_at_1pct_fpr", "value_detected_at_fp_ratio_1",
              "value_detected_at_fp_ratio_0.1", "precision_at_daily_capacity", "brier")
SCENARIO_RECALL = "recall_at_1pct_fpr."
#: Columns of the score table: metric prefix and title (a model's column shows when it has
#: metrics; the gap column when the reference does).
MODEL_COLUMNS = (("sequence", "LSTM-CNN"), ("reference", "LightGBM reference"),
                 ("autoencoder", "autoencoder"))
GAP_COLUMN = "gap (LSTM-CNN - reference)"
#: Rows of the test-period and decision-policy table.
POLICY_ROWS = ("rows", "fraud_rate", "policy.flagged_recall", "policy.flagged_fpr",
               "policy.block_precision", "policy.amount_flagged")


def _fail(error: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {error}")
    return typer.Exit(code=1)


def metrics_table(metrics: dict, title: str) -> Table:
    """Score metrics per model, side by side, with the gap of the LSTM-CNN to the reference
    (negative: the reference is better), and per-scenario recall of each, as a rich table."""
    from fraudops.training.comparison import gap

    models = [(p, t) for p, t in MODEL_COLUMNS if f"{p}.auprc" in metrics]
    with_gap = any(p == "reference" for p, _ in models)
    table = Table(title=title)
    table.add_column("metric")
    for _, heading in models:
        table.add_column(heading, justify="right")
    if with_gap:
        table.add_column(GAP_COLUMN, justify="right")
    scenarios = sorted({k.split(".", 1)[1] for k in metrics
                        if k.startswith(tuple(f"{p}.{SCENARIO_RECALL}" for p, _ in models))})
    for name in (*SCORE_ROWS, *scenarios):
        if not any(f"{prefix}.{name}" in metrics for prefix, _ in models):
            continue
        cells = [_cell(metrics.get(f"{prefix}.{name}")) for prefix, _ in models]
        if with_gap:
            cells.append(_cell(gap(metrics, name), "+.4f"))
        table.add_row(name, *cells)
    return table


def policy_table(metrics: dict) -> Table:
    """The test period's size and the decision policy's figures."""
    table = Table(title="Test period and decision policy")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (k for k in POLICY_ROWS if k in metrics):
        table.add_row(key, _cell(metrics[key], ",.0f" if key == "rows" else ".4f"))
    return table


def _cell(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def print_metrics(metrics: dict, title: str) -> None:
    """Both tables, then (when a reference was trained) the sentence stating the gap."""
    from fraudops.training.comparison import verdict

    console.print(metrics_table(metrics, title))
    console.print(policy_table(metrics))
    if "reference.auprc" in metrics:
        console.print(verdict(metrics))


def write_metrics(metrics: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=str))
        console.print(f"metrics written to {path}")


def train(
    data: Annotated[Path, typer.Option(help="Data set (Parquet/CSV, platform layout).")],
    features: Annotated[Path | None, typer.Option(help="Featurized data (features build).")] = None,
    params: Annotated[Path | None, typer.Option(help="YAML with a `train:` section.")] = None,
    out: Annotated[Path | None, typer.Option(help="Directory for models and report.")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="Metrics JSON file.")] = None,
    register: Annotated[bool, typer.Option(
        help="Log to MLflow, register, run the promotion gate.")] = True,
    start: Annotated[datetime | None, typer.Option(help="Train on rows from (UTC).")] = None,
    end: Annotated[datetime | None, typer.Option(help="... up to (exclusive).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the sequence epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
) -> None:
    """Train both models and the gradient-boosted reference, evaluate them on the time-held-out
    test period (the table states the gap to the reference), register and gate."""
    import tempfile

    from fraudops.training.retrain import TrainingJob, run_training
    from fraudops.training.settings import TrainingSettings, load_training_config

    settings = TrainingSettings()
    try:
        config = load_training_config(params, seed=seed)
        if epochs is not None:
            config = config.model_copy(update={
                "sequence": config.sequence.model_copy(update={"epochs": epochs})})
        work = out or Path(tempfile.mkdtemp(prefix="train-", dir=_ensure(settings.home)))
        job = TrainingJob(data, work, settings.tracking_target() if register else None,
                          settings.mlflow.models, config, start, end)
        outcome = run_training(job, features_dir=features)
    except (TrainingError, ModelError, ValueError) as error:
        raise _fail(error) from error
    print_metrics(outcome.metrics, "Test period: models")
    if outcome.decision:
        verdict = "promoted to champion" if outcome.promoted else "kept as challenger"
        console.print(f"registered {outcome.versions.to_dict()}: {verdict} "
                      f"({outcome.decision.reason})")
    console.print(f"models in {outcome.models_dir}, report in {outcome.report_dir}")
    write_metrics({**outcome.metrics, "_outcome": outcome.to_dict()} if metrics_out else {},
                  metrics_out)


def _ensure(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    return home


def evaluate(
    data: Annotated[Path, typer.Option(help="Labelled data set in the platform layout.")],
    model: Annotated[str, typer.Option(
        help="Models dir (sequence/ + autoencoder/), models:/ URI, alias (champion) or "
             "version number of the sequence model.")] = "champion",
    autoencoder: Annotated[str | None, typer.Option(
        help="Autoencoder URI (derived from --model if unset).")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="Metrics JSON file.")] = None,
    plots_out: Annotated[Path | None, typer.Option(help="Directory for the plots.")] = None,
) -> None:
    """Score a labelled data set with a model pair and report the same metrics as training."""
    from fraudops.training import scoring
    from fraudops.training.settings import TrainingSettings

    settings = TrainingSettings()
    try:
        metrics = scoring.evaluate_dataset(settings, model, autoencoder, data, plots_out)
    except (TrainingError, ModelError, ValueError) as error:
        raise _fail(error) from error
    print_metrics(metrics, f"{model} on {data.name}")
    write_metrics(metrics, metrics_out)


@features_app.command("build")
def build_features(
    data: Annotated[Path, typer.Option(help="Data set in the platform layout.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    seq_len: Annotated[int, typer.Option(min=1, help="History length K.")] = 16,
) -> None:
    """Featurize a data set (what the pipeline's featurize step writes)."""
    from fraudops.training.steps import featurize_step

    try:
        meta = featurize_step(data, out, seq_len)
    except (TrainingError, ValueError) as error:
        raise _fail(error) from error
    console.print(f"{meta['rows']} rows x {meta['feature_dim']} features -> {out} "
                  f"(data version {meta['data_version']})")
